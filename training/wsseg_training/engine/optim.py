"""Optimiser and learning-rate schedule.

The learning rate is a pure function of the step (:func:`lr_factor`), set before every
step, so resuming needs only the optimiser's state, never a scheduler object's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from wsseg_training.engine.config import OptimConfig
from wsseg_training.engine.schedule import Stage, stage_at

__all__ = ["Stage", "build_optimizer", "lr_factor", "set_lr", "stage_at"]  # Stage lives in engine.schedule


def lr_factor(config: OptimConfig, stages: Sequence[Stage], step: int) -> float:
    """Multiplier on ``config.lr`` at 0-based ``step``: linear warm-up, then cosine / poly / constant."""
    index, start = stage_at(stages, step)
    if stages[index].restart_schedule:
        local, length = step - start, stages[index].length
    else:
        local, length = step, sum(s.length for s in stages)
    if local < config.warmup_steps:
        return (local + 1) / (config.warmup_steps + 1)
    span = max(1, length - config.warmup_steps)
    progress = min(1.0, (local - config.warmup_steps) / span)
    if config.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if config.schedule == "poly":
        return (1.0 - progress) ** 0.9
    return 1.0


def build_optimizer(config: OptimConfig, parameters: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """The optimiser the config names (weight decay on every parameter)."""
    params = [p for p in parameters if p.requires_grad]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                           nesterov=config.momentum > 0)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
