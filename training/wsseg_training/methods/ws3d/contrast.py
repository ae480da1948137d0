"""WS3D's multi-stage region-level contrast (§3.2, Eq. 6-7).

Two augmented views of the same crop hold the same regions.  At each of M = 5 backbone stages an MLP head
embeds the stage's voxel features; region-level max pooling gives one embedding per region and view,
``f_g`` (view 1) and ``f_h`` (view 2), L2-normalised.

Eq. 6 leaves the pairs open (METHOD_NOTES §4.4).  A region is *confident* when its region-level max-pooled
class probability exceeds γ in both views and both views agree on its class (its *pseudo class*).  For a
confident anchor region a of view 1 the negatives are the confident regions of view 2 of another pseudo class;
the positives are either (``positives="region"``, the default: "latent instance discrimination") a itself in
view 2 -- the other regions of a's class are then left out, neither pulled nor pushed -- or
(``positives="class"``) every confident region of view 2 with a's class.  H enters as a pair mask: pairs with a
non-confident region are left out of numerator and denominator (never ``log 0``, as Eq. 6 would give with H
inside the log).  Per anchor, the loss is the mean over its positives b of
``-log exp(f_a.f_b / τ) / Σ_{c in positives + negatives} exp(f_a.f_c / τ)``; anchors without a negative carry
no contrast and are skipped.  τ = 0.1 (the paper gives none; GPC's contrast uses 0.1).  The loss is averaged
over both directions (view 1 anchors against view 2 and the reverse).

Why the default is ``region``: with class positives every anchor's loss is at least log(#positives), a
quantity that grows with the number of confident regions; on our rooms it stayed at 12-18 (five stages) and
drowned the cross-entropy (bench/results/ws3d.md, the pilot runs).

Stages: the U-Net's stage outputs in forward order are ``encoder[0..L-1]`` (``encoder[L-1]`` = the bottom)
then ``decoder[L-2..0]``; the M stages are the last M of them, so the fifth stage is ``decoder[0]`` (the
features the segmentation head reads) and "single-stage contrast" (Tab. 5 No. 6) uses that one.  For the
``tiny`` profile (3 levels) the five stages are enc 0, enc 1, bottom, dec 1, dec 0; for ``cpu`` (4 levels)
enc 2, bottom, dec 2, dec 1, dec 0; for ``default`` (5 levels) the bottom and dec 3..0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: the paper's number of stages and our temperature
NUM_STAGES = 5
TEMPERATURE = 0.1
#: what a positive pair is (module docstring)
POSITIVES = ("region", "class")


@dataclass(frozen=True)
class StageRef:
    """One contrast stage: ``part`` "encoder" or "decoder", its ``level``, its feature width ``channels``."""

    part: str
    level: int
    channels: int


def contrast_stages(channels: tuple[int, ...], num_stages: int = NUM_STAGES) -> list[StageRef]:
    """The last ``num_stages`` stage outputs of a U-Net with ``channels`` per level (see module docstring)."""
    levels = len(channels)
    order = [StageRef("encoder", lv, channels[lv]) for lv in range(levels)]
    order += [StageRef("decoder", lv, channels[lv]) for lv in range(levels - 2, -1, -1)]
    if not 1 <= num_stages <= len(order):
        raise ValueError(f"contrast: {num_stages} stage(s) asked, a {levels}-level U-Net has {len(order)} "
                         "stage outputs")
    return order[-num_stages:]


class ContrastHeads(nn.Module):
    """One MLP per stage: ``Linear(c, d) - ReLU - Linear(d, d)`` (d = ``embed_dim``)."""

    def __init__(self, stages: list[StageRef], embed_dim: int = 32) -> None:
        super().__init__()
        if embed_dim < 1:
            raise ValueError(f"contrast embed_dim={embed_dim} must be >= 1")
        self.stages = list(stages)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(s.channels, embed_dim), nn.ReLU(), nn.Linear(embed_dim, embed_dim))
            for s in self.stages)

    def forward(self, index: int, features: torch.Tensor) -> torch.Tensor:
        """features: (M_level, c) of stage ``index`` -> (M_level, embed_dim) embeddings (not normalised)."""
        return self.heads[index](features)


def region_pseudo_classes(prob_1: torch.Tensor, prob_2: torch.Tensor,
                          gamma: float, use_confidence: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """prob_v: (R, C) region max-pooled probabilities of each view.

    Returns (pseudo (R,) int64 class, confident (R,) bool).  With ``use_confidence=False`` (Tab. 5 No. 5)
    every region counts, labelled by the argmax of the two views' sum.
    """
    p1, p2 = prob_1.detach(), prob_2.detach()
    c1, c2 = p1.argmax(dim=1), p2.argmax(dim=1)
    if not use_confidence:
        return (p1 + p2).argmax(dim=1), torch.ones_like(c1, dtype=torch.bool)
    confident = (p1.max(dim=1).values > gamma) & (p2.max(dim=1).values > gamma) & (c1 == c2)
    return c1, confident


def region_info_nce(anchor: torch.Tensor, other: torch.Tensor, pseudo: torch.Tensor, confident: torch.Tensor,
                    temperature: float = TEMPERATURE, positives: str = "region") -> tuple[torch.Tensor, torch.Tensor]:
    """One direction of Eq. 6 with H as a pair mask (see the module docstring).

    anchor, other: (R, D) region embeddings of the two views (row r = region r in both), normalised here.
    pseudo: (R,) int64 pseudo class.  confident: (R,) bool.  positives: "region" or "class".  Returns (sum of the
    anchors' losses, number of anchors that count).
    """
    if temperature <= 0:
        raise ValueError(f"region_info_nce: temperature={temperature} must be > 0")
    if positives not in POSITIVES:
        raise ValueError(f"region_info_nce: positives={positives!r} is not one of {POSITIVES}")
    if anchor.shape != other.shape or anchor.shape[0] != pseudo.shape[0]:
        raise ValueError(f"region_info_nce: anchor {tuple(anchor.shape)}, other {tuple(other.shape)}, "
                         f"pseudo {tuple(pseudo.shape)} disagree")
    zero = anchor.sum() * 0.0
    idx = torch.nonzero(confident).reshape(-1)
    if idx.numel() < 2:
        return zero, torch.zeros((), device=anchor.device)
    a = F.normalize(anchor[idx].float(), dim=1)
    b = F.normalize(other[idx].float(), dim=1)
    cls = pseudo[idx]
    logits = a @ b.T / temperature  # (K, K): only confident regions, so H = 1 on every entry
    same_class = cls[:, None] == cls[None, :]
    has_negative = (~same_class).any(dim=1)
    if not bool(has_negative.any()):
        return zero, torch.zeros((), device=anchor.device)
    if positives == "class":
        positive = same_class
    else:  # the same region in the other view; the other regions of its class leave the denominator
        positive = torch.eye(len(idx), dtype=torch.bool, device=anchor.device)
        logits = logits.masked_fill(same_class & ~positive, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    log_prob = log_prob.masked_fill(~positive, 0.0)  # -inf entries are never positives
    per_anchor = -(log_prob * positive).sum(dim=1) / positive.sum(dim=1)
    keep = has_negative
    return per_anchor[keep].sum(), keep.sum().to(per_anchor.dtype)


def symmetric_info_nce(f_1: torch.Tensor, f_2: torch.Tensor, pseudo: torch.Tensor, confident: torch.Tensor,
                       temperature: float = TEMPERATURE,
                       positives: str = "region") -> tuple[torch.Tensor, torch.Tensor]:
    """Both directions of :func:`region_info_nce` (sums and counts added)."""
    s12, n12 = region_info_nce(f_1, f_2, pseudo, confident, temperature, positives)
    s21, n21 = region_info_nce(f_2, f_1, pseudo, confident, temperature, positives)
    return s12 + s21, n12 + n21
