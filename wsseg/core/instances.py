"""Instance clustering from per-voxel offsets (PointGroup's dual-set clustering, WS3D Tab. 4), numpy only.

The network predicts, per voxel, its class and an offset vector (metres) to the centre of its instance.  For
every instance class, voxels of that class are grouped by breadth-first search within a radius, once on their
original positions and once on their shifted positions ``xyz + offset`` (PointGroup's "dual set"); clusters
lighter than ``min_points`` points are dropped.  Each cluster is a proposal with the class and a score: the
point-weighted mean confidence of its voxels times its agreement with the other set (the largest share of
it one cluster of the other set holds; PointGroup learns a ScoreNet instead, we do not).  Proposals are
reduced by class-wise non-maximum suppression (IoU > ``nms_iou`` against a higher-scoring proposal), and each
voxel takes the highest-scoring proposal that holds it.

The breadth-first search within a radius equals the connected components of the radius graph (every pair
within ``radius_m``), built here with a hash grid of ``radius_m`` cells.  Used by training-side evaluation
(AP) and by the robot side (:class:`wsseg.runtime.segmenter.Segmenter`) alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from wsseg.core.voxelize import CoordinateKeys, VoxelGrid, grid_indices, voxel_mean

#: the bundle output WS3D's offset head is exported as: (M_0, 3) float32 metres, its model.yaml ``attributes``
#: hold ``clustering`` (:meth:`InstanceConfig.to_dict`)
INSTANCE_OFFSETS = "instance_offsets"

#: the 13 cell offsets of one half-space (plus the zero offset first): each unordered pair of cells once
_HALF_OFFSETS = np.array(
    [[0, 0, 0]] + [[x, y, z] for x in (-1, 0, 1) for y in (-1, 0, 1) for z in (-1, 0, 1)
                   if (x, y, z) > (0, 0, 0)], dtype=np.int64)


@dataclass(frozen=True)
class InstanceConfig:
    """Clustering settings (stored in the bundle's ``model.yaml`` beside the offset output).

    classes: class ids that have instances (the others are "stuff": walls, floors, roads).
    radius_m: search radius on original positions; shifted_radius_m: on shifted positions (PointGroup: 1.5
        voxels, 3 cm at its 2 cm grid, for both).  min_points: smallest proposal, in points.
    nms_iou: a proposal overlapping a higher-scoring one of its class by more than this IoU is dropped.
    """

    classes: tuple[int, ...] = field(default_factory=tuple)
    radius_m: float = 0.15
    shifted_radius_m: float = 0.15
    min_points: int = 50
    nms_iou: float = 0.3

    def __post_init__(self) -> None:
        if not (self.radius_m > 0 and self.shifted_radius_m > 0):
            raise ValueError(f"instance clustering: radius_m={self.radius_m} and shifted_radius_m="
                             f"{self.shifted_radius_m} must be > 0")
        if self.min_points < 1 or not 0.0 <= self.nms_iou <= 1.0:
            raise ValueError(f"instance clustering: min_points={self.min_points} must be >= 1 and "
                             f"nms_iou={self.nms_iou} in [0, 1]")
        if any(int(c) < 0 for c in self.classes):
            raise ValueError(f"instance clustering: class ids {self.classes} must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "classes": [int(c) for c in self.classes]}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "instance clustering") -> InstanceConfig:
        known = {"classes", "radius_m", "shifted_radius_m", "min_points", "nms_iou"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {unknown}; known: {sorted(known)}")
        try:
            return cls(classes=tuple(int(c) for c in data.get("classes", ())),
                       radius_m=float(data.get("radius_m", 0.15)),
                       shifted_radius_m=float(data.get("shifted_radius_m", 0.15)),
                       min_points=int(data.get("min_points", 50)), nms_iou=float(data.get("nms_iou", 0.3)))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class Proposals:
    """Instance proposals over V rows (voxels or points), best score first.

    members: one (k,) int64 array of row indices per proposal.  cls: (K,) int64 class id.  score: (K,) float32.
    """

    members: list[np.ndarray]
    cls: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return len(self.members)


def _ranges(low: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(low[i], low[i] + count[i])`` over i: (sum(count),) int64."""
    count = np.asarray(count, dtype=np.int64)
    rank = np.arange(int(count.sum()), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
    return np.repeat(np.asarray(low, dtype=np.int64), count) + rank


def radius_edges(xyz: np.ndarray, radius_m: float, chunk_pairs: int = 2_000_000) -> np.ndarray:
    """Every pair of rows within ``radius_m`` of each other.

    xyz: (V, 3) float, metres.  Returns (E, 2) int64 with ``i < j`` (each pair once).  Work is chunked to about
    ``chunk_pairs`` candidate pairs at a time (memory stays bounded on dense clusters).
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    n = xyz.shape[0]
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    rows = np.concatenate([np.zeros((n, 1), np.int64), grid_indices(xyz, radius_m)], axis=1)
    keys = CoordinateKeys(rows, margin_voxels=1)
    key = keys.pack(rows)
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    limit = radius_m * radius_m
    out = []
    for offset, step in zip(_HALF_OFFSETS, keys.offset_keys(_HALF_OFFSETS), strict=True):
        low = np.searchsorted(sorted_key, key + step, side="left")
        count = np.searchsorted(sorted_key, key + step, side="right") - low
        total = np.cumsum(count)
        start = 0
        while start < n:
            base = total[start - 1] if start else 0
            end = max(start + 1, int(np.searchsorted(total, base + chunk_pairs, side="right")))
            c = count[start:end]
            src = np.repeat(np.arange(start, end, dtype=np.int64), c)
            dst = order[_ranges(low[start:end], c)]
            keep = ((xyz[src] - xyz[dst]) ** 2).sum(axis=1) <= limit
            if not offset.any():
                keep &= src < dst
            a, b = src[keep], dst[keep]
            out.append(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1))
            start = end
    return np.concatenate(out).astype(np.int64)


def connected_components(num_rows: int, edges: np.ndarray) -> np.ndarray:
    """Component of every row of an undirected graph (hooking + pointer jumping, vectorised).

    edges: (E, 2) int rows.  Returns (num_rows,) int64 component ids 0..K-1, numbered by smallest member.
    """
    parent = np.arange(num_rows, dtype=np.int64)
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    a, b = edges[:, 0], edges[:, 1]
    while a.size:
        pa, pb = parent[a], parent[b]  # roots: parent is fully shortcut below
        differ = pa != pb
        if not differ.any():
            break
        a, b, pa, pb = a[differ], b[differ], pa[differ], pb[differ]
        np.minimum.at(parent, np.maximum(pa, pb), np.minimum(pa, pb))
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    _, component = np.unique(parent, return_inverse=True)
    return component.reshape(-1).astype(np.int64)


def _partition(xyz: np.ndarray, radius_m: float) -> np.ndarray:
    return connected_components(xyz.shape[0], radius_edges(xyz, radius_m))


def _contingency(parts: list[np.ndarray], sizes: list[np.ndarray],
                 weight: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
    """Weighted intersections between the components of every two partitions: (p, q) -> (K_p, K_q)."""
    tables = {}
    for p in range(len(parts)):
        for q in range(len(parts)):
            if p != q:
                kp, kq = sizes[p].size, sizes[q].size
                flat = np.bincount(parts[p] * kq + parts[q], weights=weight, minlength=kp * kq)
                tables[(p, q)] = flat.reshape(kp, kq)
    return tables


def _nms(parts: list[np.ndarray], weight: np.ndarray, confidence: np.ndarray, min_points: int,
         nms_iou: float) -> list[tuple[np.ndarray, float]]:
    """Proposals of one class from several partitions of its rows; returns kept (members, score), best first.

    parts: per partition, (V_c,) int64 component of every row.  weight: (V_c,) points per row.  The score of a
    component is its mean confidence times its *agreement*: the largest share of it that one component of
    each other partition holds (two touching objects merged on the original positions but apart on the
    shifted ones agree 0.5; a clean object 1).
    """
    sizes, means = [], []
    for comp in parts:
        k = int(comp.max()) + 1 if comp.size else 0
        size = np.bincount(comp, weights=weight, minlength=k)
        sizes.append(size)
        means.append(np.bincount(comp, weights=weight * confidence, minlength=k) / np.maximum(size, 1e-12))
    tables = _contingency(parts, sizes, weight)
    candidates = []  # (score, partition index, component id)
    for p in range(len(parts)):
        agreement = np.ones(sizes[p].size)
        for q in range(len(parts)):
            if q != p and sizes[q].size:
                agreement = np.minimum(agreement, tables[(p, q)].max(axis=1) / np.maximum(sizes[p], 1e-12))
        score = means[p] * agreement
        candidates += [(float(score[c]), p, c) for c in np.flatnonzero(sizes[p] >= min_points)]
    candidates.sort(key=lambda item: (-item[0], item[1], item[2]))
    kept: list[tuple[float, int, int]] = []
    for score, p, c in candidates:
        overlap = False
        for _, q, d in kept:
            if q == p:
                continue  # components of one partition are disjoint
            inter = tables[(p, q)][c, d]
            union = sizes[p][c] + sizes[q][d] - inter
            if union > 0 and inter / union > nms_iou:
                overlap = True
                break
        if not overlap:
            kept.append((score, p, c))
    return [(np.flatnonzero(parts[p] == c), s) for s, p, c in kept]


def cluster_instances(xyz: np.ndarray, offsets: np.ndarray, labels: np.ndarray, confidence: np.ndarray,
                      config: InstanceConfig, weight: np.ndarray | None = None) -> Proposals:
    """Instance proposals (see the module docstring).

    xyz: (V, 3) float metres (voxel mean positions or points).  offsets: (V, 3) float metres, predicted
    vector to the instance centre.  labels: (V,) int predicted class.  confidence: (V,) float probability of
    that class.  weight: (V,) points per row (default 1).  Returns :class:`Proposals`, best score first.
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    confidence = np.asarray(confidence, dtype=np.float64)
    n = xyz.shape[0]
    weight = np.ones(n, dtype=np.float64) if weight is None else np.asarray(weight, dtype=np.float64)
    for name, array, shape in (("xyz", xyz, (n, 3)), ("offsets", offsets, (n, 3)), ("labels", labels, (n,)),
                               ("confidence", confidence, (n,)), ("weight", weight, (n,))):
        if array.shape != shape:
            raise ValueError(f"cluster_instances: '{name}' has shape {array.shape}, expected {shape}")
    members, classes, scores = [], [], []
    for cls in sorted(set(int(c) for c in config.classes)):
        rows = np.flatnonzero(labels == cls)
        if rows.size == 0:
            continue
        parts = [_partition(xyz[rows], config.radius_m),
                 _partition(xyz[rows] + offsets[rows], config.shifted_radius_m)]
        for local, score in _nms(parts, weight[rows], confidence[rows], config.min_points, config.nms_iou):
            members.append(rows[local])
            classes.append(cls)
            scores.append(score)
    order = sorted(range(len(members)), key=lambda i: -scores[i])
    return Proposals(members=[members[i] for i in order], cls=np.asarray([classes[i] for i in order], np.int64),
                     score=np.asarray([scores[i] for i in order], np.float32))


def instance_ids(proposals: Proposals, num_rows: int) -> np.ndarray:
    """(num_rows,) uint32 instance id per row: 1 + the index of the best-scoring proposal holding it, 0 = none."""
    out = np.zeros(num_rows, dtype=np.uint32)
    for index in range(len(proposals) - 1, -1, -1):  # worst first, so better proposals overwrite
        out[proposals.members[index]] = index + 1
    return out


def cluster_voxels(xyz: np.ndarray, grid: VoxelGrid, labels: np.ndarray, confidence: np.ndarray,
                   offsets: np.ndarray, config: InstanceConfig) -> Proposals:
    """Proposals over the voxels of one cloud: :func:`cluster_instances` at the voxels' mean point positions.

    xyz: (N, 3) float metres, the cloud ``grid`` was built from.  labels, confidence: (M,) per voxel.
    offsets: (M, 3) float metres per voxel.  Voxels weigh their point counts.
    """
    return cluster_instances(voxel_mean(xyz, grid), offsets, labels, confidence, config, weight=grid.counts)


def proposals_to_points(proposals: Proposals, inverse: np.ndarray) -> Proposals:
    """Voxel proposals -> point proposals.  inverse: (N,) int64 voxel row of every point (``grid.inverse``)."""
    inverse = np.asarray(inverse, dtype=np.int64)
    order = np.argsort(inverse, kind="stable")
    sorted_rows = inverse[order]
    members = []
    for rows in proposals.members:
        low = np.searchsorted(sorted_rows, rows, side="left")
        count = np.searchsorted(sorted_rows, rows, side="right") - low
        members.append(np.sort(order[_ranges(low, count)]))
    return Proposals(members=members, cls=proposals.cls.copy(), score=proposals.score.copy())


def segment_instances(xyz: np.ndarray, grid: VoxelGrid, labels: np.ndarray, confidence: np.ndarray,
                      offsets: np.ndarray, config: InstanceConfig) -> tuple[Proposals, np.ndarray]:
    """Instances of one cloud from the network's per-voxel outputs (what the robot and evaluation both run).

    xyz: (N, 3) float metres, the points ``grid`` was built from.  labels / confidence: (M,) per voxel (argmax
    class, its probability).  offsets: (M, 3) float metres.  Returns (proposals over the N points, best first;
    (N,) uint32 instance id per point, 1 + proposal index, 0 = no instance).
    """
    voxel_proposals = cluster_voxels(xyz, grid, labels, confidence, offsets, config)
    ids = instance_ids(voxel_proposals, grid.num_voxels)[grid.inverse]
    return proposals_to_points(voxel_proposals, grid.inverse), ids


def instance_config_of(extra_outputs: Sequence[Any], where: str = "model.yaml") -> InstanceConfig | None:
    """The clustering settings of a bundle's ``instance_offsets`` output (``BundleMeta.extra_outputs``), or None
    when the bundle has no such output.  ``ValueError`` naming ``where`` when the output records none."""
    for index, output in enumerate(extra_outputs):
        if output.name != INSTANCE_OFFSETS:
            continue
        field_name = f"{where}: field 'extra_outputs[{index}].attributes.clustering'"
        clustering = (output.attributes or {}).get("clustering")
        if clustering is None:
            raise ValueError(f"{field_name} is missing: the '{INSTANCE_OFFSETS}' output needs its clustering settings")
        if output.channels != 3:
            raise ValueError(f"{where}: output '{INSTANCE_OFFSETS}' has {output.channels} channels, expected 3")
        return InstanceConfig.from_dict(clustering, where=field_name)
    return None
