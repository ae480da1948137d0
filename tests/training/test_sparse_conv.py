"""The kernel-map convolutions equal dense torch convolutions evaluated at the active voxels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from wsseg_training.model.sparse_conv import DownConv3d, PointwiseLinear, SubmanifoldConv3d, UpConv3d

from wsseg.core.kernel_maps import build_kernel_maps

GRID = 8
BATCH = 2
C_IN, C_OUT = 5, 7


def random_sparse_scene(density: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Active voxels of a (BATCH, GRID, GRID, GRID) grid, some with negative coordinates.

    Returns coords (M, 4) int32 sorted ``[batch, x, y, z]`` and dense indices (M, 4) into the grid.
    """
    rng = np.random.default_rng(seed)
    mask = rng.random((BATCH, GRID, GRID, GRID)) < density
    mask[0, 0, 0, 0] = mask[1, GRID - 1, GRID - 1, GRID - 1] = True  # never empty, corners covered
    dense = np.argwhere(mask)  # sorted lexicographically
    coords = dense.copy()
    coords[:, 1:] -= GRID // 2  # negative coordinates exercise floor division; even shift keeps parents
    return coords.astype(np.int32), dense


def dense_input(dense: np.ndarray, features: torch.Tensor) -> torch.Tensor:
    """(BATCH, C, GRID, GRID, GRID) float64 with ``features`` at the active voxels, zeros elsewhere."""
    grid = torch.zeros(BATCH, features.shape[1], GRID, GRID, GRID, dtype=torch.float64)
    b, x, y, z = (torch.from_numpy(dense[:, i]) for i in range(4))
    grid[b, :, x, y, z] = features.double()
    return grid


def at_sites(grid: torch.Tensor, sites: np.ndarray) -> torch.Tensor:
    b, x, y, z = (torch.from_numpy(np.asarray(sites[:, i], dtype=np.int64)) for i in range(4))
    return grid[b, :, x, y, z]


def to_dense_conv_weight(weight: torch.Tensor) -> torch.Tensor:
    """[C_out, k, k, k, C_in] -> conv3d's [C_out, C_in, k, k, k], float64."""
    return weight.detach().permute(0, 4, 1, 2, 3).double()


DENSITIES = [0.05, 0.3, 0.8]


@pytest.mark.parametrize("density", DENSITIES)
def test_submanifold_conv_equals_dense_conv3d(density: float) -> None:
    torch.manual_seed(0)
    coords, dense = random_sparse_scene(density, seed=int(density * 100))
    maps = build_kernel_maps(coords, num_levels=1)
    conv = SubmanifoldConv3d(C_IN, C_OUT, bias=True)
    torch.nn.init.normal_(conv.bias)
    features = torch.randn(coords.shape[0], C_IN)

    ours = conv(features, torch.from_numpy(maps.neighbours[0]))

    reference = F.conv3d(dense_input(dense, features), to_dense_conv_weight(conv.weight), conv.bias.double(), padding=1)
    expected = at_sites(reference, dense)
    assert ours.shape == (coords.shape[0], C_OUT)
    assert (ours.double() - expected).abs().max().item() < 1e-5


@pytest.mark.parametrize("density", DENSITIES)
def test_down_conv_equals_strided_conv3d(density: float) -> None:
    torch.manual_seed(1)
    coords, dense = random_sparse_scene(density, seed=10 + int(density * 100))
    maps = build_kernel_maps(coords, num_levels=2)
    conv = DownConv3d(C_IN, C_OUT)
    features = torch.randn(coords.shape[0], C_IN)

    ours = conv(features, torch.from_numpy(maps.down[0]))

    reference = F.conv3d(dense_input(dense, features), to_dense_conv_weight(conv.weight), stride=2)
    parents = maps.coords[1].astype(np.int64)
    parents[:, 1:] += GRID // 4  # undo the coordinate shift at the coarse level
    expected = at_sites(reference, parents)
    assert ours.shape == (parents.shape[0], C_OUT)
    assert (ours.double() - expected).abs().max().item() < 1e-5


@pytest.mark.parametrize("density", DENSITIES)
def test_up_conv_equals_conv_transpose3d(density: float) -> None:
    torch.manual_seed(2)
    coords, dense = random_sparse_scene(density, seed=20 + int(density * 100))
    maps = build_kernel_maps(coords, num_levels=2)
    conv = UpConv3d(C_IN, C_OUT)
    parents = maps.coords[1].astype(np.int64)
    parents[:, 1:] += GRID // 4
    parent_features = torch.randn(parents.shape[0], C_IN)

    ours = conv(parent_features, torch.from_numpy(maps.up[0]))

    coarse = torch.zeros(BATCH, C_IN, GRID // 2, GRID // 2, GRID // 2, dtype=torch.float64)
    b, x, y, z = (torch.from_numpy(parents[:, i]) for i in range(4))
    coarse[b, :, x, y, z] = parent_features.double()
    # conv_transpose3d weight layout is [C_in, C_out, k, k, k].
    weight = conv.weight.detach().permute(4, 0, 1, 2, 3).double()
    reference = F.conv_transpose3d(coarse, weight, stride=2)
    expected = at_sites(reference, dense)
    assert ours.shape == (coords.shape[0], C_OUT)
    assert (ours.double() - expected).abs().max().item() < 1e-5


def test_pointwise_linear_is_a_1x1_conv() -> None:
    torch.manual_seed(3)
    layer = PointwiseLinear(C_IN, C_OUT, bias=True)
    torch.nn.init.normal_(layer.bias)
    features = torch.randn(11, C_IN)
    expected = features.double() @ layer.weight.detach().double().t() + layer.bias.detach().double()
    assert (layer(features).double() - expected).abs().max().item() < 1e-5


def test_gradients_match_dense_conv3d() -> None:
    """Backward through the gather (index_select -> index_add) equals dense autograd at the active sites."""
    torch.manual_seed(4)
    coords, dense = random_sparse_scene(0.3, seed=99)
    maps = build_kernel_maps(coords, num_levels=1)
    conv = SubmanifoldConv3d(C_IN, C_OUT).double()
    features = torch.randn(coords.shape[0], C_IN, dtype=torch.float64, requires_grad=True)
    ours = conv(features, torch.from_numpy(maps.neighbours[0]))
    upstream = torch.randn_like(ours)
    (ours * upstream).sum().backward()

    dense_features = features.detach().clone().requires_grad_(True)
    weight = conv.weight.detach().clone().requires_grad_(True)
    reference = F.conv3d(dense_input(dense, dense_features), weight.permute(0, 4, 1, 2, 3), padding=1)
    (at_sites(reference, dense) * upstream).sum().backward()

    assert features.grad is not None and dense_features.grad is not None and conv.weight.grad is not None
    assert (features.grad - dense_features.grad).abs().max().item() < 1e-9
    assert (conv.weight.grad - weight.grad).abs().max().item() < 1e-9


def test_empty_neighbourhood_reads_the_zero_row() -> None:
    """An isolated voxel sees only itself: output = centre kernel slice times its features."""
    coords = np.array([[0, 0, 0, 0], [0, 5, 5, 5]], dtype=np.int32)
    maps = build_kernel_maps(coords, num_levels=1)
    conv = SubmanifoldConv3d(C_IN, C_OUT)
    features = torch.randn(2, C_IN)
    out = conv(features, torch.from_numpy(maps.neighbours[0]))
    expected = features @ conv.weight[:, 1, 1, 1, :].t()
    assert torch.allclose(out, expected, atol=1e-6)
