"""Confusion matrix, per-class IoU, mIoU and overall accuracy.

One matrix is accumulated over every evaluated point of every scene (not averaged per
scene), as the benchmarks do.  Rows are ground truth, columns predictions.  Points with
ground truth ``IGNORE_INDEX`` are skipped; a prediction outside the class table (e.g.
``UNLABELLED_ID`` from the robot side) counts as a miss of the true class (a false
negative) and as nobody's false positive.

IoU of class c = TP / (TP + FP + FN); mIoU averages the classes whose union
(TP + FP + FN) is non-zero, i.e. classes that occur in the ground truth or the predictions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wsseg.core.classes import IGNORE_INDEX


class ConfusionMatrix:
    """Counts of (ground truth, prediction) pairs.  matrix: (C, C) int64; missed: (C,) int64 invalid predictions."""

    def __init__(self, num_classes: int) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.missed = np.zeros(num_classes, dtype=np.int64)

    def add(self, truth: np.ndarray, prediction: np.ndarray) -> ConfusionMatrix:
        """truth: (N,) int, class id or ``IGNORE_INDEX``.  prediction: (N,) int.  Returns self."""
        truth = np.asarray(truth).astype(np.int64).reshape(-1)
        prediction = np.asarray(prediction).astype(np.int64).reshape(-1)
        if truth.shape != prediction.shape:
            raise ValueError(f"truth has {truth.size} points, prediction {prediction.size}")
        c = self.num_classes
        bad = (truth != IGNORE_INDEX) & ((truth < 0) | (truth >= c))
        if bad.any():
            raise ValueError(f"ground truth label {int(truth[bad][0])} outside the class table (0..{c - 1})")
        keep = truth != IGNORE_INDEX
        truth, prediction = truth[keep], prediction[keep]
        valid = (prediction >= 0) & (prediction < c)
        self.matrix += np.bincount(truth[valid] * c + prediction[valid], minlength=c * c).reshape(c, c)
        self.missed += np.bincount(truth[~valid], minlength=c)
        return self

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge {other.num_classes}-class and {self.num_classes}-class matrices")
        self.matrix += other.matrix
        self.missed += other.missed
        return self

    @property
    def total(self) -> int:
        """Evaluated points (ground truth not ignored)."""
        return int(self.matrix.sum() + self.missed.sum())

    def true_positives(self) -> np.ndarray:
        return np.diag(self.matrix).copy()

    def iou(self) -> np.ndarray:
        """(C,) float64 IoU per class; NaN for classes absent from both truth and predictions."""
        tp = self.true_positives().astype(np.float64)
        fp = self.matrix.sum(axis=0) - tp
        fn = self.matrix.sum(axis=1) - tp + self.missed
        union = tp + fp + fn
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def miou(self) -> float:
        """Mean IoU over the classes with a non-zero union (NaN when nothing was evaluated)."""
        iou = self.iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")

    def overall_accuracy(self) -> float:
        return float(self.true_positives().sum() / self.total) if self.total else float("nan")

    def class_accuracy(self) -> np.ndarray:
        """(C,) recall per class; NaN for classes absent from the ground truth."""
        support = self.matrix.sum(axis=1) + self.missed
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(support > 0, self.true_positives() / support, np.nan)

    def to_dict(self, class_names: tuple[str, ...] | list[str]) -> dict[str, Any]:
        """Plain-JSON summary (NaN -> None)."""

        def clean(value: float) -> float | None:
            return None if not np.isfinite(value) else round(float(value), 6)

        return {
            "miou": clean(self.miou()),
            "overall_accuracy": clean(self.overall_accuracy()),
            "mean_class_accuracy": clean(float(np.nanmean(self.class_accuracy())) if self.total else float("nan")),
            "per_class_iou": {name: clean(v) for name, v in zip(class_names, self.iou(), strict=True)},
            "per_class_accuracy": {name: clean(v) for name, v in zip(class_names, self.class_accuracy(), strict=True)},
            "support": {name: int(v) for name, v in zip(class_names, self.matrix.sum(axis=1) + self.missed,
                                                         strict=True)},
            "num_points": self.total,
            "confusion": self.matrix.tolist(),
            "missed": self.missed.tolist(),
        }
