"""Training scenes in memory: the points a method may see and its targets.

A :class:`TrainScene` is built once per run by the method (``Method.make_targets``)
from the scene record and the weak labels.  Ground truth the weak-label kind would
not have never reaches it: only ``xyz``, the input attributes and the targets are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wsseg.core.scene import Scene
from wsseg_training.labels.types import Subcloud


@dataclass
class TrainScene:
    """One training scene.

    name: scene name in the dataset.
    xyz: (N, 3) float32, metres.  rgb: (N, 3) uint8 or None.  intensity: (N,) float32 or None.
    supervoxel: (N,) int64 over-segment id (-1 = none) or None when the scene has none.
    point_targets: per-point arrays, first axis N (e.g. ``labels`` (N,) int64, ``IGNORE_INDEX`` where
        unlabelled); cropped and concatenated with the points.  Methods may replace them between stages.
    scene_targets: per-scene arrays, stacked over the batch unchanged (whatever the sample holds).
    tags: (C,) float32 multi-hot scene tags, or None; the samplers derive every sample's own tags from them
        only when the scene has no per-point labels (see :mod:`wsseg_training.engine.sampling`).
    subclouds: the scene's annotated sub-clouds (centre, radius, tags) for the ``subcloud`` sampling.
    """

    name: str
    xyz: np.ndarray
    rgb: np.ndarray | None = None
    intensity: np.ndarray | None = None
    supervoxel: np.ndarray | None = None
    point_targets: dict[str, np.ndarray] = field(default_factory=dict)
    scene_targets: dict[str, np.ndarray] = field(default_factory=dict)
    tags: np.ndarray | None = None
    subclouds: tuple[Subcloud, ...] = ()

    @property
    def num_points(self) -> int:
        return int(self.xyz.shape[0])

    def check(self) -> None:
        """Raise ``ValueError`` naming the scene and array whose first axis is not N."""
        n = self.num_points
        arrays = {"rgb": self.rgb, "intensity": self.intensity, "supervoxel": self.supervoxel,
                  **{f"point_targets.{k}": v for k, v in self.point_targets.items()}}
        for key, value in arrays.items():
            if value is not None and value.shape[0] != n:
                raise ValueError(f"training scene {self.name!r}: '{key}' has {value.shape[0]} rows, xyz has {n}")


def train_scene_from(name: str, scene: Scene, point_targets: dict[str, np.ndarray],
                     scene_targets: dict[str, np.ndarray] | None = None, tags: np.ndarray | None = None,
                     subclouds: tuple[Subcloud, ...] = ()) -> TrainScene:
    """The inputs of ``scene`` (no ground truth) plus the given targets."""
    supervoxel = None if scene.supervoxel is None else scene.supervoxel.astype(np.int64)
    out = TrainScene(name=name, xyz=scene.xyz, rgb=scene.rgb, intensity=scene.intensity, supervoxel=supervoxel,
                     point_targets=dict(point_targets), scene_targets=dict(scene_targets or {}),
                     tags=None if tags is None else np.asarray(tags, dtype=np.float32), subclouds=tuple(subclouds))
    out.check()
    return out
