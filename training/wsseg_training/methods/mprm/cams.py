"""Pseudo-label scores from the trained classification network [MPRM §4.2-4.3, METHOD_NOTES §3.4].

For every scene, *passes* (balls of r = 2 m, the attention's unit) run through the network in eval mode
(:func:`wsseg_training.engine.inference.infer`, one ball = one sample, as in training); each path's CAM is taken
at its level, up-sampled to the points by nearest up-sampling (every point takes the value of its voxel at that
level: the U-Net's parent chain, :func:`~wsseg_training.model.levels.voxel_rows_at_level`), fused across paths
(element-wise **max**; ``sum`` as the ablation; or a single path) and voted: a point's score is the mean of its
passes' scores.  Optionally (``score_rescale: z``, ours) each class's voted map is standardised over the scene's
points before the argmax and the CRF (:func:`standardize_scores`): a map that ranks its class's points well but on a
smaller scale than its neighbours' maps then still wins them.

Masks come from the annotations only: a pass carries the classes that may appear in it (an annotated sub-cloud's
tags; the scene's tags for the scene-tag grid of balls; none = every class, for unannotated val scenes).  A point
may take only the classes allowed by **every** pass that holds it -- its true class is in each of those tag sets --
and the others are set to -inf (:func:`mask_scores`; multiplying by 0 as the official code does lets an absent
class win wherever every present class scores below 0).  The official code reads the ground-truth classes of each
test sphere for its masks; nothing here sees ground truth.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from wsseg_training.engine.inference import ForwardView, PointCloud
from wsseg_training.engine.sampling import ball_indices
from wsseg_training.labels.simulate import subcloud_centres
from wsseg_training.labels.types import Subcloud
from wsseg_training.methods.mprm.options import FUSIONS, MASK_RULES, PATHS, SCORE_RESCALES
from wsseg_training.methods.mprm.paths import MultiPathModule
from wsseg_training.model.levels import voxel_rows_at_level
from wsseg_training.model.unet import UNetOutput

#: the pseudo-label score variants :func:`fuse` knows: the fusions and each single path
SCORES = FUSIONS + PATHS


@dataclass(frozen=True)
class FeatureTap:
    """Where the paths read the backbone: ``source`` "encoder" | "decoder", U-Net ``level``."""

    source: str
    level: int

    def features(self, output: UNetOutput) -> torch.Tensor:
        """(M_level, c) in the level's reference order."""
        maps = output.encoder if self.source == "encoder" else output.decoder
        return maps[self.level]


def cam_maps(module: MultiPathModule, tap: FeatureTap, output: UNetOutput, sample: torch.Tensor,
             num_samples: int) -> dict[str, torch.Tensor]:
    """{path: (M_level, C)} CAMs of a forward pass (``sample``: batch position of every row of the level)."""
    if output.state is None:
        raise ValueError("MPRM needs a forward pass with its convolution ops (UNetOutput.state)")
    return module(tap.features(output), output.state.ops, tap.level, sample, num_samples)


def fuse(cams: dict[str, torch.Tensor], how: str) -> torch.Tensor:
    """One score map from the paths' CAMs: ``max`` / ``sum`` over the paths present, or one path by name."""
    if how in PATHS:
        return cams[how]
    stacked = torch.stack([cams[p] for p in PATHS if p in cams])
    if how == "max":
        return stacked.max(dim=0).values
    if how == "sum":
        return stacked.sum(dim=0)
    raise ValueError(f"MPRM fusion {how!r} is not one of {SCORES}")


def mask_scores(scores: torch.Tensor, allowed: torch.Tensor, rule: str = "neg_inf") -> torch.Tensor:
    """Scores of the classes a point may not take removed: (N, C) float, (N, C) bool -> (N, C).

    ``neg_inf``: set to -inf, so the argmax is always an allowed class.  ``zero``: multiplied by 0 (Eq. 2 as the
    official code applies it), so an absent class (score 0) beats allowed classes that all score below 0."""
    if rule == "neg_inf":
        return scores.masked_fill(~allowed, float("-inf"))
    if rule == "zero":
        return scores * allowed.to(scores.dtype)
    raise ValueError(f"MPRM mask rule {rule!r} is not one of {MASK_RULES}")


def standardize_scores(scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Each class's scores minus their mean, over their standard deviation, both over the ``valid`` points:
    (N, C) float, (N,) bool -> (N, C) float32 (0 at invalid points; a constant column becomes 0)."""
    out = np.zeros(scores.shape, np.float32)
    if not valid.any():
        return out
    chosen = np.asarray(scores, np.float64)[valid]
    spread = chosen.std(axis=0)
    out[valid] = (chosen - chosen.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    return out


@dataclass(frozen=True)
class Pass:
    """One ball of a pseudo-label pass: ``centre`` (3,) metres, ``radius_m``, ``classes`` the annotated tags that
    mask it (None = every class)."""

    centre: np.ndarray
    radius_m: float
    classes: tuple[int, ...] | None


def subcloud_passes(subclouds: Sequence[Subcloud]) -> list[Pass]:
    """The annotated sub-clouds themselves, each masked by its own tags."""
    return [Pass(np.asarray(s.centre, np.float64), float(s.radius_m), tuple(s.classes)) for s in subclouds]


def grid_passes(xyz: np.ndarray, radius_m: float, spacing_m: float | None = None,
                classes: tuple[int, ...] | None = None) -> list[Pass]:
    """Balls on the sub-cloud seeding grid (⌈l / spacing⌉ centres per axis, every point within reach), all masked by
    ``classes`` (the scene's tags; None = unmasked)."""
    centres = subcloud_centres(xyz, spacing_m or radius_m, "paper")
    return [Pass(c, float(radius_m), classes) for c in centres]


def whole_scene_pass(xyz: np.ndarray, classes: tuple[int, ...] | None = None) -> list[Pass]:
    """One ball holding every point of ``xyz`` (N, 3) metres, masked by ``classes`` (a whole-scene sample)."""
    points = np.asarray(xyz, np.float64)
    centre = (points.min(axis=0) + points.max(axis=0)) / 2
    return [Pass(centre, float(np.linalg.norm(points - centre, axis=1).max()) + 1e-3, classes)]


@dataclass
class SceneVotes:
    """Votes of one scene's passes.  sums: {score variant: (N, C) float64 summed scores}; count: (N,) passes per
    point; allowed: (N, C) bool, the classes every pass holding the point allows; rescale: one of
    :data:`SCORE_RESCALES`, applied by :meth:`mean`."""

    num_points: int
    num_classes: int
    rescale: str = "none"
    sums: dict[str, np.ndarray] = field(default_factory=dict)
    count: np.ndarray = field(init=False)
    allowed: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.count = np.zeros(self.num_points, np.int64)
        self.allowed = np.ones((self.num_points, self.num_classes), bool)

    def add(self, points: np.ndarray, scores: dict[str, np.ndarray], classes: tuple[int, ...] | None) -> None:
        """One pass: ``points`` (K,) int64 scene indices, ``scores`` {variant: (K, C)}, its mask ``classes``."""
        for name, value in scores.items():
            total = self.sums.setdefault(name, np.zeros((self.num_points, self.num_classes)))
            total[points] += value
        self.count[points] += 1
        if classes is not None:
            keep = np.zeros(self.num_classes, bool)
            keep[list(classes)] = True
            self.allowed[points] &= keep

    def mean(self, variant: str) -> np.ndarray:
        """(N, C) float32 mean score of the passes (0 where no pass reached the point), rescaled per class over the
        reached points when ``rescale`` is ``z``."""
        mean = (self.sums[variant] / np.maximum(self.count, 1)[:, None]).astype(np.float32)
        if self.rescale == "z":
            return standardize_scores(mean, self.count > 0)
        if self.rescale != "none":
            raise ValueError(f"MPRM score rescale {self.rescale!r} is not one of {SCORE_RESCALES}")
        return mean

    def scores(self, variant: str, rule: str = "neg_inf") -> torch.Tensor:
        """(N, C) masked mean scores (:func:`mask_scores`; a point without any allowed class keeps all)."""
        allowed = self.allowed | ~self.allowed.any(axis=1, keepdims=True)
        return mask_scores(torch.from_numpy(self.mean(variant)), torch.from_numpy(allowed), rule)

    def confidence(self, variant: str) -> np.ndarray:
        """(N,) float32 in [1/C, 1]: the top softmax probability of the mean scores over the allowed classes (the
        distribution the CRF's unary starts from); 0 where no pass reached the point."""
        top = torch.softmax(self.scores(variant).float(), dim=1).max(dim=1).values.numpy().astype(np.float32)
        top[self.count == 0] = 0.0
        return top

    def labels(self, variant: str, rule: str = "neg_inf") -> np.ndarray:
        """(N,) int64 argmax of the masked scores, -1 where no pass reached the point."""
        labels = self.scores(variant, rule).argmax(dim=1).numpy().astype(np.int64)
        labels[self.count == 0] = -1
        return labels


Infer = Callable[..., list[Any]]


def cam_head(module: MultiPathModule, tap: FeatureTap, variants: Sequence[str]) -> Callable[[ForwardView], dict]:
    """An :func:`~wsseg_training.engine.inference.infer` head: the requested score variants of one ball (a single
    sample) on its level-0 voxels, each voxel taking its level-``tap.level`` parent's value."""

    def head(view: ForwardView) -> dict[str, torch.Tensor]:
        rows = view.output.encoder[tap.level].shape[0]
        sample = torch.zeros(rows, dtype=torch.int64, device=view.features.device)
        cams = cam_maps(module, tap, view.output, sample, 1)
        num_levels = view.net_input.maps.num_levels
        level0 = torch.arange(view.features.shape[0], device=view.features.device)
        parent = voxel_rows_at_level(level0, view.maps[2 * num_levels - 1:], tap.level)
        return {name: fuse(cams, name)[parent] for name in variants}

    return head


def vote_scene(infer: Infer, xyz: np.ndarray, rgb: np.ndarray | None, intensity: np.ndarray | None,
               passes: Sequence[Pass], head: Callable[[ForwardView], dict], num_classes: int,
               desc: str = "MPRM passes", rescale: str = "none") -> SceneVotes:
    """Run every pass of one scene and vote (module docstring).  ``infer(clouds, head=, reduce=, desc=)`` is
    :meth:`StageContext.infer` or a partial of :func:`~wsseg_training.engine.inference.infer`; ``rescale``: as
    :class:`SceneVotes`."""
    votes = SceneVotes(int(xyz.shape[0]), num_classes, rescale)
    members = [ball_indices(xyz, p.centre, p.radius_m, 0) for p in passes]
    chosen = [(p, m) for p, m in zip(passes, members, strict=True) if m.size]
    clouds = [PointCloud(xyz[m], None if rgb is None else rgb[m], None if intensity is None else intensity[m])
              for _, m in chosen]
    if not clouds:
        return votes
    results = infer(clouds, head=head, reduce=lambda i, out: {k: v.float().cpu().numpy() for k, v in out.items()},
                    desc=desc)
    for (p, m), scores in zip(chosen, results, strict=True):
        votes.add(m, scores, p.classes)
    return votes
