"""Point-cloud files in and out (numpy only): PLY, PCD and ``.npz`` scene records.

``read_cloud(path)`` picks the reader by suffix and returns a ``PointCloudFile``; the
well-known fields (coordinates, colour, intensity, label, instance) are recognised under
their usual names in any order and with any storage type, the rest is kept in ``fields``.
``write_cloud`` / ``write_ply`` / ``write_pcd`` write them back, extra fields included
(e.g. ``label`` uint16 + ``confidence`` float32 for segmentation output).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class CloudFileError(ValueError):
    """A point-cloud file is malformed, truncated or unsupported; the message names file and line/field."""


# Lower-case field names recognised for each attribute, in order of preference.
X_NAMES, Y_NAMES, Z_NAMES = ("x",), ("y",), ("z",)
RED_NAMES, GREEN_NAMES, BLUE_NAMES = ("red", "r", "diffuse_red"), ("green", "g", "diffuse_green"), (
    "blue", "b", "diffuse_blue")
PACKED_RGB_NAMES = ("rgb", "rgba")
INTENSITY_NAMES = ("intensity", "scalar_intensity", "remission", "reflectance", "i")
LABEL_NAMES = ("label", "class", "scalar_label", "semantic", "classification")
INSTANCE_NAMES = ("instance", "instance_id", "scalar_instance", "object_id")
PADDING_NAMES = ("_",)


@dataclass
class PointCloudFile:
    """A point cloud as read from a file.

    xyz: (N, 3) float32, metres; NaN rows are invalid points of an organized cloud.
    rgb: (N, 3) uint8 or None.  intensity: (N,) float32 or None.
    label: (N,) integer (dtype as stored) or None.  instance: (N,) integer or None.
    fields: other per-point arrays by name, (N,) or (N, count), dtype as stored.
    width, height: organized layout (row-major, ``N == width * height``); ``height == 1`` if unorganized.
    """

    xyz: np.ndarray
    rgb: np.ndarray | None = None
    intensity: np.ndarray | None = None
    label: np.ndarray | None = None
    instance: np.ndarray | None = None
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    width: int = 0
    height: int = 1

    def __post_init__(self) -> None:
        if self.width == 0:
            self.width = self.num_points

    @property
    def num_points(self) -> int:
        return int(self.xyz.shape[0])

    @property
    def is_organized(self) -> bool:
        return self.height > 1

    def valid_mask(self) -> np.ndarray:
        """(N,) bool, True where all three coordinates are finite."""
        return np.isfinite(self.xyz).all(axis=1)


def _find(named: dict[str, np.ndarray], candidates: tuple[str, ...]) -> str | None:
    lower = {name.lower(): name for name in named}
    for candidate in candidates:
        if candidate in lower:
            return lower[candidate]
    return None


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """packed: (N,) float32 or (u)int32 holding 0xAARRGGBB bit patterns (PCL/ROS convention).  Returns (N, 3) uint8."""
    packed = np.ascontiguousarray(packed)
    if packed.dtype.itemsize != 4:
        raise ValueError(f"packed colour has dtype {packed.dtype}, expected a 4-byte type")
    bits = packed.view(np.uint32)
    return np.stack([(bits >> 16) & 0xFF, (bits >> 8) & 0xFF, bits & 0xFF], axis=1).astype(np.uint8)


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """rgb: (N, 3) uint8.  Returns (N,) uint32 0x00RRGGBB (view as float32 for PCL's ``rgb`` F4 field)."""
    rgb = np.asarray(rgb, dtype=np.uint32)
    return (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]


def to_uint8_colour(channel: np.ndarray) -> np.ndarray:
    """One colour channel of any number type -> (N,) uint8: floats in [0, 1] are scaled by 255, 16-bit values
    shifted by 8, the rest clipped to 0..255 (NaN -> 0)."""
    if channel.dtype == np.uint8:
        return channel
    if np.issubdtype(channel.dtype, np.floating):
        finite = channel[np.isfinite(channel)]
        scale = 255.0 if finite.size and finite.max() <= 1.0 else 1.0
        return np.clip(np.nan_to_num(channel * scale), 0, 255).round().astype(np.uint8)
    if channel.size and channel.max() > 255:  # 16-bit colour (LAS, some PLY writers)
        return (channel.astype(np.uint32) >> 8).astype(np.uint8)
    return np.clip(channel, 0, 255).astype(np.uint8)


def _as_integer_labels(values: np.ndarray, where: str, name: str) -> np.ndarray:
    if np.issubdtype(values.dtype, np.integer):
        return values
    if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
        raise CloudFileError(f"{where}: field '{name}' holds non-integer values, expected class/instance ids")
    return values.astype(np.int64)


def cloud_from_fields(named: dict[str, np.ndarray], width: int, height: int, where: str) -> PointCloudFile:
    """Sort per-point arrays ``named`` (each (N,) or (N, count)) into a ``PointCloudFile``."""
    named = {k: v for k, v in named.items() if k not in PADDING_NAMES and not k.startswith("_pad")}
    keys = [_find(named, names) for names in (X_NAMES, Y_NAMES, Z_NAMES)]
    if None in keys:
        raise CloudFileError(f"{where}: needs fields 'x', 'y', 'z' (has {list(named)})")
    used = set(keys)
    xyz = np.stack([named[k].reshape(-1).astype(np.float32) for k in keys], axis=1)  # type: ignore[index]
    rgb = None
    colour_keys = [_find(named, names) for names in (RED_NAMES, GREEN_NAMES, BLUE_NAMES)]
    packed_key = _find(named, PACKED_RGB_NAMES)
    if None not in colour_keys:
        rgb = np.stack([to_uint8_colour(named[k].reshape(-1)) for k in colour_keys], axis=1)  # type: ignore[index]
        used.update(colour_keys)  # type: ignore[arg-type]
    elif packed_key is not None:
        try:
            rgb = unpack_rgb(named[packed_key].reshape(-1))
        except ValueError as exc:
            raise CloudFileError(f"{where}: field '{packed_key}': {exc}") from None
        used.add(packed_key)
    intensity = None
    key = _find(named, INTENSITY_NAMES)
    if key is not None:
        intensity = named[key].reshape(-1).astype(np.float32)
        used.add(key)
    label = instance = None
    key = _find(named, LABEL_NAMES)
    if key is not None:
        label = _as_integer_labels(named[key].reshape(-1), where, key)
        used.add(key)
    key = _find(named, INSTANCE_NAMES)
    if key is not None:
        instance = _as_integer_labels(named[key].reshape(-1), where, key)
        used.add(key)
    rest = {k: v for k, v in named.items() if k not in used}
    n = xyz.shape[0]
    if width * height != n:
        raise CloudFileError(f"{where}: width {width} x height {height} != {n} points")
    return PointCloudFile(xyz=xyz, rgb=rgb, intensity=intensity, label=label, instance=instance, fields=rest,
                          width=width, height=height)


def cloud_to_fields(cloud: PointCloudFile, packed_rgb: bool) -> dict[str, np.ndarray]:
    """The arrays a writer stores, by field name: x, y, z, colour, intensity, label, instance, then ``fields``."""
    xyz = np.asarray(cloud.xyz, dtype=np.float32)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"xyz has shape {xyz.shape}, expected (N, 3)")
    n = xyz.shape[0]
    out: dict[str, np.ndarray] = {"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]}
    if cloud.rgb is not None:
        rgb = np.asarray(cloud.rgb)
        if rgb.shape != (n, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"field 'rgb' has shape {rgb.shape} dtype {rgb.dtype}, expected ({n}, 3) uint8")
        if packed_rgb:
            out["rgb"] = pack_rgb(rgb)
        else:
            out.update(red=rgb[:, 0], green=rgb[:, 1], blue=rgb[:, 2])
    if cloud.intensity is not None:
        out["intensity"] = np.asarray(cloud.intensity, dtype=np.float32)
    if cloud.label is not None:
        out["label"] = np.asarray(cloud.label)
    if cloud.instance is not None:
        out["instance"] = np.asarray(cloud.instance)
    for name, values in cloud.fields.items():
        if name in out:
            raise ValueError(f"field '{name}' given twice")
        out[name] = np.asarray(values)
    for name, values in out.items():
        if values.shape[0] != n:
            raise ValueError(f"field '{name}' has {values.shape[0]} rows, expected {n}")
        if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
            raise ValueError(f"field '{name}' has dtype {values.dtype}, expected an integer or float type")
    return out


#: arrays of a labelled-cloud ``.npz`` (what ``wsseg infer --out x.npz`` writes): (N, 3) float32 xyz,
#: (N,) label and confidence, optional (N, 3) uint8 rgb and (N,) float32 intensity
LABELLED_NPZ_FIELDS = ("xyz", "label", "confidence", "rgb", "intensity")


def read_labelled_npz(path: Path, arrays: dict[str, np.ndarray]) -> PointCloudFile:
    """A labelled-cloud ``.npz`` (:data:`LABELLED_NPZ_FIELDS`) as a ``PointCloudFile``; errors name file and field."""
    unknown = sorted(set(arrays) - set(LABELLED_NPZ_FIELDS))
    if unknown:
        raise CloudFileError(f"{path}: unknown array(s) {unknown} in a labelled cloud (known: {LABELLED_NPZ_FIELDS})")
    xyz = arrays["xyz"]
    if xyz.ndim != 2 or xyz.shape[1] != 3 or not np.issubdtype(xyz.dtype, np.floating):
        raise CloudFileError(f"{path}: array 'xyz' has shape {xyz.shape} dtype {xyz.dtype}, expected (N, 3) floats")
    n = xyz.shape[0]
    shapes = {"label": (n,), "confidence": (n,), "rgb": (n, 3), "intensity": (n,)}
    for name, values in arrays.items():
        if name != "xyz" and values.shape != shapes[name]:
            raise CloudFileError(f"{path}: array '{name}' has shape {values.shape}, expected {shapes[name]}")
    if "rgb" in arrays and arrays["rgb"].dtype != np.uint8:
        raise CloudFileError(f"{path}: array 'rgb' has dtype {arrays['rgb'].dtype}, expected uint8")
    label = _as_integer_labels(arrays["label"], str(path), "label")
    fields = {"confidence": arrays["confidence"].astype(np.float32)} if "confidence" in arrays else {}
    intensity = arrays["intensity"].astype(np.float32) if "intensity" in arrays else None
    return PointCloudFile(xyz=xyz.astype(np.float32), rgb=arrays.get("rgb"), intensity=intensity, label=label,
                          fields=fields)


def read_npz_cloud(path: str | Path) -> PointCloudFile:
    """Read a ``.npz`` scene record (``xyz`` + optional rgb/intensity/semantic/instance/...) or a labelled cloud
    written by ``wsseg infer`` (``xyz``, ``label``, ``confidence``, ...)."""
    import zipfile

    from wsseg.core.scene import load_scene

    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            labelled = "label" in data.files and "xyz" in data.files
            arrays = {name: data[name] for name in data.files} if labelled else {}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise CloudFileError(f"{path}: not a readable .npz ({exc})") from None
    if labelled:
        return read_labelled_npz(path, arrays)
    try:
        scene = load_scene(path)
    except ValueError as exc:
        raise CloudFileError(str(exc)) from None
    arrays = scene.arrays()
    return PointCloudFile(
        xyz=arrays.pop("xyz"), rgb=arrays.pop("rgb", None), intensity=arrays.pop("intensity", None),
        label=arrays.pop("semantic", None), instance=arrays.pop("instance", None), fields=arrays,
    )


def read_cloud(path: str | Path) -> PointCloudFile:
    """Read a ``.ply``, ``.pcd`` or ``.npz`` point cloud (chosen by suffix)."""
    from wsseg.core import pcd, ply

    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise CloudFileError(f"{path}: no such file")
    if suffix == ".ply":
        return ply.read_ply(path)
    if suffix == ".pcd":
        return pcd.read_pcd(path)
    if suffix == ".npz":
        return read_npz_cloud(path)
    raise CloudFileError(f"{path}: unsupported point-cloud suffix {suffix!r} (expected .ply, .pcd or .npz)")


def write_cloud(path: str | Path, cloud: PointCloudFile, binary: bool = True) -> Path:
    """Write ``cloud`` as ``.ply`` or ``.pcd`` (chosen by suffix); binary unless ``binary=False``."""
    from wsseg.core import pcd, ply

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".ply":
        return ply.write_ply(path, cloud, binary=binary)
    if suffix == ".pcd":
        return pcd.write_pcd(path, cloud, data="binary" if binary else "ascii")
    raise CloudFileError(f"{path}: cannot write suffix {suffix!r} (expected .ply or .pcd)")
