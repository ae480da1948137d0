"""DSP's feature reallocation: every voxel's feature rebuilt as an affinity-weighted sum of other voxels' features.

Cross-sample (CSFR, DSP Eq. 2-4) for a pair (i, j) sharing a labelled class, with a learnable W_c (K, K)::

    A_c   = s F_i W_c F_j^T                     (N_i, N_j)
    F^c_j = softmax_j(A_c) F_j                  (N_i, K)   j's features on i's voxels (rows sum to 1 over j)
    F^c_i = softmax_i(A_c)^T F_i                (N_j, K)   = reallocate(F_j, F_i, W_c^T): i's features on j's voxels

Intra-sample (ISFR, Eq. 6-8) with its own W_s, no residual::

    F^s_i = softmax(s F_i W_s F_i^T) F_i       (N_i, K)

``s`` is the logit scale (``affinity_scale``: 1 = the paper's unscaled bilinear form, or 1/sqrt(K)).  The paper
writes Eq. 4 as "F_j A^j_c", which is dimensionally transposed; the forms above are the consistent reading
(METHOD_NOTES §2.4).

Memory: the affinity of one direction is N_i x N_j float32 (and autograd keeps the softmax for the backward pass).
With ``chunk_rows`` > 0 the query rows are processed ``chunk_rows`` at a time and, when gradients are on, each
chunk is recomputed in the backward pass (:func:`torch.utils.checkpoint.checkpoint`), so at most one chunk's
``chunk_rows x N_j`` affinity is alive.  This is exact, not a sub-sample: the softmax runs over the whole source
row, and each query row's softmax is independent of the other rows.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

AFFINITY_SCALES = ("none", "sqrt_k")
AFFINITY_INITS = ("identity", "xavier")


class Affinity(nn.Module):
    """The learnable K x K matrix W of a bilinear affinity F_q W F_s^T (W_c of CSFR or W_s of ISFR).

    init: ``identity`` (the affinity starts as the features' dot product) or ``xavier`` (random).
    """

    def __init__(self, channels: int, init: str = "identity") -> None:
        super().__init__()
        if init not in AFFINITY_INITS:
            raise ValueError(f"affinity init {init!r} is not one of {AFFINITY_INITS}")
        self.weight = nn.Parameter(torch.empty(channels, channels))
        if init == "identity":
            nn.init.eye_(self.weight)
        else:
            nn.init.xavier_uniform_(self.weight)

    @property
    def channels(self) -> int:
        return int(self.weight.shape[0])


def logit_scale(scale: str, channels: int) -> float:
    """The factor s on the affinity logits: 1 (``none``, the paper's form) or 1/sqrt(K) (``sqrt_k``)."""
    if scale not in AFFINITY_SCALES:
        raise ValueError(f"affinity scale {scale!r} is not one of {AFFINITY_SCALES}")
    return 1.0 if scale == "none" else 1.0 / math.sqrt(channels)


def _reallocate_rows(query: torch.Tensor, source: torch.Tensor, weight: torch.Tensor, scale: float) -> torch.Tensor:
    logits = (query @ weight) @ source.t()
    if scale != 1.0:
        logits = logits * scale
    return torch.softmax(logits, dim=1) @ source


def reallocate(query: torch.Tensor, source: torch.Tensor, weight: torch.Tensor, scale: float = 1.0,
               chunk_rows: int = 0) -> torch.Tensor:
    """softmax(s · query W sourceᵀ, over the source rows) · source.

    query: (N_q, K) float.  source: (N_s, K) float (N_s >= 1).  weight: (K, K).  scale: s.
    chunk_rows: 0 = one product; > 0 = exact row chunks of that many query rows (module docstring).
    Returns (N_q, K): row n is a convex combination of the source rows.
    """
    if query.ndim != 2 or source.ndim != 2 or query.shape[1] != source.shape[1]:
        raise ValueError(f"reallocate: query {tuple(query.shape)} and source {tuple(source.shape)} must be (N, K) "
                         "with the same K")
    if tuple(weight.shape) != (query.shape[1], query.shape[1]):
        raise ValueError(f"reallocate: weight must be ({query.shape[1]}, {query.shape[1]}), got {tuple(weight.shape)}")
    if source.shape[0] == 0:
        raise ValueError("reallocate: the source has no row to take features from")
    if chunk_rows <= 0 or query.shape[0] <= chunk_rows:
        return _reallocate_rows(query, source, weight, scale)
    track = torch.is_grad_enabled() and (query.requires_grad or source.requires_grad or weight.requires_grad)
    parts = []
    for start in range(0, query.shape[0], chunk_rows):
        rows = query[start:start + chunk_rows]
        if track:
            parts.append(checkpoint(_reallocate_rows, rows, source, weight, scale, use_reentrant=False))
        else:
            parts.append(_reallocate_rows(rows, source, weight, scale))
    return torch.cat(parts)


def sample_rows(owner: torch.Tensor, size: int) -> list[torch.Tensor]:
    """(n_b,) int64 row indices of each batch position b = 0..size-1 (``owner``: (M,) int64 position of each row)."""
    return [torch.nonzero(owner == b).squeeze(1) for b in range(size)]


def cross_reallocate(features: torch.Tensor, rows: list[torch.Tensor], partner: list[int], member: list[int],
                     weight: torch.Tensor, scale: float = 1.0, chunk_rows: int = 0,
                     taking: list[bool] | None = None) -> torch.Tensor:
    """CSFR over a batch of pairs: every sample's rows replaced by its partner's features reallocated onto them.

    features: (M, K) one level's features of the whole batch.  rows: :func:`sample_rows`.  partner[b]: the batch
    position of b's pair partner.  member[b]: 0 for i, 1 for j of the pair (i gets F^c_j with W_c, j gets F^c_i
    with W_c^T: both directions of one affinity A_c).  taking[b]: whether b is reallocated (None = all); the others
    keep their features.  Returns (M, K).
    """
    out = features
    for b, mine in enumerate(rows):
        other = rows[partner[b]]
        if mine.numel() == 0 or (taking is not None and not taking[b]):
            continue
        w = weight if member[b] == 0 else weight.t()
        out = out.index_copy(0, mine, reallocate(features[mine], features[other], w, scale, chunk_rows))
    return out


def intra_reallocate(features: torch.Tensor, rows: list[torch.Tensor], weight: torch.Tensor, scale: float = 1.0,
                     chunk_rows: int = 0) -> torch.Tensor:
    """ISFR over a batch: every sample's rows replaced by softmax(F_b W_s F_bᵀ) F_b.  Shapes as
    :func:`cross_reallocate`."""
    out = features
    for mine in rows:
        if mine.numel() == 0:
            continue
        own = features[mine]
        out = out.index_copy(0, mine, reallocate(own, own, weight, scale, chunk_rows))
    return out
