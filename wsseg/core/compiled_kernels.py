"""numba kernels behind voxelization, kernel maps and the chunked convolution tables.

Each kernel computes exactly what the numpy reference next to its caller computes (same
integer results; the float sums add in the same order), so the outputs are bit-identical;
``tests/core/test_compiled.py`` checks that on random clouds, real scans and edge cases.
Import this module only through :func:`wsseg.core.backend.compiled` (importing it loads numba).

Why numba (see ``docs/runtime.md``): wheels for x86_64 and aarch64 (Jetson) on PyPI, no
compiler or build step on the robot, nothing for colcon to build, and a pure-numpy fallback
when it is missing.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing multiplier (2^64 / golden ratio)


@njit(cache=True, nogil=True)
def grid_bounds(xyz: np.ndarray, voxel_size_m: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """xyz (N, 3) float -> (grid (N, 3) int64 ``floor(float64(xyz) / voxel_size_m)``, min (3,), max (3,),
    all finite)."""
    n = xyz.shape[0]
    grid = np.empty((n, 3), dtype=np.int64)
    low = np.full(3, np.iinfo(np.int64).max, dtype=np.int64)
    high = np.full(3, np.iinfo(np.int64).min, dtype=np.int64)
    for i in range(n):
        for a in range(3):
            v = np.float64(xyz[i, a])
            if not np.isfinite(v):
                return grid, low, high, False
            g = np.int64(np.floor(v / voxel_size_m))
            grid[i, a] = g
            if g < low[a]:
                low[a] = g
            if g > high[a]:
                high[a] = g
    return grid, low, high, True


@njit(cache=True, nogil=True)
def pack_rows(grid: np.ndarray, batch: np.ndarray, low: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Keys of rows ``[batch, grid]`` as :meth:`CoordinateKeys.pack` forms them; empty ``batch`` = all 0."""
    n = grid.shape[0]
    keys = np.empty(n, dtype=np.int64)
    has_batch = batch.shape[0] == n
    for i in range(n):
        b = batch[i] if has_batch else 0
        keys[i] = (
            ((b - low[0]) << shift[0])
            + ((grid[i, 0] - low[1]) << shift[1])
            + ((grid[i, 1] - low[2]) << shift[2])
            + ((grid[i, 2] - low[3]) << shift[3])
        )
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
def parent_keys(fine: np.ndarray, low: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stride-2 parents of (M, 4) int rows: (keys (M,) int64 of ``[b, floor(xyz / 2)]`` packed with
    ``low`` / ``shift``, child slot (M,) int64 ``4 ox + 2 oy + oz`` inside the parent)."""
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
        keys[i] = key
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


@njit(cache=True, nogil=True)
def neighbour_table(keys: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Submanifold 3x3x3 neighbour map from sorted unique keys and the 27 key steps (OFFSETS_3X3X3 order).

    Returns (M, 27) int32, ``M`` where absent.  The 13 negative offsets come in runs of three with
    ``dz = -1, 0, 1`` (keys ``base - 1, base, base + 1``), so one pass over the rows keeps four merge
    pointers (offsets ``(-1, dy, .)`` and ``(0, -1, .)``) and checks the previous row for ``(0, 0, -1)``;
    column ``26 - k`` is the mirror of column ``k``.
    """
    m = keys.shape[0]
    out = np.empty((m, 27), dtype=np.int32)
    pointers = np.zeros(4, dtype=np.int64)
    for i in range(m):
        # row i is complete before any later row writes its mirrors into columns 14..26
        for k in range(27):
            out[i, k] = m
        out[i, 13] = i
        key = keys[i]
        for group in range(4):  # columns 3 * group + (0, 1, 2) = dz -1, 0, +1
            first = key + steps[3 * group]  # the dz = -1 key of the run; every run key is < key
            j = pointers[group]
            while keys[j] < first:
                j += 1
            pointers[group] = j
            t = j
            while t < i and keys[t] <= first + 2:  # the run's keys present, in dz order
                k = 3 * group + (keys[t] - first)
                out[i, k] = t
                out[t, 26 - k] = i
                t += 1
        if i > 0 and keys[i - 1] == key + steps[12]:
            out[i, 12] = i - 1
            out[i - 1, 14] = i
    return out


@njit(cache=True, nogil=True)
def down_from_up(up: np.ndarray, num_fine: int, num_coarse: int) -> np.ndarray:
    """(num_coarse, 8) int32 down map as the inverse of the up map (``num_fine`` in empty slots)."""
    down = np.full(num_coarse * 8, num_fine, dtype=np.int32)
    for i in range(up.shape[0]):
        down[up[i]] = i
    return down.reshape(num_coarse, 8)


@njit(cache=True, nogil=True)
def segment_sum(values: np.ndarray, inverse: np.ndarray, num_segments: int) -> np.ndarray:
    """values (N, C) float64 summed into (num_segments, C) float64 rows ``inverse``, in point order
    (the order ``np.add.at`` adds in, so the sums are bit-identical)."""
    n, c = values.shape
    sums = np.zeros((num_segments, c), dtype=np.float64)
    for i in range(n):
        row = inverse[i]
        for a in range(c):
            sums[row, a] += values[i, a]
    return sums


@njit(cache=True, nogil=True)
def pair_counts(index: np.ndarray, num_in: int, skip_centre: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Present pairs of an (M, K) map: per output row (M,), per offset (K,), histogram of row counts (K + 1,)."""
    m, k = index.shape
    counts = np.zeros(m, dtype=np.int64)
    per_offset = np.zeros(k, dtype=np.int64)
    hist = np.zeros(k + 1, dtype=np.int64)
    for i in range(m):
        n = 0
        for c in range(k):
            if index[i, c] < num_in and not (skip_centre and c == 13):
                n += 1
                per_offset[c] += 1
        counts[i] = n
        hist[n] += 1
    return counts, per_offset, hist


@njit(cache=True, nogil=True)
def _chunked_core(index: np.ndarray, num_in: int, skip_centre: bool, chunk_rows: int, cuts: np.ndarray,
                  num_buckets: int, counts: np.ndarray, per_offset: np.ndarray, hist: np.ndarray) -> tuple:
    """The tables of :func:`wsseg.core.conv_tables.chunked_conv_tables` (one more pass over the map)."""
    m, k = index.shape
    num_chunks = 1  # the zero chunk
    first_slot = np.empty(k, dtype=np.int64)
    for c in range(k):
        first_slot[c] = num_chunks * chunk_rows - chunk_rows
        num_chunks += (per_offset[c] + chunk_rows - 1) // chunk_rows
    offsets = np.empty(num_chunks, dtype=np.int32)
    chunk = 0
    for c in range(k):
        for _ in range((per_offset[c] + chunk_rows - 1) // chunk_rows):
            offsets[chunk] = c
            chunk += 1
    offsets[num_chunks - 1] = k
    zero_slot = (num_chunks - 1) * chunk_rows
    row_start = np.empty(m + 1, dtype=np.int64)
    row_start[0] = 0
    for i in range(m):
        row_start[i + 1] = row_start[i] + counts[i]
    row_pos = np.empty(row_start[m], dtype=np.int64)
    cursor = first_slot.copy()
    pairs = np.zeros(num_chunks * chunk_rows, dtype=np.int32)
    for i in range(m):
        w = row_start[i]
        for c in range(k):
            if index[i, c] < num_in and not (skip_centre and c == 13):
                p = cursor[c]
                cursor[c] += 1
                pairs[p] = index[i, c]
                row_pos[w] = p
                w += 1
    # buckets: count ranges (cuts[b-1], cuts[b]]; an empty bucket holds one zero row
    bucket_of = np.empty(k + 1, dtype=np.int64)
    for v in range(k + 1):
        b = 0
        while b < cuts.shape[0] - 1 and v > cuts[b]:
            b += 1
        bucket_of[v] = b
    rows = np.zeros(num_buckets, dtype=np.int64)
    widths = np.ones(num_buckets, dtype=np.int64)
    for v in range(k + 1):
        rows[bucket_of[v]] += hist[v]
    for b in range(cuts.shape[0]):
        widths[b] = max(cuts[b], 1)
    row_base = np.zeros(num_buckets, dtype=np.int64)
    slot_base = np.zeros(num_buckets, dtype=np.int64)
    for b in range(1, num_buckets):
        row_base[b] = row_base[b - 1] + max(rows[b - 1], 1)
        slot_base[b] = slot_base[b - 1] + max(rows[b - 1], 1) * widths[b - 1]
    last = num_buckets - 1
    slots = np.full(slot_base[last] + max(rows[last], 1) * widths[last], zero_slot, dtype=np.int32)
    start = np.empty(k + 1, dtype=np.int64)  # next position of each count value (counting sort by count, row)
    running = row_base.copy()
    for v in range(k + 1):
        start[v] = running[bucket_of[v]]
        running[bucket_of[v]] += hist[v]
    order = np.empty(m, dtype=np.int32)
    for i in range(m):
        v = counts[i]
        b = bucket_of[v]
        pos = start[v]
        start[v] += 1
        order[i] = pos
        base = slot_base[b] + (pos - row_base[b]) * widths[b]
        for j in range(v):
            slots[base + j] = row_pos[row_start[i] + j]
    return pairs, offsets, slots, np.maximum(rows, 1), widths, order


def chunked_tables(index: np.ndarray, num_in: int, skip_centre: bool, chunk_rows: int, cuts: np.ndarray,
                   num_buckets: int, counts: tuple[np.ndarray, np.ndarray, np.ndarray]
                   ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], np.ndarray]:
    """(pairs (Nc, T), offsets (Nc,), slots per bucket (M_b, S_b), order (M,)), all int32; ``counts`` from
    :func:`pair_counts`."""
    pairs, offsets, flat, rows, widths, order = _chunked_core(index, num_in, skip_centre, chunk_rows, cuts,
                                                              num_buckets, *counts)
    slots, start = [], 0
    for n, w in zip(rows.tolist(), widths.tolist(), strict=True):
        slots.append(flat[start:start + n * w].reshape(n, w))
        start += n * w
    return pairs.reshape(-1, chunk_rows), offsets, slots, order


@njit(cache=True, nogil=True)
def up_chunks(up: np.ndarray, chunk_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tables of :func:`wsseg.core.conv_tables.up_tables`: (pairs (Nc * T,), offsets (Nc,), rows (M,)) int32."""
    m = up.shape[0]
    per_offset = np.zeros(8, dtype=np.int64)
    for i in range(m):
        per_offset[up[i] % 8] += 1
    num_chunks = 1
    cursor = np.empty(8, dtype=np.int64)
    for c in range(8):
        cursor[c] = (num_chunks - 1) * chunk_rows
        num_chunks += (per_offset[c] + chunk_rows - 1) // chunk_rows
    offsets = np.empty(num_chunks, dtype=np.int32)
    chunk = 0
    for c in range(8):
        for _ in range((per_offset[c] + chunk_rows - 1) // chunk_rows):
            offsets[chunk] = c
            chunk += 1
    offsets[num_chunks - 1] = 8
    pairs = np.zeros(num_chunks * chunk_rows, dtype=np.int32)
    rows = np.empty(m, dtype=np.int32)
    for i in range(m):
        c = up[i] % 8
        p = cursor[c]
        cursor[c] += 1
        pairs[p] = up[i] // 8
        rows[i] = p
    return pairs, offsets, rows


@njit(cache=True, nogil=True)
def finite_in_range(xyz: np.ndarray, min_sq: float, max_sq: float) -> np.ndarray:
    """(N,) bool: finite rows of (N, 3) ``xyz`` with ``min_sq <= |p|^2 <= max_sq`` (a bound <= 0 is off)."""
    n = xyz.shape[0]
    keep = np.empty(n, dtype=np.bool_)
    for i in range(n):
        x, y, z = np.float64(xyz[i, 0]), np.float64(xyz[i, 1]), np.float64(xyz[i, 2])
        ok = np.isfinite(x) and np.isfinite(y) and np.isfinite(z)
        if ok and (min_sq > 0 or max_sq > 0):
            r = x * x + y * y + z * z
            ok = (min_sq <= 0 or r >= min_sq) and (max_sq <= 0 or r <= max_sq)
        keep[i] = ok
    return keep


@njit(cache=True, nogil=True)
def compact_rows(values: np.ndarray, keep: np.ndarray, count: int) -> np.ndarray:
    """``values[keep]`` for an (N, C) array and an (N,) bool mask with ``count`` true entries."""
    out = np.empty((count, values.shape[1]), dtype=values.dtype)
    j = 0
    for i in range(values.shape[0]):
        if keep[i]:
            for c in range(values.shape[1]):
                out[j, c] = values[i, c]
            j += 1
    return out


@njit(cache=True, nogil=True)
def devoxelize_labels(keep: np.ndarray, inverse: np.ndarray, voxel_labels: np.ndarray, voxel_conf: np.ndarray,
                      missing: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-point (labels (N,) uint16, confidence (N,) float32): the voxel's for kept points (in order, through
    ``inverse``), ``missing`` / 0 for the others."""
    n = keep.shape[0]
    labels = np.empty(n, dtype=np.uint16)
    confidence = np.empty(n, dtype=np.float32)
    j = 0
    for i in range(n):
        if keep[i]:
            row = inverse[j]
            labels[i] = voxel_labels[row]
            confidence[i] = voxel_conf[row]
            j += 1
        else:
            labels[i] = missing
            confidence[i] = 0.0
    return labels, confidence
