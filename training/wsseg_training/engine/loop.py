"""The training loop: build, iterate, step, log, checkpoint. Read :meth:`Trainer._run` top to bottom.

One engine for every method (:mod:`wsseg_training.methods`): the method supplies targets, extra modules,
losses and its outer loop (stages: length in steps or epochs, sampling, restarts); the engine owns data,
optimiser and schedule, mixed precision, gradient clipping, divergence detection, checkpoints and
``--resume``, TensorBoard, the progress bar, data-parallel training and the whole-scene inference pass.

Determinism: the model is initialised from ``torch.manual_seed(seed)``; every step's data and random
numbers derive from ``(seed, step)`` (:mod:`wsseg_training.engine.sampling`); the learning rate is a function
of the step; a stage's re-initialisation is drawn from ``(seed, stage index)``.  A run resumed from any
checkpoint therefore produces the same parameters as the uninterrupted run (bit-identical on CPU).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from tqdm import tqdm

from wsseg.core.features import FeatureConfig
from wsseg.core.geometry import PlaneParams
from wsseg.core.preprocess import PreprocessConfig
from wsseg_training.checkpoint import CheckpointError, load_checkpoint, make_checkpoint, save_checkpoint
from wsseg_training.data.dataset import Dataset
from wsseg_training.data.sensor_defaults import apply_sensor_defaults
from wsseg_training.engine.batches import Batch, DeviceBatch, StepBatches, identity
from wsseg_training.engine.config import ConfigError, TrainConfig, save_config
from wsseg_training.engine.distributed import DistInfo, all_reduce_sum, average_gradients, init_distributed
from wsseg_training.engine.inference import NetworkRunner
from wsseg_training.engine.monitor import TrainingDivergedError, TrainingLog, check_finite
from wsseg_training.engine.optim import lr_factor, set_lr
from wsseg_training.engine.run_dir import RunDir, write_checkpoint
from wsseg_training.engine.sampling import CROP, SampleDrawer, Sampling
from wsseg_training.engine.scenes import TrainScene
from wsseg_training.engine.schedule import Schedule, Stage, TrainPlan
from wsseg_training.engine.state import (
    TrainState,
    build_state,
    load_training_state,
    restart_for_stage,
    training_state,
)
from wsseg_training.methods.base import Method, StageContext, StepContext
from wsseg_training.methods.common.heads import heads_to_checkpoint
from wsseg_training.model.profiles import PROFILES, preprocess_config_for, unet_config_for
from wsseg_training.model.unet import SparseUNet, UNetOutput

__all__ = ["TrainResult", "Trainer", "TrainingDivergedError", "preprocess_for", "train"]

log = logging.getLogger(__name__)

#: config fields that may differ between a run and its resumption (they do not change what is computed)
RESUMABLE_CHANGES = ("device", "data.num_workers")


@dataclass
class TrainResult:
    """What a finished run produced.  losses: global-batch loss of every step this process ran."""

    run: RunDir
    steps: int
    start_step: int
    losses: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    num_scenes: int = 0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch sees no CUDA device (use --device cpu)")
    return torch.device(name)


def resolve_backend(name: str, device: torch.device) -> str:
    """'maps' (kernel-map gather, CPU and GPU) or 'spconv' (GPU only: spconv's CPU build has no backward)."""
    if name == "spconv" and device.type != "cuda":
        raise ValueError("backend 'spconv' trains only on CUDA (its CPU build has no backward); use 'maps'")
    if name == "auto":
        if device.type != "cuda":
            return "maps"
        try:
            import spconv.pytorch  # noqa: F401
        except ImportError:
            return "maps"
        return "spconv"
    return name


def preprocess_for(config: TrainConfig) -> PreprocessConfig:
    """The run's preprocessing (the Trainer first fills the data-chosen fields with ``apply_sensor_defaults``;
    without that, ``data.features: null`` means offset + rgb).  The support plane's RANSAC band follows the
    grid (:meth:`PlaneParams.for_voxel`) and is written into the bundle, so the node fits the same plane."""
    data = config.data
    if config.profile not in PROFILES:
        raise ConfigError(f"profile {config.profile!r} must be resolved first (apply_sensor_defaults)")
    voxel = data.voxel_size_m if data.voxel_size_m is not None else PROFILES[config.profile].voxel_size_m
    features = FeatureConfig(names=data.features or ("offset", "rgb"), intensity_scale=data.intensity_scale,
                             height_scale_m=data.height_scale_m, support_scale_m=data.support_scale_m,
                             plane=PlaneParams.for_voxel(voxel))
    return dataclasses.replace(preprocess_config_for(config.profile, features, voxel_size_m=voxel),
                               refine=data.refine)


def _config_differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        name = f"{prefix}{key}"
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            out += _config_differences(a[key], b[key], f"{name}.")
        elif a.get(key) != b.get(key) and name not in RESUMABLE_CHANGES:
            out.append(name)
    return out


class Trainer:
    """One training run of ``method`` on the ``split`` scenes of ``dataset`` into ``run_dir``.

    After :meth:`run`: ``scenes`` (the :class:`TrainScene` list), ``model``, ``modules`` (the trained ones).
    Methods see a :class:`~wsseg_training.methods.base.StageContext`, never the trainer.
    """

    def __init__(self, config: TrainConfig, method: Method, dataset: Dataset, run_dir: str | Path,
                 split: str = "train", resume: bool = False, progress: bool = True,
                 provenance: dict[str, Any] | None = None) -> None:
        self.config = config
        self.method = method
        self.dataset = dataset
        self.run_dir = RunDir(Path(run_dir))
        self.split = split
        self.resume = resume
        self.progress = progress
        self.provenance = dict(provenance or {})
        self.device = resolve_device(config.device)
        self.backend = resolve_backend(config.backend, self.device)
        self.dist: DistInfo = init_distributed(self.device.type)
        if self.device.type == "cuda" and self.dist.active:
            self.device = torch.device("cuda", self.dist.local_rank)
        if not self.dist.is_main:  # one process reports; the others only warn
            logging.getLogger("wsseg_training").setLevel(logging.WARNING)
        self.amp = bool(config.train.amp and self.device.type == "cuda")
        config, self.sensor_defaults = apply_sensor_defaults(config, dataset, split, gpu=self.device.type == "cuda")
        self.config = config
        for line in self.sensor_defaults.lines:
            log.info("sensor-aware defaults: %s", line)
        if self.sensor_defaults.warning:
            log.warning("%s", self.sensor_defaults.warning)
        self.preprocess = preprocess_for(config)
        if self.preprocess.refine is not None:
            try:
                self.preprocess.refine.support_id(dataset.classes.names)
            except ValueError as exc:
                raise ConfigError(f"data.refine: {exc} (dataset {dataset.root})") from None
        self.runner = NetworkRunner(self.backend)
        self.scenes: list[TrainScene] = []
        self.state: TrainState | None = None

    @property
    def model(self) -> SparseUNet:
        return self._state().model

    @property
    def modules(self) -> nn.ModuleDict:
        return self._state().modules

    def _state(self) -> TrainState:
        if self.state is None:
            raise RuntimeError("the trainer has no model before run()")
        return self.state

    # ------------------------------------------------------------------------------------------ the run

    def run(self) -> TrainResult:
        self._prepare_run_dir()
        file_log = _attach_file_log(self.run_dir.log) if self.dist.is_main else None
        try:
            return self._run()
        finally:
            if file_log is not None:
                logging.getLogger("wsseg_training").removeHandler(file_log)
                file_log.close()

    def _run(self) -> TrainResult:
        config = self.config
        # 1. Data: the scenes the method may see, the method's own set-up, its stages.
        self._load_scenes()
        self.method.setup(self.scenes)
        schedule = self._schedule()
        total_steps = schedule.total_steps

        # 2. Model, method modules, optimiser (same seed on every rank); 3. or those of the last checkpoint.
        unet = unet_config_for(config.profile, self.preprocess.features.num_channels, self.dataset.classes.num_classes)
        self.state = state = build_state(config, unet, self.method, self.device, self.dist, self.amp)
        start_step = self._resume_into(state, total_steps) if self.resume else 0
        last_saved = start_step if self.resume else None
        log.info("training %s (%s backend, %s%s) on %d scenes, %d steps of %d samples, %d process(es)",
                 self.method.name, self.backend, self.device, ", AMP" if self.amp else "", len(self.scenes),
                 total_steps, config.data.batch_scenes, self.dist.world_size)

        # 4. The loop: stage by stage, step by step.
        result = TrainResult(run=self.run_dir, steps=total_steps, start_step=start_step, num_scenes=len(self.scenes))
        started = time.perf_counter()
        tensorboard = self.run_dir.tensorboard if self.dist.is_main else None
        with TrainingLog(self.method.name, total_steps, start_step, config.train.log_every_steps, tensorboard,
                         self.progress and self.dist.is_main, self.resume) as monitor:
            step = start_step
            while step < total_steps:
                index, stage_start = schedule.stage_at(step)
                stage = schedule.stages[index]
                if step == stage_start:
                    self._begin_stage(index, stage, schedule, state)
                for batch in self._batches(stage, step, stage_start + stage.length, total_steps):
                    tick = time.perf_counter()
                    lr = config.optim.lr * lr_factor(config.optim, schedule.stages, step)
                    terms, grad_norm = self._step(step, index, schedule, batch, state, lr)
                    check_finite(step, terms, grad_norm, state.scaler is not None, self.run_dir.last, last_saved)
                    step += 1
                    result.losses.append(float(sum(terms.values())))
                    monitor.step(step, terms, lr, grad_norm, len(batch.xyz) * self.dist.world_size,
                                 time.perf_counter() - tick)
                    if self._due(config.train.checkpoint_every_steps, step, total_steps):
                        self._save(step, state, total_steps)
                        last_saved = step
                    if self._due(config.train.eval_every_steps, step, total_steps, only_if_set=True):
                        self._evaluate(monitor, step)

        # 5. The final model: the backbone alone, what export and evaluation read.
        result.wall_s = time.perf_counter() - started
        self._save_final(state, result)
        return result

    # ------------------------------------------------------------------------------------------ helpers

    def _schedule(self) -> Schedule:
        """The method's stages for this run's length, epochs converted to steps once."""
        per_epoch: dict[Sampling, int] = {}

        def steps_per_epoch(sampling: Sampling) -> int:
            if sampling not in per_epoch:
                drawer = SampleDrawer(self.scenes, sampling, self.config.data, self.config.seed)
                per_epoch[sampling] = drawer.steps_per_epoch(self.config.data.batch_scenes)
            return per_epoch[sampling]

        train = self.config.train
        epoch_steps = steps_per_epoch(CROP)
        total = train.steps if train.steps is not None else int(train.epochs or 0) * epoch_steps
        plan = TrainPlan(total_steps=int(total), epochs=total / epoch_steps, steps_per_epoch=steps_per_epoch)
        return Schedule.resolve(self.method.stages(plan), steps_per_epoch)

    def _begin_stage(self, index: int, stage: Stage, schedule: Schedule, state: TrainState) -> None:
        """The method's stage hook (with the trained model), then the stage's re-initialisation."""
        log.info("stage %d/%d %r: %d steps", index + 1, len(schedule.stages), stage.name, stage.length)
        context = StageContext(index=index, stage=stage, schedule=schedule, scenes=self.scenes, model=state.model,
                               modules=state.modules, preprocess=self.preprocess, device=self.device,
                               runner=self.runner, run_dir=self.run_dir, dist=self.dist, progress=self.progress,
                               seed=self.config.seed)
        self.method.begin_stage(index, stage, context)
        restart_for_stage(state, stage, index, self.config, self.method)

    def forward(self, batch: DeviceBatch) -> UNetOutput:
        """The backbone over a batch (spconv on CUDA when chosen, else the kernel-map pairs path)."""
        return self.runner(self._state().model, batch.features, batch.maps, batch.coords)

    def _step(self, step: int, stage_index: int, schedule: Schedule, batch: Batch, state: TrainState,
              lr: float) -> tuple[dict[str, float], float]:
        """One optimiser step; returns the global-batch loss terms and the gradient norm (before clipping)."""
        set_lr(state.optimizer, lr)
        state.model.train()
        state.modules.train()
        device_batch = batch.to(self.device)
        autocast = torch.autocast("cuda", dtype=torch.float16) if self.amp else contextlib.nullcontext()
        with autocast:
            output = self.forward(device_batch)
            ctx = StepContext(step=step, stage_index=stage_index, stage=schedule.stages[stage_index],
                              batch=device_batch, output=output, backbone=state.model, modules=state.modules,
                              forward=self.forward, generator=self._step_generator(step), schedule=schedule,
                              epoch=schedule.epoch_at(step))
            terms = self.method.losses(ctx)
            if not terms:
                raise ValueError(f"method {self.method.name!r} returned no loss term at step {step + 1}")
            loss = sum(terms.values())
        # Every rank reports the global-batch value of each term, so all ranks stop together on NaN.
        values = all_reduce_sum(torch.stack([t.detach().float().reshape(()) for t in terms.values()]))
        values = (values / self.dist.world_size).cpu().tolist()
        reported = dict(zip(terms, values, strict=True))
        if not np.isfinite(sum(values)):
            return reported, float("nan")
        return reported, self._backward(loss, state)  # type: ignore[arg-type]

    def _backward(self, loss: torch.Tensor, state: TrainState) -> float:
        """Backward, gradient averaging over ranks, clipping, optimiser step; the norm before clipping."""
        state.optimizer.zero_grad(set_to_none=True)
        if state.scaler is not None:
            state.scaler.scale(loss).backward()
        else:
            loss.backward()
        average_gradients(state.params)
        if state.scaler is not None:
            state.scaler.unscale_(state.optimizer)
        clip = self.config.optim.grad_clip_norm
        grad_value = float(torch.nn.utils.clip_grad_norm_(state.params, clip if clip > 0 else float("inf")))
        if state.scaler is not None:
            state.scaler.step(state.optimizer)
            state.scaler.update()
        elif np.isfinite(grad_value):
            state.optimizer.step()
        return grad_value

    def _step_generator(self, step: int) -> torch.Generator:
        seed = int(np.random.SeedSequence([self.config.seed, step, self.dist.rank]).generate_state(1)[0])
        return torch.Generator().manual_seed(seed)

    def _batches(self, stage: Stage, first: int, end: int, total_steps: int) -> Iterator[Batch]:
        """Batches of steps ``first .. end-1`` with the stage's sampling (worker processes when
        ``data.num_workers > 0``)."""
        source = StepBatches(self.scenes, self.preprocess, self.config.data, self.config.seed, total_steps,
                             rank=self.dist.rank, world_size=self.dist.world_size, sampling=stage.sampling,
                             num_classes=self.dataset.classes.num_classes, extra=stage.extra,
                             extra_samples=stage.extra_samples)
        if self.config.data.num_workers == 0:
            return (source[step] for step in range(first, end))
        loader = torch.utils.data.DataLoader(
            source, batch_size=None, sampler=list(range(first, end)), num_workers=self.config.data.num_workers,
            collate_fn=identity, pin_memory=self.device.type == "cuda", persistent_workers=False)
        return iter(loader)

    @staticmethod
    def _due(every: int, step: int, total_steps: int, only_if_set: bool = False) -> bool:
        """Whether 1-based ``step`` is a multiple of ``every`` or the last step (``every`` 0: only the last,
        or never when ``only_if_set``)."""
        if only_if_set and not every:
            return False
        return bool(every and step % every == 0) or step == total_steps

    def _checkpoint(self, step: int, state: TrainState, total_steps: int) -> dict[str, Any]:
        provenance = {**self.provenance, "method": self.method.name, "dataset": self.dataset.info.name,
                      "profile": self.config.profile, "step": step, "total_steps": total_steps,
                      "seed": self.config.seed}
        training = training_state(state, step, total_steps, self.method, self.config, self.dist.world_size)
        return make_checkpoint(state.model, self.preprocess, self.dataset.classes, sensor=self._sensor(),
                               provenance=provenance, training=training)

    def _sensor(self) -> str:
        sensor = self.dataset.info.sensor
        return sensor if sensor in ("rgbd", "lidar") else "any"

    def _prepare_run_dir(self) -> None:
        if self.resume:
            if not self.run_dir.last.is_file():
                raise CheckpointError(f"{self.run_dir.last}: nothing to resume (no checkpoint in {self.run_dir.root})")
            if self.run_dir.config.is_file():
                saved = yaml.safe_load(self.run_dir.config.read_text()) or {}
                changed = _config_differences(saved, self.config.to_dict())
                if changed:
                    raise ConfigError(f"{self.run_dir.config}: --resume with a different config (fields {changed}); "
                                      "resume with the run's own config.yaml")
        elif self.run_dir.last.is_file():
            raise ValueError(f"{self.run_dir.root} already holds a run ({self.run_dir.last}); pass --resume to "
                             "continue it or choose another --out")
        if self.dist.is_main:
            self.run_dir.root.mkdir(parents=True, exist_ok=True)
            self.run_dir.remove_stale_temporaries()
            save_config(self.config, self.run_dir.config)

    def _load_scenes(self) -> None:
        names = self.dataset.scene_names(self.split)
        bar = tqdm(names, desc="load scenes", unit="scene", disable=not (self.progress and self.dist.is_main),
                   leave=False)
        for name in bar:
            scene = self.method.make_targets(name, self.dataset.load(name))
            if scene is not None:
                self.scenes.append(scene)
        if not self.scenes:
            raise ValueError(f"{self.dataset.root}: no usable training scene in split {self.split!r} for method "
                             f"{self.method.name!r} (no labelled point)")

    def _resume_into(self, state: TrainState, total_steps: int) -> int:
        """Weights, optimiser, scaler and method state of ``last.pt``; returns the step to continue from."""
        checkpoint = load_checkpoint(self.run_dir.last)
        if not checkpoint.get("training"):
            raise CheckpointError(f"{self.run_dir.last}: has no training state to resume from")
        before = checkpoint.get("provenance", {})
        for key, now in (("method", self.method.name), ("labels", self.provenance.get("labels"))):
            if before.get(key) != now:
                raise ValueError(f"{self.run_dir.last}: the run was trained with {key} {before.get(key)!r}, "
                                 f"not {now!r}; resume with the same --method and --labels")
        start_step = load_training_state(state, checkpoint, self.method)
        log.info("resuming %s at step %d of %d", self.run_dir.root, start_step, total_steps)
        if start_step >= total_steps:
            log.info("%s: already trained for %d steps", self.run_dir.root, total_steps)
        return start_step

    def _save(self, step: int, state: TrainState, total_steps: int) -> None:
        if not self.dist.is_main:
            return
        for name, tensor in state.model.state_dict().items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise TrainingDivergedError(f"step {step}: parameter {name!r} is not finite; checkpoint not written")
        write_checkpoint(self.run_dir, self._checkpoint(step, state, total_steps), step,
                         self.config.train.keep_checkpoints)

    def _save_final(self, state: TrainState, result: TrainResult) -> None:
        if not self.dist.is_main:
            return
        provenance = {**self.provenance, "method": self.method.name, "dataset": self.dataset.info.name,
                      "profile": self.config.profile, "steps": result.steps, "seed": self.config.seed,
                      "train_scenes": len(self.scenes), "final_loss": result.losses[-1] if result.losses else None,
                      "train_wall_s": round(result.wall_s, 1)}
        heads = heads_to_checkpoint(self.method.export_heads(state.modules))  # extra exported outputs
        final = make_checkpoint(state.model, self.preprocess, self.dataset.classes, sensor=self._sensor(),
                                provenance=provenance, heads=heads)
        save_checkpoint(self.run_dir.model, final)
        log.info("wrote %s after %d steps (%.1f s)", self.run_dir.model, result.steps, result.wall_s)

    def _evaluate(self, monitor: TrainingLog, step: int) -> None:
        from wsseg_training.evaluation.evaluate import TorchPredictor, evaluate_split

        if "val" not in self.dataset.info.splits or not self.dist.is_main:
            return
        predictor = TorchPredictor(self._state().model, self.preprocess, self.device, self.dataset.classes,
                                    backend=self.backend)
        matrix = evaluate_split(predictor, self.dataset, "val", progress=False).confusion
        monitor.scalars(step, {"val/miou": matrix.miou(), "val/overall_accuracy": matrix.overall_accuracy()})
        log.info("step %d: val mIoU %.4f", step, matrix.miou())


def _attach_file_log(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("wsseg_training")
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    return handler


def train(config: TrainConfig, method: Method, dataset: Dataset, run_dir: str | Path, resume: bool = False,
          progress: bool = True, provenance: dict[str, Any] | None = None) -> TrainResult:
    """Train ``method`` on ``dataset``'s train split into ``run_dir`` (see :class:`Trainer`)."""
    return Trainer(config, method, dataset, run_dir, resume=resume, progress=progress, provenance=provenance).run()

