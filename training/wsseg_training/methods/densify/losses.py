"""Densify's three loss terms (DYL Eq. 1-9), each returned as ``(sum, count)`` for a global-batch mean.

Row layout, shared by every function: ``P`` points of a batch of ``B`` whole scenes; ``point_batch`` (P,)
int64 is the scene of each point (0..B-1); ``features`` (P, H) are the backbone's point features ``f``;
``tags`` (B, C) float32 the scenes' multi-hot tags ``y``; the classifier ``L(·; ω)`` is the backbone's head
(a linear map H -> C with bias), the one that is exported.

* ℓ_cam (Eq. 2-3): per scene, ``s̄_c`` = mean over its points of ``σ(L(f))_c``; sum over classes of
  ``BCE(s̄_c, y_c)``; averaged over scenes.
* ℓ_us (Eq. 5, in GrowSP's form): cross-entropy of ``scale · cos(f, f_prim)`` against each point's K-means
  primitive (points without one, -1, are ignored); the centroids are fixed.
* ℓ_match (Eq. 6-9): per scene, the mean feature ``f̄_k`` of the points of each primitive k present
  (Eq. 7, differentiable: the gradient reaches the points through the mean), scores
  ``E = y ⊙ L(f̄_k)`` (detached) matched to the tagged classes (:mod:`.matching`), then the cross-entropy of
  ``L(f̄_k)`` against the matched class over the matched primitives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from wsseg_training.methods.common.segments import Segments, segment_mean
from wsseg_training.methods.densify.matching import (
    UNMATCHED,
    filter_assignments,
    hungarian_match,
    naive_match,
)

#: matching modes of ℓ_match: bipartite (the paper) or every primitive to its best class (Tab. 4's ℓ*_match)
MATCH_MODES = ("hungarian", "naive")
_EPS = 1e-6


def cam_loss(point_logits: torch.Tensor, point_batch: torch.Tensor, tags: torch.Tensor) -> tuple[torch.Tensor, int]:
    """ℓ_cam summed over the batch's scenes.  point_logits: (P, C).  Returns (sum, number of scenes B)."""
    num_scenes = int(tags.shape[0])
    scores = torch.sigmoid(point_logits.float())
    mean, counts = segment_mean(scores, point_batch, num_scenes)
    if bool((counts == 0).any()):
        raise ValueError(f"cam loss: scene(s) {torch.nonzero(counts == 0).flatten().tolist()} have no point")
    bce = F.binary_cross_entropy(mean.clamp(_EPS, 1.0 - _EPS), tags.float(), reduction="none")
    return bce.sum(), num_scenes


def unsupervised_loss(features: torch.Tensor, primitive: torch.Tensor, centroids: torch.Tensor,
                      scale: float = 5.0) -> tuple[torch.Tensor, int]:
    """ℓ_us.  features: (P, H); primitive: (P,) int64 in 0..K-1 or -1; centroids: (K, H) (normalised here).

    Returns (summed cross-entropy over the points with a primitive, their number).
    """
    has = primitive >= 0
    if not bool(has.any()):
        return features.sum() * 0.0, 0
    f = F.normalize(features[has].float(), dim=1)
    c = F.normalize(centroids.to(f.device).float(), dim=1)
    logits = scale * (f @ c.T)
    return F.cross_entropy(logits, primitive[has], reduction="sum"), int(has.sum())


@dataclass(frozen=True)
class MatchResult:
    """What ℓ_match saw in one batch.

    loss_sum: summed cross-entropy over the matched primitives; matched: their number.
    scene / primitive / label: (S,) int64 scene, primitive id and assigned class (-1 = none) of every
    (scene, primitive) node of the batch.
    """

    loss_sum: torch.Tensor
    matched: int
    scene: np.ndarray
    primitive: np.ndarray
    label: np.ndarray


def primitive_nodes(primitive: torch.Tensor, point_batch: torch.Tensor, num_primitives: int) -> Segments:
    """Segments over (scene, primitive) pairs: node ids ``scene * K + primitive``; points without one -> -1."""
    ids = torch.where(primitive >= 0, point_batch * num_primitives + primitive, torch.full_like(primitive, -1))
    return Segments.from_ids(ids)


def match_loss(features: torch.Tensor, primitive: torch.Tensor, point_batch: torch.Tensor, tags: torch.Tensor,
               classifier: Callable[[torch.Tensor], torch.Tensor], num_primitives: int, mode: str = "hungarian",
               group_of: np.ndarray | None = None, conflict_labels: int = 2) -> MatchResult:
    """ℓ_match (module docstring).  group_of: (K,) int64 filtering group of every primitive, or None (no filter)."""
    if mode not in MATCH_MODES:
        raise ValueError(f"match mode {mode!r} is not one of {MATCH_MODES}")
    segments = primitive_nodes(primitive, point_batch, num_primitives)
    ids = segments.ids.cpu().numpy()
    scene, prim = ids // num_primitives, ids % num_primitives
    if segments.num_nodes == 0:
        empty = np.zeros(0, np.int64)
        return MatchResult(features.sum() * 0.0, 0, empty, empty, empty)
    mean = segments.mean(features.float())
    logits = classifier(mean).float()
    scores = logits.detach().cpu().numpy() * tags.detach().cpu().numpy()[scene]
    present = tags.detach().cpu().numpy() > 0.5
    label = np.full(ids.shape[0], UNMATCHED, dtype=np.int64)
    match = hungarian_match if mode == "hungarian" else naive_match
    for b in np.unique(scene):
        rows = np.flatnonzero(scene == b)
        assigned = match(scores[rows], present[b])
        if group_of is not None:
            assigned = filter_assignments(assigned, prim[rows], group_of, conflict_labels)
        label[rows] = assigned
    keep = label != UNMATCHED
    if not keep.any():
        return MatchResult(logits.sum() * 0.0, 0, scene, prim, label)
    target = torch.from_numpy(label[keep]).to(logits.device)
    index = torch.from_numpy(np.flatnonzero(keep)).to(logits.device)
    loss = F.cross_entropy(logits[index], target, reduction="sum")
    return MatchResult(loss, int(keep.sum()), scene, prim, label)
