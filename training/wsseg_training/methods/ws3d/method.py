"""``ws3d``: region-level boundary awareness and instance discrimination (K. Liu et al., ECCV 2022).

``wsseg train --method ws3d --labels LABELLED_SCENES``: a few scenes fully labelled (at most one cut in two),
the rest unlabelled.  Two stages (METHOD_NOTES §4):

1. ``boundary`` (``boundary_steps``): the boundary network, trained on crops of the labelled scenes only: the
   backbone with its segmentation head (cross-entropy) and a boundary head on the same features (focal loss,
   α = 2; JSENet's joint semantic + boundary training).  Ground truth: a labelled point with a labelled point of
   another class within ``boundary_radius_cells`` voxels (:mod:`~wsseg_training.methods.ws3d.boundary`).
2. ``ws3d`` (``train.steps``): before it starts, the boundary network predicts every scene's boundary points
   (probability > ``boundary_threshold``; labelled points use their ground truth) and each adjacent region pair
   gets ``w_ij`` (Eq. 2); then backbone, heads and optimiser start afresh.  Every step: ``labelled_samples``
   labelled crops (cross-entropy, and the offset head's PointGroup losses) beside ``data.batch_scenes`` samples
   = ``batch_scenes / 2`` groups of two augmented views of any scene (region energy of both views + multi-stage
   region contrast, :mod:`~wsseg_training.methods.ws3d.unsupervised`):
   ``L = CE + L_offsets + E_sum,1 + E_sum,2 + L_multi``.

``unsupervised: false`` is Sup-only (Tab. 5 No. 9): one stage of labelled crops with CE (+ offsets).  The
offset head is exported as the bundle output ``instance_offsets`` (:mod:`~wsseg_training.methods.ws3d.instance`).

Regions: the scene records' super-voxels (``wsseg data supervoxels``) by default, or region growing
(``regions: region_growing``, computed when the scenes load).  Analysis (``RUN/ws3d.json``): boundary
precision / recall on the unlabelled points against ground truth training never sees (when the bench attaches
it), region and pair counts, and the share of adjacent pairs with H = 1 over training.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from wsseg.core.classes import IGNORE_INDEX, STRUCTURE_CLASSES
from wsseg.core.instances import InstanceConfig
from wsseg.core.scene import Scene
from wsseg_training.data.region_growing import region_growing
from wsseg_training.engine.sampling import Sampling
from wsseg_training.engine.scenes import TrainScene, train_scene_from
from wsseg_training.engine.schedule import Stage, TrainPlan
from wsseg_training.labels import LabelledScenes
from wsseg_training.methods.base import Method, StageContext, StepContext
from wsseg_training.methods.common.class_weights import class_weights, label_counts
from wsseg_training.methods.common.heads import PointHead
from wsseg_training.methods.common.losses import point_cross_entropy
from wsseg_training.methods.ws3d.analysis import Ws3dAnalysis
from wsseg_training.methods.ws3d.boundary import best_f1_threshold, boundary_targets, focal_loss, score_boundaries
from wsseg_training.methods.ws3d.contrast import ContrastHeads, contrast_stages
from wsseg_training.methods.ws3d.instance import OFFSETS_OUTPUT, offset_head, offset_losses, with_clustering
from wsseg_training.methods.ws3d.options import Ws3dOptions
from wsseg_training.methods.ws3d.regions import SceneRegions, view_regions
from wsseg_training.methods.ws3d.thresholds import pair_share_threshold, precision_threshold
from wsseg_training.methods.ws3d.unsupervised import Branch, unsupervised_terms
from wsseg_training.model.unet import SparseUNet, UNetOutput

log = logging.getLogger(__name__)

#: batch-unique instance ids: position * this + instance id
_INSTANCE_STRIDE = 1 << 24


class Ws3dMethod(Method):
    """WS3D (module docstring)."""

    name = "ws3d"
    label_kinds: ClassVar[tuple[str, ...]] = ("labelled_scenes",)
    requires_labels = True
    Options = Ws3dOptions
    options: Ws3dOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.weights = torch.ones(self.num_classes)
        self.regions: dict[str, SceneRegions] = {}
        self.labelled: tuple[str, ...] = ()
        self.scenes: list[TrainScene] = []
        self.grid_m: float | None = None
        self.voxel_size_m: float | None = None
        self.analysis = Ws3dAnalysis()
        self.truth: Callable[[str], np.ndarray | None] | None = None
        self.instance_class_ids = self._instance_classes()

    # ------------------------------------------------------------------------------------------ set-up

    def _instance_classes(self) -> tuple[int, ...]:
        names = self.options.instance_classes
        if names is None:
            stuff = set(STRUCTURE_CLASSES.get(self.classes.name, ()))
            return tuple(i for i, n in enumerate(self.classes.names) if n not in stuff)
        unknown = [n for n in names if n not in self.classes.names]
        if unknown:
            raise ValueError(f"method 'ws3d': instance_classes {unknown} are not in the class table "
                             f"{list(self.classes.names)}")
        return tuple(self.classes.names.index(n) for n in names)

    def instance_config(self, voxel_size_m: float) -> InstanceConfig:
        """The clustering settings of this run at the network's voxel size."""
        radius = self.options.instance_radius_voxels * voxel_size_m
        return InstanceConfig(classes=self.instance_class_ids, radius_m=radius, shifted_radius_m=radius,
                              min_points=self.options.instance_min_points)

    def attach_analysis_truth(self, truth: Callable[[str], np.ndarray | None]) -> None:
        """truth(scene name) -> (N,) ground-truth semantic labels, for the analysis outputs only."""
        self.truth = truth

    def make_targets(self, name: str, scene: Scene) -> TrainScene | None:
        weak = self.weak
        if not isinstance(weak, LabelledScenes):
            raise ValueError("method 'ws3d' needs a labelled_scenes weak-label file (--labels)")
        if name not in weak.labelled and name not in weak.unlabelled and name not in weak.cuts:
            return None
        mask = weak.labelled_mask(name, scene.xyz)
        labels = np.full(scene.num_points, IGNORE_INDEX, dtype=np.int64)
        instance = np.full(scene.num_points, -1, dtype=np.int64)
        if mask.any():
            if scene.semantic is None:
                raise ValueError(f"scene {name!r} is labelled in the weak-label file but has no field 'semantic'")
            labels[mask] = scene.semantic[mask]
            if scene.instance is not None:
                things = mask & np.isin(labels, self.instance_class_ids) & (scene.instance >= 0)
                instance[things] = scene.instance[things]
        if self.options.regions == "supervoxels":
            if scene.supervoxel is None:
                raise ValueError(f"scene {name!r} has no super-voxels; run `wsseg data supervoxels --data DATASET` "
                                 "first or set method.regions: region_growing")
            region = scene.supervoxel.astype(np.int64)
        else:
            region = region_growing(scene.xyz).astype(np.int64)
        out = train_scene_from(name, scene, {"labels": labels, "instance": instance,
                                             "boundary": np.full(scene.num_points, IGNORE_INDEX, np.int64)})
        out.supervoxel = region
        return out

    def setup(self, scenes: list[TrainScene]) -> None:
        self.scenes = scenes
        self.labelled = tuple(s.name for s in scenes if (s.point_targets["labels"] != IGNORE_INDEX).any())
        if not self.labelled:
            raise ValueError("method 'ws3d': no training scene has a labelled point (check the labelled_scenes file)")
        counts = label_counts((s.point_targets["labels"] for s in scenes), self.num_classes)
        self.weights = torch.from_numpy(class_weights(counts, self.options.class_weighting))
        if self.options.unsupervised:
            for scene in scenes:
                self.regions[scene.name] = SceneRegions.build(scene.xyz, scene.supervoxel, self.options.adjacency_k)
            self.analysis.count_regions(self.regions)

    def build_modules(self, backbone: SparseUNet) -> nn.ModuleDict:
        channels = backbone.feature_channels
        modules: dict[str, nn.Module] = {}
        if self.options.unsupervised and self.options.boundary:
            modules["boundary"] = PointHead(channels, (channels,), 1, "boundary logit")
        if self.options.unsupervised and self.options.contrast:
            stages = contrast_stages(backbone.config.channels, self.options.contrast_stages)
            modules["contrast"] = ContrastHeads(stages, self.options.embed_dim)
        if self.options.instance:
            modules["offsets"] = offset_head(channels)
        return nn.ModuleDict(modules)

    def stages(self, plan: TrainPlan) -> list[Stage]:
        labelled = Sampling(scenes=self.labelled)
        if not self.options.unsupervised:
            return [Stage("supervised", plan.total_steps, sampling=labelled)]
        main = Stage("ws3d", plan.total_steps, True, sampling=Sampling(group="views"), extra=labelled,
                     extra_samples=self.options.labelled_samples, reinit_backbone=True, reinit_modules=True,
                     reinit_optimizer=True)
        if not self.options.boundary:
            return [main]
        steps = self.options.boundary_steps or max(1, plan.total_steps // 4)
        return [Stage("boundary", steps, True, sampling=labelled), main]

    def export_heads(self, modules: nn.ModuleDict) -> dict[str, PointHead]:
        """``instance_offsets`` (M_0, 3) metres, with this run's clustering settings (``attributes.clustering``)."""
        if "offsets" not in modules or self.voxel_size_m is None:
            return {}
        return {OFFSETS_OUTPUT: with_clustering(modules["offsets"], self.instance_config(self.voxel_size_m))}

    # ------------------------------------------------------------------------------------------ stages

    def begin_stage(self, index: int, stage: Stage, ctx: StageContext) -> None:
        self.analysis.run_dir = str(ctx.run_dir.root) if ctx.dist.is_main else None
        self.voxel_size_m = float(ctx.preprocess.voxel_size_m)
        if self.options.unsupervised and self.options.boundary:
            self._fill_boundary_targets(float(ctx.preprocess.voxel_size_m))
        if stage.name == "ws3d" and self.options.boundary:
            self._predict_boundaries(ctx)
        self.analysis.write()

    def _fill_boundary_targets(self, grid_m: float) -> None:
        """Boundary ground truth of the labelled points at the network's grid (deterministic: redone on resume)."""
        self.grid_m = grid_m
        for scene in self.scenes:
            labels = scene.point_targets["labels"]
            if (labels != IGNORE_INDEX).any():
                scene.point_targets["boundary"] = boundary_targets(scene.xyz, labels, grid_m,
                                                                   self.options.boundary_radius_cells)

    def _predict_boundaries(self, ctx: StageContext) -> None:
        """The boundary network's points on every scene -> each region pair's ``w`` (Eq. 2)."""

        def head(view: Any) -> dict[str, torch.Tensor]:
            return {"boundary": torch.sigmoid(ctx.modules["boundary"](view.output.point_features)[:, 0])}

        probability = ctx.infer(ctx.scenes, head=head, desc="boundaries",
                                reduce=lambda i, out: out["boundary"].cpu().numpy().astype(np.float32))
        every_probability = np.concatenate(probability)
        every_truth = np.concatenate([s.point_targets["boundary"] for s in ctx.scenes])
        threshold = self._boundary_threshold(ctx.scenes, probability, every_probability, every_truth)
        seen = score_boundaries(every_probability > threshold, every_truth)
        self.analysis.regions.update({"boundary_threshold": float(threshold),
                                      "labelled_boundary_precision": seen.precision,
                                      "labelled_boundary_recall": seen.recall})
        log.info("ws3d: boundary threshold %.2f (%s)", threshold, self.options.boundary_threshold_rule
                 if self.options.boundary_threshold is None else "fixed")
        predicted = [p > threshold for p in probability]
        for scene, boundary in zip(ctx.scenes, predicted, strict=True):
            truth = scene.point_targets["boundary"]
            known = truth != IGNORE_INDEX
            points = np.where(known, truth == 1, boundary)  # labelled points: their ground truth
            regions = self.regions[scene.name]
            regions.set_boundaries(points, self.options.boundary_pairs, scene.xyz, self.options.adjacency_k)
            hidden = None if self.truth is None else self.truth(scene.name)
            if hidden is not None and self.grid_m is not None:
                labelled = scene.point_targets["labels"] != IGNORE_INDEX
                self.analysis.add_boundaries(scene.xyz, hidden, boundary, labelled, self.grid_m,
                                             self.options.boundary_radius_cells)
                if not labelled.any():
                    self.analysis.add_pairs(regions, hidden, self.num_classes)
        self.analysis.count_pairs(self.regions)

    def _boundary_threshold(self, scenes: list[TrainScene], probability: list[np.ndarray],
                            every_probability: np.ndarray, every_truth: np.ndarray) -> float:
        """The fixed ``boundary_threshold``, else the one ``boundary_threshold_rule`` picks (``thresholds``).

        probability: per scene (N_s,) float boundary probabilities; every_probability / every_truth: the same and
        the boundary ground truth (1 / 0 / ``IGNORE_INDEX``) of all scenes concatenated, (sum N_s,)."""
        opts = self.options
        if opts.boundary_threshold is not None:
            return opts.boundary_threshold
        if opts.boundary_threshold_rule == "best_f1":
            return best_f1_threshold(every_probability, every_truth)
        if opts.boundary_threshold_rule == "precision":
            return precision_threshold(every_probability, every_truth, opts.boundary_precision)
        choice = pair_share_threshold(probability, [s.point_targets["labels"] for s in scenes],
                                      [self.regions[s.name] for s in scenes], self.num_classes,
                                      opts.boundary_pair_share)
        self.analysis.regions.update({"pair_share_target": choice.target, "pair_share_chosen": choice.share})
        return choice.threshold

    # ------------------------------------------------------------------------------------------ losses

    def losses(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        if ctx.stage.name == "boundary":
            terms = self._supervised(ctx, ctx.batch, ctx.output, offsets=False)
            boundary = ctx.modules["boundary"](ctx.output.point_features)[:, 0][ctx.batch.inverse]
            total, count = focal_loss(boundary, ctx.batch.point_targets["boundary"], self.options.focal_alpha)
            terms["focal"] = ctx.mean(total, count)
            return terms
        if ctx.stage.name == "supervised":
            return self._supervised(ctx, ctx.batch, ctx.output, offsets=self.options.instance)
        extra = ctx.batch.extra
        if extra is None:
            raise ValueError("stage 'ws3d' needs its labelled extra batch (engine Stage.extra)")
        terms = self._supervised(ctx, extra, ctx.forward(extra), offsets=self.options.instance)
        terms.update(self._unsupervised(ctx))
        return terms

    def _supervised(self, ctx: StepContext, batch: Any, output: UNetOutput, offsets: bool) -> dict[str, torch.Tensor]:
        """Cross-entropy on the labelled points of ``batch`` (+ the offset losses)."""
        logits = output.logits[batch.inverse]
        weights = self.weights.to(logits.device)
        total, weight = point_cross_entropy(logits, batch.point_targets["labels"], class_weights=weights)
        terms = {"ce": ctx.mean(total, weight)}
        if offsets:
            instance = batch.point_targets["instance"]
            unique = torch.where(instance >= 0, batch.point_batch * _INSTANCE_STRIDE + instance,
                                 torch.full_like(instance, -1))
            predicted = ctx.modules["offsets"](output.point_features)[batch.inverse]
            xyz = torch.as_tensor(batch.host.xyz, device=logits.device)
            parts = offset_losses(predicted, xyz, unique)
            terms["offset_l1"] = ctx.mean(parts.l1_sum, parts.count)
            terms["offset_dir"] = ctx.mean(parts.direction_sum, parts.direction_count)
        return terms

    def _unsupervised(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        """E_sum,1 + E_sum,2 (per-view averages) and Σ_m L^m_contrast over the batch's view groups."""
        host = ctx.batch.host
        regions = view_regions(host.names, host.group, host.member, host.point_offsets, host.point_index,
                               self.regions)
        opts = self.options
        branch = Branch(boundary=opts.boundary, pairwise=opts.pairwise, energy_confidence=opts.energy_confidence,
                        contrast=opts.contrast, contrast_confidence=opts.contrast_confidence, gamma=opts.gamma,
                        epsilon=opts.epsilon, temperature=opts.temperature, positives=opts.contrast_positives)
        heads = ctx.modules["contrast"] if "contrast" in ctx.modules else None  # noqa: SIM401 (ModuleDict)
        out = unsupervised_terms(ctx.output, ctx.point_logits(), regions, ctx.batch.level_rows, heads, branch)
        views = len(regions.rows)
        ramp = self._rampup(ctx)
        energy = ramp * opts.energy_weight
        terms = {"energy_unary": energy * ctx.mean(out.unary_sum, out.unary_count / views)}
        if opts.pairwise:
            terms["energy_pair"] = energy * ctx.mean(out.pair_sum, out.pair_count / views)
        if out.contrast_sums:
            contrast = sum(ctx.mean(s, n) for s, n in zip(out.contrast_sums, out.contrast_counts, strict=True))
            terms["contrast"] = ramp * opts.contrast_weight * contrast  # type: ignore[assignment]
        self.analysis.add_confidence(ctx.step, float(out.confident_pairs), float(out.pairs))
        if (ctx.step + 1) % 25 == 0 or ctx.step + 1 == ctx.schedule.total_steps:
            self.analysis.write()
        return terms

    def _rampup(self, ctx: StepContext) -> float:
        """Weight of the unsupervised terms: linear from 1 / n to 1 over the first n = ``rampup_fraction`` of the
        stage's steps, then 1."""
        length = self.options.rampup_fraction * ctx.stage.length
        if length < 1:
            return 1.0
        done = ctx.step - ctx.schedule.start_of(ctx.stage_index) + 1
        return float(min(1.0, done / length))

    # ------------------------------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        return {"grid_m": self.grid_m, "voxel_size_m": self.voxel_size_m,
                "w": {n: torch.from_numpy(r.w.copy()) for n, r in self.regions.items()},
                "analysis": self.analysis.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.voxel_size_m = state.get("voxel_size_m")
        if state.get("grid_m") is not None:
            self._fill_boundary_targets(float(state["grid_m"]))
        for name, w in (state.get("w") or {}).items():
            if name in self.regions:
                self.regions[name].w = w.numpy().astype(np.float32)
        self.analysis.load_state_dict(state.get("analysis") or {})

    @staticmethod
    def analysis_path(run: str | Path) -> Path:
        return Path(run) / Ws3dAnalysis.FILE
