"""WS3D's instance segmentation offline: the trained backbone + offset head, clustered as the robot clusters.

:class:`Ws3dPredictor` reads ``RUN/model.pt`` (backbone and the ``instance_offsets`` head with its clustering
settings), runs the engine's one inference pass (:func:`wsseg_training.engine.inference.infer`) and clusters the
per-voxel outputs with :func:`wsseg.core.instances.segment_instances` -- the function the robot-side
``Segmenter`` calls on the ONNX outputs.  :func:`evaluate_instances` accumulates AP@50 / AP@25 the ScanNet way
(:mod:`wsseg_training.evaluation.instance_ap`) and the semantic confusion matrix over a split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from wsseg.core.classes import ClassTable
from wsseg.core.instances import InstanceConfig, Proposals, segment_instances
from wsseg.core.preprocess import PreprocessConfig
from wsseg.core.scene import Scene
from wsseg.core.voxelize import voxelize
from wsseg_training.checkpoint import (
    classes_from_checkpoint,
    load_checkpoint,
    model_from_checkpoint,
    preprocess_from_checkpoint,
)
from wsseg_training.data.dataset import Dataset
from wsseg_training.engine.inference import ForwardView, infer
from wsseg_training.evaluation.instance_ap import InstanceEvaluator
from wsseg_training.evaluation.metrics import ConfusionMatrix
from wsseg_training.methods.common.heads import PointHead, heads_from_checkpoint
from wsseg_training.methods.ws3d.instance import OFFSETS_OUTPUT, clustering_of
from wsseg_training.model.unet import SparseUNet


@dataclass(frozen=True)
class InstancePrediction:
    """One scene: labels (N,) int64, confidence (N,) float32, proposals over the N points, ids (N,) uint32."""

    labels: np.ndarray
    confidence: np.ndarray
    proposals: Proposals
    instance: np.ndarray


class Ws3dPredictor:
    """Semantic labels and instances of whole scenes (a :class:`~wsseg_training.evaluation.evaluate.Predictor`)."""

    name = "pytorch-instances"

    def __init__(self, model: SparseUNet, offsets: PointHead, preprocess: PreprocessConfig, classes: ClassTable,
                 clustering: InstanceConfig, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.offsets = offsets.to(self.device).eval()
        self.preprocess = preprocess
        self.classes = classes
        self.clustering = clustering

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: torch.device | str = "cpu",
                        clustering: InstanceConfig | None = None) -> Ws3dPredictor:
        """``RUN/model.pt`` with an ``instance_offsets`` head; ``clustering`` overrides the one it stores."""
        checkpoint = load_checkpoint(path)
        heads = heads_from_checkpoint(checkpoint)
        if OFFSETS_OUTPUT not in heads:
            raise ValueError(f"{path}: has no '{OFFSETS_OUTPUT}' head (train ws3d with method.instance: true)")
        config = clustering or clustering_of(checkpoint["heads"][OFFSETS_OUTPUT]["spec"], str(path))
        return cls(model_from_checkpoint(checkpoint), heads[OFFSETS_OUTPUT], preprocess_from_checkpoint(checkpoint),
                   classes_from_checkpoint(checkpoint), config, device)

    def _head(self, view: ForwardView) -> dict[str, torch.Tensor]:
        return {"logits": view.output.logits, "offsets": self.offsets(view.output.point_features)}

    def predict_instances(self, scene: Any) -> InstancePrediction:
        """scene: anything with ``xyz`` (N, 3) float32 metres, ``rgb``, ``intensity`` (a ``Scene``)."""
        out = infer([scene], self.model, self.preprocess, self.device, head=self._head)[0]
        prob = torch.softmax(out["logits"].float(), dim=1)
        confidence, labels = prob.max(dim=1)
        offsets = out["offsets"].float().cpu().numpy()
        # per voxel: the network's voxels are those of voxelize at the preprocessing's grid (points of a voxel
        # share its outputs), so the first point of each voxel gives the voxel's values
        grid = voxelize(scene.xyz, self.preprocess.voxel_size_m)
        _, first = np.unique(grid.inverse, return_index=True)
        labels_np, conf_np = labels.cpu().numpy().astype(np.int64), confidence.cpu().numpy().astype(np.float32)
        proposals, ids = segment_instances(scene.xyz, grid, labels_np[first], conf_np[first], offsets[first],
                                           self.clustering)
        return InstancePrediction(labels=labels_np, confidence=conf_np, proposals=proposals, instance=ids)

    def predict(self, scene: Scene) -> np.ndarray:
        return self.predict_instances(scene).labels


@dataclass
class InstanceEvaluation:
    """Over a split: the semantic confusion matrix and the instance AP accumulator."""

    confusion: ConfusionMatrix
    instances: InstanceEvaluator

    def to_dict(self, class_names: tuple[str, ...]) -> dict[str, Any]:
        return {"miou": self.confusion.miou(), **self.instances.to_dict(class_names)}


def evaluate_instances(predictor: Ws3dPredictor, dataset: Dataset, split: str,
                       progress: bool = False) -> InstanceEvaluation:
    """AP@50 / AP@25 (the predictor's instance classes) and mIoU over ``split``; scenes need ``instance``."""
    if tuple(predictor.classes.names) != tuple(dataset.classes.names):
        raise ValueError(f"{dataset.root}: the model's classes {list(predictor.classes.names)} are not the "
                         f"dataset's {list(dataset.classes.names)}")
    result = InstanceEvaluation(ConfusionMatrix(dataset.classes.num_classes),
                                InstanceEvaluator(predictor.clustering.classes))
    for name in tqdm(dataset.scene_names(split), desc=f"instances {split}", unit="scene", disable=not progress):
        scene = dataset.load(name)
        if scene.semantic is None or scene.instance is None:
            raise ValueError(f"scene {name!r} needs 'semantic' and 'instance' for instance AP")
        prediction = predictor.predict_instances(scene)
        result.confusion.add(scene.semantic, prediction.labels)
        result.instances.add(scene.semantic, scene.instance, prediction.proposals)
    return result
