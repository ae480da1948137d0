"""Point-level refinement at devoxelization: the support plane decides the points of voxels that straddle it.

A voxel carries one label, so at a 2 cm grid an object's bottom rim and the table under it share voxels:
on the real mOSD frames the voxel-majority ceiling is 98.7 % mIoU at 2 cm, and most errors of a trained
network lie within 2 cm of the table.  Every point has its own height above the support plane (the plane
the ``support_height`` feature already fits, :func:`wsseg.core.geometry.fit_support_plane`), so the points
near the plane can be labelled by that height, everything else keeps its voxel's label:

* **down** -- a point labelled as a non-support class whose height is at most ``below_m`` is ``support``
  (the table's noise band under an object voxel);
* **up** -- a point labelled ``support`` whose height is above ``above_m`` and whose voxel is, or touches
  (3x3x3 neighbourhood), a voxel labelled as a non-support class takes that class (an object's rim in a
  table voxel); with several such classes around, the most frequent among the 27 voxels.

With ``passes`` > 1 the rule runs again on its own output (voxel majorities recomputed) until nothing changes
or ``passes`` runs are done: the *up* step then grows a non-support class over the connected points above
``above_m`` -- the bottom of an object the network missed by more than one voxel (a whole low, flat object
beside a found one).  *down* only touches points at or below ``below_m`` <= ``above_m``, so the passes never
undo each other and the result converges.

Voxel labels are the majority of their points' labels (identical to the network's voxel label without
test-time augmentation).  The rule is part of the model (``PreprocessConfig.refine``, written to
``model.yaml``) and the only implementation: the robot's ``Segmenter``, offline evaluation and 1T1C's full
inference call :func:`refine_labels`.  Deterministic (the plane comes from the seeded RANSAC of the features).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from wsseg.core import geometry
from wsseg.core.voxelize import VoxelGrid


@dataclass(frozen=True)
class SupportRefine:
    """The refinement's settings (model.yaml ``preprocess.refine``).

    support_class: name of the class the support plane is (must be in the class table).  below_m: points of
    non-support voxels at or below this height above the plane become support, metres.  above_m: points of
    support voxels next to a non-support voxel and above this height take its class, metres.  The defaults
    were chosen on the 35 training frames of each mOSD fold, never on a val frame: 4 / 5 mm (between the
    Kinect's table noise and the objects' rims) and 8 passes gave the best or within 0.01 points of the best
    mIoU of the 1T1C† and full networks' own train-frame predictions on both folds (docs/training.md).
    passes: how often the rule may run on its own output (module docstring; a ``refine`` section without the
    field, as bundles before it, means 1).
    """

    support_class: str = "support"
    below_m: float = 0.004
    above_m: float = 0.005
    passes: int = 8

    def __post_init__(self) -> None:
        if not isinstance(self.support_class, str) or not self.support_class:
            raise ValueError(f"refine support_class must be a class name, got {self.support_class!r}")
        for name in ("below_m", "above_m"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not np.isfinite(value):
                raise ValueError(f"refine {name} must be a finite number of metres, got {value!r}")
        if self.above_m < self.below_m:
            raise ValueError(f"refine above_m ({self.above_m}) must be >= below_m ({self.below_m})")
        if isinstance(self.passes, bool) or not isinstance(self.passes, int) or not 1 <= self.passes <= 100:
            raise ValueError(f"refine passes must be an integer in [1, 100], got {self.passes!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> SupportRefine | None:
        """None (no refinement) for a missing / null section."""
        if data is None:
            return None
        if not isinstance(data, dict):
            raise ValueError(f"refine must be a mapping or null, got {data!r}")
        known = ["above_m", "below_m", "passes", "support_class"]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"refine: unknown field(s) {unknown}; known: {known}")
        return cls(**{"passes": 1, **data})  # written before passes existed: the rule ran once

    def support_id(self, class_names: tuple[str, ...] | list[str]) -> int:
        """The support class's id in ``class_names``; ``ValueError`` naming the classes when it is absent."""
        names = list(class_names)
        if self.support_class not in names:
            raise ValueError(f"refine support_class {self.support_class!r} is not a class of the model; "
                             f"classes: {names}")
        return names.index(self.support_class)


def point_heights(grid: VoxelGrid, xyz: np.ndarray, planes: list[geometry.Plane]) -> np.ndarray:
    """(N,) float64 signed height of every point above its scene's support plane, metres.

    xyz: (N, 3) float32 metres, the points ``grid`` was built from (``grid.inverse`` rows); planes: one per
    scene of the grid, in batch order (``coords[:, 0]``).
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    if len(planes) == 1:  # one scene (the node, offline evaluation): no per-point plane gather
        normals, offsets = planes[0].normal, planes[0].offset_m
    else:
        normals, offsets = geometry.plane_frame(planes, grid.coords[grid.inverse, 0].astype(np.int64))
        normals = normals.T
    # column by column: no BLAS call (a threaded matmul of (N, 3) by (3,) is slower than this on a busy CPU)
    return xyz[:, 0] * normals[0] + xyz[:, 1] * normals[1] + xyz[:, 2] * normals[2] + offsets


def voxel_majority(grid: VoxelGrid, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(M,) int64 most frequent point label of every voxel (labels outside [0, num_classes) are ignored; -1
    for a voxel without any valid label)."""
    labels = np.asarray(labels, dtype=np.int64)
    keep = (labels >= 0) & (labels < num_classes)
    counts = np.bincount(grid.inverse[keep] * num_classes + labels[keep],
                         minlength=grid.num_voxels * num_classes).reshape(grid.num_voxels, num_classes)
    return np.where(counts.max(axis=1) > 0, counts.argmax(axis=1), -1)


def neighbour_label(voxel_labels: np.ndarray, neighbours: np.ndarray, support_id: int, num_classes: int) -> np.ndarray:
    """(M,) int64 most frequent non-support label among every voxel's 3x3x3 neighbourhood (itself included),
    -1 where there is none.  neighbours: (M, 27) level-0 neighbour map (``M`` = no neighbour)."""
    m = voxel_labels.shape[0]
    labels = np.asarray(voxel_labels, dtype=np.int64)
    other = (labels >= 0) & (labels != support_id)
    if not other.any():
        return np.full(m, -1, dtype=np.int64)
    if num_classes == 2:  # one non-support class: any such neighbour decides
        return np.where(np.append(other, False)[neighbours].any(axis=1), 1 - support_id, -1)
    padded = np.append(np.where(other, labels, -1), -1)
    around = padded[neighbours]  # (M, 27)
    rows = np.broadcast_to(np.arange(m)[:, None], around.shape)
    ok = around >= 0
    counts = np.bincount(rows[ok] * num_classes + around[ok], minlength=m * num_classes).reshape(m, num_classes)
    return np.where(counts.max(axis=1) > 0, counts.argmax(axis=1), -1)


def refine_labels(labels: np.ndarray, xyz: np.ndarray, grid: VoxelGrid, neighbours: np.ndarray,
                  planes: list[geometry.Plane], config: SupportRefine, support_id: int,
                  num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The refinement (module docstring) of per-point labels.

    labels: (N,) int class id per point of ``grid`` (``grid.inverse`` rows; values outside [0, num_classes)
    are left alone).  xyz: (N, 3) float32 metres.  neighbours: (M, 27) level-0 neighbour map of ``grid``.
    planes: the scenes' support planes (``NetworkInput.planes``).  Returns (refined labels (N,) of the input's
    dtype, changed (N,) bool).  The heights are computed once for all ``config.passes``.
    """
    labels = np.asarray(labels)
    height = point_heights(grid, xyz, planes)
    out = labels.copy()
    changed = np.zeros(labels.shape[0], dtype=bool)
    for _ in range(config.passes):
        as_int = out.astype(np.int64, copy=False)
        is_support = as_int == support_id
        down = (height <= config.below_m) & ~is_support & (as_int >= 0) & (as_int < num_classes)
        near = neighbour_label(voxel_majority(grid, as_int, num_classes), neighbours, support_id, num_classes)
        up = is_support & (height > config.above_m) & (near >= 0)[grid.inverse]
        if not (down.any() or up.any()):
            break
        out[down] = support_id
        out[up] = near[grid.inverse[up]]
        changed |= down | up
    return out, changed
