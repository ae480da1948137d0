"""Training checkpoints: written atomically, loaded with ``weights_only=True``.

A checkpoint is a plain dict (only tensors, numbers, strings, lists, dicts, so
``torch.load(weights_only=True)`` accepts it)::

    format: "wsseg-checkpoint", format_version: 1
    model: backbone state_dict
    unet: UNetConfig as a dict
    preprocess: PreprocessConfig as a dict
    classes: ClassTable as a dict
    sensor: "rgbd" | "lidar" | "any"
    provenance: {method, dataset, step, metrics, ...}
    training: optional engine state (optimizer, scheduler, step, rng) for --resume
    heads: optional {output name: {"spec", "state"}} extra per-voxel heads to export
           (``wsseg_training.methods.common.heads``)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from wsseg.core.classes import ClassTable
from wsseg.core.preprocess import PreprocessConfig
from wsseg_training.model.unet import SparseUNet, UNetConfig

CHECKPOINT_FORMAT = "wsseg-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or not a wsseg checkpoint."""


def make_checkpoint(
    model: SparseUNet,
    preprocess: PreprocessConfig,
    classes: ClassTable,
    sensor: str = "any",
    provenance: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    heads: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Collect everything needed to rebuild, export or resume ``model``."""
    data: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "unet": model.config.to_dict(),
        "preprocess": preprocess.to_dict(),
        "classes": classes.to_dict(),
        "sensor": sensor,
        "provenance": dict(provenance or {}),
    }
    if training is not None:
        data["training"] = training
    if heads:
        data["heads"] = heads
    return data


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        torch.save(checkpoint, handle)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; errors name the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt/truncated files
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a wsseg checkpoint (field 'format' must be {CHECKPOINT_FORMAT!r})")
    if data.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(f"{path}: unsupported checkpoint format_version {data.get('format_version')!r}")
    for key in ("model", "unet", "preprocess", "classes"):
        if key not in data:
            raise CheckpointError(f"{path}: missing field {key!r}")
    return data


def model_from_checkpoint(checkpoint: dict[str, Any]) -> SparseUNet:
    """Rebuild the backbone of a loaded checkpoint (CPU, eval mode)."""
    model = SparseUNet(UNetConfig.from_dict(checkpoint["unet"]))
    model.load_state_dict(checkpoint["model"])
    return model.eval()


def preprocess_from_checkpoint(checkpoint: dict[str, Any]) -> PreprocessConfig:
    return PreprocessConfig.from_dict(checkpoint["preprocess"])


def classes_from_checkpoint(checkpoint: dict[str, Any]) -> ClassTable:
    return ClassTable.from_dict(checkpoint["classes"], where="checkpoint field 'classes'")
