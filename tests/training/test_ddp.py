"""Data-parallel training: ``torchrun`` with 2 CPU processes (gloo) gives the parameters of 1 process with
the same global batch.  BatchNorm statistics are global (GlobalBatchNorm1d) and losses are global-batch means,
so the two agree up to float rounding."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from wsseg_training.checkpoint import load_checkpoint
from wsseg_training.data.dataset import Dataset, DatasetWriter
from wsseg_training.engine.config import config_from_dict
from wsseg_training.engine.loop import Trainer
from wsseg_training.methods import FullMethod

from tests.conftest import REPO_ROOT, make_box_scene
from wsseg.core.classes import ClassTable
from wsseg.core.scene import Scene

CLASSES = ClassTable("boxes", ("floor", "wall", "box"), ((100, 80, 60), (200, 200, 200), (40, 90, 160)))
CONFIG = {
    "seed": 3, "profile": "tiny", "device": "cpu",
    "data": {"batch_scenes": 2, "crop_max_points": 2500},
    "optim": {"optimizer": "adamw", "lr": 0.01, "warmup_steps": 1},
    "train": {"steps": 4, "checkpoint_every_steps": 0, "log_every_steps": 1},
}


@pytest.mark.slow
def test_two_processes_equal_one_process_with_the_same_global_batch(tmp_path: Path) -> None:
    with DatasetWriter(tmp_path / "data", "boxes", CLASSES, sensor="rgbd") as writer:
        for i in range(4):
            xyz, rgb, semantic = make_box_scene(seed=20 + i, n=3000)
            writer.add(f"s{i}", Scene(xyz=xyz, rgb=rgb, semantic=semantic.astype(np.int16)), split="train")
    dataset = Dataset(tmp_path / "data")
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(CONFIG))

    single = Trainer(config_from_dict(CONFIG), FullMethod(dataset.classes), dataset, tmp_path / "one",
                     progress=False)
    single_losses = single.run().losses

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "wsseg.cli", "train", "--method", "full", "--data", str(dataset.root),
               "--config", str(config_path), "--out", str(tmp_path / "two"), "--no-progress"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 process(es)" in (tmp_path / "two" / "log.txt").read_text()

    one = load_checkpoint(tmp_path / "one" / "model.pt")
    two = load_checkpoint(tmp_path / "two" / "model.pt")
    assert two["provenance"]["final_loss"] == pytest.approx(single_losses[-1], rel=1e-4)
    moved = 0.0
    for name, a in one["model"].items():
        b = two["model"][name]
        if not a.is_floating_point():
            assert torch.equal(a, b), name  # num_batches_tracked
            continue
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-4), f"{name}: max diff {(a - b).abs().max():.3g}"
        if name.endswith("running_var"):
            moved = max(moved, float((a - 1.0).abs().max()))
    assert moved > 1e-3  # BatchNorm statistics were really updated (global statistics are compared above)
