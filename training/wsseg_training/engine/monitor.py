"""Watching a run: the progress bar, TensorBoard scalars and log lines, and the divergence check.

The loop hands every finished step to :meth:`TrainingLog.step`; :func:`check_finite` stops the run with a
:class:`TrainingDivergedError` naming the step, the loss terms and the last good checkpoint.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from tqdm import tqdm

log = logging.getLogger("wsseg_training.engine.loop")


class TrainingDivergedError(RuntimeError):
    """The loss or the gradients became NaN/inf; the message names the step and the last good checkpoint."""


def check_finite(step: int, terms: dict[str, float], grad_norm: float, scaled: bool, last: Path,
                 last_saved: int | None) -> None:
    """Raise :class:`TrainingDivergedError` when 0-based ``step`` gave a non-finite loss or gradient norm.

    scaled: AMP's gradient scaler is on (it skips steps with inf gradients itself, so only the loss counts).
    last / last_saved: the run's ``last.pt`` and the step it holds (None: nothing saved yet).
    """
    loss = float(sum(terms.values()))
    if math.isfinite(loss) and (math.isfinite(grad_norm) or scaled):
        return
    what = f"loss is {loss}" if not math.isfinite(loss) else f"gradient norm is {grad_norm}"
    kept = f"{last} (step {last_saved})" if last_saved else "none (no checkpoint yet)"
    raise TrainingDivergedError(
        f"step {step + 1}: {what} (terms {', '.join(f'{k}={v:.4g}' for k, v in terms.items())}); "
        f"training stopped. Last good checkpoint: {kept}. Lower optim.lr, set "
        "optim.grad_clip_norm, or check the input data for NaN/inf.")


class TrainingLog:
    """Progress bar (main process, when ``progress``), TensorBoard scalars and a log line every
    ``every_steps`` steps and at the last one.  Use as a context manager (closes both)."""

    def __init__(self, name: str, total_steps: int, start_step: int, every_steps: int, tensorboard: Path | None,
                 progress: bool, resumed: bool) -> None:
        self.total_steps = total_steps
        self.every_steps = every_steps
        self.writer: Any = None
        if tensorboard is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(tensorboard), purge_step=start_step if resumed else None)
        self.bar = tqdm(total=total_steps, initial=start_step, desc=f"train {name}", unit="step",
                        disable=not progress, dynamic_ncols=True)

    def __enter__(self) -> TrainingLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()

    def step(self, step: int, terms: dict[str, float], lr: float, grad_norm: float, points: int,
             seconds: float) -> None:
        """After 1-based ``step``: ``points`` in the global batch, ``seconds`` the step took."""
        loss = float(sum(terms.values()))
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2g}", pts_s=f"{points / seconds / 1e3:.0f}k")
        if self.writer is None or not (step % self.every_steps == 0 or step == self.total_steps):
            return
        self.writer.add_scalar("train/loss", loss, step)
        for name, value in terms.items():
            self.writer.add_scalar(f"train/{name}", value, step)
        self.writer.add_scalar("train/lr", lr, step)
        self.writer.add_scalar("train/grad_norm", grad_norm, step)
        self.writer.add_scalar("train/points_per_s", points / seconds, step)
        self.writer.add_scalar("train/s_per_step", seconds, step)
        log.info("step %d/%d loss %.4f lr %.3g grad %.3g %.2f s/step", step, self.total_steps, loss, lr, grad_norm,
                 seconds)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Extra scalars (evaluation) at 1-based ``step``."""
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)
