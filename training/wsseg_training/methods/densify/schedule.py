"""Densify's epoch schedule (DYL §4.1, Supp. A.3-A.4): when K-means runs, when the warm-up ends, when ℓ_match
starts, and how the paper's 400-epoch schedule scales to a shorter run.

Epochs are 0-based.  K-means runs at the start of epochs ``0, p, 2p, ...`` (``p = kmeans_every_epochs``;
GrowSP's ``(epoch - 1) % 10 == 0`` with 1-based epochs).  A K-means round at epoch ``e < warmup_epochs``
clusters [neural, colour, shape] features; from the first round at or after the warm-up on, neural features
only, and the primitives are grouped for assignment filtering.  ℓ_match is on for epochs
``e >= match_off_epochs``.  Steps map to epochs through ``steps_per_epoch`` (whole scenes: one epoch =
ceil(scenes / batch) steps).
"""

from __future__ import annotations

from dataclasses import dataclass

#: the paper's schedule (epochs): total, K-means period, warm-up, matching off
PAPER_EPOCHS, PAPER_KMEANS_EVERY, PAPER_WARMUP, PAPER_MATCH_OFF = 400, 10, 250, 60


@dataclass(frozen=True)
class DensifySchedule:
    """epochs: Densify training epochs (bootstrapping not included).  kmeans_every_epochs: K-means period.
    warmup_epochs: K-means rounds before this epoch use hand-crafted features.  match_off_epochs: no ℓ_match
    before this epoch."""

    epochs: int = PAPER_EPOCHS
    kmeans_every_epochs: int = PAPER_KMEANS_EVERY
    warmup_epochs: int = PAPER_WARMUP
    match_off_epochs: int = PAPER_MATCH_OFF

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.kmeans_every_epochs < 1:
            raise ValueError(f"schedule: epochs={self.epochs} and kmeans_every_epochs={self.kmeans_every_epochs} "
                             "must be >= 1")
        if self.warmup_epochs < 0 or self.match_off_epochs < 0:
            raise ValueError(f"schedule: warmup_epochs={self.warmup_epochs} and match_off_epochs="
                             f"{self.match_off_epochs} must be >= 0")

    @classmethod
    def scaled(cls, epochs: int) -> DensifySchedule:
        """The paper's proportions on ``epochs`` epochs: warm-up 250/400, matching off 60/400, K-means every
        10/400 of the run (at least every epoch)."""
        return cls(epochs=epochs,
                   kmeans_every_epochs=max(1, round(epochs * PAPER_KMEANS_EVERY / PAPER_EPOCHS)),
                   warmup_epochs=round(epochs * PAPER_WARMUP / PAPER_EPOCHS),
                   match_off_epochs=round(epochs * PAPER_MATCH_OFF / PAPER_EPOCHS))

    def kmeans_epochs(self) -> list[int]:
        """Epochs at whose start K-means runs."""
        return list(range(0, self.epochs, self.kmeans_every_epochs))

    def periods(self) -> list[tuple[int, int]]:
        """(first epoch, length in epochs) of every K-means period; the last may be shorter."""
        starts = self.kmeans_epochs()
        return [(s, min(self.kmeans_every_epochs, self.epochs - s)) for s in starts]

    def handcrafted(self, epoch: int) -> bool:
        """Does the K-means round at ``epoch`` add colour and shape (the warm-up)?"""
        return epoch < self.warmup_epochs

    def filtering(self, epoch: int) -> bool:
        """Does the K-means round at ``epoch`` group the primitives for assignment filtering (after warm-up)?"""
        return epoch >= self.warmup_epochs

    def matching(self, epoch: int) -> bool:
        """Is ℓ_match on during ``epoch``?"""
        return epoch >= self.match_off_epochs

    @staticmethod
    def epoch_of_step(step: int, steps_per_epoch: int) -> int:
        """0-based epoch of 0-based optimiser ``step``."""
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        return step // steps_per_epoch
