"""Pseudo labels of one scene from a trained MPRM classifier: passes -> voted scores -> masked argmax -> dense CRF
(-> low-confidence points ignored, ``ignore_below``).

:class:`PseudoLabeller` is the one pipeline behind the retrain stage's labels (:mod:`.method`), the offline
predictors on unannotated val scenes (:mod:`.predictor`, passes unmasked) and the ablation (``bench/mprm.py``, any
score variant with or without the CRF).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wsseg_training.engine.inference import Cloud
from wsseg_training.methods.mprm.cams import (
    SCORES,
    FeatureTap,
    Infer,
    Pass,
    SceneVotes,
    cam_head,
    vote_scene,
)
from wsseg_training.methods.mprm.crf import refine_with_crf
from wsseg_training.methods.mprm.options import MprmOptions
from wsseg_training.methods.mprm.paths import MultiPathModule


@dataclass
class SceneLabels:
    """(N,) int64 labels (-1 = no pass reached the point) of one scene: ``pcam`` (None when PCAM was not trained),
    ``fused`` (the chosen fusion), ``crf`` (fused + CRF; None without the CRF); ``keep`` (N,) bool, the points
    confident enough (None = all); ``final`` what the method trains on (-1 also where not kept)."""

    pcam: np.ndarray | None
    fused: np.ndarray
    crf: np.ndarray | None
    keep: np.ndarray | None = None

    @property
    def final(self) -> np.ndarray:
        labels = self.crf if self.crf is not None else self.fused
        return labels if self.keep is None else np.where(self.keep, labels, -1)

    def variants(self) -> dict[str, np.ndarray]:
        """{"pcam", "mprm", "mprm_crf"}: the ones computed."""
        out = {"pcam": self.pcam, "mprm": self.fused, "mprm_crf": self.crf}
        return {k: v for k, v in out.items() if v is not None}


class PseudoLabeller:
    """Labels scenes with a trained multi-path module (see the module docstring).

    module / tap: the classifier's paths and where they read the backbone.  num_classes: C.  crf_voxel_m: the
    CRF's grid, metres.  fusion, mask_rule, score_rescale, crf, crf_iterations, crf_unary_scale: as in
    :class:`MprmOptions`.
    """

    def __init__(self, module: MultiPathModule, tap: FeatureTap, options: MprmOptions, num_classes: int,
                 voxel_size_m: float) -> None:
        self.module = module
        self.tap = tap
        self.options = options
        self.num_classes = num_classes
        self.crf_voxel_m = options.crf_voxel_m or voxel_size_m

    def available(self, variants: Sequence[str]) -> list[str]:
        """The score variants of ``variants`` this module can produce (a single path only if it was trained)."""
        unknown = [v for v in variants if v not in SCORES]
        if unknown:
            raise ValueError(f"MPRM score variants {unknown} are not among {SCORES}")
        return [v for v in variants if v in ("max", "sum") or v in self.module.paths]

    def votes(self, infer: Infer, cloud: Cloud, passes: Sequence[Pass], variants: Sequence[str]) -> SceneVotes:
        """Voted scores of ``variants`` (:data:`~.cams.SCORES`) over the passes of one scene."""
        head = cam_head(self.module, self.tap, self.available(variants))
        return vote_scene(infer, cloud.xyz, cloud.rgb, cloud.intensity, passes, head, self.num_classes,
                          rescale=self.options.score_rescale)

    def labels(self, votes: SceneVotes, variant: str, cloud: Cloud, crf: bool) -> np.ndarray:
        """(N,) int64 labels of one voted variant, argmax of the masked scores or refined by the dense CRF."""
        rule = self.options.mask_rule
        if not crf:
            return votes.labels(variant, rule)
        scores, allowed = votes.mean(variant), votes.allowed
        if rule == "zero":  # the official code: absent classes score 0 and stay candidates of the CRF
            scores, allowed = scores * allowed, np.ones_like(allowed)
        return refine_with_crf(scores, allowed, cloud.xyz, cloud.rgb, self.crf_voxel_m, self.options.crf_iterations,
                               self.options.crf_unary_scale, valid=votes.count > 0)

    def label_scene(self, infer: Infer, cloud: Cloud, passes: Sequence[Pass]) -> SceneLabels:
        """The method's pipeline on one scene: PCAM, the chosen fusion, and the fusion refined by the CRF."""
        fusion = self.options.fusion
        has_pcam = "pcam" in self.module.paths
        votes = self.votes(infer, cloud, passes, [fusion, "pcam"] if has_pcam else [fusion])
        threshold = self.options.ignore_below
        return SceneLabels(pcam=votes.labels("pcam", self.options.mask_rule) if has_pcam else None,
                           fused=votes.labels(fusion, self.options.mask_rule),
                           crf=self.labels(votes, fusion, cloud, crf=True) if self.options.crf else None,
                           keep=votes.confidence(fusion) >= threshold if threshold > 0 else None)
