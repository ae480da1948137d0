"""Voxelization and kernel maps on an NVIDIA GPU with CuPy (optional: ``pip install wsseg[gpu]``).

The same algorithm as the numpy reference (:mod:`wsseg.core.voxelize`, :mod:`wsseg.core.kernel_maps`):
packed int64 keys, a sort-based unique with inverse, a sorted search per neighbour offset, stride-2
parents from the same unique.  The tables are integer results of the same definitions, so they are
identical to the CPU ones (``tests/core/test_gpu_preprocess.py`` checks it on a GPU machine and skips
without one).  Arrays stay on the device (``cupy.ndarray``), ready for ONNX Runtime's CUDA / TensorRT
providers through IO binding (:meth:`wsseg.runtime.engines.OnnxRuntimeEngine.run_device`), so the
tables never make a host round trip.  Not run here: these machines have no GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from wsseg.core.kernel_maps import KernelMaps
from wsseg.core.voxelize import CoordinateKeys


def cupy_module() -> Any | None:
    """The ``cupy`` module when it is installed and a CUDA device is visible, else None."""
    try:
        import cupy
    except ImportError:
        return None
    try:
        return cupy if cupy.cuda.runtime.getDeviceCount() > 0 else None
    except Exception:  # cupy raises CUDARuntimeError without a driver
        return None


@dataclass(frozen=True)
class DeviceTables:
    """Level-0 voxels and every level's kernel maps as device arrays (int32; ``inverse`` int64)."""

    coords: tuple[Any, ...]
    neighbours: tuple[Any, ...]
    down: tuple[Any, ...]
    up: tuple[Any, ...]
    inverse: Any

    def to_host(self) -> KernelMaps:
        """The tables as a :class:`~wsseg.core.kernel_maps.KernelMaps` of numpy arrays."""
        def get(arrays: tuple[Any, ...]) -> tuple[np.ndarray, ...]:
            return tuple(a.get() for a in arrays)

        return KernelMaps(coords=get(self.coords), neighbours=get(self.neighbours), down=get(self.down),
                          up=get(self.up))


def _packer(cp: Any, rows: Any, margin: int = 0) -> tuple[CoordinateKeys, Any, Any]:
    """The CPU packer for device rows (bounds from the device), with its low and shifts as device arrays."""
    low, high = rows.min(axis=0).get(), rows.max(axis=0).get()
    packer = CoordinateKeys.from_bounds(low, high, margin)
    return packer, cp.asarray(packer.low), cp.asarray(packer.shifts)


def _pack(cp: Any, rows: Any, low: Any, shift: Any) -> Any:
    return ((rows.astype(cp.int64) - low) << shift).sum(axis=1)


def _unpack(cp: Any, keys: Any, packer: CoordinateKeys) -> Any:
    masks = cp.asarray((np.int64(1) << packer.bits) - 1)
    rel = (keys[:, None] >> cp.asarray(packer.shifts)) & masks
    return (rel + cp.asarray(packer.low)).astype(cp.int32)


def voxelize_device(xyz: Any, voxel_size_m: float) -> tuple[Any, Any]:
    """xyz (N, 3) float32 device array, metres -> (coords (M, 4) int32 sorted unique, inverse (N,) int64)."""
    cp = cupy_module()
    if cp is None:
        raise RuntimeError("GPU preprocessing needs CuPy and a CUDA device (pip install wsseg[gpu])")
    grid = cp.floor(xyz.astype(cp.float64) / voxel_size_m).astype(cp.int64)
    rows = cp.concatenate([cp.zeros((grid.shape[0], 1), dtype=cp.int64), grid], axis=1)
    packer, low, shift = _packer(cp, rows)
    keys, inverse = cp.unique(_pack(cp, rows, low, shift), return_inverse=True)
    return _unpack(cp, keys, packer), inverse.reshape(-1).astype(cp.int64)


def neighbour_map_device(coords: Any) -> Any:
    """(M, 4) int32 sorted unique device rows -> (M, 27) int32 neighbour map (``M`` = absent)."""
    cp = cupy_module()
    m = coords.shape[0]
    packer, low, shift = _packer(cp, coords.astype(cp.int64), margin=1)
    keys = _pack(cp, coords, low, shift)
    offsets = np.array([(dx, dy, dz) for dx in (-1, 0, 1) for dy in (-1, 0, 1) for dz in (-1, 0, 1)])
    steps = packer.offset_keys(offsets)
    out = cp.empty((m, 27), dtype=cp.int32)
    for k, step in enumerate(steps.tolist()):
        query = keys + step
        pos = cp.minimum(cp.searchsorted(keys, query), m - 1)
        out[:, k] = cp.where(keys[pos] == query, pos, m).astype(cp.int32)
    return out


def build_kernel_maps_device(xyz: Any, voxel_size_m: float, num_levels: int) -> DeviceTables:
    """Voxelize a device cloud and build every level's tables on the GPU (same tables as the CPU path)."""
    cp = cupy_module()
    coords, inverse = voxelize_device(xyz, voxel_size_m)
    levels, ups, downs = [coords], [], []
    for _ in range(num_levels - 1):
        fine = levels[-1].astype(cp.int64)
        parents = fine.copy()
        parents[:, 1:] = cp.floor_divide(parents[:, 1:], 2)
        packer, low, shift = _packer(cp, parents)
        keys, parent_rows = cp.unique(_pack(cp, parents, low, shift), return_inverse=True)
        child = fine[:, 1:] - 2 * parents[:, 1:]
        up = parent_rows.reshape(-1) * 8 + child[:, 0] * 4 + child[:, 1] * 2 + child[:, 2]
        coarse = _unpack(cp, keys, packer)
        down = cp.full(coarse.shape[0] * 8, fine.shape[0], dtype=cp.int32)
        down[up] = cp.arange(fine.shape[0], dtype=cp.int32)
        levels.append(coarse)
        ups.append(up.astype(cp.int32))
        downs.append(down.reshape(-1, 8))
    return DeviceTables(coords=tuple(levels), neighbours=tuple(neighbour_map_device(c) for c in levels),
                        down=tuple(downs), up=tuple(ups), inverse=inverse)
