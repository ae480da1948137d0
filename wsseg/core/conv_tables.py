"""Chunked convolution tables: the exported graph's index inputs that skip missing neighbours.

The gather-GEMM form of a sparse convolution (:mod:`wsseg.core.kernel_maps`) multiplies a zero
row for every absent neighbour; on a LiDAR scan at 5 cm only 14 % of the 27 taps are present.
The **chunked** form computes only the present (output, input) pairs, still with standard ops
and no Scatter:

1. the pairs of a convolution, ordered by kernel offset then output row, are cut into chunks of
   ``T`` pairs of one offset each: ``pairs`` (Nc, T) int32 input rows (padding slots read row 0
   and are never used), ``offsets`` (Nc,) int32 offset of every chunk.  The last chunk is the
   *zero chunk*: offset ``K`` (a zero weight slice), so its products are exact zeros;
2. ``Y = Gather(X, pairs) @ Gather(W, offsets)`` -- one batched MatMul, (Nc, T, C_out);
3. every output row sums its pairs' products: the rows are sorted by pair count into
   ``num_buckets`` buckets, bucket ``b`` holds ``slots[b]`` (M_b, S_b) int32 positions into the
   flattened ``Y`` (padding: a zero-chunk row), ``ReduceSum(Gather(Y, slots[b]), axis 1)``;
4. ``Gather(Concat(buckets), order)`` puts the rows back in voxel order (``order`` (M,) int32).

Submanifold convolutions compute the always-present centre tap densely (``X @ W_centre``) and
leave it out of the pairs.  The transposed (up) convolution has exactly one pair per output, so
its table is ``rows`` (M_fine,) int32 positions into ``Y`` instead of slots.  Every dimension of
every table is >= 1 (an empty bucket gets one zero row), so TensorRT never sees an empty tensor.

Which levels use the chunked form is the bundle's :class:`GraphSpec`; this numpy code is the
reference, :mod:`wsseg.core.compiled_kernels` builds the same tables faster.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from wsseg.core import backend
from wsseg.core.backend import compiled
from wsseg.core.kernel_maps import INDEX_DTYPE, KernelMaps, map_input_names

#: column of the centre tap (offset (0, 0, 0)) in a 27-column neighbour map
CENTRE_COLUMN = 13
#: graph formulations a bundle can declare
FORMULATIONS = ("gather", "chunked")


@dataclass(frozen=True)
class GraphSpec:
    """How the exported graph convolves: per level, gather-GEMM or chunked pairs.

    chunked_levels: one flag per level (empty = every level gather, the format before chunked
    graphs).  Level ``l``'s flag selects its submanifold convolutions; the down / up convolutions
    between ``l`` and ``l + 1`` follow level ``l + 1``.  chunk_rows: pairs per chunk (T).
    num_buckets: buckets of the output assembly.
    """

    num_levels: int
    chunked_levels: tuple[bool, ...] = ()
    chunk_rows: int = 128
    num_buckets: int = 4

    def __post_init__(self) -> None:
        if self.chunked_levels and len(self.chunked_levels) != self.num_levels:
            raise ValueError(f"chunked_levels has {len(self.chunked_levels)} flags for {self.num_levels} levels")
        if not 1 <= self.chunk_rows <= 65536 or not 1 <= self.num_buckets <= 16:
            raise ValueError(f"chunk_rows {self.chunk_rows} must be in [1, 65536], num_buckets "
                             f"{self.num_buckets} in [1, 16]")

    def chunked(self, level: int) -> bool:
        return bool(self.chunked_levels) and self.chunked_levels[level]

    @property
    def formulation(self) -> str:
        return "chunked" if any(self.chunked_levels) else "gather"

    def to_dict(self) -> dict:
        return {"formulation": self.formulation, "chunked_levels": [bool(c) for c in self.chunked_levels],
                "chunk_rows": self.chunk_rows, "num_buckets": self.num_buckets}

    @classmethod
    def from_dict(cls, data: dict | None, num_levels: int) -> GraphSpec:
        """The spec in ``model.yaml`` (``network.graph``); absent = the gather graph of older bundles."""
        if not data:
            return cls(num_levels=num_levels)
        return cls(num_levels=num_levels, chunked_levels=tuple(bool(c) for c in data.get("chunked_levels", ())),
                   chunk_rows=int(data.get("chunk_rows", 128)), num_buckets=int(data.get("num_buckets", 4)))


def graph_input_names(spec: GraphSpec) -> list[str]:
    """Every index-table input of the graph, in the order the network takes them (after ``features``)."""
    if spec.formulation == "gather":
        return map_input_names(spec.num_levels)
    names: list[str] = []
    for level in range(spec.num_levels):
        names += _conv_names(f"subm{level}", spec) if spec.chunked(level) else [f"neighbours_{level}"]
    for level in range(spec.num_levels - 1):
        names += _conv_names(f"down{level}", spec) if spec.chunked(level + 1) else [f"down_{level}"]
    for level in range(spec.num_levels - 1):
        names += [f"up{level}_pairs", f"up{level}_offsets", f"up{level}_rows"] if spec.chunked(level + 1) \
            else [f"up_{level}"]
    return names


def _conv_names(prefix: str, spec: GraphSpec) -> list[str]:
    return [f"{prefix}_pairs", f"{prefix}_offsets", *(f"{prefix}_slots{b}" for b in range(spec.num_buckets)),
            f"{prefix}_order"]


def graph_inputs(maps: KernelMaps, spec: GraphSpec) -> dict[str, np.ndarray]:
    """The index tables the graph of ``spec`` takes, keyed by :func:`graph_input_names`."""
    if spec.formulation == "gather":
        return maps.as_inputs()
    out: dict[str, np.ndarray] = {}
    tasks = []  # chunked tables of every convolution, built at once with preprocessing threads > 1
    levels = spec.num_levels
    for level in range(levels):
        if spec.chunked(level):
            tasks.append(backend.submit(chunked_conv_tables, maps.neighbours[level], maps.neighbours[level].shape[0],
                                        True, spec.chunk_rows, spec.num_buckets, f"subm{level}"))
        else:
            out[f"neighbours_{level}"] = maps.neighbours[level]
    for level in range(levels - 1):
        num_fine = maps.neighbours[level].shape[0]
        if spec.chunked(level + 1):
            tasks.append(backend.submit(chunked_conv_tables, maps.down[level], num_fine, False, spec.chunk_rows,
                                        spec.num_buckets, f"down{level}"))
        else:
            out[f"down_{level}"] = maps.down[level]
    for level in range(levels - 1):
        if spec.chunked(level + 1):
            tasks.append(backend.submit(up_tables, maps.up[level], spec.chunk_rows, f"up{level}"))
        else:
            out[f"up_{level}"] = maps.up[level]
    for tables in backend.results(tasks):
        out.update(tables)
    return {name: out[name] for name in graph_input_names(spec)}


def bucket_cuts(counts_histogram: np.ndarray, num_buckets: int) -> list[int]:
    """Largest pair count of each bucket, ascending, minimising the padded slots ``sum(rows * width)``.

    counts_histogram: (K + 1,) rows with 0 .. K pairs.  Returns at most ``num_buckets`` cuts (fewer
    when fewer distinct counts occur); bucket ``b`` holds the counts in ``(cuts[b-1], cuts[b]]`` and
    is ``max(cuts[b], 1)`` slots wide.  Exact dynamic programme over the counts present.
    """
    return list(_bucket_cuts(tuple(int(v) for v in counts_histogram), num_buckets))


@lru_cache(maxsize=256)
def _bucket_cuts(histogram: tuple[int, ...], num_buckets: int) -> tuple[int, ...]:
    present = [c for c, n in enumerate(histogram) if n]
    if not present:
        return (0,)
    cumulative = np.concatenate([[0], np.cumsum(histogram)])
    # best[b][j]: minimal cost covering present[0..j] with b + 1 buckets, the last ending at present[j]
    inf = float("inf")
    best = [[inf] * len(present) for _ in range(num_buckets)]
    back = [[-1] * len(present) for _ in range(num_buckets)]
    for j, c in enumerate(present):
        best[0][j] = max(c, 1) * float(cumulative[c + 1])
    for b in range(1, num_buckets):
        for j, c in enumerate(present):
            for i in range(j):
                cost = best[b - 1][i] + max(c, 1) * float(cumulative[c + 1] - cumulative[present[i] + 1])
                if cost < best[b][j]:
                    best[b][j], back[b][j] = cost, i
    last = len(present) - 1
    b = min(range(num_buckets), key=lambda k: (best[k][last], k))
    cuts, j = [], last
    while j >= 0 and b >= 0:
        cuts.append(present[j])
        j, b = back[b][j], b - 1
    return tuple(reversed(cuts))


def chunked_conv_tables(index: np.ndarray, num_in: int, skip_centre: bool, chunk_rows: int, num_buckets: int,
                        prefix: str) -> dict[str, np.ndarray]:
    """Chunked tables of one convolution from its (M_out, K) map (``num_in`` = absent).

    skip_centre: leave column 13 out of the pairs (submanifold convs compute it densely).
    Returns ``{prefix}_pairs``, ``_offsets``, ``_slots0..``, ``_order`` (see the module docstring).
    """
    index = np.asarray(index)
    kernels = compiled()
    if kernels is not None:
        index = np.ascontiguousarray(index, dtype=INDEX_DTYPE)
        counted = kernels.pair_counts(index, int(num_in), bool(skip_centre))
        cuts = bucket_cuts(counted[2], num_buckets)
        pairs, offsets, slots, order = kernels.chunked_tables(
            index, int(num_in), bool(skip_centre), int(chunk_rows), np.asarray(cuts, dtype=np.int64),
            int(num_buckets), counted)
    else:
        present = index < num_in
        if skip_centre:
            present[:, CENTRE_COLUMN] = False
        counts = present.sum(axis=1)
        cuts = bucket_cuts(np.bincount(counts, minlength=index.shape[1] + 1), num_buckets)
        pairs, offsets, slots, order = _chunked_tables_numpy(index, present, counts, chunk_rows, cuts, num_buckets)
    tables = {f"{prefix}_pairs": pairs, f"{prefix}_offsets": offsets}
    tables.update({f"{prefix}_slots{b}": table for b, table in enumerate(slots)})
    tables[f"{prefix}_order"] = order
    return tables


def _chunk_layout(per_offset: np.ndarray, chunk_rows: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(first pair slot of every offset (K,), offsets of the chunks (Nc,) incl. the zero chunk, zero-chunk slot)."""
    k = per_offset.shape[0]
    chunks = -(-per_offset // chunk_rows)
    first_chunk = np.concatenate([[0], np.cumsum(chunks)[:-1]])
    offsets = np.concatenate([np.repeat(np.arange(k), chunks), [k]]).astype(INDEX_DTYPE)
    zero_slot = int(chunks.sum()) * chunk_rows
    return first_chunk * chunk_rows, offsets, zero_slot


def _chunked_tables_numpy(index: np.ndarray, present: np.ndarray, counts: np.ndarray, chunk_rows: int,
                          cuts: list[int], num_buckets: int) -> tuple:
    m_out, k = index.shape
    offset_of_pair, out_of_pair = np.nonzero(present.T)  # offset-major, output rows ascending
    per_offset = np.bincount(offset_of_pair, minlength=k)
    first_slot, offsets, zero_slot = _chunk_layout(per_offset, chunk_rows)
    rank = np.arange(offset_of_pair.size) - np.concatenate([[0], np.cumsum(per_offset)[:-1]])[offset_of_pair]
    position = first_slot[offset_of_pair] + rank
    pairs = np.zeros(offsets.size * chunk_rows, dtype=INDEX_DTYPE)
    pairs[position] = index[out_of_pair, offset_of_pair]
    # every output's positions in offset order: sort the pairs by output row (stable keeps offset order)
    by_row = np.argsort(out_of_pair, kind="stable")
    row_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    row_positions = position[by_row]
    order_rows = np.argsort(counts, kind="stable")  # by (count, row)
    slots, order, base, low = [], np.empty(m_out, dtype=INDEX_DTYPE), 0, -1
    for b in range(num_buckets):
        high = cuts[b] if b < len(cuts) else None
        rows = order_rows[(counts[order_rows] > low) & (counts[order_rows] <= high)] if high is not None \
            else order_rows[:0]
        width = max(high or 0, 1)
        table = np.full((max(rows.size, 1), width), zero_slot, dtype=INDEX_DTYPE)
        for j in range(width):
            has = counts[rows] > j
            table[: rows.size][has, j] = row_positions[row_start[rows[has]] + j]
        order[rows] = base + np.arange(rows.size)
        base += table.shape[0]
        slots.append(table)
        low = high if high is not None else low
    return pairs.reshape(-1, chunk_rows), offsets, slots, order


def up_tables(up: np.ndarray, chunk_rows: int, prefix: str) -> dict[str, np.ndarray]:
    """Chunked tables of a transposed convolution from its up map (M_fine,) ``parent * 8 + k``.

    Returns ``{prefix}_pairs`` (Nc, T) parent rows, ``_offsets`` (Nc,) and ``_rows`` (M_fine,) int32:
    the position of every fine voxel's single product.
    """
    kernels = compiled()
    if kernels is not None:
        pairs, offsets, rows = kernels.up_chunks(np.ascontiguousarray(up), int(chunk_rows))
        return {f"{prefix}_pairs": pairs.reshape(-1, chunk_rows), f"{prefix}_offsets": offsets, f"{prefix}_rows": rows}
    up = np.asarray(up, dtype=np.int64)
    parent, child = up // 8, up % 8
    pair_order = np.argsort(child, kind="stable")  # by (child slot, fine row)
    per_offset = np.bincount(child, minlength=8)
    first_slot, offsets, _ = _chunk_layout(per_offset, chunk_rows)
    rank = np.arange(up.size) - np.concatenate([[0], np.cumsum(per_offset)[:-1]])[child[pair_order]]
    position = np.empty(up.size, dtype=np.int64)
    position[pair_order] = first_slot[child[pair_order]] + rank
    pairs = np.zeros(offsets.size * chunk_rows, dtype=INDEX_DTYPE)
    pairs[position] = parent
    return {f"{prefix}_pairs": pairs.reshape(-1, chunk_rows), f"{prefix}_offsets": offsets,
            f"{prefix}_rows": position.astype(INDEX_DTYPE)}
