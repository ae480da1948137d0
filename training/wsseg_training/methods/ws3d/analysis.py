"""WS3D's analysis outputs (``RUN/ws3d.json``), never used by training.

* boundary precision / recall of the boundary network on the unlabelled points, against the boundary ground
  truth of labels training never sees (given by the caller, e.g. the benchmark);
* regions per scene, adjacent pairs, the share of pairs with ``w = 1``, and on the unlabelled scenes the
  precision / recall of ``w`` against the pairs whose regions' majority ground-truth classes differ;
* the share of adjacent region pairs with H = 1 (both regions' max-pooled probability > γ) over training,
  both views pooled, one entry per step.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from wsseg.core.classes import IGNORE_INDEX
from wsseg_training.methods.ws3d.boundary import BoundaryScore, boundary_targets, score_boundaries
from wsseg_training.methods.ws3d.regions import pair_class_change


class Ws3dAnalysis:
    """Accumulates the analysis figures; :meth:`write` puts them into ``run_dir/ws3d.json`` (atomically)."""

    FILE = "ws3d.json"

    def __init__(self) -> None:
        self.run_dir: str | None = None
        self.boundary = BoundaryScore(0, 0, 0)
        self.boundary_scenes = 0
        self.pairs = BoundaryScore(0, 0, 0)
        self.regions: dict[str, float] = {}
        self.confidence: list[tuple[int, float, float]] = []  # (step, confident pairs, pairs)

    def count_regions(self, regions: Mapping[str, Any]) -> None:
        """regions: scene -> :class:`~wsseg_training.methods.ws3d.regions.SceneRegions`."""
        counts = [r.num_regions for r in regions.values()]
        pairs = [len(r.pairs) for r in regions.values()]
        self.regions.update({"scenes": len(counts), "regions_per_scene": float(np.mean(counts)) if counts else 0.0,
                             "pairs_per_scene": float(np.mean(pairs)) if pairs else 0.0})

    def count_pairs(self, regions: Mapping[str, Any]) -> None:
        """The share of adjacent pairs labelled as boundary pairs (w = 1) once boundaries are predicted."""
        w = np.concatenate([r.w for r in regions.values()]) if regions else np.zeros(0)
        self.regions["boundary_pair_share"] = float(w.mean()) if w.size else float("nan")

    def add_boundaries(self, xyz: np.ndarray, hidden: np.ndarray, predicted: np.ndarray, known: np.ndarray,
                       grid_m: float, radius_cells: float) -> None:
        """One scene: hidden (N,) ground-truth labels (analysis only), predicted (N,) bool boundary points,
        known (N,) bool points training labels (left out of the score)."""
        truth = boundary_targets(xyz, hidden, grid_m, radius_cells)
        truth[known] = IGNORE_INDEX
        if (truth != IGNORE_INDEX).any():
            self.boundary = self.boundary + score_boundaries(predicted, truth)
            self.boundary_scenes += 1

    def add_pairs(self, regions: Any, hidden: np.ndarray, num_classes: int) -> None:
        """One unlabelled scene: ``w`` of its pairs against the class change of their regions' majority labels."""
        if not len(regions.pairs):
            return
        change, known = pair_class_change(regions, hidden, num_classes)
        change, w = change[known], regions.w[known] > 0
        self.pairs = self.pairs + BoundaryScore(int((w & change).sum()), int(w.sum()), int(change.sum()))

    def add_confidence(self, step: int, confident_pairs: float, pairs: float) -> None:
        self.confidence.append((int(step), float(confident_pairs), float(pairs)))

    def summary(self) -> dict[str, Any]:
        conf = np.asarray(self.confidence, dtype=np.float64).reshape(-1, 3)
        share = np.divide(conf[:, 1], conf[:, 2], out=np.full(len(conf), np.nan), where=conf[:, 2] > 0)
        return {
            "boundary_unlabelled": {**self.boundary.to_dict(), "scenes": self.boundary_scenes},
            "boundary_pairs_unlabelled": self.pairs.to_dict(),
            "regions": dict(self.regions),
            "confident_pair_share": {
                "steps": conf[:, 0].astype(int).tolist(),
                "share": [None if not np.isfinite(v) else round(float(v), 5) for v in share],
                "first_25_mean": _mean(share[:25]), "last_25_mean": _mean(share[-25:]),
            },
        }

    def write(self) -> None:
        if self.run_dir is None:
            return
        path = Path(self.run_dir) / self.FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(_finite(self.summary()), indent=1, allow_nan=False) + "\n"
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ws3d.", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)

    def state_dict(self) -> dict[str, Any]:
        return {"run_dir": self.run_dir or "", "boundary": [self.boundary.true_positive, self.boundary.predicted,
                                                            self.boundary.actual, self.boundary_scenes],
                "pairs": [self.pairs.true_positive, self.pairs.predicted, self.pairs.actual],
                "regions": dict(self.regions), "confidence": [list(c) for c in self.confidence]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.run_dir = state.get("run_dir") or None
        if "boundary" in state:
            tp, predicted, actual, scenes = (int(v) for v in state["boundary"])
            self.boundary, self.boundary_scenes = BoundaryScore(tp, predicted, actual), scenes
        if "pairs" in state:
            self.pairs = BoundaryScore(*(int(v) for v in state["pairs"]))
        self.regions = dict(state.get("regions") or {})
        self.confidence = [(int(s), float(c), float(p)) for s, c, p in state.get("confidence") or []]


def _mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return round(float(finite.mean()), 5) if finite.size else None


def _finite(value: Any) -> Any:
    """NaN / inf -> None, recursively (plain JSON)."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
