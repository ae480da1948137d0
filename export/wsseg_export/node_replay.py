"""Replay frames through a real ``segment_node`` process and collect its outputs and per-stage timings.

Workstation-side orchestration (it starts processes and drives them), so it lives here and not in the
robot package ``wsseg``; it imports only ``wsseg`` and rclpy.  Used by ``wsseg demo`` (``make demo``),
``bench/node.py`` and the ROS 2 node tests (``NodeProcess``, ``NodeClient``, ``start_segment_node``,
``free_domain_id``, ``decode_labels``)::

    stats = run_replay(bundle, frames, "config/segment.yaml", mode="rgbd")
    stats.summary()   # {"frames_sent", "frames_received", "rate_hz", "pre_ms_median", ..., "total_ms_p95"}

The node is started exactly as the launch file starts it (``--ros-args --params-file FILE -p model:=BUNDLE``)
in its own process, on its own ``ROS_DOMAIN_ID`` (localhost discovery only); this process publishes the
frames (PointCloud2, or depth + colour + camera_info with one stamp) and subscribes to
``~/output/points``, ``~/output/label_image`` and ``~/output/timing``, matching outputs to inputs by stamp.

``rate_hz`` 0 replays closed-loop (next frame once the previous one is answered; a lost best-effort
frame is sent again), the per-frame latency measurement; ``rate_hz`` > 0 publishes open-loop at that
rate, which measures the sustained rate and shows that the node drops frames instead of queueing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wsseg.ros.replay_sources import ReplayFrame, load_frames

NODE_NAME = "segment_node"
#: Fast DDS profile with a large shared-memory segment (multi-megabyte best-effort frames); see the file
FASTDDS_PROFILE = Path(__file__).resolve().parents[2] / "config" / "fastdds_large_messages.xml"
STAGES = ("pre", "inference", "post", "total", "wait")


#: domain ids this process has handed out; a module-scoped test node keeps its domain while later tests start more
_ISSUED_DOMAINS: set[int] = set()


def free_domain_id(issued: set[int] = _ISSUED_DOMAINS) -> int:
    """A ROS domain id in 1..100 not in ``issued`` (by default: not handed out before by this process), added to
    it, and unlikely to collide with other processes of this machine (the start point comes from the pid and the
    clock).

    Two live nodes on one domain answer each other's clients: a test then reads another node's diagnostics.
    """
    start = (os.getpid() * 7 + int(time.monotonic() * 1000)) % 100
    if len(issued) >= 100:
        issued.clear()  # a long-lived process that started 100 nodes: the oldest are long gone
    domain = next(1 + (start + k) % 100 for k in range(100) if 1 + (start + k) % 100 not in issued)
    issued.add(domain)
    return domain


def fastdds_environment(profile: Path) -> dict[str, str]:
    """Variables that make Fast DDS use ``profile`` fully: its transports, and (``RMW_FASTRTPS_USE_QOS_FROM_XML``)
    its history memory policy, which rmw_fastrtps otherwise overrides."""
    return {"FASTDDS_DEFAULT_PROFILES_FILE": str(profile), "RMW_FASTRTPS_USE_QOS_FROM_XML": "1"}


def ros_env(domain_id: int, fastdds_profile: Path | None = None,
            extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of a node process on ``domain_id`` with discovery kept on this host (plus ``extra``, which wins
    over ``fastdds_profile``)."""
    env = dict(os.environ)
    if fastdds_profile is not None:
        env.update(fastdds_environment(fastdds_profile))
    env.update(extra or {})  # the caller's variables win (e.g. another FASTDDS_DEFAULT_PROFILES_FILE)
    env.update({"ROS_DOMAIN_ID": str(domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                "RCUTILS_LOGGING_BUFFERED_STREAM": "0", "PYTHONUNBUFFERED": "1"})
    env.pop("ROS_LOCALHOST_ONLY", None)
    return env


class NodeProcess:
    """``python -m wsseg.ros.<module> --ros-args ...`` in a child process; ``stop()`` sends SIGINT.

    ``env``: variables added to this process's environment for the child (e.g. ``MALLOC_ARENA_MAX``).
    """

    def __init__(self, module: str, ros_args: Sequence[str], domain_id: int, log_path: Path | None = None,
                 fastdds_profile: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.command = [sys.executable, "-m", f"wsseg.ros.{module}", "--ros-args", *ros_args]
        self.log_path = log_path
        self._log = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(self.command, env=ros_env(domain_id, fastdds_profile, env),
                                        stdout=self._log,
                                        stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def stop(self, timeout_s: float = 60.0) -> int:
        if self.alive():
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if hasattr(self._log, "close"):
            self._log.close()  # type: ignore[union-attr]
        return int(self.process.returncode)

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_segment_node(bundle: str | Path, params_file: str | Path, domain_id: int,
                       extra_params: dict[str, Any] | None = None, log_path: Path | None = None,
                       fastdds_profile: Path | None = None, env: dict[str, str] | None = None) -> NodeProcess:
    """The node as ``segment.launch.py`` starts it: the params file, then ``model`` (and overrides)."""
    args = ["--params-file", str(params_file), "-p", f"model:={bundle}"]
    for name, value in (extra_params or {}).items():
        args += ["-p", f"{name}:={str(value).lower() if isinstance(value, bool) else value}"]
    return NodeProcess("segment_node", args, domain_id, log_path, fastdds_profile, env)


class NodeClient:
    """An in-process rclpy node (own context, own spinning thread) that feeds and watches the segment node."""

    def __init__(self, domain_id: int, mode: str = "points", input_qos: str = "sensor_data",
                 node_name: str = NODE_NAME, keep_outputs: bool = True, fastdds_profile: Path | None = None) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        from wsseg.ros.segment_node import make_qos

        if fastdds_profile is not None:  # read when the context creates its participant
            os.environ.update(fastdds_environment(fastdds_profile))
        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("wsseg_replay_client", context=self.context)
        self.mode = mode
        self.keep_outputs = keep_outputs
        self.lock = threading.Lock()
        self.points: dict[int, Any] = {}
        self.label_images: dict[int, Any] = {}
        self.timings: dict[int, dict[str, float]] = {}
        self.diagnostics: list[Any] = []
        self.arrivals: list[float] = []
        base = f"/{node_name}"
        qos = make_qos(input_qos, depth=1 if mode == "points" else 5)
        if mode == "points":
            self.inputs = {"points": self.node.create_publisher(PointCloud2, f"{base}/input/points", qos)}
        else:
            self.inputs = {"depth": self.node.create_publisher(Image, f"{base}/input/depth", qos),
                           "color": self.node.create_publisher(Image, f"{base}/input/color", qos),
                           "camera_info": self.node.create_publisher(CameraInfo, f"{base}/input/camera_info", qos)}
        out_qos = make_qos("sensor_data", depth=10)  # best effort matches either output QoS
        self.node.create_subscription(PointCloud2, f"{base}/output/points", self._on_points, out_qos)
        self.node.create_subscription(DiagnosticArray, f"{base}/output/timing", self._on_timing, out_qos)
        if mode == "rgbd":
            self.node.create_subscription(Image, f"{base}/output/label_image", self._on_label_image, out_qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        with contextlib.suppress(Exception):  # the context is shut down under the executor by close()
            self.executor.spin()

    @staticmethod
    def _stamp(msg: Any) -> int:
        return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)

    def _on_points(self, msg: Any) -> None:
        with self.lock:
            self.points[self._stamp(msg)] = msg if self.keep_outputs else True
            self.arrivals.append(time.monotonic())

    def _on_label_image(self, msg: Any) -> None:
        with self.lock:
            self.label_images[self._stamp(msg)] = msg if self.keep_outputs else True

    def _on_timing(self, msg: Any) -> None:
        values = {kv.key: kv.value for kv in msg.status[0].values}
        with self.lock:
            self.timings[self._stamp(msg)] = {k[:-3]: float(v) for k, v in values.items() if k.endswith("_ms")}

    def _on_diagnostics(self, msg: Any) -> None:
        with self.lock:
            self.diagnostics.extend(s for s in msg.status if s.name.endswith(": segmentation"))

    def wait_for_node(self, timeout_s: float = 30.0) -> bool:
        """True once the node subscribes to every input and publishes the outputs we watch."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(p.get_subscription_count() for p in self.inputs.values()) and self.node.count_publishers(
                    f"/{NODE_NAME}/output/points"):
                time.sleep(0.5)  # the node's side of discovery
                return True
            time.sleep(0.05)
        return False

    def publish(self, messages: dict[str, Any]) -> None:
        for topic, msg in messages.items():
            self.inputs[topic].publish(msg)

    def answered(self, stamp: int) -> bool:
        with self.lock:
            return stamp in self.points and (self.mode == "points" or stamp in self.label_images)

    def wait_until(self, predicate: Any, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return bool(predicate())

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=2.0)


@dataclass
class ReplayStats:
    """What a replay measured.  labels / label_images: per sent frame, None when no answer came."""

    mode: str
    frames_sent: int
    frames_received: int
    wall_s: float
    timings_ms: list[dict[str, float]] = field(default_factory=list)
    labels: list[np.ndarray | None] = field(default_factory=list)
    label_images: list[np.ndarray | None] = field(default_factory=list)
    stamps: list[int] = field(default_factory=list)
    diagnostics: dict[str, str] = field(default_factory=dict)
    rate_hz: float = 0.0

    def summary(self) -> dict[str, float]:
        out: dict[str, float] = {"frames_sent": self.frames_sent, "frames_received": self.frames_received,
                                 "rate_hz": round(self.rate_hz, 3)}
        for stage in STAGES:
            samples = [t[stage] for t in self.timings_ms if stage in t]
            if samples:
                out[f"{stage}_ms_median"] = round(float(np.median(samples)), 2)
                out[f"{stage}_ms_p95"] = round(float(np.percentile(samples, 95)), 2)
        return out


def decode_labels(msg: Any) -> np.ndarray:
    """(N,) uint16 ``label`` field of an output PointCloud2."""
    from wsseg.core.pointcloud2_fields import decode_fields

    spec = next((f.name, f.offset, f.datatype, f.count) for f in msg.fields if f.name == "label")
    return decode_fields([spec], np.frombuffer(msg.data, dtype=np.uint8), point_step=msg.point_step,
                         row_step=msg.row_step, width=msg.width, height=msg.height)["label"]


def decode_label_image(msg: Any) -> np.ndarray:
    """(H, W) uint16 of a mono16 label image."""
    return np.frombuffer(msg.data, dtype="<u2").reshape(msg.height, msg.step // 2)[:, :msg.width].copy()


def run_replay(bundle: str | Path, frames: Sequence[ReplayFrame] | str | Path, params_file: str | Path,
               mode: str = "points", rate_hz: float = 0.0, repeat: int = 1, domain_id: int | None = None,
               extra_params: dict[str, Any] | None = None, collect_labels: bool = True,
               depth_encoding: str = "16UC1", timeout_s: float = 120.0, log_path: Path | None = None,
               fastdds_profile: Path | None = FASTDDS_PROFILE) -> ReplayStats:
    """Start a segment node, replay ``frames`` (``repeat`` times) through it, stop it; see the module docstring.

    frames: :class:`ReplayFrame` objects or a path for :func:`load_frames`.  ``mode`` must match the node's
    ``input_mode`` (it is passed as an override).  Raises ``RuntimeError`` with the node's log when the node
    does not come up.  ``fastdds_profile`` (both processes; None = Fast DDS defaults): the default lets
    multi-megabyte best-effort frames through shared memory; it sets ``FASTDDS_DEFAULT_PROFILES_FILE`` in
    this process too, which Fast DDS reads only once per process (before the first rclpy context).
    """
    from std_msgs.msg import Header

    from wsseg.ros.replay_node import frame_messages

    if not isinstance(frames, Sequence):
        frames = load_frames(frames)
    frames = list(frames)
    if not frames:
        raise ValueError("run_replay: no frames")
    domain_id = free_domain_id() if domain_id is None else domain_id
    params = {"input_mode": mode, **(extra_params or {})}
    input_qos = str(params.get("input_qos", "sensor_data"))
    node = start_segment_node(bundle, params_file, domain_id, params, log_path, fastdds_profile)
    client = None
    try:
        client = NodeClient(domain_id, mode=mode, input_qos=input_qos, keep_outputs=collect_labels,
                            fastdds_profile=fastdds_profile)
        if not client.wait_for_node(timeout_s=60.0) or not node.alive():
            raise RuntimeError(f"segment_node did not come up (alive: {node.alive()}); log:\n{node.log()}")
        deadline = time.monotonic() + timeout_s
        base_ns = time.time_ns() // 1_000_000_000 * 1_000_000_000
        stamps: list[int] = []
        start = time.monotonic()
        sequence = [frame for _ in range(repeat) for frame in frames]
        encoded = {}
        for index, frame in enumerate(sequence):
            stamp = base_ns + (index + 1) * 1_000_000  # 1 ms apart, unique per frame
            header = Header(frame_id="sensor")
            header.stamp.sec, header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            key = id(frame)
            if key not in encoded:
                encoded[key] = frame_messages(frame, mode, Header(frame_id="sensor"), depth_encoding)
            messages = encoded[key]
            for msg in messages.values():
                msg.header = header
            stamps.append(stamp)
            if rate_hz > 0:
                client.publish(messages)
                time.sleep(max(0.0, start + (index + 1) / rate_hz - time.monotonic()))
                continue
            while time.monotonic() < deadline and not client.answered(stamp):
                client.publish(messages)
                client.wait_until(lambda s=stamp: client.answered(s), timeout_s=3.0)
                if not node.alive():
                    raise RuntimeError(f"segment_node exited with {node.process.returncode}; log:\n{node.log()}")
        if rate_hz > 0:  # let the last frame through
            client.wait_until(lambda: client.answered(stamps[-1]),
                              timeout_s=min(30.0, max(0.0, deadline - time.monotonic())))
        client.wait_until(lambda: False, timeout_s=0.2)
        wall = time.monotonic() - start
        with client.lock:
            received = [s for s in stamps if s in client.points]
            arrivals = list(client.arrivals)
            stats = ReplayStats(mode, len(stamps), len(received), wall, stamps=stamps,
                                timings_ms=[client.timings[s] for s in stamps if s in client.timings])
            if collect_labels:
                stats.labels = [decode_labels(client.points[s]) if s in client.points else None for s in stamps]
                if mode == "rgbd":
                    stats.label_images = [decode_label_image(client.label_images[s]) if s in client.label_images
                                          else None for s in stamps]
            if client.diagnostics:
                stats.diagnostics = {kv.key: kv.value for kv in client.diagnostics[-1].values}
        if len(arrivals) >= 2:
            stats.rate_hz = (len(arrivals) - 1) / max(arrivals[-1] - arrivals[0], 1e-9)
        return stats
    finally:
        if client is not None:
            client.close()
        node.stop()
