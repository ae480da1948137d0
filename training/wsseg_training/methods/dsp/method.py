"""``dsp``: Dense Supervision Propagation (Wei, Lin et al.): cross-sample then intra-sample feature reallocation.

``wsseg train --method dsp --labels SPARSE_POINTS`` (``wsseg labels simulate --kind sparse_points``; without
``--labels`` it trains on the ground truth: "fully supervised DSP")::

    every stage: F = the decoder features after the first up-sampling (level L-2, ``attach_level``); Z = f_dec(F)
                 is the basic branch (the U-Net itself) with L_seg_basic = CE on the labelled points (Eq. 1)
    stage 1 CSFR (pairs sharing a labelled class):  F^c_j = softmax(F_i W_c F_j^T) F_j on i's voxels, and F^c_i
                 on j's; Z^c = f_dec(F^c) with each sample's own skips;  L = L_seg_basic + L_CR (Eq. 11),
                 L_CR = ||Z_i - Z^c_j||^2 (both directions)
    stage 2 ISFR (single crops, initialised from stage 1): F^s_i = softmax(F_i W_s F_i^T) F_i (no residual);
                 L = L_seg_basic + L_seg_s + L_SR (Eq. 12), L_seg_s = CE on Z^s, L_SR = ||Z^s_i - Z_i||^2
    never both in one stage (unless the ``joint`` ablation kind asks for it)

W_c and W_s (:class:`~wsseg_training.methods.dsp.reallocate.Affinity`) are training-only modules: ``model.pt``
and the exported bundle are the basic branch, the same network (and ONNX op set) as the baseline, so the robot
pays nothing for them.  Stages are engine :class:`~wsseg_training.engine.schedule.Stage` objects, one per entry of
``stages``, lengths = ``stage_shares`` of the run's steps (the paper: 600 + 600 epochs, equal shares); stage 2
simply continues with stage 1's backbone and optimiser (the engine keeps them), so ``--resume`` inside either
stage is the engine's bit-identical resume.

Choices the paper leaves open (all options, :mod:`~wsseg_training.methods.dsp.options`):

* L_CR / L_SR reduction: ||.||^2 summed over the classes, **averaged over the level-0 voxels** of the samples
  that take part (the paper writes the Frobenius norm, a sum; the mean keeps it on the scale of the CE terms);
  Z_i is not detached (``detach_basic``: false); Z = softmax of the decoder's logits (``consistency_space:
  probabilities``; the paper calls Z the prediction f_dec(F) without saying whether softmax is applied --
  ``logits`` compares the raw logits, which measured worse on every run, ``bench/results/dsp_2000steps.md``).
* The affinity logits are scaled by 1/sqrt(K) (``affinity_scale: sqrt_k``); ``none`` is the paper's unscaled
  F W F^T.  W starts as the identity.
* A pair only reallocates when its two samples share a labelled class (``Batch.tags``: the classes among each
  crop's labelled points); the engine's pair sampler draws the partner around a labelled point of a class of the
  first sample, so this fails only when the first crop has no labelled point at all.
* BatchNorm: the reallocated branches run through the decoder with batch statistics like the basic branch, but
  do not update the running statistics (``branch_bn_statistics: frozen``): what is exported normalises with the
  statistics of the features it will see.
* ``branch_gradient: features`` (not the paper's; default ``everything``): the reallocated branches' losses reach
  only the level's features and W, not the decoder weights or skips -- on our data the decoder otherwise meets
  L_CR / L_SR by ignoring the reallocated level (``bench/results/dsp_sensitivity.md``).
* Stage lengths are shares of the same total number of steps for every variant, so the baseline and each ablation
  row train exactly as long as DSP (the paper's two-stage rows train 1200 epochs).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import ClassVar

import torch
from torch import nn

from wsseg.core.classes import IGNORE_INDEX
from wsseg_training.engine.config import ConfigError
from wsseg_training.engine.sampling import CROP, Sampling
from wsseg_training.engine.schedule import Stage, TrainPlan
from wsseg_training.methods.base import StepContext
from wsseg_training.methods.common.losses import point_cross_entropy
from wsseg_training.methods.dsp.options import CROSS_KINDS, INTRA_KINDS, DspOptions
from wsseg_training.methods.dsp.reallocate import (
    Affinity,
    cross_reallocate,
    intra_reallocate,
    logit_scale,
    sample_rows,
)
from wsseg_training.methods.full import FullMethod
from wsseg_training.model.unet import SparseUNet, UNetOutput

#: the sampling of the stages that reallocate across samples: pairs of crops sharing a labelled class
PAIRS = Sampling(group="pairs")


def attach_level(backbone: SparseUNet, level: int) -> int:
    """The non-negative decoder level of ``attach_level`` (negative = counted from the bottom)."""
    resolved = level + backbone.num_levels if level < 0 else level
    if not 1 <= resolved <= backbone.num_levels - 1:
        raise ConfigError(f"method.attach_level {level} is outside the network's decoder levels 1..."
                          f"{backbone.num_levels - 1} (or -1...-{backbone.num_levels - 1}; {backbone.num_levels} "
                          "levels)")
    return resolved


def split_steps(total: int, shares: list[float]) -> list[int]:
    """``total`` steps split by ``shares`` (summing to 1): rounded, each >= 1, summing to ``total``."""
    if total < len(shares):
        raise ConfigError(f"method dsp: {len(shares)} stages need at least {len(shares)} training steps, got {total}")
    steps, done, acc = [], 0, 0.0
    for share in shares[:-1]:
        acc += share
        n = max(1, min(round(acc * total) - done, total - done - (len(shares) - len(steps) - 1)))
        steps.append(n)
        done += n
    return [*steps, total - done]


@contextlib.contextmanager
def frozen_running_statistics(module: nn.Module) -> Iterator[None]:
    """BatchNorms under ``module`` normalise with batch statistics but leave their running statistics (and
    ``num_batches_tracked``) as they are, in training mode; restored on exit."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for norm in norms:
        norm.track_running_stats = False
    try:
        yield
    finally:
        for norm in norms:
            norm.track_running_stats = True


def consistency(basic: torch.Tensor, branch: torch.Tensor, rows: torch.Tensor, detach: bool,
                space: str = "logits") -> tuple[torch.Tensor, torch.Tensor]:
    """(sum over ``rows`` of ||Z_row - Z'_row||^2, number of rows): L_CR / L_SR before ``ctx.mean``.

    basic, branch: (M_0, C) logits of the basic and a reallocated branch.  rows: (R,) int64 level-0 voxel rows.
    space: ``logits`` compares Z as the decoder outputs it; ``probabilities`` compares softmax(Z) over the classes
    (each row's term then lies in [0, 2]).
    """
    z, other = basic[rows].float(), branch[rows].float()
    if space == "probabilities":
        z, other = z.softmax(dim=1), other.softmax(dim=1)
    if detach:
        z = z.detach()
    return (z - other).pow(2).sum(), basic.new_tensor(float(rows.numel()))


class _DecodeFrom(nn.Module):
    """``backbone.decode_from(...).logits`` as a module call, so :func:`torch.func.functional_call` can swap in
    detached weights."""

    def __init__(self, backbone: SparseUNet) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, output: UNetOutput, level: int, features: torch.Tensor) -> torch.Tensor:
        return self.backbone.decode_from(output, level, features).logits


def decode_with_fixed_decoder(backbone: SparseUNet, output: UNetOutput, level: int,
                              features: torch.Tensor) -> torch.Tensor:
    """(M_0, C) logits of ``backbone.decode_from(output, level, features)`` whose gradients reach only
    ``features``: the weights and the pass's skip features enter detached (same values, BatchNorm as the caller
    sets it up)."""
    if output.state is None:
        raise ValueError("decode_with_fixed_decoder needs an output of SparseUNet.run (it has no state)")
    state = dataclasses.replace(output.state, skips=[s.detach() for s in output.state.skips])
    fixed = dataclasses.replace(output, state=state)
    weights = {f"backbone.{name}": p.detach() for name, p in backbone.named_parameters()}
    return torch.func.functional_call(_DecodeFrom(backbone), weights, (fixed, level, features))


class DspMethod(FullMethod):
    """CSFR, then ISFR, over the sparse U-Net (module docstring)."""

    name = "dsp"
    label_kinds: ClassVar[tuple[str, ...]] = ("sparse_points",)
    Options = DspOptions
    options: DspOptions

    def build_modules(self, backbone: SparseUNet) -> nn.ModuleDict:
        channels = backbone.config.channels[attach_level(backbone, self.options.attach_level)]
        kinds = set(self.options.stages)
        modules = {}
        if kinds & set(CROSS_KINDS):
            modules["csfr"] = Affinity(channels, self.options.affinity_init)
        if kinds & set(INTRA_KINDS):
            modules["isfr"] = Affinity(channels, self.options.affinity_init)
        return nn.ModuleDict(modules)

    def stages(self, plan: TrainPlan) -> list[Stage]:
        lengths = split_steps(plan.total_steps, self.options.shares())
        return [Stage(kind, steps, restart_schedule=index > 0 and self.options.stage_restart_schedule,
                      sampling=PAIRS if kind in CROSS_KINDS else CROP)
                for index, (kind, steps) in enumerate(zip(self.options.stages, lengths, strict=True))]

    def kind_of(self, stage_index: int) -> str:
        return self.options.stages[stage_index]

    def losses(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        kind = self.kind_of(ctx.stage_index)
        labels = ctx.batch.point_targets["labels"]
        terms = super().losses(ctx)  # L_seg_basic, "ce"
        if kind == "basic":
            return terms
        level = attach_level(ctx.backbone, self.options.attach_level)
        features = ctx.output.decoder[level]
        rows = sample_rows(ctx.batch.level_batch(level), ctx.batch.host.size)
        voxel_batch = ctx.batch.level_batch(0)
        if kind in CROSS_KINDS:
            taking = self.sharing_pairs(ctx)
            affinity = ctx.modules["csfr"]
            scale = logit_scale(self.options.affinity_scale, affinity.channels)
            partner = [int(p) for p in ctx.batch.host.partner]
            member = [int(m) for m in ctx.batch.host.member]
            cross = self._decode(ctx, level, cross_reallocate(features, rows, partner, member, affinity.weight,
                                                              scale, self.options.chunk_rows, taking))
            voxels = torch.nonzero(torch.as_tensor(taking, device=voxel_batch.device)[voxel_batch]).squeeze(1)
            total, count = consistency(ctx.output.logits, cross, voxels, self.options.detach_basic,
                                       self.options.consistency_space)
            terms["cr"] = self.options.cr_weight * ctx.mean(total, count)
            if self.options.cross_segmentation:
                point_taking = torch.as_tensor(taking, device=labels.device)[ctx.batch.point_batch]
                masked = torch.where(point_taking, labels, torch.full_like(labels, IGNORE_INDEX))
                ce, weight = point_cross_entropy(cross[ctx.batch.inverse], masked, self.weights)
                terms["ce_cross"] = ctx.mean(ce, weight)
        if kind in INTRA_KINDS:
            affinity = ctx.modules["isfr"]
            scale = logit_scale(self.options.affinity_scale, affinity.channels)
            intra = self._decode(ctx, level, intra_reallocate(features, rows, affinity.weight, scale,
                                                              self.options.chunk_rows))
            every = torch.arange(intra.shape[0], device=intra.device)
            total, count = consistency(ctx.output.logits, intra, every, self.options.detach_basic,
                                       self.options.consistency_space)
            terms["sr"] = self.options.sr_weight * ctx.mean(total, count)
            if self.options.intra_segmentation:
                ce, weight = point_cross_entropy(intra[ctx.batch.inverse], labels, self.weights)
                terms["ce_intra"] = ctx.mean(ce, weight)
        return terms

    @staticmethod
    def sharing_pairs(ctx: StepContext) -> list[bool]:
        """Per batch position: whether it and its pair partner share a labelled class (``Batch.tags``)."""
        tags, partner = ctx.batch.host.tags, ctx.batch.host.partner
        if tags is None:
            return [bool(p >= 0) for p in partner]
        return [bool(p >= 0 and (tags[b] * tags[p]).sum() > 0) for b, p in enumerate(partner)]

    def _decode(self, ctx: StepContext, level: int, features: torch.Tensor) -> torch.Tensor:
        """(M_0, C) logits of ``features`` at ``level`` decoded with each sample's own skips."""
        frozen = self.options.branch_bn_statistics == "frozen"
        with frozen_running_statistics(ctx.backbone) if frozen else contextlib.nullcontext():
            if self.options.branch_gradient == "features":
                return decode_with_fixed_decoder(ctx.backbone, ctx.output, level, features)
            return ctx.backbone.decode_from(ctx.output, level, features).logits
