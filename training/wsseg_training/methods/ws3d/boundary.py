"""Semantic boundaries (WS3D §3.1, after JSENet): ground truth, the focal loss, region boundary labels.

Ground truth (JSENet's rule, ``hzykent/JSENet`` ScanNet loader, METHOD_NOTES §4.3): on a grid-subsampled
cloud, a labelled point is a boundary point when a labelled point within ``r`` has another label.  JSENet uses
r = 2 cm on a 1 cm grid, i.e. two grid cells.  We keep that ratio on the network's own grid: the grid is the
voxel size and r = ``radius_voxels`` x voxel size (default 2), so the boundary band is as many voxels wide as
JSENet's is grid cells (at the ``tiny`` profile's 10 cm voxels r = 20 cm, at ``cpu``'s 8 cm r = 16 cm).
Distances are measured between grid cells (integer cell offsets with ``|d| <= radius_voxels``); each cell
holds the set of labels of its points, so a cell where two classes meet marks both.

The boundary head is trained with the focal loss of Eq. 1 (α = 2, the focusing exponent of Lin et al.) and
predicted on the unlabelled scenes with a probability threshold.  The paper gives none; the focal loss keeps
probabilities low (a 0.5 threshold found 0 % of the boundary points of our unlabelled rooms), so by default the
threshold is the one with the best F1 on the labelled scenes' points (:func:`best_f1_threshold`).
Two adjacent regions form a boundary pair, ``w_ij = 1``, iff both hold a predicted boundary point (Eq. 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse import coo_matrix

from wsseg.core.classes import IGNORE_INDEX
from wsseg.core.voxelize import CoordinateKeys, grid_indices

#: JSENet's boundary radius in grid cells (2 cm on its 1 cm grid)
JSENET_RADIUS_CELLS = 2.0


def cell_offsets(radius_cells: float) -> np.ndarray:
    """(K, 3) int64 integer offsets d with ``|d| <= radius_cells`` (the zero offset included)."""
    if radius_cells < 0:
        raise ValueError(f"boundary radius {radius_cells} cells must be >= 0")
    r = int(np.floor(radius_cells))
    axis = np.arange(-r, r + 1)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    return grid[(grid**2).sum(axis=1) <= radius_cells**2 + 1e-9].astype(np.int64)


def boundary_targets(xyz: np.ndarray, labels: np.ndarray, grid_m: float,
                     radius_cells: float = JSENET_RADIUS_CELLS) -> np.ndarray:
    """Per-point boundary ground truth.

    xyz: (N, 3) float metres.  labels: (N,) int class id or ``IGNORE_INDEX``.  grid_m: cell edge, metres
    (the network's voxel size).  radius_cells: r in cells.  Returns (N,) int64: 1 = boundary point (a labelled
    point within r cells carries another class), 0 = not, ``IGNORE_INDEX`` for unlabelled points.
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or labels.shape != (xyz.shape[0],):
        raise ValueError(f"boundary_targets: xyz {xyz.shape} and labels {labels.shape} must be (N, 3) and (N,)")
    if grid_m <= 0:
        raise ValueError(f"boundary_targets: grid_m={grid_m} must be > 0")
    out = np.full(labels.shape[0], IGNORE_INDEX, dtype=np.int64)
    labelled = labels >= 0
    if not labelled.any():
        return out
    lab = labels[labelled]
    num_classes = int(lab.max()) + 1
    cells = grid_indices(xyz[labelled], grid_m)
    rows = np.concatenate([np.zeros((cells.shape[0], 1), np.int64), cells], axis=1)
    reach = int(np.ceil(radius_cells))
    keys = CoordinateKeys(rows, margin_voxels=reach)
    point_key = keys.pack(rows)
    cell_key, cell_of_point = np.unique(point_key, return_inverse=True)
    cell_of_point = cell_of_point.reshape(-1)
    num_cells = cell_key.shape[0]
    # (cells, classes) presence, then the union over each cell's neighbourhood.
    presence = coo_matrix((np.ones(lab.size), (cell_of_point, lab)), shape=(num_cells, num_classes)).tocsr()
    src, dst = [], []
    for step in keys.offset_keys(cell_offsets(radius_cells)):
        target = cell_key + step
        pos = np.clip(np.searchsorted(cell_key, target), 0, num_cells - 1)
        hit = cell_key[pos] == target
        src.append(np.flatnonzero(hit))
        dst.append(pos[hit])
    src_all, dst_all = np.concatenate(src), np.concatenate(dst)
    near = coo_matrix((np.ones(src_all.size), (src_all, dst_all)), shape=(num_cells, num_cells)).tocsr()
    seen = (near @ presence).toarray() > 0  # (cells, classes): classes within r of each cell
    classes_near = seen.sum(axis=1)
    own_seen = seen[cell_of_point, lab]  # always True (a cell sees itself)
    other = classes_near[cell_of_point] - own_seen.astype(np.int64)
    out[labelled] = (other > 0).astype(np.int64)
    return out


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """WS3D Eq. 1 on binary boundary logits, summed (the caller averages over the count).

    logits: (P,) float boundary logits z, b = sigmoid(z).  target: (P,) int64 1 / 0 / ``IGNORE_INDEX``.
    alpha: the focusing exponent (α = 2).  Per point ``-(1 - b)^α y log b - b^α (1 - y) log(1 - b)``, with
    the logs from ``logsigmoid`` (finite for any z).  Returns (sum over labelled points, their count).
    """
    if alpha < 0:
        raise ValueError(f"focal_loss: alpha={alpha} must be >= 0")
    keep = target != IGNORE_INDEX
    z = logits[keep].float()
    y = target[keep].to(z.dtype)
    b = torch.sigmoid(z)
    loss = -((1.0 - b) ** alpha * y * F.logsigmoid(z) + b**alpha * (1.0 - y) * F.logsigmoid(-z))
    return loss.sum(), keep.sum()


def region_has_boundary(boundary: np.ndarray, region: np.ndarray, num_regions: int) -> np.ndarray:
    """boundary: (N,) bool predicted boundary points.  region: (N,) int region id, -1 = none.

    Returns (num_regions,) bool: the region holds at least one predicted boundary point.
    """
    region = np.asarray(region).astype(np.int64)
    hit = region[np.asarray(boundary, dtype=bool) & (region >= 0)]
    if hit.size and int(hit.max()) >= num_regions:
        raise ValueError(f"region id {int(hit.max())} outside 0..{num_regions - 1}")
    out = np.zeros(num_regions, dtype=bool)
    out[hit] = True
    return out


def boundary_pair_labels(has_boundary: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Eq. 2: has_boundary: (R,) bool; pairs: (E, 2) int adjacent region ids.  Returns (E,) float32 w_ij."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return (has_boundary[pairs[:, 0]] & has_boundary[pairs[:, 1]]).astype(np.float32)


@dataclass(frozen=True)
class BoundaryScore:
    """Predicted boundary points against ground truth (counts in points; precision/recall NaN when undefined)."""

    true_positive: int
    predicted: int
    actual: int

    @property
    def precision(self) -> float:
        return self.true_positive / self.predicted if self.predicted else float("nan")

    @property
    def recall(self) -> float:
        return self.true_positive / self.actual if self.actual else float("nan")

    def __add__(self, other: BoundaryScore) -> BoundaryScore:
        return BoundaryScore(self.true_positive + other.true_positive, self.predicted + other.predicted,
                             self.actual + other.actual)

    def to_dict(self) -> dict[str, float | int]:
        return {"precision": self.precision, "recall": self.recall, "true_positive": self.true_positive,
                "predicted": self.predicted, "actual": self.actual}


def score_boundaries(predicted: np.ndarray, truth: np.ndarray) -> BoundaryScore:
    """predicted: (N,) bool.  truth: (N,) int 1 / 0 / ``IGNORE_INDEX`` (from :func:`boundary_targets`).

    Only points with ground truth count.
    """
    predicted = np.asarray(predicted, dtype=bool)
    truth = np.asarray(truth)
    if predicted.shape != truth.shape:
        raise ValueError(f"score_boundaries: predicted {predicted.shape} and truth {truth.shape} differ")
    known = truth != IGNORE_INDEX
    pred, gt = predicted[known], truth[known] == 1
    return BoundaryScore(true_positive=int((pred & gt).sum()), predicted=int(pred.sum()), actual=int(gt.sum()))


def best_f1_threshold(probability: np.ndarray, truth: np.ndarray,
                      candidates: np.ndarray | None = None) -> float:
    """The probability threshold with the best boundary F1 on the points with ground truth.

    probability: (N,) float boundary probabilities.  truth: (N,) int 1 / 0 / ``IGNORE_INDEX``.  candidates:
    thresholds to try (default 0.05, 0.10, ..., 0.95).  Ties go to the higher threshold; 0.5 when no point has
    ground truth or none is a boundary.
    """
    grid = np.round(np.arange(0.05, 0.951, 0.05), 2) if candidates is None else np.asarray(candidates)
    known = np.asarray(truth) != IGNORE_INDEX
    prob, gt = np.asarray(probability)[known], np.asarray(truth)[known] == 1
    if not gt.any():
        return 0.5
    best, best_f1 = 0.5, -1.0
    for t in grid:
        pred = prob > t
        tp = int((pred & gt).sum())
        f1 = 2 * tp / max(1, int(pred.sum()) + int(gt.sum()))
        if f1 >= best_f1:
            best, best_f1 = float(t), f1
    return best
