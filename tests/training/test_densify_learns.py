"""Densify learns a known answer end to end: scenes whose tag sets differ, classes of clearly different colour
and height.  Tags -> ℓ_cam -> K-means primitives -> Hungarian matching -> the exported classifier -> the
evaluation's confusion matrix: a class-index slip anywhere on that path (tags, CAM outputs, matching, predictor,
eval mapping) drops the accuracy to chance or below.  (The synthetic-room benchmark, where 7 of 13 classes are
tagged in every room, cannot tell such a slip from the ill-posed tags; this test can.)  ~10 s CPU, one thread."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from wsseg_training.data.dataset import Dataset, DatasetWriter
from wsseg_training.engine.config import config_from_dict
from wsseg_training.engine.loop import Trainer
from wsseg_training.evaluation.evaluate import TorchPredictor, evaluate_split
from wsseg_training.labels import simulate_scene_tags
from wsseg_training.methods import DensifyMethod

from wsseg.core.classes import ClassTable
from wsseg.core.scene import Scene

COLOURS = np.array([[220, 30, 30], [30, 200, 30], [30, 30, 220], [220, 220, 30]], dtype=np.float64)
pytestmark = pytest.mark.usefixtures("one_torch_thread")
CLASSES = ClassTable("toy", ("red", "green", "blue", "yellow"), tuple(tuple(int(v) for v in c) for c in COLOURS))


def toy_scene(seed: int, present: tuple[int, ...], points: int = 300) -> Scene:
    """One 0.8 m cube of points per present class, side by side along x, class c at height 0.5 c metres;
    super-voxels = 0.3 m cells within each cube."""
    rng = np.random.default_rng(seed)
    xyz = np.concatenate([np.array([1.2 * j, 0.0, 0.5 * c]) + rng.uniform(-0.4, 0.4, (points, 3))
                          for j, c in enumerate(present)]).astype(np.float32)
    semantic = np.repeat(np.asarray(present), points).astype(np.int16)
    rgb = np.clip(COLOURS[semantic] + rng.normal(0, 10, (semantic.size, 3)), 0, 255).astype(np.uint8)
    cell = np.floor(xyz / 0.3).astype(np.int64) + 10
    key = semantic.astype(np.int64) * 10**6 + cell[:, 0] * 10**4 + cell[:, 1] * 100 + cell[:, 2]
    supervoxel = np.unique(key, return_inverse=True)[1].astype(np.int32)
    return Scene(xyz=xyz, rgb=rgb, semantic=semantic, instance=semantic.astype(np.int32), supervoxel=supervoxel)


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """Every pair of the 4 classes is one training scene (6 scenes: each class tagged in half of them, no two
    classes always together); 2 val scenes holding every class once (chance: 0.25)."""
    root = tmp_path_factory.mktemp("densify_toy") / "data"
    pairs = list(itertools.combinations(range(4), 2))
    with DatasetWriter(root, "toy", CLASSES, sensor="rgbd") as writer:
        for i, pair in enumerate(pairs):
            writer.add(f"t{i}", toy_scene(i, pair), split="train")
        for i, pair in enumerate(((0, 1), (2, 3))):
            writer.add(f"v{i}", toy_scene(100 + i, pair), split="val")
    return Dataset(root)


def trained_accuracy(dataset: Dataset, run: Path, losses: list[str], steps: int) -> tuple[float, np.ndarray]:
    """(overall accuracy, (C, C) confusion) of the exported classifier on the val scenes after ``steps`` steps."""
    config = {"seed": 0, "profile": "tiny", "device": "cpu",
              "data": {"batch_scenes": 2, "crop_max_points": 0, "features": ["offset", "rgb"]},
              "optim": {"optimizer": "adamw", "lr": 0.01, "schedule": "constant"},
              "train": {"steps": steps, "checkpoint_every_steps": 0},
              "method": {"losses": losses, "primitives": 8, "min_supervoxel_points": 3, "kmeans_every_epochs": 2,
                         "warmup_epochs": 4, "match_off_epochs": 2}}
    tags = simulate_scene_tags(dataset, dataset.scene_names("train"), seed=0)
    Trainer(config_from_dict(config), DensifyMethod(dataset.classes, config["method"], tags), dataset, run,
            progress=False, provenance={"labels": "toy"}).run()
    confusion = evaluate_split(TorchPredictor.from_checkpoint(run / "model.pt"), dataset, "val",
                               progress=False).confusion
    return confusion.overall_accuracy(), confusion.matrix


@pytest.mark.parametrize("losses", [["cam"], ["cam", "us", "match"]])
def test_densify_labels_toy_scenes_from_their_tags(toy: Dataset, tmp_path: Path, losses: list[str]) -> None:
    accuracy, matrix = trained_accuracy(toy, tmp_path / "run", losses, steps=36)
    # chance is 0.25 (each val class holds a quarter of the points); a permuted class index anywhere gives ~0
    assert accuracy > 0.75, f"{losses}: overall accuracy {accuracy:.2f}, confusion (rows = truth)\n{matrix}"
