"""The scene record: one labelled (or unlabelled) point cloud, stored as one ``.npz``.

Fields (ARCHITECTURE.md, "Data model"):

* ``xyz``: (N, 3) float32, metres (required)
* ``rgb``: (N, 3) uint8; ``intensity``: (N,) float32; ``normal``: (N, 3) float32
* ``semantic``: (N,) int16, class id or ``IGNORE_INDEX`` (-1)
* ``instance``: (N,) int32, instance id or -1
* ``supervoxel``: (N,) int32, over-segment id (optional)
* ``pixel``: (N,) int32, row-major index ``v * width + u`` of the point in its organized source
  (RGB-D image / organized cloud; width and height are in the scene's dataset.yaml metadata), optional
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from wsseg.core.classes import IGNORE_INDEX


class SceneError(ValueError):
    """A scene file or array is malformed; the message names the file and field."""


#: field -> (dtype, trailing shape)
SCENE_FIELDS: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
    "xyz": (np.dtype(np.float32), (3,)),
    "rgb": (np.dtype(np.uint8), (3,)),
    "intensity": (np.dtype(np.float32), ()),
    "normal": (np.dtype(np.float32), (3,)),
    "semantic": (np.dtype(np.int16), ()),
    "instance": (np.dtype(np.int32), ()),
    "supervoxel": (np.dtype(np.int32), ()),
    "pixel": (np.dtype(np.int32), ()),
}


@dataclass(frozen=True)
class Scene:
    """One point cloud with optional attributes and labels (see module docstring)."""

    xyz: np.ndarray
    rgb: np.ndarray | None = None
    intensity: np.ndarray | None = None
    normal: np.ndarray | None = None
    semantic: np.ndarray | None = None
    instance: np.ndarray | None = None
    supervoxel: np.ndarray | None = None
    pixel: np.ndarray | None = None

    @property
    def num_points(self) -> int:
        return int(self.xyz.shape[0])

    def arrays(self) -> dict[str, np.ndarray]:
        """The fields that are present."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


def validate_scene(scene: Scene, where: str = "scene", num_classes: int | None = None) -> None:
    """Raise ``SceneError`` naming ``where`` and the field at fault if ``scene`` breaks the schema."""
    for name, array in scene.arrays().items():
        dtype, trailing = SCENE_FIELDS[name]
        if not isinstance(array, np.ndarray):
            raise SceneError(f"{where}: field '{name}' is {type(array).__name__}, expected a numpy array")
        if array.dtype != dtype:
            raise SceneError(f"{where}: field '{name}' has dtype {array.dtype}, expected {dtype}")
        if array.ndim != 1 + len(trailing) or array.shape[1:] != trailing:
            expected = f"(N, {', '.join(map(str, trailing))})" if trailing else "(N,)"
            raise SceneError(f"{where}: field '{name}' has shape {array.shape}, expected {expected}")
        if array.shape[0] != scene.num_points:
            raise SceneError(f"{where}: field '{name}' has {array.shape[0]} rows but 'xyz' has {scene.num_points}")
    if scene.num_points == 0:
        raise SceneError(f"{where}: field 'xyz' is empty")
    if not np.isfinite(scene.xyz).all():
        bad = int(np.flatnonzero(~np.isfinite(scene.xyz).all(axis=1))[0])
        raise SceneError(f"{where}: field 'xyz' has NaN/inf coordinates (first at point {bad})")
    if scene.pixel is not None and scene.pixel.size and int(scene.pixel.min()) < 0:
        raise SceneError(f"{where}: field 'pixel' has negative index {int(scene.pixel.min())}")
    if scene.semantic is not None and num_classes is not None:
        bad_mask = (scene.semantic != IGNORE_INDEX) & ((scene.semantic < 0) | (scene.semantic >= num_classes))
        if bad_mask.any():
            i = int(np.flatnonzero(bad_mask)[0])
            raise SceneError(
                f"{where}: field 'semantic' has label {int(scene.semantic[i])} at point {i}, "
                f"outside the class table (0..{num_classes - 1}, ignore {IGNORE_INDEX})"
            )


def save_scene(path: str | Path, scene: Scene, num_classes: int | None = None) -> Path:
    """Validate and write ``scene`` to ``path`` (.npz, written atomically)."""
    path = Path(path)
    validate_scene(scene, where=str(path), num_classes=num_classes)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **scene.arrays())
    tmp.replace(path)
    return path


def load_scene(path: str | Path, num_classes: int | None = None) -> Scene:
    """Read and validate a scene ``.npz``."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            unknown = sorted(set(data.files) - set(SCENE_FIELDS))
            if unknown:
                raise SceneError(f"{path}: unknown field(s) {unknown}; known: {list(SCENE_FIELDS)}")
            if "xyz" not in data.files:
                raise SceneError(f"{path}: missing field 'xyz'")
            scene = Scene(**{name: data[name] for name in data.files})
    except FileNotFoundError:
        raise SceneError(f"{path}: scene file does not exist") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        if isinstance(exc, SceneError):
            raise
        raise SceneError(f"{path}: not a readable .npz scene ({exc})") from None
    validate_scene(scene, where=str(path), num_classes=num_classes)
    return scene
