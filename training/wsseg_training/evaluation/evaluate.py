"""Predict every point of a split and accumulate the confusion matrix.

Two predictors give per-point labels for the ORIGINAL points of a scene (voxel
predictions copied back through ``grid.inverse``):

* :class:`TorchPredictor`: the PyTorch model of a checkpoint (what training produced);
* :class:`BundlePredictor`: a model bundle through ONNX Runtime with ``wsseg.runtime.Segmenter``
  (what the robot runs), so the robot's numbers are measured, not assumed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from tqdm import tqdm

from wsseg.core.classes import ClassTable
from wsseg.core.preprocess import PreprocessConfig, refine_point_labels
from wsseg.core.scene import Scene
from wsseg_training.checkpoint import (
    classes_from_checkpoint,
    load_checkpoint,
    model_from_checkpoint,
    preprocess_from_checkpoint,
)
from wsseg_training.data.dataset import Dataset
from wsseg_training.engine.inference import TTAConfig, infer
from wsseg_training.evaluation.metrics import ConfusionMatrix
from wsseg_training.model.unet import SparseUNet


class Predictor(Protocol):
    """Anything that labels every point of a scene."""

    name: str
    classes: ClassTable

    def predict(self, scene: Scene) -> np.ndarray:
        """(N,) int64 class id per point of ``scene`` (-1 where the predictor gave none)."""
        ...


def _inputs(scene: Scene, features: Sequence[str]) -> dict[str, np.ndarray | None]:
    return {"rgb": scene.rgb if "rgb" in features else None,
            "intensity": scene.intensity if "intensity" in features else None}


class TorchPredictor:
    """Eval-mode PyTorch inference of a :class:`SparseUNet` over whole scenes: the engine's one inference pass
    (:func:`wsseg_training.engine.inference.infer`), argmax of the (summed, with ``tta``) logits per point."""

    name = "pytorch"

    def __init__(self, model: SparseUNet, preprocess: PreprocessConfig, device: torch.device | str = "cpu",
                 classes: ClassTable | None = None, backend: str = "maps",
                 tta: TTAConfig | None = None) -> None:
        self.model = model
        self.preprocess = preprocess
        self.device = torch.device(device)
        self.classes = classes  # type: ignore[assignment]
        self.backend = backend
        self.tta = tta

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: torch.device | str = "cpu") -> TorchPredictor:
        checkpoint = load_checkpoint(path)
        model = model_from_checkpoint(checkpoint).to(device)
        return cls(model, preprocess_from_checkpoint(checkpoint), device, classes_from_checkpoint(checkpoint))

    def predict(self, scene: Scene) -> np.ndarray:
        """(N,) int64: the argmax per point, then the preprocessing's support-plane refinement when it has one
        (:func:`wsseg.core.preprocess.refine_point_labels`, as the robot's ``Segmenter`` applies it)."""
        labels = infer([scene], self.model, self.preprocess, self.device, backend=self.backend, tta=self.tta,
                       reduce=_argmax)[0]
        if self.preprocess.refine is None:
            return labels
        if self.classes is None:
            raise ValueError("TorchPredictor: the model's support-plane refinement needs the class table "
                             "(construct it with classes=...)")
        return refine_point_labels(self.preprocess, self.classes.names, scene.xyz, labels)


def _argmax(index: int, outputs: dict[str, torch.Tensor]) -> np.ndarray:
    """(N,) int64 class of the largest logit per point."""
    return outputs["logits"].argmax(1).cpu().numpy().astype(np.int64)


class BundlePredictor:
    """A model bundle through ONNX Runtime (``wsseg.runtime.Segmenter``)."""

    name = "onnxruntime"

    def __init__(self, bundle: str | Path, engine: str = "auto", num_threads: int = 0) -> None:
        from wsseg.runtime.segmenter import Segmenter

        self.segmenter = Segmenter(bundle, engine=engine, num_threads=num_threads)
        self.classes = self.segmenter.classes

    def predict(self, scene: Scene) -> np.ndarray:
        features = self.segmenter.input_features
        labels, _ = self.segmenter.segment(scene.xyz, **_inputs(scene, features))  # type: ignore[arg-type]
        out = labels.astype(np.int64)
        out[out >= self.classes.num_classes] = -1
        return out


@dataclass
class SceneScore:
    """Per-scene figures: mIoU and OA over that scene's points, and its evaluated point count."""

    name: str
    miou: float
    overall_accuracy: float
    points: int


@dataclass
class EvalResult:
    """confusion: accumulated over every scene.  predictions: (N,) labels of the first ``keep`` scenes."""

    split: str
    predictor: str
    confusion: ConfusionMatrix
    scenes: list[SceneScore] = field(default_factory=list)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)


def check_classes(predictor: Predictor, dataset: Dataset) -> None:
    """The model's class table must be the dataset's (names in the same order)."""
    theirs, ours = getattr(predictor, "classes", None), dataset.classes
    if theirs is not None and tuple(theirs.names) != tuple(ours.names):
        raise ValueError(f"{dataset.root}: the model was trained for classes {list(theirs.names)}, the dataset has "
                         f"{list(ours.names)}")


def evaluate_split(predictor: Predictor, dataset: Dataset, split: str, keep: int = 0,
                   progress: bool = True) -> EvalResult:
    """Predict every scene of ``split`` and accumulate one confusion matrix; keeps the first ``keep`` predictions."""
    check_classes(predictor, dataset)
    names = dataset.scene_names(split)
    if not names:
        raise ValueError(f"{dataset.root}: split {split!r} has no scene")
    result = EvalResult(split=split, predictor=predictor.name, confusion=ConfusionMatrix(dataset.classes.num_classes))
    for name in tqdm(names, desc=f"eval {split} ({predictor.name})", unit="scene", disable=not progress):
        scene = dataset.load(name)
        if scene.semantic is None:
            raise ValueError(f"{dataset.scene_path(name)}: field 'semantic' is missing; evaluation needs labels")
        prediction = predictor.predict(scene)
        one = ConfusionMatrix(dataset.classes.num_classes).add(scene.semantic, prediction)
        result.confusion.merge(one)
        result.scenes.append(SceneScore(name, one.miou(), one.overall_accuracy(), one.total))
        if len(result.predictions) < keep:
            result.predictions[name] = prediction
    return result
