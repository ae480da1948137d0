"""Optimiser and learning-rate schedule.

The learning rate is a pure function of the step (:func:`lr_factor`), set before every
step, so resuming needs only the optimiser's state, never a scheduler object's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from wsseg_training.engine.config import OptimConfig


@dataclass(frozen=True)
class Stage:
    """One phase of a method's outer loop (a self-training round, a training stage).

    name: shown in logs.  steps: optimiser steps of the stage.
    restart_schedule: run warm-up and decay again within this stage (otherwise one schedule spans all stages).
    """

    name: str
    steps: int
    restart_schedule: bool = False

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"stage {self.name!r}: steps must be >= 1, got {self.steps}")


def stage_at(stages: Sequence[Stage], step: int) -> tuple[int, int]:
    """(stage index, first step of that stage) for 0-based ``step``."""
    start = 0
    for index, stage in enumerate(stages):
        if step < start + stage.steps:
            return index, start
        start += stage.steps
    return len(stages) - 1, start - stages[-1].steps


def lr_factor(config: OptimConfig, stages: Sequence[Stage], step: int) -> float:
    """Multiplier on ``config.lr`` at 0-based ``step``: linear warm-up, then cosine / poly / constant."""
    index, start = stage_at(stages, step)
    if stages[index].restart_schedule:
        local, length = step - start, stages[index].steps
    else:
        local, length = step, sum(s.steps for s in stages)
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
