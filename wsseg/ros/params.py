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
    ParamSpec("model", "", "Model bundle directory written by `wsseg export` (model.yaml + model.onnx). Required."),
    ParamSpec("engine", "auto", "Inference engine; a missing GPU provider falls back to onnxruntime-cpu with a "
              "warning.", choices=ENGINE_NAMES),
    ParamSpec("num_threads", 0, "ONNX Runtime intra-op threads (0 = its default).", min_value=0, max_value=256),
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
    ParamSpec("min_range_m", 0.0, "Points closer to the sensor origin are not segmented (label 65535); 0 = off.",
              read_only=False, min_value=0.0, max_value=10000.0),
    ParamSpec("max_range_m", 0.0, "Points farther from the sensor origin are not segmented (label 65535); "
              "0 = off.", read_only=False, min_value=0.0, max_value=10000.0),
    ParamSpec("max_points", 0, "A frame with more valid points (after the range crop) is rejected with an "
              "error; 0 = no cap.", read_only=False, min_value=0, max_value=100_000_000),
    ParamSpec("time_budget_warn_ms", 200.0, "Diagnostics WARN when the median total processing time exceeds this.",
              read_only=False, min_value=0.0, max_value=1e6),
    ParamSpec("time_budget_error_ms", 1000.0, "Diagnostics ERROR when the median total processing time exceeds "
              "this.", read_only=False, min_value=0.0, max_value=1e6),
    ParamSpec("model_frame_transform", (0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
              "Pose of the input frame in the frame the model was trained in, [x, y, z, roll, pitch, yaw] in metres "
              "and radians (fixed-axis roll-pitch-yaw, as URDF): points are moved by it before segmentation, "
              "outputs stay in the input frame. E.g. a camera optical frame -> a z-up base frame for a model "
              "trained on z-up scenes. All zeros = none.", read_only=False),
    ParamSpec("diagnostics_period_s", 1.0, "Period of the /diagnostics status, seconds.",
              min_value=0.05, max_value=60.0),
)
PARAMS_BY_NAME = {p.name: p for p in PARAMS}


class ParameterError(ValueError):
    """A parameter value is invalid; the message names the parameter."""


@dataclass(frozen=True)
class NodeConfig:
    """Validated parameter values (see :data:`PARAMS` for meanings and units)."""

    model: str
    engine: str = "auto"
    num_threads: int = 0
    build_only: bool = False
    input_mode: str = "points"
    input_qos: str = "sensor_data"
    output_qos: str = "reliable"
    sync_slop_s: float = 0.05
    sync_queue_size: int = 10
    min_range_m: float = 0.0
    max_range_m: float = 0.0
    max_points: int = 0
    time_budget_warn_ms: float = 200.0
    time_budget_error_ms: float = 1000.0
    diagnostics_period_s: float = 1.0
    model_frame_transform: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


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
    config = NodeConfig(**{"model": "", **checked})
    if not config.model:
        raise ParameterError("parameter 'model' is empty: set it to a model bundle directory "
                             "(launch argument model:=/path/to/bundle)")
    if config.max_range_m and config.max_range_m <= config.min_range_m:
        raise ParameterError(f"parameter 'max_range_m' ({config.max_range_m}) must be > 'min_range_m' "
                             f"({config.min_range_m}) or 0 (off)")
    if config.time_budget_error_ms < config.time_budget_warn_ms:
        raise ParameterError(f"parameter 'time_budget_error_ms' ({config.time_budget_error_ms}) must be >= "
                             f"'time_budget_warn_ms' ({config.time_budget_warn_ms})")
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
