"""numba kernels behind the chunked convolution tables and the node's per-frame passes (mask, compaction,
class choice, devoxelization).

Same contract as :mod:`wsseg.core.compiled_kernels` (which re-exports these): each kernel returns exactly what
the numpy code next to its caller returns; the one exception is :func:`softmax_max`'s probability, whose
``exp`` is numba's, not numpy's SIMD one (equal to 1e-6 relative; the labels are identical).  Import only
through :func:`wsseg.core.backend.compiled`.
"""

from __future__ import annotations

import numpy as np
from numba import njit


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
def within_limit(xyz: np.ndarray, limit: np.floating) -> np.ndarray:
    """(N,) bool: rows of (N, 3) ``xyz`` whose every ``|coordinate| < limit`` (NaN: False); ``limit`` of xyz's dtype,
    so the comparison rounds as numpy's ``(np.abs(xyz) < limit).all(axis=1)``."""
    n = xyz.shape[0]
    keep = np.empty(n, dtype=np.bool_)
    for i in range(n):
        keep[i] = abs(xyz[i, 0]) < limit and abs(xyz[i, 1]) < limit and abs(xyz[i, 2]) < limit
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


@njit(cache=True, nogil=True)
def softmax_max(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """logits (M, C) float32 -> (argmax (M,) int64, softmax probability of that class (M,) float32).

    One pass per row instead of numpy's five over the (M, C) array.  Like ``ndarray.argmax``, the first
    maximum wins and a NaN counts as the maximum (its probability is then NaN).
    """
    m, c = logits.shape
    labels = np.empty(m, dtype=np.int64)
    probability = np.empty(m, dtype=np.float32)
    for i in range(m):
        best = 0
        top = logits[i, 0]
        if top == top:  # not NaN
            for j in range(1, c):
                value = logits[i, j]
                if value != value:
                    best, top = j, value
                    break
                if value > top:
                    best, top = j, value
        total = np.float32(0.0)
        for j in range(c):
            total += np.exp(logits[i, j] - top)
        labels[i] = best
        probability[i] = np.float32(1.0) / total
    return labels, probability
