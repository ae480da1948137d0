"""numba kernels behind voxelization, per-voxel means and the kernel maps.

Each kernel computes exactly what the numpy reference next to its caller computes (same
integer results; the float sums add in the same order), so the outputs are bit-identical;
``tests/core/test_compiled.py`` checks that on random clouds, real scans and edge cases, with one
thread and with several.  Import this module only through :func:`wsseg.core.backend.compiled`
(importing it loads numba).  The chunked-graph and per-frame kernels live in
:mod:`wsseg.core.compiled_graph` and are re-exported here.

How the tables are built (``docs/runtime.md``): a unique over packed int64 keys is one sort of
*tagged* keys (``key << index_bits | row``: numpy's vectorised sort, then one pass over the runs)
instead of an argsort; an open-addressing hash is the fallback when the tag does not fit in 63 bits.
The neighbour map is one merge pass over the sorted keys, split into independent row blocks when
more than one thread is asked for (every cell has exactly one writer, so the result does not depend
on the thread count).

Why numba (see ``docs/runtime.md``): wheels for x86_64 and aarch64 (Jetson) on PyPI, no
compiler or build step on the robot, nothing for colcon to build, and a pure-numpy fallback
when it is missing.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from wsseg.core.compiled_graph import (  # noqa: F401  (re-exported: one module behind backend.compiled())
    chunked_tables,
    compact_rows,
    devoxelize_labels,
    finite_in_range,
    pair_counts,
    softmax_max,
    up_chunks,
    within_limit,
)

#: rows below which the neighbour map is built on one thread (a parallel region costs more than it saves)
PARALLEL_MIN_ROWS = 8192

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing multiplier (2^64 / golden ratio)


@njit(cache=True, nogil=True)
def point_grid(xyz: np.ndarray, voxel_size_m: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """xyz (N, 3) float -> (grid (N, 3) int64 ``floor(float64(xyz) / voxel_size_m)``, its column min (3,) and
    max (3,) int64, all finite).

    One branch-free pass (one division per value; measured faster than dividing again when packing): the
    bounds are taken over the float64 floors (floor and the int64 conversion are monotone, so converting the
    extremes equals the extremes of the converted values); grid rows after a non-finite value and the bounds
    are 0 then, and when there are no points.
    """
    n = xyz.shape[0]
    grid = np.empty((n, 3), dtype=np.int64)
    lx = ly = lz = np.inf
    hx = hy = hz = -np.inf
    finite = True
    for i in range(n):
        x, y, z = np.float64(xyz[i, 0]), np.float64(xyz[i, 1]), np.float64(xyz[i, 2])
        finite &= np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
        gx, gy, gz = np.floor(x / voxel_size_m), np.floor(y / voxel_size_m), np.floor(z / voxel_size_m)
        lx, ly, lz = min(lx, gx), min(ly, gy), min(lz, gz)
        hx, hy, hz = max(hx, gx), max(hy, gy), max(hz, gz)
        grid[i, 0] = np.int64(gx) if finite else 0  # no conversion of NaN / inf (undefined in LLVM)
        grid[i, 1] = np.int64(gy) if finite else 0
        grid[i, 2] = np.int64(gz) if finite else 0
    low = np.zeros(3, dtype=np.int64)
    high = np.zeros(3, dtype=np.int64)
    if finite and n > 0:
        low[0], low[1], low[2] = np.int64(lx), np.int64(ly), np.int64(lz)
        high[0], high[1], high[2] = np.int64(hx), np.int64(hy), np.int64(hz)
    return grid, low, high, finite


@njit(cache=True, nogil=True)
def grid_keys(grid: np.ndarray, batch: np.ndarray, low: np.ndarray, shift: np.ndarray, index_bits: int) -> np.ndarray:
    """(N,) int64 keys of the rows ``[batch, grid]`` as :meth:`CoordinateKeys.pack` forms them, tagged
    ``key << index_bits | i`` when ``index_bits`` > 0; empty ``batch`` = all 0."""
    n = grid.shape[0]
    keys = np.empty(n, dtype=np.int64)
    has_batch = batch.shape[0] == n
    for i in range(n):
        b = batch[i] if has_batch else 0
        key = (b - low[0]) << shift[0]
        for a in range(3):
            key += (grid[i, a] - low[a + 1]) << shift[a + 1]
        keys[i] = (key << index_bits) | i if index_bits > 0 else key
    return keys


@njit(cache=True, nogil=True)
def pack_coords(coords: np.ndarray, low: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """(M, 4) int rows -> (M,) int64 keys, as :meth:`CoordinateKeys.pack`."""
    m = coords.shape[0]
    keys = np.empty(m, dtype=np.int64)
    for i in range(m):
        key = np.int64(0)
        for a in range(4):
            key += (np.int64(coords[i, a]) - low[a]) << shift[a]
        keys[i] = key
    return keys


@njit(cache=True, nogil=True)
def unpack_keys(keys: np.ndarray, low: np.ndarray, shift: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """(M,) int64 keys -> (M, 4) int32 rows, as :meth:`CoordinateKeys.unpack`."""
    m = keys.shape[0]
    out = np.empty((m, 4), dtype=np.int32)
    for a in range(4):
        mask = (np.int64(1) << bits[a]) - 1
        for i in range(m):
            out[i, a] = np.int32(((keys[i] >> shift[a]) & mask) + low[a])
    return out


@njit(cache=True, nogil=True)
def parent_keys(fine: np.ndarray, low: np.ndarray, shift: np.ndarray, index_bits: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Stride-2 parents of (M, 4) int rows: (keys (M,) int64 of ``[b, floor(xyz / 2)]`` packed with
    ``low`` / ``shift`` -- tagged ``key << index_bits | row`` when ``index_bits`` > 0 --, child slot (M,)
    int64 ``4 ox + 2 oy + oz`` inside the parent)."""
    m = fine.shape[0]
    keys = np.empty(m, dtype=np.int64)
    child = np.empty(m, dtype=np.int64)
    for i in range(m):
        key = (np.int64(fine[i, 0]) - low[0]) << shift[0]
        slot = np.int64(0)
        for a in range(1, 4):
            v = np.int64(fine[i, a])
            parent = v >> 1  # floor division by 2, negative coordinates included
            key += (parent - low[a]) << shift[a]
            slot = 2 * slot + (v - 2 * parent)
        keys[i] = (key << index_bits) | i if index_bits > 0 else key
        child[i] = slot
    return keys, child


@njit(cache=True, nogil=True)
def column_bounds(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M, 4) int rows (M > 0) -> per-column (min (4,), max (4,)) int64."""
    low = np.empty(4, dtype=np.int64)
    high = np.empty(4, dtype=np.int64)
    for a in range(4):
        low[a] = coords[0, a]
        high[a] = coords[0, a]
    for i in range(1, coords.shape[0]):
        for a in range(4):
            v = np.int64(coords[i, a])
            if v < low[a]:
                low[a] = v
            if v > high[a]:
                high[a] = v
    return low, high


@njit(cache=True, nogil=True)
def _hash_unique(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Open-addressing hash of ``keys``: (first-seen id of every key, unique keys in first-seen order,
    table keys, table ids, log2 capacity)."""
    n = keys.shape[0]
    bits = 1
    while (1 << bits) < 2 * n:
        bits += 1
    capacity = 1 << bits
    mask = capacity - 1
    table_keys = np.empty(capacity, dtype=np.int64)
    table_ids = np.full(capacity, -1, dtype=np.int64)
    ids = np.empty(n, dtype=np.int64)
    unique = np.empty(n, dtype=np.int64)
    m = 0
    down = np.uint64(64 - bits)
    last_key = np.int64(0)
    last_id = np.int64(-1)
    for i in range(n):
        key = keys[i]
        if key == last_key and last_id >= 0:  # sensor order: neighbouring points share voxels
            ids[i] = last_id
            continue
        slot = np.int64((np.uint64(key) * _GOLDEN) >> down)
        while True:
            found = table_ids[slot]
            if found < 0:
                table_keys[slot] = key
                table_ids[slot] = m
                unique[m] = key
                found = m
                m += 1
                break
            if table_keys[slot] == key:
                break
            slot = (slot + 1) & mask
        ids[i] = found
        last_key = key
        last_id = found

    return ids, unique[:m], table_keys, table_ids, bits


@njit(cache=True, nogil=True)
def _rank_inverse(
    sorted_unique: np.ndarray, table_keys: np.ndarray, table_ids: np.ndarray, bits: int, ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted position of every point's key (``inverse``) and the points per unique key (``counts``)."""
    m = sorted_unique.shape[0]
    mask = (1 << bits) - 1
    down = np.uint64(64 - bits)
    rank = np.empty(m, dtype=np.int64)
    for p in range(m):
        key = sorted_unique[p]
        slot = np.int64((np.uint64(key) * _GOLDEN) >> down)
        while table_keys[slot] != key or table_ids[slot] < 0:
            slot = (slot + 1) & mask
        rank[table_ids[slot]] = p
    n = ids.shape[0]
    inverse = np.empty(n, dtype=np.int64)
    counts = np.zeros(m, dtype=np.int64)
    for i in range(n):
        r = rank[ids[i]]
        inverse[i] = r
        counts[r] += 1
    return inverse, counts


def unique_inverse(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(keys, return_inverse=True, return_counts=True)`` for int64 keys, in O(N) + a sort of the uniques."""
    keys = np.ascontiguousarray(keys, dtype=np.int64)
    if keys.size == 0:
        return keys.copy(), np.zeros(0, np.int64), np.zeros(0, np.int64)
    ids, unique, table_keys, table_ids, bits = _hash_unique(keys)
    sorted_unique = np.sort(unique)
    inverse, counts = _rank_inverse(sorted_unique, table_keys, table_ids, bits, ids)
    return sorted_unique, inverse, counts


def index_bits(n: int) -> int:
    """Bits of the row tag for ``n`` rows (>= 1)."""
    return max(1, int(n - 1).bit_length())


@njit(cache=True, nogil=True)
def _sorted_runs(tagged: np.ndarray, index_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ascending tagged keys -> (unique keys (M,), inverse (N,) int64, counts (M,) int64)."""
    n = tagged.shape[0]
    mask = (np.int64(1) << index_bits) - 1
    unique = np.empty(n, dtype=np.int64)
    counts = np.zeros(n, dtype=np.int64)
    inverse = np.empty(n, dtype=np.int64)
    m = -1
    previous = (tagged[0] >> index_bits) - 1 if n else np.int64(0)  # the first key starts a run
    for s in range(n):  # no data-dependent branch: half the keys start a run on a LiDAR scan
        value = tagged[s]
        key = value >> index_bits
        m += key != previous
        unique[m] = key
        counts[m] += 1
        inverse[value & mask] = m
        previous = key
    return unique[:m + 1], inverse, counts[:m + 1]


def unique_tagged(tagged: np.ndarray, index_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`unique_inverse` of keys given tagged (``key << index_bits | row``, sorted in place here): one
    vectorised sort of plain int64 values and one pass, no argsort and no hash table."""
    tagged.sort()
    return _sorted_runs(tagged, index_bits)


@njit(cache=True, nogil=True)
def strictly_increasing(keys: np.ndarray) -> bool:
    """Whether (M,) int64 ``keys`` ascend strictly (unique, sorted rows); one pass, no temporaries."""
    ok = True
    for i in range(1, keys.shape[0]):
        if keys[i] <= keys[i - 1]:
            ok = False
            break
    return ok


@njit(cache=True, nogil=True)
def _lower_bound(keys: np.ndarray, n: int, value: np.int64) -> int:
    """First position in ascending ``keys[:n]`` whose key is >= ``value``."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True, inline="always")
def _neighbour_rows(padded: np.ndarray, m: int, steps: np.ndarray, out: np.ndarray, start: int, stop: int,
                    spare: int) -> None:
    """Columns 0-12 of rows ``start .. stop - 1`` and their mirrors 26-0 .. 14 in the earlier rows.

    padded: (M + 3,) the sorted unique keys, then three int64-max sentinels.  out: (M + spares, 27) int32,
    columns 14-26 pre-filled with ``M``; row ``spare`` (>= M) takes the mirrors of absent neighbours
    (and names them in the own columns until the last pass turns it into ``M``).

    The 12 negative offsets other than (0, 0, -1) come in four runs of three with ``dz = -1, 0, 1``
    (keys ``a, a + 1, a + 2`` for ``a = key + step``); each run is a merge of the query keys with the
    row keys, written without data-dependent branches (branch misses, not memory, bound the plain
    merge): every step either finishes row ``i`` (``a <= keys[j]``: ``j`` is the lower bound of ``a``
    and ``keys[j .. j + 2]`` are the only candidates) or advances ``j``, and writes its candidates' findings
    either way -- a finding is always a true neighbour, and row ``i``'s last step writes its own columns
    last, so the repeated writes are harmless.  Column 13 is the row itself, column 12 the
    previous row when its key is ``key - 1``.  Every cell of rows < M has one value whoever writes it,
    so row blocks may run at once.
    """
    # indices provably >= 0 (max with 0) let LLVM drop numba's negative-index wraparound on every access
    m, start, stop, spare = max(m, 0), max(start, 0), max(stop, 0), max(spare, 0)
    for group in range(4):
        step = steps[3 * group]
        col = 3 * group
        i = start
        j = max(_lower_bound(padded, m, padded[start] + step), 0)
        while i < stop:
            a = padded[i] + step
            b0, b1, b2 = padded[j], padded[j + 1], padded[j + 2]
            r0 = j if b0 == a else spare
            r1 = j if b0 == a + 1 else (j + 1 if b1 == a + 1 else spare)
            r2 = j if b0 == a + 2 else (j + 1 if b1 == a + 2 else (j + 2 if b2 == a + 2 else spare))
            out[i, col] = r0
            out[i, col + 1] = r1
            out[i, col + 2] = r2
            out[r0, 26 - col] = i
            out[r1, 25 - col] = i
            out[r2, 24 - col] = i
            done = a <= b0
            i += done
            j += 1 - done
    for i in range(start, stop):
        out[i, 13] = i
        previous = i > 0 and padded[i - 1] == padded[i] - 1
        out[i, 12] = i - 1 if previous else spare
        out[i - 1 if previous else spare, 14] = i
    if spare != m:  # own columns name the sink for "absent": the table says M
        for i in range(start, stop):
            for k in range(13):
                out[i, k] = min(out[i, k], m)


@njit(cache=True, nogil=True)
def _neighbour_table_serial(keys: np.ndarray, steps: np.ndarray) -> np.ndarray:
    m = keys.shape[0]
    out = np.full((m + 1, 27), m, dtype=np.int32)
    padded = np.empty(m + 3, dtype=np.int64)  # made here, not by a helper: LLVM then knows it aliases nothing
    padded[:m] = keys
    padded[m:] = np.iinfo(np.int64).max
    if m:
        _neighbour_rows(padded, m, steps, out, 0, m, m)
    return out[:m]


@njit(cache=True, nogil=True, parallel=True)
def _neighbour_table_parallel(keys: np.ndarray, steps: np.ndarray, blocks: int) -> np.ndarray:
    m = keys.shape[0]
    padded = np.empty(m + 3, dtype=np.int64)
    padded[:m] = keys
    padded[m:] = np.iinfo(np.int64).max
    out = np.empty((m + blocks, 27), dtype=np.int32)  # row m + b: block b's sink for absent mirrors
    for i in prange(m + blocks):  # mirrors land in earlier rows, possibly another block's: fill first
        for k in range(14, 27):
            out[i, k] = m
    for b in prange(blocks):
        start, stop = m * b // blocks, m * (b + 1) // blocks
        if start < stop:
            _neighbour_rows(padded, m, steps, out, start, stop, m + b)
    return out[:m]


def neighbour_table(keys: np.ndarray, steps: np.ndarray, threads: int = 1) -> np.ndarray:
    """Submanifold 3x3x3 neighbour map from sorted unique keys and the 27 key steps (OFFSETS_3X3X3 order).

    Returns (M, 27) int32, ``M`` where absent; the same table for any ``threads``.
    """
    if threads > 1 and keys.shape[0] >= PARALLEL_MIN_ROWS:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        return _neighbour_table_parallel(keys, steps, 4 * threads)
    return _neighbour_table_serial(keys, steps)


@njit(cache=True, nogil=True)
def down_from_up(up: np.ndarray, num_fine: int, num_coarse: int) -> np.ndarray:
    """(num_coarse, 8) int32 down map as the inverse of the up map (``num_fine`` in empty slots)."""
    down = np.full(num_coarse * 8, num_fine, dtype=np.int32)
    for i in range(up.shape[0]):
        down[up[i]] = i
    return down.reshape(num_coarse, 8)


@njit(cache=True, nogil=True)
def segment_mean(values: np.ndarray, inverse: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """values (N, C) float summed in float64 into rows ``inverse`` in point order (the order ``np.add.at``
    adds in), divided by ``counts`` (M,) and rounded to float32: bit-identical to the numpy mean."""
    n, c = values.shape
    m = counts.shape[0]
    sums = np.zeros((m, c), dtype=np.float64)
    for i in range(n):
        row = inverse[i]
        for a in range(c):
            sums[row, a] += np.float64(values[i, a])
    means = np.empty((m, c), dtype=np.float32)
    for r in range(m):
        count = np.float64(counts[r])
        for a in range(c):
            means[r, a] = np.float32(sums[r, a] / count)
    return means


@njit(cache=True, nogil=True)
def centroid_offsets(mean_xyz: np.ndarray, coords: np.ndarray, voxel_size_m: float) -> np.ndarray:
    """(M, 3) float32 ``(mean - (coord + 0.5) * voxel) / voxel``, computed in float64 as the numpy code does."""
    m = mean_xyz.shape[0]
    out = np.empty((m, 3), dtype=np.float32)
    for r in range(m):
        for a in range(3):
            centre = (np.float64(coords[r, a + 1]) + 0.5) * voxel_size_m
            out[r, a] = np.float32((np.float64(mean_xyz[r, a]) - centre) / voxel_size_m)
    return out
