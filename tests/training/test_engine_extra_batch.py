"""Engine: sampling restricted to named scenes, and a stage's extra batch (WS3D: labelled crops beside two-view
groups of any scene) -- drawn as a pure function of (seed, step), from the named scenes only, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from wsseg_training.data.dataset import Dataset, DatasetWriter
from wsseg_training.engine.batches import StepBatches
from wsseg_training.engine.config import DataConfig, config_from_dict
from wsseg_training.engine.loop import Trainer
from wsseg_training.engine.sampling import SampleDrawer, Sampling
from wsseg_training.engine.scenes import TrainScene
from wsseg_training.engine.schedule import Stage, TrainPlan
from wsseg_training.methods import FullMethod
from wsseg_training.methods.base import StepContext

from tests.conftest import make_box_scene
from wsseg.core.classes import ClassTable
from wsseg.core.preprocess import PreprocessConfig
from wsseg.core.scene import Scene

CLASSES = ClassTable("boxes", ("floor", "wall", "box"), ((100, 80, 60), (200, 200, 200), (40, 90, 160)))


def scenes(count: int = 4) -> list[TrainScene]:
    out = []
    for i in range(count):
        xyz, rgb, semantic = make_box_scene(seed=i, n=900)
        out.append(TrainScene(name=f"s{i}", xyz=xyz, rgb=rgb, point_targets={"labels": semantic}))
    return out


def test_sampling_restricted_to_named_scenes() -> None:
    data = DataConfig(batch_scenes=2)
    drawer = SampleDrawer(scenes(), Sampling(scenes=["s1", "s3"]), data, seed=0)
    assert drawer.units == [(1, -1), (3, -1)]
    drawn = {drawer.draw_group(step, g, 2)[0].scene for step in range(6) for g in range(2)}
    assert drawn == {1, 3}
    assert Sampling(scenes=["s1"]).scenes == ("s1",)  # hashable: stages key caches on their sampling
    with pytest.raises(ValueError, match="none of the scenes"):
        SampleDrawer(scenes(), Sampling(scenes=("elsewhere",)), data, seed=0)


def test_extra_batch_is_pure_and_drawn_from_its_own_sampling() -> None:
    preprocess = PreprocessConfig(voxel_size_m=0.1, num_levels=3)
    data = DataConfig(batch_scenes=4)
    views = Sampling(group="views")
    labelled = Sampling(scenes=("s0",))

    def source() -> StepBatches:
        return StepBatches(scenes(), preprocess, data, seed=3, total_steps=5, sampling=views, extra=labelled,
                           extra_samples=2)

    a, b = source()[2], source()[2]
    assert a.extra is not None and b.extra is not None
    assert a.extra.names == ["s0", "s0"] and np.array_equal(a.extra.xyz, b.extra.xyz)
    assert a.extra.extra is None and a.member.tolist() == [0, 1, 0, 1]
    assert not np.array_equal(source()[3].extra.xyz, a.extra.xyz)  # type: ignore[union-attr]
    # the main batch is what it is without an extra batch
    plain = StepBatches(scenes(), preprocess, data, seed=3, total_steps=5, sampling=views)[2]
    assert plain.extra is None and np.array_equal(plain.xyz, a.xyz)
    device = a.to("cpu")
    assert device.extra is not None and device.extra.inverse.shape[0] == a.extra.xyz.shape[0]
    with pytest.raises(ValueError, match="extra_samples=3"):
        StepBatches(scenes(), preprocess, data, seed=3, total_steps=5, sampling=views,
                    extra=Sampling(group="views"), extra_samples=3)
    with pytest.raises(ValueError, match="extra_samples"):
        Stage("s", 4, extra=labelled)


class MixedBatches(FullMethod):
    """Cross-entropy on an extra batch of scene s0 only; the main batch is two views of any scene."""

    seen: ClassVar[list[tuple[str, ...]]] = []

    def stages(self, plan: TrainPlan) -> list[Stage]:
        return [Stage("mixed", plan.total_steps, sampling=Sampling(group="views"),
                      extra=Sampling(scenes=("s0",)), extra_samples=2)]

    def losses(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        extra = ctx.batch.extra
        assert extra is not None and ctx.batch.host.member.tolist() == [0, 1]
        MixedBatches.seen.append(tuple(extra.host.names))
        output = ctx.forward(extra)
        labels = extra.point_targets["labels"]
        ce = torch.nn.functional.cross_entropy(output.logits[extra.inverse], labels, reduction="sum")
        return {"ce": ctx.mean(ce, labels.numel())}


class CrashAt2(MixedBatches):
    def losses(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        if ctx.step == 2:
            raise KeyboardInterrupt
        return super().losses(ctx)


def test_trainer_runs_a_stage_with_an_extra_batch(tmp_path: Path) -> None:
    with DatasetWriter(tmp_path / "data", "boxes", CLASSES) as writer:
        for i in range(3):
            xyz, rgb, semantic = make_box_scene(seed=i, n=600)
            writer.add(f"s{i}", Scene(xyz=xyz, rgb=rgb, semantic=semantic.astype(np.int16)), split="train")
    dataset = Dataset(tmp_path / "data")
    config: dict[str, Any] = {"profile": "tiny", "device": "cpu", "data": {"batch_scenes": 2},
                              "train": {"steps": 3, "checkpoint_every_steps": 1, "keep_checkpoints": 0}}
    MixedBatches.seen.clear()
    result = Trainer(config_from_dict(config), MixedBatches(dataset.classes), dataset, tmp_path / "run",
                     progress=False).run()
    assert MixedBatches.seen == [("s0", "s0")] * 3
    # interrupted at step 2 and resumed: the last step sees the same extra batch and gives the same loss
    with pytest.raises(KeyboardInterrupt):
        Trainer(config_from_dict(config), CrashAt2(dataset.classes), dataset, tmp_path / "crashed",
                progress=False).run()
    resumed = Trainer(config_from_dict(config), MixedBatches(dataset.classes), dataset, tmp_path / "crashed",
                      progress=False, resume=True).run()
    assert resumed.losses == result.losses[2:]
