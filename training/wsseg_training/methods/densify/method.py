"""``densify``: Densify Your Labels (Xia, Yue et al., CVPR 2024) from scene tags.

``wsseg train --method densify --labels SCENE_TAGS``.  The outer loop (:meth:`DensifyMethod.stages`): one stage
per K-means period of whole-scene epochs (:class:`~wsseg_training.methods.densify.schedule.DensifySchedule`),
then, with ``bootstrap_epochs`` (or ``bootstrap_share``) > 0, a bootstrapping stage that retrains a fresh network
("Ours*"); the two share the run's length (``train.epochs`` / ``train.steps``).

* ``begin_stage`` of a K-means period: eval-mode point features of every training scene (one whole-scene
  inference pass, :func:`~wsseg_training.engine.inference.infer`), averaged per super-voxel, K-means over the
  whole training set (:mod:`.primitives`); every point gets its super-voxel's primitive.
* every step (:meth:`DensifyMethod.losses`): ℓ_cam + ℓ_us + ℓ_match on the batch's whole scenes
  (:mod:`.losses`), ℓ_match from ``match_off_epochs`` on, with assignment filtering once the warm-up is over.
  The matches of the current period are counted per primitive and class (``votes``): the primitive
  predictor (:mod:`.predictor`) labels a primitive with its most frequent match.
* ``begin_stage`` of the bootstrapping stage: the Densify network and its primitives are saved
  (``densify.pt`` in the run directory: "Ours" and its primitive predictor), the training scenes are
  predicted and the points whose class is among their scene's tags become dense labels; the engine then
  re-initialises backbone and optimiser and trains with per-point cross-entropy.

The exported network is the backbone and its head: the head is the CAM classifier L(·; ω) (Eq. 2), so the
classifier inference [DYL Tab. 6] is what the robot runs.  Super-voxels: the dataset's own by default
(``bench/results/densify_supervoxels.md``: purer than GrowSP-style VCCS + region growing on our rooms) or
GrowSP-style ones computed at load (``supervoxels: growsp``); super-voxels below ``min_supervoxel_points``
points are left out of K-means.  No point is masked by its ground truth (GrowSP masks ignored-class points).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from wsseg.core.classes import IGNORE_INDEX
from wsseg.core.scene import Scene
from wsseg_training.checkpoint import make_checkpoint, save_checkpoint
from wsseg_training.engine.config import ConfigError
from wsseg_training.engine.distributed import all_reduce_sum
from wsseg_training.engine.sampling import Sampling
from wsseg_training.engine.scenes import TrainScene, train_scene_from
from wsseg_training.engine.schedule import Stage, TrainPlan
from wsseg_training.labels import SceneTags
from wsseg_training.methods.base import Method, StageContext, StepContext
from wsseg_training.methods.common.losses import point_cross_entropy
from wsseg_training.methods.densify.bootstrap import bootstrap_labels
from wsseg_training.methods.densify.config import DensifyOptions
from wsseg_training.methods.densify.growsp_supervoxels import growsp_supervoxels
from wsseg_training.methods.densify.handcrafted import supervoxel_descriptors
from wsseg_training.methods.densify.losses import cam_loss, match_loss, unsupervised_loss
from wsseg_training.methods.densify.predictor import DensifyPrimitivePredictor
from wsseg_training.methods.densify.primitive_count import auto_primitive_count
from wsseg_training.methods.densify.primitives import (
    Primitives,
    cluster_primitives,
    supervoxel_means,
    supervoxel_nodes,
)
from wsseg_training.methods.densify.schedule import DensifySchedule

if TYPE_CHECKING:
    from wsseg_training.evaluation.evaluate import Predictor

log = logging.getLogger(__name__)

#: the run-directory file with the Densify network and its primitives ("Ours", before bootstrapping)
DENSIFY_FILE = "densify.pt"
#: per-point target holding each point's primitive (-1 = none)
PRIMITIVE_KEY = "primitive"
WHOLE_SCENES = Sampling(region="scene")


class DensifyMethod(Method):
    """Densify Your Labels (module docstring)."""

    name = "densify"
    label_kinds: ClassVar[tuple[str, ...]] = ("scene_tags",)
    requires_labels = True
    Options = DensifyOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opts: DensifyOptions = self.options
        self.scenes: list[TrainScene] = []
        self.node_counts: list[int] = []
        self.descriptors: list[tuple[np.ndarray, np.ndarray]] = []
        self.k = 0
        self.schedule = DensifySchedule()
        self.periods = 0
        self.primitives: Primitives | None = None
        self.votes = np.zeros((0, self.num_classes))

    # ------------------------------------------------------------------------------------------ data

    def make_targets(self, name: str, scene: Scene) -> TrainScene | None:
        weak = self.weak
        if not isinstance(weak, SceneTags) or name not in weak.tags:
            return None
        if self.opts.supervoxels == "growsp":
            supervoxel = growsp_supervoxels(scene.xyz, scene.rgb)
        elif scene.supervoxel is None:
            raise ValueError(f"scene {name!r} has no super-voxels; run `wsseg data supervoxels` on the dataset or "
                             "set method.supervoxels: growsp")
        else:
            supervoxel = scene.supervoxel
        node, _ = supervoxel_nodes(supervoxel, self.opts.min_supervoxel_points)
        tags = weak.multi_hot(name, self.num_classes)
        out = train_scene_from(name, scene, {PRIMITIVE_KEY: np.full(scene.num_points, -1, np.int64)}, tags=tags)
        out.supervoxel = node
        return out

    def setup(self, scenes: list[TrainScene]) -> None:
        """Hand-crafted descriptors of every super-voxel (fixed for the run) and K."""
        self.scenes = scenes
        self.node_counts = [int(s.supervoxel.max()) + 1 if s.supervoxel is not None and s.supervoxel.size else 0
                            for s in scenes]
        if sum(self.node_counts) == 0:
            raise ValueError("densify: no training scene has a super-voxel of at least "
                             f"{self.opts.min_supervoxel_points} points (method.min_supervoxel_points)")
        self.descriptors = []
        for scene in scenes:
            d = supervoxel_descriptors(scene.xyz, scene.rgb, scene.supervoxel)  # type: ignore[arg-type]
            self.descriptors.append((d.rgb, d.hist))
        total = sum(self.node_counts)
        self.k = self.opts.primitives or auto_primitive_count(total, self.num_classes)
        self.votes = np.zeros((self.k, self.num_classes))
        log.info("densify: %d super-voxels in %d training scenes, K = %d primitives%s", total, len(scenes), self.k,
                 "" if self.opts.primitives else " (auto)")

    # ------------------------------------------------------------------------------------------ schedule

    def stages(self, plan: TrainPlan) -> list[Stage]:
        """The run's ``train.epochs`` (or steps) hold the Densify epochs and then the bootstrapping epochs."""
        total = max(1, round(plan.epochs))
        bootstrap = self.opts.bootstrap_epochs_of(total)
        epochs = total - bootstrap
        if epochs < 1:
            raise ConfigError(f"densify: bootstrapping takes {bootstrap} of the run's {total} epochs, none is left "
                              "for Densify (method.bootstrap_epochs / bootstrap_share)")
        scaled = DensifySchedule.scaled(epochs)
        self.schedule = DensifySchedule(
            epochs=epochs,
            kmeans_every_epochs=self.opts.kmeans_every_epochs or scaled.kmeans_every_epochs,
            warmup_epochs=scaled.warmup_epochs if self.opts.warmup_epochs is None else self.opts.warmup_epochs,
            match_off_epochs=(scaled.match_off_epochs if self.opts.match_off_epochs is None
                              else self.opts.match_off_epochs))
        stages = [Stage(f"densify epochs {start}-{start + length - 1}", epochs=length, sampling=WHOLE_SCENES)
                  for start, length in self.schedule.periods()]
        self.periods = len(stages)
        if bootstrap:
            stages.append(Stage("bootstrap", epochs=bootstrap, restart_schedule=True,
                                reinit_backbone=True, reinit_optimizer=True))
        return stages

    def is_bootstrap(self, stage_index: int) -> bool:
        return stage_index >= self.periods

    def begin_stage(self, index: int, stage: Stage, ctx: StageContext) -> None:
        if self.is_bootstrap(index):
            self._save_densify(ctx)
            self._bootstrap_targets(ctx)
            return
        epoch = self.schedule.periods()[index][0]
        nodes = [torch.from_numpy(s.supervoxel) for s in self.scenes]  # type: ignore[arg-type]

        def pool(i: int, outputs: dict[str, torch.Tensor]) -> np.ndarray:
            node = nodes[i].to(outputs["features"].device)
            return supervoxel_means(outputs["features"], node, self.node_counts[i])

        neural = ctx.infer(head=lambda view: {"features": view.output.point_features}, reduce=pool,
                           desc=f"densify features (epoch {epoch})")
        handcrafted = self.schedule.handcrafted(epoch)
        groups = self.opts.filter_group_count(self.k) if self.schedule.filtering(epoch) else 0
        self.primitives = cluster_primitives(
            neural, [d[0] for d in self.descriptors], [d[1] for d in self.descriptors], self.k, epoch, ctx.seed,
            handcrafted, groups, self.opts.c_rgb, self.opts.c_shape, self.opts.kmeans_iterations)
        self._set_primitive_targets()
        self.votes = np.zeros((self.primitives.k, self.num_classes))
        used = np.unique(np.concatenate(self.primitives.assignment)).size
        log.info("densify: K-means at epoch %d (%s features): %d of %d primitives used, inertia %.4g%s", epoch,
                 "neural + colour + shape" if handcrafted else "neural", used, self.primitives.k,
                 self.primitives.inertia, f", {groups} filtering groups" if groups else "")

    def _set_primitive_targets(self) -> None:
        assert self.primitives is not None
        for i, scene in enumerate(self.scenes):
            scene.point_targets[PRIMITIVE_KEY] = self.primitives.point_primitives(i, scene.supervoxel)  # type: ignore[arg-type]

    # ------------------------------------------------------------------------------------------ losses

    def losses(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        if self.is_bootstrap(ctx.stage_index):
            total, count = point_cross_entropy(ctx.point_logits(), ctx.batch.point_targets["labels"])
            return {"ce": ctx.mean(total, count)}
        if ctx.batch.tags is None:
            raise ValueError("densify: the batch carries no scene tags")
        epoch = int(ctx.epoch)
        features = ctx.output.point_features[ctx.batch.inverse]
        tags, point_batch = ctx.batch.tags, ctx.batch.point_batch
        total, count = cam_loss(ctx.point_logits(), point_batch, tags)
        terms = {"cam": ctx.mean(total, count)}
        primitive = ctx.batch.point_targets[PRIMITIVE_KEY]
        prims = self.primitives
        if prims is None:
            raise RuntimeError("densify: no primitives yet (the first stage's K-means did not run)")
        if "us" in self.opts.losses:
            centroids = torch.from_numpy(prims.centroids)
            total, count = unsupervised_loss(features, primitive, centroids, self.opts.us_scale)
            terms["us"] = ctx.mean(total, count)
        if "match" in self.opts.losses and self.schedule.matching(epoch):
            result = match_loss(features, primitive, point_batch, tags, ctx.backbone.head, prims.k,
                                self.opts.match, prims.groups, self.opts.conflict_labels)
            terms["match"] = ctx.mean(result.loss_sum, result.matched)
            votes = np.zeros_like(self.votes)
            keep = result.label >= 0
            np.add.at(votes, (result.primitive[keep], result.label[keep]), 1.0)
            self.votes += all_reduce_sum(torch.from_numpy(votes)).numpy()
        return terms

    # ------------------------------------------------------------------------------------------ bootstrapping

    def _save_densify(self, ctx: StageContext) -> None:
        """The Densify network and its primitives, before bootstrapping replaces the network."""
        if not ctx.dist.is_main:
            return
        checkpoint = make_checkpoint(ctx.model, ctx.preprocess, self.classes, sensor="any",
                                     provenance={"method": self.name, "stage": "densify"})
        checkpoint["densify"] = self.primitive_summary()
        save_checkpoint(ctx.run_dir.root / DENSIFY_FILE, checkpoint)

    def primitive_summary(self) -> dict[str, Any]:
        """Centroids (K, H) and votes (K, C) of the last period: what the primitive predictor needs."""
        if self.primitives is None:
            raise RuntimeError("densify: no primitives to summarise")
        return {"centroids": torch.from_numpy(self.primitives.centroids.copy()),
                "votes": torch.from_numpy(self.votes.copy())}

    def _bootstrap_targets(self, ctx: StageContext) -> None:
        predicted = ctx.infer(reduce=lambda i, out: out["logits"].argmax(dim=1).cpu().numpy(),
                              desc="densify bootstrap labels")
        kept = 0
        for scene, labels in zip(self.scenes, predicted, strict=True):
            scene.point_targets["labels"] = bootstrap_labels(labels, scene.tags)  # type: ignore[arg-type]
            kept += int((scene.point_targets["labels"] != IGNORE_INDEX).sum())
        log.info("densify bootstrap: %.1f %% of the training points keep their predicted class",
                 100.0 * kept / max(1, sum(s.num_points for s in self.scenes)))

    # ------------------------------------------------------------------------------------------ inference

    @classmethod
    def offline_predictors(cls, checkpoint: Path, device: torch.device) -> dict[str, Predictor]:
        """``-primitives``: primitive propagation (Tab. 6) with the Densify network; with bootstrapping also
        ``-no-bootstrap``: the Densify network's classifier ("Ours", the exported network being "Ours*")."""
        from wsseg_training.evaluation.evaluate import TorchPredictor

        densify = Path(checkpoint).parent.parent / DENSIFY_FILE
        if densify.is_file():
            return {"-primitives": DensifyPrimitivePredictor.from_checkpoint(densify, device),
                    "-no-bootstrap": TorchPredictor.from_checkpoint(densify, device)}
        return {"-primitives": DensifyPrimitivePredictor.from_checkpoint(checkpoint, device)}

    # ------------------------------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"votes": torch.from_numpy(self.votes.copy())}
        if self.primitives is not None:
            state["primitives"] = self.primitives.to_state()
        if self.scenes and "labels" in self.scenes[0].point_targets:
            state["bootstrap_labels"] = torch.from_numpy(
                np.concatenate([s.point_targets["labels"] for s in self.scenes]).astype(np.int16))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "votes" in state:
            self.votes = state["votes"].numpy().astype(np.float64)
        if state.get("primitives") is not None:
            self.primitives = Primitives.from_state(state["primitives"])
            self._set_primitive_targets()
        if "bootstrap_labels" in state:
            flat = state["bootstrap_labels"].numpy().astype(np.int64)
            bounds = np.cumsum([0, *[s.num_points for s in self.scenes]])
            for scene, a, b in zip(self.scenes, bounds[:-1], bounds[1:], strict=True):
                scene.point_targets["labels"] = flat[a:b]
