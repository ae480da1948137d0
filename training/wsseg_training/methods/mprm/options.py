"""Options of ``wsseg train --method mprm`` (config ``method:``), one frozen dataclass.

Sources: MPRM §4-5 and its official code (``plusmultiply/mprm``, METHOD_NOTES §3): r = 2 m sub-clouds, sigmoid BCE
on each path's global average, element-wise max fusion, a dense CRF (xyz θ 0.2 m w 3, xyz + RGB θ 0.2 m / 0.04 w
10, 5 mean-field iterations, unary from softmax mixed half-half with the uniform distribution: pydensecrf's
``unary_from_softmax(scale=0.5)``), then a segmentation network retrained with cross-entropy.  Where the paper is
silent or meant a 256-channel KPConv, the choices are ours and say so in their ``doc``.
"""

from __future__ import annotations

from dataclasses import dataclass

from wsseg_training.engine.config import FieldError
from wsseg_training.methods.common.class_weights import CLASS_WEIGHTINGS
from wsseg_training.methods.common.options import MethodOptions, option

#: the four paths of the multi-path region mining module, in the paper's order
PATHS = ("pcam", "sa", "ca", "psa")
#: how the paths' class-activation maps are fused into one score per point and class
FUSIONS = ("max", "sum")
#: where the classification paths read the backbone
FEATURE_SOURCES = ("encoder", "decoder")
#: how classes absent from a sample's tags are removed from its scores (``zero`` = the official code's bug)
MASK_RULES = ("neg_inf", "zero")
#: what a classification sample is with scene tags (``ball`` = the paper)
SCENE_SAMPLES = ("ball", "scene")
#: per-class rescalings of a scene's voted scores before the argmax and the CRF (``none`` = the paper)
SCORE_RESCALES = ("none", "z")


@dataclass(frozen=True, kw_only=True)
class MprmOptions(MethodOptions):
    """Every MPRM knob (module docstring for the sources)."""

    feature_source: str = option("encoder", choices=FEATURE_SOURCES,
                                 doc="read the backbone's encoder (the paper: a classification network) or "
                                     "decoder features at feature_level")
    feature_level: int = option(2, ge=0, doc="U-Net level of the CAM features (the paper: after two "
                                             "down-samplings = level 2)")
    path_channels: int | None = option(None, ge=1, doc="width inside each attention path (None = the level's "
                                                       "width; the paper: fdim / 4 of a 256-wide layer)")
    qk_channels: int | None = option(None, ge=1, doc="width of the spatial attention's queries and keys (None = "
                                                     "max(4, path_channels / 8); the paper: fdim / 32)")
    dropout: float = option(0.0, ge=0, lt=1, doc="dropout before each 1x1 classifier (the paper: 0.5; its code: "
                                                 "none)")
    paths: tuple[str, ...] = option(PATHS, doc="paths trained jointly (all four = MPRM; ('pcam',) = the PCAM "
                                               "baseline trained alone)")
    fusion: str = option("max", choices=FUSIONS, doc="fusion of the paths' CAMs into pseudo-label scores")
    mask_rule: str = option("neg_inf", choices=MASK_RULES,
                            doc="absent classes: -inf (ours) or x0 (the official code: lets an absent class win)")
    classify_share: float = option(0.5, gt=0, lt=1, doc="share of the run's steps for the classification stage "
                                                        "(the rest retrains the segmentation network)")
    classify_steps: int | None = option(None, ge=1, doc="or: classification steps (None = classify_share)")
    radius_m: float = option(2.0, gt=0, doc="ball radius of scene-tag training samples and of the pseudo-label "
                                            "passes with scene tags, metres (the paper: 2 m)")
    scene_sample: str = option("ball", choices=SCENE_SAMPLES,
                               doc="scene tags: classify random balls of radius_m carrying the scene's tags (the "
                                   "paper; a ball may miss a tagged class) or whole scenes, whose tags are exact "
                                   "(ours, for rooms that fit in memory)")
    pass_spacing_m: float | None = option(None, gt=0, doc="grid spacing of the pseudo-label passes with scene tags "
                                                          "(None = radius_m: the sub-cloud seeding grid)")
    sample_max_points: int = option(0, ge=0, doc="cap on the points of a classification sample (0 = the whole "
                                                 "ball: a sub-cloud's tags describe all of it)")
    score_rescale: str = option("none", choices=SCORE_RESCALES,
                                doc="rescale each class's voted scores over the scene's points before the argmax and "
                                    "the CRF: none (the paper) or z (standardised; ours)")
    crf: bool = option(True, doc="refine the pseudo labels with the dense CRF before retraining")
    crf_iterations: int = option(5, ge=1, doc="mean-field iterations (the paper: 5)")
    crf_unary_scale: float = option(0.5, gt=0, le=1, doc="softmax mixed with the uniform distribution over the "
                                                         "allowed classes (pydensecrf scale; the paper's code: 0.5)")
    crf_voxel_m: float | None = option(None, gt=0, doc="grid the CRF runs on (None = the network's voxel; MPRM: "
                                                       "its 4 cm sub-sampled cloud)")
    ignore_below: float = option(0.0, ge=0, lt=1, doc="points whose pseudo label has a confidence (top softmax "
                                                    "probability of the fused scores over the allowed classes) below "
                                                    "this are ignored by the retraining (0 = keep all, the paper; "
                                                    "ours)")
    class_weighting: str = option("none", choices=CLASS_WEIGHTINGS,
                                  doc="cross-entropy class weights of the retrained network (the paper: none)")

    def validate(self) -> None:
        unknown = [p for p in self.paths if p not in PATHS]
        if not self.paths or unknown or len(set(self.paths)) != len(self.paths):
            raise FieldError("paths", list(self.paths), f"distinct paths of {PATHS}")

    def classify_steps_of(self, total_steps: int) -> int:
        """Steps of the classification stage in a run of ``total_steps`` (at least 1, leaving at least 1)."""
        if total_steps < 2:
            raise FieldError("classify_share", self.classify_share,
                             f"a run of at least 2 steps (classification + retraining), got {total_steps}")
        steps = self.classify_steps if self.classify_steps is not None else round(self.classify_share * total_steps)
        return min(max(1, steps), total_steps - 1)
