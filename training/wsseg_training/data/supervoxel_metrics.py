"""Quality of an over-segmentation against ground-truth segments.

Ground-truth segments are the objects of the scene: points sharing one
``(semantic, instance)`` pair (so a dataset without instance ids for "stuff"
gets one segment per stuff class).  Points with both labels at -1 are left out
of every metric.  Let N be the number of evaluated points, S a super-voxel, G a
ground-truth segment and ``|S ∩ G|`` their number of shared points.

* Under-segmentation error (USE, the "corrected" form of Neubert & Protzel used
  in super-pixel benchmarks):
  ``USE = (1/N) Σ_G Σ_{S: S∩G≠∅} min(|S ∩ G|, |S \\ G|)``.
  0 when every super-voxel lies inside one segment; each leaking super-voxel
  costs its smaller side.
* Achievable segmentation accuracy: ``ASA = (1/N) Σ_S max_G |S ∩ G|``, the
  point accuracy reached if every super-voxel took its majority segment.
* Boundary recall: on the k-NN graph of the evaluated points, a point is a
  ground-truth boundary point if one of its k nearest neighbours lies in
  another segment, and a super-voxel boundary point likewise.  ``BR`` = share
  of ground-truth boundary points that are super-voxel boundary points
  (``tolerance_m`` = 0) or have one within ``tolerance_m`` metres.
  Boundary precision is the converse share, without tolerance.
* Mean size: N / number of super-voxels that hold evaluated points.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class SupervoxelMetrics:
    """Figures for one scene (or pooled); fractions in [0, 1], sizes in points."""

    num_points: int
    num_supervoxels: int
    num_segments: int
    undersegmentation_error: float
    achievable_accuracy: float
    boundary_recall: float
    boundary_precision: float
    mean_size: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def gt_segments(semantic: np.ndarray | None, instance: np.ndarray | None) -> np.ndarray:
    """(N,) int64 ground-truth segment id per point, -1 where both labels are missing."""
    if semantic is None and instance is None:
        raise ValueError("ground truth needs 'semantic' or 'instance'")
    ref = semantic if semantic is not None else instance
    n = ref.shape[0]
    sem = np.full(n, -1, np.int64) if semantic is None else semantic.astype(np.int64)
    ins = np.full(n, -1, np.int64) if instance is None else instance.astype(np.int64)
    valid = (sem >= 0) | (ins >= 0)
    out = np.full(n, -1, dtype=np.int64)
    if valid.any():
        pairs = np.stack([sem[valid], ins[valid]], axis=1)
        _, ids = np.unique(pairs, axis=0, return_inverse=True)
        out[valid] = ids.reshape(-1)
    return out


def _contingency(sv: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique (super-voxel, segment) pairs: returns (sv index, gt index, shared count) as int64 arrays."""
    _, sv_idx = np.unique(sv, return_inverse=True)
    _, gt_idx = np.unique(gt, return_inverse=True)
    sv_idx, gt_idx = sv_idx.reshape(-1), gt_idx.reshape(-1)
    width = int(gt_idx.max()) + 1
    keys, counts = np.unique(sv_idx * width + gt_idx, return_counts=True)
    return keys // width, keys % width, counts


def undersegmentation_error(sv: np.ndarray, gt: np.ndarray) -> float:
    """USE (module docstring).  sv, gt: (N,) int over evaluated points only."""
    if sv.size == 0:
        return 0.0
    s, _, shared = _contingency(sv, gt)
    sv_size = np.bincount(s, weights=shared)
    return float(np.minimum(shared, sv_size[s] - shared).sum() / sv.size)


def achievable_accuracy(sv: np.ndarray, gt: np.ndarray) -> float:
    """ASA (module docstring).  sv, gt: (N,) int over evaluated points only."""
    if sv.size == 0:
        return 1.0
    s, _, shared = _contingency(sv, gt)
    best = np.zeros(int(s.max()) + 1, dtype=np.int64)
    np.maximum.at(best, s, shared)
    return float(best.sum() / sv.size)


def boundary_points(labels: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """(N,) bool: some k-NN neighbour carries another label.  neighbours: (N, k) int indices."""
    return (labels[neighbours] != labels[:, None]).any(axis=1)


def boundary_scores(xyz: np.ndarray, sv: np.ndarray, gt: np.ndarray, k: int = 8,
                    tolerance_m: float = 0.0) -> tuple[float, float]:
    """(boundary recall, boundary precision) as defined in the module docstring.

    xyz: (N, 3) float, metres, evaluated points only.  A side with no boundary points scores 1.
    """
    n = xyz.shape[0]
    if n < 2:
        return 1.0, 1.0
    tree = cKDTree(xyz)
    _, nbrs = tree.query(xyz, k=min(k + 1, n))
    nbrs = nbrs[:, 1:]
    b_gt, b_sv = boundary_points(gt, nbrs), boundary_points(sv, nbrs)
    if tolerance_m > 0 and b_gt.any() and b_sv.any():
        bound = np.nextafter(tolerance_m, np.inf)  # the bound is exclusive; make tolerance_m inclusive
        dist, _ = cKDTree(xyz[b_sv]).query(xyz[b_gt], distance_upper_bound=bound)
        hit = int(np.isfinite(dist).sum())
    else:
        hit = int((b_gt & b_sv).sum())
    recall = hit / int(b_gt.sum()) if b_gt.any() else 1.0
    precision = int((b_gt & b_sv).sum()) / int(b_sv.sum()) if b_sv.any() else 1.0
    return float(recall), float(precision)


def evaluate_supervoxels(xyz: np.ndarray, supervoxel: np.ndarray, semantic: np.ndarray | None,
                         instance: np.ndarray | None, k: int = 8, tolerance_m: float = 0.0) -> SupervoxelMetrics:
    """All metrics of the module docstring for one scene.

    xyz: (N, 3) float32 metres; supervoxel: (N,) int (ids < 0 count as one-point super-voxels);
    semantic: (N,) int or None; instance: (N,) int or None.
    """
    gt = gt_segments(semantic, instance)
    sv = np.asarray(supervoxel, dtype=np.int64).copy()
    lonely = sv < 0
    if lonely.any():
        sv[lonely] = sv.max(initial=-1) + 1 + np.arange(int(lonely.sum()))
    keep = gt >= 0
    sv, gt, pts = sv[keep], gt[keep], np.asarray(xyz)[keep]
    recall, precision = boundary_scores(pts, sv, gt, k=k, tolerance_m=tolerance_m)
    num_sv = int(np.unique(sv).size)
    return SupervoxelMetrics(
        num_points=int(sv.size),
        num_supervoxels=num_sv,
        num_segments=int(np.unique(gt).size),
        undersegmentation_error=undersegmentation_error(sv, gt),
        achievable_accuracy=achievable_accuracy(sv, gt),
        boundary_recall=recall,
        boundary_precision=precision,
        mean_size=float(sv.size / num_sv) if num_sv else 0.0,
    )


def pool_metrics(per_scene: list[SupervoxelMetrics]) -> SupervoxelMetrics:
    """Point-weighted mean of per-scene metrics (sums for the counts)."""
    total = sum(m.num_points for m in per_scene)
    if total == 0:
        return SupervoxelMetrics(0, 0, 0, 0.0, 1.0, 1.0, 1.0, 0.0)

    def mean(name: str) -> float:
        return float(sum(getattr(m, name) * m.num_points for m in per_scene) / total)

    num_sv = sum(m.num_supervoxels for m in per_scene)
    return SupervoxelMetrics(
        num_points=total,
        num_supervoxels=num_sv,
        num_segments=sum(m.num_segments for m in per_scene),
        undersegmentation_error=mean("undersegmentation_error"),
        achievable_accuracy=mean("achievable_accuracy"),
        boundary_recall=mean("boundary_recall"),
        boundary_precision=mean("boundary_precision"),
        mean_size=total / num_sv if num_sv else 0.0,
    )
