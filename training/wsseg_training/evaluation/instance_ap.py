"""Instance segmentation average precision (AP@50, AP@25), computed the way ScanNet's benchmark does.

The rule (ScanNet's ``evaluate_semantic_instance``, restated):

* Ground-truth instances are the ``(class, instance id)`` groups of points of an evaluated class; groups
  smaller than ``min_region_points`` (100) are not counted, and neither are predictions matched only to them.
  *Void* points are those without an evaluated class or without an instance id.
* Per class and IoU threshold t, over all scenes: every ground-truth instance is matched to the
  highest-scoring prediction of its class with IoU > t (strictly), a true positive with that score; each
  other prediction above t with the same instance is a false positive (a duplicate).  An instance no
  prediction reaches is a false negative.  A prediction above t with no instance is a false positive unless
  more than t of its points are void or belong to too-small instances of its class (then it is ignored).
* Precision / recall at every distinct score (predictions with score >= s count), plus the point
  (precision 1, recall 0); AP = Σ_k precision_k x (recall_{k-1} - recall_{k+1}) / 2 over the points in
  order of increasing threshold (recall_{-1} = recall_0, recall_{K+1} = 0).  A class without ground truth
  has no AP (NaN) and is left out of the mean; a class with ground truth and no prediction scores 0.

Predictions are point masks (index arrays), may overlap, and carry a class and a score
(:class:`wsseg.core.instances.Proposals`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from wsseg.core.classes import IGNORE_INDEX
from wsseg.core.instances import Proposals

THRESHOLDS = (0.5, 0.25)
MIN_REGION_POINTS = 100


def average_precision(scores: np.ndarray, is_true: np.ndarray, num_truth: int) -> float:
    """AP of one class from its matched list (see the module docstring).

    scores: (K,) float score of every true / false positive.  is_true: (K,) bool.  num_truth: ground-truth
    instances (true positives + false negatives).  Returns NaN when ``num_truth`` is 0.
    """
    if num_truth == 0:
        return float("nan")
    scores = np.asarray(scores, dtype=np.float64)
    is_true = np.asarray(is_true, dtype=bool)
    if scores.size == 0:
        return 0.0
    order = np.argsort(scores, kind="stable")
    scores, is_true = scores[order], is_true[order]
    thresholds, first = np.unique(scores, return_index=True)  # ascending; first index of each
    true_from = np.concatenate([np.cumsum(is_true[::-1])[::-1], [0]])  # true positives with index >= i
    precision = np.ones(thresholds.size + 1)
    recall = np.zeros(thresholds.size + 1)
    for k, start in enumerate(first):
        tp = int(true_from[start])
        fp = int(scores.size - start - tp)
        precision[k] = tp / (tp + fp) if tp + fp else 1.0
        recall[k] = tp / num_truth
    padded = np.concatenate([[recall[0]], recall, [0.0]])
    widths = 0.5 * (padded[:-2] - padded[2:])
    return float(np.dot(precision, widths))


@dataclass
class _ClassRecord:
    scores: list[float] = field(default_factory=list)
    is_true: list[bool] = field(default_factory=list)
    num_truth: int = 0


class InstanceEvaluator:
    """Accumulates scenes; :meth:`ap` per threshold.  classes: the evaluated (instance) class ids."""

    def __init__(self, classes: Sequence[int], thresholds: Sequence[float] = THRESHOLDS,
                 min_region_points: int = MIN_REGION_POINTS) -> None:
        if not classes:
            raise ValueError("instance AP: no evaluated class")
        self.classes = tuple(int(c) for c in classes)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.min_region_points = int(min_region_points)
        self.records = {(t, c): _ClassRecord() for t in self.thresholds for c in self.classes}

    def add(self, semantic: np.ndarray, instance: np.ndarray, predictions: Proposals) -> InstanceEvaluator:
        """One scene.  semantic: (N,) int class or ``IGNORE_INDEX``; instance: (N,) int id, < 0 = none.

        predictions: proposals over the same N points.  Returns self.
        """
        semantic = np.asarray(semantic).astype(np.int64)
        instance = np.asarray(instance).astype(np.int64)
        if semantic.shape != instance.shape or semantic.ndim != 1:
            raise ValueError(f"instance AP: semantic {semantic.shape} and instance {instance.shape} must be (N,)")
        n = semantic.shape[0]
        evaluated = np.isin(semantic, self.classes) & (semantic != IGNORE_INDEX) & (instance >= 0)
        # Ground-truth ids 0..G-1 over (class, instance) groups of evaluated points; -1 = void.
        gt = np.full(n, -1, dtype=np.int64)
        if evaluated.any():
            _, gt[evaluated] = np.unique(np.stack([semantic[evaluated], instance[evaluated]], 1), axis=0,
                                         return_inverse=True)
        num_gt = int(gt.max()) + 1 if evaluated.any() else 0
        gt_size = np.bincount(gt[gt >= 0], minlength=num_gt)
        gt_class = np.full(num_gt, -1, dtype=np.int64)
        gt_class[gt[gt >= 0]] = semantic[gt >= 0]
        counted = gt_size >= self.min_region_points
        # Intersections: (K predictions, G instances) point counts, and each prediction's void points.
        k = len(predictions)
        inter = np.zeros((k, num_gt), dtype=np.int64)
        void = np.zeros(k, dtype=np.int64)
        pred_size = np.zeros(k, dtype=np.int64)
        for i, members in enumerate(predictions.members):
            members = np.unique(np.asarray(members, dtype=np.int64))
            if members.size and (members.min() < 0 or members.max() >= n):
                raise ValueError(f"instance AP: prediction {i} holds point {int(members.max())} outside 0..{n - 1}")
            ids = gt[members]
            inter[i] = np.bincount(ids[ids >= 0], minlength=num_gt)
            void[i] = int((ids < 0).sum())
            pred_size[i] = members.size
        union = pred_size[:, None] + gt_size[None, :] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        for t in self.thresholds:
            for c in self.classes:
                self._match(self.records[(t, c)], t, c, predictions, iou, inter, void, pred_size, gt_class, counted)
        return self

    @staticmethod
    def _match(record: _ClassRecord, t: float, c: int, predictions: Proposals, iou: np.ndarray, inter: np.ndarray,
               void: np.ndarray, pred_size: np.ndarray, gt_class: np.ndarray, counted: np.ndarray) -> None:
        preds = np.flatnonzero(predictions.cls == c)
        truths = np.flatnonzero((gt_class == c) & counted)
        small = np.flatnonzero((gt_class == c) & ~counted)
        record.num_truth += truths.size
        visited = np.zeros(len(predictions), dtype=bool)
        for g in truths:
            hits = preds[iou[preds, g] > t]
            if hits.size == 0:
                continue
            visited[hits] = True
            hit_scores = predictions.score[hits].astype(np.float64)
            best = int(np.argmax(hit_scores))
            record.scores.append(float(hit_scores[best]))
            record.is_true.append(True)
            for j, s in enumerate(hit_scores):
                if j != best:
                    record.scores.append(float(s))
                    record.is_true.append(False)
        for p in preds:
            if visited[p] or (iou[p, truths] > t).any():
                continue
            ignored = void[p] + int(inter[p, small].sum())
            if pred_size[p] and ignored / pred_size[p] > t:
                continue
            record.scores.append(float(predictions.score[p]))
            record.is_true.append(False)

    def per_class(self, threshold: float) -> dict[int, float]:
        """class id -> AP at ``threshold`` (NaN without ground truth)."""
        return {c: average_precision(np.asarray(r.scores), np.asarray(r.is_true, dtype=bool), r.num_truth)
                for (t, c), r in self.records.items() if t == threshold}

    def ap(self, threshold: float) -> float:
        """Mean AP over the classes with ground truth at ``threshold`` (NaN when none has any)."""
        values = np.asarray(list(self.per_class(threshold).values()), dtype=np.float64)
        return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")

    def to_dict(self, class_names: Sequence[str]) -> dict:
        """Plain JSON: ``ap50``, ``ap25`` (when evaluated) and per-class values (NaN -> None)."""

        def clean(v: float) -> float | None:
            return None if not np.isfinite(v) else round(float(v), 6)

        out: dict = {}
        for t in self.thresholds:
            key = f"ap{round(t * 100)}"
            out[key] = clean(self.ap(t))
            out[f"{key}_per_class"] = {class_names[c]: clean(v) for c, v in self.per_class(t).items()}
        out["num_instances"] = {class_names[c]: self.records[(self.thresholds[0], c)].num_truth for c in self.classes}
        return out
