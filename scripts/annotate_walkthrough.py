"""The docs/annotate.md walkthrough, run for real: bag -> dataset -> clicks by "hand" -> train -> bundle -> robot.

Every step is the `wsseg` command a user types (run as a subprocess, printed as it runs); only the person
is simulated: a small ROS 2 bag of PointCloud2 messages is made from synthetic rooms, and the clicks go to
the running `wsseg annotate` server through the same HTTP calls the page makes, one click per object at
a point the rooms' ground truth names (a person would see the object).  A CPU smoke schedule: it checks
that the steps fit together, not the accuracy.

    .venv/bin/python scripts/annotate_walkthrough.py [--work DIR] [--rooms 3]
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import yaml
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from wsseg_training.data.dataset import Dataset

from wsseg.core.cloud_io import PointCloudFile
from wsseg.core.pointcloud2_fields import cloud_to_pointcloud2

WSSEG = str(Path(sys.executable).parent / "wsseg")
TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)


def step(*args: str) -> str:
    print("$ wsseg " + " ".join(shlex.quote(a) for a in args), flush=True)
    done = subprocess.run([WSSEG, *args], capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"wsseg {args[0]} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    print("  " + "\n  ".join(done.stdout.strip().splitlines()[-3:]), flush=True)
    return done.stdout


def write_bag(rooms: Dataset, path: Path) -> Path:
    """One PointCloud2 message per synthetic room on /camera/points (what a robot would have recorded)."""
    types = TYPESTORE.types
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        topic = writer.add_connection("/camera/points", "sensor_msgs/msg/PointCloud2", typestore=TYPESTORE)
        for k, name in enumerate(rooms.scene_names()):
            scene = rooms.load(name)
            cloud = PointCloudFile(xyz=scene.xyz, rgb=scene.rgb, width=scene.num_points, height=1)
            specs, data, point_step = cloud_to_pointcloud2(cloud)
            message = types["sensor_msgs/msg/PointCloud2"](
                header=types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=k, nanosec=0),
                                                    frame_id="map"),
                height=1, width=scene.num_points,
                fields=[types["sensor_msgs/msg/PointField"](name=s.name, offset=s.offset, datatype=s.datatype,
                                                            count=s.count) for s in specs],
                is_bigendian=False, point_step=point_step, row_step=point_step * scene.num_points,
                data=np.frombuffer(data, dtype=np.uint8), is_dense=True)
            writer.write(topic, (k + 1) * 1_000_000_000,
                         TYPESTORE.serialize_cdr(message, "sensor_msgs/msg/PointCloud2"))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api(url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


def serve(args: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    print("$ wsseg annotate " + " ".join(args) + f" --port {port}", flush=True)
    server = subprocess.Popen([WSSEG, "annotate", *args, "--port", str(port)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            api(f"{url}/api/session")
            return server, url
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"wsseg annotate exited: {server.stdout.read()}") from None  # type: ignore[union-attr]
            time.sleep(0.2)
    raise SystemExit("wsseg annotate did not start")


def stop(server: subprocess.Popen) -> str:
    server.send_signal(signal.SIGTERM)
    out, _ = server.communicate(timeout=60)
    print("  " + "\n  ".join(out.strip().splitlines()), flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--rooms", type=int, default=3)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="wsseg_walkthrough_"))
    started = time.perf_counter()
    step("data", "synth", "--kind", "indoor", "--scenes", str(args.rooms), "--seed", "3", "--out", str(work / "rooms"))
    rooms = Dataset(work / "rooms")
    bag = write_bag(rooms, work / "lab_bag")
    data = work / "lab"
    step("data", "convert", "--format", "rosbag", "--in", str(bag), "--out", str(data), "--classes", "s3dis",
         "--topics", "/camera/points", "--quiet")
    step("data", "supervoxels", "--data", str(data))
    labels = data / "weak_labels" / "clicks-annotated.json"
    server, url = serve(["--data", str(data)])
    try:
        session = api(f"{url}/api/session")
        for scene_name, room_name in zip(session["scenes"], rooms.scene_names(), strict=True):
            truth = rooms.load(room_name)
            for obj in np.unique(truth.instance[truth.instance >= 0]):  # type: ignore[index]
                members = np.flatnonzero(truth.instance == obj)
                point = int(members[len(members) // 2])
                api(f"{url}/api/scene/{scene_name}/edit",
                    {"op": "add_click", "point": point, "class": int(truth.semantic[point])})  # type: ignore[index]
        progress = api(f"{url}/api/progress")
        print(f"  annotated: {progress['done']} / {progress['total']} scenes, "
              f"{sum(r['clicks'] for r in progress['scenes'])} clicks, saved {progress['saves']} times", flush=True)
    finally:
        stop(server)
    step("labels", "validate", str(labels), "--data", str(data))
    step("labels", "stats", str(labels), "--data", str(data), "--propagate")
    config = work / "otoc_smoke.yaml"
    config.write_text(yaml.safe_dump({
        "seed": 0, "profile": "tiny", "device": "auto",
        "data": {"features": ["offset", "rgb"], "crop_max_points": 10000, "batch_scenes": 2, "num_workers": 0},
        "optim": {"optimizer": "adamw", "lr": 0.01, "schedule": "cosine", "warmup_steps": 2},
        "train": {"steps": 20, "checkpoint_every_steps": 10, "keep_checkpoints": 2, "log_every_steps": 5,
                  "eval_every_steps": 0},
        "method": {"variant": "rel_gp", "iterations": 2, "steps_per_iteration": 10}}))
    step("train", "--method", "otoc", "--data", str(data), "--labels", str(labels), "--config", str(config),
         "--out", str(work / "runs" / "lab"), "--threads", "1")
    step("export", "--checkpoint", str(work / "runs" / "lab" / "model.pt"), "--out", str(work / "bundles" / "lab"))
    cloud = data / "scenes" / f"{Dataset(data).scene_names()[0]}.npz"
    step("infer", "--model", str(work / "bundles" / "lab"), "--in", str(cloud), "--out", str(work / "labelled.npz"))
    server, url = serve(["--data", str(data), "--model", str(work / "bundles" / "lab")])
    try:
        first = api(f"{url}/api/session")["scenes"][0]
        suggestions = api(f"{url}/api/scene/{first}/suggestions?count=3")["suggestions"]
        print(f"  next clicks suggested in {first}: " + ", ".join(f"point {s['point']} ({s['size']} points, "
                                                                  f"uncertainty {s['uncertainty']:.2f})"
                                                                  for s in suggestions), flush=True)
    finally:
        stop(server)
    print(f"robot: ros2 launch wsseg segment.launch.py model:={work / 'bundles' / 'lab'} input_mode:=points")
    print(f"walkthrough done in {(time.perf_counter() - started) / 60:.1f} min; files under {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
