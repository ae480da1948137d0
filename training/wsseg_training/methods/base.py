"""The method plugin interface (ARCHITECTURE.md decision 4).

A method says what it learns from and how; the engine
(:mod:`wsseg_training.engine.loop`) owns everything else (batching, optimiser, AMP,
checkpoints, logging, DDP).  The hooks, in the order the engine calls them:

1. ``Method(classes, options, weak)``: ``label_kinds`` lists the weak-label kinds it accepts
   (``--labels``); ``options`` is the config's ``method:`` mapping, built into the method's frozen ``Options``
   dataclass (:class:`~wsseg_training.methods.common.options.MethodOptions`; ``Method.parse_options(mapping,
   where=FILE)`` names the YAML file in errors), or an ``Options`` instance.
2. ``make_targets(name, scene)`` per training scene: returns the :class:`TrainScene` the method may see
   (per-point / per-scene targets from the weak labels; super-voxels ride along), or None to skip it.
3. ``setup(scenes)``: once, after all scenes are loaded (e.g. class frequencies).
4. ``build_modules(backbone)``: training-only heads/modules, trained with the backbone, not exported.
5. ``stages(plan)``: the outer loop as :class:`~wsseg_training.engine.schedule.Stage` objects (self-training
   rounds, two-stage schedules); default one stage of ``plan.total_steps``.  A stage's length is steps or
   epochs (``plan.steps_per_epoch``), and it chooses its sampling (crops, sub-cloud balls, random balls,
   whole scenes, pairs sharing a class, augmented views: :mod:`wsseg_training.engine.sampling`) and whether
   it restarts the backbone / modules / optimiser (:mod:`wsseg_training.engine.schedule`).
6. ``begin_stage(index, stage, ctx)``: before a stage starts (not again on resume), with a
   :class:`StageContext`: e.g. predict the training scenes with ``ctx.infer(...)``
   (:func:`wsseg_training.engine.inference.infer`) and write pseudo labels into ``scene.point_targets``.
   A stage's re-initialisation happens after this hook.
7. ``losses(ctx)`` every step: named loss terms (scalars); the engine sums them.  ``ctx`` (:class:`StepContext`)
   holds the backbone's output with per-level features (:class:`~wsseg_training.model.unet.UNetOutput`;
   ``ctx.backbone.decode_from`` runs the decoder again from replaced mid-network features), the batch
   (targets, per-sample tags, pair partners / view indices, point -> voxel maps at every level, super-voxels),
   the method's modules and ``ctx.epoch``.  Use ``ctx.mean(sum, count)`` for averages so that multi-process
   training equals single-process training.
8. ``offline_predictors(checkpoint, device)`` (class method): inference modes beyond the exported backbone that
   ``wsseg eval --run`` also reports (1T1C's graph propagation), keyed by a suffix ("-full" -> RUN/eval/val-full).
9. ``export_heads(modules)``: extra per-voxel outputs ``wsseg export`` puts into the bundle beside ``logits``
   (WS3D's instance offsets): {output name: :class:`~wsseg_training.methods.common.heads.PointHead`}.
10. ``state_dict()`` / ``load_state_dict()``: whatever the method changes during training (pseudo labels),
   saved in checkpoints for ``--resume``.  Only tensors, numbers, strings, lists and dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from wsseg.core.classes import ClassTable
from wsseg.core.preprocess import PreprocessConfig
from wsseg.core.scene import Scene
from wsseg_training.engine.batches import DeviceBatch
from wsseg_training.engine.config import ConfigError
from wsseg_training.engine.distributed import DistInfo, global_mean
from wsseg_training.engine.inference import Cloud, NetworkRunner, infer
from wsseg_training.engine.run_dir import RunDir
from wsseg_training.engine.scenes import TrainScene
from wsseg_training.engine.schedule import Schedule, Stage, TrainPlan
from wsseg_training.methods.common.options import MethodOptions
from wsseg_training.model.unet import SparseUNet, UNetOutput

if TYPE_CHECKING:
    from pathlib import Path

    from wsseg_training.evaluation.evaluate import Predictor
    from wsseg_training.labels import WeakLabels
    from wsseg_training.methods.common.heads import PointHead


@dataclass
class StepContext:
    """What ``Method.losses`` sees at one step.

    step: 0-based optimiser step.  stage_index / stage: the current stage.
    batch: this process's batch on the device.  output: the backbone's forward pass over it.
    backbone: the U-Net.  modules: the method's extra modules (``build_modules``).
    forward: runs the backbone on another :class:`DeviceBatch` (same backend as ``output``).
    generator: torch random generator seeded from (seed, step, rank), on the CPU.
    schedule: the resolved stages.  epoch: epochs completed before this step (fractional;
    ``int(ctx.epoch)`` is the 0-based epoch the step belongs to).
    """

    step: int
    stage_index: int
    stage: Stage
    batch: DeviceBatch
    output: UNetOutput
    backbone: SparseUNet
    modules: nn.ModuleDict
    forward: Callable[[DeviceBatch], UNetOutput]
    generator: torch.Generator
    schedule: Schedule
    epoch: float

    def point_logits(self) -> torch.Tensor:
        """(P, C) logits of every point of the batch (voxel logits through ``batch.inverse``)."""
        return self.output.logits[self.batch.inverse]

    @staticmethod
    def mean(values_sum: torch.Tensor, count: torch.Tensor | float) -> torch.Tensor:
        """Global-batch average of a summed quantity (see :func:`~wsseg_training.engine.distributed.global_mean`)."""
        return global_mean(values_sum, count)


@dataclass
class StageContext:
    """What ``Method.begin_stage`` sees (instead of the whole trainer).

    index / stage / schedule: the stage starting and all stages.  scenes: the training scenes (the method may
    replace their ``point_targets``).  model: the backbone; modules: the method's modules.  preprocess,
    device, backend: how the engine prepares and runs the network.  run_dir: the run directory
    (``run_dir.root``).  dist: this process's rank / world size.  progress: whether to show progress bars.
    seed: the run's seed.
    """

    index: int
    stage: Stage
    schedule: Schedule
    scenes: list[TrainScene]
    model: SparseUNet
    modules: nn.ModuleDict
    preprocess: PreprocessConfig
    device: torch.device
    runner: NetworkRunner
    run_dir: RunDir
    dist: DistInfo
    progress: bool
    seed: int

    @property
    def backend(self) -> str:
        return self.runner.backend

    def infer(self, scenes: Sequence[Cloud] | None = None, network: SparseUNet | None = None,
              **options: Any) -> list[Any]:
        """:func:`~wsseg_training.engine.inference.infer` over ``scenes`` (default: the training scenes) with
        ``network`` (default: the backbone), this run's preprocessing, device, backend and process group;
        the modules are in eval mode too.  ``options``: ``head``, ``tta``, ``reduce``, ``desc``."""
        options.setdefault("modules", self.modules)
        options.setdefault("progress", self.progress)
        return infer(self.scenes if scenes is None else scenes, self.model if network is None else network,
                     self.preprocess, self.device, dist=self.dist, runner=self.runner, **options)


class Method:
    """Base class of every method; the defaults train nothing special (see the module docstring)."""

    name: ClassVar[str] = ""
    label_kinds: ClassVar[tuple[str, ...]] = ()
    requires_labels: ClassVar[bool] = False
    Options: ClassVar[type[MethodOptions]] = MethodOptions

    def __init__(self, classes: ClassTable, options: Mapping[str, Any] | MethodOptions | None = None,
                 weak: WeakLabels | None = None) -> None:
        self.options = self.parse_options(options)
        if weak is None and self.requires_labels:
            raise ValueError(f"method {self.name!r} needs a weak-label file (--labels) of kind "
                             f"{' or '.join(self.label_kinds)}")
        if weak is not None and weak.kind not in self.label_kinds:
            accepted = ", ".join(self.label_kinds) or "none"
            raise ValueError(f"method {self.name!r} does not use weak labels of kind {weak.kind!r} "
                             f"(accepted: {accepted})")
        self.classes = classes
        self.weak = weak

    @classmethod
    def parse_options(cls, options: Mapping[str, Any] | MethodOptions | None, where: str = "config") -> Any:
        """``cls.Options`` from the config's ``method:`` mapping (``where`` = the YAML file, named in errors)."""
        if isinstance(options, cls.Options):
            return options
        if isinstance(options, MethodOptions):
            raise ConfigError(f"method {cls.name!r} takes {cls.Options.__name__}, not {type(options).__name__}")
        return cls.Options.build(options, where)

    @property
    def num_classes(self) -> int:
        return self.classes.num_classes

    def make_targets(self, name: str, scene: Scene) -> TrainScene | None:
        raise NotImplementedError

    def setup(self, scenes: list[TrainScene]) -> None:
        """Called once with every training scene before training."""

    def build_modules(self, backbone: SparseUNet) -> nn.ModuleDict:
        return nn.ModuleDict()

    def stages(self, plan: TrainPlan) -> list[Stage]:
        return [Stage("train", plan.total_steps)]

    def begin_stage(self, index: int, stage: Stage, ctx: StageContext) -> None:
        """Called when stage ``index`` starts (not when a run resumes inside it), before its re-initialisation."""

    def losses(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @classmethod
    def offline_predictors(cls, checkpoint: Path, device: torch.device) -> dict[str, Predictor]:
        """{suffix: predictor} of the inference modes of a trained run (``checkpoint``: its ``checkpoints/last.pt``,
        with the training-only modules) that ``wsseg eval`` reports beside the backbone's; default none."""
        return {}

    def export_heads(self, modules: nn.ModuleDict) -> dict[str, PointHead]:
        """{output name: head} of the extra per-voxel outputs to export (module docstring, hook 9); default none.

        Each head maps the backbone's ``point_features`` (M_0, F) to (M_0, K) float32; the trainer stores the heads
        in ``model.pt`` and ``wsseg export`` adds them as ONNX outputs named as here (document the names, units and
        shapes in the method's docstring)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
