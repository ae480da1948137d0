"""Chunked convolution tables: compiled == numpy, and a numpy convolution through them == the gather-GEMM."""

from __future__ import annotations

import numpy as np
import pytest

from wsseg.core import backend
from wsseg.core.conv_tables import GraphSpec, bucket_cuts, graph_input_names, graph_inputs
from wsseg.core.kernel_maps import build_kernel_maps
from wsseg.core.voxelize import voxelize


def maps_of(seed: int, n: int = 5000, levels: int = 4, voxel: float = 0.15):
    rng = np.random.default_rng(seed)
    xyz = np.concatenate([rng.uniform(-3, 3, (n // 2, 3)) * [1, 1, 0.02],  # a floor: sparse neighbourhoods
                          rng.normal(0, 1.0, (n - n // 2, 3))]).astype(np.float32)
    return build_kernel_maps(voxelize(xyz, voxel).coords, levels)


def chunked_conv_numpy(x: np.ndarray, weight: np.ndarray, tables: dict, prefix: str, centre: bool) -> np.ndarray:
    """What the exported graph computes, written with numpy gathers; weight (K, C_in, C_out)."""
    k = weight.shape[0]
    stack = np.concatenate([weight, np.zeros((1, *weight.shape[1:]))])
    products = np.einsum("ntc,ncd->ntd", x[tables[f"{prefix}_pairs"]], stack[tables[f"{prefix}_offsets"]])
    products = products.reshape(-1, weight.shape[2])
    buckets = [products[tables[f"{prefix}_slots{b}"]].sum(axis=1) for b in range(4)]
    out = np.concatenate(buckets)[tables[f"{prefix}_order"]]
    return out + x @ weight[k // 2] if centre else out


def gather_conv_numpy(x: np.ndarray, weight: np.ndarray, index: np.ndarray) -> np.ndarray:
    padded = np.concatenate([x, np.zeros((1, x.shape[1]))])
    return np.einsum("mkc,kcd->md", padded[index], weight)


@pytest.mark.parametrize("seed", [0, 1])
def test_chunked_convolutions_equal_gather_convolutions(seed: int) -> None:
    maps = maps_of(seed)
    spec = GraphSpec(num_levels=4, chunked_levels=(True,) * 4, chunk_rows=16, num_buckets=4)
    tables = graph_inputs(maps, spec)
    assert list(tables) == graph_input_names(spec)
    assert all(t.dtype == np.int32 and min(t.shape) >= 1 for t in tables.values())
    rng = np.random.default_rng(seed)
    for level in range(4):
        m = maps.neighbours[level].shape[0]
        x, w = rng.normal(size=(m, 5)), rng.normal(size=(27, 5, 3))
        np.testing.assert_allclose(chunked_conv_numpy(x, w, tables, f"subm{level}", True),
                                   gather_conv_numpy(x, w, maps.neighbours[level]), rtol=1e-10, atol=1e-10)
    for level in range(3):
        m = maps.neighbours[level].shape[0]
        x, w = rng.normal(size=(m, 4)), rng.normal(size=(8, 4, 6))
        np.testing.assert_allclose(chunked_conv_numpy(x, w, tables, f"down{level}", False),
                                   gather_conv_numpy(x, w, maps.down[level]), rtol=1e-10, atol=1e-10)
        parents = rng.normal(size=(maps.neighbours[level + 1].shape[0], 4))
        products = np.einsum("ntc,ncd->ntd", parents[tables[f"up{level}_pairs"]],
                             np.concatenate([w, np.zeros((1, 4, 6))])[tables[f"up{level}_offsets"]]).reshape(-1, 6)
        up = maps.up[level].astype(np.int64)
        expected = np.einsum("mc,mcd->md", parents[up // 8], w[up % 8])
        np.testing.assert_allclose(products[tables[f"up{level}_rows"]], expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("seed", [0, 3])
def test_compiled_tables_equal_numpy_tables(seed: int) -> None:
    pytest.importorskip("numba")
    maps = maps_of(seed, n=8000, levels=5, voxel=0.1)
    spec = GraphSpec(num_levels=5, chunked_levels=(False, True, True, True, True), chunk_rows=32)
    compiled = graph_inputs(maps, spec)
    with backend.numpy_only():
        reference = graph_inputs(maps, spec)
    assert list(compiled) == list(reference)
    for name in compiled:
        assert compiled[name].dtype == reference[name].dtype and np.array_equal(compiled[name], reference[name]), name


def test_single_voxel_and_gather_spec() -> None:
    maps = build_kernel_maps(np.array([[0, 4, 4, 4]], dtype=np.int32), 3)
    tables = graph_inputs(maps, GraphSpec(num_levels=3, chunked_levels=(True,) * 3))
    assert all(min(t.shape) >= 1 for t in tables.values())  # no empty tensor for TensorRT
    assert graph_inputs(maps, GraphSpec(num_levels=3)).keys() == maps.as_inputs().keys()


def test_bucket_cuts_minimise_padding() -> None:
    histogram = np.array([0, 100, 0, 50, 0, 0, 0, 0, 2])  # rows with 1, 3 and 8 pairs
    assert bucket_cuts(histogram, 3) == [1, 3, 8]
    assert bucket_cuts(histogram, 2) == [3, 8]  # 150 * 3 + 2 * 8 < 100 * 1 + 52 * 8
    assert bucket_cuts(np.zeros(9, dtype=int), 4) == [0]


def test_graph_spec_validation_and_round_trip() -> None:
    spec = GraphSpec(num_levels=3, chunked_levels=(False, True, True), chunk_rows=64)
    assert GraphSpec.from_dict(spec.to_dict(), 3) == spec
    assert GraphSpec.from_dict(None, 3).formulation == "gather"
    with pytest.raises(ValueError, match="flags"):
        GraphSpec(num_levels=3, chunked_levels=(True,))
