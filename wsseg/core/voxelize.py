"""Point cloud -> sparse voxel grid, and back.

Batch layout, used everywhere in wsseg: voxel coordinates are ``(M, 4)`` int32
rows ``[batch, x, y, z]``; ``x, y, z`` are integer grid indices
``floor(xyz / voxel_size_m)``; ``batch`` is the scene index inside a batch
(0 for a single scene).  Rows are unique and sorted lexicographically by
``(batch, x, y, z)`` so that the result does not depend on point order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wsseg.core.backend import compiled


@dataclass(frozen=True)
class VoxelGrid:
    """Result of :func:`voxelize`.

    coords: (M, 4) int32, ``[batch, x, y, z]`` unique voxel coordinates.
    inverse: (N,) int64, voxel row of every input point (point -> voxel map).
    counts: (M,) int64, number of points in every voxel.
    voxel_size_m: edge length of a voxel, metres.
    """

    coords: np.ndarray
    inverse: np.ndarray
    counts: np.ndarray
    voxel_size_m: float

    @property
    def num_voxels(self) -> int:
        return int(self.coords.shape[0])


class CoordinateKeys:
    """Packs ``(M, 4)`` integer ``[batch, x, y, z]`` rows into sortable int64 keys.

    Each column is offset by its minimum (minus ``margin_voxels``) and given
    just enough bits, so large absolute coordinates (UTM, odometry frames) work
    as long as the cloud's extent fits in 62 bits.  Key order equals
    lexicographic row order.  Rows within ``margin_voxels`` outside the
    reference range are still representable (used for neighbour look-ups).
    """

    def __init__(self, coords: np.ndarray, margin_voxels: int = 0) -> None:
        coords = np.asarray(coords)
        if coords.ndim != 2 or coords.shape[1] != 4:
            raise ValueError(f"coords must have shape (M, 4), got {coords.shape}")
        kernels = compiled()
        if coords.shape[0] == 0:
            self._set_bounds(np.zeros(4, dtype=np.int64), np.zeros(4, dtype=np.int64), 0)
        elif kernels is not None and coords.dtype in (np.int32, np.int64):
            self._set_bounds(*kernels.column_bounds(np.ascontiguousarray(coords)), margin_voxels)
        else:
            coords = coords.astype(np.int64, copy=False)
            self._set_bounds(coords.min(axis=0), coords.max(axis=0), margin_voxels)

    @classmethod
    def from_bounds(cls, low: np.ndarray, high: np.ndarray, margin_voxels: int = 0) -> CoordinateKeys:
        """The packer of rows whose per-column minimum / maximum are ``low`` / ``high`` ((4,) int)."""
        packer = cls.__new__(cls)
        packer._set_bounds(np.asarray(low, dtype=np.int64), np.asarray(high, dtype=np.int64), margin_voxels)
        return packer

    @property
    def low(self) -> np.ndarray:
        """(4,) int64 value of each column that packs to 0."""
        return self._low

    @property
    def bits(self) -> np.ndarray:
        """(4,) int64 width of each column in the key."""
        return self._bits

    @property
    def shifts(self) -> np.ndarray:
        """(4,) int64 bit position of each column in the key."""
        return self._shift

    def _set_bounds(self, low: np.ndarray, high: np.ndarray, margin_voxels: int) -> None:
        margin = np.array([0, margin_voxels, margin_voxels, margin_voxels], dtype=np.int64)
        self._low = low - margin
        high = high + margin
        extent = high - self._low + 1
        self._bits = np.array([max(1, int(e - 1).bit_length()) for e in extent], dtype=np.int64)
        if int(self._bits.sum()) > 62:
            raise ValueError(
                f"cloud extent {extent[1:].tolist()} voxels (batch {int(extent[0])}) is too large "
                "to index; use a larger voxel size or crop the cloud"
            )
        self._shift = np.array(
            [self._bits[1] + self._bits[2] + self._bits[3], self._bits[2] + self._bits[3], self._bits[3], 0],
            dtype=np.int64,
        )

    def pack(self, coords: np.ndarray) -> np.ndarray:
        """``(M, 4)`` int rows -> ``(M,)`` int64 keys (rows must lie in the packed range)."""
        coords = np.asarray(coords)
        kernels = compiled()
        if kernels is not None and coords.ndim == 2 and coords.dtype in (np.int32, np.int64):
            return kernels.pack_coords(np.ascontiguousarray(coords), self._low, self._shift)
        rel = coords.astype(np.int64) - self._low
        return (rel << self._shift).sum(axis=1)

    def offset_keys(self, offsets: np.ndarray) -> np.ndarray:
        """(K, 3) int xyz offsets -> (K,) int64 key steps: ``pack(row + [0, *offset]) == pack(row) + step``.

        Packing is linear, so this holds for every row; the shifted key names the shifted voxel (and no
        other) only while the shifted row stays inside the packed range, i.e. within ``margin_voxels``.
        """
        offsets = np.asarray(offsets, dtype=np.int64)
        return (offsets << self._shift[1:]).sum(axis=1)

    def unpack(self, keys: np.ndarray) -> np.ndarray:
        """``(M,)`` int64 keys -> ``(M, 4)`` int32 rows."""
        keys = np.asarray(keys, dtype=np.int64)
        kernels = compiled()
        if kernels is not None and keys.ndim == 1:
            return kernels.unpack_keys(np.ascontiguousarray(keys), self._low, self._shift, self._bits)
        masks = (np.int64(1) << self._bits) - 1
        rel = (keys[:, None] >> self._shift) & masks
        return (rel + self._low).astype(np.int32)


#: Largest ``|floor(xyz / voxel_size_m)|`` along any axis that every cloud can be voxelized with: three axes
#: of 2 * 2**18 voxels (+ a neighbour margin) and the batch column fit the 62 bits of :class:`CoordinateKeys`,
#: and float32 coordinates still resolve 1/32 voxel there (13 km at 5 cm voxels).
MAX_GRID_INDEX = 2**18


def indexable_mask(xyz: np.ndarray, voxel_size_m: float) -> np.ndarray:
    """(N,) bool: points the voxel grid can index (finite, within ``MAX_GRID_INDEX`` voxels of the origin).

    xyz: (N, 3) float, metres.  The rest (NaN, inf, 1e30, ...) are invalid points for a caller to drop:
    their int64 grid index would overflow or no key could hold the cloud's extent.
    """
    limit = float(voxel_size_m) * MAX_GRID_INDEX
    xyz = np.asarray(xyz)
    kernels = compiled()
    if kernels is not None and xyz.ndim == 2 and xyz.shape[1] == 3 and xyz.dtype in (np.float32, np.float64):
        return kernels.within_limit(np.ascontiguousarray(xyz), xyz.dtype.type(limit))
    with np.errstate(invalid="ignore"):  # NaN compares False: invalid
        return (np.abs(xyz) < limit).all(axis=1)


def grid_indices(xyz: np.ndarray, voxel_size_m: float) -> np.ndarray:
    """Integer grid index of every point.

    xyz: (N, 3) float, metres.  Returns (N, 3) int64 ``floor(xyz / voxel_size_m)``.
    """
    if not voxel_size_m > 0:
        raise ValueError(f"voxel_size_m must be > 0, got {voxel_size_m}")
    xyz = np.asarray(xyz)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"xyz must have shape (N, 3), got {xyz.shape}")
    if not np.isfinite(xyz).all():
        raise ValueError("xyz contains NaN or inf; drop invalid points before voxelizing")
    return np.floor(xyz.astype(np.float64) / voxel_size_m).astype(np.int64)


def voxelize(xyz: np.ndarray, voxel_size_m: float, batch: np.ndarray | None = None) -> VoxelGrid:
    """Quantize points into unique voxels.

    xyz: (N, 3) float32, metres.  batch: optional (N,) int scene index of
    every point (default 0).  Returns a :class:`VoxelGrid` whose ``inverse``
    maps every point to its voxel row.
    """
    kernels = compiled()
    if kernels is not None:
        return _voxelize_compiled(kernels, xyz, voxel_size_m, batch)
    grid = grid_indices(xyz, voxel_size_m)
    b = _batch_indices(batch, grid.shape[0])
    rows = np.concatenate([b[:, None], grid], axis=1)
    packer = CoordinateKeys(rows)
    unique_keys, inverse, counts = np.unique(packer.pack(rows), return_inverse=True, return_counts=True)
    return VoxelGrid(
        coords=packer.unpack(unique_keys),
        inverse=inverse.reshape(-1).astype(np.int64),
        counts=counts.astype(np.int64),
        voxel_size_m=float(voxel_size_m),
    )


def _batch_indices(batch: np.ndarray | None, n: int) -> np.ndarray:
    """(N,) int64 scene index of every point (zeros for ``None``), checked."""
    b = np.zeros((n,), dtype=np.int64) if batch is None else np.asarray(batch, dtype=np.int64)
    if b.shape != (n,):
        raise ValueError(f"batch must have shape ({n},), got {b.shape}")
    if b.size and b.min() < 0:
        raise ValueError("batch indices must be >= 0")
    return b


def _voxelize_compiled(kernels: object, xyz: np.ndarray, voxel_size_m: float, batch: np.ndarray | None) -> VoxelGrid:
    """:func:`voxelize` through the compiled kernels: same checks, bit-identical result.

    Two passes over the points (grid and its bounds, then keys tagged with the point index), one sort of the tagged
    keys and one pass over its runs; the hash-table unique when key and tag do not fit in 63 bits.
    """
    if not voxel_size_m > 0:
        raise ValueError(f"voxel_size_m must be > 0, got {voxel_size_m}")
    xyz = np.asarray(xyz)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"xyz must have shape (N, 3), got {xyz.shape}")
    if xyz.dtype not in (np.float32, np.float64):
        xyz = xyz.astype(np.float64)
    xyz = np.ascontiguousarray(xyz)
    n = xyz.shape[0]
    batch_column = _batch_indices(batch, n) if batch is not None else np.zeros(0, dtype=np.int64)
    grid, low, high, finite = kernels.point_grid(xyz, float(voxel_size_m))  # type: ignore[attr-defined]
    if not finite:
        raise ValueError("xyz contains NaN or inf; drop invalid points before voxelizing")
    b_low, b_high = (int(batch_column.min()), int(batch_column.max())) if batch_column.size else (0, 0)
    packer = CoordinateKeys.from_bounds(np.array([b_low, *low]), np.array([b_high, *high]))
    tag = kernels.index_bits(n)  # type: ignore[attr-defined]
    if int(packer.bits.sum()) + tag <= 63:
        tagged = kernels.grid_keys(grid, batch_column, packer.low, packer.shifts, tag)  # type: ignore[attr-defined]
        unique_keys, inverse, counts = kernels.unique_tagged(tagged, tag)  # type: ignore[attr-defined]
    else:
        keys = kernels.grid_keys(grid, batch_column, packer.low, packer.shifts, 0)  # type: ignore[attr-defined]
        unique_keys, inverse, counts = kernels.unique_inverse(keys)  # type: ignore[attr-defined]
    return VoxelGrid(coords=packer.unpack(unique_keys), inverse=inverse, counts=counts,
                     voxel_size_m=float(voxel_size_m))


def voxel_mean(values: np.ndarray, grid: VoxelGrid) -> np.ndarray:
    """Mean of per-point values over each voxel.

    values: (N, C) float.  Returns (M, C) float32.
    """
    values = np.asarray(values)
    if values.dtype != np.float32:  # float32 is summed in float64 by both paths, exactly like its float64 copy
        values = values.astype(np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if values.shape[0] != grid.inverse.shape[0]:
        raise ValueError(f"values have {values.shape[0]} rows, grid has {grid.inverse.shape[0]} points")
    kernels = compiled()
    if kernels is not None:
        return kernels.segment_mean(np.ascontiguousarray(values), grid.inverse, grid.counts)  # type: ignore[attr-defined]
    sums = np.zeros((grid.num_voxels, values.shape[1]), dtype=np.float64)
    np.add.at(sums, grid.inverse, values.astype(np.float64, copy=False))
    return (sums / grid.counts[:, None]).astype(np.float32)


def voxel_centroid_offset(xyz: np.ndarray, grid: VoxelGrid) -> np.ndarray:
    """Mean point position inside each voxel relative to the voxel centre, in voxel units.

    xyz: (N, 3) float, metres.  Returns (M, 3) float32 in [-0.5, 0.5].
    """
    return centroid_offset_from_mean(voxel_mean(xyz, grid), grid)


def centroid_offset_from_mean(mean_xyz: np.ndarray, grid: VoxelGrid) -> np.ndarray:
    """(M, 3) float32 mean point position (metres, from :func:`voxel_mean`) -> offset from the voxel centre,
    voxel units, (M, 3) float32."""
    kernels = compiled()
    if kernels is not None:
        return kernels.centroid_offsets(np.asarray(mean_xyz), grid.coords, float(grid.voxel_size_m))  # type: ignore[attr-defined]
    centre = (grid.coords[:, 1:].astype(np.float64) + 0.5) * grid.voxel_size_m
    return ((np.asarray(mean_xyz, dtype=np.float64) - centre) / grid.voxel_size_m).astype(np.float32)


def devoxelize(voxel_values: np.ndarray, grid: VoxelGrid) -> np.ndarray:
    """Copy per-voxel values back to the points: (M, ...) -> (N, ...)."""
    return np.asarray(voxel_values)[grid.inverse]
