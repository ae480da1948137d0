"""What the browser draws: a decimated copy of a scene and its colours, computed on the server.

The display copy holds at most ``max_points`` points (a seeded uniform sample, so it is the same on every
reload); picking never uses it (:mod:`wsseg_training.annotate.picking` works on all N points).  Colours
reuse the palettes of ``wsseg data show`` (:mod:`wsseg_training.data.render`).
"""

from __future__ import annotations

import zlib

import numpy as np

from wsseg.core.classes import ClassTable
from wsseg.core.scene import Scene
from wsseg_training.data.render import instance_colours, scalar_colours

#: colour modes the browser offers (``prediction`` only with a model)
COLOUR_MODES = ("rgb", "intensity", "height", "supervoxel", "prediction")
#: grey of points without the field a mode colours by
NO_DATA_GREY = np.array([150, 150, 150], dtype=np.uint8)


def display_indices(num_points: int, max_points: int, scene_name: str) -> np.ndarray:
    """(M,) int64 sorted indices of the points drawn, M = min(N, max_points), seeded by the scene name."""
    if max_points <= 0:
        raise ValueError(f"max_points={max_points} must be > 0")
    if num_points <= max_points:
        return np.arange(num_points, dtype=np.int64)
    rng = np.random.default_rng(zlib.crc32(scene_name.encode()))
    return np.sort(rng.choice(num_points, size=max_points, replace=False)).astype(np.int64)


def available_modes(scene: Scene, has_model: bool) -> list[str]:
    """The colour modes that have data for ``scene`` (height always)."""
    have = {"rgb": scene.rgb is not None, "intensity": scene.intensity is not None, "height": True,
            "supervoxel": scene.supervoxel is not None, "prediction": has_model}
    return [m for m in COLOUR_MODES if have[m]]


def mode_colours(scene: Scene, mode: str, index: np.ndarray, prediction: np.ndarray | None = None,
                 classes: ClassTable | None = None) -> np.ndarray:
    """(M, 3) uint8 colours of the displayed points ``index`` (M,) in ``mode``.

    prediction: (N,) int64 class per point (mode ``prediction``), coloured with ``classes``' palette.
    ``ValueError`` names a mode the scene has no data for.
    """
    if mode == "rgb" and scene.rgb is not None:
        return np.ascontiguousarray(scene.rgb[index])
    if mode == "intensity" and scene.intensity is not None:
        return scalar_colours(scene.intensity[index])
    if mode == "height":
        return scalar_colours(scene.xyz[index, 2], cmap="turbo")
    if mode == "supervoxel" and scene.supervoxel is not None:
        return instance_colours(scene.supervoxel[index])
    if mode == "prediction" and prediction is not None and classes is not None:
        return classes.colourize(prediction[index], unknown_rgb=tuple(int(v) for v in NO_DATA_GREY))
    raise ValueError(f"colour mode {mode!r} has no data for this scene (available: rgb, intensity, height, "
                     "supervoxel when the record has the field; prediction with --model)")


def default_mode(scene: Scene) -> str:
    """RGB when the scene has colour, else intensity when it has it, else height."""
    return "rgb" if scene.rgb is not None else "intensity" if scene.intensity is not None else "height"
