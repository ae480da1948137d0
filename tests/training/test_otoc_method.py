"""The ``otoc`` plugin end to end on tiny rooms built here: it trains through ``wsseg train``, pseudo labels
grow from Y_0 to Y_1, ground truth never reaches training, resume inside a round equals the uninterrupted run,
the export is the backbone alone, and ``wsseg eval`` reports both inference modes."""

from __future__ import annotations

import json
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
from wsseg_training.labels import load_weak_labels, save_weak_labels, simulate_clicks
from wsseg_training.methods import OtocMethod, get_method
from wsseg_training.methods.otoc import OtocConfig
from wsseg_training.methods.otoc.inference import OtocFullPredictor
from wsseg_training.methods.otoc.method import ROUNDS_FILE

from tests.conftest import make_two_box_room
from wsseg.cli import main as wsseg_main
from wsseg.core.classes import ClassTable
from wsseg.core.scene import Scene, load_scene, save_scene

CLASSES = ClassTable("rooms", ("floor", "wall", "box"), ((100, 80, 60), (200, 200, 200), (40, 90, 160)))


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # two contending threads run these ~5x slower


@pytest.fixture(scope="module")
def rooms(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(dataset dir with 3 train + 1 val rooms, clicks file with one click per object)."""
    root = tmp_path_factory.mktemp("otoc")
    with DatasetWriter(root / "data", "rooms", CLASSES, sensor="rgbd") as writer:
        for i in range(4):
            writer.add(f"room{i}", make_two_box_room(i), split="val" if i == 3 else "train")
    dataset = Dataset(root / "data")
    clicks = simulate_clicks(dataset, dataset.scene_names("train"), seed=0)
    save_weak_labels(clicks, root / "clicks.json")
    return root / "data", root / "clicks.json"


def otoc_config(steps_per_round: int = 4, rounds: int = 2, checkpoint_every: int = 3, **method: object) -> dict:
    return {"seed": 0, "profile": "tiny", "device": "cpu",
            "data": {"batch_scenes": 2, "crop_max_points": 0},
            "optim": {"optimizer": "adamw", "lr": 0.01, "schedule": "constant"},
            "train": {"steps": steps_per_round * rounds, "checkpoint_every_steps": checkpoint_every,
                      "keep_checkpoints": 10},
            "method": {"iterations": rounds, "threshold": 0.6, "otoc": {"samples_per_class": 8}, **method}}


def train(data: Path, clicks: Path, out: Path, config: dict, truth: bool = False, resume: bool = False) -> Trainer:
    dataset = Dataset(data)
    weak = load_weak_labels(clicks, dataset)
    method = OtocMethod(dataset.classes, config["method"], weak)
    if truth:
        method.attach_analysis_truth(lambda name: dataset.load(name).semantic)
    trainer = Trainer(config_from_dict(config), method, dataset, out, resume=resume, progress=False,
                      provenance={"labels": str(clicks)})
    trainer.run()
    return trainer


@pytest.fixture(scope="module")
def cli_run(rooms: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-round otoc run trained through ``wsseg train`` (analysis truth attached by the CLI)."""
    data, clicks = rooms
    root = tmp_path_factory.mktemp("cli")
    (root / "otoc.yaml").write_text(yaml.safe_dump(otoc_config()))
    run = root / "run"
    code = wsseg_main(["train", "--method", "otoc", "--data", str(data), "--labels", str(clicks), "--config",
                       str(root / "otoc.yaml"), "--out", str(run), "--no-progress"])
    assert code == 0
    return run


def test_trains_through_the_cli_and_pseudo_labels_grow(cli_run: Path) -> None:
    run = cli_run
    rounds = json.loads((run / ROUNDS_FILE).read_text())["rounds"]
    assert [r["pseudo_labels"] for r in rounds] == [0, 1]
    y0, y1 = rounds
    assert 0 < y0["coverage"] < y1["coverage"] <= 1.0  # propagation labelled more than the clicked super-voxels
    assert y0["analysis_miou"] == pytest.approx(1.0)  # clicked super-voxels lie inside objects here
    assert 0 < y1["analysis_miou"] <= 1.0
    checkpoint = load_checkpoint(run / "checkpoints" / "last.pt")
    modules = checkpoint["training"]["modules"]
    assert "bank.prototypes" in modules and any(k.startswith("relation.") for k in modules)
    assert not any(k.startswith(("relation.", "bank.")) for k in checkpoint["model"])
    labels = checkpoint["training"]["method"]["labels"]
    assert sorted(labels) == ["room0", "room1", "room2"]


def test_training_never_reads_ground_truth(rooms: tuple[Path, Path], tmp_path: Path) -> None:
    """Poison every ground-truth label of a copy of the dataset except at the clicked points: same training."""
    data, clicks = rooms
    poisoned = tmp_path / "poisoned"
    shutil.copytree(data, poisoned)
    weak = load_weak_labels(clicks, Dataset(data))
    rng = np.random.default_rng(1)
    for name in Dataset(poisoned).scene_names("train"):
        path = Dataset(poisoned).scene_path(name)
        scene = load_scene(path)
        semantic = rng.integers(0, 3, scene.num_points).astype(np.int16)
        instance = rng.integers(0, 50, scene.num_points).astype(np.int32)
        clicked = weak.point_labels(name, scene.num_points) >= 0
        semantic[clicked] = scene.semantic[clicked]  # type: ignore[index]
        save_scene(path, Scene(xyz=scene.xyz, rgb=scene.rgb, semantic=semantic, instance=instance,
                               supervoxel=scene.supervoxel), num_classes=3)
    config = otoc_config(steps_per_round=2)
    clean = train(data, clicks, tmp_path / "clean", config)
    # the poisoned copy, with its (poisoned) truth attached for the analysis log: still bit-identical
    dirty = train(poisoned, clicks, tmp_path / "dirty", config, truth=True)
    for (name, a), b in zip(clean.model.state_dict().items(), dirty.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    for a, b in zip(clean.modules.state_dict().values(), dirty.modules.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(clean.scenes, dirty.scenes, strict=True):
        np.testing.assert_array_equal(a.point_targets["labels"], b.point_targets["labels"])
        assert not hasattr(a, "semantic")
    assert "analysis_miou" in json.loads((tmp_path / "dirty" / ROUNDS_FILE).read_text())["rounds"][1]


def test_resume_inside_a_round_equals_uninterrupted(rooms: tuple[Path, Path], tmp_path: Path) -> None:
    data, clicks = rooms
    config = otoc_config(steps_per_round=3, checkpoint_every=2, steps_per_iteration=3)  # step 4 is in round 2
    whole = train(data, clicks, tmp_path / "whole", config)
    part = tmp_path / "part"
    shutil.copytree(tmp_path / "whole", part)
    (part / "checkpoints" / "last.pt").unlink()
    shutil.copy(part / "checkpoints" / "step_00000004.pt", part / "checkpoints" / "last.pt")
    (part / "model.pt").unlink()
    resumed = train(data, clicks, part, config, resume=True)
    assert load_checkpoint(part / "checkpoints" / "step_00000004.pt")["training"]["step"] == 4
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    for a, b in zip(whole.modules.state_dict().values(), resumed.modules.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(whole.scenes, resumed.scenes, strict=True):
        np.testing.assert_array_equal(a.point_targets["labels"], b.point_targets["labels"])
    rounds = json.loads((part / ROUNDS_FILE).read_text())["rounds"]
    assert [r["pseudo_labels"] for r in rounds] == [0, 1]


@pytest.mark.parametrize("method", [{"variant": "unet"}, {"variant": "gp"}, {"memory_bank": False},
                                    {"star": True}, {"otoc": {"fusion": "product", "selection": "marginal"}}])
def test_variants_train(rooms: tuple[Path, Path], tmp_path: Path, method: dict) -> None:
    data, clicks = rooms
    trainer = train(data, clicks, tmp_path / "run", otoc_config(steps_per_round=2, **method))
    rounds = json.loads((tmp_path / "run" / ROUNDS_FILE).read_text())["rounds"]
    names = set(dict(trainer.modules.named_children()))
    if method.get("star"):
        assert len(rounds) == 1 and names == set()
    else:
        assert rounds[1]["coverage"] > rounds[0]["coverage"]
        bank = "bank" if method.get("memory_bank", True) else "sums"
        expected = {"unet": set(), "gp": set()}.get(method.get("variant", ""), {"relation", bank})
        assert names == expected
    predictor = OtocFullPredictor.from_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    scene = Dataset(data).load("room3")
    labels = predictor.predict(scene)
    assert labels.shape == (scene.num_points,) and labels.min() >= 0 and labels.max() < 3


def test_export_is_the_backbone_and_eval_reports_both_modes(rooms: tuple[Path, Path], cli_run: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    data, _ = rooms
    run = tmp_path / "run"
    shutil.copytree(cli_run, run)
    bundle = tmp_path / "bundle"
    assert wsseg_main(["export", "--checkpoint", str(run / "model.pt"), "--out", str(bundle)]) == 0
    meta = yaml.safe_load((bundle / "model.yaml").read_text())
    assert list(meta["classes"]["names"]) == ["floor", "wall", "box"]
    assert meta["provenance"]["method"] == "otoc"
    capsys.readouterr()
    assert wsseg_main(["eval", "--run", str(run), "--data", str(data), "--render", "0", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "pytorch" in printed and "otoc-full" in printed
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"val", "val-full"} <= set(metrics)
    assert 0.0 <= metrics["val-full"]["miou"] <= 1.0
    assert wsseg_main(["eval", "--run", str(run), "--bundle", str(bundle), "--data", str(data), "--render", "0",
                       "--no-progress"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    # the bundle is the backbone Θ alone: the robot's numbers are the 1T1C† numbers
    assert metrics["val-onnx"]["miou"] == pytest.approx(metrics["val"]["miou"], abs=0.01)


def test_clear_errors(rooms: tuple[Path, Path], cli_run: Path, tmp_path: Path) -> None:
    data, clicks = rooms
    dataset = Dataset(data)
    weak = load_weak_labels(clicks, dataset)
    with pytest.raises(ConfigError, match="variant"):
        OtocMethod(dataset.classes, {"variant": "crf"}, weak)
    with pytest.raises(ConfigError, match="steps_per_iteration"):
        OtocMethod(dataset.classes, {"steps_per_iteration": 0}, weak)
    with pytest.raises(ConfigError, match="selection"):
        OtocMethod(dataset.classes, {"otoc": {"selection": "vote"}}, weak)
    unknown = r"field 'method\.otoc': unknown field\(s\) \['momentun'\]; known: .*'momentum'"
    with pytest.raises(ConfigError, match=unknown):
        OtocMethod(dataset.classes, {"otoc": {"momentun": 0.99}}, weak)
    assert OtocMethod(dataset.classes, {"otoc": {"selection": "code"}}, weak).config.selection == "code"
    with pytest.raises(ConfigError, match=r"structure_classes.*'ground'"):
        OtocMethod(dataset.classes, {"otoc": {"structure_classes": ["ground"]}}, weak)
    assert (OtocMethod(dataset.classes, {}, weak).config.fusion, OtocConfig().selection) == ("geometric", "agree")
    with pytest.raises(ValueError, match="clicks"):
        get_method("otoc")(dataset.classes, {}, None)
    bare = tmp_path / "bare"
    shutil.copytree(data, bare)
    path = Dataset(bare).scene_path("room0")
    scene = load_scene(path)
    save_scene(path, Scene(xyz=scene.xyz, rgb=scene.rgb, semantic=scene.semantic, instance=scene.instance),
               num_classes=3)
    with pytest.raises(ValueError, match="wsseg data supervoxels"):
        train(bare, clicks, tmp_path / "run", otoc_config())
    with pytest.raises(ValueError, match="wsseg data supervoxels"):
        OtocFullPredictor.from_checkpoint(cli_run / "checkpoints" / "last.pt").predict(Dataset(bare).load("room0"))
    with pytest.raises(ValueError, match="otoc run"):
        OtocFullPredictor.from_checkpoint(cli_run / "model.pt")  # the exported-side checkpoint has no R


@pytest.mark.parametrize("anchor", ["supervoxel", "click"])
def test_anchor_decides_what_later_rounds_keep(rooms: tuple[Path, Path], tmp_path: Path, anchor: str) -> None:
    data, clicks = rooms
    config = otoc_config(steps_per_round=2, otoc={"samples_per_class": 8, "anchor": anchor})
    trainer = train(data, clicks, tmp_path / "run", config)
    method = trainer.method
    assert isinstance(method, OtocMethod)
    weak = load_weak_labels(clicks, Dataset(data))
    for scene in method.scenes:
        clicked = weak.point_labels(scene.name, scene.num_points)  # type: ignore[attr-defined]
        expected = method.initial[scene.name] if anchor == "supervoxel" else clicked
        np.testing.assert_array_equal(method.anchors[scene.name], expected)
        labels = scene.point_targets["labels"]  # Y_1: the anchors always survive
        pinned = expected >= 0
        np.testing.assert_array_equal(labels[pinned], expected[pinned])
