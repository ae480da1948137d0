"""sensor_msgs PointCloud2 / Image / CameraInfo <-> numpy, with the input checks of the segment node.

Byte decoding and encoding is :mod:`wsseg.core.pointcloud2_fields` (shared with the bag reader);
this module adds what the node must refuse (:class:`FrameError`, one message per cause, naming
the topic and field) and builds the output messages.  Message classes come from the ROS message
packages, imported where a message is built (so ``wsseg segment-bag`` runs without ROS, on rosbags
messages, which have the same field names); nothing here needs a running rclpy context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from wsseg.core.cloud_io import (
    BLUE_NAMES,
    GREEN_NAMES,
    INTENSITY_NAMES,
    PACKED_RGB_NAMES,
    RED_NAMES,
    pack_rgb,
    to_uint8_colour,
    unpack_rgb,
)
from wsseg.core.pointcloud2_fields import (
    DATATYPES,
    FLOAT32,
    FLOAT64,
    INT32,
    UINT32,
    FieldSpec,
    decode_fields,
    duplicate_names,
    overlapping_fields,
)
from wsseg.core.pointcloud2_fields import encode_fields as encode_point_fields

if TYPE_CHECKING:
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

DATATYPE_NAMES = {1: "INT8", 2: "UINT8", 3: "INT16", 4: "UINT16", 5: "INT32", 6: "UINT32", 7: "FLOAT32",
                  8: "FLOAT64"}
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")
COLOUR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8")
#: optional point attributes :func:`cloud_from_msg` can decode (the model's input features ask for them)
ATTRIBUTES = ("rgb", "intensity")


class FrameError(ValueError):
    """An input message cannot be segmented; ``cause`` is a short key used for throttling and counting."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


@dataclass(frozen=True)
class CloudArrays:
    """A decoded cloud, row-major over ``height`` rows of ``width`` points.

    xyz: (N, 3) float32 metres, NaN rows invalid.  rgb: (N, 3) uint8 or None.  intensity: (N,) float32 or None.
    """

    xyz: np.ndarray
    rgb: np.ndarray | None
    intensity: np.ndarray | None
    width: int
    height: int


def _datatype_name(code: int) -> str:
    return DATATYPE_NAMES.get(code, f"unknown ({code})")


def check_point_count(width: int, height: int, max_points: int, where: str) -> None:
    """Refuse a frame of more than ``max_points`` points (``width x height``; 0 = no cap) before decoding it."""
    if max_points and width * height > max_points:
        raise FrameError(f"{where}: {width} x {height} = {width * height} points exceed max_points {max_points}",
                         "max_points")


def _field_specs(msg: PointCloud2, where: str) -> dict[str, FieldSpec]:
    """The declared fields by name; duplicate names are an error (which one would be meant?)."""
    specs = [FieldSpec(str(f.name), int(f.offset), int(f.datatype), int(f.count)) for f in msg.fields]
    twice = duplicate_names(specs)
    if twice:
        raise FrameError(f"{where}: field(s) {twice} declared more than once (fields: {[s.name for s in specs]})",
                         "duplicate_field")
    return {spec.name: spec for spec in specs}


def _check_number_field(spec: FieldSpec, where: str, allowed: tuple[int, ...], expected: str) -> None:
    if spec.datatype not in allowed or spec.count != 1:
        raise FrameError(f"{where}: field '{spec.name}' has datatype {_datatype_name(spec.datatype)} x {spec.count}, "
                         f"expected {expected}", "datatype")


def _colour_specs(fields: dict[str, FieldSpec], where: str) -> list[FieldSpec]:
    """Separate red/green/blue fields (any number type) or one packed rgb/rgba field; [] when there is no colour."""
    lower = {name.lower(): spec for name, spec in fields.items()}
    channels = [next((lower[n] for n in names if n in lower), None) for names in (RED_NAMES, GREEN_NAMES, BLUE_NAMES)]
    if all(c is not None for c in channels):
        for spec in channels:
            _check_number_field(spec, where, tuple(DATATYPES), "one number")  # type: ignore[arg-type]
        return channels  # type: ignore[return-value]
    packed = next((lower[n] for n in PACKED_RGB_NAMES if n in lower), None)
    if packed is None:
        return []
    _check_number_field(packed, where, (FLOAT32, UINT32, INT32), "one packed FLOAT32/UINT32/INT32")
    return [packed]


def cloud_from_msg(msg: PointCloud2, where: str = "PointCloud2", attributes: tuple[str, ...] = ATTRIBUTES,
                   max_points: int = 0) -> CloudArrays:
    """Decode x, y, z (+ colour and intensity when asked for and present) of any field order, padding and layout.

    attributes: which of :data:`ATTRIBUTES` to decode (the model's input features); other fields are
    not looked at, so a malformed field the model does not use cannot reject the frame.  Colour is a
    packed ``rgb``/``rgba`` field or separate ``r``/``g``/``b`` (``red``/...) fields.
    max_points: refuse larger frames before decoding (0 = no cap).

    Raises :class:`FrameError` for what cannot be read unambiguously: missing x/y/z, unsupported datatypes
    or counts, a field name declared twice, a used field overlapping another declared field, ``data``
    length != ``row_step * height``, inconsistent steps, too many points.  Big-endian payloads are decoded.
    """
    width, height = int(msg.width), int(msg.height)
    check_point_count(width, height, max_points, where)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    data = np.frombuffer(msg.data, dtype=np.uint8) if len(msg.data) else np.zeros(0, np.uint8)
    if data.size != row_step * height:
        raise FrameError(f"{where}: data has {data.size} bytes, expected row_step {row_step} x height {height} = "
                         f"{row_step * height}", "data_length")
    fields = _field_specs(msg, where)
    wanted: list[FieldSpec] = []
    for axis in ("x", "y", "z"):
        spec = fields.get(axis)
        if spec is None:
            raise FrameError(f"{where}: no field '{axis}' (fields: {list(fields)})", "missing_xyz")
        _check_number_field(spec, where, (FLOAT32, FLOAT64), "one FLOAT32 or FLOAT64")
        wanted.append(spec)
    colour = _colour_specs(fields, where) if "rgb" in attributes else []
    wanted += colour
    intensity_spec = None
    if "intensity" in attributes:
        lower = {name.lower(): spec for name, spec in fields.items()}
        intensity_spec = next((lower[n] for n in INTENSITY_NAMES if n in lower), None)
        if intensity_spec is not None:
            _check_number_field(intensity_spec, where, tuple(DATATYPES), "one number")
            wanted.append(intensity_spec)
    clash = overlapping_fields(wanted, list(fields.values()))
    if clash:
        a, b = clash
        raise FrameError(f"{where}: field '{a.name}' (offset {a.offset}, {_datatype_name(a.datatype)} x {a.count}) "
                         f"overlaps field '{b.name}' (offset {b.offset}, {_datatype_name(b.datatype)} x {b.count})",
                         "overlapping_fields")
    try:
        arrays = decode_fields(wanted, data, point_step=point_step, row_step=row_step, width=width, height=height,
                               is_bigendian=bool(msg.is_bigendian), where=where)
    except ValueError as exc:
        raise FrameError(str(exc), "layout") from None
    xyz = np.empty((width * height, 3), dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):  # FLOAT64 beyond float32 becomes inf: an invalid point
        for k, axis in enumerate(("x", "y", "z")):
            xyz[:, k] = arrays[axis]
    rgb = None
    if len(colour) == 3:
        rgb = np.stack([to_uint8_colour(arrays[spec.name]) for spec in colour], axis=1)
    elif colour:
        rgb = unpack_rgb(arrays[colour[0].name])
    intensity = None
    if intensity_spec is not None:
        with np.errstate(over="ignore", invalid="ignore"):
            intensity = arrays[intensity_spec.name].astype(np.float32)
    return CloudArrays(xyz, rgb, intensity, width, height)


def make_pointcloud2(header: object, arrays: dict[str, np.ndarray], width: int, height: int,
                     align: int = 4) -> PointCloud2:
    """A little-endian PointCloud2 of named per-point arrays ((N,) each), ``point_step`` padded to ``align`` bytes."""
    from sensor_msgs.msg import PointCloud2, PointField

    specs, data, padded = encode_point_fields(arrays, align=align if width * height else 1)
    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width = int(height), int(width)
    msg.fields = [PointField(name=s.name, offset=s.offset, datatype=s.datatype, count=s.count) for s in specs]
    msg.is_bigendian = False
    msg.point_step = int(padded)
    msg.row_step = int(padded * width)
    msg.is_dense = False
    msg.data = data
    return msg


def _image_array(msg: Image, channels: int, dtype: str, where: str) -> np.ndarray:
    """(H, W) or (H, W, channels) view of ``msg.data`` honouring ``step`` and ``is_bigendian``."""
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    item = np.dtype(dtype).itemsize
    row = w * channels * item
    data = np.frombuffer(msg.data, dtype=np.uint8) if len(msg.data) else np.zeros(0, np.uint8)
    if step < row:
        raise FrameError(f"{where}: step {step} < width {w} x {channels * item} bytes", "layout")
    if data.size != step * h:
        raise FrameError(f"{where}: data has {data.size} bytes, expected step {step} x height {h} = {step * h}",
                         "data_length")
    rows = data.reshape(h, step)[:, :row] if h else data.reshape(0, row)
    order = ">" if msg.is_bigendian and item > 1 else "<"
    values = np.ascontiguousarray(rows).view(order + dtype).astype(dtype, copy=False)
    return values.reshape((h, w, channels) if channels > 1 else (h, w))


def depth_from_msg(msg: Image, where: str = "depth") -> np.ndarray:
    """Depth image -> (H, W) float32 metres along the optical axis, NaN where there is no measurement.

    Accepts 16UC1 / mono16 (millimetres, 0 = none, REP 118) and 32FC1 (metres, NaN/0/inf = none).
    """
    if msg.encoding in ("16UC1", "mono16"):
        raw = _image_array(msg, 1, "u2", where)
        depth = raw.astype(np.float32) * np.float32(0.001)
        depth[raw == 0] = np.nan
        return depth
    if msg.encoding == "32FC1":
        depth = _image_array(msg, 1, "f4", where).astype(np.float32, copy=True)
        depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
        return depth
    raise FrameError(f"{where}: encoding '{msg.encoding}' is not a depth encoding {list(DEPTH_ENCODINGS)}",
                     "encoding")


def colour_from_msg(msg: Image, where: str = "color") -> np.ndarray:
    """Colour image (rgb8 / bgr8 / rgba8 / bgra8) -> (H, W, 3) uint8 RGB."""
    if msg.encoding not in COLOUR_ENCODINGS:
        raise FrameError(f"{where}: encoding '{msg.encoding}' is not one of {list(COLOUR_ENCODINGS)}", "encoding")
    channels = 4 if msg.encoding.endswith("a8") else 3
    pixels = _image_array(msg, channels, "u1", where)[..., :3]
    return pixels[..., ::-1] if msg.encoding.startswith("bgr") else pixels


def intrinsics_from_msg(msg: CameraInfo, where: str = "camera_info") -> np.ndarray:
    """(3, 3) float64 pinhole matrix ``k`` of a CameraInfo (distortion ignored: depth must be rectified)."""
    try:
        k = np.asarray(msg.k, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise FrameError(f"{where}: field 'k' is not a list of numbers", "camera_info") from None
    if k.size != 9:
        raise FrameError(f"{where}: field 'k' has {k.size} values, expected 9 (a 3x3 matrix)", "camera_info")
    k = k.reshape(3, 3)
    if not (np.isfinite(k).all() and k[0, 0] > 0 and k[1, 1] > 0):
        raise FrameError(f"{where}: field 'k' = {k.ravel().tolist()} has no positive finite focal lengths",
                         "camera_info")
    return k


def make_image(header: object, array: np.ndarray, encoding: str) -> Image:
    """An Image of an (H, W) or (H, W, C) array, little-endian, rows packed."""
    from sensor_msgs.msg import Image

    array = np.ascontiguousarray(array)
    msg = Image()
    msg.header = header
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = False
    msg.step = int(array.strides[0]) if array.size else int(array.shape[1] * array.itemsize)
    msg.data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    return msg


def make_camera_info(header: object, intrinsics: np.ndarray, width: int, height: int) -> CameraInfo:
    """A CameraInfo of a distortion-free pinhole camera."""
    from sensor_msgs.msg import CameraInfo

    k = np.asarray(intrinsics, dtype=np.float64).reshape(3, 3)
    msg = CameraInfo()
    msg.header = header
    msg.width, msg.height = int(width), int(height)
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = k.ravel().tolist()
    msg.r = np.eye(3).ravel().tolist()
    msg.p = np.concatenate([k, np.zeros((3, 1))], axis=1).ravel().tolist()
    return msg


def cloud_to_msg(header: object, xyz: np.ndarray, width: int, height: int, rgb: np.ndarray | None = None,
                 intensity: np.ndarray | None = None) -> PointCloud2:
    """An input-style PointCloud2 (x, y, z float32 [, rgb packed float32] [, intensity float32])."""
    xyz = np.asarray(xyz, dtype=np.float32)
    arrays: dict[str, np.ndarray] = {"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]}
    if rgb is not None:
        arrays["rgb"] = pack_rgb(rgb).view(np.float32)
    if intensity is not None:
        arrays["intensity"] = np.asarray(intensity, dtype=np.float32)
    return make_pointcloud2(header, arrays, width, height)
