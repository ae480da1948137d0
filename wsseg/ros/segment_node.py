"""``segment_node``: labels PointCloud2 or RGB-D streams with a model bundle (ROS glue only).

Inputs (``input_mode``):

* ``points``: ``~/input/points`` (sensor_msgs/PointCloud2, any field order/padding, organized or not);
* ``rgbd``: ``~/input/depth`` (Image 16UC1 mm or 32FC1 m), ``~/input/color`` (Image rgb8/bgr8, same size),
  ``~/input/camera_info`` (CameraInfo), matched by :class:`wsseg.ros.sync.ApproximateSync`.

Outputs: ``~/output/points`` (x, y, z float32, confidence float32, label uint16; header, width and height
of the input; invalid or cropped points keep their coordinates, label 65535, confidence 0),
``~/output/visualization`` (x, y, z, rgb from the class palette), ``~/output/label_image`` (rgbd: mono16,
65535 = unlabelled), ``~/output/timing`` (diagnostic_msgs/DiagnosticArray per frame, input header, stage
times in ms), ``~/output/classes`` (std_msgs/String JSON class table, transient local), ``/diagnostics``.

Callbacks only decode headers and put the message into a keep-latest slot; a worker thread does the
decoding, inference and publishing, so the executor never blocks and no backlog forms.  An output is
built only when it has subscribers; with none at all, frames are not processed.

Hostile input never stops the node: a frame that cannot be read, or is larger than ``max_points``, is
rejected (logged with throttling, counted by cause in ``/diagnostics``) and the next one is processed;
points that cannot be segmented (non-finite, beyond ``max_range_m``, beyond what the voxel grid can
index) come out unlabelled.  The RGB-D synchroniser expires messages in ROS time and resets on clock
jumps; inputs that arrive without any frame being answered raise a diagnostics WARN, then ERROR.
Setting ``model``, ``engine`` or ``num_threads`` on a running node loads the new engine; a load
failure refuses the change and keeps the old engine.
"""

from __future__ import annotations

import faulthandler
import json
import os
import sys
import threading
import time
from dataclasses import replace
from functools import lru_cache
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import String

from wsseg.core import backend
from wsseg.core.bundle import BundleError
from wsseg.core.transforms import pose_matrix
from wsseg.ros.conversions import (
    ATTRIBUTES,
    CloudArrays,
    FrameError,
    check_point_count,
    cloud_from_msg,
    colour_from_msg,
    depth_from_msg,
    intrinsics_from_msg,
    make_image,
    make_pointcloud2,
)
from wsseg.ros.diagnostics import NodeStats
from wsseg.ros.memory import MemoryTrace, MemoryTrimmer, NoTrace
from wsseg.ros.params import (
    PARAMS,
    PARAMS_BY_NAME,
    NodeConfig,
    ParameterError,
    ParamSpec,
    config_from_values,
    max_points_for,
)
from wsseg.ros.pipeline import (
    FrameResult,
    Limits,
    classes_payload,
    output_fields,
    segment_frame,
    visualization_fields,
)
from wsseg.ros.rgbd import Backprojector, label_image
from wsseg.ros.slot import KeepLatestSlot
from wsseg.ros.sync import STREAMS, ApproximateSync, Matched
from wsseg.runtime.heap import keep_freed_memory
from wsseg.runtime.segmenter import Segmenter

NODE_NAME = "segment_node"
LOG_THROTTLE_S = 5.0
#: parameters rclpy itself may receive from launch files
_FOREIGN_PARAMS = {"use_sim_time", "start_type_description_service"}
#: parameters whose change loads a new engine
_ENGINE_PARAMS = ("model", "engine", "num_threads")


def make_qos(name: str, depth: int = 1) -> QoSProfile:
    """``sensor_data``: best effort, keep last ``depth``; ``reliable``: reliable, keep last ``depth``."""
    reliability = ReliabilityPolicy.BEST_EFFORT if name == "sensor_data" else ReliabilityPolicy.RELIABLE
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability,
                      durability=DurabilityPolicy.VOLATILE)


@lru_cache(maxsize=4)
def _model_pose(xyz_rpy: tuple[float, ...]) -> np.ndarray | None:
    """:func:`pose_matrix` once per parameter value (read only), not once per frame."""
    pose = pose_matrix(xyz_rpy)
    if pose is not None:
        pose.setflags(write=False)
    return pose


def _descriptor(spec: ParamSpec) -> ParameterDescriptor:
    constraints = f"one of {list(spec.choices)}" if spec.choices else ""
    descriptor = ParameterDescriptor(name=spec.name, description=spec.description, read_only=spec.read_only,
                                     additional_constraints=constraints)
    if spec.min_value is not None and spec.max_value is not None:
        if isinstance(spec.default, float):
            descriptor.floating_point_range = [FloatingPointRange(from_value=float(spec.min_value),
                                                                  to_value=float(spec.max_value), step=0.0)]
        elif isinstance(spec.default, int) and not isinstance(spec.default, bool):
            descriptor.integer_range = [IntegerRange(from_value=int(spec.min_value), to_value=int(spec.max_value),
                                                     step=1)]
    return descriptor


def stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


class SegmentNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.config = self._declare_parameters()
        mmap_mb = self.config.malloc_mmap_threshold_mb  # before the engine loads: a fixed threshold, no ratchet
        self._malloc_policy = (f"mmap threshold fixed at {mmap_mb} MiB" if keep_freed_memory(
            mmap_threshold_bytes=mmap_mb * 2**20) else "glibc default (WSSEG_KEEP_HEAP=0 or not glibc)")
        backend.set_threads(self.config.preprocess_threads)
        self.segmenter = self._load_segmenter(self.config)
        self.stats = (NodeStats(primary="depth", streams=STREAMS) if self.config.input_mode == "rgbd"
                      else NodeStats(primary="points"))
        self._backproject = Backprojector()
        self.slot: KeepLatestSlot[tuple[str, Any, float]] = KeepLatestSlot()
        self._last_log: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        trace = MemoryTrace.from_environment()  # WSSEG_MEMORY_TRACE=PATH: a debugging trace, off by default
        self._memory: MemoryTrace | NoTrace = trace or NoTrace()
        self._trimmer = MemoryTrimmer(self.config.memory_trim_period_s)

        out_qos = make_qos(self.config.output_qos)
        self.pub_points = self.create_publisher(PointCloud2, "~/output/points", out_qos)
        self.pub_vis = self.create_publisher(PointCloud2, "~/output/visualization", out_qos)
        self.pub_timing = self.create_publisher(DiagnosticArray, "~/output/timing", out_qos)
        self.pub_label_image = (self.create_publisher(Image, "~/output/label_image", out_qos)
                                if self.config.input_mode == "rgbd" else None)
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_classes = self.create_publisher(String, "~/output/classes", latched)
        self.pub_classes.publish(String(data=json.dumps(classes_payload(self.segmenter.classes))))
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._outputs = [p for p in (self.pub_points, self.pub_vis, self.pub_timing, self.pub_label_image) if p]

        if self.config.input_mode == "points":
            self.create_subscription(PointCloud2, "~/input/points", self._on_points, make_qos(self.config.input_qos))
            inputs = "~/input/points"
        else:
            self.sync: ApproximateSync[Any] = ApproximateSync(self.config.sync_slop_s, self.config.sync_queue_size,
                                                              self.config.sync_expiry_s,
                                                              self.config.clock_jump_threshold_s)
            qos = make_qos(self.config.input_qos, depth=self.config.sync_queue_size)
            self.create_subscription(Image, "~/input/depth", lambda m: self._on_rgbd("depth", m), qos)
            self.create_subscription(Image, "~/input/color", lambda m: self._on_rgbd("color", m), qos)
            self.create_subscription(CameraInfo, "~/input/camera_info", lambda m: self._on_rgbd("camera_info", m), qos)
            inputs = "~/input/depth, ~/input/color, ~/input/camera_info"
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_timer(self.config.diagnostics_period_s, self._publish_diagnostics)
        self._worker = threading.Thread(target=self._work, name="segment_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"model {self.config.model} ({self.segmenter.classes.num_classes} classes, features "
            f"{list(self.segmenter.input_features)}, sensor {self.segmenter.bundle.meta.sensor}), engine "
            f"{self._engine_info['active']}, input {self.config.input_mode} ({inputs}, qos {self.config.input_qos}), "
            f"max_points {max_points_for(self.config, self.segmenter.bundle.meta.sensor)}")

    def _load_segmenter(self, config: NodeConfig) -> Segmenter:
        """A Segmenter for ``config``'s model and engine (raises BundleError/ValueError/OSError)."""
        segmenter = Segmenter(config.model, engine=config.engine, num_threads=config.num_threads)
        choice = segmenter.engine.choice
        if choice.fallback_reason:
            self.get_logger().warning(f"engine '{choice.requested}' unavailable: {choice.fallback_reason}")
        self._engine_info = {"requested": choice.requested, "active": choice.active,
                             "fallback": choice.fallback_reason or "none"}
        return segmenter

    # ------------------------------------------------------------------------------------------- parameters
    def _declare_parameters(self) -> NodeConfig:
        values: dict[str, Any] = {}
        for spec in PARAMS:
            try:
                default = list(spec.default) if isinstance(spec.default, tuple) else spec.default
                values[spec.name] = self.declare_parameter(spec.name, default, _descriptor(spec)).value
            except Exception as exc:  # rclpy raises InvalidParameter{Type,Value}Exception for bad overrides
                raise ParameterError(f"parameter '{spec.name}': {exc}") from None
        overrides = set(getattr(self, "_parameter_overrides", {}))
        unknown = sorted(overrides - set(PARAMS_BY_NAME) - _FOREIGN_PARAMS)
        if unknown:
            self.get_logger().warning(f"ignoring unknown parameter(s) {unknown}; known: {sorted(PARAMS_BY_NAME)}")
        return config_from_values(values)

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        values = {name: getattr(self.config, name) for name in PARAMS_BY_NAME}
        for parameter in parameters:
            if parameter.name in PARAMS_BY_NAME:
                values[parameter.name] = parameter.value
        try:
            config = config_from_values(values)
        except ParameterError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        if any(getattr(config, name) != getattr(self.config, name) for name in _ENGINE_PARAMS):
            engine_info = dict(self._engine_info)
            try:  # the executor waits for the load; the worker keeps segmenting with the old engine meanwhile
                segmenter = self._load_segmenter(config)
            except Exception as exc:  # any load failure (bundle, ONNX Runtime, provider) leaves the node as it was
                self._engine_info = engine_info
                message = f"engine reload refused, keeping {self.config.model} ({engine_info['active']}): {exc}"
                self.stats.record_error("engine_reload", message)
                self.get_logger().error(message)
                return SetParametersResult(successful=False, reason=message)
            self.segmenter = segmenter
            self.pub_classes.publish(String(data=json.dumps(classes_payload(segmenter.classes))))
            self.get_logger().info(f"loaded model {config.model} (engine {self._engine_info['active']})")
        if config.memory_trim_period_s != self.config.memory_trim_period_s:
            self._trimmer = MemoryTrimmer(config.memory_trim_period_s)
        self.config = replace(config)
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------------------------------- callbacks
    def _has_subscribers(self) -> bool:
        return any(p.get_subscription_count() > 0 for p in self._outputs)

    def _on_points(self, msg: PointCloud2) -> None:
        self.stats.record_arrival("points")
        if not self._has_subscribers():
            self.stats.record_skipped()
            return
        self.stats.expect_output()
        if self.slot.put(("points", msg, time.perf_counter())):
            self.stats.record_dropped()

    def _on_rgbd(self, stream: str, msg: Image | CameraInfo) -> None:
        self.stats.record_arrival(stream)
        if stream == "depth":
            if not self._has_subscribers():
                self.stats.record_skipped()
                return
            self.stats.expect_output()
        before = self.sync.unmatched
        matched = self.sync.add(stream, stamp_ns(msg.header), msg, now_ns=self.get_clock().now().nanoseconds)
        if self.sync.unmatched > before:
            self.stats.record_dropped(self.sync.unmatched - before)
        if matched is not None and self.slot.put(("rgbd", matched, time.perf_counter())):
            self.stats.record_dropped()

    # ------------------------------------------------------------------------------------------- worker
    def _work(self) -> None:
        while not self.slot.closed:
            item = self.slot.take(timeout=0.2)
            if item is None:
                continue
            try:
                self._process(*item)
            except FrameError as exc:
                self._reject(exc.cause, str(exc))
            except Exception as exc:  # keep running whatever a frame does; the log names it
                self._reject(type(exc).__name__, f"unexpected {type(exc).__name__} while processing a frame: {exc}")
            finally:
                del item  # the frame's buffers go before the trim, not after the next frame
                self._trimmer.after_frame()  # between frames: give the memory freed since back to the system
                self._memory.after_frame()  # the trace's floor: bytes in use with no frame in flight

    def _reject(self, cause: str, message: str) -> None:
        self.stats.record_rejected(cause, message)
        now = time.monotonic()
        if now - self._last_log.get(cause, -1e9) >= LOG_THROTTLE_S:
            suppressed = self._suppressed.pop(cause, 0)
            extra = f" ({suppressed} more since the last report)" if suppressed else ""
            self.get_logger().error(f"frame rejected: {message}{extra}")
            self._last_log[cause] = now
        else:
            self._suppressed[cause] = self._suppressed.get(cause, 0) + 1

    def _decode(self, kind: str, payload: Any, segmenter: Segmenter) -> tuple[Any, CloudArrays]:
        max_points = max_points_for(self.config, segmenter.bundle.meta.sensor)
        if kind == "points":
            attributes = tuple(a for a in ATTRIBUTES if a in segmenter.input_features)
            return payload.header, cloud_from_msg(payload, where=self.resolve_topic_name("~/input/points"),
                                                  attributes=attributes, max_points=max_points)
        matched: Matched[Any] = payload
        check_point_count(int(matched.depth.width), int(matched.depth.height), max_points,
                          self.resolve_topic_name("~/input/depth"))
        depth = depth_from_msg(matched.depth, where=self.resolve_topic_name("~/input/depth"))
        colour = colour_from_msg(matched.color, where=self.resolve_topic_name("~/input/color"))
        intrinsics = intrinsics_from_msg(matched.camera_info, where=self.resolve_topic_name("~/input/camera_info"))
        h, w = depth.shape
        if colour.shape[:2] != (h, w):
            raise FrameError(f"{self.resolve_topic_name('~/input/color')}: image is {colour.shape[1]}x"
                             f"{colour.shape[0]}, depth is {w}x{h} (a registered colour image is needed)", "size")
        info = matched.camera_info
        if info.width and info.height and (info.width, info.height) != (w, h):
            raise FrameError(f"{self.resolve_topic_name('~/input/camera_info')}: {info.width}x{info.height}, depth "
                             f"is {w}x{h}", "size")
        xyz = self._backproject(depth, intrinsics)  # rays cached, buffer reused across frames
        return matched.depth.header, CloudArrays(xyz, colour.reshape(-1, 3), None, w, h)

    def _process(self, kind: str, payload: Any, arrival: float) -> None:
        start = time.perf_counter()
        segmenter = self.segmenter  # a reload swaps it between frames, never during one
        with self._memory.stage("decode"):
            header, cloud = self._decode(kind, payload, segmenter)
        decoded = time.perf_counter()
        config = self.config
        limits = Limits(config.min_range_m, config.max_range_m, max_points_for(config, segmenter.bundle.meta.sensor))
        with self._memory.stage("segment"):
            result = segment_frame(segmenter, cloud, limits, where=f"frame {stamp_ns(header)}",
                                   to_model=_model_pose(config.model_frame_transform))
        segmented = time.perf_counter()
        with self._memory.stage("publish"):
            self._publish(header, cloud, result, segmenter)
        done = time.perf_counter()
        seg = result.timings_ms
        timings = {
            "pre": (decoded - start) * 1e3 + seg["pre"],
            "inference": seg["inference"],
            "post": seg["post"] + (done - segmented) * 1e3,
            "total": (done - start) * 1e3,
            "wait": (start - arrival) * 1e3,
        }
        self.stats.record_frame(timings)
        if self.pub_timing.get_subscription_count():
            values = [KeyValue(key=f"{k}_ms", value=f"{v:.3f}") for k, v in timings.items()]
            values += [KeyValue(key="points", value=str(cloud.xyz.shape[0])),
                       KeyValue(key="valid_points", value=str(result.valid_points))]
            status = DiagnosticStatus(level=DiagnosticStatus.OK, name="timing", message="",
                                      hardware_id=self._engine_info["active"], values=values)
            self.pub_timing.publish(DiagnosticArray(header=header, status=[status]))

    def _publish(self, header: Any, cloud: CloudArrays, result: FrameResult, segmenter: Segmenter) -> None:
        """The labelled cloud, the visualization cloud and the label image, each only when subscribed."""
        if self.pub_points.get_subscription_count():
            fields = output_fields(cloud.xyz, result.labels, result.confidence, result.instance)
            self.pub_points.publish(make_pointcloud2(header, fields, cloud.width, cloud.height))
        if self.pub_vis.get_subscription_count():
            self.pub_vis.publish(make_pointcloud2(
                header, visualization_fields(cloud.xyz, result.labels, segmenter.classes),
                cloud.width, cloud.height))
        if self.pub_label_image is not None and self.pub_label_image.get_subscription_count():
            self.pub_label_image.publish(make_image(
                header, label_image(result.labels, cloud.width, cloud.height), "mono16"))

    # ------------------------------------------------------------------------------------------- diagnostics
    def _publish_diagnostics(self) -> None:
        config = self.config
        extra = {"max_points": str(max_points_for(config, self.segmenter.bundle.meta.sensor)),
                 "model": config.model, "memory_trims": str(self._trimmer.trims),
                 "memory_trim_last_ms": f"{self._trimmer.last_ms:.1f}", "malloc_policy": self._malloc_policy}
        if config.input_mode == "rgbd":
            extra.update({"sync_matched": str(self.sync.matched), "sync_unmatched": str(self.sync.unmatched),
                          "sync_expired": str(self.sync.expired), "sync_resets": str(self.sync.resets)})
        status = self.stats.status(config.time_budget_warn_ms, config.time_budget_error_ms, self._engine_info,
                                   stall_warn_s=config.stall_warn_s, stall_error_s=config.stall_error_s, extra=extra)
        message = DiagnosticStatus(
            level=bytes([status.level]), name=f"{self.get_fully_qualified_name()}: segmentation",
            message=status.message, hardware_id=self._engine_info["active"],
            values=[KeyValue(key=k, value=v) for k, v in status.values.items()])
        array = DiagnosticArray(status=[message])
        array.header.stamp = self.get_clock().now().to_msg()
        self.pub_diagnostics.publish(array)
        self._memory.maybe_report(self._held_inputs)

    def _held_inputs(self) -> dict[str, Any]:
        """What the node holds of its input for the memory trace: the keep-latest slot, the sync queues (bytes)."""
        held: dict[str, Any] = {"frames_processed": self.stats.processed, "slot_full": self.slot.full}
        if self.config.input_mode == "rgbd":
            held["sync_queued"] = {s: [len(self.sync.queues[s]), sum(len(getattr(e.msg, "data", b""))
                                                                     for e in list(self.sync.queues[s]))]
                                   for s in STREAMS}
        return held

    def close(self, timeout_s: float = 120.0) -> bool:
        """Stop the worker after its current frame; True when it has stopped.

        The wait is generous: a daemon thread still inside ONNX Runtime or rclpy when the
        interpreter finalizes crashes the process, so shutting down waits out one inference.
        """
        self.slot.close()
        self._worker.join(timeout=timeout_s)
        return not self._worker.is_alive()


def main(args: list[str] | None = None) -> int:
    faulthandler.enable()  # a crash in native code (DDS, ONNX Runtime) prints every thread's stack to stderr
    rclpy.init(args=args)
    heap_kept = keep_freed_memory()  # steady frames reuse their memory: no page faults per frame
    try:
        node = SegmentNode()
    except (ParameterError, BundleError, ValueError, OSError) as exc:
        rclpy.logging.get_logger(NODE_NAME).fatal(str(exc))
        rclpy.try_shutdown()
        return 1
    node.get_logger().info("freed frame memory stays in the heap (WSSEG_KEEP_HEAP=0 turns this off)" if heap_kept
                           else "allocator settings unchanged (WSSEG_KEEP_HEAP=0 or not glibc)")
    if node.config.build_only:  # image builds / first boot: build the engine cache, then stop
        try:
            warm_ms = node.segmenter.warm_up()
            node.get_logger().info(f"build_only: engine {node.segmenter.engine.name} ready, warm-up frame "
                                   f"{warm_ms:.0f} ms; exiting")
        except (ValueError, OSError) as exc:
            node.get_logger().fatal(f"build_only: warm-up failed: {exc}")
            return 1
        finally:
            node.close()
            node.destroy_node()
            rclpy.try_shutdown()
        return 0
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        stopped = node.close()
        executor.shutdown()
        if stopped:
            node.destroy_node()
        rclpy.try_shutdown()
    if not stopped:
        sys.stderr.write("segment_node: the inference worker did not stop; exiting without cleanup\n")
        sys.stderr.flush()
        os._exit(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

