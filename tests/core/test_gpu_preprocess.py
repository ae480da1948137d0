"""GPU preprocessing (CuPy) gives the CPU tables exactly; skipped cleanly without CuPy or a CUDA device."""

from __future__ import annotations

import numpy as np
import pytest

from wsseg.core import gpu_preprocess
from wsseg.core.kernel_maps import build_kernel_maps
from wsseg.core.voxelize import voxelize

cp = gpu_preprocess.cupy_module()
needs_gpu = pytest.mark.skipif(cp is None, reason="no CuPy / CUDA device (GPU preprocessing not run here)")


def test_without_a_gpu_the_module_imports_and_says_what_is_missing() -> None:
    if cp is not None:
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="CuPy and a CUDA device"):
        gpu_preprocess.voxelize_device(np.zeros((3, 3), np.float32), 0.1)


@needs_gpu
@pytest.mark.parametrize("offset", [0.0, -37.0, 512_345.0])
def test_device_tables_equal_cpu_tables(offset: float) -> None:  # pragma: no cover - needs a GPU
    rng = np.random.default_rng(0)
    xyz = (rng.normal(size=(20000, 3)) * 5 + offset).astype(np.float32)
    device = gpu_preprocess.build_kernel_maps_device(cp.asarray(xyz), 0.1, 4)
    grid = voxelize(xyz, 0.1)
    cpu = build_kernel_maps(grid.coords, 4)
    np.testing.assert_array_equal(device.inverse.get(), grid.inverse)
    host = device.to_host()
    for name in ("coords", "neighbours", "down", "up"):
        for a, b in zip(getattr(host, name), getattr(cpu, name), strict=True):
            assert a.dtype == b.dtype and np.array_equal(a, b), name
