"""Click suggestions: where one more click teaches the model most.

A model (a bundle through ONNX Runtime, or a checkpoint through PyTorch) gives per-point class
probabilities; each super-voxel gets the mean uncertainty of its points, and a score

    score_s = u_s * (n_s / n_max) ** size_exponent * (1 - exp(-d_s**2 / (2 * distance_scale_m**2)))

u_s: mean normalised entropy (``entropy``, in [0, 1]) or mean ``1 - (p_top1 - p_top2)`` (``margin``) of its
points; n_s: its point count (a click labels its super-voxel, so a big uncertain one is worth more);
d_s: distance in metres from its centroid to the nearest existing click (clicks close to one already made
teach little new).  Super-voxels holding a click are never suggested.  Suggestions are chosen greedily:
each one counts as a click for the distance term of the next, so the top few spread over the scene.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from wsseg.core.classes import ClassTable
from wsseg.core.preprocess import PreprocessConfig, prepare_cloud
from wsseg.core.scene import Scene
from wsseg_training.checkpoint import (
    classes_from_checkpoint,
    load_checkpoint,
    model_from_checkpoint,
    preprocess_from_checkpoint,
)
from wsseg_training.engine.inference import ForwardView, infer

MEASURES = ("entropy", "margin")


class ProbabilityModel(Protocol):
    """Anything that gives class probabilities for every point of a scene."""

    classes: ClassTable

    def probabilities(self, scene: Scene) -> np.ndarray:
        """(N, C) float32 softmax probabilities of every point of ``scene``."""
        ...


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def _inputs(scene: Scene, preprocess: PreprocessConfig) -> dict[str, np.ndarray | None]:
    features = preprocess.features.ordered_names
    return {"rgb": scene.rgb if "rgb" in features else None,
            "intensity": scene.intensity if "intensity" in features else None}


class BundleProbabilities:
    """A model bundle through ONNX Runtime (the robot's engine), voxel logits copied back to the points."""

    def __init__(self, bundle: str | Path, num_threads: int = 0) -> None:
        from wsseg.runtime.segmenter import Segmenter

        self.segmenter = Segmenter(bundle, engine="auto", num_threads=num_threads)
        self.classes = self.segmenter.classes

    def probabilities(self, scene: Scene) -> np.ndarray:
        preprocess = self.segmenter.bundle.meta.preprocess
        net_input = prepare_cloud(preprocess, scene.xyz, **_inputs(scene, preprocess))  # type: ignore[arg-type]
        logits = self.segmenter.engine.run(net_input.as_inputs())
        return _softmax(np.asarray(logits, dtype=np.float32))[net_input.grid.inverse]


class CheckpointProbabilities:
    """A training checkpoint (``model.pt``) through PyTorch, eval mode."""

    def __init__(self, path: str | Path) -> None:
        checkpoint = load_checkpoint(path)
        self.model = model_from_checkpoint(checkpoint).eval()
        self.preprocess = preprocess_from_checkpoint(checkpoint)
        self.classes = classes_from_checkpoint(checkpoint)

    def probabilities(self, scene: Scene) -> np.ndarray:
        """Through the engine's whole-scene inference pass (:func:`wsseg_training.engine.inference.infer`)."""
        outputs = infer([scene], self.model, self.preprocess, "cpu", head=_probabilities)[0]
        return outputs["prob"].numpy().astype(np.float32)


def _probabilities(view: ForwardView) -> dict[str, torch.Tensor]:
    return {"prob": torch.softmax(view.output.logits, dim=1)}


def load_model(path: str | Path) -> ProbabilityModel:
    """A bundle directory (``model.yaml``) or a checkpoint file (``.pt``); ``ValueError`` names the path."""
    path = Path(path)
    if path.is_dir():
        return BundleProbabilities(path)
    if path.is_file():
        return CheckpointProbabilities(path)
    raise ValueError(f"--model {path}: neither a model bundle directory nor a checkpoint file")


def point_uncertainty(prob: np.ndarray, measure: str = "entropy") -> np.ndarray:
    """prob: (N, C) probabilities -> (N,) float64 in [0, 1]: normalised entropy or 1 - top-2 margin."""
    prob = np.asarray(prob, dtype=np.float64)
    if measure == "entropy":
        p = np.clip(prob, 1e-12, 1.0)
        return -(p * np.log(p)).sum(axis=1) / math.log(max(prob.shape[1], 2))
    if measure == "margin":
        top2 = np.sort(prob, axis=1)[:, -2:] if prob.shape[1] > 1 else np.concatenate([np.zeros_like(prob), prob], 1)
        return 1.0 - (top2[:, 1] - top2[:, 0])
    raise ValueError(f"uncertainty measure {measure!r} is not one of {MEASURES}")


@dataclass(frozen=True)
class Suggestion:
    """A place to click: super-voxel id, the point to click (its point nearest its centroid), the score and
    its parts, and the model's class there (what a careless annotator must not simply accept)."""

    supervoxel: int
    point: int
    score: float
    uncertainty: float
    size: int
    predicted: int

    def to_json(self) -> dict[str, float | int]:
        return {"supervoxel": self.supervoxel, "point": self.point, "score": round(self.score, 6),
                "uncertainty": round(self.uncertainty, 4), "size": self.size, "predicted": self.predicted}


@dataclass(frozen=True)
class SuggestionWeights:
    """measure: ``entropy`` | ``margin``; size_exponent: 0 ignores size; distance_scale_m: 0 ignores distance."""

    measure: str = "entropy"
    size_exponent: float = 0.5
    distance_scale_m: float = 1.0


def rank_suggestions(xyz: np.ndarray, supervoxel: np.ndarray, prob: np.ndarray, clicked: np.ndarray, count: int,
                     weights: SuggestionWeights | None = None) -> list[Suggestion]:
    """The ``count`` best places to click next, best first (see the module docstring).

    xyz: (N, 3) float metres; supervoxel: (N,) int, -1 = none; prob: (N, C) probabilities; clicked: (K,) int
    point indices of the clicks made so far.
    """
    weights = weights or SuggestionWeights()
    supervoxel = np.asarray(supervoxel).astype(np.int64)
    n = supervoxel.shape[0]
    if np.asarray(xyz).shape != (n, 3) or np.asarray(prob).shape[0] != n:
        raise ValueError(f"xyz {np.asarray(xyz).shape}, supervoxel ({n},) and prob {np.asarray(prob).shape} "
                         "must describe the same N points")
    has = supervoxel >= 0
    if not has.any() or count <= 0:
        return []
    ids, inverse, sizes = np.unique(supervoxel[has], return_inverse=True, return_counts=True)
    points = np.flatnonzero(has)
    uncertainty = np.bincount(inverse, weights=point_uncertainty(prob[has], weights.measure)) / sizes
    xyz64 = np.asarray(xyz, dtype=np.float64)[has]
    centroids = np.stack([np.bincount(inverse, weights=xyz64[:, k]) / sizes for k in range(3)], axis=1)
    # the member nearest the centroid: a real point of the super-voxel to click on
    gap = ((xyz64 - centroids[inverse]) ** 2).sum(axis=1)
    order = np.lexsort((gap, inverse))
    first = np.searchsorted(inverse[order], np.arange(ids.size))
    representative = points[order[first]]
    predicted = np.asarray(prob).argmax(axis=1)
    base = uncertainty * (sizes / sizes.max()) ** weights.size_exponent
    clicked = np.asarray(clicked, dtype=np.int64).reshape(-1)
    taken = np.isin(ids, supervoxel[clicked]) if clicked.size else np.zeros(ids.size, dtype=bool)
    anchors = [np.asarray(xyz, dtype=np.float64)[p] for p in clicked]
    nearest = np.full(ids.size, np.inf)
    for anchor in anchors:
        nearest = np.minimum(nearest, np.linalg.norm(centroids - anchor, axis=1))
    out: list[Suggestion] = []
    while len(out) < count:
        if weights.distance_scale_m > 0:
            spread = 1.0 - np.exp(-(nearest**2) / (2.0 * weights.distance_scale_m**2))
        else:
            spread = np.ones(ids.size)
        score = np.where(taken, -np.inf, base * spread)
        best = int(np.argmax(score))
        if not np.isfinite(score[best]):
            break
        point = int(representative[best])
        out.append(Suggestion(supervoxel=int(ids[best]), point=point, score=float(score[best]),
                              uncertainty=float(uncertainty[best]), size=int(sizes[best]),
                              predicted=int(predicted[point])))
        taken[best] = True
        nearest = np.minimum(nearest, np.linalg.norm(centroids - centroids[best], axis=1))
    return out
