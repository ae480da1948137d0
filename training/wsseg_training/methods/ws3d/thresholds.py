"""How WS3D picks the boundary probability threshold on the unlabelled scenes (the paper gives none).

* ``best_f1`` (:func:`~wsseg_training.methods.ws3d.boundary.best_f1_threshold`, the default): the best F1 on the
  labelled scenes' points.  On our rooms it over-predicts (``bench/results/ws3d.md``: precision 0.20-0.34 on the
  unlabelled points, and 92-98 % of the adjacent region pairs become boundary pairs).
* ``precision`` (:func:`precision_threshold`): the lowest threshold whose precision on the labelled scenes'
  points reaches a target -- the paper's "high-confidence boundary region labels" (§1).
* ``pair_share`` (:func:`pair_share_threshold`): the threshold whose share of boundary pairs (w = 1, Eq. 2) on
  the unlabelled scenes is closest to a target share, by default the labelled scenes' true share: the adjacent
  pairs whose two regions' majority labels differ.  It sets the region-level outcome Eq. 2 saturates on.

Every rule tries the same candidates, 0.05, 0.10, ..., 0.95.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wsseg.core.classes import IGNORE_INDEX
from wsseg_training.methods.ws3d.regions import SceneRegions, pair_class_change

#: the ways to choose the threshold (option ``boundary_threshold_rule``)
THRESHOLD_RULES = ("best_f1", "precision", "pair_share")


def candidate_thresholds() -> np.ndarray:
    """(19,) float64 thresholds 0.05, 0.10, ..., 0.95."""
    return np.round(np.arange(0.05, 0.951, 0.05), 2)


def precision_threshold(probability: np.ndarray, truth: np.ndarray, target: float,
                        candidates: np.ndarray | None = None) -> float:
    """The lowest candidate threshold whose boundary precision reaches ``target``.

    probability: (N,) float boundary probabilities.  truth: (N,) int 1 / 0 / ``IGNORE_INDEX`` (only points with
    ground truth count).  target: precision in (0, 1].  When no threshold reaches it, the one with the highest
    precision among those that still predict a point (ties to the higher); 0.5 when no point has ground truth,
    none is a boundary, or no candidate predicts a point.
    """
    if not 0 < target <= 1:
        raise ValueError(f"precision_threshold: target {target} must be in (0, 1]")
    grid = candidate_thresholds() if candidates is None else np.sort(np.asarray(candidates, dtype=np.float64))
    known = np.asarray(truth) != IGNORE_INDEX
    prob, gt = np.asarray(probability)[known], np.asarray(truth)[known] == 1
    if not gt.any():
        return 0.5
    best, best_precision = 0.5, -1.0
    for t in grid:
        pred = prob > t
        if not pred.any():
            continue
        precision = int((pred & gt).sum()) / int(pred.sum())
        if precision >= target:
            return float(t)
        if precision >= best_precision:
            best, best_precision = float(t), precision
    return best


def region_max(values: np.ndarray, region: np.ndarray, num_regions: int) -> np.ndarray:
    """values: (N,) float; region: (N,) int region id, -1 = none.  Returns (num_regions,) float64: the largest
    value per region, -inf for a region without points."""
    region = np.asarray(region).astype(np.int64)
    keep = region >= 0
    out = np.full(num_regions, -np.inf)
    np.maximum.at(out, region[keep], np.asarray(values, dtype=np.float64)[keep])
    return out


@dataclass(frozen=True)
class PairShareChoice:
    """The ``pair_share`` rule's outcome: threshold, the target share and the share it gives (unlabelled scenes),
    and the share of every candidate (``candidates`` / ``shares``, same order)."""

    threshold: float
    target: float
    share: float
    candidates: tuple[float, ...]
    shares: tuple[float, ...]


def labelled_class_change_share(labels: Sequence[np.ndarray], regions: Sequence[SceneRegions],
                                num_classes: int) -> float:
    """The true share of boundary pairs on the scenes with labels: of the adjacent pairs whose two regions both
    hold labelled points, the share whose majority labels differ.  labels: per scene (N,) int, ``IGNORE_INDEX`` =
    unlabelled.  NaN when no pair qualifies."""
    changed = known = 0
    for scene_labels, scene_regions in zip(labels, regions, strict=True):
        change, has = pair_class_change(scene_regions, scene_labels, num_classes)
        changed += int((change & has).sum())
        known += int(has.sum())
    return changed / known if known else float("nan")


def pair_share_threshold(probability: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                         regions: Sequence[SceneRegions], num_classes: int, target: float | None = None,
                         candidates: np.ndarray | None = None) -> PairShareChoice:
    """The candidate threshold whose Eq. 2 boundary-pair share on the unlabelled scenes is closest to ``target``.

    Per scene: probability (N,) float boundary probabilities, labels (N,) int semantic labels (``IGNORE_INDEX`` =
    unlabelled), regions its :class:`SceneRegions` (rule ``contain``: w = 1 iff both regions hold a point above
    the threshold).  target: the share to reach; None = :func:`labelled_class_change_share`.  The share is over
    the pairs of the scenes without any labelled point (a cut scene counts for the target only); ties go to the
    higher threshold.  With no such scene (or no target), threshold 0.5 and NaN shares.
    """
    grid = candidate_thresholds() if candidates is None else np.sort(np.asarray(candidates, dtype=np.float64))
    if target is None:
        target = labelled_class_change_share(labels, regions, num_classes)
    counts = np.zeros(len(grid))
    pairs = 0
    for prob, scene_labels, scene_regions in zip(probability, labels, regions, strict=True):
        if (np.asarray(scene_labels) != IGNORE_INDEX).any() or not len(scene_regions.pairs):
            continue
        top = region_max(prob, scene_regions.region, scene_regions.num_regions)
        a, b = scene_regions.pairs[:, 0], scene_regions.pairs[:, 1]
        for i, t in enumerate(grid):
            has = top > t
            counts[i] += int((has[a] & has[b]).sum())
        pairs += len(scene_regions.pairs)
    if not pairs or not np.isfinite(target):
        return PairShareChoice(0.5, float(target), float("nan"), tuple(map(float, grid)), (float("nan"),) * len(grid))
    shares = counts / pairs
    gap = np.abs(shares - target)
    best = int(np.flatnonzero(gap <= gap.min() + 1e-12)[-1])  # ties: the higher threshold
    return PairShareChoice(float(grid[best]), float(target), float(shares[best]), tuple(map(float, grid)),
                           tuple(float(s) for s in shares))
