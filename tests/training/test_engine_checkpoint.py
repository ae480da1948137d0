"""Checkpoints are never half-written: a writer killed (SIGKILL) at random moments always leaves a
``last.pt`` that loads, holding one complete checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from wsseg_training.checkpoint import load_checkpoint
from wsseg_training.engine.run_dir import RunDir

WRITER = r"""
import sys, torch
from pathlib import Path
from wsseg_training.checkpoint import make_checkpoint
from wsseg_training.engine.run_dir import RunDir, write_checkpoint
from wsseg_training.model.profiles import preprocess_config_for, unet_config_for
from wsseg_training.model.unet import SparseUNet
from wsseg.core.classes import MOSD

run = RunDir(Path(sys.argv[1]))
start = int(sys.argv[2])
model = SparseUNet(unet_config_for("tiny", 6, 2))
pre = preprocess_config_for("tiny")
print("ready", flush=True)
for step in range(start, start + 1000):
    # ~24 MB of training state whose every value is the step: a torn file would show mixed values
    state = {"step": step, "blob": torch.full((6_000_000,), float(step))}
    checkpoint = make_checkpoint(model, pre, MOSD, training=state)
    write_checkpoint(run, checkpoint, step, keep=2)
"""


def test_killed_writer_never_leaves_a_torn_checkpoint(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    rng = np.random.default_rng(0)
    seen: list[int] = []
    start = 1
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(run.root), str(start)], stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.2, 1.2)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if not run.last.exists():
            continue
        checkpoint = load_checkpoint(run.last)
        step = checkpoint["training"]["step"]
        blob = checkpoint["training"]["blob"]
        assert torch.all(blob == float(step)), "last.pt mixes two checkpoints"
        for path in run.step_files():
            load_checkpoint(path)  # every step file that exists is complete as well
        seen.append(step)
        start = step + 1
    assert len(seen) >= 3, f"the writer rarely got a checkpoint out before the kill: {seen}"
    assert seen == sorted(seen)
    # the killed writers' temporaries are cleaned up when a run starts
    run.remove_stale_temporaries()
    assert not list(run.checkpoints.glob(".*.tmp-*"))
