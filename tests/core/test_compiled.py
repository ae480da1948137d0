"""The compiled (numba) table builders against the numpy reference: bit-identical on every input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import SHARED_DATA
from wsseg.core import backend
from wsseg.core.features import FeatureConfig
from wsseg.core.preprocess import NetworkInput, PreprocessConfig, prepare_cloud

pytest.importorskip("numba")

ALL_FEATURES = FeatureConfig(names=("offset", "rgb", "intensity", "height"))


def both(config: PreprocessConfig, xyz: np.ndarray, **kwargs: np.ndarray) -> tuple[NetworkInput, NetworkInput]:
    compiled = prepare_cloud(config, xyz, **kwargs)
    assert backend.name() == "numba"
    with backend.numpy_only():
        assert backend.name() == "numpy"
        reference = prepare_cloud(config, xyz, **kwargs)
    return compiled, reference


def assert_identical(a: NetworkInput, b: NetworkInput) -> None:
    """Every array equal bit for bit, with the same dtype and shape."""
    pairs = {
        "coords": (a.grid.coords, b.grid.coords), "inverse": (a.grid.inverse, b.grid.inverse),
        "counts": (a.grid.counts, b.grid.counts), "features": (a.features, b.features),
        **{f"level coords {i}": pair for i, pair in enumerate(zip(a.maps.coords, b.maps.coords, strict=True))},
        **{name: (a.maps.as_inputs()[name], b.maps.as_inputs()[name]) for name in a.maps.as_inputs()},
    }
    assert list(a.maps.as_inputs()) == list(b.maps.as_inputs())
    for name, (x, y) in pairs.items():
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert np.array_equal(x.view(np.uint8), y.view(np.uint8)), name  # bit-identical, floats included


def cloud_attributes(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {"rgb": rng.integers(0, 256, (n, 3), dtype=np.uint8), "intensity": rng.uniform(0, 1, n).astype(np.float32)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_clouds_all_levels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2000, 20000))
    xyz = (rng.normal(size=(n, 3)) * rng.uniform(0.5, 20)).astype(np.float32)
    config = PreprocessConfig(voxel_size_m=float(rng.uniform(0.02, 0.3)), num_levels=6, features=ALL_FEATURES)
    assert_identical(*both(config, xyz, **cloud_attributes(rng, n)))


def test_batched_clouds() -> None:
    rng = np.random.default_rng(5)
    n = 6000
    xyz = rng.uniform(-4, 4, (n, 3)).astype(np.float32)
    batch = rng.integers(0, 3, n)
    config = PreprocessConfig(voxel_size_m=0.25, num_levels=4, features=ALL_FEATURES)
    assert_identical(*both(config, xyz, batch=batch, **cloud_attributes(rng, n)))


@pytest.mark.parametrize("case", ["one_point", "one_voxel", "negative", "utm", "float64", "line"])
def test_edge_cases(case: str) -> None:
    rng = np.random.default_rng(11)
    xyz = {
        "one_point": np.array([[0.3, -0.2, 1.0]]),
        "one_voxel": rng.uniform(0.01, 0.04, (50, 3)),
        "negative": rng.uniform(-30, -0.001, (3000, 3)),
        "utm": np.array([512_345.0, 5_403_210.0, 250.0]) + rng.uniform(-40, 40, (3000, 3)),
        "float64": rng.uniform(-2, 2, (3000, 3)),
        "line": np.column_stack([np.linspace(-5, 5, 500), np.zeros(500), np.zeros(500)]),
    }[case]
    xyz = xyz if case == "float64" else xyz.astype(np.float32)
    config = PreprocessConfig(voxel_size_m=0.05, num_levels=5, features=ALL_FEATURES)
    compiled, reference = both(config, xyz, **cloud_attributes(rng, xyz.shape[0]))
    assert_identical(compiled, reference)
    if case in ("one_point", "one_voxel"):
        assert compiled.grid.num_voxels == 1 and compiled.maps.neighbours[0].tolist() == [[1] * 13 + [0] + [1] * 13]


def test_index_tables_are_int32() -> None:
    rng = np.random.default_rng(2)
    net_input = prepare_cloud(PreprocessConfig(voxel_size_m=0.2, num_levels=3), rng.uniform(0, 5, (3000, 3)),
                              rgb=rng.integers(0, 256, (3000, 3), dtype=np.uint8))
    assert {a.dtype for a in net_input.maps.as_inputs().values()} == {np.dtype(np.int32)}


def _kitti_scans() -> list:
    return sorted((SHARED_DATA / "semantickitti" / "sequences").glob("*/velodyne/*.bin"))


@pytest.mark.skipif(not _kitti_scans(), reason="real SemanticKITTI scans not present in ../shared/data")
@pytest.mark.parametrize("voxel_size_m", [0.05, 0.1])
def test_real_kitti_scans(voxel_size_m: float) -> None:
    config = PreprocessConfig(voxel_size_m=voxel_size_m, num_levels=5, features=FeatureConfig(("offset", "intensity")))
    for scan in _kitti_scans()[:2]:
        raw = np.fromfile(scan, dtype=np.float32).reshape(-1, 4)
        assert_identical(*both(config, raw[:, :3].copy(), intensity=raw[:, 3].copy()))


@pytest.mark.skipif(not (SHARED_DATA / "mosd" / "learn").is_dir(), reason="real mOSD frames not present")
def test_real_mosd_frame() -> None:
    from wsseg.core.cloud_io import read_cloud

    cloud = read_cloud(sorted((SHARED_DATA / "mosd" / "learn").glob("*.pcd"))[0])
    valid = cloud.valid_mask()
    config = PreprocessConfig(voxel_size_m=0.02, num_levels=4, features=FeatureConfig(("offset", "rgb")))
    assert_identical(*both(config, cloud.xyz[valid], rgb=cloud.rgb[valid]))


FALLBACK_SCRIPT = """
import json, sys
import numpy as np
from wsseg.core import backend
from wsseg.core.preprocess import PreprocessConfig, prepare_cloud
rng = np.random.default_rng(4)
xyz = rng.uniform(-3, 3, (4000, 3)).astype(np.float32)
net = prepare_cloud(PreprocessConfig(voxel_size_m=0.1, num_levels=4), xyz,
                    rgb=rng.integers(0, 256, (4000, 3), dtype=np.uint8))
np.savez(sys.argv[1], features=net.features, inverse=net.grid.inverse, **net.maps.as_inputs())
print(json.dumps({"backend": backend.name(), "numba_imported": "numba" in sys.modules}))
"""


def test_numpy_fallback_when_compiled_backend_is_disabled(tmp_path) -> None:
    """WSSEG_NO_COMPILED=1: numba is never imported and the tables equal the compiled ones."""
    runs = {}
    for label, env in (("disabled", {"WSSEG_NO_COMPILED": "1"}), ("compiled", {})):
        out = tmp_path / f"{label}.npz"
        proc = subprocess.run([sys.executable, "-c", FALLBACK_SCRIPT, str(out)], capture_output=True, text=True,
                              env={k: v for k, v in os.environ.items() if k != "WSSEG_NO_COMPILED"} | env, check=True)
        runs[label] = (json.loads(proc.stdout.strip().splitlines()[-1]), dict(np.load(out)))
    assert runs["disabled"][0] == {"backend": "numpy", "numba_imported": False}
    assert runs["compiled"][0] == {"backend": "numba", "numba_imported": True}
    for name, array in runs["compiled"][1].items():
        assert np.array_equal(array, runs["disabled"][1][name]), name


def _unique_sorted_coords(rng: np.random.Generator, n: int, extent: int) -> np.ndarray:
    """(M, 4) int32 unique rows sorted by (batch, x, y, z): a dense blob and scattered voxels, 2 scenes."""
    dense = rng.integers(-extent // 8, extent // 8, (n, 3))
    scattered = rng.integers(-extent, extent, (n // 4, 3))
    xyz = np.concatenate([dense, scattered])
    rows = np.column_stack([rng.integers(0, 2, len(xyz)), xyz])
    return np.unique(rows, axis=0).astype(np.int32)


@pytest.mark.parametrize(("n", "extent"), [(1, 4), (2, 4), (40, 6), (3000, 40), (30000, 60)])
def test_neighbour_table_same_for_any_thread_count_and_block_split(n: int, extent: int) -> None:
    """The serial merge, the parallel row blocks (more blocks than rows included) and the numpy map agree."""
    from wsseg.core import compiled_kernels
    from wsseg.core.kernel_maps import OFFSETS_3X3X3, neighbour_map
    from wsseg.core.voxelize import CoordinateKeys

    coords = _unique_sorted_coords(np.random.default_rng(n), n, extent)
    with backend.numpy_only():
        reference = neighbour_map(coords)
    packer = CoordinateKeys(coords, margin_voxels=1)
    keys, steps = packer.pack(coords), packer.offset_keys(OFFSETS_3X3X3)
    tables = {f"threads={t}": compiled_kernels.neighbour_table(keys, steps, t) for t in (1, 2, 3)}
    tables |= {f"blocks={b}": compiled_kernels._neighbour_table_parallel(keys, steps, b) for b in (1, 5, 64)}
    for name, table in tables.items():
        assert table.dtype == np.int32 and table.shape == reference.shape, name
        assert np.array_equal(table, reference), name


@pytest.mark.parametrize("names", [("offset", "rgb", "intensity", "height"), ("offset", "normal")])
def test_prepare_cloud_with_several_preprocessing_threads(names: tuple[str, ...]) -> None:
    """backend.set_threads(2): the levels' tables, the features (beside the maps, or after them when the normals
    need the level-0 map) and the chunked graph tables build on the pool; every array equals the numpy one."""
    from wsseg.core.conv_tables import GraphSpec, graph_inputs

    rng = np.random.default_rng(8)
    xyz = rng.uniform(-6, 6, (40000, 3)).astype(np.float32)
    config = PreprocessConfig(voxel_size_m=0.2, num_levels=4, features=FeatureConfig(names=names))
    spec = GraphSpec(num_levels=4, chunked_levels=(False, True, True, True), chunk_rows=32)
    backend.set_threads(2)
    try:
        assert backend.threads() == min(2, os.cpu_count() or 1)
        compiled, reference = both(config, xyz, **cloud_attributes(rng, len(xyz)))
        tables = graph_inputs(compiled.maps, spec)
    finally:
        backend.set_threads(1)
    assert_identical(compiled, reference)
    expected = graph_inputs(reference.maps, spec)
    assert list(tables) == list(expected)
    for name, table in expected.items():
        assert tables[name].dtype == table.dtype and np.array_equal(tables[name], table), name
    with pytest.raises(ValueError, match="threads must be >= 1"):
        backend.set_threads(0)


def test_pool_tasks_return_in_order_and_raise_where_taken() -> None:
    """backend.submit / results: results in task order whoever runs them; a task's error reaches the caller."""
    def slow_square(x: int) -> int:
        time.sleep(0.002 * (x % 3))
        return x * x

    def fail(_: int) -> int:
        raise ValueError("bad table")

    for threads in (1, 2):
        backend.set_threads(threads)
        try:
            assert backend.results([backend.submit(slow_square, i) for i in range(9)]) == [i * i for i in range(9)]
            with pytest.raises(ValueError, match="bad table"):
                backend.results([backend.submit(slow_square, 1), backend.submit(fail, 2), backend.submit(fail, 3)])
            assert backend.results([]) == []
        finally:
            backend.set_threads(1)


def test_wide_cloud_uses_the_hash_unique_and_stays_identical() -> None:
    """A cloud whose keys and point tags do not fit 63 bits (km-wide, 5 cm) takes the hash-table unique."""
    from wsseg.core import compiled_kernels
    from wsseg.core.voxelize import CoordinateKeys, grid_indices

    rng = np.random.default_rng(3)
    corners = np.array([[-12_000.0, -12_000.0, -100.0], [12_000.0, 12_000.0, 100.0], [12_000.0, -12_000.0, 0.0]])
    xyz = np.concatenate([c + rng.uniform(0, 0.6, (1500, 3)) for c in corners]).astype(np.float32)
    rows = np.column_stack([np.zeros(len(xyz), np.int64), grid_indices(xyz, 0.05)])
    assert int(CoordinateKeys(rows).bits.sum()) + compiled_kernels.index_bits(len(xyz)) > 63  # the fallback
    config = PreprocessConfig(voxel_size_m=0.05, num_levels=4, features=ALL_FEATURES)
    assert_identical(*both(config, xyz, **cloud_attributes(rng, len(xyz))))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_indexable_mask_matches_numpy(dtype: type) -> None:
    """The compiled reach check equals numpy's on NaN, +-inf and values one ulp either side of the limit."""
    from wsseg.core.voxelize import MAX_GRID_INDEX, indexable_mask

    rng = np.random.default_rng(5)
    for voxel in (0.1, 0.05, 0.07):
        limit = dtype(voxel * MAX_GRID_INDEX)
        xyz = rng.normal(0, float(limit), (5000, 3)).astype(dtype)
        xyz[::7, 1], xyz[::11, 2], xyz[::13, 0] = np.nan, np.inf, -np.inf
        edge = np.array([limit, np.nextafter(limit, dtype(0)), np.nextafter(limit, dtype(np.inf)), -limit], dtype)
        xyz[1:5], xyz[15:19] = 0, 0  # rows free of NaN / inf: one coordinate at the edge
        xyz[1:5, 0], xyz[15:19, 1] = edge, -edge
        mask = indexable_mask(xyz, voxel)
        with backend.numpy_only():
            reference = indexable_mask(xyz, voxel)
        assert mask.dtype == np.bool_ and np.array_equal(mask, reference), voxel
        assert not mask[::7].any()
        assert mask[1:5].tolist() == mask[15:19].tolist() == [False, True, False, False]
