"""The run directory and its checkpoints.

Layout::

    RUN/config.yaml                  the resolved training config
    RUN/checkpoints/step_NNNNNNNN.pt step checkpoints (the newest ``keep_checkpoints`` are kept)
    RUN/checkpoints/last.pt          the newest checkpoint, with the training state for --resume
    RUN/model.pt                     the final model (no training state): what export and eval read
    RUN/tb/                          TensorBoard scalars
    RUN/log.txt                      the log
    RUN/metrics.json                 evaluation results, one entry per split (and backend)

Every file is written to a temporary name, flushed and renamed over the target, so
a crash or kill at any moment leaves either the old or the new file, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsseg_training.checkpoint import save_checkpoint

STEP_FILE = re.compile(r"^step_(\d{8})\.pt$")


@dataclass(frozen=True)
class RunDir:
    """Paths of a run directory (see the module docstring)."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def model(self) -> Path:
        return self.root / "model.pt"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tb"

    @property
    def log(self) -> Path:
        return self.root / "log.txt"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    def step_file(self, step: int) -> Path:
        return self.checkpoints / f"step_{step:08d}.pt"

    def step_files(self) -> list[Path]:
        """Step checkpoints, oldest first."""
        if not self.checkpoints.is_dir():
            return []
        return sorted(p for p in self.checkpoints.iterdir() if STEP_FILE.match(p.name))

    def remove_stale_temporaries(self) -> None:
        """Delete temporary files a killed writer left behind (``.name.tmp-PID``)."""
        for folder in (self.root, self.checkpoints):
            if folder.is_dir():
                for path in folder.glob(".*.tmp-*"):
                    with contextlib.suppress(OSError):
                        path.unlink()


def write_checkpoint(run: RunDir, checkpoint: dict[str, Any], step: int, keep: int) -> Path:
    """Write the checkpoint of ``step`` as ``last.pt`` (and ``step_NNNNNNNN.pt`` when ``keep > 0``).

    The step file is written atomically, then ``last.pt`` is replaced atomically by a hard link to it
    (a copy where links are unsupported), so the data is written once.  Step files beyond the newest
    ``keep`` are deleted.  Returns the path of ``last.pt``.
    """
    if keep <= 0:
        return save_checkpoint(run.last, checkpoint)
    step_path = save_checkpoint(run.step_file(step), checkpoint)
    link = run.checkpoints / f".last.pt.tmp-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    try:
        os.link(step_path, link)
        link.replace(run.last)
    except OSError:
        save_checkpoint(run.last, checkpoint)
    for old in run.step_files()[:-keep]:
        with contextlib.suppress(OSError):
            old.unlink()
    return run.last
