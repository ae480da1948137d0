"""The ``mprm`` plugin end to end on box scenes built here: classification on the file's fixed sub-clouds (or balls
with scene tags), pseudo labels only from annotated classes, the retrain stage from fresh weights, the outputs,
resume inside the retrain stage bit-identical, the CLI, bad options named."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from scipy.spatial.distance import pdist
from wsseg_training.checkpoint import load_checkpoint
from wsseg_training.data.dataset import Dataset
from wsseg_training.engine.config import ConfigError, config_from_dict
from wsseg_training.engine.loop import Trainer
from wsseg_training.engine.state import stage_seed
from wsseg_training.evaluation.evaluate import evaluate_split
from wsseg_training.labels import SubcloudTags, simulate_scene_tags, simulate_subcloud_tags
from wsseg_training.labels.schema import save_weak_labels
from wsseg_training.methods import MprmMethod
from wsseg_training.methods.base import StepContext
from wsseg_training.methods.mprm.cams import SCORES, grid_passes, subcloud_passes
from wsseg_training.methods.mprm.method import CLASSIFIER_FILE, RECORD_FILE
from wsseg_training.methods.mprm.predictor import MprmClassifier
from wsseg_training.model.unet import SparseUNet

from tests.conftest import REPO_ROOT, make_box_dataset
from wsseg.cli import main as wsseg_main
from wsseg.core.classes import IGNORE_INDEX

RADIUS_M = 1.5  # 3 x 3 x 2 m boxes: 2 x 2 x 1 sub-clouds


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def boxes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, SubcloudTags]:
    """3 train + 1 val box scenes and sub-cloud tags whose last sub-cloud of s0 claims only 'box' (not what its
    points hold: training must use the file, never re-draw tags from dense labels)."""
    dataset = make_box_dataset(tmp_path_factory.mktemp("mprm") / "data", train=3, val=1, points=3000)
    tags = simulate_subcloud_tags(dataset, dataset.scene_names("train"), seed=0, radius_m=RADIUS_M)
    s0 = list(tags.scenes["s0"])
    s0[-1] = replace(s0[-1], classes=(2,))
    return dataset, replace(tags, scenes={**tags.scenes, "s0": tuple(s0)})


def mprm_config(steps: int = 8, **method: Any) -> dict:
    return {"seed": 0, "profile": "tiny", "device": "cpu",
            "data": {"batch_scenes": 2, "crop_max_points": 0, "features": ["offset", "rgb"]},
            "optim": {"optimizer": "adamw", "lr": 0.01, "schedule": "constant"},
            "train": {"steps": steps, "checkpoint_every_steps": 1, "keep_checkpoints": 20},
            "method": {"radius_m": RADIUS_M, **method}}


class Recording(MprmMethod):
    """MPRM that records what its steps see: the classification batches and the weights at the first retrain step."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[list[str], list[int], np.ndarray, list[np.ndarray]]] = []
        self.retrain_start: dict[str, torch.Tensor] | None = None

    def losses(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        host = ctx.batch.host
        if ctx.stage_index == 0:
            self.seen.append((host.names, host.subcloud.tolist(), host.tags.copy(),  # type: ignore[union-attr]
                              [host.point_index[host.points_of(b)] for b in range(host.size)]))
        elif self.retrain_start is None:
            # parameters only: the step's forward pass already moved the BatchNorm running statistics
            self.retrain_start = {k: v.detach().clone() for k, v in ctx.backbone.named_parameters()}
        return super().losses(ctx)


def run(dataset: Dataset, weak: Any, out: Path, config: dict, resume: bool = False,
        method_class: type[MprmMethod] = Recording) -> tuple[Trainer, MprmMethod]:
    method = method_class(dataset.classes, config["method"], weak)
    method.attach_analysis_truth(lambda name: dataset.load(name).semantic)
    trainer = Trainer(config_from_dict(config), method, dataset, out, resume=resume, progress=False,
                      provenance={"labels": "weak.json"})
    trainer.run()
    return trainer, method


@pytest.fixture(scope="module")
def whole_run(boxes: tuple[Dataset, SubcloudTags], tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[Path, Trainer, Recording]:
    dataset, tags = boxes
    out = tmp_path_factory.mktemp("whole") / "run"
    trainer, method = run(dataset, tags, out, mprm_config())
    return out, trainer, method  # type: ignore[return-value]


def test_classification_sees_the_files_fixed_subclouds_and_their_tags(
        boxes: tuple[Dataset, SubcloudTags], whole_run: tuple[Path, Trainer, Recording]) -> None:
    dataset, tags = boxes
    _, trainer, method = whole_run
    s0 = next(s for s in trainer.scenes if s.name == "s0")
    assert s0.subclouds == tags.scenes["s0"] and s0.subclouds[-1].classes == (2,)  # the file's, tampered one too
    assert len(method.seen) == 4  # classify_share 0.5 of 8 steps
    visited = set()
    for names, subclouds, sample_tags, points in method.seen:
        for name, k, tag, pick in zip(names, subclouds, sample_tags, points, strict=True):
            subcloud = tags.scenes[name][k]
            visited.add((name, k))
            assert np.flatnonzero(tag).tolist() == list(subcloud.classes)  # the file's tags (s0's last: box only)
            np.testing.assert_array_equal(np.sort(pick), np.flatnonzero(subcloud.mask(dataset.load(name).xyz)))
    assert len(visited) == 8  # 12 sub-clouds, 8 samples: no repeat inside an epoch


def test_pseudo_labels_take_only_classes_of_every_subcloud_holding_the_point(
        boxes: tuple[Dataset, SubcloudTags], whole_run: tuple[Path, Trainer, Recording]) -> None:
    _, tags = boxes
    _, trainer, _ = whole_run
    for scene in trainer.scenes:
        labels = scene.point_targets["labels"]
        allowed = np.ones((scene.num_points, 3), bool)
        for subcloud in tags.scenes[scene.name]:
            allowed[subcloud.mask(scene.xyz)] &= np.isin(np.arange(3), subcloud.classes)
        covered = labels != IGNORE_INDEX
        assert covered.mean() > 0.9
        assert allowed[np.flatnonzero(covered), labels[covered]].all()
        assert not hasattr(scene, "semantic")


def test_retrain_stage_starts_from_fresh_weights(whole_run: tuple[Path, Trainer, Recording]) -> None:
    out, trainer, method = whole_run
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stage_seed(0, 1, 0))
        fresh = dict(SparseUNet(trainer.model.config).named_parameters())
    assert method.retrain_start is not None and set(method.retrain_start) == set(fresh)
    for name, value in fresh.items():
        torch.testing.assert_close(method.retrain_start[name], value, msg=name)
    classifier = load_checkpoint(out / CLASSIFIER_FILE)
    assert not torch.equal(classifier["model"]["stem.conv.weight"], fresh["stem.conv.weight"])


def test_outputs_record_and_offline_predictors(boxes: tuple[Dataset, SubcloudTags],
                                              whole_run: tuple[Path, Trainer, Recording]) -> None:
    dataset, _ = boxes
    out, _, _ = whole_run
    record = json.loads((out / RECORD_FILE).read_text())
    assert record["labels"] == "subcloud_tags" and record["feature"] == "encoder2" and record["coverage"] > 0.9
    assert set(record["train_pseudo_label_miou"]) == {"pcam", "mprm", "mprm_crf"}
    assert all(0 <= v <= 1 for v in record["train_pseudo_label_miou"].values())
    predictors = MprmMethod.offline_predictors(out / "checkpoints" / "last.pt", torch.device("cpu"))
    assert list(predictors) == ["-pcam", "-mprm", "-mprm-crf"]
    scene = dataset.load("s3")
    for predictor in predictors.values():
        labels = predictor.predict(scene)
        assert labels.shape == (scene.num_points,) and labels.min() >= 0 and labels.max() < 3
        assert np.isfinite(evaluate_split(predictor, dataset, "val", progress=False).confusion.miou())


def test_ablation_variants_reproduce_the_methods_own_labels(boxes: tuple[Dataset, SubcloudTags],
                                                           whole_run: tuple[Path, Trainer, Recording]) -> None:
    """bench/mprm.py's variants: max + CRF over the annotated sub-clouds is what the retrain stage trained on, every
    variant keeps to the tags, and the same votes unmasked on a val scene are the offline predictors' labels."""
    dataset, tags = boxes
    out, trainer, _ = whole_run
    classifier = MprmClassifier(out / CLASSIFIER_FILE)
    scene = dataset.load("s0")
    votes = classifier.variant_votes(scene, subcloud_passes(tags.scenes["s0"]), SCORES)
    labels = classifier.variant_labels(scene, votes, ("max", "pcam"))
    assert set(labels) == {*SCORES, "max+crf", "pcam+crf"}
    trained = next(s for s in trainer.scenes if s.name == "s0").point_targets["labels"]
    np.testing.assert_array_equal(np.where(labels["max+crf"] >= 0, labels["max+crf"], IGNORE_INDEX), trained)
    allowed = np.ones((scene.num_points, 3), bool)
    for subcloud in tags.scenes["s0"]:
        allowed[subcloud.mask(scene.xyz)] &= np.isin(np.arange(3), subcloud.classes)
    assert not allowed.all()  # the tampered sub-cloud allows 'box' only
    for name, value in labels.items():
        covered = np.flatnonzero(value >= 0)
        assert covered.size > 0.9 * scene.num_points and allowed[covered, value[covered]].all(), name
    val = dataset.load("s3")
    votes = classifier.variant_votes(val, grid_passes(val.xyz, RADIUS_M), ("pcam", "max"))
    assert set(votes.sums) == {"pcam", "max"}
    unmasked, own = classifier.variant_labels(val, votes, ("max",)), classifier.labels(val)
    for variant, key in (("pcam", "pcam"), ("max", "mprm"), ("max+crf", "mprm_crf")):
        np.testing.assert_array_equal(unmasked[variant], own[key], err_msg=variant)


def test_resume_inside_the_retrain_stage_is_bit_identical(boxes: tuple[Dataset, SubcloudTags],
                                                          whole_run: tuple[Path, Trainer, Recording],
                                                          tmp_path: Path) -> None:
    dataset, tags = boxes
    out, trainer, _ = whole_run
    part = tmp_path / "part"
    (part / "checkpoints").mkdir(parents=True)
    for name in ("config.yaml", CLASSIFIER_FILE, RECORD_FILE):
        (part / name).write_bytes((out / name).read_bytes())
    (part / "checkpoints" / "last.pt").write_bytes((out / "checkpoints" / "step_00000006.pt").read_bytes())
    resumed, _ = run(dataset, tags, part, mprm_config(), resume=True)  # step 6: inside retrain (steps 4-7)
    for a, b in zip(trainer.scenes, resumed.scenes, strict=True):
        np.testing.assert_array_equal(a.point_targets["labels"], b.point_targets["labels"])
    final, again = load_checkpoint(out / "model.pt")["model"], load_checkpoint(part / "model.pt")["model"]
    for name, value in final.items():
        assert torch.equal(value, again[name]), name


def test_scene_tags_train_on_balls_with_the_scenes_tags(boxes: tuple[Dataset, SubcloudTags], tmp_path: Path) -> None:
    dataset, _ = boxes
    tags = simulate_scene_tags(dataset, dataset.scene_names("train"), seed=0)
    _, method = run(dataset, tags, tmp_path / "run", mprm_config(steps=4, crf=False))
    assert method.classify_sampling().region == "ball"
    for names, subclouds, sample_tags, points in method.seen:
        assert subclouds == [-1, -1]
        for name, tag, pick in zip(names, sample_tags, points, strict=True):
            assert np.flatnonzero(tag).tolist() == list(tags.tags[name])
            xyz = dataset.load(name).xyz.astype(np.float64)
            assert pdist(xyz[pick]).max() < 2 * RADIUS_M  # a ball of radius_m
    record = json.loads((tmp_path / "run" / RECORD_FILE).read_text())
    assert record["labels"] == "scene_tags" and set(record["train_pseudo_label_miou"]) == {"pcam", "mprm"}


def test_scene_sample_scene_classifies_whole_scenes_with_exact_tags(boxes: tuple[Dataset, SubcloudTags],
                                                                    tmp_path: Path) -> None:
    dataset, _ = boxes
    tags = simulate_scene_tags(dataset, dataset.scene_names("train"), seed=0)
    _, method = run(dataset, tags, tmp_path / "run", mprm_config(steps=4, crf=False, scene_sample="scene"))
    assert method.classify_sampling().region == "scene"
    for names, _, sample_tags, points in method.seen:
        for name, tag, pick in zip(names, sample_tags, points, strict=True):
            assert np.flatnonzero(tag).tolist() == list(tags.tags[name])
            np.testing.assert_array_equal(np.sort(pick), np.arange(dataset.load(name).num_points))  # every point
    for scene in method.scenes:  # the pseudo labels: one pass over the whole scene, masked by its tags
        (one,) = method.scene_passes(scene)
        assert one.classes == tuple(np.flatnonzero(scene.tags).tolist())
        assert np.linalg.norm(scene.xyz - one.centre, axis=1).max() < one.radius_m
    with pytest.raises(ConfigError, match=r"method\.scene_sample"):
        MprmMethod.parse_options({"scene_sample": "crop"}, where="x.yaml")


def test_bad_options_are_named(boxes: tuple[Dataset, SubcloudTags], tmp_path: Path) -> None:
    dataset, tags = boxes
    with pytest.raises(ConfigError, match="feature_level 5 is outside the 3-level"):
        run(dataset, tags, tmp_path / "a", mprm_config(feature_level=5))
    with pytest.raises(ConfigError, match=r"method\.paths"):
        MprmMethod.parse_options({"paths": ["pcam", "nope"]}, where="x.yaml")
    with pytest.raises(ConfigError, match=r"method\.fusion"):
        MprmMethod.parse_options({"fusion": "mean"}, where="x.yaml")
    with pytest.raises(ValueError, match="scene_tags or subcloud_tags"):
        MprmMethod(dataset.classes, {}, None)


def test_cli_trains_with_the_shipped_config(boxes: tuple[Dataset, SubcloudTags], tmp_path: Path) -> None:
    dataset, tags = boxes
    labels = save_weak_labels(tags, tmp_path / "subclouds.json")
    config = yaml.safe_load((REPO_ROOT / "configs" / "mprm_cpu.yaml").read_text())
    config["method"]["radius_m"] = RADIUS_M
    config["data"]["crop_max_points"] = 0
    (tmp_path / "mprm.yaml").write_text(yaml.safe_dump(config))
    code = wsseg_main(["train", "--method", "mprm", "--data", str(dataset.root), "--labels", str(labels), "--config",
                       str(tmp_path / "mprm.yaml"), "--out", str(tmp_path / "run"), "--profile", "tiny", "--steps",
                       "4", "--device", "cpu", "--no-progress", "--threads", "1"])
    assert code == 0
    assert (tmp_path / "run" / "model.pt").is_file() and (tmp_path / "run" / CLASSIFIER_FILE).is_file()
    record = json.loads((tmp_path / "run" / RECORD_FILE).read_text())
    assert "train_pseudo_label_miou" in record  # wsseg train attaches the analysis truth
