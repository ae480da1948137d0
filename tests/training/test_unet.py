"""The residual sparse U-Net: shapes, gradients, batching, BatchNorm folding, compact training path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from wsseg_training.model import (
    PROFILES,
    SparseUNet,
    UNetConfig,
    count_parameters,
    fold_batchnorm,
    preprocess_config_for,
    to_torch,
    unet_config_for,
)

from wsseg.core.features import FeatureConfig
from wsseg.core.kernel_maps import map_input_names
from wsseg.core.preprocess import NetworkInput, PreprocessConfig, prepare_cloud

NUM_CLASSES = 4


def small_cloud(seed: int, n: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    """A bumpy 1.2 m x 1.2 m surface with a post, coloured at random: xyz (n, 3) float32, rgb (n, 3) uint8."""
    rng = np.random.default_rng(seed)
    uv = rng.random((n, 2)) * 1.2 - 0.6
    z = 0.1 * np.sin(4 * uv[:, 0]) * np.cos(3 * uv[:, 1])
    post = rng.random(n) < 0.2
    z = np.where(post, rng.random(n) * 0.8, z)
    uv[post] = uv[post] * 0.1
    xyz = np.c_[uv, z].astype(np.float32)
    return xyz, rng.integers(0, 256, (n, 3), dtype=np.uint8)


def prepared(num_levels: int, seed: int = 0, voxel_size_m: float = 0.05) -> NetworkInput:
    xyz, rgb = small_cloud(seed)
    return prepare_cloud(PreprocessConfig(voxel_size_m=voxel_size_m, num_levels=num_levels), xyz, rgb)


def config(num_levels: int, in_channels: int = 6) -> UNetConfig:
    channels = (8, 12, 16, 20, 24)[:num_levels]
    blocks = (1, 2, 1, 1, 1)[:num_levels]
    return UNetConfig(in_channels=in_channels, num_classes=NUM_CLASSES, channels=channels, blocks=blocks)


def randomise_batchnorm(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial running statistics and affine parameters, as after training."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                c = module.num_features
                module.running_mean.copy_(torch.randn(c, generator=generator) * 0.3)
                module.running_var.copy_(torch.rand(c, generator=generator) * 2 + 0.2)
                module.weight.copy_(torch.rand(c, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(c, generator=generator) * 0.2)


@pytest.mark.parametrize("num_levels", [1, 2, 3, 4])
def test_forward_features_shapes_per_level(num_levels: int) -> None:
    torch.manual_seed(0)
    net_input = prepared(num_levels)
    features, maps = to_torch(net_input)
    cfg = config(num_levels)
    model = SparseUNet(cfg)
    out = model.forward_features(features, maps)

    sizes = [c.shape[0] for c in net_input.maps.coords]
    assert sizes == sorted(sizes, reverse=True) and (num_levels == 1 or sizes[-1] < sizes[0])
    assert out.logits.shape == (sizes[0], NUM_CLASSES)
    assert len(out.encoder) == len(out.decoder) == num_levels
    for level in range(num_levels):
        assert out.encoder[level].shape == (sizes[level], cfg.channels[level])
        assert out.decoder[level].shape == (sizes[level], cfg.channels[level])
    assert out.decoder[-1] is out.encoder[-1]
    assert out.point_features is out.decoder[0]
    assert torch.equal(model(features, *maps), out.logits)


def test_every_parameter_gets_a_gradient() -> None:
    torch.manual_seed(1)
    features, maps = to_torch(prepared(4))
    model = SparseUNet(config(4))
    labels = torch.randint(0, NUM_CLASSES, (features.shape[0],))
    torch.nn.functional.cross_entropy(model(features, *maps), labels).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum().item() > 0, f"{name} has an all-zero gradient"


def test_compact_path_equals_gather_path_with_gradients() -> None:
    torch.manual_seed(2)
    features, maps = to_torch(prepared(3))
    model = SparseUNet(config(3)).double()
    features = features.double()
    labels = torch.randint(0, NUM_CLASSES, (features.shape[0],))

    gather = model.forward_features(features, maps).logits
    torch.nn.functional.cross_entropy(gather, labels).backward()
    gather_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    compact = model.forward_features(features, maps, compact=True).logits
    torch.nn.functional.cross_entropy(compact, labels).backward()

    assert (gather - compact).abs().max().item() < 1e-10
    for name, parameter in model.named_parameters():
        assert (parameter.grad - gather_grads[name]).abs().max().item() < 1e-10, name


def test_compact_path_trains_under_autocast() -> None:
    """Mixed precision (``train.amp``): the compact path's scatter must take the autocast dtype of its matmuls.

    CPU bfloat16 autocast stands in for CUDA float16 here; both make the per-offset matmuls low precision while
    the features stay float32 (the bug seen on the GPU: index_add_ of Half into Float)."""
    torch.manual_seed(5)
    features, maps = to_torch(prepared(5))
    model = SparseUNet(config(5))
    labels = torch.randint(0, NUM_CLASSES, (features.shape[0],))
    with torch.no_grad():
        reference = model.forward_features(features, maps).logits
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model.forward_features(features, maps, compact=True).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
    loss.backward()

    assert torch.isfinite(loss)
    relative = torch.linalg.norm(logits.float() - reference) / torch.linalg.norm(reference)
    assert relative.item() < 5e-2  # bfloat16 keeps ~3 significant digits per product
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_batchnorm_folding_matches_eval_model() -> None:
    torch.manual_seed(3)
    features, maps = to_torch(prepared(4))
    model = SparseUNet(config(4))
    randomise_batchnorm(model, seed=3)
    model.eval()
    folded = fold_batchnorm(model)

    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules()), "the original must be untouched"
    with torch.no_grad():
        expected = model(features, *maps)
        got = folded(features, *maps)
    assert expected.abs().max().item() > 0.1
    assert (expected - got).abs().max().item() < 1e-4
    assert torch.equal(expected.argmax(1), got.argmax(1))


def test_folding_after_training_steps() -> None:
    """Running statistics accumulated by real training steps fold just as well."""
    torch.manual_seed(4)
    features, maps = to_torch(prepared(3))
    model = SparseUNet(config(3))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05)
    labels = torch.randint(0, NUM_CLASSES, (features.shape[0],))
    for _ in range(5):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(features, *maps), labels).backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        assert (model(features, *maps) - fold_batchnorm(model)(features, *maps)).abs().max().item() < 1e-4


def test_batched_scenes_equal_separate_runs_in_eval_mode() -> None:
    torch.manual_seed(5)
    preprocess = PreprocessConfig(voxel_size_m=0.05, num_levels=3)
    (xyz_a, rgb_a), (xyz_b, rgb_b) = small_cloud(10), small_cloud(11, n=1100)
    xyz_b = xyz_b + np.float32(0.33)  # another place, another parity of the grid
    model = SparseUNet(config(3))
    randomise_batchnorm(model, seed=5)
    model.eval()

    def logits(net_input: NetworkInput) -> torch.Tensor:
        features, maps = to_torch(net_input)
        with torch.no_grad():
            return model(features, *maps)

    alone_a = logits(prepare_cloud(preprocess, xyz_a, rgb_a))
    alone_b = logits(prepare_cloud(preprocess, xyz_b, rgb_b))
    batch = np.r_[np.zeros(len(xyz_a), dtype=np.int64), np.ones(len(xyz_b), dtype=np.int64)]
    batched_input = prepare_cloud(preprocess, np.r_[xyz_a, xyz_b], np.r_[rgb_a, rgb_b], batch=batch)
    batched = logits(batched_input)

    scene = torch.from_numpy(batched_input.grid.coords[:, 0].astype(np.int64))
    assert (batched[scene == 0] - alone_a).abs().max().item() < 1e-5
    assert (batched[scene == 1] - alone_b).abs().max().item() < 1e-5


def test_a_light_level_keeps_only_the_stem_and_a_pointwise_fuse() -> None:
    """blocks[0] = 0: no 3x3x3 block at level 0 (the stem alone), a 1x1 fuse of concat(up, skip) in the decoder;
    it trains, folds like the rest and costs fewer convolutions than blocks[0] = 1."""
    from wsseg_training.model.sparse_conv import SubmanifoldConv3d
    from wsseg_training.model.unet import PointwiseNormReLU

    torch.manual_seed(6)
    features, maps = to_torch(prepared(3))
    light = SparseUNet(UNetConfig(in_channels=6, num_classes=NUM_CLASSES, channels=(8, 12, 16), blocks=(0, 1, 1)))
    usual = SparseUNet(UNetConfig(in_channels=6, num_classes=NUM_CLASSES, channels=(8, 12, 16), blocks=(1, 1, 1)))
    assert len(light.encoders[0]) == 0
    assert [type(m) for m in light.decoders[0]] == [PointwiseNormReLU]
    def subm_count(model: SparseUNet) -> int:
        return sum(isinstance(m, SubmanifoldConv3d) for m in model.modules())
    assert subm_count(usual) - subm_count(light) == 4  # two blocks of two convolutions gone from level 0

    labels = torch.randint(0, NUM_CLASSES, (features.shape[0],))
    torch.nn.functional.cross_entropy(light(features, *maps), labels).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in light.parameters())

    randomise_batchnorm(light, seed=6)
    light.eval()
    with torch.no_grad():
        expected = light(features, *maps)
        got = fold_batchnorm(light)(features, *maps)
    assert expected.abs().max().item() > 0.1 and (expected - got).abs().max().item() < 1e-4
    with pytest.raises(ValueError, match=r"blocks \(0, -1\) >= 0"):
        UNetConfig(in_channels=6, num_classes=3, channels=(8, 16), blocks=(0, -1))


def test_decoder_blocks_set_the_decoder_apart_and_round_trip() -> None:
    from wsseg_training.model.unet import PointwiseNormReLU, ResidualBlock

    cfg = UNetConfig(in_channels=6, num_classes=NUM_CLASSES, channels=(8, 12, 16), blocks=(1, 1, 1),
                     decoder_blocks=(0, 2, 1))
    model = SparseUNet(cfg)
    assert [type(m) for m in model.encoders[0]] == [ResidualBlock]
    assert [type(m) for m in model.decoders[0]] == [PointwiseNormReLU] and len(model.decoders[1]) == 2
    assert UNetConfig.from_dict(cfg.to_dict()) == cfg
    plain = UNetConfig(in_channels=6, num_classes=NUM_CLASSES, channels=(8, 12, 16), blocks=(1, 1, 1))
    assert "decoder_blocks" not in plain.to_dict() and UNetConfig.from_dict(plain.to_dict()) == plain
    features, maps = to_torch(prepared(3))
    assert model(features, *maps).shape == (features.shape[0], NUM_CLASSES)
    with pytest.raises(ValueError, match="decoder_blocks"):
        UNetConfig(in_channels=6, num_classes=3, channels=(8, 16), blocks=(1, 1), decoder_blocks=(1,))


def test_to_torch_follows_map_input_names() -> None:
    net_input = prepared(3)
    features, maps = to_torch(net_input)
    assert features.dtype == torch.float32 and features.shape == net_input.features.shape
    names = map_input_names(3)
    assert len(maps) == len(names)
    for name, tensor in zip(names, maps, strict=True):
        assert tensor.dtype == torch.int64
        assert np.array_equal(tensor.numpy(), net_input.maps.as_inputs()[name])


def test_wrong_inputs_are_named() -> None:
    features, maps = to_torch(prepared(3))
    model = SparseUNet(config(3))
    with pytest.raises(ValueError, match="takes 7 kernel maps"):
        model(features, *maps[:-1])
    with pytest.raises(ValueError, match=r"features must have shape \(M, 6\)"):
        model(features[:, :3], *maps)
    with pytest.raises(ValueError, match="equal length"):
        UNetConfig(in_channels=6, num_classes=3, channels=(8, 16), blocks=(1,))
    with pytest.raises(ValueError, match="unknown model profile 'huge'"):
        unet_config_for("huge", 6, 3)


def test_profiles_build_and_match_their_preprocessing() -> None:
    features = FeatureConfig(names=("offset", "rgb", "height"))
    for name, profile in PROFILES.items():
        cfg = unet_config_for(name, in_channels=features.num_channels, num_classes=13)
        assert cfg.num_levels == profile.num_levels == preprocess_config_for(name, features).num_levels
        assert UNetConfig.from_dict(cfg.to_dict()) == cfg
        assert count_parameters(SparseUNet(cfg)) > 0
    sizes = {name: count_parameters(SparseUNet(unet_config_for(name, 6, 13))) for name in PROFILES}
    assert sizes["tiny"] < sizes["cpu"] < sizes["default"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu() -> None:
    torch.manual_seed(6)
    model = SparseUNet(config(3))
    randomise_batchnorm(model, seed=6)
    model.eval()
    features, maps = to_torch(prepared(3))
    with torch.no_grad():
        expected = model(features, *maps)
        got = model.cuda()(features.cuda(), *(m.cuda() for m in maps)).cpu()
    assert (expected - got).abs().max().item() < 1e-4
