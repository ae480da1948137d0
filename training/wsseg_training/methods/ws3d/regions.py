"""WS3D's regions per scene and per step: ids, adjacency, boundary pair labels, and their batch-local form.

Per scene (:class:`SceneRegions`, built once): the region of every point (the scene's super-voxels by default;
``bench/results/ws3d_regions.md`` shows them purer than region growing on our data), the adjacent region pairs
(k-NN adjacency, :func:`wsseg_training.methods.common.adjacency.region_adjacency`) and ``w`` per pair (Eq. 2),
filled in once the boundary network has predicted the scene's boundary points.

Per step (:func:`view_regions`): the two augmented views of a group hold the same scene points in the same
order, so both views see the same regions.  Regions are renumbered batch-locally over (group, region id);
the pairs whose two regions both occur in the crop are kept, with their ``w``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from wsseg_training.methods.common.adjacency import knn_pairs, region_adjacency
from wsseg_training.methods.ws3d.boundary import boundary_pair_labels, region_has_boundary

#: how boundary points make a boundary pair: the paper's Eq. 2, or at the pair's shared border only
PAIR_RULES = ("contain", "interface")


@dataclass
class SceneRegions:
    """One scene's regions.

    region: (N,) int64 region id per point, -1 = none.  pairs: (E, 2) int64 adjacent region ids, ``pairs[:, 0] <
    pairs[:, 1]``.  w: (E,) float32 boundary label of each pair (all 0 until boundaries are predicted).
    """

    region: np.ndarray
    pairs: np.ndarray
    w: np.ndarray

    @classmethod
    def build(cls, xyz: np.ndarray, region: np.ndarray, k: int = 10) -> SceneRegions:
        """xyz: (N, 3) float metres; region: (N,) int region ids.  Adjacency over the ``k`` nearest neighbours."""
        region = np.asarray(region).astype(np.int64)
        pairs, _ = region_adjacency(xyz, region, k=k)
        return cls(region=region, pairs=pairs, w=np.zeros(len(pairs), dtype=np.float32))

    @property
    def num_regions(self) -> int:
        return int(self.region.max()) + 1 if self.region.size and self.region.max() >= 0 else 0

    def set_boundaries(self, boundary: np.ndarray, rule: str = "contain", xyz: np.ndarray | None = None,
                       k: int = 10, share: float = 0.5) -> None:
        """boundary: (N,) bool boundary points of the scene -> ``w``.

        rule ``contain`` (Eq. 2): w = 1 iff both regions hold a boundary point.  ``interface``: w = 1 iff at least
        ``share`` of the k-NN links between the two regions (xyz (N, 3) metres needed) join two boundary points,
        i.e. the boundary runs along their shared border -- a region that touches another class elsewhere does
        not make all its pairs boundary pairs.
        """
        if rule not in PAIR_RULES:
            raise ValueError(f"boundary pair rule {rule!r} is not one of {PAIR_RULES}")
        if rule == "contain" or not len(self.pairs):
            has = region_has_boundary(boundary, self.region, self.num_regions)
            self.w = boundary_pair_labels(has, self.pairs)
            return
        if xyz is None:
            raise ValueError("boundary pair rule 'interface' needs the scene's xyz")
        rows, cols = knn_pairs(xyz, k)
        a, b = self.region[rows], self.region[cols]
        cross = (a >= 0) & (b >= 0) & (a != b)
        low, high = np.minimum(a[cross], b[cross]), np.maximum(a[cross], b[cross])
        both = (boundary[rows[cross]] & boundary[cols[cross]]).astype(np.float64)
        stride = max(self.num_regions, 1)
        index = np.searchsorted(self.pairs[:, 0] * stride + self.pairs[:, 1], low * stride + high)
        links = np.bincount(index, minlength=len(self.pairs))[: len(self.pairs)]
        hits = np.bincount(index, weights=both, minlength=len(self.pairs))[: len(self.pairs)]
        self.w = (hits >= share * np.maximum(links, 1)).astype(np.float32) * (links > 0)


def pair_class_change(regions: SceneRegions, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Which adjacent pairs cross a class boundary, by the regions' majority labels.

    labels: (N,) int class ids, negative (``IGNORE_INDEX``) = unknown.  Returns (E,) bool ``change`` (the two
    regions' majority labels differ) and (E,) bool ``known`` (both regions hold a labelled point); ``change`` is
    False where not ``known``.
    """
    if not len(regions.pairs):
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)
    region, labels = regions.region, np.asarray(labels).astype(np.int64)
    keep = (region >= 0) & (labels >= 0)
    votes = np.bincount(region[keep] * num_classes + labels[keep],
                        minlength=regions.num_regions * num_classes).reshape(-1, num_classes)
    majority = np.where(votes.sum(axis=1) > 0, votes.argmax(axis=1), -1)
    a, b = majority[regions.pairs[:, 0]], majority[regions.pairs[:, 1]]
    known = (a >= 0) & (b >= 0)
    return known & (a != b), known


@dataclass(frozen=True)
class ViewRegions:
    """The regions of a step's view groups, batch-locally numbered.

    rows: one (Q,) int64 array per view: batch point rows; ``rows[v][i]`` of every view is the same scene point.
    node: (Q,) int64 batch-local region of each of those points, -1 = none.  num_regions: R.
    pairs: (E, 2) int64 adjacent local regions.  w: (E,) float32 their boundary labels.
    """

    rows: tuple[np.ndarray, ...]
    node: np.ndarray
    num_regions: int
    pairs: np.ndarray
    w: np.ndarray


def view_regions(names: Sequence[str], group: np.ndarray, member: np.ndarray, point_offsets: np.ndarray,
                 point_index: np.ndarray, scenes: Mapping[str, SceneRegions], views: int = 2) -> ViewRegions:
    """Regions of the view groups of one batch (``Batch`` fields; see :mod:`wsseg_training.engine.batches`).

    names: (B,) scene of each batch position.  group / member: (B,) group index and view index.
    point_offsets: (B + 1,) point rows per position.  point_index: (P,) scene point of each batch point.
    """
    positions: dict[int, dict[int, int]] = {}
    for b, (g, m) in enumerate(zip(group.tolist(), member.tolist(), strict=True)):
        positions.setdefault(int(g), {})[int(m)] = b
    rows: list[list[np.ndarray]] = [[] for _ in range(views)]
    keys, pair_parts, w_parts = [], [], []
    offset = 0
    for g in sorted(positions):
        members = positions[g]
        if sorted(members) != list(range(views)):
            raise ValueError(f"view group {g} holds views {sorted(members)}, expected 0..{views - 1}")
        first = members[0]
        name = names[first]
        span = [np.arange(point_offsets[members[v]], point_offsets[members[v] + 1], dtype=np.int64)
                for v in range(views)]
        if any(len(s) != len(span[0]) for s in span):
            raise ValueError(f"view group {g} ({name!r}): the views hold different numbers of points")
        for v in range(views):
            rows[v].append(span[v])
        regions = scenes[name]
        ids = regions.region[point_index[span[0]]]
        present, local = np.unique(ids, return_inverse=True)
        has_none = present.size > 0 and present[0] < 0
        local = local.reshape(-1) - int(has_none)
        present = present[int(has_none):]
        keys.append(np.where(ids >= 0, local + offset, -1))
        if len(regions.pairs):
            a = np.searchsorted(present, regions.pairs[:, 0])
            b = np.searchsorted(present, regions.pairs[:, 1])
            ok = (a < present.size) & (b < present.size)
            ok[ok] &= (present[a[ok]] == regions.pairs[ok, 0]) & (present[b[ok]] == regions.pairs[ok, 1])
            pair_parts.append(np.stack([a[ok], b[ok]], axis=1) + offset)
            w_parts.append(regions.w[ok])
        offset += present.size
    empty = np.zeros(0, dtype=np.int64)
    return ViewRegions(
        rows=tuple(np.concatenate(r) if r else empty for r in rows),
        node=np.concatenate(keys) if keys else empty, num_regions=offset,
        pairs=np.concatenate(pair_parts).astype(np.int64) if pair_parts else np.zeros((0, 2), np.int64),
        w=np.concatenate(w_parts).astype(np.float32) if w_parts else np.zeros(0, np.float32))
