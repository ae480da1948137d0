"""The spconv backend runs the same U-Net parameters and gives the reference (kernel-map) results."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from wsseg_training.model import (
    SparseUNet,
    SubmanifoldConv3d,
    UNetConfig,
    coords_to_torch,
    fold_batchnorm,
    to_torch,
    unet_config_for,
)

from wsseg.core.preprocess import NetworkInput, PreprocessConfig, prepare_cloud

spconv = pytest.importorskip("spconv.pytorch", reason="spconv is not installed")
from wsseg_training.model.spconv_backend import SpconvUNet, shift_to_non_negative  # noqa: E402


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def surface_scene(n: int, seed: int, batch: int = 1, voxel_size_m: float = 0.05, num_levels: int = 4) -> NetworkInput:
    """``batch`` bumpy 6 m x 6 m surfaces centred on the origin (negative coordinates included)."""
    rng = np.random.default_rng(seed)
    uv = rng.random((n, 2)) * 6.0 - 3.0
    z = 0.3 * np.sin(uv[:, 0]) + 0.2 * np.cos(1.5 * uv[:, 1]) - 0.5
    xyz = np.c_[uv, z].astype(np.float32)
    rgb = rng.integers(0, 256, (n, 3), dtype=np.uint8)
    scene = rng.integers(0, batch, n)
    xyz[scene == 1] += np.float32(0.37)  # the second scene sits on another grid phase
    config = PreprocessConfig(voxel_size_m=voxel_size_m, num_levels=num_levels)
    return prepare_cloud(config, xyz, rgb, batch=scene if batch > 1 else None)


def randomised_eval_model(config: UNetConfig, seed: int) -> SparseUNet:
    torch.manual_seed(seed)
    model = SparseUNet(config)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.normal_(0.0, 0.3)
                module.running_var.uniform_(0.3, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.2)
    return model.eval()


@pytest.mark.parametrize(("num_levels", "batch", "blocks"),
                         [(1, 1, (1,)), (2, 2, (1, 2)), (4, 1, (1, 2, 1, 1)), (4, 2, (1, 2, 1, 1)),
                          (4, 1, (0, 1, 1, 1))])
def test_whole_unet_parity_single_thread(num_levels: int, batch: int, blocks: tuple[int, ...]) -> None:
    net_input = surface_scene(6000, seed=num_levels, batch=batch, num_levels=num_levels)
    features, maps = to_torch(net_input)
    coords = coords_to_torch(net_input)
    assert int(coords[:, 1:].min()) < 0, "the scene must exercise negative coordinates"
    channels = (16, 24, 32, 40)[:num_levels]
    model = randomised_eval_model(UNetConfig(6, 5, channels, blocks), seed=num_levels)

    with torch_threads(1), torch.no_grad():
        reference = model(features, *maps)
        spconv_logits = SpconvUNet(model)(coords, features)

    assert reference.abs().max().item() > 0.1
    assert (reference - spconv_logits).abs().max().item() < 1e-4
    assert torch.equal(reference.argmax(1), spconv_logits.argmax(1))


def test_backend_shares_parameters_and_folded_model_parity() -> None:
    net_input = surface_scene(5000, seed=7, num_levels=3)
    features, maps = to_torch(net_input)
    coords = coords_to_torch(net_input)
    model = randomised_eval_model(unet_config_for("tiny", 6, 4), seed=7)
    backend = SpconvUNet(model)
    assert {id(p) for p in backend.parameters()} == {id(p) for p in model.parameters()}
    assert set(backend.state_dict()) == {f"unet.{k}" for k in model.state_dict()}

    folded = fold_batchnorm(model)
    with torch_threads(1), torch.no_grad():
        reference = model(features, *maps)
        folded_spconv = SpconvUNet(folded)(coords, features)
    assert (reference - folded_spconv).abs().max().item() < 1e-4


def test_training_through_spconv_gives_the_reference_gradients() -> None:
    """Training through spconv updates the very same parameters with the same gradients.

    Runs on CUDA when present.  spconv 2.3.8's CPU build has no backward with a CPU-only
    torch (its fallback path calls ``torch.cuda.current_stream``): then the test skips.
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net_input = surface_scene(5000, seed=8, num_levels=3)
    features, maps = to_torch(net_input, device)
    coords = coords_to_torch(net_input, device)
    model = randomised_eval_model(unet_config_for("tiny", 6, 4), seed=8).to(device).train()
    labels = torch.randint(0, 4, (features.shape[0],), generator=torch.Generator().manual_seed(8)).to(device)

    with torch_threads(1):
        torch.nn.functional.cross_entropy(model(features, *maps), labels).backward()
        reference_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(SpconvUNet(model)(coords, features), labels)
        try:
            loss.backward()
        except AssertionError as error:
            if device.type == "cpu" and "CUDA" in str(error):
                pytest.skip(f"spconv's CPU build cannot backpropagate with CPU-only torch: {error}")
            raise
    for name, parameter in model.named_parameters():
        scale = reference_grads[name].abs().max().item() + 1e-6
        assert (parameter.grad - reference_grads[name]).abs().max().item() < 1e-3 * scale, name


def test_shift_keeps_stride_two_groupings() -> None:
    coords = torch.tensor([[0, -5, 3, -1], [0, -4, 3, 0], [2, 7, -9, 2], [2, 8, -8, 3]], dtype=torch.int32)
    shifted, shape = shift_to_non_negative(coords, num_levels=3)
    assert shifted.dtype == torch.int32 and shifted.is_contiguous()
    assert int(shifted[:, 1:].min()) >= 0
    assert all(s % 4 == 0 for s in shape)
    assert (shifted[:, 1:] < torch.tensor(shape)).all()
    # Each scene moves by a multiple of 4 = 2 ** (levels - 1): the coarse parents keep their grouping.
    delta = coords[:, 1:].long() - shifted[:, 1:].long()
    assert (delta % 4 == 0).all()
    assert torch.equal(delta[0], delta[1]) and torch.equal(delta[2], delta[3])
    with pytest.raises(ValueError, match=r"shape \(M, 4\)"):
        shift_to_non_negative(coords[:, :3], num_levels=3)


def _subm_runs(net_input: NetworkInput, threads: int, runs: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Reference output of one 3x3x3 conv (32 -> 32) and ``runs`` spconv outputs with ``threads`` threads."""
    features, maps = to_torch(net_input)
    coords, shape = shift_to_non_negative(coords_to_torch(net_input), num_levels=1)
    torch.manual_seed(11)
    x = torch.randn(features.shape[0], 32)
    ours = SubmanifoldConv3d(32, 32)
    theirs = spconv.SubMConv3d(32, 32, 3, bias=False)
    with torch.no_grad():
        theirs.weight.copy_(ours.weight)
        reference = ours(x, maps[0])
        outputs = []
        with torch_threads(threads):
            for _ in range(runs):
                outputs.append(theirs(spconv.SparseConvTensor(x, coords, shape, 1)).features.clone())
    return reference, outputs


@pytest.fixture(scope="module")
def cloud_20k() -> NetworkInput:
    net_input = surface_scene(60000, seed=3, voxel_size_m=0.04, num_levels=1)
    assert net_input.features.shape[0] > 20000
    return net_input


def test_single_thread_spconv_cpu_is_deterministic_and_exact(cloud_20k: NetworkInput) -> None:
    reference, outputs = _subm_runs(cloud_20k, threads=1, runs=3)
    for output in outputs:
        assert torch.equal(output, outputs[0])
        assert (output - reference).abs().max().item() < 1e-4


@pytest.mark.xfail(
    strict=False,
    reason="spconv 2.3.8's CPU build races with more than one torch thread: on a ~23k-voxel cloud 7-62 rows "
    "of one submanifold conv (about 1 in 400-3000) differ from the reference, different rows on every run; "
    "run spconv on CPU with torch.set_num_threads(1)",
)
def test_multi_thread_spconv_cpu_matches_reference(cloud_20k: NetworkInput) -> None:
    reference, outputs = _subm_runs(cloud_20k, threads=2, runs=4)
    wrong_rows = [int(((output - reference).abs().max(dim=1).values > 1e-4).sum()) for output in outputs]
    if any(wrong_rows):
        warnings.warn(
            f"spconv CPU, 2 threads: rows differing from the reference per run: {wrong_rows} "
            f"of {reference.shape[0]}",
            stacklevel=1,
        )
    assert wrong_rows == [0] * len(wrong_rows)
