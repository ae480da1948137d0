"""Voxel-grid normals, the RANSAC support plane and the geometry input features."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import make_box_scene
from wsseg.core.features import FEATURE_CHANNELS, FeatureConfig, voxel_features
from wsseg.core.geometry import (
    NoSupportPlaneError,
    PlaneParams,
    fit_support_plane,
    smallest_eigenvectors,
    voxel_centroids,
    voxel_normals,
)
from wsseg.core.kernel_maps import neighbour_map
from wsseg.core.preprocess import PreprocessConfig, prepare_cloud
from wsseg.core.voxelize import voxelize

GEOMETRY = ("offset", "normal", "support_height", "support_cos")


def test_closed_form_eigenvector_matches_eigh() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 3, 3))
    spd = a @ a.transpose(0, 2, 1)
    spd[:100] = np.diag([1.0, 1.0, 1e-6])  # a flat patch: the tiny eigenvalue must still come out right
    upper = spd[:, [0, 0, 0, 1, 1, 2], [0, 1, 2, 1, 2, 2]]
    ours = smallest_eigenvectors(upper)
    _, vectors = np.linalg.eigh(spd)
    cosine = np.abs(np.einsum("ij,ij->i", ours, vectors[:, :, 0]))
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0)
    assert cosine.min() > 1 - 1e-6


def test_normals_of_floor_wall_and_box_face_the_viewpoint() -> None:
    xyz, _, semantic = make_box_scene(n=30000)
    grid = voxelize(xyz, 0.1)
    centroids = voxel_centroids(grid, xyz)
    viewpoint = np.array([1.5, 0.5, 1.5])  # above the floor, in front of the wall
    normal = voxel_normals(centroids, neighbour_map(grid.coords), viewpoint=viewpoint)
    assert normal.shape == (grid.num_voxels, 3) and normal.dtype == np.float32
    voxel_class = np.bincount(grid.inverse, weights=semantic, minlength=grid.num_voxels) / grid.counts
    floor = (voxel_class == 0) & (centroids[:, 0] > 0.2) & (centroids[:, 0] < 2.8) & (centroids[:, 1] < 0.8)
    wall = (voxel_class == 1) & (centroids[:, 2] > 0.3) & (centroids[:, 2] < 1.7) & (centroids[:, 0] > 0.2) \
        & (centroids[:, 0] < 2.8)
    assert floor.sum() > 20 and wall.sum() > 20
    assert np.median(normal[floor, 2]) > 0.99  # +z: towards the viewpoint above
    assert np.median(normal[wall, 1]) < -0.99  # -y: the wall at y = 3 faces the viewpoint at y = 0.5


def test_support_plane_is_the_floor_and_deterministic() -> None:
    xyz, _, _ = make_box_scene(n=30000)
    centroids = voxel_centroids(voxelize(xyz, 0.05), xyz)
    first = fit_support_plane(centroids, PlaneParams(threshold_m=0.02), viewpoint=np.array([1.5, 1.5, 2.0]))
    again = fit_support_plane(centroids, PlaneParams(threshold_m=0.02), viewpoint=np.array([1.5, 1.5, 2.0]))
    assert np.array_equal(first.normal, again.normal) and first.offset_m == again.offset_m
    assert first.normal[2] > 0.999 and abs(first.offset_m) < 0.005  # z = 0, facing up
    below = fit_support_plane(centroids, PlaneParams(threshold_m=0.02), viewpoint=np.array([1.5, 1.5, -2.0]))
    assert below.normal[2] < -0.999  # orientation follows the viewpoint


def test_a_cloud_without_a_plane_has_no_support_plane() -> None:
    rng = np.random.default_rng(1)
    ball = rng.normal(size=(5000, 3))
    ball /= np.linalg.norm(ball, axis=1, keepdims=True)
    with pytest.raises(NoSupportPlaneError, match="min_inlier_fraction"):
        fit_support_plane(ball.astype(np.float32), PlaneParams(threshold_m=0.01, min_inlier_fraction=0.2))
    with pytest.raises(NoSupportPlaneError, match="needs 3"):
        fit_support_plane(np.zeros((2, 3)))


def test_support_height_feature_is_the_height_above_the_floor() -> None:
    xyz, _, _ = make_box_scene(n=30000)
    xyz = xyz - np.array([1.5, 1.5, 1.5], dtype=np.float32)  # sensor (origin) 1.5 m above the floor's centre
    config = FeatureConfig(names=GEOMETRY, support_scale_m=0.5, plane=PlaneParams(threshold_m=0.02))
    assert config.num_channels == 3 + 3 + 1 + 1 == sum(FEATURE_CHANNELS[n] for n in GEOMETRY)
    grid = voxelize(xyz, 0.05)
    features = voxel_features(grid, config, xyz)
    centroid_z = voxel_centroids(grid, xyz)[:, 2]
    height = features[:, 6] * 0.5
    expected = np.clip(centroid_z + 1.5, -2.0, 2.0)
    assert np.abs(height - expected).max() < 0.01
    box_top = (features[:, 6] * 0.5 > 0.58) & (np.abs(features[:, 5]) > 0.9)
    assert box_top.sum() > 5 and np.all(features[box_top, 7] > 0.9)  # the box's lid is parallel to the floor


def test_batched_geometry_equals_each_scene_alone() -> None:
    """Training batches scenes; each scene gets its own plane, exactly as the node computes it alone."""
    a, rgb_a, _ = make_box_scene(seed=0, n=12000)
    b, rgb_b, _ = make_box_scene(seed=1, n=9000)
    b = b @ np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=np.float32)  # scene b's floor is y = 0
    config = PreprocessConfig(voxel_size_m=0.05, num_levels=3,
                              features=FeatureConfig(names=("offset", "rgb", *GEOMETRY[1:]),
                                                     plane=PlaneParams(threshold_m=0.02)))
    batch = np.concatenate([np.zeros(len(a), np.int64), np.ones(len(b), np.int64)])
    together = prepare_cloud(config, np.concatenate([a, b]), rgb=np.concatenate([rgb_a, rgb_b]), batch=batch)
    alone = [prepare_cloud(config, a, rgb=rgb_a), prepare_cloud(config, b, rgb=rgb_b)]
    rows = together.grid.coords[:, 0]
    for k, single in enumerate(alone):
        assert np.array_equal(together.features[rows == k], single.features)


def test_feature_config_round_trips_with_plane_settings() -> None:
    config = FeatureConfig(names=("offset", "support_height"), support_scale_m=0.3,
                           plane=PlaneParams(threshold_m=0.015, iterations=64, seed=3))
    again = FeatureConfig.from_dict(config.to_dict())
    assert again == config
    assert FeatureConfig.from_dict({"names": ["offset"]}).plane == PlaneParams()  # bundles from before
    with pytest.raises(ValueError, match="threshold_m"):
        PlaneParams(threshold_m=0.0)
