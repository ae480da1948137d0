"""Weighted cross-entropy over the labelled points of a batch.

Returns a (sum, weight sum) pair instead of a mean, so that a method averages with
``StepContext.mean(sum, weight_sum)`` and multi-process training equals single-process training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from wsseg.core.classes import IGNORE_INDEX


def point_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor | None = None,
                        point_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy summed over the points whose label is not ``IGNORE_INDEX``.

    logits: (P, C) float (computed in float32).  labels: (P,) int64 class or ``IGNORE_INDEX``.
    class_weights: (C,) weight of each class (None = 1).  point_weights: (P,) weight of each point (e.g. a
    pseudo label's confidence), multiplied with its class's weight when both are given.
    Returns (Σ_i w_i CE_i, Σ_i w_i) over the labelled points, 0-d tensors (0 and 0 without a labelled point).
    Class weights alone use PyTorch's fused weighted cross-entropy; with point weights the terms are
    weighted one by one.
    """
    if logits.shape[0] != labels.shape[0]:
        raise ValueError(f"point_cross_entropy: logits have {logits.shape[0]} rows, labels {labels.shape[0]}")
    labelled = labels != IGNORE_INDEX
    logits = logits[labelled].float()
    target = labels[labelled]
    weights = None if class_weights is None else class_weights.to(logits.device, torch.float32)
    if point_weights is None:
        total = F.cross_entropy(logits, target, weight=weights, reduction="sum")
        count = weights[target].sum() if weights is not None else logits.new_tensor(float(target.shape[0]))
        return total, count
    if point_weights.shape[0] != labels.shape[0]:
        raise ValueError(f"point_cross_entropy: point_weights have {point_weights.shape[0]} rows, labels "
                         f"{labels.shape[0]}")
    weight = point_weights[labelled].to(logits)
    if weights is not None:
        weight = weight * weights[target]
    return (F.cross_entropy(logits, target, reduction="none") * weight).sum(), weight.sum()
