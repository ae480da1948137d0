"""Features in the middle of the network: decoding again from replaced features of a named decoder level with
each sample's own skips, one row order per level on both backends, points -> voxel rows at any level, and a
DSP-like toy plugin (cross-sample feature reallocation after the first up-sampling) training through it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from wsseg_training.data.dataset import Dataset
from wsseg_training.engine.batches import StepBatches
from wsseg_training.engine.config import config_from_dict
from wsseg_training.engine.inference import PointCloud, infer
from wsseg_training.engine.loop import Trainer, preprocess_for
from wsseg_training.engine.sampling import Sampling
from wsseg_training.engine.schedule import Stage, TrainPlan
from wsseg_training.methods import FullMethod
from wsseg_training.methods.base import StepContext
from wsseg_training.methods.dsp.method import decode_with_fixed_decoder
from wsseg_training.model.inputs import coords_to_torch, to_torch
from wsseg_training.model.unet import SparseUNet, UNetConfig

from tests.conftest import make_box_dataset, make_box_scene
from wsseg.core.preprocess import NetworkInput, PreprocessConfig, prepare_cloud


def two_scenes(num_levels: int = 4, voxel_size_m: float = 0.05) -> NetworkInput:
    parts = [make_box_scene(seed=s, n=4000) for s in (1, 2)]
    xyz = np.concatenate([parts[0][0], parts[1][0] + np.float32(0.37)])
    rgb = np.concatenate([parts[0][1], parts[1][1]])
    batch = np.repeat([0, 1], 4000)
    return prepare_cloud(PreprocessConfig(voxel_size_m=voxel_size_m, num_levels=num_levels), xyz, rgb, batch=batch)


def eval_model(num_levels: int = 4, seed: int = 0) -> SparseUNet:
    torch.manual_seed(seed)
    config = UNetConfig(6, 3, (8, 16, 24, 32)[:num_levels], (1, 1, 1, 1)[:num_levels])
    net = SparseUNet(config)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm1d):
                module.running_mean.normal_(0.0, 0.3)
                module.running_var.uniform_(0.5, 2.0)
    return net.eval()


def test_decode_from_a_level_uses_each_samples_own_skips() -> None:
    net_input = two_scenes()
    features, maps = to_torch(net_input)
    net = eval_model()
    level = net.num_levels - 2  # DSP: after the first up-sampling
    with torch.no_grad():
        out = net.forward_features(features, maps)
        again = net.decode_from(out, level, out.decoder[level])
        assert torch.equal(again.logits, out.logits)
        assert all(torch.equal(a, b) for a, b in zip(again.decoder, out.decoder, strict=True))
        owner = torch.from_numpy(net_input.maps.coords[level][:, 0].astype(np.int64))
        replaced = out.decoder[level].clone()
        replaced[owner == 0] = replaced[owner == 1].mean(0)  # sample 0 gets sample 1's mean feature
        changed = net.decode_from(out, level, replaced)
    point_owner = torch.from_numpy(net_input.maps.coords[0][:, 0].astype(np.int64))
    assert torch.equal(changed.logits[point_owner == 1], out.logits[point_owner == 1])  # sample 1 untouched
    assert not torch.allclose(changed.logits[point_owner == 0], out.logits[point_owner == 0])
    assert torch.equal(changed.decoder[level + 1], out.decoder[level + 1]) and changed.encoder is out.encoder
    with pytest.raises(ValueError, match=r"decoder level 1 must have shape"):
        net.decode_from(out, 1, out.decoder[2])


def test_a_fixed_decoder_pass_sends_gradients_only_to_the_features() -> None:
    """DSP ``branch_gradient: features``: same logits as ``decode_from``; the backward pass reaches the replaced
    features but no weight and no skip feature; the plain pass reaches all three."""
    net_input = two_scenes()
    features, maps = to_torch(net_input)
    net = eval_model().train()
    level = net.num_levels - 2
    out = net.forward_features(features, maps)
    replaced = (out.decoder[level] * 0.5).detach().requires_grad_(True)
    for skip in out.state.skips:
        skip.retain_grad()
    fixed = decode_with_fixed_decoder(net, out, level, replaced)
    torch.testing.assert_close(fixed, net.decode_from(out, level, replaced).logits, rtol=0, atol=1e-6)
    fixed.pow(2).sum().backward()
    assert replaced.grad is not None and float(replaced.grad.abs().sum()) > 0
    assert all(p.grad is None for p in net.parameters())
    assert all(s.grad is None for s in out.state.skips)
    net.decode_from(out, level, replaced).logits.pow(2).sum().backward()
    assert all(p.grad is not None for lv in range(level) for p in net.decoders[lv].parameters())
    assert any(s.grad is not None and float(s.grad.abs().sum()) > 0 for s in out.state.skips)


def test_points_to_voxel_rows_at_every_level(tmp_path: Path) -> None:
    dataset = make_box_dataset(tmp_path / "data", train=2, val=0, points=2000)
    method = FullMethod(dataset.classes)
    scenes = [method.make_targets(n, dataset.load(n)) for n in dataset.scene_names("train")]
    config = config_from_dict({"profile": "tiny", "data": {"batch_scenes": 2, "crop_max_points": 0}})
    batch = StepBatches(scenes, preprocess_for(config), config.data, 0, 1)[0]  # type: ignore[arg-type]
    device_batch = batch.to("cpu")
    grid = batch.net_input.grid
    for level in range(batch.net_input.maps.num_levels):
        rows = device_batch.level_rows(level).numpy()
        coords = batch.net_input.maps.coords[level][rows].astype(np.int64)
        expected = grid.coords[grid.inverse].astype(np.int64)
        expected[:, 1:] = np.floor_divide(expected[:, 1:], 2**level)
        assert np.array_equal(coords, expected), level
        assert np.array_equal(device_batch.level_batch(level).numpy()[rows], batch.point_batch)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # spconv's CPU build is deterministic only with one thread
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def test_spconv_levels_are_in_the_reference_row_order() -> None:
    pytest.importorskip("spconv.pytorch", reason="spconv is not installed")
    from wsseg_training.model.spconv_backend import SpconvUNet

    net_input = two_scenes()
    features, maps = to_torch(net_input)
    net = eval_model()
    level = net.num_levels - 2
    with one_thread(), torch.no_grad():
        reference = net.forward_features(features, maps)
        theirs = SpconvUNet(net).forward_features(coords_to_torch(net_input), features)
        for name in ("encoder", "decoder"):
            for lv, (a, b) in enumerate(zip(getattr(reference, name), getattr(theirs, name), strict=True)):
                assert a.shape == b.shape and (a - b).abs().max() < 1e-4, f"{name}[{lv}]"
        replaced = reference.decoder[level] * 0.5
        decoded = net.decode_from(reference, level, replaced).logits
        decoded_spconv = net.decode_from(theirs, level, replaced).logits
    assert (decoded - decoded_spconv).abs().max() < 1e-4
    # the whole-scene inference pass on either backend
    cloud = PointCloud(*make_box_scene(seed=3, n=3000)[:2])
    pre = PreprocessConfig(voxel_size_m=0.05, num_levels=4)
    with one_thread():
        maps_logits, spconv_logits = (infer([cloud], net, pre, "cpu", backend=backend)[0]["logits"]
                                      for backend in ("maps", "spconv"))
    assert (maps_logits - spconv_logits).abs().max() < 1e-4


class CrossReallocation(FullMethod):
    """DSP-like toy (CSFR): for each pair (i, j), F_i's rows are replaced by softmax(F_i W F_j^T) F_j after the
    first up-sampling, decoded with sample i's skips, and pulled towards sample i's own logits."""

    losses_seen: ClassVar[list[dict[str, float]]] = []

    def build_modules(self, backbone: SparseUNet) -> nn.ModuleDict:
        width = backbone.config.channels[backbone.num_levels - 2]
        affinity = nn.Linear(width, width, bias=False)
        nn.init.eye_(affinity.weight)
        return nn.ModuleDict({"affinity": affinity})

    def stages(self, plan: TrainPlan) -> list[Stage]:
        return [Stage("csfr", plan.total_steps, sampling=Sampling(group="pairs", max_points=500))]

    def losses(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        level = ctx.backbone.num_levels - 2
        features = ctx.output.decoder[level]
        owner = ctx.batch.level_batch(level)
        replaced = features
        for b in range(ctx.batch.host.size):
            mine = torch.nonzero(owner == b).squeeze(1)
            theirs = features[owner == int(ctx.batch.host.partner[b])]
            weights = torch.softmax(ctx.modules["affinity"](features[mine]) @ theirs.t(), dim=1)
            replaced = replaced.index_copy(0, mine, weights @ theirs)
        cross = ctx.backbone.decode_from(ctx.output, level, replaced).logits
        consistency = F.mse_loss(cross, ctx.output.logits, reduction="sum")
        terms = {**super().losses(ctx), "cr": ctx.mean(consistency, cross.numel())}
        CrossReallocation.losses_seen.append({k: float(v.detach()) for k, v in terms.items()})
        return terms


def test_cross_sample_reallocation_trains_through_decode_from(tmp_path: Path) -> None:
    dataset: Dataset = make_box_dataset(tmp_path / "data", train=3, val=0, points=2000)
    config = config_from_dict({"seed": 1, "profile": "tiny", "device": "cpu", "data": {"batch_scenes": 2},
                               "optim": {"lr": 0.01}, "train": {"steps": 2, "checkpoint_every_steps": 0}})
    CrossReallocation.losses_seen = []
    trainer = Trainer(config, CrossReallocation(dataset.classes), dataset, tmp_path / "run", progress=False)
    trainer.run()
    assert len(CrossReallocation.losses_seen) == 2
    assert all(np.isfinite(list(t.values())).all() and t["cr"] > 0 for t in CrossReallocation.losses_seen)
    affinity = trainer.modules["affinity"].weight.detach()
    assert not torch.equal(affinity, torch.eye(affinity.shape[0]))  # the loss reached W through decode_from
