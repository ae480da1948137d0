"""Training configuration: frozen dataclasses loaded from YAML, validated, units in the names.

A run's YAML (see ``configs/*.yaml``)::

    seed: 0
    profile: auto                # model profile (wsseg_training.model.profiles); auto = chosen from the data
    device: auto                 # auto | cpu | cuda
    backend: auto                # auto | maps | spconv  (auto: spconv on CUDA when installed, else maps)
    data:    {voxel_size_m, features, crop_max_points, batch_scenes, num_workers, augment: {...}}
    optim:   {optimizer, lr, weight_decay, momentum, schedule, warmup_steps, grad_clip_norm}
    train:   {steps | epochs, checkpoint_every_steps, keep_checkpoints, log_every_steps, amp, eval_every_steps}
    method:  {...}               # options of the chosen method, checked by the method

Every unknown field is an error naming the file and the dotted field.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wsseg.core.features import FEATURE_CHANNELS
from wsseg.core.refine import SupportRefine
from wsseg_training.model.profiles import PROFILES

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "poly", "constant")
DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("auto", "maps", "spconv")
#: ``profile: auto``: profile and grid chosen from the data (wsseg_training.data.sensor_defaults)
AUTO_PROFILE = "auto"


class ConfigError(ValueError):
    """A training configuration is malformed; the message names the file and the field."""


class FieldError(ConfigError):
    """A dataclass's own check failed on one of its fields (raised in ``__post_init__``); the loader
    (:func:`build_dataclass`) turns it into "FILE: field 'dotted.name' is VALUE, expected EXPECTED"."""

    def __init__(self, field: str, value: object, expected: str) -> None:
        super().__init__(f"field '{field}' is {value!r}, expected {expected}")
        self.field, self.value, self.expected = field, value, expected


def _fail(owner: str, name: str, value: object, expected: str) -> ConfigError:
    """owner: the section ("data", "data.augment", ...; "config" = top level)."""
    dotted = name if owner == "config" else f"{owner}.{name}"
    return ConfigError(f"field '{dotted}' is {value!r}, expected {expected}")


@dataclass(frozen=True, kw_only=True)
class AugmentConfig:
    """Per-scene training augmentations, each switchable (0 / false disables).

    rotate_z: random rotation about the vertical axis (uniform over 360 degrees).
    flip_x / flip_y: mirror the x / y axis with probability 0.5.
    scale_range: uniform isotropic scale factor range (1.0, 1.0 disables).
    jitter_std_m: Gaussian noise per point, metres.
    colour_jitter_std: Gaussian noise on rgb, in 0..255 units (per point and channel).
    colour_shift_std: one Gaussian shift of the whole scene's rgb per channel, 0..255 units.
    """

    rotate_z: bool = True
    flip_x: bool = True
    flip_y: bool = True
    scale_range: tuple[float, float] = (0.9, 1.1)
    jitter_std_m: float = 0.005
    colour_jitter_std: float = 4.0
    colour_shift_std: float = 8.0

    def __post_init__(self) -> None:
        low, high = self.scale_range
        if not 0.0 < low <= high:
            raise _fail("data.augment", "scale_range", self.scale_range, "0 < low <= high")
        for name in ("jitter_std_m", "colour_jitter_std", "colour_shift_std"):
            if getattr(self, name) < 0:
                raise _fail("data.augment", name, getattr(self, name), ">= 0")


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """What the network sees.

    voxel_size_m: voxel edge, metres (None = chosen from the data with ``profile: auto``, else the profile's).
    features: input features (``wsseg.core.features.FEATURE_CHANNELS`` names; None = chosen from the data,
        see :mod:`wsseg_training.data.sensor_defaults`).
    intensity_scale / height_scale_m / support_scale_m: feature normalisation (see ``FeatureConfig``).
    refine: the support-plane refinement of point labels at devoxelization (``{support_class, below_m,
        above_m}``, :class:`wsseg.core.refine.SupportRefine`; null = off), part of the exported model.
    crop_max_points: scenes with more points are cropped to the this many points nearest (in x, y) to a random
        point; 0 disables.  batch_scenes: scenes per optimiser step over all processes (the global batch).
    num_workers: DataLoader worker processes preparing batches (0 = in the training process).
    """

    voxel_size_m: float | None = None
    features: tuple[str, ...] | None = None
    intensity_scale: float = 1.0
    height_scale_m: float = 3.0
    support_scale_m: float = 0.25
    refine: SupportRefine | None = None
    crop_max_points: int = 250_000
    batch_scenes: int = 2
    num_workers: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if self.voxel_size_m is not None and not self.voxel_size_m > 0:
            raise _fail("data", "voxel_size_m", self.voxel_size_m, "> 0 or null")
        unknown = [f for f in self.features or () if f not in FEATURE_CHANNELS]
        if unknown or self.features == ():
            raise _fail("data", "features", list(self.features or ()),
                        f"null (from the data) or a non-empty subset of {list(FEATURE_CHANNELS)}")
        if self.crop_max_points < 0 or 0 < self.crop_max_points < 100:
            raise _fail("data", "crop_max_points", self.crop_max_points, "0 (off) or >= 100")
        if self.batch_scenes < 1:
            raise _fail("data", "batch_scenes", self.batch_scenes, ">= 1")
        if self.num_workers < 0:
            raise _fail("data", "num_workers", self.num_workers, ">= 0")
        if not self.support_scale_m > 0:
            raise _fail("data", "support_scale_m", self.support_scale_m, "> 0")


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    """Optimiser and learning-rate schedule.

    lr: peak learning rate.  schedule: cosine (to 0) | poly (power 0.9, to 0) | constant, after a linear
    warm-up of ``warmup_steps``.  grad_clip_norm: clip the global gradient L2 norm (0 disables).
    """

    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup_steps: int = 0
    grad_clip_norm: float = 10.0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise _fail("optim", "optimizer", self.optimizer, f"one of {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            raise _fail("optim", "schedule", self.schedule, f"one of {SCHEDULES}")
        if not self.lr > 0:
            raise _fail("optim", "lr", self.lr, "> 0")
        if self.weight_decay < 0 or self.warmup_steps < 0 or self.grad_clip_norm < 0:
            raise ConfigError("fields optim.weight_decay, optim.warmup_steps and optim.grad_clip_norm must be >= 0")


@dataclass(frozen=True, kw_only=True)
class LoopConfig:
    """Length of training and what happens along the way.

    steps: optimiser steps (or give ``epochs``: passes over the training scenes, rounded up to whole batches).
    checkpoint_every_steps: write ``checkpoints/step_NNNNNNNN.pt`` + ``last.pt`` (0 = only at the end).
    keep_checkpoints: step checkpoints kept (older ones are deleted; ``last.pt`` always stays).
    amp: mixed precision (float16 autocast + gradient scaling) when training on CUDA; ignored on CPU.
    eval_every_steps: evaluate on the ``val`` split and log mIoU (0 = never during training).
    """

    steps: int | None = None
    epochs: int | None = None
    checkpoint_every_steps: int = 500
    keep_checkpoints: int = 3
    log_every_steps: int = 10
    amp: bool = True
    eval_every_steps: int = 0

    def __post_init__(self) -> None:
        if (self.steps is None) == (self.epochs is None):
            raise ConfigError(f"give exactly one of 'train.steps' and 'train.epochs' (got steps={self.steps}, "
                              f"epochs={self.epochs})")
        if self.steps is not None and self.steps < 1:
            raise _fail("train", "steps", self.steps, ">= 1")
        if self.epochs is not None and self.epochs < 1:
            raise _fail("train", "epochs", self.epochs, ">= 1")
        for name in ("checkpoint_every_steps", "keep_checkpoints", "eval_every_steps"):
            if getattr(self, name) < 0:
                raise _fail("train", name, getattr(self, name), ">= 0")
        if self.log_every_steps < 1:
            raise _fail("train", "log_every_steps", self.log_every_steps, ">= 1")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """A whole training run (see the module docstring)."""

    seed: int = 0
    profile: str = AUTO_PROFILE
    device: str = "auto"
    backend: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=lambda: LoopConfig(steps=1000))
    method: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.profile != AUTO_PROFILE and self.profile not in PROFILES:
            raise _fail("config", "profile", self.profile, f"'{AUTO_PROFILE}' or one of {sorted(PROFILES)}")
        if self.device not in DEVICES:
            raise _fail("config", "device", self.device, f"one of {DEVICES}")
        if self.backend not in BACKENDS:
            raise _fail("config", "backend", self.backend, f"one of {BACKENDS}")

    def to_dict(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [plain(v) for v in value]
            return value

        return plain(dataclasses.asdict(self))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with top-level fields changed (``data=``, ``train=`` take whole sub-configs)."""
        return dataclasses.replace(self, **changes)


# ------------------------------------------------------------------------------------------------ loading


def _convert(value: Any, hint: Any, where: str) -> Any:
    """``value`` from YAML as the type ``hint``; ConfigError naming ``where`` ("file: field 'a.b'") otherwise."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)]
        return _convert(value, inner[0], where)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} is {value!r}, expected a mapping")
        return _build(hint, value, where)  # type: ignore[arg-type]
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} is {value!r}, expected a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where} is {value!r}, expected {len(args)} values")
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} is {value!r}, expected a mapping")
        return dict(value)
    checks: dict[Any, tuple[tuple[type, ...], str]] = {
        bool: ((bool,), "true or false"), int: ((int,), "an integer"), float: ((int, float), "a number"),
        str: ((str,), "a string"),
    }
    if hint in checks:
        kinds, expected = checks[hint]
        if (isinstance(value, bool) and hint is not bool) or not isinstance(value, kinds):
            raise ConfigError(f"{where} is {value!r}, expected {expected}")
        return float(value) if hint is float else value
    return value


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    """Construct dataclass ``cls`` from ``data``; ``where`` is "file: field 'prefix'" or just "file"."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; known: {names}")

    def child(name: str) -> str:
        if where.endswith("'"):
            return f"{where[:-1]}.{name}'"
        return f"{where}: field '{name}'"

    kwargs = {k: _convert(v, hints[k], child(k)) for k, v in data.items()}
    source = where.split(": ")[0]
    try:
        return cls(**kwargs)
    except FieldError as exc:  # names its own field: give it the file and the dotted prefix
        raise ConfigError(f"{child(exc.field)} is {exc.value!r}, expected {exc.expected}") from None
    except ConfigError as exc:
        if str(exc).startswith(f"{source}: "):
            raise
        raise ConfigError(f"{source}: {exc}") from None
    except ValueError as exc:  # a core dataclass's own check (e.g. wsseg.core.refine.SupportRefine)
        raise ConfigError(f"{where}: {exc}") from None


def build_dataclass(cls: type, data: dict[str, Any], where: str) -> Any:
    """Build frozen dataclass ``cls`` from YAML data as the loader does (types checked, nested dataclasses built,
    unknown fields refused); ``where`` = "FILE" or "FILE: field 'prefix'" starts every error."""
    return _build(cls, data, where)


def config_from_dict(data: dict[str, Any], where: str = "config") -> TrainConfig:
    """Build and validate a :class:`TrainConfig`; ``where`` (e.g. the file name) starts every error."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level, got {type(data).__name__}")
    data = dict(data)
    if "train" not in data:
        data["train"] = {"steps": 1000}
    return _build(TrainConfig, data, where)


def load_config(path: str | Path) -> TrainConfig:
    """Read a training YAML (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: training config file does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from None
    return config_from_dict(data, where=str(path))


def save_config(config: TrainConfig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    tmp.replace(path)
    return path
