"""WS3D's boundary-aware region energy (§3.1, Eq. 3-5).

For one augmented view, ``p_i`` = the region-level max pooling of the per-point softmax over region ``s_i``
(a per-class maximum, so not a distribution; METHOD_NOTES §4.7).  Over the adjacent region pairs (i, j):

* unary ``E_i = -log max_c p_i,c``: the paper's "entropy regularisation" ``-log p(s_i)`` read as the
  log-probability of the region's most likely class (METHOD_NOTES §4.4 leaves the choice open; this one is
  bounded below by 0 and pushes each region towards one confident class), over every region;
* pairwise ``E_ij = H_ij w_ij [ε - ||p_i - p_j||]_+^2 + H_ij (1 - w_ij) ||p_i - p_j||^2`` (Eq. 5): boundary
  pairs (w = 1) are pushed apart up to the margin ε = 0.5, the other pairs pulled together, and only pairs
  whose two regions are confident (``H_ij = 1``: both maxima > γ = 0.8) count.  H is an indicator: no
  gradient flows through it.

The paper writes sums (Eq. 3); we average (unary over regions, pairwise over all adjacent pairs, H = 0 pairs
included as zeros) so that the term's scale does not grow with the crop's region count and unit weights
beside the cross-entropy stay meaningful.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: WS3D §4.1: confidence threshold γ and margin ε
GAMMA = 0.8
EPSILON = 0.5
#: floor on probabilities inside the log (never log 0)
_PROB_FLOOR = 1e-6


def confident_regions(prob: torch.Tensor, gamma: float = GAMMA) -> torch.Tensor:
    """prob: (R, C) region-level max-pooled probabilities -> (R,) bool, ``max_c prob > gamma``."""
    return prob.detach().max(dim=1).values > gamma


def pair_confidence(confident: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """H_ij: confident (R,) bool, pairs (E, 2) int64 -> (E,) float, 1 where both regions are confident."""
    return (confident[pairs[:, 0]] & confident[pairs[:, 1]]).to(torch.float32)


def pair_distance(prob: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """||p_i - p_j||: prob (R, C), pairs (E, 2) -> (E,) Euclidean distance (smoothed at 0 for the gradient)."""
    diff = prob[pairs[:, 0]] - prob[pairs[:, 1]]
    return torch.sqrt((diff * diff).sum(dim=1) + 1e-12)


@dataclass(frozen=True)
class EnergyTerms:
    """Sums and counts of one view's energy (the caller averages, e.g. with ``StepContext.mean``).

    unary_sum: Σ_i E_i over ``unary_count`` regions.  pair_sum: Σ_ij E_ij over ``pair_count`` adjacent pairs.
    confident_pairs: how many of those pairs have H = 1 (an analysis output, no gradient).
    """

    unary_sum: torch.Tensor
    unary_count: torch.Tensor
    pair_sum: torch.Tensor
    pair_count: torch.Tensor
    confident_pairs: torch.Tensor


def unary_energy(prob: torch.Tensor) -> torch.Tensor:
    """E_i = -log max_c p_i,c: prob (R, C) -> (R,)."""
    return -torch.log(prob.max(dim=1).values.clamp(min=_PROB_FLOOR))


def pairwise_energy(prob: torch.Tensor, pairs: torch.Tensor, w: torch.Tensor, h: torch.Tensor,
                    epsilon: float = EPSILON) -> torch.Tensor:
    """E_ij of Eq. 5: prob (R, C); pairs (E, 2) int64; w, h (E,) in {0, 1} (floats).  Returns (E,)."""
    if epsilon <= 0.0:
        raise ValueError(f"pairwise_energy: epsilon={epsilon} must be > 0")
    if pairs.shape[0] == 0:
        return prob.new_zeros(0)
    distance = pair_distance(prob, pairs)
    w, h = w.to(prob.dtype), h.to(prob.dtype).detach()
    push = torch.clamp(epsilon - distance, min=0.0) ** 2
    pull = distance**2
    return h * w * push + h * (1.0 - w) * pull


def region_energy(prob: torch.Tensor, pairs: torch.Tensor, w: torch.Tensor, gamma: float = GAMMA,
                  epsilon: float = EPSILON, use_pairwise: bool = True, use_confidence: bool = True) -> EnergyTerms:
    """E_sum of one view (Eq. 3), as sums and counts.

    prob: (R, C) float region probabilities.  pairs: (E, 2) int64 adjacent regions.  w: (E,) boundary labels.
    use_pairwise=False drops Σ E_ij (Tab. 5 No. 3); use_confidence=False sets H = 1 (No. 4).
    """
    confident = confident_regions(prob, gamma)
    h = pair_confidence(confident, pairs) if use_confidence else prob.new_ones(pairs.shape[0])
    unary = unary_energy(prob)
    pair = pairwise_energy(prob, pairs, w, h, epsilon) if use_pairwise else prob.new_zeros(pairs.shape[0])
    count = torch.tensor(float(pairs.shape[0]), device=prob.device)
    return EnergyTerms(unary_sum=unary.sum(), unary_count=torch.tensor(float(prob.shape[0]), device=prob.device),
                       pair_sum=pair.sum(), pair_count=count,
                       confident_pairs=pair_confidence(confident, pairs).sum().detach())
