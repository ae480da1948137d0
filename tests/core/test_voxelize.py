"""Voxelization: unique coordinates, point->voxel map and feature aggregation vs brute force and Open3D."""

from __future__ import annotations

import numpy as np
import pytest

from wsseg.core.features import FeatureConfig, voxel_features
from wsseg.core.voxelize import CoordinateKeys, devoxelize, voxel_centroid_offset, voxel_mean, voxelize


def brute_force_voxels(xyz: np.ndarray, voxel_size_m: float) -> dict[tuple[int, int, int], list[int]]:
    groups: dict[tuple[int, int, int], list[int]] = {}
    for i, p in enumerate(xyz.astype(np.float64)):
        key = tuple(int(v) for v in np.floor(p / voxel_size_m))
        groups.setdefault(key, []).append(i)
    return groups


def random_cloud(rng: np.random.Generator, n: int, scale: float = 3.0) -> np.ndarray:
    return (rng.normal(size=(n, 3)) * scale).astype(np.float32)


def structured_cloud() -> np.ndarray:
    """A floor plane and a wall on a 1 cm lattice, with the grid boundaries inside the cloud."""
    u = np.arange(-50, 50) * 0.01
    a, b = np.meshgrid(u, u, indexing="ij")
    floor = np.stack([a.ravel(), b.ravel(), np.zeros(a.size)], axis=1)
    wall = np.stack([a.ravel(), np.full(a.size, 0.5), b.ravel() + 0.5], axis=1)
    return np.concatenate([floor, wall]).astype(np.float32)


@pytest.mark.parametrize("voxel_size_m", [0.05, 0.2, 1.0])
@pytest.mark.parametrize("cloud", ["random", "structured"])
def test_voxelize_matches_brute_force(voxel_size_m: float, cloud: str) -> None:
    rng = np.random.default_rng(0)
    xyz = random_cloud(rng, 3000) if cloud == "random" else structured_cloud()
    grid = voxelize(xyz, voxel_size_m)
    groups = brute_force_voxels(xyz, voxel_size_m)
    assert grid.num_voxels == len(groups)
    coords = [tuple(c) for c in grid.coords[:, 1:].tolist()]
    assert coords == sorted(groups)  # unique, lexicographically sorted
    assert (grid.coords[:, 0] == 0).all()
    for row, key in enumerate(coords):
        np.testing.assert_array_equal(np.flatnonzero(grid.inverse == row), groups[key])
        assert grid.counts[row] == len(groups[key])


def test_voxel_mean_and_devoxelize() -> None:
    rng = np.random.default_rng(1)
    xyz = random_cloud(rng, 500, scale=0.5)
    grid = voxelize(xyz, 0.25)
    means = voxel_mean(xyz, grid)
    for row in range(grid.num_voxels):
        np.testing.assert_allclose(means[row], xyz[grid.inverse == row].mean(axis=0), rtol=1e-5, atol=1e-6)
    back = devoxelize(means, grid)
    assert back.shape == xyz.shape
    np.testing.assert_allclose(back, means[grid.inverse])
    offsets = voxel_centroid_offset(xyz, grid)
    assert np.all(np.abs(offsets) <= 0.5 + 1e-5)


def test_matches_open3d_voxel_down_sample() -> None:
    o3d = pytest.importorskip("open3d")
    rng = np.random.default_rng(2)
    xyz = random_cloud(rng, 5000, scale=2.0).astype(np.float64)
    voxel = 0.3
    # Open3D anchors its grid at min_bound - voxel/2; shift our points the same way.
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz))
    down = np.asarray(cloud.voxel_down_sample(voxel).points)
    origin = xyz.min(axis=0) - voxel / 2
    grid = voxelize((xyz - origin).astype(np.float32), voxel)
    ours = voxel_mean(xyz, grid).astype(np.float64)
    assert grid.num_voxels == down.shape[0]
    order_ours = np.lexsort(ours.T[::-1])
    order_o3d = np.lexsort(down.T[::-1])
    np.testing.assert_allclose(ours[order_ours], down[order_o3d], atol=1e-5)


def test_edge_cases() -> None:
    single = voxelize(np.array([[0.35, -0.25, 5.05]], dtype=np.float32), 0.1)
    assert single.num_voxels == 1 and single.coords[0, 1:].tolist() == [3, -3, 50]

    negative = voxelize(np.array([[-0.01, -0.01, -0.01], [0.01, 0.01, 0.01]], dtype=np.float32), 0.1)
    assert negative.coords[:, 1:].tolist() == [[-1, -1, -1], [0, 0, 0]]

    duplicates = np.repeat(np.array([[1.0, 2.0, 3.0]], dtype=np.float32), 7, axis=0)
    grid = voxelize(duplicates, 0.05)
    assert grid.num_voxels == 1 and grid.counts.tolist() == [7] and (grid.inverse == 0).all()

    one_voxel = np.random.default_rng(3).uniform(0.0, 0.099, size=(100, 3)).astype(np.float32)
    assert voxelize(one_voxel, 0.1).num_voxels == 1

    # UTM-like coordinates: large absolute values, small extent
    far = np.array([[500000.0, 4649776.0, 120.0], [500000.5, 4649776.5, 120.5]], dtype=np.float64)
    grid = voxelize(far, 0.25)
    assert grid.num_voxels == 2
    assert grid.coords[0, 1:].tolist() == [2000000, 18599104, 480]


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="NaN"):
        voxelize(np.array([[0.0, np.nan, 0.0]], dtype=np.float32), 0.1)
    with pytest.raises(ValueError, match="voxel_size_m"):
        voxelize(np.zeros((3, 3), dtype=np.float32), 0.0)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        voxelize(np.zeros((3, 2), dtype=np.float32), 0.1)
    with pytest.raises(ValueError, match="too large"):
        voxelize(np.array([[0.0, 0.0, 0.0], [1e7, 1e7, 1e7]]), 0.001)


def test_batched_voxelization_keeps_scenes_apart() -> None:
    xyz = np.array([[0.0, 0.0, 0.0], [0.01, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    grid = voxelize(xyz, 0.1, batch=np.array([0, 0, 1]))
    assert grid.coords.tolist() == [[0, 0, 0, 0], [1, 0, 0, 0]]
    assert grid.inverse.tolist() == [0, 0, 1]


def test_coordinate_keys_round_trip_and_order() -> None:
    rng = np.random.default_rng(4)
    rows = np.concatenate([rng.integers(0, 3, (1000, 1)), rng.integers(-500, 500, (1000, 3))], axis=1)
    keys = CoordinateKeys(rows)
    np.testing.assert_array_equal(keys.unpack(keys.pack(rows)), rows)
    order = np.argsort(keys.pack(rows), kind="stable")
    np.testing.assert_array_equal(order, np.lexsort(rows.T[::-1]))


def test_voxel_features_channels_and_normalisation() -> None:
    xyz = np.array([[0.01, 0.01, 0.01], [0.04, 0.04, 0.04], [1.0, 1.0, 1.5]], dtype=np.float32)
    rgb = np.array([[0, 0, 0], [255, 255, 255], [255, 0, 0]], dtype=np.uint8)
    intensity = np.array([0.2, 0.4, 3.0], dtype=np.float32)
    grid = voxelize(xyz, 0.05)
    config = FeatureConfig(names=("intensity", "offset", "rgb", "height"), intensity_scale=2.0)
    feats = voxel_features(grid, config, xyz, rgb=rgb, intensity=intensity)
    assert config.ordered_names == ("offset", "rgb", "intensity", "height")
    assert feats.shape == (2, 8) and feats.dtype == np.float32
    np.testing.assert_allclose(feats[0, 3:6], [0.0, 0.0, 0.0], atol=1e-6)  # mean of black and white
    np.testing.assert_allclose(feats[1, 3:6], [1.0, -1.0, -1.0], atol=1e-6)
    np.testing.assert_allclose(feats[:, 6], [0.15, 1.0], atol=1e-6)  # clipped to 1
    np.testing.assert_allclose(feats[:, 7], [0.025 / 3.0, 0.5], atol=1e-6)
    with pytest.raises(ValueError, match="rgb"):
        voxel_features(grid, FeatureConfig(names=("rgb",)), xyz)
    with pytest.raises(ValueError, match="unknown input feature"):
        FeatureConfig(names=("colour",))
