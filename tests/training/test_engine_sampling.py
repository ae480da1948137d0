"""Sampling chosen by the method, with targets that match the sample: toy plugins that train through the
engine with a stage's sampling and check every batch they see.

* crops whose tags are the classes among the crop's labelled points (not the scene's);
* MPRM's annotated sub-cloud balls, each visited once per epoch, with the sub-cloud's tags;
* DSP's pairs whose two samples share a labelled class, kept on one process under DDP;
* WS3D's augmented views of the same points in the same order;
* random balls / whole scenes, and every sample a pure function of (seed, step, slot).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from wsseg_training.data.dataset import Dataset
from wsseg_training.engine.batches import Batch, StepBatches
from wsseg_training.engine.config import config_from_dict
from wsseg_training.engine.loop import Trainer, preprocess_for
from wsseg_training.engine.sampling import CROP, Sampling, ball_indices, multi_hot
from wsseg_training.engine.scenes import TrainScene, train_scene_from
from wsseg_training.engine.schedule import Stage, TrainPlan
from wsseg_training.labels import simulate_sparse_points, simulate_subcloud_tags
from wsseg_training.methods import FullMethod
from wsseg_training.methods.base import Method, StepContext
from wsseg_training.model.unet import SparseUNet

from tests.conftest import make_box_dataset
from wsseg.core.scene import Scene


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return make_box_dataset(tmp_path_factory.mktemp("boxes"), train=3, val=0, points=3000)


def config(steps: int | None = None, epochs: int | None = None, batch: int = 2, crop: int = 400) -> Any:
    train = {"steps": steps} if steps is not None else {"epochs": epochs}
    return config_from_dict({"seed": 5, "profile": "tiny", "device": "cpu",
                             "data": {"batch_scenes": batch, "crop_max_points": crop},
                             "optim": {"lr": 0.01}, "train": {**train, "checkpoint_every_steps": 0}})


class Recording(FullMethod):
    """``full`` with one stage of ``SAMPLING``, recording the batches it trains on."""

    SAMPLING: ClassVar[Sampling] = CROP
    batches: ClassVar[list[Batch]] = []

    def stages(self, plan: TrainPlan) -> list[Stage]:
        return [Stage("train", plan.total_steps, sampling=self.SAMPLING)]

    def losses(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        Recording.batches.append(ctx.batch.host)
        return super().losses(ctx)


def train(method: Method, dataset: Dataset, out: Path, **kwargs: Any) -> list[Batch]:
    Recording.batches = []
    Trainer(config(**kwargs), method, dataset, out, progress=False).run()
    return list(Recording.batches)


def test_crop_tags_are_the_classes_among_its_labelled_points(dataset: Dataset, tmp_path: Path) -> None:
    batches = train(Recording(dataset.classes), dataset, tmp_path / "run", steps=4)
    lost = 0
    for batch in batches:
        assert batch.tags is not None and batch.tags.shape == (2, 3)
        for b in range(batch.size):
            labels = batch.point_targets["labels"][batch.points_of(b)]
            assert np.array_equal(batch.tags[b], multi_hot(np.unique(labels[labels >= 0]), 3))
            lost += int(batch.tags[b].sum() < 3)
    # some 400-point crop lost a class of its scene: a scene-level target would have claimed it
    assert lost > 0


class SubcloudClassifier(Method):
    """MPRM-like toy: sub-cloud tags only, one epoch of sub-cloud balls, BCE of pooled logits vs the tags."""

    name = "toy_subcloud"
    label_kinds: ClassVar[tuple[str, ...]] = ("subcloud_tags",)
    requires_labels = True
    batches: ClassVar[list[Batch]] = []

    def make_targets(self, name: str, scene: Scene) -> TrainScene | None:
        return train_scene_from(name, scene, {}, subclouds=self.weak.scenes[name])  # type: ignore[union-attr]

    def build_modules(self, backbone: SparseUNet) -> nn.ModuleDict:
        return nn.ModuleDict({"cam": nn.Linear(backbone.feature_channels, self.num_classes)})

    def stages(self, plan: TrainPlan) -> list[Stage]:
        return [Stage("classify", epochs=1, sampling=Sampling(region="subcloud", max_points=0))]

    def losses(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        SubcloudClassifier.batches.append(ctx.batch.host)
        cam = ctx.modules["cam"](ctx.output.point_features)
        owner = ctx.batch.level_batch(0)
        pooled = torch.zeros(ctx.batch.host.size, self.num_classes).index_add_(0, owner, cam)
        pooled = pooled / torch.bincount(owner, minlength=ctx.batch.host.size)[:, None]
        assert ctx.batch.tags is not None
        bce = F.binary_cross_entropy_with_logits(pooled, ctx.batch.tags, reduction="sum")
        return {"bce": ctx.mean(bce, ctx.batch.tags.numel())}


def test_subcloud_balls_with_their_tags_once_per_epoch(dataset: Dataset, tmp_path: Path) -> None:
    names = dataset.scene_names("train")
    weak = simulate_subcloud_tags(dataset, names, seed=0, radius_m=1.5)
    SubcloudClassifier.batches = []
    Trainer(config(epochs=1, batch=8), SubcloudClassifier(dataset.classes, weak=weak), dataset, tmp_path / "run",
            progress=False).run()
    units = [(n, k) for n in names for k, sc in enumerate(weak.scenes[n]) if sc.mask(dataset.load(n).xyz).any()]
    assert len(units) >= 8
    seen = []
    for batch in SubcloudClassifier.batches:
        assert batch.tags is not None
        for b in range(batch.size):
            name, k = batch.names[b], int(batch.subcloud[b])
            subcloud = weak.scenes[name][k]
            xyz = dataset.load(name).xyz
            assert np.array_equal(batch.point_index[batch.points_of(b)], np.flatnonzero(subcloud.mask(xyz)))
            assert np.array_equal(batch.tags[b], subcloud.multi_hot(3))
            seen.append((name, k))
    assert len(SubcloudClassifier.batches) == -(-len(units) // 8)  # epochs=1 -> ceil(sub-clouds / 8) steps
    assert sorted(seen[:len(units)]) == sorted(units)  # every annotated sub-cloud once in the epoch
    assert any(batch.tags.sum(1).min() < 3 for batch in SubcloudClassifier.batches)  # type: ignore[union-attr]


class Pairs(Recording):
    SAMPLING = Sampling(group="pairs", max_points=300)


def test_pairs_share_a_labelled_class(dataset: Dataset, tmp_path: Path) -> None:
    weak = simulate_sparse_points(dataset, dataset.scene_names("train"), seed=0, fraction=0.02)
    batches = train(Pairs(dataset.classes, weak=weak), dataset, tmp_path / "run", steps=3, batch=4)
    for batch in batches:
        assert batch.member.tolist() == [0, 1, 0, 1] and batch.partner.tolist() == [1, 0, 3, 2]
        assert batch.tags is not None
        for b in range(batch.size):
            labels = batch.point_targets["labels"][batch.points_of(b)]
            assert np.array_equal(batch.tags[b], multi_hot(np.unique(labels[labels >= 0]), 3))  # labelled only
            shared = batch.tags[b] * batch.tags[batch.partner[b]]
            assert shared.sum() >= 1, f"pair {batch.names[b]} / {batch.names[batch.partner[b]]} shares no class"
            assert batch.names[b] != batch.names[batch.partner[b]]  # a partner from another scene
    scenes = [Pairs(dataset.classes, weak=weak).make_targets(n, dataset.load(n)) for n in dataset.scene_names("train")]
    cfg = config(steps=3, batch=4)
    pre = preprocess_for(cfg)
    whole = StepBatches(scenes, pre, cfg.data, 5, 3, sampling=Pairs.SAMPLING, num_classes=3)  # type: ignore[arg-type]
    ranks = [StepBatches(scenes, pre, cfg.data, 5, 3, rank=r, world_size=2, sampling=Pairs.SAMPLING,  # type: ignore[arg-type]
                         num_classes=3) for r in range(2)]
    parts = [r[2] for r in ranks]
    assert [p.slots for p in parts] == [[0, 1], [2, 3]]  # a pair never straddles two processes
    assert np.array_equal(np.concatenate([p.point_index for p in parts]), whole[2].point_index)
    with pytest.raises(ValueError, match=r"multiple of 2-sample groups \(pairs\) x the number of processes"):
        StepBatches(scenes, pre, config(steps=1, batch=2).data, 5, 1, world_size=2, sampling=Pairs.SAMPLING)  # type: ignore[arg-type]


class ViewConsistency(FullMethod):
    """WS3D-like toy: two augmented views of each crop; CE on view 0 plus agreement of the views' point logits."""

    batches: ClassVar[list[Batch]] = []

    def stages(self, plan: TrainPlan) -> list[Stage]:
        return [Stage("views", plan.total_steps, sampling=Sampling(group="views", views=2, max_points=500))]

    def losses(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        host = ctx.batch.host
        ViewConsistency.batches.append(host)
        logits = torch.log_softmax(ctx.point_logits(), dim=1)
        agree = sum(F.mse_loss(logits[host.points_of(b)], logits[host.points_of(b + 1)], reduction="sum")
                    for b in range(0, host.size, 2))
        return {**super().losses(ctx), "agree": ctx.mean(agree, len(host.xyz) / 2)}  # type: ignore[arg-type]


def test_views_hold_the_same_points_in_the_same_order(dataset: Dataset, tmp_path: Path) -> None:
    ViewConsistency.batches = []
    Trainer(config(steps=2, batch=4), ViewConsistency(dataset.classes), dataset, tmp_path / "run",
            progress=False).run()
    for batch in ViewConsistency.batches:
        assert batch.member.tolist() == [0, 1, 0, 1] and batch.group.tolist() == [0, 0, 1, 1]
        for b in (0, 2):
            first, second = batch.points_of(b), batch.points_of(b + 1)
            assert batch.names[b] == batch.names[b + 1]
            assert np.array_equal(batch.point_index[first], batch.point_index[second])  # exact correspondence
            a, c = batch.xyz[first], batch.xyz[second]
            assert not np.allclose(a, c, atol=1e-3)  # augmented independently
            # the same points: distances between corresponding pairs agree up to the scale range and jitter
            i, j = np.arange(0, len(a) - 1, 7), np.arange(1, len(a), 7)
            ratio = np.linalg.norm(c[i] - c[j], axis=1) / np.maximum(np.linalg.norm(a[i] - a[j], axis=1), 1e-6)
            assert 0.8 < np.median(ratio) < 1.25
            assert np.array_equal(batch.tags[b], batch.tags[b + 1])  # type: ignore[index]


def test_ball_and_scene_regions_are_pure_functions_of_seed_step_slot(dataset: Dataset) -> None:
    names = dataset.scene_names("train")
    tags_only = [train_scene_from(n, dataset.load(n), {}, tags=multi_hot([0, 1, 2], 3)) for n in names]
    cfg = config(steps=4, batch=2, crop=0)
    pre = preprocess_for(cfg)
    balls = StepBatches(tags_only, pre, cfg.data, 5, 4, sampling=Sampling(region="ball", radius_m=0.7), num_classes=3)
    batch = balls[1]
    for b in range(batch.size):
        scene = tags_only[names.index(batch.names[b])]
        centre = int(np.random.default_rng([5, 1, b]).integers(scene.num_points))
        expected = ball_indices(scene.xyz, scene.xyz[centre], 0.7, 0)
        assert np.array_equal(batch.point_index[batch.points_of(b)], expected)
        assert 0 < len(expected) < scene.num_points
    assert np.array_equal(batch.tags, np.ones((2, 3), np.float32))  # tags only: the scene's (an approximation)
    again = StepBatches(tags_only, pre, cfg.data, 5, 4, sampling=Sampling(region="ball", radius_m=0.7),
                        num_classes=3)[1]
    assert np.array_equal(again.xyz, batch.xyz) and np.array_equal(again.point_index, batch.point_index)
    whole = StepBatches(tags_only, pre, cfg.data, 5, 4, sampling=Sampling(region="scene"), num_classes=3)[0]
    assert [len(whole.point_index[whole.points_of(b)]) for b in range(2)] == [3000, 3000]
    with pytest.raises(ValueError, match="region 'cube' is not one of"):
        Sampling(region="cube")
