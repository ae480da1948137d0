"""``replay_node``: publishes recorded or synthetic frames like a sensor driver (for demos and tests).

Parameters: ``source`` (dataset directory, synthetic RGB-D frame(s), cloud file(s) or a ROS 2 bag
folder / ``.mcap`` / ``.db3``), ``mode`` (``points``: PointCloud2 on ``points``; ``rgbd``: Image on
``depth`` (``depth_encoding`` 16UC1 mm or 32FC1 m) and ``color`` (rgb8) + CameraInfo on ``camera_info``,
all with the same stamp), ``rate_hz``, ``loop``, ``max_frames``, ``frame_id``, ``qos``
(sensor_data | reliable), ``wait_for_subscribers_s`` (wait up to that long for a subscriber before
the first frame) and ``scene_frame`` (points mode, RGB-D frames with a recorded camera pose: publish the
organized cloud in the scene frame, z up, as a robot does after transforming its camera cloud to its base
frame).  Stamps are the node clock's ``now`` (so ``use_sim_time`` works).

Bags are republished message by message on their recorded topics with their recorded spacing
(``rate_hz`` is then a speed factor, 1.0 = real time); with ``restamp`` true every header stamp is
shifted by one offset, so frames stay synchronised.  Topic names are relative: remap them
(``-r points:=/segment_node/input/points``).
"""

from __future__ import annotations

import faulthandler
import importlib
import sys
import time
from pathlib import Path
from typing import Any

import rclpy
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from std_msgs.msg import Header

from wsseg.ros.conversions import cloud_to_msg, make_camera_info, make_image
from wsseg.ros.replay_sources import ReplayFrame, load_frames
from wsseg.ros.rgbd import depth_to_millimetres
from wsseg.ros.segment_node import make_qos

BAG_SUFFIXES = (".mcap", ".db3")


def frame_messages(frame: ReplayFrame, mode: str, header: Header, depth_encoding: str = "16UC1") -> dict[str, Any]:
    """Messages of one frame by relative topic: ``points``, or ``depth`` + ``color`` + ``camera_info``."""
    if mode == "points":
        cloud = frame.as_cloud()
        if cloud.xyz is None:
            raise ValueError(f"{frame.name}: no points")
        return {"points": cloud_to_msg(header, cloud.xyz, cloud.width, cloud.height, rgb=cloud.rgb,
                                       intensity=cloud.intensity)}
    if mode != "rgbd":
        raise ValueError(f"mode {mode!r} is not one of ['points', 'rgbd']")
    rgbd = frame.as_rgbd()
    if rgbd.depth_m is None or rgbd.colour is None or rgbd.intrinsics is None:
        raise ValueError(f"{frame.name}: not an RGB-D frame")
    if depth_encoding == "16UC1":
        depth = make_image(header, depth_to_millimetres(rgbd.depth_m), "16UC1")
    elif depth_encoding == "32FC1":
        depth = make_image(header, rgbd.depth_m.astype("<f4"), "32FC1")
    else:
        raise ValueError(f"depth_encoding {depth_encoding!r} is not one of ['16UC1', '32FC1']")
    h, w = rgbd.depth_m.shape
    return {"depth": depth, "color": make_image(header, rgbd.colour, "rgb8"),
            "camera_info": make_camera_info(header, rgbd.intrinsics, w, h)}


def is_bag(path: Path) -> bool:
    return path.suffix in BAG_SUFFIXES or (path.is_dir() and (path / "metadata.yaml").is_file())


def message_class(msgtype: str) -> type:
    """``sensor_msgs/msg/PointCloud2`` -> the rclpy message class."""
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


class ReplayNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("replay_node", **kwargs)
        self.source = Path(self.declare_parameter("source", "").value)
        self.mode = self.declare_parameter("mode", "points").value
        self.rate_hz = float(self.declare_parameter("rate_hz", 2.0).value)
        self.loop = bool(self.declare_parameter("loop", False).value)
        self.max_frames = int(self.declare_parameter("max_frames", 0).value)
        self.frame_id = self.declare_parameter("frame_id", "sensor").value
        self.depth_encoding = self.declare_parameter("depth_encoding", "16UC1").value
        self.restamp = bool(self.declare_parameter("restamp", True).value)
        self.wait_s = float(self.declare_parameter("wait_for_subscribers_s", 10.0).value)
        self.scene_frame = bool(self.declare_parameter("scene_frame", False).value)
        qos = make_qos(self.declare_parameter("qos", "sensor_data").value, depth=5)
        if not str(self.source) or not self.source.exists():
            raise ValueError(f"parameter 'source' is {str(self.source)!r}: no such file or directory")
        if not self.rate_hz > 0:
            raise ValueError(f"parameter 'rate_hz' is {self.rate_hz}, must be > 0")
        self.qos = qos
        self.publishers_by_topic: dict[str, Any] = {}

    def _publisher(self, topic: str, msg_class: type) -> Any:
        if topic not in self.publishers_by_topic:
            self.publishers_by_topic[topic] = self.create_publisher(msg_class, topic, self.qos)
        return self.publishers_by_topic[topic]

    def _wait_for_subscribers(self) -> None:
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline and rclpy.ok():
            if any(p.get_subscription_count() for p in self.publishers_by_topic.values()):
                time.sleep(0.5)  # let the subscriber's side of discovery finish too
                return
            time.sleep(0.05)
        self.get_logger().warning(f"no subscriber after {self.wait_s:.1f} s; publishing anyway")

    def run(self) -> int:
        if is_bag(self.source):
            return self._run_bag()
        frames = load_frames(self.source, limit=self.max_frames)
        if self.scene_frame:
            if self.mode != "points":
                raise ValueError("parameter 'scene_frame' needs mode 'points' (depth images stay in the camera frame)")
            frames = [frame.in_scene_frame() for frame in frames]
        types = {"points": "sensor_msgs/msg/PointCloud2"} if self.mode == "points" else {
            "depth": "sensor_msgs/msg/Image", "color": "sensor_msgs/msg/Image",
            "camera_info": "sensor_msgs/msg/CameraInfo"}
        for topic, msgtype in types.items():
            self._publisher(topic, message_class(msgtype))
        self._wait_for_subscribers()
        period = 1.0 / self.rate_hz
        sent = 0
        next_time = time.monotonic()
        while rclpy.ok():
            for frame in frames:
                header = Header(frame_id=self.frame_id, stamp=self.get_clock().now().to_msg())
                for topic, msg in frame_messages(frame, self.mode, header, self.depth_encoding).items():
                    self.publishers_by_topic[topic].publish(msg)
                sent += 1
                next_time += period
                time.sleep(max(0.0, next_time - time.monotonic()))
            if not self.loop:
                break
        self.get_logger().info(f"replayed {sent} frame(s) from {self.source} ({self.mode}, {self.rate_hz} Hz)")
        return 0

    def _run_bag(self) -> int:
        from rclpy.serialization import deserialize_message
        from rosbags.highlevel import AnyReader

        sent = 0
        with AnyReader([self.source]) as reader:
            connections = list(reader.connections)
            classes = {c.topic: message_class(c.msgtype) for c in connections}
            for topic, msg_class in classes.items():
                self._publisher(topic, msg_class)
            self._wait_for_subscribers()
            offset: Duration | None = None
            start_wall, start_bag = time.monotonic(), None
            for connection, bag_time_ns, raw in reader.messages(connections=connections):
                if self.max_frames and sent >= self.max_frames:
                    break
                start_bag = bag_time_ns if start_bag is None else start_bag
                delay = (bag_time_ns - start_bag) / 1e9 / self.rate_hz - (time.monotonic() - start_wall)
                if delay > 0:
                    time.sleep(delay)
                msg = deserialize_message(bytes(raw), classes[connection.topic])
                if self.restamp and hasattr(msg, "header"):
                    stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                    if offset is None:
                        offset = Duration(nanoseconds=self.get_clock().now().nanoseconds - stamp_ns)
                    shifted = stamp_ns + offset.nanoseconds
                    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(shifted, 1_000_000_000)
                self.publishers_by_topic[connection.topic].publish(msg)
                sent += 1
        self.get_logger().info(f"replayed {sent} message(s) from bag {self.source}")
        return 0


def main(args: list[str] | None = None) -> int:
    faulthandler.enable()  # a crash in native code prints every thread's stack to stderr
    rclpy.init(args=args)
    code = 0
    node = None
    try:
        node = ReplayNode()
        code = node.run()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, OSError) as exc:
        rclpy.logging.get_logger("replay_node").fatal(str(exc))
        code = 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
