"""The segment node's parameters: one table, from which the node declares them (with descriptors),
validates them, and ``config/segment.schema.json`` is generated.

No rclpy here: :class:`NodeConfig` is a frozen dataclass validated by :func:`config_from_values`,
so the checks are tested without ROS.  Units are in the names (``_m``, ``_s``, ``_ms``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from wsseg.runtime.engines import ENGINE_NAMES

INPUT_MODES = ("points", "rgbd")
QOS_CHOICES = ("sensor_data", "reliable")


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter: name, default (its type is the parameter type), description, constraints.

    read_only: True where changing it on a running node makes no sense (model, topics, QoS, engine).
    """

    name: str
    default: bool | int | float | str | tuple[float, ...]
    description: str
    read_only: bool = True
    choices: tuple[str, ...] = ()
    min_value: float | None = None
    max_value: float | None = None

    @property
    def type_name(self) -> str:
        return {bool: "boolean", int: "integer", float: "number", str: "string", tuple: "array"}[type(self.default)]


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("model", "", "Model bundle directory written by `wsseg export` (model.yaml + model.onnx). Required. "
              "Changing it on a running node loads the new bundle; a bundle that fails to load is refused and the "
              "node keeps the old one.", read_only=False),
    ParamSpec("engine", "auto", "Inference engine; a missing GPU provider falls back to onnxruntime-cpu with a "
              "warning. Changing it reloads the engine (refused, old engine kept, when loading fails).",
              read_only=False, choices=ENGINE_NAMES),
    ParamSpec("num_threads", 0, "ONNX Runtime intra-op threads (0 = its default). Changing it reloads the engine.",
              read_only=False, min_value=0, max_value=256),
    ParamSpec("preprocess_threads", 2, "Threads that build a frame's index tables and features, capped at the CPU "
              "count: with 2, level 0's tables and the features build beside the coarser levels (ONNX Runtime is idle "
              "then; the tables are the same for any count). 1 = all in the worker thread.",
              min_value=1, max_value=64),
    ParamSpec("build_only", False, "Load the model and build the engine (TensorRT: into the bundle's trt_cache), "
              "run one warm-up frame, log its time and exit 0: for image builds and first boots."),
    ParamSpec("input_mode", "points", "points: subscribe ~/input/points (PointCloud2); rgbd: ~/input/depth + "
              "~/input/color + ~/input/camera_info, synchronised by stamp.", choices=INPUT_MODES),
    ParamSpec("input_qos", "sensor_data", "QoS of the inputs: sensor_data (best effort, keep last 1) or reliable "
              "(keep last 1).", choices=QOS_CHOICES),
    ParamSpec("output_qos", "reliable", "QoS of ~/output/points, visualization, label_image and timing.",
              choices=QOS_CHOICES),
    ParamSpec("sync_slop_s", 0.05, "RGB-D only: largest stamp difference between depth, colour and camera_info "
              "of one frame, seconds.", min_value=0.0, max_value=10.0),
    ParamSpec("sync_queue_size", 10, "RGB-D only: messages kept per input stream while waiting for a match.",
              min_value=1, max_value=100),
    ParamSpec("sync_expiry_s", 2.0, "RGB-D only: a message that found no partner within this much ROS time "
              "(simulated time under use_sim_time) is dropped.", min_value=0.01, max_value=600.0),
    ParamSpec("clock_jump_threshold_s", 1.0, "RGB-D only: a stream whose stamps go back by more than this, or the "
              "ROS clock going back by more than this, resets the synchroniser (queued messages dropped, counted "
              "in diagnostics).", min_value=0.001, max_value=3600.0),
    ParamSpec("min_range_m", 0.0, "Points closer to the sensor origin are not segmented (label 65535); 0 = off.",
              read_only=False, min_value=0.0, max_value=10000.0),
    ParamSpec("max_range_m", 1000.0, "Points farther from the sensor origin (and non-finite points) are not "
              "segmented (label 65535); 0 = off (points the voxel grid cannot index are still dropped).",
              read_only=False, min_value=0.0, max_value=10000.0),
    ParamSpec("max_points", 0, "A frame with more points (PointCloud2 width x height, or depth pixels) is rejected "
              "before decoding, with an error and a diagnostics count; 0 = sized to the sensor (the bundle's "
              "sensor kind, or rgbd input): lidar 500000, rgbd and others 1200000.",
              read_only=False, min_value=0, max_value=100_000_000),
    ParamSpec("time_budget_warn_ms", 200.0, "Diagnostics WARN when the median total processing time exceeds this.",
              read_only=False, min_value=0.0, max_value=1e6),
    ParamSpec("time_budget_error_ms", 1000.0, "Diagnostics ERROR when the median total processing time exceeds "
              "this.", read_only=False, min_value=0.0, max_value=1e6),
    ParamSpec("stall_warn_s", 3.0, "Diagnostics WARN when inputs arrive (and outputs have subscribers) but no frame "
              "has been answered or rejected for this long, seconds (e.g. RGB-D streams that never pair).",
              read_only=False, min_value=0.1, max_value=3600.0),
    ParamSpec("stall_error_s", 10.0, "Diagnostics ERROR for the same condition after this long, seconds.",
              read_only=False, min_value=0.1, max_value=3600.0),
    ParamSpec("model_frame_transform", (0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
              "Pose of the input frame in the frame the model was trained in, [x, y, z, roll, pitch, yaw] in metres "
              "and radians (fixed-axis roll-pitch-yaw, as URDF): points are moved by it before segmentation, "
              "outputs stay in the input frame. E.g. a camera optical frame -> a z-up base frame for a model "
              "trained on z-up scenes. All zeros = none.", read_only=False),
    ParamSpec("memory_trim_period_s", 10.0, "After a frame, at most once per this many seconds, hand the memory "
              "freed since back to the system (glibc malloc_trim), so that the resident size stays flat instead of "
              "keeping every frame's freed buffers; 0 = never. Costs a few ms every period (wsseg/ros/memory.py).",
              read_only=False, min_value=0.0, max_value=3600.0),
    ParamSpec("malloc_mmap_threshold_mb", 8, "glibc's mmap threshold, fixed when the node starts, MiB: smaller "
              "buffers are reused from the heap, larger ones (ONNX Runtime's regions, huge frames) get their own "
              "mappings, returned on free. A fixed threshold stops glibc's dynamic one, which every engine reload "
              "ratchets up, from growing the heap for good. WSSEG_KEEP_HEAP=0 leaves glibc's default "
              "(wsseg/runtime/heap.py).", min_value=1, max_value=32),
    ParamSpec("diagnostics_period_s", 1.0, "Period of the /diagnostics status, seconds.",
              min_value=0.05, max_value=60.0),
)
#: ``max_points`` = 0: the cap for the sensor kind (a 128-beam LiDAR scan is ~260k points, dual return ~520k;
#: a 1024x1024 or 1280x720 depth image ~1.0M pixels)
DEFAULT_MAX_POINTS = {"lidar": 500_000, "rgbd": 1_200_000, "any": 1_200_000}
PARAMS_BY_NAME = {p.name: p for p in PARAMS}


class ParameterError(ValueError):
    """A parameter value is invalid; the message names the parameter."""


@dataclass(frozen=True)
class NodeConfig:
    """Validated parameter values (see :data:`PARAMS` for meanings, units and defaults: they live there only)."""

    model: str
    engine: str
    num_threads: int
    preprocess_threads: int
    build_only: bool
    input_mode: str
    input_qos: str
    output_qos: str
    sync_slop_s: float
    sync_queue_size: int
    sync_expiry_s: float
    clock_jump_threshold_s: float
    min_range_m: float
    max_range_m: float
    max_points: int
    time_budget_warn_ms: float
    time_budget_error_ms: float
    stall_warn_s: float
    stall_error_s: float
    model_frame_transform: tuple[float, ...]
    memory_trim_period_s: float
    malloc_mmap_threshold_mb: int
    diagnostics_period_s: float


def max_points_for(config: NodeConfig, sensor: str) -> int:
    """The point cap in force: ``max_points``, or when it is 0 the cap of the sensor kind.

    sensor: the bundle's sensor kind (``lidar``, ``rgbd``, ``any``); rgbd input counts as ``rgbd``.
    """
    if config.max_points:
        return config.max_points
    kind = "rgbd" if config.input_mode == "rgbd" else sensor
    return DEFAULT_MAX_POINTS.get(kind, DEFAULT_MAX_POINTS["any"])


def _check_array(spec: ParamSpec, value: Any) -> tuple[float, ...]:
    """A fixed-length array of finite numbers (list, tuple or rclpy's array.array) -> tuple of floats."""
    length = len(spec.default)  # type: ignore[arg-type]
    items = list(value) if isinstance(value, list | tuple) or type(value).__name__ == "array" else None
    if items is None or len(items) != length or any(isinstance(v, bool) or not isinstance(v, int | float)
                                                   for v in items):
        raise ParameterError(f"parameter '{spec.name}' is {value!r}, expected {length} numbers")
    numbers = tuple(float(v) for v in items)
    if not all(math.isfinite(v) for v in numbers):
        raise ParameterError(f"parameter '{spec.name}' is {list(numbers)}, expected finite numbers")
    return numbers


def check_value(spec: ParamSpec, value: Any) -> Any:
    """Type- and range-check one value; returns it (ints accepted for float parameters)."""
    expected = type(spec.default)
    if expected is tuple:
        return _check_array(spec, value)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not expected:
        raise ParameterError(f"parameter '{spec.name}' is {value!r} ({type(value).__name__}), expected "
                             f"{spec.type_name}")
    if spec.choices and value not in spec.choices:
        raise ParameterError(f"parameter '{spec.name}' is {value!r}, expected one of {list(spec.choices)}")
    if spec.min_value is not None and value < spec.min_value:
        raise ParameterError(f"parameter '{spec.name}' is {value!r}, must be >= {spec.min_value}")
    if spec.max_value is not None and value > spec.max_value:
        raise ParameterError(f"parameter '{spec.name}' is {value!r}, must be <= {spec.max_value}")
    return value


def config_from_values(values: dict[str, Any]) -> NodeConfig:
    """Check every value and the relations between them; raise :class:`ParameterError` naming the parameter."""
    unknown = sorted(set(values) - set(PARAMS_BY_NAME))
    if unknown:
        raise ParameterError(f"unknown parameter(s) {unknown}; known: {sorted(PARAMS_BY_NAME)}")
    checked = {name: check_value(PARAMS_BY_NAME[name], value) for name, value in values.items()}
    defaults = {p.name: p.default for p in PARAMS}
    config = NodeConfig(**{**defaults, **checked})
    if not config.model:
        raise ParameterError("parameter 'model' is empty: set it to a model bundle directory "
                             "(launch argument model:=/path/to/bundle)")
    if config.max_range_m and config.max_range_m <= config.min_range_m:
        raise ParameterError(f"parameter 'max_range_m' ({config.max_range_m}) must be > 'min_range_m' "
                             f"({config.min_range_m}) or 0 (off)")
    if config.time_budget_error_ms < config.time_budget_warn_ms:
        raise ParameterError(f"parameter 'time_budget_error_ms' ({config.time_budget_error_ms}) must be >= "
                             f"'time_budget_warn_ms' ({config.time_budget_warn_ms})")
    if config.stall_error_s < config.stall_warn_s:
        raise ParameterError(f"parameter 'stall_error_s' ({config.stall_error_s}) must be >= 'stall_warn_s' "
                             f"({config.stall_warn_s})")
    return config


def schema_dict(node_name: str = "segment_node") -> dict[str, Any]:
    """JSON schema (draft-07) of a ``ros__parameters`` YAML file for the node, generated from :data:`PARAMS`."""
    properties: dict[str, Any] = {}
    for spec in PARAMS:
        default = list(spec.default) if isinstance(spec.default, tuple) else spec.default
        entry: dict[str, Any] = {"type": spec.type_name, "default": default, "description": spec.description}
        if isinstance(spec.default, tuple):
            entry.update({"items": {"type": "number"}, "minItems": len(spec.default), "maxItems": len(spec.default)})
        if spec.choices:
            entry["enum"] = list(spec.choices)
        if spec.min_value is not None:
            entry["minimum"] = spec.min_value
        if spec.max_value is not None:
            entry["maximum"] = spec.max_value
        entry["readOnly"] = spec.read_only
        properties[spec.name] = entry
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": f"Parameters for the wsseg {node_name}",
        "type": "object",
        "definitions": {
            node_name: {"type": "object", "properties": properties, "additionalProperties": False},
        },
        "properties": {
            "/**": {
                "type": "object",
                "properties": {"ros__parameters": {"$ref": f"#/definitions/{node_name}"}},
                "required": ["ros__parameters"],
                "additionalProperties": False,
            },
        },
        "required": ["/**"],
        "additionalProperties": False,
    }


def write_schema(path: str) -> None:
    """Regenerate ``config/segment.schema.json`` (``python -m wsseg.ros.params config/segment.schema.json``)."""
    import json
    from pathlib import Path

    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(schema_dict(), indent=2) + "\n")
    tmp.replace(target)


if __name__ == "__main__":
    import sys

    write_schema(sys.argv[1] if len(sys.argv) > 1 else "config/segment.schema.json")
