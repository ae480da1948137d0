"""The ``densify`` plugin end to end on tiny rooms built here: K-means rounds on the schedule, matching off at
first, assignment filtering after the warm-up, bootstrapping on a fresh network, resume across a K-means epoch
and inside bootstrapping bit-identical, the offline predictors, bad options named."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from wsseg_training.checkpoint import load_checkpoint
from wsseg_training.data.dataset import Dataset, DatasetWriter
from wsseg_training.engine.config import ConfigError, config_from_dict
from wsseg_training.engine.loop import Trainer
from wsseg_training.evaluation.evaluate import TorchPredictor
from wsseg_training.labels import load_weak_labels, save_weak_labels, simulate_scene_tags
from wsseg_training.methods import DensifyMethod
from wsseg_training.methods.densify.method import DENSIFY_FILE, PRIMITIVE_KEY
from wsseg_training.methods.densify.predictor import DensifyPrimitivePredictor

from wsseg.cli import main as wsseg_main
from wsseg.core.classes import IGNORE_INDEX, ClassTable
from wsseg.core.scene import Scene

CLASSES = ClassTable("rooms", ("floor", "wall", "box"), ((100, 80, 60), (200, 200, 200), (40, 90, 160)))
BASE_RGB = np.array([[120, 100, 80], [200, 200, 190], [40, 90, 160]], dtype=np.float64)


def make_room(seed: int, with_box: bool, n: int = 1500) -> Scene:
    """Floor, wall and (optionally) a box; super-voxels = 0.5 m cells within each object."""
    rng = np.random.default_rng(seed)
    k = n // 3
    floor = np.column_stack([rng.uniform(0, 3, k), rng.uniform(0, 3, k), rng.normal(0, 0.005, k)])
    wall = np.column_stack([rng.uniform(0, 3, k), np.full(k, 3.0) + rng.normal(0, 0.005, k), rng.uniform(0, 2, k)])
    parts, semantic = [floor, wall], [0, 1]
    if with_box:
        parts.append(rng.uniform([0.8, 0.8, 0.0], [1.8, 1.8, 0.8], size=(k, 3)))
        semantic.append(2)
    xyz = np.concatenate(parts).astype(np.float32)
    sem = np.repeat(semantic, k).astype(np.int16)
    instance = sem.astype(np.int32)
    rgb = np.clip(BASE_RGB[sem] + rng.normal(0, 12, (xyz.shape[0], 3)), 0, 255).astype(np.uint8)
    cell = np.floor(xyz[:, :2] / 0.5).astype(np.int64)
    supervoxel = (instance.astype(np.int64) * 100 + cell[:, 0] * 10 + cell[:, 1]).astype(np.int32)
    return Scene(xyz=xyz, rgb=rgb, semantic=sem, instance=instance, supervoxel=supervoxel)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def rooms(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(dataset with 4 train rooms, 2 with a box, + 1 val room; its scene-tags file)."""
    root = tmp_path_factory.mktemp("densify")
    with DatasetWriter(root / "data", "rooms", CLASSES, sensor="rgbd") as writer:
        for i in range(5):
            writer.add(f"room{i}", make_room(i, with_box=i % 2 == 0), split="val" if i == 4 else "train")
    dataset = Dataset(root / "data")
    save_weak_labels(simulate_scene_tags(dataset, dataset.scene_names("train"), seed=0), root / "tags.json")
    return root / "data", root / "tags.json"


def densify_config(steps: int = 16, checkpoint_every: int = 1, **method: object) -> dict:
    """4 rooms in batches of 2 = 2 steps per epoch: 6 epochs, K-means at epochs 0, 2 (warm-up) and 4 (+ groups),
    matching from epoch 1; then 2 epochs of bootstrapping."""
    options = {"primitives": 6, "kmeans_every_epochs": 2, "warmup_epochs": 3, "match_off_epochs": 1,
               "bootstrap_epochs": 2, "min_supervoxel_points": 5, **method}
    return {"seed": 0, "profile": "tiny", "device": "cpu",
            "data": {"batch_scenes": 2, "crop_max_points": 0, "features": ["offset", "rgb"]},
            "optim": {"optimizer": "adamw", "lr": 0.01, "schedule": "constant"},
            "train": {"steps": steps, "checkpoint_every_steps": checkpoint_every, "keep_checkpoints": 20},
            "method": options}


def train(data: Path, tags: Path, out: Path, config: dict, resume: bool = False) -> Trainer:
    dataset = Dataset(data)
    method = DensifyMethod(dataset.classes, config["method"], load_weak_labels(tags, dataset))
    trainer = Trainer(config_from_dict(config), method, dataset, out, resume=resume, progress=False,
                      provenance={"labels": str(tags)})
    trainer.run()
    return trainer


@pytest.fixture(scope="module")
def whole_run(rooms: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Trainer]:
    data, tags = rooms
    out = tmp_path_factory.mktemp("whole") / "run"
    return out, train(data, tags, out, densify_config())


def method_state(run: Path, step: int) -> dict:
    return load_checkpoint(run / "checkpoints" / f"step_{step:08d}.pt")["training"]["method"]


def test_schedule_kmeans_matching_filtering_and_bootstrapping(whole_run: tuple[Path, Trainer]) -> None:
    run, trainer = whole_run
    # K-means rounds at epochs 0, 2, 4 (steps 0, 4, 8); groups only after the warm-up (epoch 3)
    for step, epoch, grouped in ((1, 0, False), (5, 2, False), (9, 4, True)):
        primitives = method_state(run, step)["primitives"]
        assert primitives["epoch"] == epoch
        assert (primitives["groups"] is not None) == grouped
        assert primitives["centroids"].shape == (6, 8)  # K x the tiny network's point features
    # matching is off in epoch 0 (steps 1-2), on from epoch 1 (the votes of the period count the matches)
    assert float(method_state(run, 2)["votes"].sum()) == 0
    assert float(method_state(run, 3)["votes"].sum()) > 0
    # bootstrapping: dense labels only where the predicted class is tagged, on a fresh network
    labels = method_state(run, 13)["bootstrap_labels"]
    assert labels.shape[0] == sum(s.num_points for s in trainer.scenes)
    for scene in trainer.scenes:
        kept = scene.point_targets["labels"]
        assert (kept != IGNORE_INDEX).any()
        assert set(np.unique(kept[kept >= 0]).tolist()) <= set(np.flatnonzero(scene.tags).tolist())
        assert scene.point_targets[PRIMITIVE_KEY].shape == (scene.num_points,)
    before = load_checkpoint(run / DENSIFY_FILE)
    after = load_checkpoint(run / "model.pt")
    assert not torch.equal(before["model"]["head.weight"], after["model"]["head.weight"])


def test_training_sees_tags_not_ground_truth(whole_run: tuple[Path, Trainer]) -> None:
    _, trainer = whole_run
    for scene in trainer.scenes:
        assert not hasattr(scene, "semantic")
        assert scene.tags is not None and scene.tags.tolist() in ([1, 1, 1], [1, 1, 0])


@pytest.mark.parametrize("resume_at", [4, 13])
def test_resume_across_a_kmeans_epoch_and_inside_bootstrapping_is_bit_identical(
        rooms: tuple[Path, Path], whole_run: tuple[Path, Trainer], tmp_path: Path, resume_at: int) -> None:
    """Step 4 ends epoch 1: the resumed run starts with the K-means round of epoch 2.  Step 13 is inside
    bootstrapping: its labels come back from the checkpoint."""
    data, tags = rooms
    run, whole = whole_run
    part = tmp_path / "part"
    shutil.copytree(run, part)
    (part / "checkpoints" / "last.pt").unlink()
    shutil.copy(part / "checkpoints" / f"step_{resume_at:08d}.pt", part / "checkpoints" / "last.pt")
    (part / "model.pt").unlink()
    resumed = train(data, tags, part, densify_config(), resume=True)
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    np.testing.assert_array_equal(method_state(run, 12)["primitives"]["assignment"],
                                  method_state(part, 12)["primitives"]["assignment"])
    np.testing.assert_array_equal(method_state(run, 12)["votes"], method_state(part, 12)["votes"])


def test_offline_predictors(whole_run: tuple[Path, Trainer], rooms: tuple[Path, Path]) -> None:
    run, _ = whole_run
    data, _ = rooms
    predictors = DensifyMethod.offline_predictors(run / "checkpoints" / "last.pt", torch.device("cpu"))
    assert set(predictors) == {"-primitives", "-no-bootstrap"}
    assert isinstance(predictors["-primitives"], DensifyPrimitivePredictor)
    assert isinstance(predictors["-no-bootstrap"], TorchPredictor)
    scene = Dataset(data).load("room4")
    for predictor in predictors.values():
        labels = predictor.predict(scene)
        assert labels.shape == (scene.num_points,) and labels.min() >= 0 and labels.max() < 3


@pytest.mark.parametrize("method", [{"losses": ["cam"]}, {"losses": ["cam", "us"]}, {"losses": ["cam", "match"]},
                                    {"match": "naive"}, {"bootstrap_epochs": 0, "filter_groups": 0}])
def test_ablation_variants_train(rooms: tuple[Path, Path], tmp_path: Path, method: dict) -> None:
    data, tags = rooms
    train(data, tags, tmp_path / "run", densify_config(steps=10, checkpoint_every=0, **method))
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["training"]["method"]
    matched = float(state["votes"].sum()) > 0
    assert matched == ("match" in method.get("losses", ["match"]))
    if not method.get("bootstrap_epochs", 2):
        assert not (tmp_path / "run" / DENSIFY_FILE).exists()
        predictors = DensifyMethod.offline_predictors(tmp_path / "run" / "checkpoints" / "last.pt",
                                                      torch.device("cpu"))
        assert set(predictors) == {"-primitives"}


def test_trains_through_the_cli_and_bad_options_are_named(rooms: tuple[Path, Path], tmp_path: Path) -> None:
    data, tags = rooms
    config = densify_config(steps=4, checkpoint_every=0, bootstrap_epochs=0)
    with pytest.raises(ConfigError, match="bootstrap"):
        train(data, tags, tmp_path / "short", densify_config(steps=4, bootstrap_epochs=2))
    (tmp_path / "densify.yaml").write_text(yaml.safe_dump(config))
    code = wsseg_main(["train", "--method", "densify", "--data", str(data), "--labels", str(tags), "--config",
                       str(tmp_path / "densify.yaml"), "--out", str(tmp_path / "run"), "--no-progress"])
    assert code == 0 and (tmp_path / "run" / "model.pt").is_file()
    with pytest.raises(ConfigError, match="losses"):
        DensifyMethod(CLASSES, {"losses": ["us", "match"]}, load_weak_labels(tags, Dataset(data)))
    with pytest.raises(ConfigError, match="conflict_labels"):
        DensifyMethod(CLASSES, {"conflict_labels": 4}, load_weak_labels(tags, Dataset(data)))
    with pytest.raises(ValueError, match="scene_tags"):
        DensifyMethod(CLASSES, {}, None)


def test_shipped_config_builds() -> None:
    from wsseg_training.engine.config import load_config

    from tests.conftest import REPO_ROOT

    config = load_config(REPO_ROOT / "configs" / "densify_cpu.yaml")
    options = DensifyMethod.parse_options(config.method, "configs/densify_cpu.yaml")
    assert options.losses == ("cam", "us", "match") and options.bootstrap_epochs_of(100) == 20
