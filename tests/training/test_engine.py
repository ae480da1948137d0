"""The training engine: resume equals an uninterrupted run, NaN stops the run and keeps the last good
checkpoint, configs are validated, and every step's data is a function of (seed, step)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from wsseg_training.checkpoint import load_checkpoint, model_from_checkpoint
from wsseg_training.data.dataset import Dataset
from wsseg_training.engine.augment import augment
from wsseg_training.engine.batches import StepBatches, scenes_of_step
from wsseg_training.engine.config import AugmentConfig, ConfigError, config_from_dict, load_config
from wsseg_training.engine.loop import Trainer, TrainingDivergedError, preprocess_for
from wsseg_training.engine.sampling import crop_indices
from wsseg_training.methods import FullMethod
from wsseg_training.methods.base import StepContext

from tests.conftest import REPO_ROOT, make_box_dataset, make_box_scene
from wsseg.core.classes import ClassTable

CLASSES = ClassTable("boxes", ("floor", "wall", "box"), ((100, 80, 60), (200, 200, 200), (40, 90, 160)))
TINY = {
    "profile": "tiny", "device": "cpu",
    "data": {"batch_scenes": 2, "crop_max_points": 2500},
    "optim": {"lr": 0.01, "warmup_steps": 1},
    "train": {"steps": 6, "checkpoint_every_steps": 3, "keep_checkpoints": 2, "log_every_steps": 1},
}


def box_dataset(root: Path, train: int = 3, val: int = 1, points: int = 3000) -> Dataset:
    return make_box_dataset(root, train, val, points)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return box_dataset(tmp_path_factory.mktemp("boxes"))


class CrashAt(FullMethod):
    """``full``, but the process "dies" at 0-based step ``crash_step`` (after the checkpoint of step 3)."""

    crash_step = 4

    def losses(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        if ctx.step == self.crash_step:
            raise KeyboardInterrupt("simulated kill")
        return super().losses(ctx)


class NanAt(FullMethod):
    """``full`` whose loss turns NaN at 0-based step 3 (a corrupted feature in the forward pass)."""

    def losses(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        terms = super().losses(ctx)
        if ctx.step == 3:
            terms["ce"] = terms["ce"] * torch.tensor(float("nan"))
        return terms


def _train(dataset: Dataset, out: Path, method: type[FullMethod] = FullMethod, resume: bool = False,
           **overrides: object) -> tuple[Trainer, list[float]]:
    config = config_from_dict({**TINY, **overrides})
    trainer = Trainer(config, method(dataset.classes), dataset, out, resume=resume, progress=False)
    return trainer, trainer.run().losses


def test_resume_equals_uninterrupted(dataset: Dataset, tmp_path: Path) -> None:
    _, straight = _train(dataset, tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        _train(dataset, tmp_path / "resumed", method=CrashAt)
    assert load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")["training"]["step"] == 3
    _, rest = _train(dataset, tmp_path / "resumed", resume=True)
    assert rest == straight[3:]  # same losses, bit for bit
    a = load_checkpoint(tmp_path / "straight" / "model.pt")["model"]
    b = load_checkpoint(tmp_path / "resumed" / "model.pt")["model"]
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert straight[-1] < straight[0]  # it trained
    files = sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir())
    assert files == ["last.pt", "step_00000003.pt", "step_00000006.pt"]
    assert (tmp_path / "resumed" / "log.txt").read_text().count("resuming") == 1
    assert any((tmp_path / "resumed" / "tb").iterdir())


def test_resume_refuses_other_config_and_fresh_run_refuses_existing(dataset: Dataset, tmp_path: Path) -> None:
    _train(dataset, tmp_path / "run", train={**TINY["train"], "steps": 3})
    with pytest.raises(ValueError, match="already holds a run"):
        _train(dataset, tmp_path / "run")
    with pytest.raises(ConfigError, match=r"optim\.lr"):
        _train(dataset, tmp_path / "run", resume=True, optim={"lr": 0.5})


def test_nan_loss_stops_and_keeps_last_good_checkpoint(dataset: Dataset, tmp_path: Path) -> None:
    train = {**TINY["train"], "checkpoint_every_steps": 2}
    expected = r"step 4: loss is nan.*Last good checkpoint: .*last\.pt \(step 2\)"
    with pytest.raises(TrainingDivergedError, match=expected):
        _train(dataset, tmp_path / "run", method=NanAt, train=train)
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert checkpoint["training"]["step"] == 2
    model = model_from_checkpoint(checkpoint)
    assert all(torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point())
    assert not (tmp_path / "run" / "model.pt").exists()


def test_config_errors_name_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  crop_points: 5\ntrain: {steps: 3}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: field 'data'.*unknown field\(s\) \['crop_points'\]"):
        load_config(bad)
    bad.write_text("optim: {lr: fast}\ntrain: {steps: 3}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: field 'optim\.lr' is 'fast', expected a number"):
        load_config(bad)
    bad.write_text("data: {augment: {scale_range: [1.2, 0.8]}}\ntrain: {steps: 3}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: field 'data\.augment\.scale_range'"):
        load_config(bad)
    bad.write_text("train: {steps: 3, epochs: 2}\n")
    with pytest.raises(ConfigError, match=r"exactly one of 'train\.steps' and 'train\.epochs'"):
        load_config(bad)
    for shipped in sorted((REPO_ROOT / "configs").glob("*.yaml")):
        load_config(shipped)


def test_step_data_is_a_function_of_seed_and_step_and_shards_by_rank(dataset: Dataset) -> None:
    # every scene once per epoch
    epoch = scenes_of_step(0, 0, 5, 5)
    assert sorted(epoch) == list(range(5))
    assert scenes_of_step(0, 7, 5, 2) == scenes_of_step(0, 7, 5, 2)
    config = config_from_dict(TINY)
    method = FullMethod(dataset.classes)
    scenes = [method.make_targets(n, dataset.load(n)) for n in dataset.scene_names("train")]
    pre = preprocess_for(config)
    whole = StepBatches(scenes, pre, config.data, seed=0, total_steps=10)  # type: ignore[arg-type]
    ranks = [StepBatches(scenes, pre, config.data, seed=0, total_steps=10, rank=r, world_size=2)  # type: ignore[arg-type]
             for r in range(2)]
    for step in (0, 5):
        batch = whole[step]
        assert len(batch.xyz) == 2 * 2500  # cropped to crop_max_points
        parts = [r[step] for r in ranks]
        assert [p.slots for p in parts] == [[0], [1]]
        assert np.array_equal(np.concatenate([p.xyz for p in parts]), batch.xyz)
        assert np.array_equal(np.concatenate([p.point_targets["labels"] for p in parts]),
                              batch.point_targets["labels"])
        assert batch.net_input.grid.coords[:, 0].max() == 1  # two scenes in one grid
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        StepBatches(scenes, pre, config.data, seed=0, total_steps=1, rank=0, world_size=3)  # type: ignore[arg-type]


def test_crop_and_augment() -> None:
    rng = np.random.default_rng(0)
    xyz, rgb, _ = make_box_scene(n=3000)
    pick = crop_indices(xyz, 1000, rng)
    assert pick.shape == (1000,) and np.all(np.diff(pick) > 0)
    assert np.array_equal(crop_indices(xyz, 0, rng), np.arange(3000))
    moved, colour = augment(xyz, rgb, AugmentConfig(), np.random.default_rng(1))
    assert moved.dtype == np.float32 and colour is not None and colour.dtype == np.uint8
    assert not np.allclose(moved, xyz)
    # rotation + flips + scale keep pairwise distances up to the scale factor and the jitter
    d0 = np.linalg.norm(xyz[0] - xyz[1])
    d1 = np.linalg.norm(moved[0] - moved[1])
    assert 0.85 * d0 - 0.05 < d1 < 1.15 * d0 + 0.05
    off = AugmentConfig(rotate_z=False, flip_x=False, flip_y=False, scale_range=(1.0, 1.0), jitter_std_m=0.0,
                        colour_jitter_std=0.0, colour_shift_std=0.0)
    same, same_rgb = augment(xyz, rgb, off, np.random.default_rng(1))
    assert np.allclose(same, xyz, atol=1e-5) and np.array_equal(same_rgb, rgb)


def test_weak_point_labels_hide_ground_truth(dataset: Dataset) -> None:
    from wsseg_training.labels import simulate_clicks

    clicks = simulate_clicks(dataset, dataset.scene_names("train"), seed=0)
    method = FullMethod(dataset.classes, weak=clicks)
    scene = method.make_targets("s0", dataset.load("s0"))
    assert scene is not None
    labelled = scene.point_targets["labels"] != -1
    assert 0 < labelled.sum() <= 3  # one click per object (floor, wall, box)
    assert not hasattr(scene, "semantic")
    with pytest.raises(ValueError, match="does not use weak labels of kind 'scene_tags'"):
        from wsseg_training.labels import simulate_scene_tags

        FullMethod(dataset.classes, weak=simulate_scene_tags(dataset, ["s0"], seed=0))


def test_method_registry_and_options(dataset: Dataset) -> None:
    from wsseg_training.methods import METHODS, get_method
    from wsseg_training.methods.full import class_weights

    assert get_method("full") is METHODS["full"] is FullMethod
    with pytest.raises(ValueError, match=r"unknown method 'otoc9'; known: \[.*'full'"):
        get_method("otoc9")
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \[.weighting.\]"):
        FullMethod(dataset.classes, {"weighting": "none"})
    with pytest.raises(ConfigError, match="class_weighting"):
        FullMethod(dataset.classes, {"class_weighting": "sometimes"})
    weights = class_weights(np.array([900, 100, 0]), "inverse_frequency")
    assert weights[2] == 0 and weights[1] == pytest.approx(9 * weights[0]) and weights[:2].mean() == pytest.approx(1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (run on the GPU machine)")
def test_amp_on_cuda_learns_resumes_and_loads_on_cpu(dataset: Dataset, tmp_path: Path) -> None:
    """``train.amp`` on CUDA: float16 autocast + GradScaler; resume restores the scaler; weights stay float32."""
    train = {**TINY["train"], "amp": True}
    trainer, straight = _train(dataset, tmp_path / "straight", device="cuda", train=train)
    assert trainer.amp and trainer.device.type == "cuda"
    assert all(np.isfinite(straight)) and straight[-1] < straight[0]
    with pytest.raises(KeyboardInterrupt):
        _train(dataset, tmp_path / "resumed", method=CrashAt, device="cuda", train=train)
    scaler = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")["training"]["scaler"]
    assert scaler["scale"] > 0
    _, rest = _train(dataset, tmp_path / "resumed", resume=True, device="cuda", train=train)
    assert len(rest) == 3 and all(np.isfinite(rest))
    model = model_from_checkpoint(load_checkpoint(tmp_path / "resumed" / "model.pt"))
    assert all(t.dtype == torch.float32 for t in model.state_dict().values() if t.is_floating_point())
