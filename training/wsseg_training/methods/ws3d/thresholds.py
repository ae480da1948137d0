"""How WS3D picks the boundary probability threshold on the unlabelled scenes (the paper gives none).

* ``best_f1`` (:func:`~wsseg_training.methods.ws3d.boundary.best_f1_threshold`, the default): the best F1 on the
  labelled scenes' points.  On our rooms it over-predicts (``bench/results/ws3d.md``: precision 0.20-0.34 on the
  unlabelled points, and 92-98 % of the adjacent region pairs become boundary pairs).
* ``precision`` (:func:`precision_threshold`): the lowest threshold whose precision on the labelled scenes'
  points reaches a target -- the paper's "high-confidence boundary region labels" (§1).
* ``pair_share`` (:func:`pair_share_threshold`): the threshold whose share of boundary pairs (w = 1, Eq. 2) on
  the unlabelled scenes is closest to a target share, by default the labelled scenes' true share: the adjacent
  pairs whose two regions' majority labels differ.  It sets the region-level outcome Eq. 2 saturates on.

``best_f1`` tries 0.05, 0.10, ..., 0.95; the other two every distinct value (the focal-loss probabilities of a
briefly trained boundary network crowd into a few hundredths: on our rooms the Eq. 2 pair share falls from 0.98 to
0 between the 0.40 and 0.45 of that grid).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wsseg.core.classes import IGNORE_INDEX
from wsseg_training.methods.ws3d.regions import SceneRegions, pair_class_change

#: the ways to choose the threshold (option ``boundary_threshold_rule``)
THRESHOLD_RULES = ("best_f1", "precision", "pair_share")


def distinct_thresholds(values: np.ndarray) -> np.ndarray:
    """(K,) float64 candidate thresholds for ``value > t``: 0 (every positive value passes) and each distinct
    value (the outcome only changes there), ascending."""
    return np.unique(np.concatenate([[0.0], np.asarray(values, dtype=np.float64).ravel()]))


def precision_threshold(probability: np.ndarray, truth: np.ndarray, target: float) -> float:
    """The lowest threshold whose boundary precision reaches ``target`` (exact: every distinct probability).

    probability: (N,) float boundary probabilities.  truth: (N,) int 1 / 0 / ``IGNORE_INDEX`` (only points with
    ground truth count).  target: precision in (0, 1].  A point is a boundary point when its probability is
    above the threshold.  When no threshold reaches the target, the one with the highest precision among those
    that still predict a point (ties to the higher); 0.5 when no point has ground truth or none is a boundary.
    """
    if not 0 < target <= 1:
        raise ValueError(f"precision_threshold: target {target} must be in (0, 1]")
    known = np.asarray(truth) != IGNORE_INDEX
    prob, gt = np.asarray(probability, dtype=np.float64)[known], np.asarray(truth)[known] == 1
    if not gt.any():
        return 0.5
    order = np.argsort(prob, kind="stable")
    prob, gt = prob[order], gt[order]
    grid = distinct_thresholds(prob)
    first_above = np.searchsorted(prob, grid, side="right")  # points above t: prob[first_above:]
    predicted = prob.size - first_above
    hits = np.concatenate([np.cumsum(gt[::-1])[::-1], [0]])[first_above]
    some = predicted > 0
    precision = np.divide(hits, predicted, out=np.zeros(grid.size), where=some)
    reach = np.flatnonzero(some & (precision >= target - 1e-12))
    if reach.size:
        return float(grid[reach[0]])
    best = np.flatnonzero(some & (precision >= precision[some].max() - 1e-12))[-1]
    return float(grid[best])


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
    """The ``pair_share`` rule's outcome: the threshold, the target share and the share it gives (w = 1 pairs of
    the unlabelled scenes)."""

    threshold: float
    target: float
    share: float


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
                         regions: Sequence[SceneRegions], num_classes: int,
                         target: float | None = None) -> PairShareChoice:
    """The threshold whose Eq. 2 boundary-pair share on the unlabelled scenes is closest to ``target``.

    Per scene: probability (N,) float boundary probabilities, labels (N,) int semantic labels (``IGNORE_INDEX`` =
    unlabelled), regions its :class:`SceneRegions`.  A pair is a boundary pair (rule ``contain``) iff both
    regions hold a point above the threshold, i.e. iff the smaller of the two regions' largest probabilities is
    above it, so the share only changes at those values: every one of them (and 0) is tried, ties go to the
    higher threshold.  target: the share to reach; None = :func:`labelled_class_change_share`.  The share is over
    the pairs of the scenes without any labelled point (a cut scene counts for the target only).  With no such
    pair (or no target), threshold 0.5 and a NaN share.
    """
    if target is None:
        target = labelled_class_change_share(labels, regions, num_classes)
    weakest = []  # per unlabelled pair: the smaller of its two regions' largest probabilities
    for prob, scene_labels, scene_regions in zip(probability, labels, regions, strict=True):
        if (np.asarray(scene_labels) != IGNORE_INDEX).any() or not len(scene_regions.pairs):
            continue
        top = region_max(prob, scene_regions.region, scene_regions.num_regions)
        weakest.append(np.minimum(top[scene_regions.pairs[:, 0]], top[scene_regions.pairs[:, 1]]))
    if not weakest or not np.isfinite(target):
        return PairShareChoice(0.5, float(target), float("nan"))
    pair_min = np.sort(np.concatenate(weakest))
    grid = distinct_thresholds(pair_min[np.isfinite(pair_min)])
    shares = (pair_min.size - np.searchsorted(pair_min, grid, side="right")) / pair_min.size
    gap = np.abs(shares - target)
    best = int(np.flatnonzero(gap <= gap.min() + 1e-12)[-1])
    return PairShareChoice(float(grid[best]), float(target), float(shares[best]))
