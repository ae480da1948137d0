"""Kernel maps: the index tables a sparse U-Net's convolutions gather through.

For a U-Net with ``L`` levels (level 0 = the input voxels, level ``l+1`` = level
``l`` coarsened by 2 in every axis), :func:`build_kernel_maps` returns, with
``M_l`` the number of active voxels at level ``l``:

* ``neighbours[l]``: (M_l, 27) int32.  Row ``i``, column ``k`` is the row of the
  voxel at ``coords[i] + OFFSETS_3X3X3[k]``, or ``M_l`` when that voxel is not
  active (the convolution appends a zero feature row at index ``M_l``).  The
  column order ``k = 9*(dx+1) + 3*(dy+1) + (dz+1)`` equals the flattened
  ``(kx, ky, kz)`` order of a dense ``conv3d`` kernel with ``padding=1``.
* ``down[l]``: (M_{l+1}, 8) int32 for the stride-2, 2x2x2 convolution from level
  ``l`` to ``l+1``: row ``j``, column ``k`` is the level-``l`` row of the child
  ``2 * parent_j + OFFSETS_2X2X2[k]``, or ``M_l`` when absent.
* ``up[l]``: (M_l,) int32 for the transposed convolution from level ``l+1``
  back to ``l``: ``parent_row * 8 + k`` where ``k`` is the child's offset
  inside its parent.  Every child has exactly one parent, so the transposed
  convolution is "matmul the parents with all 8 kernel slices, then gather".

Coordinates follow the batch layout of :mod:`wsseg.core.voxelize`.  Every table is int32 (graph
inputs included: TensorRT has no int64 indices), so a level holds at most 2^31 - 1 voxels.  The
numpy code here is the reference; :mod:`wsseg.core.backend` runs the compiled kernels instead when
they are installed (bit-identical tables).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from wsseg.core import backend
from wsseg.core.backend import compiled
from wsseg.core.voxelize import CoordinateKeys

#: index dtype of every table (graph inputs included)
INDEX_DTYPE = np.int32

#: (27, 3) int64 neighbour offsets, dx outermost.
OFFSETS_3X3X3 = np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=np.int64)
#: (8, 3) int64 child offsets inside a stride-2 parent, ox outermost.
OFFSETS_2X2X2 = np.array(list(itertools.product((0, 1), repeat=3)), dtype=np.int64)


@dataclass(frozen=True)
class KernelMaps:
    """Index tables of every level; see the module docstring for the layout.

    coords: per level (M_l, 4) int32 ``[batch, x, y, z]`` in that level's grid.
    neighbours: per level (M_l, 27) int32.
    down: per transition l -> l+1, (M_{l+1}, 8) int32.
    up: per transition l+1 -> l, (M_l,) int32.
    """

    coords: tuple[np.ndarray, ...]
    neighbours: tuple[np.ndarray, ...]
    down: tuple[np.ndarray, ...]
    up: tuple[np.ndarray, ...]

    @property
    def num_levels(self) -> int:
        return len(self.coords)

    def as_inputs(self) -> dict[str, np.ndarray]:
        """The maps keyed by the model-input names of :func:`map_input_names`."""
        names = map_input_names(self.num_levels)
        arrays = [*self.neighbours, *self.down, *self.up]
        return dict(zip(names, arrays, strict=True))


def map_input_names(num_levels: int) -> list[str]:
    """Model-input names of the kernel maps, in the order the network takes them."""
    return (
        [f"neighbours_{level}" for level in range(num_levels)]
        + [f"down_{level}" for level in range(num_levels - 1)]
        + [f"up_{level}" for level in range(num_levels - 1)]
    )


def _lookup(keys_sorted: np.ndarray, query: np.ndarray, missing: int) -> np.ndarray:
    """Row of every query key in ``keys_sorted`` (ascending, unique), ``missing`` if absent."""
    pos = np.searchsorted(keys_sorted, query)
    pos_clipped = np.minimum(pos, max(keys_sorted.shape[0] - 1, 0))
    found = (pos < keys_sorted.shape[0]) & (keys_sorted[pos_clipped] == query) if keys_sorted.size else np.zeros(
        query.shape, dtype=bool
    )
    return np.where(found, pos_clipped, missing).astype(np.int64)


def _check_index_range(num_rows: int) -> None:
    if num_rows >= np.iinfo(INDEX_DTYPE).max:
        raise ValueError(f"{num_rows} voxels in one level exceed the int32 index tables; use a larger voxel size")


def _sorted_rows(coords: np.ndarray, packer: CoordinateKeys) -> np.ndarray:
    keys = packer.pack(coords)
    if keys.size > 1 and not np.all(keys[1:] > keys[:-1]):
        raise ValueError("voxel coordinates must be unique and sorted by (batch, x, y, z)")
    return keys


def neighbour_map(coords: np.ndarray) -> np.ndarray:
    """Submanifold 3x3x3 neighbour map.

    coords: (M, 4) int32, unique, sorted (as :func:`voxelize` returns them).
    Returns (M, 27) int32, ``M`` where the neighbour is inactive.

    Keys of shifted voxels are the voxel's key plus a constant step (packing is linear; the packer's
    one-voxel margin keeps every shifted key unambiguous), and the map is symmetric -- row ``j`` is
    neighbour ``k`` of row ``i`` exactly when ``i`` is neighbour ``26 - k`` (the opposite offset) of
    ``j`` -- so only 13 of the 27 columns are searched.
    """
    coords = np.asarray(coords, dtype=np.int64)
    _check_index_range(coords.shape[0])
    m = coords.shape[0]
    packer = CoordinateKeys(coords, margin_voxels=1)
    keys = _sorted_rows(coords, packer)
    steps = packer.offset_keys(OFFSETS_3X3X3)
    kernels = compiled()
    if kernels is not None:
        return kernels.neighbour_table(keys, steps, backend.threads())
    rows = np.arange(m, dtype=np.int64)
    out = np.empty((m, 27), dtype=np.int64)
    out[:, 13] = rows  # offset (0, 0, 0)
    for k in range(13):
        found = _lookup(keys, keys + steps[k], m)
        out[:, k] = found
        mirror = np.full(m, m, dtype=np.int64)
        hit = found < m
        mirror[found[hit]] = rows[hit]
        out[:, 26 - k] = mirror
    return out.astype(INDEX_DTYPE)


def _parents(fine: np.ndarray) -> np.ndarray:
    """(M, 4) int64 parent coordinates ``[batch, floor(xyz / 2)]`` of stride-2 coarsening."""
    parents = np.asarray(fine, dtype=np.int64).copy()
    parents[:, 1:] = np.floor_divide(parents[:, 1:], 2)
    return parents


def _child_offset_index(fine: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """(M,) int64 index ``4 * ox + 2 * oy + oz`` of each fine voxel inside its parent (OFFSETS_2X2X2 order)."""
    child = np.asarray(fine, dtype=np.int64)[:, 1:] - 2 * parents[:, 1:]
    return child[:, 0] * 4 + child[:, 1] * 2 + child[:, 2]


def coarsen(coords: np.ndarray) -> np.ndarray:
    """Parent coordinates of a stride-2 level: unique ``floor(xyz / 2)`` rows, sorted.

    coords: (M, 4) int32.  Returns (M', 4) int32.
    """
    return coarsen_with_up_map(coords)[0]


def coarsen_with_up_map(fine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The next level and the up map in one pass: ``(coarse (M', 4) int32, up (M,) int32)``.

    Same results as :func:`coarsen` and :func:`up_map`; the parent of every fine voxel comes from the
    inverse of the ``unique`` that forms the coarse level, so no search is needed.
    """
    kernels = compiled()
    if kernels is not None and len(fine):
        # floor(x / 2) is monotone, so the parents' bounds are the halved bounds of the fine level
        fine = np.ascontiguousarray(fine)
        low, high = kernels.column_bounds(fine)
        packer = CoordinateKeys.from_bounds(*_halved(low, high))
        keys, up = _coarsen_compiled(kernels, fine, packer)
    else:
        fine = np.asarray(fine, dtype=np.int64)
        parents = _parents(fine)
        packer = CoordinateKeys(parents)
        keys, parent_rows = np.unique(packer.pack(parents), return_inverse=True)
        up = parent_rows.reshape(-1).astype(np.int64) * 8 + _child_offset_index(fine, parents)
    _check_index_range(up.size and int(up.max()) + 1)
    return packer.unpack(keys), up.astype(INDEX_DTYPE)


def _halved(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column bounds (4,) of a level -> those of its stride-2 parents (batch unchanged)."""
    return np.r_[low[0], low[1:] >> 1], np.r_[high[0], high[1:] >> 1]


def _coarsen_compiled(kernels: object, fine: np.ndarray, packer: CoordinateKeys) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique parent keys packed by ``packer``, up map (M,) int64) of sorted unique rows ``fine``."""
    tag = kernels.index_bits(len(fine))  # type: ignore[attr-defined]
    if int(packer.bits.sum()) + tag <= 63:
        tagged, child = kernels.parent_keys(fine, packer.low, packer.shifts, tag)  # type: ignore[attr-defined]
        keys, parent_rows, _ = kernels.unique_tagged(tagged, tag)  # type: ignore[attr-defined]
    else:
        keys, child = kernels.parent_keys(fine, packer.low, packer.shifts, 0)  # type: ignore[attr-defined]
        keys, parent_rows, _ = kernels.unique_inverse(keys)  # type: ignore[attr-defined]
    return keys, parent_rows * 8 + child


def down_map(fine: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    """Stride-2 2x2x2 map: (M_coarse, 8) int32 rows into ``fine``, ``M_fine`` if absent."""
    return down_from_up(up_map(fine, coarse), len(fine), len(coarse))


def down_from_up(up: np.ndarray, num_fine: int, num_coarse: int) -> np.ndarray:
    """The down map as the inverse of the up map: child slot ``up[i]`` of the coarse level holds fine row ``i``.

    Every fine voxel has exactly one parent and one slot in it, so the scatter is exact.
    Returns (num_coarse, 8) int32, ``num_fine`` in empty slots.
    """
    kernels = compiled()
    if kernels is not None:
        return kernels.down_from_up(np.ascontiguousarray(up), int(num_fine), int(num_coarse))
    down = np.full(num_coarse * 8, num_fine, dtype=INDEX_DTYPE)
    down[np.asarray(up)] = np.arange(num_fine, dtype=INDEX_DTYPE)
    return down.reshape(num_coarse, 8)


def up_map(fine: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    """Transposed-conv map: (M_fine,) int32 ``parent_row * 8 + child_offset_index``."""
    fine = np.asarray(fine, dtype=np.int64)
    coarse = np.asarray(coarse, dtype=np.int64)
    parents = _parents(fine)
    packer = CoordinateKeys(coarse)
    parent_rows = _lookup(_sorted_rows(coarse, packer), packer.pack(parents), -1)
    if parent_rows.size and parent_rows.min() < 0:
        raise ValueError("coarse level does not contain the parent of every fine voxel")
    return (parent_rows * 8 + _child_offset_index(fine, parents)).astype(INDEX_DTYPE)


def build_kernel_maps(coords: np.ndarray, num_levels: int) -> KernelMaps:
    """All index tables of a ``num_levels``-level U-Net over level-0 voxels ``coords``.

    coords: (M_0, 4) int32, unique and sorted (from :func:`wsseg.core.voxelize.voxelize`).
    """
    if num_levels < 1:
        raise ValueError(f"num_levels must be >= 1, got {num_levels}")
    coords = np.asarray(coords, dtype=np.int32)
    if coords.ndim != 2 or coords.shape[1] != 4:
        raise ValueError(f"coords must have shape (M, 4), got {coords.shape}")
    kernels = compiled()
    if kernels is not None and len(coords):
        return _build_compiled(kernels, np.ascontiguousarray(coords), num_levels)
    levels, ups = [coords], []
    for _ in range(num_levels - 1):
        coarse, up = coarsen_with_up_map(levels[-1])
        levels.append(coarse)
        ups.append(up)
    return KernelMaps(
        coords=tuple(levels),
        neighbours=tuple(neighbour_map(c) for c in levels),
        down=tuple(down_from_up(ups[i], len(levels[i]), len(levels[i + 1])) for i in range(num_levels - 1)),
        up=tuple(ups),
    )


def _build_compiled(kernels: object, coords: np.ndarray, num_levels: int) -> KernelMaps:
    """:func:`build_kernel_maps` through the compiled kernels, keys packed once per level.

    Every level's keys are packed with its neighbour-map packer (one-voxel margin); the parents of a
    level are packed straight into the next level's packer, whose bounds are the halved bounds, so the
    sorted unique parent keys are the next level's neighbour keys and nothing is packed or checked twice.
    Same tables as the numpy path (which :func:`coarsen_with_up_map` and :func:`neighbour_map` are).
    """
    _check_index_range(coords.shape[0])
    low, high = kernels.column_bounds(coords)  # type: ignore[attr-defined]
    packer = CoordinateKeys.from_bounds(low, high, margin_voxels=1)
    keys = kernels.pack_coords(coords, packer.low, packer.shifts)  # type: ignore[attr-defined]
    if not kernels.strictly_increasing(keys):  # type: ignore[attr-defined]
        raise ValueError("voxel coordinates must be unique and sorted by (batch, x, y, z)")
    # one neighbour table per level: a level's table needs only its keys, so with preprocessing threads > 1 the
    # tables build on the pool (level 0, about half the voxels, first) while this thread coarsens
    threads = 1 if backend.threads() > 1 and num_levels > 1 else backend.threads()
    levels, tables, downs, ups = [coords], [], [], []
    for level in range(num_levels):
        tables.append(backend.submit(kernels.neighbour_table, keys, packer.offset_keys(OFFSETS_3X3X3), threads))  # type: ignore[attr-defined]
        if level == num_levels - 1:
            break
        low, high = _halved(low, high)
        coarse_packer = CoordinateKeys.from_bounds(low, high, margin_voxels=1)
        keys, up = _coarsen_compiled(kernels, levels[-1], coarse_packer)
        _check_index_range(up.size and int(up.max()) + 1)
        levels.append(coarse_packer.unpack(keys))
        ups.append(up.astype(INDEX_DTYPE))
        downs.append(kernels.down_from_up(ups[-1], len(levels[-2]), len(levels[-1])))  # type: ignore[attr-defined]
        packer = coarse_packer
    neighbours = tuple(backend.results(tables))
    return KernelMaps(coords=tuple(levels), neighbours=neighbours, down=tuple(downs), up=tuple(ups))
