"""The ``ws3d`` plugin end to end on tiny rooms built here: the boundary stage then the main stage with the
labelled extra batch and the two-view groups, boundary pair labels from the boundary network, the analysis
file, the exported offset head, Sup-only, resume inside the main stage equal to the uninterrupted run, and
ground truth of unlabelled scenes never reaching training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
import yaml
from wsseg_training.checkpoint import load_checkpoint
from wsseg_training.data.dataset import Dataset, DatasetWriter
from wsseg_training.engine.config import ConfigError, config_from_dict
from wsseg_training.engine.loop import Trainer
from wsseg_training.labels import simulate_labelled_scenes
from wsseg_training.labels.schema import save_weak_labels
from wsseg_training.methods import Ws3dMethod, get_method
from wsseg_training.methods.base import StepContext

from tests.conftest import REPO_ROOT, make_two_box_room
from wsseg.cli import main as wsseg_main
from wsseg.core.classes import IGNORE_INDEX, ClassTable

CLASSES = ClassTable("rooms", ("floor", "wall", "box"), ((100, 80, 60), (200, 200, 200), (40, 90, 160)))
OPTIONS = {"boundary_steps": 2, "instance_classes": ["box"], "instance_min_points": 5}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    root = tmp_path_factory.mktemp("rooms")
    with DatasetWriter(root, "rooms", CLASSES, sensor="rgbd") as writer:
        for i in range(4):
            writer.add(f"room_{i}", make_two_box_room(i, 1600), split="train")
        writer.add("val_0", make_two_box_room(9, 1600), split="val")
    return Dataset(root)


def config(steps: int = 4, **method: object) -> dict:
    return {"seed": 0, "profile": "tiny", "device": "cpu",
            "data": {"features": ["offset", "rgb"], "batch_scenes": 2, "crop_max_points": 0},
            "optim": {"lr": 0.01, "warmup_steps": 1},
            "train": {"steps": steps, "checkpoint_every_steps": 1, "keep_checkpoints": 0, "log_every_steps": 1},
            "method": {**OPTIONS, **method}}


class Recording(Ws3dMethod):
    """Records what every step's losses saw (stage, terms, the extra batch's scenes)."""

    log: ClassVar[list[tuple[str, tuple[str, ...], tuple[str, ...]]]] = []

    def losses(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        terms = super().losses(ctx)
        extra = () if ctx.batch.extra is None else tuple(ctx.batch.extra.host.names)
        Recording.log.append((ctx.stage.name, tuple(sorted(terms)), extra))
        return terms


class CrashAt(Ws3dMethod):
    def losses(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        if ctx.step == 4:
            raise KeyboardInterrupt
        return super().losses(ctx)


def test_ws3d_trains_both_stages_and_exports_the_offset_head(dataset: Dataset, tmp_path: Path) -> None:
    split = simulate_labelled_scenes(dataset, dataset.scene_names("train"), seed=1, fraction=0.3)
    labelled = set(split.labelled) | set(split.cuts)
    method = Recording(dataset.classes, OPTIONS, split)
    method.attach_analysis_truth(lambda name: dataset.load(name).semantic)
    Recording.log.clear()
    result = Trainer(config_from_dict(config()), method, dataset, tmp_path / "run", progress=False).run()
    assert len(result.losses) == 6 and np.isfinite(result.losses).all()  # 2 boundary + 4 main steps
    stages = [s for s, _, _ in Recording.log]
    assert stages == ["boundary"] * 2 + ["ws3d"] * 4
    assert Recording.log[0][1] == ("ce", "focal")
    assert set(Recording.log[-1][1]) >= {"ce", "offset_l1", "offset_dir", "energy_unary", "energy_pair"}
    for _, _, extra in Recording.log[2:]:
        assert extra and set(extra) <= labelled  # the extra batch: labelled scenes only
    # boundary stage: only labelled scenes; boundary ground truth only on labelled points
    for scene in method.scenes:
        has_labels = (scene.point_targets["labels"] != IGNORE_INDEX).any()
        assert has_labels == (scene.name in labelled)
        known = scene.point_targets["boundary"] != IGNORE_INDEX
        assert (known <= (scene.point_targets["labels"] != IGNORE_INDEX)).all()
        # unlabelled scenes: no ground truth at all in the targets
        if scene.name in split.unlabelled:
            assert (scene.point_targets["labels"] == IGNORE_INDEX).all()
            assert (scene.point_targets["instance"] == -1).all()
    analysis = json.loads((tmp_path / "run" / "ws3d.json").read_text())
    assert analysis["regions"]["scenes"] == 4 and analysis["regions"]["pairs_per_scene"] > 0
    assert analysis["boundary_unlabelled"]["scenes"] >= 1 and analysis["boundary_unlabelled"]["actual"] > 0
    assert len(analysis["confident_pair_share"]["share"]) == 4
    final = load_checkpoint(tmp_path / "run" / "model.pt")
    assert list(final["heads"]) == ["instance_offsets"]
    assert final["heads"]["instance_offsets"]["spec"]["out_channels"] == 3
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["training"]["method"]
    assert set(state["w"]) == set(dataset.scene_names("train"))


def test_ws3d_resume_in_the_main_stage_equals_the_uninterrupted_run(dataset: Dataset, tmp_path: Path) -> None:
    split = simulate_labelled_scenes(dataset, dataset.scene_names("train"), seed=1, fraction=0.3)
    straight = Trainer(config_from_dict(config()), Ws3dMethod(dataset.classes, OPTIONS, split), dataset,
                       tmp_path / "straight", progress=False).run()
    with pytest.raises(KeyboardInterrupt):
        Trainer(config_from_dict(config()), CrashAt(dataset.classes, OPTIONS, split), dataset, tmp_path / "resumed",
                progress=False).run()
    resumed = Trainer(config_from_dict(config()), Ws3dMethod(dataset.classes, OPTIONS, split), dataset,
                      tmp_path / "resumed", progress=False, resume=True).run()
    assert resumed.losses == straight.losses[4:]


def test_pair_share_rule_gives_the_unlabelled_scenes_the_chosen_share(dataset: Dataset, tmp_path: Path) -> None:
    """``boundary_threshold_rule: pair_share``: the w = 1 share the threshold search promised is the one the
    unlabelled scenes' pairs get, and the target is the labelled scenes' class-change share."""
    from wsseg_training.methods.ws3d.thresholds import labelled_class_change_share

    split = simulate_labelled_scenes(dataset, dataset.scene_names("train"), seed=1, fraction=0.3)
    options = {**OPTIONS, "boundary_threshold_rule": "pair_share"}
    method = Ws3dMethod(dataset.classes, options, split)
    Trainer(config_from_dict(config(steps=1, **options)), method, dataset, tmp_path / "run", progress=False).run()
    regions = json.loads((tmp_path / "run" / "ws3d.json").read_text())["regions"]
    unlabelled = [method.regions[s.name] for s in method.scenes
                  if (s.point_targets["labels"] == IGNORE_INDEX).all()]
    assert unlabelled
    w = np.concatenate([r.w for r in unlabelled])
    assert regions["pair_share_chosen"] == pytest.approx(float(w.mean()))
    target = labelled_class_change_share([s.point_targets["labels"] for s in method.scenes],
                                         [method.regions[s.name] for s in method.scenes], method.num_classes)
    assert regions["pair_share_target"] == pytest.approx(target)
    assert 0 < regions["boundary_threshold"] < 1 and "labelled_boundary_precision" in regions


def test_sup_only_is_one_supervised_stage(dataset: Dataset, tmp_path: Path) -> None:
    split = simulate_labelled_scenes(dataset, dataset.scene_names("train"), seed=1, fraction=0.3)
    Recording.log.clear()
    method = Recording(dataset.classes, {**OPTIONS, "unsupervised": False}, split)
    Trainer(config_from_dict(config(steps=2, unsupervised=False)), method, dataset, tmp_path / "sup",
            progress=False).run()
    assert [s for s, _, _ in Recording.log] == ["supervised"] * 2
    assert Recording.log[0][1] == ("ce", "offset_dir", "offset_l1")
    assert "boundary" not in method.regions and not method.regions  # no regions needed


def test_ws3d_refuses_bad_options_and_labels(dataset: Dataset) -> None:
    cls = get_method("ws3d")
    with pytest.raises(ConfigError, match="gamma"):
        cls.parse_options({"gamma": 1.5})
    with pytest.raises(ValueError, match="instance_classes"):
        cls(dataset.classes, {"instance_classes": ["sofa"]},
            simulate_labelled_scenes(dataset, dataset.scene_names("train"), seed=1, fraction=0.3))
    with pytest.raises(ValueError, match="labelled_scenes"):
        cls(dataset.classes, {})


def test_cli_trains_with_the_shipped_config(dataset: Dataset, tmp_path: Path) -> None:
    """``wsseg train --method ws3d`` with configs/ws3d_cpu.yaml (cut to a few steps of the tiny profile): both
    stages run, the analysis truth is attached (boundary precision / recall on unlabelled scenes) and the
    checkpoint holds the offset head."""
    split = simulate_labelled_scenes(dataset, dataset.scene_names("train"), seed=1, fraction=0.3)
    labels = save_weak_labels(split, tmp_path / "labelled.json")
    shipped = yaml.safe_load((REPO_ROOT / "configs" / "ws3d_cpu.yaml").read_text())
    shipped["data"]["crop_max_points"] = 0
    shipped["method"].update(boundary_steps=2, instance_classes=["box"], instance_min_points=5)
    (tmp_path / "ws3d.yaml").write_text(yaml.safe_dump(shipped))
    code = wsseg_main(["train", "--method", "ws3d", "--data", str(dataset.root), "--labels", str(labels), "--config",
                       str(tmp_path / "ws3d.yaml"), "--out", str(tmp_path / "run"), "--profile", "tiny", "--steps",
                       "3", "--device", "cpu", "--no-progress", "--threads", "1"])
    assert code == 0
    assert list(load_checkpoint(tmp_path / "run" / "model.pt")["heads"]) == ["instance_offsets"]
    analysis = json.loads((tmp_path / "run" / "ws3d.json").read_text())
    assert analysis["boundary_unlabelled"]["scenes"] >= 1  # wsseg train attached the analysis truth
    assert len(analysis["confident_pair_share"]["share"]) == 3
