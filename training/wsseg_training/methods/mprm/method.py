"""``mprm``: Multi-Path Region Mining (Wei et al., CVPR 2020) from scene tags or sub-cloud tags.

``wsseg train --method mprm --labels SCENE_TAGS|SUBCLOUD_TAGS``.  Two stages (:meth:`MprmMethod.stages`; METHOD_NOTES
§3):

1. ``classify`` (``classify_share`` of the run's steps): the backbone's features at one level (``feature_source``
   / ``feature_level``; default the encoder after two down-samplings, the paper's classification network) feed the
   four paths of :mod:`~wsseg_training.methods.mprm.paths` (PCAM, spatial attention, channel attention, point-wise
   spatial attention), all trained jointly: each path's CAM is averaged over the sample's voxels at that level and
   scored with sigmoid BCE against the sample's tags; the loss is the sum of the paths' losses.  Samples: with
   sub-cloud tags the **fixed annotated** sub-clouds of the file (``Sampling(region="subcloud")``, one epoch visits
   each once; the official code re-draws jittered centres and reads their classes from dense labels: not here);
   with scene tags random r = 2 m balls carrying the scene's tags (``Sampling(region="ball")``, as the paper
   states: a ball may miss a tagged class), or with ``scene_sample: scene`` whole scenes (exact tags; ours).
2. ``retrain``: before it starts, the classifier labels every training point (:mod:`~wsseg_training.methods.mprm.cams`:
   passes over the annotated sub-clouds -- or a grid of r = 2 m balls masked by the scene's tags --, the four
   CAMs fused by element-wise max, voted by averaging, absent classes at -inf), the dense CRF refines them
   (:mod:`~wsseg_training.methods.mprm.crf`), the classifier is saved as ``RUN/mprm.pt``; then the engine
   re-initialises backbone and optimiser and the fresh segmentation network trains on the pseudo labels with plain
   cross-entropy on crops.  That network is what ``model.pt`` holds, what ``wsseg eval`` scores and what
   ``wsseg export`` exports.

Outputs: ``RUN/mprm.json`` (pseudo-label coverage; with ground truth attached -- ``wsseg train`` does, analysis
only, training never reads it -- the train pseudo-label mIoU of PCAM, MPRM and MPRM + CRF); ``wsseg eval --run``
also scores the classifier's own predictions on val (``-pcam``, ``-mprm``, ``-mprm-crf``:
:mod:`~wsseg_training.methods.mprm.predictor`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from wsseg.core.classes import IGNORE_INDEX
from wsseg.core.scene import Scene
from wsseg_training.checkpoint import make_checkpoint, save_checkpoint
from wsseg_training.engine.config import ConfigError
from wsseg_training.engine.sampling import Sampling, multi_hot
from wsseg_training.engine.scenes import TrainScene, train_scene_from
from wsseg_training.engine.schedule import Stage, TrainPlan
from wsseg_training.evaluation.metrics import ConfusionMatrix
from wsseg_training.labels import SceneTags, SubcloudTags
from wsseg_training.methods.base import Method, StageContext, StepContext
from wsseg_training.methods.common.class_weights import class_weights, label_counts
from wsseg_training.methods.common.losses import point_cross_entropy
from wsseg_training.methods.mprm.cams import FeatureTap, Pass, cam_maps, grid_passes, subcloud_passes, whole_scene_pass
from wsseg_training.methods.mprm.options import MprmOptions
from wsseg_training.methods.mprm.paths import MultiPathModule, sample_scores
from wsseg_training.methods.mprm.pseudo_labels import PseudoLabeller
from wsseg_training.model.unet import SparseUNet

if TYPE_CHECKING:
    from wsseg_training.evaluation.evaluate import Predictor

log = logging.getLogger(__name__)

#: the run-directory file with the classification network and its paths (what the offline predictors read)
CLASSIFIER_FILE = "mprm.pt"
#: the run-directory file with the pseudo-label record
RECORD_FILE = "mprm.json"
MODULE_KEY = "mprm"


def build_paths(backbone: SparseUNet, options: MprmOptions, num_classes: int) -> MultiPathModule:
    """The multi-path module for ``backbone`` at the options' level (``ConfigError`` if the level does not exist)."""
    levels = backbone.num_levels
    if options.feature_level >= levels:
        raise ConfigError(f"method 'mprm': feature_level {options.feature_level} is outside the {levels}-level "
                          f"U-Net of this profile (0..{levels - 1})")
    channels = backbone.config.channels[options.feature_level]
    return MultiPathModule(channels, num_classes, options.paths, options.path_channels, options.qk_channels,
                           options.dropout)


class MprmMethod(Method):
    """MPRM (module docstring)."""

    name = "mprm"
    label_kinds: ClassVar[tuple[str, ...]] = ("scene_tags", "subcloud_tags")
    requires_labels = True
    Options = MprmOptions
    options: MprmOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tap = FeatureTap(self.options.feature_source, self.options.feature_level)
        self.scenes: list[TrainScene] = []
        self.weights = torch.ones(self.num_classes)
        self.record: dict[str, Any] = {}
        self.truth: Callable[[str], np.ndarray | None] | None = None

    @property
    def subclouds(self) -> bool:
        """Whether the weak labels are sub-cloud tags (else scene tags)."""
        return isinstance(self.weak, SubcloudTags)

    def attach_analysis_truth(self, truth: Callable[[str], np.ndarray | None]) -> None:
        """truth(scene name) -> (N,) ground-truth labels, for the pseudo-label mIoU of ``RUN/mprm.json`` only."""
        self.truth = truth

    # ------------------------------------------------------------------------------------------ data

    def make_targets(self, name: str, scene: Scene) -> TrainScene | None:
        weak = self.weak
        if isinstance(weak, SubcloudTags):
            subclouds = weak.scenes.get(name)
            if not subclouds:
                return None
            classes = sorted({c for s in subclouds for c in s.classes})
            return train_scene_from(name, scene, {}, tags=multi_hot(classes, self.num_classes), subclouds=subclouds)
        if isinstance(weak, SceneTags):
            if name not in weak.tags:
                return None
            return train_scene_from(name, scene, {}, tags=weak.multi_hot(name, self.num_classes))
        raise ValueError("method 'mprm' needs a scene_tags or subcloud_tags weak-label file (--labels)")

    def setup(self, scenes: list[TrainScene]) -> None:
        self.scenes = scenes

    def build_modules(self, backbone: SparseUNet) -> nn.ModuleDict:
        return nn.ModuleDict({MODULE_KEY: build_paths(backbone, self.options, self.num_classes)})

    def classify_sampling(self) -> Sampling:
        """Sub-cloud tags: the annotated sub-clouds; scene tags: random balls of ``radius_m`` with the scene's tags
        (or, ``scene_sample: scene``, whole scenes)."""
        cap = self.options.sample_max_points
        if self.subclouds:
            return Sampling(region="subcloud", max_points=cap)
        if self.options.scene_sample == "scene":
            return Sampling(region="scene")
        return Sampling(region="ball", radius_m=self.options.radius_m, max_points=cap)

    def stages(self, plan: TrainPlan) -> list[Stage]:
        classify = self.options.classify_steps_of(plan.total_steps)
        return [Stage("classify", classify, sampling=self.classify_sampling()),
                Stage("retrain", plan.total_steps - classify, True, reinit_backbone=True, reinit_optimizer=True)]

    # ------------------------------------------------------------------------------------------ losses

    def losses(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        if ctx.stage_index > 0:
            total, weight = point_cross_entropy(ctx.point_logits(), ctx.batch.point_targets["labels"], self.weights)
            return {"ce": ctx.mean(total, weight)}
        tags = ctx.batch.tags
        if tags is None:
            raise ValueError("mprm: the batch carries no tags")
        sample = ctx.batch.level_batch(self.tap.level)
        cams = cam_maps(ctx.modules[MODULE_KEY], self.tap, ctx.output, sample, tags.shape[0])  # type: ignore[arg-type]
        terms = {}
        for path, cam in cams.items():
            scores = sample_scores(cam.float(), sample, tags.shape[0])
            bce = nn.functional.binary_cross_entropy_with_logits(scores, tags.float(), reduction="sum")
            terms[f"bce_{path}"] = ctx.mean(bce, float(tags.numel()))
        return terms

    # ------------------------------------------------------------------------------------------ pseudo labels

    def scene_passes(self, scene: TrainScene) -> list[Pass]:
        """The pseudo-label passes of a training scene: its annotated sub-clouds, or a grid of balls masked by its
        scene tags (``scene_sample: scene``: one pass over the whole scene, as the classifier trained)."""
        if self.subclouds:
            return subcloud_passes(scene.subclouds)
        tags = tuple(int(c) for c in np.flatnonzero(scene.tags)) if scene.tags is not None else None
        if self.options.scene_sample == "scene":
            return whole_scene_pass(scene.xyz, tags)
        return grid_passes(scene.xyz, self.options.radius_m, self.options.pass_spacing_m, tags)

    def begin_stage(self, index: int, stage: Stage, ctx: StageContext) -> None:
        if index == 0:
            return
        self._save_classifier(ctx)
        labeller = PseudoLabeller(ctx.modules[MODULE_KEY], self.tap, self.options, self.num_classes,  # type: ignore[arg-type]
                                  ctx.preprocess.voxel_size_m)
        matrices = {k: ConfusionMatrix(self.num_classes) for k in ("pcam", "mprm", "mprm_crf")}
        labelled = total = 0
        for scene in tqdm(self.scenes, desc="MPRM pseudo labels", unit="scene", leave=False,
                          disable=not (ctx.progress and ctx.dist.is_main)):
            result = labeller.label_scene(ctx.infer, scene, self.scene_passes(scene))
            labels = result.final
            scene.point_targets["labels"] = np.where(labels >= 0, labels, IGNORE_INDEX).astype(np.int64)
            labelled += int((labels >= 0).sum())
            total += scene.num_points
            truth = self.truth(scene.name) if self.truth is not None else None
            if truth is not None:
                for key, value in result.variants().items():
                    matrices[key].add(truth, value)
        counts = label_counts((s.point_targets["labels"] for s in self.scenes), self.num_classes)
        self.weights = torch.from_numpy(class_weights(counts, self.options.class_weighting))
        self._record(ctx, labelled, total, matrices if self.truth is not None else None)

    def _record(self, ctx: StageContext, labelled: int, total: int,
                matrices: dict[str, ConfusionMatrix] | None) -> None:
        record: dict[str, Any] = {"labels": "subcloud_tags" if self.subclouds else "scene_tags",
                                  "fusion": self.options.fusion, "crf": self.options.crf,
                                  "coverage": labelled / max(1, total), "points": total,
                                  "feature": f"{self.tap.source}{self.tap.level}"}
        quality = ""
        if matrices is not None:
            record["train_pseudo_label_miou"] = {k: m.miou() for k, m in matrices.items() if m.total}
            record["train_pseudo_label_iou"] = {k: [round(float(v), 4) for v in m.iou()] for k, m in matrices.items()
                                                if m.total}
            quality = ", train pseudo-label mIoU (analysis only) " + ", ".join(
                f"{k} {100 * v:.1f}%" for k, v in record["train_pseudo_label_miou"].items())
        self.record = record
        log.info("mprm: pseudo labels on %.1f %% of %d training points%s", 100 * record["coverage"], total, quality)
        if ctx.dist.is_main:
            (ctx.run_dir.root / RECORD_FILE).write_text(json.dumps(record, indent=1) + "\n")

    def _save_classifier(self, ctx: StageContext) -> None:
        """The classification network and its paths, before the retrain stage replaces the backbone."""
        if not ctx.dist.is_main:
            return
        checkpoint = make_checkpoint(ctx.model, ctx.preprocess, self.classes, sensor="any",
                                     provenance={"method": self.name, "stage": "classify"})
        checkpoint["mprm"] = {"options": self.options.to_dict(),
                              "paths": {k: v.detach().cpu() for k, v in ctx.modules[MODULE_KEY].state_dict().items()}}
        save_checkpoint(ctx.run_dir.root / CLASSIFIER_FILE, checkpoint)

    # ------------------------------------------------------------------------------------------ inference

    @classmethod
    def offline_predictors(cls, checkpoint: Path, device: torch.device) -> dict[str, Predictor]:
        """``-pcam``, ``-mprm``, ``-mprm-crf``: the classifier's fused CAMs on unannotated scenes (no mask), when the
        run reached its retrain stage (``RUN/mprm.pt``)."""
        from wsseg_training.methods.mprm.predictor import classifier_predictors

        path = Path(checkpoint).parent.parent / CLASSIFIER_FILE
        return classifier_predictors(path, device) if path.is_file() else {}

    # ------------------------------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"record": json.dumps(self.record), "weights": self.weights.clone()}
        if self.scenes and "labels" in self.scenes[0].point_targets:
            state["pseudo_labels"] = torch.from_numpy(
                np.concatenate([s.point_targets["labels"] for s in self.scenes]).astype(np.int16))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.record = json.loads(state.get("record", "{}"))
        if "weights" in state:
            self.weights = state["weights"].clone()
        if "pseudo_labels" in state:
            flat = state["pseudo_labels"].numpy().astype(np.int64)
            bounds = np.cumsum([0, *[s.num_points for s in self.scenes]])
            for scene, a, b in zip(self.scenes, bounds[:-1], bounds[1:], strict=True):
                scene.point_targets["labels"] = flat[a:b]
