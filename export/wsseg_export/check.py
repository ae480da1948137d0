"""Parity check of a bundle: ONNX Runtime (the robot's path) vs eager PyTorch on real clouds."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from wsseg_training.checkpoint import load_checkpoint, model_from_checkpoint
from wsseg_training.model.inputs import to_torch

from wsseg.core.bundle import ModelBundle, load_bundle
from wsseg.core.preprocess import prepare_cloud
from wsseg.core.scene import Scene, load_scene
from wsseg.runtime.engines import OnnxRuntimeEngine


@dataclass
class ParityReport:
    """label_agreement: fraction of voxels where ONNX Runtime and PyTorch argmax agree.
    max_logit_diff: largest |logit difference| over all voxels and classes.
    per_cloud: (name, voxels, agreement, max diff) for every cloud.
    """

    label_agreement: float = 1.0
    max_logit_diff: float = 0.0
    voxels: int = 0
    per_cloud: list[tuple[str, int, float, float]] = field(default_factory=list)


def iter_scenes(path: str | Path, max_scenes: int = 4, split: str | None = "val") -> Iterator[tuple[str, Scene]]:
    """Scenes to check: a scene ``.npz`` file, or up to ``max_scenes`` of a dataset directory's split."""
    from wsseg_training.data.dataset import DATASET_YAML, Dataset

    path = Path(path)
    if (path / DATASET_YAML).is_file():
        dataset = Dataset(path)
        names = dataset.scene_names(split if split in dataset.info.splits else None)
        for name in names[:max_scenes]:
            yield name, dataset.load(name)
    elif path.suffix == ".npz":
        yield path.stem, load_scene(path)
    else:
        raise ValueError(f"{path}: expected a dataset directory (with {DATASET_YAML}) or a scene .npz")


def check_parity(bundle: ModelBundle, model: torch.nn.Module, scenes: Iterable[tuple[str, Scene]]) -> ParityReport:
    """Run both executions on every scene and compare logits and labels per voxel."""
    engine = OnnxRuntimeEngine(bundle, engine="onnxruntime-cpu")
    config = bundle.meta.preprocess
    report = ParityReport()
    agree_total = 0
    model = model.eval()
    for name, scene in scenes:
        net_input = prepare_cloud(config, scene.xyz, rgb=scene.rgb, intensity=scene.intensity)
        ort_logits = engine.run(bundle.model_inputs(net_input))
        features, maps = to_torch(net_input)
        with torch.no_grad():
            torch_logits = model(features, *maps).numpy()
        diff = float(np.abs(ort_logits - torch_logits).max())
        agree = int((ort_logits.argmax(1) == torch_logits.argmax(1)).sum())
        voxels = int(ort_logits.shape[0])
        report.per_cloud.append((name, voxels, agree / voxels, diff))
        report.voxels += voxels
        agree_total += agree
        report.max_logit_diff = max(report.max_logit_diff, diff)
    if report.voxels == 0:
        raise ValueError("no scenes to check")
    report.label_agreement = agree_total / report.voxels
    return report


def check_bundle(bundle_dir: str | Path, data: str | Path, checkpoint: str | Path | None = None,
                 max_scenes: int = 4) -> ParityReport:
    """Load the bundle and its checkpoint (from provenance unless given) and compare on ``data``."""
    bundle = load_bundle(bundle_dir)
    checkpoint = checkpoint or bundle.meta.provenance.get("checkpoint")
    if not checkpoint:
        raise ValueError(f"{bundle_dir}: model.yaml names no checkpoint; pass --checkpoint")
    model = model_from_checkpoint(load_checkpoint(checkpoint))
    return check_parity(bundle, model, iter_scenes(data, max_scenes=max_scenes))
