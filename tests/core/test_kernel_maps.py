"""Kernel maps vs brute-force neighbour search."""

from __future__ import annotations

import numpy as np
import pytest

from wsseg.core.kernel_maps import (
    OFFSETS_2X2X2,
    OFFSETS_3X3X3,
    build_kernel_maps,
    coarsen,
    down_map,
    map_input_names,
    up_map,
)
from wsseg.core.voxelize import voxelize


def random_coords(rng: np.random.Generator, n: int, extent: int, batches: int = 2) -> np.ndarray:
    xyz = rng.integers(-extent, extent, size=(n, 3)).astype(np.float32) + 0.5
    batch = rng.integers(0, batches, size=n)
    return voxelize(xyz, 1.0, batch=batch).coords


def as_index(coords: np.ndarray) -> dict[tuple[int, ...], int]:
    return {tuple(c): i for i, c in enumerate(coords.tolist())}


@pytest.mark.parametrize("extent", [3, 10])
def test_neighbour_map_brute_force(extent: int) -> None:
    coords = random_coords(np.random.default_rng(extent), 400, extent)
    maps = build_kernel_maps(coords, num_levels=1)
    nbr = maps.neighbours[0]
    lookup = as_index(coords)
    m = coords.shape[0]
    assert nbr.shape == (m, 27) and nbr.dtype == np.int32
    for i, c in enumerate(coords.tolist()):
        for k, off in enumerate(OFFSETS_3X3X3.tolist()):
            key = (c[0], c[1] + off[0], c[2] + off[1], c[3] + off[2])
            assert nbr[i, k] == lookup.get(key, m)
    assert (nbr[:, 13] == np.arange(m)).all()  # the centre tap is the voxel itself


def test_down_and_up_maps_brute_force() -> None:
    coords = random_coords(np.random.default_rng(7), 600, 6)
    maps = build_kernel_maps(coords, num_levels=3)
    for level in range(2):
        fine, coarse = maps.coords[level], maps.coords[level + 1]
        fine_index, coarse_index = as_index(fine), as_index(coarse)
        expected_parents = sorted({(c[0], c[1] // 2, c[2] // 2, c[3] // 2) for c in fine.tolist()})
        assert [tuple(c) for c in coarse.tolist()] == expected_parents
        down, up = maps.down[level], maps.up[level]
        assert down.shape == (coarse.shape[0], 8) and up.shape == (fine.shape[0],)
        for j, p in enumerate(coarse.tolist()):
            for k, off in enumerate(OFFSETS_2X2X2.tolist()):
                child = (p[0], 2 * p[1] + off[0], 2 * p[2] + off[1], 2 * p[3] + off[2])
                assert down[j, k] == fine_index.get(child, fine.shape[0])
        for i, c in enumerate(fine.tolist()):
            parent = (c[0], c[1] // 2, c[2] // 2, c[3] // 2)
            offset = (c[1] - 2 * parent[1]) * 4 + (c[2] - 2 * parent[2]) * 2 + (c[3] - 2 * parent[3])
            assert up[i] == coarse_index[parent] * 8 + offset
        # every fine voxel appears exactly once in the down map
        present = down[down < fine.shape[0]]
        assert sorted(present.tolist()) == list(range(fine.shape[0]))
        # the stand-alone maps (search based) equal the fused ones build_kernel_maps uses
        np.testing.assert_array_equal(up_map(fine, coarse), up)
        np.testing.assert_array_equal(down_map(fine, coarse), down)


def test_levels_shrink_and_names() -> None:
    coords = random_coords(np.random.default_rng(3), 2000, 20)
    maps = build_kernel_maps(coords, num_levels=4)
    sizes = [c.shape[0] for c in maps.coords]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < sizes[0]
    names = list(maps.as_inputs())
    assert names == map_input_names(4)
    assert names[:4] == ["neighbours_0", "neighbours_1", "neighbours_2", "neighbours_3"]


def test_single_voxel_and_isolated_voxels() -> None:
    coords = np.array([[0, 5, 5, 5]], dtype=np.int32)
    maps = build_kernel_maps(coords, num_levels=3)
    assert maps.neighbours[0].tolist() == [[1] * 13 + [0] + [1] * 13]
    assert all(c.shape == (1, 4) for c in maps.coords)
    far_apart = np.array([[0, 0, 0, 0], [0, 10, 10, 10]], dtype=np.int32)
    nbr = build_kernel_maps(far_apart, 1).neighbours[0]
    assert (nbr[:, 13] == [0, 1]).all() and (np.delete(nbr, 13, axis=1) == 2).all()


def test_coarsen_handles_negative_coordinates() -> None:
    coords = np.array([[0, -1, -1, -1], [0, -2, 0, 1], [0, 1, 1, 1]], dtype=np.int32)
    assert coarsen(coords).tolist() == [[0, -1, -1, -1], [0, -1, 0, 0], [0, 0, 0, 0]]


def test_rejects_unsorted_coordinates() -> None:
    coords = np.array([[0, 1, 0, 0], [0, 0, 0, 0]], dtype=np.int32)
    with pytest.raises(ValueError, match="sorted"):
        build_kernel_maps(coords, 1)
    with pytest.raises(ValueError, match="num_levels"):
        build_kernel_maps(coords[:1], 0)
