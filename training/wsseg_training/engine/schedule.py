"""A method's outer loop as data: stages, their lengths in steps or epochs, and which epoch a step is.

``Method.stages(plan)`` returns :class:`Stage` objects; the engine resolves them once into a
:class:`Schedule` (epochs -> steps with the stage's own steps per epoch) before training starts::

    def stages(self, plan: TrainPlan) -> list[Stage]:        # Densify-like
        return [Stage("warm-up", epochs=250), Stage("train", epochs=150)]

    def stages(self, plan: TrainPlan) -> list[Stage]:        # MPRM-like: classify, then retrain from scratch
        return [Stage("classify", plan.total_steps // 2, sampling=Sampling(region="subcloud")),
                Stage("segment", plan.total_steps // 2, True, reinit_backbone=True, reinit_optimizer=True)]

Epochs: one epoch of a stage visits every sampling unit once (scenes, or annotated sub-clouds for the
``subcloud`` region) with ``groups_per_step`` units per step, so ``steps_per_epoch = ceil(units /
groups_per_step)``; ``Stage(epochs=e)`` lasts ``ceil(e * steps_per_epoch)`` steps.  ``Schedule.epoch_at(step)``
is the number of epochs completed before a step (fractional), counted with each stage's own steps per
epoch; methods read it as ``ctx.epoch`` (``losses``) or from ``ctx.schedule`` (``begin_stage``).

Extra samples: ``Stage(..., extra=Sampling(...), extra_samples=n)`` draws, every step, a second batch of ``n``
samples with its own sampling (WS3D: labelled crops beside the two-view groups of any scene); the method finds
it as ``ctx.batch.extra`` (not forwarded by the engine: ``ctx.forward(ctx.batch.extra)``).  It is drawn from a
seed derived from the run's (:func:`~wsseg_training.engine.batches.extra_seed`), so it too is a pure function
of (seed, step, slot); epochs count the main sampling's units.

Restarts: ``reinit_backbone`` / ``reinit_modules`` re-draw the weights at the start of the stage (after
``begin_stage``, which may still use the trained model, e.g. for pseudo labels), from a seed of
``(seed, stage index)`` only, so a resumed run re-draws exactly the same ones; ``reinit_optimizer`` starts the
optimiser afresh (no moments).  Nothing re-draws on a resume inside the stage (the checkpoint holds it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass, replace

from wsseg_training.engine.sampling import CROP, Sampling


@dataclass(frozen=True)
class Stage:
    """One phase of a method's outer loop (a self-training round, a training stage).

    name: shown in logs.  steps: optimiser steps of the stage, or give ``epochs`` instead (converted once;
    a resolved stage holds both).
    restart_schedule: run warm-up and decay again within this stage (otherwise one schedule spans all stages).
    sampling: how the stage's samples are drawn (:mod:`wsseg_training.engine.sampling`).
    reinit_backbone / reinit_modules / reinit_optimizer: start the stage from freshly initialised backbone
    weights / method modules / optimiser state (see the module docstring).
    extra / extra_samples: a second batch per step, ``extra_samples`` samples of ``extra`` (module docstring).
    """

    name: str
    steps: int | None = None
    restart_schedule: bool = False
    _: KW_ONLY
    epochs: float | None = None
    sampling: Sampling = CROP
    reinit_backbone: bool = False
    reinit_modules: bool = False
    reinit_optimizer: bool = False
    extra: Sampling | None = None
    extra_samples: int = 0

    def __post_init__(self) -> None:
        if self.extra is not None and self.extra_samples < self.extra.group_size:
            raise ValueError(f"stage {self.name!r}: extra_samples must be >= {self.extra.group_size} (one group of the "
                             f"extra sampling), got {self.extra_samples}")
        if self.steps is None and self.epochs is None:
            raise ValueError(f"stage {self.name!r}: give its length as steps or as epochs")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"stage {self.name!r}: steps must be >= 1, got {self.steps}")
        if self.epochs is not None and not self.epochs > 0:
            raise ValueError(f"stage {self.name!r}: epochs must be > 0, got {self.epochs}")

    @property
    def length(self) -> int:
        """Steps of a resolved stage (``Schedule`` stages always have them)."""
        if self.steps is None:
            raise ValueError(f"stage {self.name!r} is given in epochs and not resolved yet (use Schedule)")
        return self.steps


@dataclass(frozen=True)
class TrainPlan:
    """What ``Method.stages`` knows about the run.

    total_steps: the config's length (``train.steps``, or ``train.epochs`` converted with the default
    sampling).  epochs: that length in epochs of the default sampling.  steps_per_epoch: a function of a
    :class:`Sampling` (see the module docstring).
    """

    total_steps: int
    epochs: float
    steps_per_epoch: Callable[[Sampling], int]

    def steps(self, epochs: float, sampling: Sampling = CROP) -> int:
        """``epochs`` of ``sampling`` as whole steps (rounded up, at least 1)."""
        return epochs_to_steps(epochs, self.steps_per_epoch(sampling))


def epochs_to_steps(epochs: float, steps_per_epoch: int) -> int:
    # the tolerance keeps 10 epochs of 7 steps at 70 steps despite float rounding
    return max(1, math.ceil(epochs * steps_per_epoch - 1e-9))


@dataclass(frozen=True)
class Schedule:
    """The resolved stages (every one has ``steps``) and each stage's steps per epoch."""

    stages: tuple[Stage, ...]
    steps_per_epoch: tuple[int, ...]

    @classmethod
    def resolve(cls, stages: Sequence[Stage], steps_per_epoch: Callable[[Sampling], int]) -> Schedule:
        """Convert stages given in epochs to steps, once; raises ``ValueError`` when there is no stage."""
        if not stages:
            raise ValueError("the method's stages() returned no stage")
        per_epoch = tuple(steps_per_epoch(s.sampling) for s in stages)
        resolved = tuple(s if s.steps is not None else replace(s, steps=epochs_to_steps(s.epochs or 0.0, spe))
                         for s, spe in zip(stages, per_epoch, strict=True))
        return cls(resolved, per_epoch)

    @property
    def total_steps(self) -> int:
        return sum(s.length for s in self.stages)

    def stage_at(self, step: int) -> tuple[int, int]:
        """(stage index, first step of that stage) for 0-based ``step``."""
        return stage_at(self.stages, step)

    def start_of(self, index: int) -> int:
        """First step of stage ``index``."""
        return sum(s.length for s in self.stages[:index])

    def epoch_at(self, step: int) -> float:
        """Epochs completed before 0-based ``step`` (each stage counted with its own steps per epoch)."""
        done, start = 0.0, 0
        for stage, per_epoch in zip(self.stages, self.steps_per_epoch, strict=True):
            if step < start + stage.length:
                return done + (step - start) / per_epoch
            done += stage.length / per_epoch
            start += stage.length
        return done


def stage_at(stages: Sequence[Stage], step: int) -> tuple[int, int]:
    """(stage index, first step of that stage) for 0-based ``step`` (the last stage past the end)."""
    start = 0
    for index, stage in enumerate(stages):
        if step < start + stage.length:
            return index, start
        start += stage.length
    return len(stages) - 1, start - stages[-1].length
