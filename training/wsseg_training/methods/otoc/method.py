"""``otoc``: One Thing One Click (Liu et al., CVPR 2021), Algorithm 1 over the training engine.

``wsseg train --method otoc --labels CLICKS`` on a dataset with super-voxels (``wsseg data supervoxels``)::

    Y_0 = clicks expanded to their super-voxels                              (Alg. 1 line 1)
    for t = 1 .. iterations:                  one engine Stage per round ("round t"), fresh LR schedule
        train Θ with cross-entropy on Y_{t-1} (Eq. 1)
          and R with the prototype contrastive loss on pooled embeddings (Eq. 6-7, variant rel_gp)
        begin of round t+1: Θ (and R) predict every training scene (``ctx.infer``-style eval pass),
          pool to super-voxels, propagate on the super-voxel graph, keep the confident ones -> Y_t

Θ and R are trained side by side in one optimiser (their parameters are disjoint, so the summed loss
trains each on its own objective); the paper trains them in separate runs on the same Y_t.  R and the
memory bank are training-only modules (``build_modules``): ``model.pt`` and the exported bundle hold Θ only.

Options (config ``method:``)::

    variant: rel_gp            unet | gp | rel_gp  (Table 3: 3D U-Net / +GP / +Rel+GP)
    memory_bank: true          false = "w/o MB" (prototypes = the batch's class means, Supp. C)
    iterations: 5              self-training rounds
    steps_per_iteration: null  optimiser steps per round (null: train.steps / iterations)
    threshold: 0.9             T of Eq. 8 as a probability (see ``propagate.select_confident``)
    star: false                1T1C*: train once on Y_0, no self-training (one round, no R)
    relation_weight: 1.0       factor on R's contrastive loss
    otoc: {}                   any other OtocConfig field (samples_per_class, pairwise_weight, fusion,
                               selection, ...); the pseudo-label rule defaults to fusion: geometric,
                               selection: agree (see ``propagate``); {fusion: product, selection: marginal}
                               is the paper's rule

Every round's pseudo labels are logged (coverage; and their mIoU against ground truth only when an
analysis truth source is attached with :meth:`OtocMethod.attach_analysis_truth` -- never used for
training) and written to ``RUN/otoc_rounds.json``.  Pseudo labels and the round history are method state,
so ``--resume`` continues inside a round with the same labels; the memory bank (or the "w/o MB" running
class sums) is a buffer of the training-only modules, which the engine's checkpoints carry.

Choices beyond the paper: no test-time augmentation when predicting the training scenes (single view, as
the paper's ablations); the variant ``unet`` keeps points (not super-voxels) whose own probability passes T;
"w/o MB" propagation uses the running class means of R's pooled embeddings over the round (there is no
bank to read).  Limitation: under ``torchrun`` each process updates its own memory bank from its share of
the batch (the banks are not all-reduced), so multi-process 1T1C runs differ from single-process ones.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from wsseg.core.classes import IGNORE_INDEX
from wsseg.core.scene import Scene
from wsseg_training.engine.config import ConfigError
from wsseg_training.engine.scenes import TrainScene, train_scene_from
from wsseg_training.engine.schedule import Stage, TrainPlan
from wsseg_training.evaluation.metrics import ConfusionMatrix
from wsseg_training.labels import Clicks
from wsseg_training.methods.base import Method, StageContext, StepContext
from wsseg_training.methods.common.class_weights import class_weights, label_counts
from wsseg_training.methods.common.losses import point_cross_entropy
from wsseg_training.methods.common.options import MethodOptions, option
from wsseg_training.methods.common.segments import Segments
from wsseg_training.methods.otoc.config import VARIANTS, OtocConfig
from wsseg_training.methods.otoc.inference import (
    build_otoc_modules,
    module_or_none,
    propagate_outputs,
    prototypes_of,
    scene_outputs,
)
from wsseg_training.methods.otoc.pseudo_labels import (
    initial_pseudo_labels,
    object_classes,
    point_pseudo_labels,
    pseudo_label_confusion,
)
from wsseg_training.methods.otoc.relation import relation_loss
from wsseg_training.model.unet import SparseUNet

if TYPE_CHECKING:
    from pathlib import Path

    from wsseg_training.evaluation.evaluate import Predictor

log = logging.getLogger(__name__)

#: name of the per-round log written into the run directory
ROUNDS_FILE = "otoc_rounds.json"

#: OtocConfig fields that the plain options set (they may not also be given under ``otoc``)
PLAIN_FIELDS = {"variant": "variant", "memory_bank": "memory_bank", "iterations": "self_training_iterations",
                "threshold": "confidence_threshold"}


@dataclass(frozen=True, kw_only=True)
class OtocOptions(MethodOptions):
    """The ``method:`` options of ``otoc`` (configs/otoc_cpu.yaml); every other knob is an OtocConfig field
    under ``otoc:``."""

    variant: str = option("rel_gp", choices=VARIANTS, doc="Table 3 variant: unet | gp | rel_gp (= 1T1C)")
    memory_bank: bool = option(True, doc="prototypes from the momentum memory bank (false: 'w/o MB')")
    iterations: int = option(5, ge=1, doc="self-training rounds (Algorithm 1)")
    steps_per_iteration: int | None = option(None, ge=1, doc="steps per round (null: train.steps / iterations)")
    threshold: float = option(0.9, gt=0.0, le=1.0, doc="T of Eq. 8, as a probability")
    star: bool = option(False, doc="1T1C*: one round on Y_0 only, no relation network")
    relation_weight: float = option(1.0, ge=0.0, doc="weight of R's contrastive loss")
    otoc: OtocConfig = field(default_factory=OtocConfig)  # every other knob (OtocConfig fields)

    @classmethod
    def prepare(cls, data: dict[str, Any], where: str) -> dict[str, Any]:
        if "otoc" in data and data["otoc"] is None:  # ``otoc:`` with only comments under it
            data["otoc"] = {}
        extra = data.get("otoc", {})
        clashes = sorted(set(PLAIN_FIELDS.values()) & set(extra)) if isinstance(extra, Mapping) else []
        if clashes:
            raise ConfigError(f"{where[:-1]}.otoc': set {clashes} through the plain options (variant, memory_bank, "
                              "iterations, threshold), not under 'otoc'")
        return data

    def config(self) -> OtocConfig:
        """The OtocConfig in force: ``otoc`` with the plain options' fields."""
        return replace(self.otoc, **{field: getattr(self, plain) for plain, field in PLAIN_FIELDS.items()})


def otoc_config_from_options(options: Mapping[str, Any] | OtocOptions, where: str = "config") -> OtocConfig:
    """The :class:`OtocConfig` of the plugin options (``ConfigError`` naming the file and the bad field)."""
    built = options if isinstance(options, OtocOptions) else OtocOptions.build(options, where)
    return built.config()


class OtocMethod(Method):
    """1T1C self-training with graph propagation and a relation network (see the module docstring)."""

    name = "otoc"
    label_kinds: ClassVar[tuple[str, ...]] = ("clicks",)
    requires_labels = True
    Options = OtocOptions
    options: OtocOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config = self.options.config()
        try:
            object_classes(self.classes, self.config.structure_classes)
        except ValueError as exc:
            raise ConfigError(f"method 'otoc': option otoc.structure_classes: {exc}") from None
        self.class_weights = torch.ones(self.num_classes)  # of Θ's cross-entropy, set every round
        self.initial: dict[str, np.ndarray] = {}
        self.anchors: dict[str, np.ndarray] = {}
        self.scenes: list[TrainScene] = []
        self.history: list[dict[str, Any]] = []
        self._analysis_truth: Callable[[str], np.ndarray | None] | None = None

    # ------------------------------------------------------------------------------------- analysis only

    def attach_analysis_truth(self, truth: Callable[[str], np.ndarray | None] | None) -> None:
        """ANALYSIS ONLY: ``truth(scene name)`` -> (N,) ground-truth semantic labels, used to log each round's
        pseudo-label mIoU.  Never read by ``make_targets``, ``losses`` or the pseudo-label update."""
        self._analysis_truth = truth

    # ------------------------------------------------------------------------------------- engine hooks

    def make_targets(self, name: str, scene: Scene) -> TrainScene | None:
        """Y_0 from the clicks of ``name``; None when the click file has no clicks in it."""
        if not isinstance(self.weak, Clicks):
            raise ValueError("method 'otoc' trains from a clicks file (--labels, kind 'clicks')")
        if name not in self.weak.scenes:
            return None
        if scene.supervoxel is None:
            raise ValueError(f"scene {name!r} has no field 'supervoxel'; 1T1C expands clicks to super-voxels: run "
                             "`wsseg data supervoxels --data DATA` first")
        clicks = self.weak.point_labels(name, scene.num_points)
        initial = initial_pseudo_labels(clicks, scene.supervoxel, scene.xyz, self.classes, self.config)
        if not (initial != IGNORE_INDEX).any():
            return None
        self.initial[name] = initial
        # labels every later Y_t keeps on top of the propagated ones (OtocConfig.anchor)
        self.anchors[name] = initial if self.config.anchor == "supervoxel" else clicks.astype(np.int64)
        return train_scene_from(name, scene, {"labels": initial.copy()})

    def setup(self, scenes: list[TrainScene]) -> None:
        self.scenes = scenes

    def build_modules(self, backbone: SparseUNet) -> nn.ModuleDict:
        if self.options.star:  # 1T1C* never propagates, so R would never be used
            return nn.ModuleDict()
        return build_otoc_modules(backbone.config, self.config, self.num_classes)

    def stages(self, plan: TrainPlan) -> list[Stage]:
        rounds = 1 if self.options.star else self.config.self_training_iterations
        per_round = self.options.steps_per_iteration or max(1, plan.total_steps // rounds)
        label = "1T1C* (Y_0 only)" if self.options.star else "round {}"
        return [Stage(label.format(t + 1), per_round, restart_schedule=True) for t in range(rounds)]

    def begin_stage(self, index: int, stage: Stage, trainer: StageContext) -> None:
        """Round ``index + 1`` trains on Y_index: Y_0 is the click expansion; later ones come from propagation."""
        started = time.perf_counter()
        if index > 0:
            self._update_pseudo_labels(trainer)
        if "sums" in trainer.modules:  # "w/o MB": prototypes of the coming round only
            trainer.modules["sums"].reset()  # type: ignore[operator]
        self.class_weights = self._round_class_weights().to(trainer.device)
        self._record(index, time.perf_counter() - started, trainer)

    def losses(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        labels = ctx.batch.point_targets["labels"]
        # each pseudo label weighs its class's weight of this round (per point: Eq. 1 summed term by term)
        point_weight = self.class_weights.to(labels.device)[labels.clamp(min=0)]
        ce, weight = point_cross_entropy(ctx.point_logits(), labels, point_weights=point_weight)
        terms = {"ce": ctx.mean(ce, weight)}
        if "relation" in ctx.modules:
            terms["relation"] = self._relation_term(ctx, labels) * self.options.relation_weight
        return terms

    @classmethod
    def offline_predictors(cls, checkpoint: Path, device: torch.device) -> dict[str, Predictor]:
        """``-full``: Θ + R + graph propagation over the scene's super-voxels (1T1C's full inference)."""
        from wsseg_training.methods.otoc.inference import OtocFullPredictor

        return {"-full": OtocFullPredictor.from_checkpoint(checkpoint, device)}

    def state_dict(self) -> dict[str, Any]:
        labels = {s.name: torch.from_numpy(s.point_targets["labels"].astype(np.int16)) for s in self.scenes}
        return {"labels": labels, "history": [dict(h) for h in self.history]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = state.get("labels", {})
        missing = [s.name for s in self.scenes if s.name not in saved]
        if missing:
            raise ValueError(f"otoc checkpoint has no pseudo labels for training scene(s) {missing[:5]}; resume with "
                             "the same dataset and clicks")
        for scene in self.scenes:
            labels = saved[scene.name].numpy().astype(np.int64)
            if labels.shape[0] != scene.num_points:
                raise ValueError(f"otoc checkpoint: pseudo labels of scene {scene.name!r} have {labels.shape[0]} "
                                 f"points, the scene has {scene.num_points}")
            scene.point_targets["labels"] = labels
        self.history = [dict(h) for h in state.get("history", [])]
        self.class_weights = self._round_class_weights()  # begin_stage does not run again inside a resumed round

    # ------------------------------------------------------------------------------------- internals

    def _round_class_weights(self) -> torch.Tensor:
        """(C,) weights of Θ's cross-entropy from the current pseudo labels (``OtocConfig.class_weighting``)."""
        counts = label_counts((s.point_targets["labels"] for s in self.scenes), self.num_classes)
        return torch.from_numpy(class_weights(counts, self.config.class_weighting, normalisation="points"))

    def _relation_term(self, ctx: StepContext, labels: torch.Tensor) -> torch.Tensor:
        """Eq. 6 on the batch's super-voxels: R's embeddings pooled per super-voxel, class-balanced samples."""
        if ctx.batch.supervoxel is None:
            raise ValueError("method 'otoc': the batch has no super-voxels")
        relation = ctx.modules["relation"]
        embedding = relation.forward_features(ctx.batch.features, ctx.batch.maps, compact=True).logits
        segments = Segments.from_ids(ctx.batch.supervoxel)
        pooled = segments.mean(embedding.float()[ctx.batch.inverse])
        node_labels = segments.majority(labels, self.num_classes)
        bank = module_or_none(ctx.modules, "bank")
        loss, _ = relation_loss(pooled, node_labels, bank, self.num_classes,  # type: ignore[arg-type]
                                self.config.samples_per_class, self.config.temperature, ctx.generator)
        if "sums" in ctx.modules:
            keep = node_labels >= 0
            ctx.modules["sums"].add(F.normalize(pooled[keep], dim=1), node_labels[keep])  # type: ignore[operator]
        return loss

    def _update_pseudo_labels(self, trainer: StageContext) -> None:
        """Algorithm 1 lines 5-6 on every training scene: predict, propagate, keep the confident -> new labels."""
        relation = module_or_none(trainer.modules, "relation")
        prototypes = prototypes_of(trainer.modules)
        bar = tqdm(self.scenes, desc="pseudo labels", unit="scene", leave=False,
                   disable=not (trainer.progress and trainer.dist.is_main))
        for scene in bar:
            outputs = scene_outputs(trainer.model, relation, trainer.preprocess, scene.xyz,  # type: ignore[arg-type]
                                    scene.rgb, scene.intensity, trainer.device)
            initial = self.anchors[scene.name]
            if self.config.variant == "unet":
                labels = point_pseudo_labels(outputs.prob.cpu().numpy(), self.config.confidence_threshold, initial)
            else:
                propagation = propagate_outputs(outputs, scene.supervoxel, scene.xyz,  # type: ignore[arg-type]
                                                scene.rgb, self.config, prototypes)
                labels = propagation.pseudo_labels(initial)
            scene.point_targets["labels"] = labels

    def _record(self, index: int, seconds: float, trainer: StageContext) -> None:
        """Log Y_index's coverage (and, for analysis only, its quality) and write ``RUN/otoc_rounds.json``."""
        if any(h["pseudo_labels"] == index for h in self.history):  # re-entered after a resume
            return
        points = sum(s.num_points for s in self.scenes)
        labelled = sum(int((s.point_targets["labels"] >= 0).sum()) for s in self.scenes)
        entry: dict[str, Any] = {"pseudo_labels": index, "round": index + 1, "coverage": labelled / max(1, points),
                                 "labelled_points": labelled, "points": points, "seconds": round(seconds, 2)}
        if self._analysis_truth is not None:
            matrix = ConfusionMatrix(self.num_classes)
            for scene in self.scenes:
                truth = self._analysis_truth(scene.name)
                if truth is not None:
                    matrix.merge(pseudo_label_confusion(scene.point_targets["labels"], truth, self.num_classes))
            entry["analysis_miou"] = matrix.miou()
            entry["analysis_accuracy"] = matrix.overall_accuracy()
            entry["analysis_iou"] = [round(float(v), 4) for v in matrix.iou()]  # per class: which way it floods
        self.history.append(entry)
        quality = (f", pseudo-label mIoU {100 * entry['analysis_miou']:.1f}% / accuracy "
                   f"{100 * entry['analysis_accuracy']:.1f}% (analysis only)") if "analysis_miou" in entry else ""
        log.info("otoc round %d trains on Y_%d: coverage %.2f%% of %d points%s", index + 1, index,
                 100 * entry["coverage"], points, quality)
        if trainer.dist.is_main:
            path = trainer.run_dir.root / ROUNDS_FILE
            path.write_text(json.dumps({"variant": self.config.variant, "memory_bank": self.config.memory_bank,
                                        "star": self.options.star, "rounds": self.history}, indent=1) + "\n")
