"""One step of WS3D's unsupervised branch over the view groups of a batch (§3.1-3.2).

``L_unlabeled = E_sum,1 + E_sum,2 + L_multi``: for each view v, region max pooling of the per-point softmax
gives p_v (R, C) and the region energy E_sum,v (:mod:`~wsseg_training.methods.ws3d.energy`); the contrast of
every stage compares the views' region embeddings (:mod:`~wsseg_training.methods.ws3d.contrast`).  The Tab. 5
ablations are switches of :class:`Branch`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from wsseg_training.methods.common.segments import segment_max
from wsseg_training.methods.ws3d.contrast import ContrastHeads, region_pseudo_classes, symmetric_info_nce
from wsseg_training.methods.ws3d.energy import EPSILON, GAMMA, region_energy
from wsseg_training.methods.ws3d.regions import ViewRegions
from wsseg_training.model.unet import UNetOutput


@dataclass(frozen=True)
class Branch:
    """What the unsupervised branch computes (all on = the full WS3D, Tab. 5 No. 1).

    boundary: use the boundary labels w (off = No. 2: w = 0, every confident pair pulled together).
    pairwise: the pairwise energy (off = No. 3).  energy_confidence: H in the energy (off = No. 4: H = 1).
    contrast: the region contrast (off = No. 7).  contrast_confidence: H in the contrast (off = No. 5).
    gamma, epsilon, temperature: γ, ε, τ.  positives: the contrast's positive pairs ("region" / "class").
    """

    boundary: bool = True
    pairwise: bool = True
    energy_confidence: bool = True
    contrast: bool = True
    contrast_confidence: bool = True
    gamma: float = GAMMA
    epsilon: float = EPSILON
    temperature: float = 0.1
    positives: str = "region"


@dataclass(frozen=True)
class UnsupervisedTerms:
    """Sums and counts of one step (average with ``StepContext.mean``).

    unary_* / pair_*: both views' unary and pairwise energies.  contrast_sums / contrast_counts: one entry per
    stage (Eq. 7 sums the stages' averages).
    confident_pairs / pairs: adjacent pairs with H = 1 and all adjacent pairs, over both views (analysis).
    """

    unary_sum: torch.Tensor
    unary_count: torch.Tensor
    pair_sum: torch.Tensor
    pair_count: torch.Tensor
    contrast_sums: list[torch.Tensor]
    contrast_counts: list[torch.Tensor]
    confident_pairs: torch.Tensor
    pairs: torch.Tensor


def region_probabilities(point_logits: torch.Tensor, regions: ViewRegions) -> list[torch.Tensor]:
    """point_logits: (P, C) of the whole batch -> per view (R, C) region max-pooled softmax."""
    node = torch.as_tensor(regions.node, device=point_logits.device)
    out = []
    for rows in regions.rows:
        prob = torch.softmax(point_logits[torch.as_tensor(rows, device=point_logits.device)].float(), dim=1)
        out.append(segment_max(prob, node, regions.num_regions)[0])
    return out


def stage_features(output: UNetOutput, part: str, level: int) -> torch.Tensor:
    """The stage output ``part`` ("encoder" / "decoder") at ``level``: (M_level, c_level)."""
    return (output.encoder if part == "encoder" else output.decoder)[level]


def unsupervised_terms(output: UNetOutput, point_logits: torch.Tensor, regions: ViewRegions,
                       level_rows: Callable[[int], torch.Tensor], heads: ContrastHeads | None,
                       branch: Branch) -> UnsupervisedTerms:
    """The branch over one batch of view groups.

    output: the backbone's forward pass over the batch.  point_logits: (P, C).  regions: the view groups'
    regions.  level_rows(level): (P,) voxel row of every batch point at that level.  heads: the contrast heads
    (None when ``branch.contrast`` is off).
    """
    device = point_logits.device
    probs = region_probabilities(point_logits, regions)
    pairs = torch.as_tensor(regions.pairs, device=device)
    w = torch.as_tensor(regions.w, device=device) if branch.boundary else torch.zeros(len(regions.pairs),
                                                                                      device=device)
    zero = point_logits.sum() * 0.0
    sums = {"unary": zero, "unary_n": zero.detach(), "pair": zero, "pair_n": zero.detach(), "conf": zero.detach()}
    for prob in probs:
        terms = region_energy(prob, pairs, w, branch.gamma, branch.epsilon, use_pairwise=branch.pairwise,
                              use_confidence=branch.energy_confidence)
        sums["unary"] = sums["unary"] + terms.unary_sum
        sums["unary_n"] = sums["unary_n"] + terms.unary_count
        sums["pair"] = sums["pair"] + terms.pair_sum
        sums["pair_n"] = sums["pair_n"] + terms.pair_count
        sums["conf"] = sums["conf"] + terms.confident_pairs
    contrast_sums: list[torch.Tensor] = []
    contrast_counts: list[torch.Tensor] = []
    if branch.contrast and heads is not None and regions.num_regions:
        pseudo, confident = region_pseudo_classes(probs[0], probs[1], branch.gamma, branch.contrast_confidence)
        node = torch.as_tensor(regions.node, device=device)
        for index, stage in enumerate(heads.stages):
            embedded = heads(index, stage_features(output, stage.part, stage.level))
            rows = level_rows(stage.level)
            pooled = [segment_max(embedded[rows[torch.as_tensor(r, device=device)]], node, regions.num_regions)[0]
                      for r in regions.rows[:2]]
            s, n = symmetric_info_nce(pooled[0], pooled[1], pseudo, confident, branch.temperature, branch.positives)
            contrast_sums.append(s)
            contrast_counts.append(n)
    return UnsupervisedTerms(unary_sum=sums["unary"], unary_count=sums["unary_n"], pair_sum=sums["pair"],
                             pair_count=sums["pair_n"], contrast_sums=contrast_sums, contrast_counts=contrast_counts,
                             confident_pairs=sums["conf"],
                             pairs=torch.tensor(float(len(regions.pairs) * len(probs)), device=device))
