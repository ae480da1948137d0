"""What training changes, in one place: backbone, method modules, optimiser, gradient scaler.

:func:`build_state` makes it from the seed (every rank the same, then rank 0's weights everywhere);
:func:`restart_for_stage` re-draws parts of it when a stage asks (:mod:`wsseg_training.engine.schedule`);
:func:`training_state` / :func:`load_training_state` are its checkpoint form for ``--resume``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from wsseg_training.engine.config import TrainConfig
from wsseg_training.engine.distributed import DistInfo, broadcast_parameters, use_global_batchnorm
from wsseg_training.engine.optim import build_optimizer
from wsseg_training.engine.schedule import Stage
from wsseg_training.methods.base import Method
from wsseg_training.model.unet import SparseUNet, UNetConfig


@dataclass
class TrainState:
    """model: the backbone.  modules: the method's training-only modules.  optimizer over ``params``
    (backbone then modules, trainable only).  scaler: the float16 gradient scaler (AMP on CUDA) or None."""

    model: SparseUNet
    modules: nn.ModuleDict
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    params: list[nn.Parameter]


def build_state(config: TrainConfig, unet: UNetConfig, method: Method, device: torch.device, dist: DistInfo,
                amp: bool) -> TrainState:
    """Backbone and modules from ``torch.manual_seed(config.seed)`` (backbone first), the optimiser."""
    torch.manual_seed(config.seed)
    model = SparseUNet(unet).to(device)
    modules = method.build_modules(model).to(device)
    if dist.active:
        use_global_batchnorm(model)
        use_global_batchnorm(modules)
        broadcast_parameters(model)
        broadcast_parameters(modules)
    params = [p for p in list(model.parameters()) + list(modules.parameters()) if p.requires_grad]
    return TrainState(model=model, modules=modules, optimizer=build_optimizer(config.optim, params),
                      scaler=torch.amp.GradScaler("cuda") if amp else None, params=params)


def stage_seed(seed: int, stage_index: int, part: int) -> int:
    """The torch seed of a stage's re-initialisation (``part`` 0 = backbone, 1 = modules)."""
    return int(np.random.SeedSequence([seed, stage_index, part]).generate_state(1)[0])


def restart_for_stage(state: TrainState, stage: Stage, index: int, config: TrainConfig, method: Method) -> None:
    """Re-draw what ``stage`` asks for, from seeds of (seed, stage index) only (so a resume re-draws the same).

    The fresh weights are copied into the existing modules (same tensors, so the optimiser, the spconv
    wrapper and global BatchNorm keep pointing at them); the global torch random state is left untouched.
    """
    if stage.reinit_backbone:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(stage_seed(config.seed, index, 0))
            fresh = SparseUNet(state.model.config)
        state.model.load_state_dict(fresh.state_dict())
    if stage.reinit_modules:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(stage_seed(config.seed, index, 1))
            fresh_modules = method.build_modules(state.model)
        state.modules.load_state_dict(fresh_modules.state_dict())
    if stage.reinit_optimizer:
        state.optimizer = build_optimizer(config.optim, state.params)
        if state.scaler is not None:
            state.scaler = torch.amp.GradScaler("cuda")


def training_state(state: TrainState, step: int, total_steps: int, method: Method, config: TrainConfig,
                   world_size: int) -> dict[str, Any]:
    """The ``training`` entry of a checkpoint: everything ``--resume`` restores besides the backbone."""
    return {
        "step": step,
        "total_steps": total_steps,
        "optimizer": state.optimizer.state_dict(),
        "scaler": state.scaler.state_dict() if state.scaler is not None else {},
        "modules": {k: v.detach().cpu() for k, v in state.modules.state_dict().items()},
        "method": method.state_dict(),
        "config": config.to_dict(),
        "world_size": world_size,
    }


def load_training_state(state: TrainState, checkpoint: dict[str, Any], method: Method) -> int:
    """Restore a checkpoint's backbone, modules, optimiser, scaler and method state; returns its step."""
    training = checkpoint["training"]
    state.model.load_state_dict(checkpoint["model"])
    state.modules.load_state_dict(training["modules"])
    state.optimizer.load_state_dict(training["optimizer"])
    if state.scaler is not None and training.get("scaler"):
        state.scaler.load_state_dict(training["scaler"])
    method.load_state_dict(training.get("method", {}))
    return int(training["step"])
