"""The training loop: build, iterate, step, log, checkpoint. Read :meth:`Trainer.run` top to bottom.

One engine for every method (:mod:`wsseg_training.methods`): the method supplies
targets, extra modules, losses and its outer loop (stages); the engine owns data,
optimiser and schedule, mixed precision, gradient clipping, divergence detection,
checkpoints and ``--resume``, TensorBoard, the progress bar and data-parallel training.

Determinism: the model is initialised from ``torch.manual_seed(seed)``; every step's
data and random numbers derive from ``(seed, step)`` (:mod:`wsseg_training.engine.batches`);
the learning rate is a function of the step.  A run resumed from any checkpoint
therefore produces the same parameters as the uninterrupted run (bit-identical on CPU).
"""

from __future__ import annotations

import contextlib
import logging
import math
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
from wsseg.core.preprocess import NetworkInput, PreprocessConfig, prepare_cloud
from wsseg_training.checkpoint import CheckpointError, load_checkpoint, make_checkpoint, save_checkpoint
from wsseg_training.data.dataset import Dataset
from wsseg_training.data.sensor_defaults import apply_sensor_defaults
from wsseg_training.engine.batches import Batch, DeviceBatch, StepBatches, identity, steps_per_epoch
from wsseg_training.engine.config import ConfigError, TrainConfig, save_config
from wsseg_training.engine.distributed import (
    DistInfo,
    all_reduce_sum,
    average_gradients,
    broadcast_parameters,
    init_distributed,
    use_global_batchnorm,
)
from wsseg_training.engine.optim import Stage, build_optimizer, lr_factor, set_lr, stage_at
from wsseg_training.engine.run_dir import RunDir, write_checkpoint
from wsseg_training.engine.scenes import TrainScene
from wsseg_training.methods.base import Method, StepContext
from wsseg_training.model.inputs import to_torch
from wsseg_training.model.profiles import PROFILES, preprocess_config_for, unet_config_for
from wsseg_training.model.unet import SparseUNet, UNetOutput

log = logging.getLogger(__name__)

#: config fields that may differ between a run and its resumption (they do not change what is computed)
RESUMABLE_CHANGES = ("device", "data.num_workers")


class TrainingDivergedError(RuntimeError):
    """The loss or the gradients became NaN/inf; the message names the step and the last good checkpoint."""


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
    without that, ``data.features: null`` means offset + rgb)."""
    data = config.data
    if config.profile not in PROFILES:
        raise ConfigError(f"profile {config.profile!r} must be resolved first (apply_sensor_defaults)")
    features = FeatureConfig(names=data.features or ("offset", "rgb"), intensity_scale=data.intensity_scale,
                             height_scale_m=data.height_scale_m)
    return preprocess_config_for(config.profile, features, voxel_size_m=data.voxel_size_m)


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

    Attributes a method may use in ``begin_stage``: ``scenes`` (the :class:`TrainScene` list),
    ``model``, ``modules``, ``preprocess``, ``device``, :meth:`infer`.
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
        self.scenes: list[TrainScene] = []
        self.model: SparseUNet
        self.modules: nn.ModuleDict
        self._spconv: nn.Module | None = None

    # ------------------------------------------------------------------------------------------ helpers

    def forward(self, batch: DeviceBatch) -> UNetOutput:
        """The backbone over a batch (spconv on CUDA when chosen, else the kernel-map pairs path)."""
        if self._spconv is not None:
            return self._spconv.forward_features(batch.coords, batch.features)  # type: ignore[operator]
        return self.model.forward_features(batch.features, batch.maps, compact=True)

    @torch.no_grad()
    def infer(self, scene: TrainScene) -> tuple[UNetOutput, NetworkInput]:
        """Eval-mode forward pass over a whole training scene (no crop, no augmentation).

        Returns the output (voxel rows of ``net_input.grid``) and the prepared input; ``grid.inverse``
        maps the scene's points to voxel rows.
        """
        net_input = prepare_cloud(self.preprocess, scene.xyz, rgb=scene.rgb, intensity=scene.intensity)
        features, maps = to_torch(net_input, self.device)
        was_training = self.model.training
        self.model.eval()
        try:
            output = self.model.forward_features(features, maps, compact=True)
        finally:
            self.model.train(was_training)
        return output, net_input

    def _parameters(self) -> list[nn.Parameter]:
        return [p for p in list(self.model.parameters()) + list(self.modules.parameters()) if p.requires_grad]

    def _step_generator(self, step: int) -> torch.Generator:
        seed = int(np.random.SeedSequence([self.config.seed, step, self.dist.rank]).generate_state(1)[0])
        return torch.Generator().manual_seed(seed)

    def _batches(self, source: StepBatches, first: int, end: int) -> Iterator[Batch]:
        """Batches of steps ``first .. end-1`` (worker processes when ``data.num_workers > 0``)."""
        if self.config.data.num_workers == 0:
            return (source[step] for step in range(first, end))
        loader = torch.utils.data.DataLoader(
            source, batch_size=None, sampler=list(range(first, end)), num_workers=self.config.data.num_workers,
            collate_fn=identity, pin_memory=self.device.type == "cuda", persistent_workers=False)
        return iter(loader)

    def _checkpoint(self, step: int, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
                    total_steps: int) -> dict[str, Any]:
        provenance = {**self.provenance, "method": self.method.name, "dataset": self.dataset.info.name,
                      "profile": self.config.profile, "step": step, "total_steps": total_steps,
                      "seed": self.config.seed}
        training = {
            "step": step,
            "total_steps": total_steps,
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else {},
            "modules": {k: v.detach().cpu() for k, v in self.modules.state_dict().items()},
            "method": self.method.state_dict(),
            "config": self.config.to_dict(),
            "world_size": self.dist.world_size,
        }
        return make_checkpoint(self.model, self.preprocess, self.dataset.classes, sensor=self._sensor(),
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

    # ------------------------------------------------------------------------------------------ the run

    def run(self) -> TrainResult:
        config, dist_info = self.config, self.dist
        self._prepare_run_dir()
        file_log = _attach_file_log(self.run_dir.log) if dist_info.is_main else None
        try:
            return self._run(config, dist_info)
        finally:
            if file_log is not None:
                logging.getLogger("wsseg_training").removeHandler(file_log)
                file_log.close()

    def _run(self, config: TrainConfig, dist_info: DistInfo) -> TrainResult:
        # 1. Data: the scenes the method may see, then the method's own set-up.
        self._load_scenes()
        self.method.setup(self.scenes)
        batch_steps = steps_per_epoch(len(self.scenes), config.data.batch_scenes)
        total = config.train.steps if config.train.steps is not None else config.train.epochs * batch_steps
        stages: list[Stage] = self.method.stages(int(total))
        total_steps = sum(s.steps for s in stages)

        # 2. Model, method modules, optimiser: same seed on every rank, then rank 0's weights everywhere.
        torch.manual_seed(config.seed)
        unet = unet_config_for(config.profile, self.preprocess.features.num_channels, self.dataset.classes.num_classes)
        self.model = SparseUNet(unet).to(self.device)
        self.modules = self.method.build_modules(self.model).to(self.device)
        if dist_info.active:
            use_global_batchnorm(self.model)
            use_global_batchnorm(self.modules)
            broadcast_parameters(self.model)
            broadcast_parameters(self.modules)
        if self.backend == "spconv":
            from wsseg_training.model.spconv_backend import SpconvUNet

            self._spconv = SpconvUNet(self.model)
        params = self._parameters()
        optimizer = build_optimizer(config.optim, params)
        scaler = torch.amp.GradScaler("cuda") if self.amp else None

        # 3. Resume: weights, optimiser, scaler and method state of the last checkpoint.
        start_step = 0
        if self.resume:
            checkpoint = load_checkpoint(self.run_dir.last)
            training = checkpoint.get("training")
            if not training:
                raise CheckpointError(f"{self.run_dir.last}: has no training state to resume from")
            before = checkpoint.get("provenance", {})
            for key, now in (("method", self.method.name), ("labels", self.provenance.get("labels"))):
                if before.get(key) != now:
                    raise ValueError(f"{self.run_dir.last}: the run was trained with {key} {before.get(key)!r}, "
                                     f"not {now!r}; resume with the same --method and --labels")
            self.model.load_state_dict(checkpoint["model"])
            self.modules.load_state_dict(training["modules"])
            optimizer.load_state_dict(training["optimizer"])
            if scaler is not None and training.get("scaler"):
                scaler.load_state_dict(training["scaler"])
            self.method.load_state_dict(training.get("method", {}))
            start_step = int(training["step"])
            log.info("resuming %s at step %d of %d", self.run_dir.root, start_step, total_steps)
        if start_step >= total_steps:
            log.info("%s: already trained for %d steps", self.run_dir.root, total_steps)

        writer = None
        if dist_info.is_main:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.run_dir.tensorboard), purge_step=start_step if self.resume else None)
        source = StepBatches(self.scenes, self.preprocess, config.data, config.seed, total_steps,
                             rank=dist_info.rank, world_size=dist_info.world_size)
        log.info("training %s (%s backend, %s%s) on %d scenes, %d steps of %d scenes, %d process(es)",
                 self.method.name, self.backend, self.device, ", AMP" if self.amp else "", len(self.scenes),
                 total_steps, config.data.batch_scenes, dist_info.world_size)

        # 4. The loop: stage by stage, step by step.
        result = TrainResult(run=self.run_dir, steps=total_steps, start_step=start_step, num_scenes=len(self.scenes))
        started = time.perf_counter()
        bar = tqdm(total=total_steps, initial=start_step, desc=f"train {self.method.name}", unit="step",
                   disable=not (self.progress and dist_info.is_main), dynamic_ncols=True)
        last_saved = start_step if self.resume else None
        try:
            step = start_step
            while step < total_steps:
                stage_index, stage_start = stage_at(stages, step)
                stage = stages[stage_index]
                if step == stage_start:
                    log.info("stage %d/%d %r: %d steps", stage_index + 1, len(stages), stage.name, stage.steps)
                    self.method.begin_stage(stage_index, stage, self)
                for batch in self._batches(source, step, stage_start + stage.steps):
                    tick = time.perf_counter()
                    lr = config.optim.lr * lr_factor(config.optim, stages, step)
                    set_lr(optimizer, lr)
                    terms, grad_norm = self._step(step, stage_index, stage, batch, optimizer, scaler, params)
                    loss = float(sum(terms.values()))
                    if not math.isfinite(loss) or (not math.isfinite(grad_norm) and scaler is None):
                        what = f"loss is {loss}" if not math.isfinite(loss) else f"gradient norm is {grad_norm}"
                        kept = f"{self.run_dir.last} (step {last_saved})" if last_saved else "none (no checkpoint yet)"
                        raise TrainingDivergedError(
                            f"step {step + 1}: {what} (terms {', '.join(f'{k}={v:.4g}' for k, v in terms.items())}); "
                            f"training stopped. Last good checkpoint: {kept}. Lower optim.lr, set "
                            "optim.grad_clip_norm, or check the input data for NaN/inf.")
                    step += 1
                    result.losses.append(loss)
                    seconds = time.perf_counter() - tick
                    points = len(batch.xyz) * dist_info.world_size
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2g}", pts_s=f"{points / seconds / 1e3:.0f}k")
                    if writer is not None and (step % config.train.log_every_steps == 0 or step == total_steps):
                        writer.add_scalar("train/loss", loss, step)
                        for name, value in terms.items():
                            writer.add_scalar(f"train/{name}", value, step)
                        writer.add_scalar("train/lr", lr, step)
                        writer.add_scalar("train/grad_norm", grad_norm, step)
                        writer.add_scalar("train/points_per_s", points / seconds, step)
                        writer.add_scalar("train/s_per_step", seconds, step)
                        log.info("step %d/%d loss %.4f lr %.3g grad %.3g %.2f s/step", step, total_steps, loss, lr,
                                 grad_norm, seconds)
                    every = config.train.checkpoint_every_steps
                    if (every and step % every == 0) or step == total_steps:
                        self._save(step, optimizer, scaler, total_steps)
                        last_saved = step
                    if writer is not None and config.train.eval_every_steps and (
                            step % config.train.eval_every_steps == 0 or step == total_steps):
                        self._evaluate(writer, step)
        finally:
            bar.close()
            if writer is not None:
                writer.close()

        # 5. The final model: the backbone alone, what export and evaluation read.
        result.wall_s = time.perf_counter() - started
        if dist_info.is_main:
            provenance = {**self.provenance, "method": self.method.name, "dataset": self.dataset.info.name,
                          "profile": config.profile, "steps": total_steps, "seed": config.seed,
                          "train_scenes": len(self.scenes), "final_loss": result.losses[-1] if result.losses else None,
                          "train_wall_s": round(result.wall_s, 1)}
            final = make_checkpoint(self.model, self.preprocess, self.dataset.classes, sensor=self._sensor(),
                                    provenance=provenance)
            save_checkpoint(self.run_dir.model, final)
            log.info("wrote %s after %d steps (%.1f s)", self.run_dir.model, total_steps, result.wall_s)
        return result

    def _step(self, step: int, stage_index: int, stage: Stage, batch: Batch, optimizer: torch.optim.Optimizer,
              scaler: torch.amp.GradScaler | None, params: list[nn.Parameter]) -> tuple[dict[str, float], float]:
        """One optimiser step; returns the global-batch loss terms and the gradient norm (before clipping)."""
        self.model.train()
        self.modules.train()
        device_batch = batch.to(self.device)
        autocast = torch.autocast("cuda", dtype=torch.float16) if self.amp else contextlib.nullcontext()
        with autocast:
            output = self.forward(device_batch)
            ctx = StepContext(step=step, stage_index=stage_index, stage=stage, batch=device_batch, output=output,
                              backbone=self.model, modules=self.modules, forward=self.forward,
                              generator=self._step_generator(step))
            terms = self.method.losses(ctx)
            if not terms:
                raise ValueError(f"method {self.method.name!r} returned no loss term at step {step + 1}")
            loss = sum(terms.values())
        # Every rank reports the global-batch value of each term, so all ranks stop together on NaN.
        values = all_reduce_sum(torch.stack([t.detach().float().reshape(()) for t in terms.values()]))
        values = (values / self.dist.world_size).cpu().tolist()
        reported = dict(zip(terms, values, strict=True))
        if not math.isfinite(sum(values)):
            return reported, float("nan")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()  # type: ignore[union-attr]
        else:
            loss.backward()  # type: ignore[union-attr]
        average_gradients(params)
        if scaler is not None:
            scaler.unscale_(optimizer)
        clip = self.config.optim.grad_clip_norm
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
        grad_value = float(grad_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        elif math.isfinite(grad_value):
            optimizer.step()
        return reported, grad_value

    def _save(self, step: int, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
              total_steps: int) -> None:
        if not self.dist.is_main:
            return
        for name, tensor in self.model.state_dict().items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise TrainingDivergedError(f"step {step}: parameter {name!r} is not finite; checkpoint not written")
        write_checkpoint(self.run_dir, self._checkpoint(step, optimizer, scaler, total_steps), step,
                         self.config.train.keep_checkpoints)

    def _evaluate(self, writer: Any, step: int) -> None:
        from wsseg_training.evaluation.evaluate import TorchPredictor, evaluate_split

        if "val" not in self.dataset.info.splits:
            return
        predictor = TorchPredictor(self.model, self.preprocess, self.device, restore_train=True)
        matrix = evaluate_split(predictor, self.dataset, "val", progress=False).confusion
        writer.add_scalar("val/miou", matrix.miou(), step)
        writer.add_scalar("val/overall_accuracy", matrix.overall_accuracy(), step)
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

