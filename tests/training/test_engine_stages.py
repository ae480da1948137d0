"""Stages that restart the model and stages measured in epochs, proven by toy plugins through the engine.

* a stage that re-initialises the backbone and the optimiser (MPRM / Densify retrain a fresh network on
  pseudo labels): its first step sees freshly drawn weights (not the trained ones), the optimiser has no
  moments, and a run resumed at the stage boundary, inside the stage or after it is bit-identical;
* stage lengths in epochs, converted once with the stage's own steps per epoch, and ``ctx.epoch``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from wsseg_training.checkpoint import load_checkpoint
from wsseg_training.data.dataset import Dataset
from wsseg_training.engine.config import config_from_dict
from wsseg_training.engine.loop import Trainer
from wsseg_training.engine.sampling import CROP, Sampling
from wsseg_training.engine.schedule import Schedule, Stage, TrainPlan
from wsseg_training.engine.state import stage_seed
from wsseg_training.methods import FullMethod
from wsseg_training.methods.base import StageContext, StepContext
from wsseg_training.model.unet import SparseUNet, UNetConfig

from tests.conftest import make_box_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return make_box_dataset(tmp_path_factory.mktemp("boxes"), train=3, val=0, points=2500)


CONFIG = {"seed": 2, "profile": "tiny", "device": "cpu", "data": {"batch_scenes": 2, "crop_max_points": 400},
          "optim": {"optimizer": "adamw", "lr": 0.01}, "train": {"steps": 6, "checkpoint_every_steps": 1,
                                                                  "keep_checkpoints": 10, "log_every_steps": 1}}


class Retrain(FullMethod):
    """Three stages of two steps; the second restarts the backbone and the optimiser (after its begin_stage,
    which still sees the trained model).  Dies at 0-based step ``crash_step`` when it is set."""

    crash_step: ClassVar[int | None] = None
    first_step_weights: ClassVar[dict[str, torch.Tensor]] = {}
    begin_weights: ClassVar[dict[str, torch.Tensor]] = {}

    def stages(self, plan: TrainPlan) -> list[Stage]:
        return [Stage("classify", 2), Stage("retrain", 2, True, reinit_backbone=True, reinit_optimizer=True),
                Stage("finish", 2)]

    def begin_stage(self, index: int, stage: Stage, ctx: StageContext) -> None:
        if index == 1:
            Retrain.begin_weights = {k: v.clone() for k, v in ctx.model.state_dict().items()}

    def losses(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        if ctx.step == Retrain.crash_step:
            raise KeyboardInterrupt("simulated kill")
        if ctx.step == 2:
            # parameters only: the forward pass of this step already moved the BatchNorm statistics
            Retrain.first_step_weights = {k: v.detach().clone() for k, v in ctx.backbone.named_parameters()}
        return super().losses(ctx)


def run(dataset: Dataset, out: Path, resume: bool = False, crash: int | None = None) -> list[float]:
    Retrain.crash_step = crash
    trainer = Trainer(config_from_dict(CONFIG), Retrain(dataset.classes), dataset, out, resume=resume, progress=False)
    return trainer.run().losses


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_stage_reinitialises_backbone_and_optimiser_and_resumes_bit_identically(dataset: Dataset,
                                                                                  tmp_path: Path) -> None:
    straight = run(dataset, tmp_path / "straight")
    trained = weights(tmp_path / "straight" / "checkpoints" / "step_00000002.pt")
    # begin_stage saw the trained model; the stage's first step saw fresh weights drawn from (seed, stage 1)
    assert all(torch.equal(Retrain.begin_weights[k], trained[k]) for k in trained)
    torch.manual_seed(stage_seed(CONFIG["seed"], 1, 0))
    fresh = SparseUNet(UNetConfig.from_dict(load_checkpoint(tmp_path / "straight" / "model.pt")["unet"]))
    for name, value in fresh.named_parameters():
        assert torch.equal(Retrain.first_step_weights[name], value), name
    assert not torch.equal(Retrain.first_step_weights["stem.conv.weight"], trained["stem.conv.weight"])
    # the optimiser started afresh: one Adam step taken after the restart (three without it)
    steps_in = load_checkpoint(tmp_path / "straight" / "checkpoints" / "step_00000003.pt")["training"]["optimizer"]
    assert {float(s["step"]) for s in steps_in["state"].values()} == {1.0}
    before = load_checkpoint(tmp_path / "straight" / "checkpoints" / "step_00000002.pt")["training"]["optimizer"]
    assert {float(s["step"]) for s in before["state"].values()} == {2.0}

    final = weights(tmp_path / "straight" / "model.pt")
    # killed at the stage boundary (the restart is re-drawn on resume), inside the stage, and after it
    with pytest.raises(KeyboardInterrupt):
        run(dataset, tmp_path / "killed", crash=3)
    assert load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")["training"]["step"] == 3
    assert run(dataset, tmp_path / "killed", resume=True) == straight[3:]
    for step in (2, 5):  # the same as a kill right after checkpoint ``step``: the run dir as it was then
        out = tmp_path / f"at{step}"
        shutil.copytree(tmp_path / "straight", out)
        (out / "model.pt").unlink()
        for later in range(step + 1, 7):
            (out / "checkpoints" / f"step_{later:08d}.pt").unlink()
        shutil.copy(out / "checkpoints" / f"step_{step:08d}.pt", out / "checkpoints" / "last.pt")
        assert run(dataset, out, resume=True) == straight[step:], f"resumed at step {step}: the losses differ"
    for out in [tmp_path / "killed", tmp_path / "at2", tmp_path / "at5"]:
        resumed = weights(out / "model.pt")
        assert all(torch.equal(final[k], resumed[k]) for k in final), f"{out.name}: the final weights differ"


class EpochStages(FullMethod):
    """Densify-like lengths: a warm-up of 1.5 epochs of crops, then 1 epoch of pairs; records ctx.epoch."""

    seen: ClassVar[list[tuple[int, float, str]]] = []
    plans: ClassVar[list[TrainPlan]] = []

    def stages(self, plan: TrainPlan) -> list[Stage]:
        EpochStages.plans.append(plan)
        return [Stage("warm-up", epochs=1.5), Stage("matching", epochs=1, sampling=Sampling(group="pairs"))]

    def losses(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        EpochStages.seen.append((ctx.step, ctx.epoch, ctx.stage.name))
        return super().losses(ctx)


def test_stage_lengths_in_epochs_are_converted_once(dataset: Dataset, tmp_path: Path) -> None:
    EpochStages.seen, EpochStages.plans = [], []
    config = config_from_dict({**CONFIG, "train": {"epochs": 3, "checkpoint_every_steps": 0}})
    result = Trainer(config, EpochStages(dataset.classes), dataset, tmp_path / "run", progress=False).run()
    (plan,) = EpochStages.plans
    # 3 scenes, 2 samples per step: crops 2 steps per epoch (train.epochs 3 -> 6 steps); pairs 1 group per step
    assert plan.total_steps == 6 and plan.epochs == 3.0
    assert plan.steps_per_epoch(CROP) == 2 and plan.steps_per_epoch(Sampling(group="pairs")) == 3
    assert plan.steps(2.5) == 5
    assert result.steps == 3 + 3  # ceil(1.5 * 2) + ceil(1 * 3)
    assert [(s, round(e, 4), n) for s, e, n in EpochStages.seen] == [
        (0, 0.0, "warm-up"), (1, 0.5, "warm-up"), (2, 1.0, "warm-up"),
        (3, 1.5, "matching"), (4, round(1.5 + 1 / 3, 4), "matching"), (5, round(1.5 + 2 / 3, 4), "matching")]
    schedule = Schedule.resolve([Stage("a", epochs=10), Stage("b", 4)], lambda sampling: 7)
    assert [s.steps for s in schedule.stages] == [70, 4] and schedule.epoch_at(35) == 5.0
    with pytest.raises(ValueError, match="give its length as steps or as epochs"):
        Stage("neither")
    with pytest.raises(ValueError, match="no stage"):
        Schedule.resolve([], lambda sampling: 1)
