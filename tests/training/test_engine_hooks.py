"""The method hooks: an extra head trained alongside the backbone, per-level features and super-voxels
in the step context, a two-stage outer loop whose second stage starts from the model's own pseudo labels,
and method state that survives --resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from torch import nn
from wsseg_training.checkpoint import load_checkpoint
from wsseg_training.data.dataset import Dataset, DatasetWriter
from wsseg_training.engine.config import config_from_dict
from wsseg_training.engine.loop import Trainer
from wsseg_training.engine.schedule import Stage, TrainPlan
from wsseg_training.methods import FullMethod
from wsseg_training.methods.base import StageContext, StepContext
from wsseg_training.model.profiles import unet_config_for
from wsseg_training.model.unet import SparseUNet

from tests.conftest import make_box_scene
from wsseg.core.classes import ClassTable
from wsseg.core.scene import Scene

CLASSES = ClassTable("boxes", ("floor", "wall", "box"), ((100, 80, 60), (200, 200, 200), (40, 90, 160)))


class TwoStage(FullMethod):
    """Stage 1 learns the labels; stage 2 adds pseudo labels from the model and an auxiliary head."""

    seen: ClassVar[list[str]] = []

    def build_modules(self, backbone: SparseUNet) -> nn.ModuleDict:
        return nn.ModuleDict({"aux": nn.Linear(backbone.config.channels[-1], self.num_classes)})

    def stages(self, plan: TrainPlan) -> list[Stage]:
        total = plan.total_steps
        return [Stage("warm-up", total // 2), Stage("pseudo", total - total // 2, True)]

    def begin_stage(self, index: int, stage: Stage, ctx: StageContext) -> None:
        TwoStage.seen.append(stage.name)
        labels = ctx.infer(reduce=lambda i, out: out["logits"].argmax(1).cpu().numpy())
        for scene, pseudo in zip(ctx.scenes, labels, strict=True):
            scene.point_targets["pseudo"] = pseudo if index == 1 else np.full(scene.num_points, -1)

    def make_targets(self, name: str, scene: Scene):
        out = super().make_targets(name, scene)
        if out is not None:
            out.point_targets["pseudo"] = np.full(out.num_points, -1)
        return out

    def losses(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        terms = super().losses(ctx)
        assert len(ctx.output.encoder) == ctx.backbone.num_levels and ctx.batch.supervoxel is not None
        assert ctx.batch.supervoxel.shape == ctx.batch.inverse.shape
        bottom = ctx.output.encoder[-1]  # coarsest level features: one scene-level prediction per batch
        tags = ctx.modules["aux"](bottom.mean(0, keepdim=True))
        terms["aux"] = ctx.mean(tags.logsumexp(1).sum() * 0.01, 1)
        pseudo = ctx.batch.point_targets["pseudo"]
        if ctx.stage_index == 1:
            assert (pseudo >= 0).all()
            terms["pseudo"] = ctx.mean(nn.functional.cross_entropy(ctx.point_logits(), pseudo, reduction="sum"),
                                       pseudo.numel()) * 0.1
        return terms

    def state_dict(self) -> dict[str, Any]:
        return {"stages_seen": list(TwoStage.seen)}


def test_two_stage_method_with_extra_head(tmp_path: Path) -> None:
    with DatasetWriter(tmp_path / "data", "boxes", CLASSES) as writer:
        for i in range(2):
            xyz, rgb, semantic = make_box_scene(seed=i, n=2500)
            supervoxel = (np.floor(xyz[:, 0] / 0.5) * 10 + np.floor(xyz[:, 1] / 0.5)).astype(np.int32)
            writer.add(f"s{i}", Scene(xyz=xyz, rgb=rgb, semantic=semantic.astype(np.int16), supervoxel=supervoxel),
                       split="train")
    dataset = Dataset(tmp_path / "data")
    config = config_from_dict({"profile": "tiny", "device": "cpu", "data": {"batch_scenes": 2},
                               "train": {"steps": 4, "checkpoint_every_steps": 1, "keep_checkpoints": 0}})
    TwoStage.seen.clear()
    trainer = Trainer(config, TwoStage(dataset.classes), dataset, tmp_path / "run", progress=False)
    trainer_result = trainer.run()
    assert TwoStage.seen == ["warm-up", "pseudo"]
    assert len(trainer_result.losses) == 4
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert set(checkpoint["training"]["modules"]) == {"aux.weight", "aux.bias"}
    assert checkpoint["training"]["method"] == {"stages_seen": ["warm-up", "pseudo"]}
    assert "aux.weight" not in checkpoint["model"]  # training-only head: not part of the exported backbone
    torch.manual_seed(config.seed)  # the engine's initialisation order: backbone, then the method's modules
    initial = TwoStage(dataset.classes).build_modules(SparseUNet(unet_config_for("tiny", 6, 3)))
    trained = checkpoint["training"]["modules"]["aux.weight"]
    assert not torch.allclose(trained, initial["aux"].weight)  # the head was trained with the backbone
    with pytest.raises(ValueError, match="already holds a run"):
        Trainer(config, TwoStage(dataset.classes), dataset, tmp_path / "run", progress=False).run()
