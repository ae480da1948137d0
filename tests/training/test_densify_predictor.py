"""Densify's primitive-propagation predictor on a real tiny network (known answers at the extremes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from wsseg_training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from wsseg_training.evaluation.evaluate import TorchPredictor
from wsseg_training.methods.densify.predictor import DensifyPrimitivePredictor, primitive_classes

from tests.conftest import make_box_scene
from wsseg.core.scene import Scene


def box_scene() -> Scene:
    xyz, rgb, semantic = make_box_scene(seed=5, n=3000)
    return Scene(xyz=xyz, rgb=rgb, semantic=semantic.astype(np.int16))


def with_primitives(tiny_checkpoint: Path, tmp_path: Path, centroids: np.ndarray, votes: np.ndarray) -> Path:
    checkpoint = load_checkpoint(tiny_checkpoint)
    checkpoint["densify"] = {"centroids": torch.from_numpy(centroids), "votes": torch.from_numpy(votes)}
    return save_checkpoint(tmp_path / "densify.pt", checkpoint)


def test_primitive_classes_take_the_most_frequent_match() -> None:
    votes = np.array([[0, 3, 1], [0, 0, 0], [2, 2, 0]])
    assert primitive_classes(votes).tolist() == [1, -1, 0]


def test_unmatched_primitives_fall_back_to_the_classifier(tiny_checkpoint: Path, tmp_path: Path) -> None:
    model_channels = TorchPredictor.from_checkpoint(tiny_checkpoint).model.feature_channels
    rng = np.random.default_rng(0)
    centroids = rng.normal(size=(4, model_channels)).astype(np.float32)
    path = with_primitives(tiny_checkpoint, tmp_path, centroids, np.zeros((4, 3)))
    scene = box_scene()
    got = DensifyPrimitivePredictor.from_checkpoint(path).predict(scene)
    np.testing.assert_array_equal(got, TorchPredictor.from_checkpoint(tiny_checkpoint).predict(scene))


def test_every_point_takes_its_nearest_primitives_class(tiny_checkpoint: Path, tmp_path: Path) -> None:
    model_channels = TorchPredictor.from_checkpoint(tiny_checkpoint).model.feature_channels
    one = np.ones((1, model_channels), np.float32)  # a single primitive: nearest to every point
    path = with_primitives(tiny_checkpoint, tmp_path, one, np.array([[0.0, 0.0, 5.0]]))
    predictor = DensifyPrimitivePredictor.from_checkpoint(path)
    assert predictor.matched_primitives == 1
    assert set(predictor.predict(box_scene()).tolist()) == {2}


def test_a_checkpoint_without_primitives_is_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no Densify primitives"):
        DensifyPrimitivePredictor.from_checkpoint(tiny_checkpoint)
    model_channels = TorchPredictor.from_checkpoint(tiny_checkpoint).model.feature_channels
    path = with_primitives(tiny_checkpoint, tmp_path, np.ones((2, model_channels + 1), np.float32), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="channels"):
        DensifyPrimitivePredictor.from_checkpoint(path)
