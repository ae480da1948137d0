"""Reliability soak: real ``segment_node`` processes fed real frames at 10 Hz, with scheduled faults.

* LiDAR node (``input_mode points``): the SemanticKITTI scans of ``../shared/data/semantickitti`` as
  PointCloud2 (x, y, z, intensity; features offset + intensity, 0.05 m voxels, sensor lidar);
* RGB-D node (``input_mode rgbd``): mOSD Kinect frames as depth 16UC1 + rgb8 + camera_info (offset + rgb,
  0.02 m voxels), from ``../shared/data/mosd/learn``.

Both nodes start with ``config/segment.yaml`` (the shipped defaults) and random-weight bundles of
``--profile`` (reliability does not depend on weights).  Every ``--cycle-s`` seconds each node gets, in
turn: a burst of malformed frames (missing/duplicate/overlapping fields, bad datatypes and lengths, NaN
and 1e30 coordinates; bad encodings, sizes and camera_info for RGB-D), a clock glitch (RGB-D: 10 colour
frames stamped 1000 s ahead, then every stream jumping 100 s back; LiDAR: stamps jumping), a 2M-point
frame (a 2000 x 1000 depth image for RGB-D), a publisher restart (input publishers destroyed and made
again), and a parameter change whose engine load fails (``model`` set to a missing bundle), followed by
a reload of the good bundle.

Measured per node: frames in (valid / faulty), answered, dropped by the node's keep-latest slot and
sync, rejected by cause (the node's own diagnostics counts), end-to-end latency (publish -> labelled
cloud received) median / p95, RSS at start (after ``--warmup-s``), end and max, stalls (valid frames
published but none answered for ``--stall-s``), exit code on SIGINT, and the machine's load average;
RSS also as medians of ``--rss-window-s`` windows and by kind (RssAnon / RssFile / RssShmem).

``--nodes`` picks the node processes (default ``lidar rgbd``; any name starting ``lidar`` or ``rgbd``),
``--node-env NAME:KEY=VALUE`` / ``--node-param NAME:PARAM=VALUE`` give one of them an environment
variable or parameter: a controlled comparison in one run, e.g. ``--nodes lidar rgbd rgbd_glibc
--node-env rgbd_glibc:WSSEG_KEEP_HEAP=0 --node-param rgbd_glibc:memory_trim_period_s=0.0`` (glibc's
allocator defaults beside the shipped ones).  Input QoS defaults to reliable, so that the 2M-point frame
is delivered (best effort drops it in transport); after it the feed pauses until the node has taken it.
Writes ``bench/results/soak.json`` and ``soak.md`` and prints ``RESULT <json>`` last.  Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from node import make_bundle  # bench/node.py: a random-weight bundle of a profile
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from soak_report import markdown, summarise
from std_msgs.msg import Header
from wsseg_export.node_replay import FASTDDS_PROFILE, NodeClient, free_domain_id, start_segment_node

from wsseg.core.classes import MOSD, SEMANTIC_KITTI19
from wsseg.core.features import FeatureConfig
from wsseg.ros.conversions import cloud_to_msg, make_camera_info, make_image
from wsseg.ros.replay_node import frame_messages
from wsseg.ros.replay_sources import load_frames
from wsseg.ros.rgbd import depth_to_millimetres
from wsseg.ros.segment_node import make_qos

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
PARAMS = REPO / "config" / "segment.yaml"
S = 1_000_000_000
FAULTS = ("malformed", "clock_glitch", "huge_frame", "publisher_restart", "engine_load_failure")


def _stamp(header: Header, stamp_ns: int) -> Header:
    out = Header(frame_id=header.frame_id)
    out.stamp.sec, out.stamp.nanosec = divmod(int(stamp_ns), S)
    return out


def malformed_points(good: PointCloud2) -> list[PointCloud2]:
    """One broken copy of ``good`` per class of bad input the node must refuse or survive."""
    def copy() -> PointCloud2:
        return PointCloud2(header=good.header, height=good.height, width=good.width, is_bigendian=False,
                           fields=[PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count)
                                   for f in good.fields], point_step=good.point_step, row_step=good.row_step,
                           data=bytes(good.data), is_dense=False)
    out = []
    m = copy()
    m.fields = [f for f in m.fields if f.name != "x"]
    out.append(m)
    m = copy()
    m.fields[2].datatype = PointField.INT8
    out.append(m)
    m = copy()
    m.data = bytes(m.data)[:-3]
    out.append(m)
    m = copy()
    m.fields.append(PointField(name="x", offset=4, datatype=PointField.FLOAT32, count=1))
    out.append(m)
    m = copy()
    m.fields[0].datatype = PointField.FLOAT64
    out.append(m)
    n = 2000
    out.append(cloud_to_msg(Header(), np.full((n, 3), np.nan, np.float32), n, 1, intensity=np.zeros(n, np.float32)))
    out.append(cloud_to_msg(Header(), np.full((n, 3), 1e30, np.float32), n, 1, intensity=np.zeros(n, np.float32)))
    out.append(cloud_to_msg(Header(), np.zeros((0, 3), np.float32), 0, 1, intensity=np.zeros(0, np.float32)))
    return out


def malformed_rgbd(good: dict[str, Any]) -> list[dict[str, Any]]:
    depth, colour, info = good["depth"], good["color"], good["camera_info"]
    bad_encoding = Image(header=depth.header, height=depth.height, width=depth.width, encoding="yuv422",
                         is_bigendian=False, step=depth.step, data=bytes(depth.data))
    short = Image(header=colour.header, height=colour.height, width=colour.width, encoding="rgb8",
                  is_bigendian=False, step=colour.step, data=bytes(colour.data)[:-7])
    small = make_image(colour.header, np.zeros((10, 12, 3), np.uint8), "rgb8")
    no_focal = CameraInfo(header=info.header, width=info.width, height=info.height)
    return [{"depth": bad_encoding, "color": colour, "camera_info": info},
            {"depth": depth, "color": short, "camera_info": info},
            {"depth": depth, "color": small, "camera_info": info},
            {"depth": depth, "color": colour, "camera_info": no_focal}]


@dataclass
class Feed:
    """One node, its client and what was sent / answered."""

    name: str
    mode: str
    bundle: Path
    domain: int
    messages: list[dict[str, Any]]
    process: Any = None
    client: Any = None
    sent: dict[int, float] = field(default_factory=dict)  # valid frames: stamp -> publish time
    answered: dict[int, float] = field(default_factory=dict)  # stamp -> receive time
    faulty_sent: int = 0
    faults: list[tuple[float, str, str]] = field(default_factory=list)  # (t, fault, outcome)
    env: dict[str, str] = field(default_factory=dict)  # added to the node process's environment
    params: dict[str, str] = field(default_factory=dict)  # node parameters over config/segment.yaml
    rss: list[tuple[float, int]] = field(default_factory=list)
    rss_parts: list[tuple[float, int, int, int]] = field(default_factory=list)  # (t, anon, file, shmem) bytes
    offset_ns: int = 0  # stamp offset (clock faults)
    alternate: Path | None = None  # a copy of the bundle: good reloads switch between the two
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, log: Path, input_qos: str) -> None:
        params = {"input_mode": self.mode, "input_qos": input_qos, "diagnostics_period_s": 1.0, **self.params}
        self.process = start_segment_node(self.bundle, PARAMS, self.domain, params, log_path=log,
                                          fastdds_profile=FASTDDS_PROFILE, env=self.env)
        self.client = NodeClient(self.domain, mode=self.mode, input_qos=input_qos, keep_outputs=False,
                                 fastdds_profile=FASTDDS_PROFILE)
        out_qos = make_qos("sensor_data", depth=10)
        self.client.node.create_subscription(PointCloud2, "/segment_node/output/points", self._on_output, out_qos)
        if not self.client.wait_for_node(120.0):
            raise RuntimeError(f"{self.name}: node did not come up:\n{self.process.log()}")

    def _on_output(self, msg: PointCloud2) -> None:
        stamp = int(msg.header.stamp.sec) * S + int(msg.header.stamp.nanosec)
        with self.lock:
            self.answered.setdefault(stamp, time.monotonic())

    def publish(self, messages: dict[str, Any], stamp_ns: int, valid: bool) -> None:
        for msg in messages.values():
            msg.header = _stamp(msg.header, stamp_ns)
        with self.lock:
            if valid:
                self.sent[stamp_ns] = time.monotonic()
            else:
                self.faulty_sent += 1
        self.client.publish(messages)

    def restart_publishers(self) -> None:
        node = self.client.node
        for name, publisher in list(self.client.inputs.items()):
            msg_type, topic, qos = publisher.msg_type, publisher.topic_name, publisher.qos_profile
            node.destroy_publisher(publisher)
            time.sleep(0.2)
            self.client.inputs[name] = node.create_publisher(msg_type, topic, qos)

    def set_model(self, path: str, timeout_s: float = 120.0) -> tuple[bool, str]:
        service = self.client.node.create_client(SetParameters, "/segment_node/set_parameters")
        try:
            if not service.wait_for_service(timeout_sec=20.0):
                return False, "set_parameters service not available"
            request = SetParameters.Request(parameters=[ParameterMsg(
                name="model", value=ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=path))])
            future = service.call_async(request)
            deadline = time.monotonic() + timeout_s
            while not future.done() and time.monotonic() < deadline:
                time.sleep(0.05)
            if not future.done():
                return False, "no answer"
            result = future.result().results[0]
            return bool(result.successful), str(result.reason)
        finally:
            self.client.node.destroy_client(service)

    def handled(self) -> int:
        """Frames the node has processed or rejected (its last diagnostics report)."""
        with self.client.lock:
            if not self.client.diagnostics:
                return 0
            values = {kv.key: kv.value for kv in self.client.diagnostics[-1].values}
        return int(values.get("frames_processed", 0)) + int(values.get("frames_rejected", 0))

    def rejected(self, cause: str) -> int:
        """Frames the node has rejected for ``cause`` (its last diagnostics report, ``rejected_by_cause``)."""
        with self.client.lock:
            if not self.client.diagnostics:
                return 0
            values = {kv.key: kv.value for kv in self.client.diagnostics[-1].values}
        counts = dict(item.strip().split("=", 1) for item in values.get("rejected_by_cause", "").split(",")
                      if "=" in item)
        return int(counts.get(cause, 0))

    def wait_handled(self, before: int, timeout_s: float = 30.0) -> None:
        """Wait until the node has handled a frame more than ``before``, and as long again as its last frame took
        (it may have been finishing a valid frame), so that the frame just published was taken."""
        deadline = time.monotonic() + timeout_s
        while self.handled() <= before and time.monotonic() < deadline:
            time.sleep(0.2)
        with self.client.lock:
            last = [t.get("total", 0.0) for t in list(self.client.timings.values())[-1:]]
        time.sleep(min(15.0, 1.0 + 1.5 * (last[0] if last else 1000.0) / 1e3))

    def sample_rss(self, now: float) -> None:
        try:
            text = Path(f"/proc/{self.process.process.pid}/status").read_text()
        except OSError:
            return
        kb = {line.split(":")[0]: int(line.split()[1]) for line in text.splitlines()
              if line.startswith(("VmRSS:", "RssAnon:", "RssFile:", "RssShmem:"))}
        self.rss.append((now, kb["VmRSS"] * 1024))
        self.rss_parts.append((now, kb.get("RssAnon", 0) * 1024, kb.get("RssFile", 0) * 1024,
                               kb.get("RssShmem", 0) * 1024))

    def diagnostics(self) -> dict[str, str]:
        with self.client.lock:
            if not self.client.diagnostics:
                return {}
            status = self.client.diagnostics[-1]
            self.client.diagnostics[:] = self.client.diagnostics[-5:]  # keep the client's memory flat
        return {"level": str(status.level[0]), "message": status.message, **{kv.key: kv.value for kv in status.values}}


def inject(feed: Feed, fault: str, t: float, rng: np.random.Generator) -> None:
    """Run one scheduled fault on ``feed`` and record its outcome."""
    now_ns = time.time_ns() + feed.offset_ns
    outcome = "sent"
    if fault == "malformed":
        good = feed.messages[0]
        bad = [{"points": m} for m in malformed_points(good["points"])] if feed.mode == "points" \
            else malformed_rgbd(good)
        for k, messages in enumerate(bad):  # one at a time: the keep-latest slot would drop all but the last
            before = feed.handled()
            feed.publish(messages, now_ns + k * 1_000_000, valid=False)
            feed.wait_handled(before)
        outcome = f"{len(bad)} malformed frames, one at a time"
    elif fault == "clock_glitch":
        if feed.mode == "rgbd":
            for k in range(10):
                messages = dict(feed.messages[k % len(feed.messages)])
                stamp = time.time_ns() + feed.offset_ns
                messages = {"depth": messages["depth"], "camera_info": messages["camera_info"]}
                feed.publish(messages, stamp, valid=False)
                colour = {"color": feed.messages[k % len(feed.messages)]["color"]}
                feed.publish(colour, stamp + 1000 * S, valid=False)
                time.sleep(0.1)
        feed.offset_ns -= 100 * S  # then every stream jumps 100 s back (a bag loop)
        outcome = "10 colour frames +1000 s, then stamps -100 s" if feed.mode == "rgbd" else "stamps -100 s"
    elif fault == "huge_frame":
        if feed.mode == "points":
            n = 2_000_000
            xyz = rng.uniform(-50, 50, (n, 3)).astype(np.float32)
            msg = {"points": cloud_to_msg(Header(frame_id="lidar"), xyz, n, 1, intensity=np.zeros(n, np.float32))}
        else:
            h, w = 1000, 2000
            depth = np.full((h, w), 1.5, np.float32)
            k = np.array([[1000.0, 0, w / 2], [0, 1000.0, h / 2], [0, 0, 1]])
            header = Header(frame_id="camera")
            msg = {"depth": make_image(header, depth_to_millimetres(depth), "16UC1"),
                   "color": make_image(header, np.zeros((h, w, 3), np.uint8), "rgb8"),
                   "camera_info": make_camera_info(header, k, w, h)}
        before, capped = feed.handled(), feed.rejected("max_points")
        feed.publish(msg, now_ns, valid=False)
        feed.wait_handled(before, timeout_s=60.0)  # no valid frame right behind it: KEEP_LAST(1) would replace it
        time.sleep(1.5)  # the next diagnostics report
        taken = feed.rejected("max_points") > capped
        outcome = f"2,000,000 points: {'rejected by max_points' if taken else 'NOT rejected (not delivered?)'}"
    elif fault == "publisher_restart":
        feed.restart_publishers()
        outcome = "input publishers destroyed and created again"
    elif fault == "engine_load_failure":
        ok, reason = feed.set_model(str(feed.bundle.parent / "no_such_bundle"))
        assert feed.alternate is not None
        feed.bundle, feed.alternate = feed.alternate, feed.bundle
        good, why = feed.set_model(str(feed.bundle))  # a real reload: the other copy
        outcome = (f"bad model refused: {not ok} ({reason[:80]}); good model reloaded: {good}"
                   + ("" if good else f" ({why[:80]})"))
    feed.faults.append((round(t, 1), fault, outcome))


def play(feed: Feed, rate_hz: float, stop: threading.Event, faults: list[tuple[float, str]], start: float,
         fault_log: list[str]) -> None:
    """Publish the feed's valid frames at ``rate_hz`` and run its scheduled faults, until ``stop``."""
    rng = np.random.default_rng(0)
    index = 0
    pending = list(faults)
    next_time = time.monotonic()
    while not stop.is_set():
        t = time.monotonic() - start
        while pending and pending[0][0] <= t:
            _, fault = pending.pop(0)
            try:
                inject(feed, fault, t, rng)
            except Exception as exc:  # the benchmark reports a fault it could not run; it does not stop
                feed.faults.append((round(t, 1), fault, f"could not inject: {type(exc).__name__}: {exc}"))
            fault_log.append(f"[soak] {t:7.1f} s {feed.name}: {feed.faults[-1][1]} -> {feed.faults[-1][2]}")
            next_time = time.monotonic()
        messages = dict(feed.messages[index % len(feed.messages)])
        feed.publish(messages, time.time_ns() + feed.offset_ns, valid=True)
        index += 1
        next_time += 1.0 / rate_hz
        time.sleep(max(0.0, next_time - time.monotonic()))


def shm_files() -> int:
    try:  # machine-wide: other jobs' participants count too
        return sum(1 for p in Path("/dev/shm").iterdir() if "fastrtps" in p.name or "fastdds" in p.name)
    except OSError:
        return -1


def per_node(option: str, items: list[str], names: list[str]) -> dict[str, dict[str, str]]:
    """``NAME:KEY=VALUE`` items -> {name: {key: value}} for every name in ``names``."""
    out: dict[str, dict[str, str]] = {name: {} for name in names}
    for item in items:
        name, _, assignment = item.partition(":")
        key, eq, value = assignment.partition("=")
        if name not in out or not key or not eq:
            raise SystemExit(f"{option} {item!r}: expected NAME:KEY=VALUE with NAME one of {names}")
        out[name][key] = value
    return out


def make_feeds(names: list[str], env_items: list[str], param_items: list[str], domain: int,
               lidar: tuple[Path, list[dict[str, Any]]], rgbd: tuple[Path, list[dict[str, Any]]]) -> list[Feed]:
    """One :class:`Feed` per name (``lidar*`` or ``rgbd*``), each on its own ROS domain, with its ``--node-env``
    and ``--node-param``."""
    env = per_node("--node-env", env_items, names)
    params = per_node("--node-param", param_items, names)
    feeds = []
    for i, name in enumerate(names):
        if not name.startswith(("lidar", "rgbd")) or names.count(name) > 1:
            raise SystemExit(f"--nodes: {name!r} must be unique and start with 'lidar' or 'rgbd'")
        bundle, messages = lidar if name.startswith("lidar") else rgbd
        mode = "points" if name.startswith("lidar") else "rgbd"
        feeds.append(Feed(name, mode, bundle, 1 + (domain + 37 * i) % 100, messages, env=env[name],
                          params=params[name]))
    return feeds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration-s", type=float, default=3600.0)
    parser.add_argument("--rate-hz", type=float, default=10.0)
    parser.add_argument("--cycle-s", type=float, default=60.0, help="one fault per node every this many seconds")
    parser.add_argument("--warmup-s", type=float, default=None, help="default: 10 %% of the duration, >= 60 s")
    parser.add_argument("--stall-s", type=float, default=30.0,
                        help="a stall: valid frames published, no answer for this long (default %(default)s s; on a "
                             "saturated 2-core VM one LiDAR frame can take ~10 s)")
    parser.add_argument("--profile", default="tiny", help="model profile of the random-weight bundles")
    parser.add_argument("--input-qos", default="reliable", choices=("reliable", "sensor_data"),
                        help="input QoS of both nodes (sensor_data: Fast DDS drops the 32 MB 2M-point frame before "
                             "the node sees it)")
    parser.add_argument("--nodes", nargs="+", default=["lidar", "rgbd"],
                        help="node processes to feed, each named lidar* (PointCloud2) or rgbd* (depth + colour); "
                             "e.g. `rgbd rgbd_b --node-env rgbd_b:MALLOC_ARENA_MAX=2` for a controlled comparison")
    parser.add_argument("--node-env", action="append", default=[], metavar="NAME:KEY=VALUE",
                        help="an environment variable for one node process (repeatable)")
    parser.add_argument("--node-param", action="append", default=[], metavar="NAME:PARAM=VALUE",
                        help="a node parameter for one node process, over config/segment.yaml (repeatable)")
    parser.add_argument("--faults", nargs="+", default=list(FAULTS), choices=FAULTS,
                        help="the faults to cycle through (default: all)")
    parser.add_argument("--rss-window-s", type=float, default=300.0,
                        help="width of the RSS median windows (default %(default)s s)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--name", default="soak", help="results file stem")
    args = parser.parse_args()
    warmup = args.warmup_s if args.warmup_s is not None else max(60.0, 0.1 * args.duration_s)
    scans = sorted((SHARED / "semantickitti" / "sequences").glob("*/velodyne/*.bin"))
    pcds = sorted((SHARED / "mosd" / "learn").glob("*.pcd"))[:6]
    if not scans or not pcds:
        raise SystemExit(f"bench/soak.py needs {SHARED}/semantickitti and {SHARED}/mosd/learn")
    command = "nice -n 5 " + " ".join([Path(sys.executable).name, *sys.argv])
    shm_before = shm_files()
    load: list[float] = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        lidar_bundle = make_bundle(args.profile, FeatureConfig(names=("offset", "intensity")), 0.05, SEMANTIC_KITTI19,
                                   workdir)
        rgbd_bundle = make_bundle(args.profile, FeatureConfig(names=("offset", "rgb")), 0.02, MOSD, workdir)
        header = Header(frame_id="sensor")
        lidar_msgs = [frame_messages(f, "points", header) for s in scans for f in load_frames(s)]
        rgbd_msgs = [frame_messages(load_frames(p)[0].as_rgbd(), "rgbd", header) for p in pcds]
        feeds = make_feeds(args.nodes, args.node_env, args.node_param, free_domain_id(), (lidar_bundle, lidar_msgs),
                           (rgbd_bundle, rgbd_msgs))
        try:
            for feed in feeds:  # two copies per node: good reloads switch between them
                original = feed.bundle
                feed.bundle, feed.alternate = workdir / feed.name / "a", workdir / feed.name / "b"
                shutil.copytree(original, feed.bundle)
                shutil.copytree(original, feed.alternate)
                feed.start(workdir / f"{feed.name}.log", args.input_qos)
        except BaseException:
            for feed in feeds:
                if feed.process is not None:
                    feed.process.stop()
            raise
        cycles = int(args.duration_s // args.cycle_s)
        stop = threading.Event()
        fault_log: list[str] = []
        start = time.monotonic()
        threads = []
        for i, feed in enumerate(feeds):  # the nodes' faults interleave
            shift = args.cycle_s * i / len(feeds)
            schedule = [(args.cycle_s * (k + 1) - shift, args.faults[k % len(args.faults)]) for k in range(cycles)]
            threads.append(threading.Thread(target=play, daemon=True,
                                            args=(feed, args.rate_hz, stop, schedule, start, fault_log)))
        for thread in threads:
            thread.start()
        printed = 0
        while time.monotonic() - start < args.duration_s:
            time.sleep(5.0)
            now = time.monotonic()
            for feed in feeds:
                feed.sample_rss(now)
                if not feed.process.alive():
                    print(f"[soak] {feed.name} node died:\n{feed.process.log()[-3000:]}", file=sys.stderr)
            load.append(os.getloadavg()[0])
            for line in fault_log[printed:]:
                print(line, file=sys.stderr, flush=True)
            printed = len(fault_log)
            if int(now - start) % 60 < 5:
                done = ", ".join(f"{f.name} {len(f.answered)}/{len(f.sent)} answered, RSS "
                                 f"{f.rss[-1][1] / 2**20:.0f} MB" for f in feeds if f.rss)
                print(f"[soak] {(now - start) / 60:5.1f} min: {done}; load {load[-1]:.1f}", file=sys.stderr, flush=True)
        stop.set()
        for thread in threads:
            thread.join(timeout=30.0)
        time.sleep(3.0)  # the last answers and a diagnostics report
        end = time.monotonic()
        nodes = [summarise(feed, start, end, warmup, args.stall_s, args.rss_window_s) for feed in feeds]
        for feed, summary in zip(feeds, nodes, strict=True):
            feed.client.close()
            summary["exit_code"] = feed.process.stop()
            summary["log_tail"] = feed.process.log()[-1500:]
    results = {
        "machine": f"{platform.node() or 'host'}: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "duration_s": args.duration_s, "rate_hz": args.rate_hz, "cycle_s": args.cycle_s, "warmup_s": warmup,
        "stall_s": args.stall_s, "profile": args.profile, "input_qos": args.input_qos, "command": command,
        "faults": args.faults,
        "wall_s": round(end - start, 1),
        "load_average": {"start": load[0], "end": load[-1], "mean": float(np.mean(load)), "max": float(max(load))},
        "shm_files": {"before": shm_before, "after": shm_files()}, "nodes": nodes,
        "scans": [str(s.relative_to(SHARED)) for s in scans], "rgbd_frames": [p.name for p in pcds],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(results, indent=1) + "\n")
    table = markdown(results)
    (args.out / f"{args.name}.md").write_text(table)
    print(table)
    result = {f"{n['node']}_{k}": n[k] for n in nodes for k in (
        "frames_in_valid", "answered", "node_frames_rejected", "latency_ms_median", "latency_ms_p95",
        "rss_growth_pct_after_warmup", "rss_growth_pct_5min_windows", "exit_code")}
    result.update({f"{n['node']}_stalls": len(n["stalls"]) for n in nodes})
    print(f"wrote {args.out / (args.name + '.json')} and {args.name}.md")
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
