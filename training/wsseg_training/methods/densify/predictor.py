"""Densify's primitive-propagation inference (DYL Tab. 6, "with primitives only"), an offline predictor.

Each point takes the primitive whose centroid is nearest (cosine) to its feature and the class that
primitive was matched to during training (the most frequent match of the last K-means period, counted over
every training scene and step of it: ``votes``).  Points whose nearest primitive was never matched keep the
classifier's argmax.  The classifier inference (the head's argmax) is the exported network itself and needs
no predictor of its own.

Reads ``densify.pt`` (the Densify network and its primitives, written when bootstrapping starts) or, for a run
without bootstrapping, the run's last checkpoint (network + the method's state).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsseg.core.classes import ClassTable
from wsseg.core.preprocess import PreprocessConfig
from wsseg.core.scene import Scene
from wsseg_training.checkpoint import (
    CheckpointError,
    classes_from_checkpoint,
    load_checkpoint,
    model_from_checkpoint,
    preprocess_from_checkpoint,
)
from wsseg_training.engine.inference import ForwardView, infer
from wsseg_training.methods.densify.kmeans import nearest_centroid
from wsseg_training.model.unet import SparseUNet


def primitive_classes(votes: np.ndarray) -> np.ndarray:
    """(K,) int64 most frequent matched class of every primitive; -1 for a primitive never matched.

    votes: (K, C) match counts.  Ties go to the lower class id.
    """
    votes = np.asarray(votes, dtype=np.float64)
    return np.where(votes.sum(axis=1) > 0, votes.argmax(axis=1), -1).astype(np.int64)


def primitive_summary_of(checkpoint: dict[str, Any], path: Path) -> dict[str, Any]:
    """The ``{"centroids", "votes"}`` of a densify checkpoint (``densify.pt`` or a training checkpoint)."""
    if "densify" in checkpoint:
        return checkpoint["densify"]
    method = (checkpoint.get("training") or {}).get("method") or {}
    primitives = method.get("primitives")
    if primitives is None:
        raise CheckpointError(f"{path}: holds no Densify primitives (not a densify run, or it stopped before "
                              "its first K-means round)")
    return {"centroids": primitives["centroids"], "votes": method["votes"]}


class DensifyPrimitivePredictor:
    """Nearest primitive -> its matched class (module docstring)."""

    name = "densify-primitives"

    def __init__(self, model: SparseUNet, preprocess: PreprocessConfig, classes: ClassTable, centroids: np.ndarray,
                 votes: np.ndarray, device: torch.device | str = "cpu") -> None:
        self.model = model.eval()
        self.preprocess = preprocess
        self.classes = classes
        self.device = torch.device(device)
        self.centroids = torch.as_tensor(np.asarray(centroids, dtype=np.float32), device=self.device)
        self.class_of = torch.as_tensor(primitive_classes(votes), device=self.device)
        if self.centroids.shape[1] != model.feature_channels:
            raise ValueError(f"primitives have {self.centroids.shape[1]} channels, the network's features "
                             f"{model.feature_channels}")

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: torch.device | str = "cpu") -> DensifyPrimitivePredictor:
        path = Path(path)
        checkpoint = load_checkpoint(path)
        summary = primitive_summary_of(checkpoint, path)
        return cls(model_from_checkpoint(checkpoint).to(device), preprocess_from_checkpoint(checkpoint),
                   classes_from_checkpoint(checkpoint), summary["centroids"].numpy(), summary["votes"].numpy(),
                   device)

    @property
    def matched_primitives(self) -> int:
        return int((self.class_of >= 0).sum())

    def predict(self, scene: Scene) -> np.ndarray:
        """(N,) int64 class per point of ``scene`` (the engine's whole-scene inference pass)."""
        labels = infer([scene], self.model, self.preprocess, self.device, head=self._voxel_labels)[0]["label"]
        return labels.cpu().numpy().astype(np.int64)

    def _voxel_labels(self, view: ForwardView) -> dict[str, torch.Tensor]:
        """(M_0,) the matched class of each voxel's nearest primitive, the classifier's where it has none."""
        output = view.output
        matched = self.class_of[nearest_centroid(output.point_features, self.centroids)]
        return {"label": torch.where(matched >= 0, matched, output.logits.argmax(dim=1))}
