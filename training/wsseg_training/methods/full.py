"""``full``: cross-entropy on every labelled point, the fully supervised baseline.

Without ``--labels`` it trains on the dataset's ground truth.  With a point weak-label
file (``clicks``, ``sparse_points``) it sees only those points, which is the "train on
raw clicks" baseline; with ``labelled_scenes`` only the labelled scenes and the labelled
part of a cut scene.  Points labelled ``IGNORE_INDEX`` never contribute.

Options (config ``method:``)::

    class_weighting: none | inverse_sqrt_frequency | inverse_frequency
        per-class loss weights from the training targets' class counts, normalised to mean 1 over the
        classes present (absent classes get 0); see :mod:`wsseg_training.methods.common.class_weights`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from wsseg.core.classes import IGNORE_INDEX
from wsseg.core.scene import Scene
from wsseg_training.engine.scenes import TrainScene, train_scene_from
from wsseg_training.labels import Clicks, LabelledScenes, SparsePoints
from wsseg_training.methods.base import Method, StepContext
from wsseg_training.methods.common.class_weights import (
    CLASS_WEIGHTINGS,
    class_weights,
    label_counts,
)
from wsseg_training.methods.common.losses import point_cross_entropy
from wsseg_training.methods.common.options import MethodOptions, option


@dataclass(frozen=True, kw_only=True)
class FullOptions(MethodOptions):
    """Options of ``full`` (module docstring)."""

    class_weighting: str = option("none", choices=CLASS_WEIGHTINGS,
                                  doc="per-class loss weights from the training targets' class counts")


class FullMethod(Method):
    """Per-point cross-entropy on the labelled points (see the module docstring)."""

    name = "full"
    label_kinds: ClassVar[tuple[str, ...]] = ("clicks", "sparse_points", "labelled_scenes")
    Options = FullOptions
    options: FullOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.weights = torch.ones(self.num_classes)

    def point_labels(self, name: str, scene: Scene) -> np.ndarray | None:
        """(N,) int64 training labels of a scene (``IGNORE_INDEX`` where unseen); None = not a training scene."""
        weak = self.weak
        if isinstance(weak, (Clicks, SparsePoints)):
            if name not in weak.scenes:
                return None
            return weak.point_labels(name, scene.num_points)
        if scene.semantic is None:
            raise ValueError(f"scene {name!r} has no field 'semantic'; method 'full' needs labels "
                             "(or pass a weak-label file with --labels)")
        labels = scene.semantic.astype(np.int64)
        if isinstance(weak, LabelledScenes):
            if name not in weak.labelled and name not in weak.cuts:
                return None
            labels = np.where(weak.labelled_mask(name, scene.xyz), labels, IGNORE_INDEX)
        return labels

    def make_targets(self, name: str, scene: Scene) -> TrainScene | None:
        labels = self.point_labels(name, scene)
        if labels is None or not (labels != IGNORE_INDEX).any():
            return None
        return train_scene_from(name, scene, {"labels": labels})

    def setup(self, scenes: list[TrainScene]) -> None:
        counts = label_counts((s.point_targets["labels"] for s in scenes), self.num_classes)
        self.weights = torch.from_numpy(class_weights(counts, self.options.class_weighting))

    def losses(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        total, weight = point_cross_entropy(ctx.point_logits(), ctx.batch.point_targets["labels"], self.weights)
        return {"ce": ctx.mean(total, weight)}
