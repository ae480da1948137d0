"""The shared runner of the method benchmarks (``bench/methods.py`` and the ablation tables it runs, e.g.
``bench/otoc.py``): benchmark datasets, the training recipe, super-voxels, one training run, its evaluation, and
the machine record.  Not a test: never gates CI.

Datasets (:data:`DATASETS`), each prepared into ``WORK/<name>/`` as a wsseg dataset directory:

* ``indoor``: synthetic RGB-D rooms (``IndoorConfig()``, S3DIS classes, the generator's train/val split);
* ``outdoor``: synthetic LiDAR street scans (``OutdoorConfig()``);
* ``mosd``: the 45 real table-top RGB-D frames of ``../shared/data/mosd/learn`` (35 train / 10 val, split by
  frame as ``MOSDReader`` does);
* ``semantickitti``: the 4 real SemanticKITTI scans of ``../shared/data/semantickitti`` (sequence 00: 3 train
  scans, sequence 08: 1 val scan).

The real ones are skipped (with a reason) when their folder is absent.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from wsseg_training.data.dataset import Dataset, DatasetWriter
from wsseg_training.data.supervoxels import compute_supervoxels
from wsseg_training.engine.config import config_from_dict
from wsseg_training.engine.loop import Trainer
from wsseg_training.evaluation.evaluate import TorchPredictor, evaluate_split
from wsseg_training.methods import FullMethod
from wsseg_training.model.profiles import PROFILES, ModelProfile, get_profile

from wsseg.core.scene import save_scene

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
MOSD = SHARED / "mosd" / "learn"
SEMANTICKITTI = SHARED / "semantickitti"


def recipe(profile: str, steps: int, crop_points: int, seed: int, lr: float, method: dict | None = None,
           checkpoint_every: int = 0, keep: int = 0, workers: int = 0, amp: bool = False,
           features: list[str] | None = None, device: str = "auto") -> dict:
    """The training config shared by every run (plain data, as a YAML would hold it).

    features: the network inputs; None = the default ``[offset, rgb]`` (RGB-D data); LiDAR data passes its own.
    """
    return {
        "seed": seed, "profile": profile, "device": device,
        "data": {"features": list(features or ["offset", "rgb"]), "crop_max_points": crop_points, "batch_scenes": 2,
                 "num_workers": workers},
        "optim": {"optimizer": "adamw", "lr": lr, "weight_decay": 1e-4, "schedule": "cosine",
                  "warmup_steps": max(1, steps // 20), "grad_clip_norm": 10.0},
        "train": {"steps": steps, "checkpoint_every_steps": checkpoint_every, "keep_checkpoints": keep,
                  "log_every_steps": 10, "amp": amp},
        "method": dict(method or {}),
    }


def add_supervoxels(dataset: Dataset) -> dict[str, float]:
    """Compute and store super-voxels for every scene (as ``wsseg data supervoxels``); returns timing/size."""
    start, count = time.perf_counter(), []
    for name in tqdm(dataset.scene_names(), desc="supervoxels", unit="scene"):
        scene = dataset.load(name)
        if scene.supervoxel is None:
            labels = compute_supervoxels(scene.xyz, scene.rgb)
            save_scene(dataset.scene_path(name), dataclasses.replace(scene, supervoxel=labels),
                       num_classes=dataset.classes.num_classes)
            scene = dataset.load(name)
        count.append(int(scene.supervoxel.max()) + 1)  # type: ignore[union-attr]
    return {"seconds": round(time.perf_counter() - start, 1), "mean_per_scene": round(float(np.mean(count)), 1)}


def miou_of(predictor: Any, dataset: Dataset) -> float:
    """Val mIoU of ``predictor`` (a fraction, 4 decimals)."""
    return round(evaluate_split(predictor, dataset, "val", progress=False).confusion.miou(), 4)


def run_full(dataset: Dataset, work: Path, config: dict, clicks: Any = None) -> dict:
    """``full`` on ``dataset`` into ``work/full``: {"miou", "train_s"}."""
    start = time.perf_counter()
    Trainer(config_from_dict(config), FullMethod(dataset.classes, weak=clicks), dataset, work / "full",
            progress=False, provenance={"labels": None}).run()
    train_s = time.perf_counter() - start
    return {"miou": miou_of(TorchPredictor.from_checkpoint(work / "full" / "model.pt"), dataset),
            "train_s": round(train_s, 1)}


def register_layout(text: str) -> str:
    """``NAME=BASE:CHANNELS/BLOCKS[/DECODER_BLOCKS]`` (e.g. ``lite_dec=lidar_rt:16,24,32,48/1,1,1,1/0,1,1,1``):
    a bench-only profile with ``BASE``'s voxel and the given layout, registered for this process (the product's
    profile table is not changed); returns NAME."""
    name, _, spec = text.partition("=")
    base, _, layout = spec.partition(":")
    try:  # argparse shows an ArgumentTypeError's message, not a ValueError's
        parts = [tuple(int(v) for v in part.split(",")) for part in layout.split("/")]
        if not name or len(parts) not in (2, 3):
            raise ValueError("expected NAME=BASE:CHANNELS/BLOCKS[/DECODER_BLOCKS] of comma-separated integers")
        PROFILES[name] = ModelProfile(name=name, channels=parts[0], blocks=parts[1],
                                      voxel_size_m=get_profile(base).voxel_size_m,
                                      description=f"bench layout {layout} at {base}'s voxel",
                                      decoder_blocks=parts[2] if len(parts) == 3 else None)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--layout {text!r}: {exc}") from None
    return text


# ------------------------------------------------------------------------------------------------ datasets


def synthetic_dataset(out: Path, kind: str, scenes: int, seed: int, data: Path | None = None,
                      room_types: str | dict[str, float] = "office_only") -> Dataset:
    """``data`` when given (from ``wsseg data synth``), else ``scenes`` new ``indoor`` / ``outdoor`` scenes
    (indoor: of the ``room_types`` mix, ``IndoorConfig.room_types``)."""
    if data is not None:
        return Dataset(data)
    from wsseg_training.data.synth.config import IndoorConfig, OutdoorConfig  # Open3D: import on use
    from wsseg_training.data.synth.generate import write_synthetic_dataset

    if not (out / "dataset.yaml").is_file():
        config = IndoorConfig(room_types=room_types) if kind == "indoor" else OutdoorConfig()
        write_synthetic_dataset(out, config, scenes=scenes, seed=seed)
    return Dataset(out)


def reader_dataset(out: Path, reader: Any) -> Dataset:
    """Convert a reader's scenes (its own train/val split) into a dataset directory (once)."""
    if not (out / "dataset.yaml").is_file():
        with DatasetWriter(out, reader.name, reader.classes, sensor=reader.sensor) as writer:
            for item in reader:
                if item.split in ("train", "val"):
                    writer.add(item.name, item.scene, split=item.split, **item.metadata)
    return Dataset(out)


def mosd_dataset(out: Path, root: Path = MOSD) -> Dataset:
    from wsseg_training.data.readers.mosd import MOSDReader

    return reader_dataset(out, MOSDReader(root))


def semantickitti_dataset(out: Path, root: Path = SEMANTICKITTI) -> Dataset:
    from wsseg_training.data.readers.semantickitti import SemanticKITTIReader

    return reader_dataset(out, SemanticKITTIReader(root))


@dataclasses.dataclass(frozen=True)
class BenchDataset:
    """A benchmark dataset: how to make it (``make(out, scenes, seed)``), its input features, and for the real
    ones the folder that must exist."""

    name: str
    describe: str
    make: Callable[[Path, int, int], Dataset]
    features: tuple[str, ...]
    source: Path | None = None

    def missing(self) -> str | None:
        """Why it cannot be built here (None = it can)."""
        if self.source is not None and not self.source.is_dir():
            return f"{self.source} is absent"
        return None


DATASETS: dict[str, BenchDataset] = {
    "indoor": BenchDataset("indoor", "synthetic RGB-D rooms", lambda out, n, seed: synthetic_dataset(
        out, "indoor", n, seed), ("offset", "rgb")),
    "outdoor": BenchDataset("outdoor", "synthetic LiDAR street scans", lambda out, n, seed: synthetic_dataset(
        out, "outdoor", n, seed), ("offset", "intensity")),
    "mosd": BenchDataset("mosd", "real mOSD RGB-D frames (35 train / 10 val)",
                         lambda out, n, seed: mosd_dataset(out), ("offset", "rgb"), MOSD),
    "semantickitti": BenchDataset("semantickitti", "real SemanticKITTI scans (seq 00 train / 08 val)",
                                  lambda out, n, seed: semantickitti_dataset(out), ("offset", "intensity"),
                                  SEMANTICKITTI),
}


# ------------------------------------------------------------------------------------------------ records


def machine(load_start: tuple[float, float, float]) -> dict[str, Any]:
    """Where and how it ran: device, cores, torch + threads, Python, load average at the start and now."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else (platform.processor() or
                                                                                platform.machine())
    return {"device": device, "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": sys.version.split()[0],
            "loadavg_1_5_15_start": [round(v, 2) for v in load_start],
            "loadavg_1_5_15_end": [round(v, 2) for v in os.getloadavg()]}


def emit(text: str, out: Path | None) -> int:
    """Print ``text`` (a markdown report) and also write it to ``out`` when given; the script's exit status, 0."""
    print(text, end="")
    if out:
        out.write_text(text)
    return 0


def write_results(folder: Path, name: str, result: dict, markdown: str) -> None:
    """``folder/name.json`` and ``folder/name.md``, each written atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json.dumps(result, indent=1) + "\n"), (".md", markdown)):
        tmp = folder / f".{name}{suffix}.tmp"
        tmp.write_text(text)
        tmp.replace(folder / f"{name}{suffix}")
