"""Segment pooling: per-point values -> per-segment sums, means, maxima and majority labels.

A *segment* is any grouping of a scene's points: a super-voxel (1T1C), a region of an over-segmentation
(WS3D), a K-means primitive (Densify), a sub-cloud.  Ids are arbitrary non-negative ints, -1 = the point
belongs to none.  :class:`Segments` renumbers the ids that occur to nodes ``0..S-1``.

* mean: 1T1C Eq. 2 (super-voxel probability = mean of its points'), Densify Eq. 7 (primitive feature);
* max: WS3D §3.2 (region prediction = per-class max of its points' softmax, "region-level max pooling");
* majority: a segment's label from its labelled points.

Pooling is over the rows given: gather voxel values to points with ``grid.inverse`` first to weigh
densely sampled voxels more (Eq. 2 averages points).  All ops are ``index_add`` / ``scatter_reduce``:
differentiable, vectorised, device-agnostic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from wsseg.core.classes import IGNORE_INDEX


def _valid_rows(index: torch.Tensor, rows: int, num_segments: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(valid (P,) bool, index (P,) int64) after checking ``index`` against ``rows`` and ``num_segments``."""
    if index.shape[0] != rows:
        raise ValueError(f"segment index has {index.shape[0]} rows, values have {rows}")
    index = index.to(torch.int64)
    valid = index >= 0
    if valid.any() and int(index.max()) >= num_segments:
        raise ValueError(f"segment index {int(index.max())} outside 0..{num_segments - 1}")
    return valid, index


def segment_sum(values: torch.Tensor, index: torch.Tensor, num_segments: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum rows of ``values`` per segment.

    values: (P, F) or (P,) float.  index: (P,) int64 segment of each row in ``0..num_segments-1``, or -1 to
    skip the row.  Returns (sums (S, F) or (S,), counts (S,) int64); empty segments sum to 0.
    """
    valid, index = _valid_rows(index, values.shape[0], num_segments)
    rows, idx = values[valid], index[valid]
    sums = values.new_zeros((num_segments, *values.shape[1:])).index_add(0, idx, rows)
    counts = torch.bincount(idx, minlength=num_segments)
    return sums, counts


def segment_mean(values: torch.Tensor, index: torch.Tensor, num_segments: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of ``values`` per segment (Eq. 2); same arguments as :func:`segment_sum`.

    Returns (means (S, F) or (S,), counts (S,) int64); an empty segment's mean is 0 (and gets no gradient).
    """
    sums, counts = segment_sum(values, index, num_segments)
    denom = counts.clamp(min=1).to(sums.dtype)
    return sums / denom.reshape(-1, *([1] * (sums.ndim - 1))), counts


def segment_max(values: torch.Tensor, index: torch.Tensor, num_segments: int,
                fill: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-column maximum of ``values`` per segment (WS3D's region-level max pooling).

    values: (P, F) or (P,) float.  index: (P,) int64 segment in ``0..num_segments-1`` or -1 to skip the row.
    Returns (maxima (S, F) or (S,), counts (S,) int64); an empty segment gets ``fill``.  Differentiable: the
    gradient of a maximum reaches the row(s) that attain it (shared evenly between tied rows).
    """
    valid, index = _valid_rows(index, values.shape[0], num_segments)
    rows, idx = values[valid], index[valid]
    target = values.new_full((num_segments, *values.shape[1:]), fill)
    expanded = idx.reshape(-1, *([1] * (values.ndim - 1))).expand_as(rows)
    maxima = target.scatter_reduce(0, expanded, rows, reduce="amax", include_self=False)
    return maxima, torch.bincount(idx, minlength=num_segments)


def segment_majority(labels: torch.Tensor, index: torch.Tensor, num_segments: int,
                     num_classes: int) -> torch.Tensor:
    """Majority label per segment among its labelled rows.

    labels: (P,) int64 class id or ``IGNORE_INDEX``.  index: (P,) int64 segment or -1.
    Returns (S,) int64: the most frequent label; ``IGNORE_INDEX`` when the segment has no labelled row or
    when two classes tie for the most votes (an ambiguous super-voxel is better left unlabelled).
    """
    labels = labels.to(torch.int64)
    index = index.to(torch.int64)
    valid = (labels >= 0) & (index >= 0)
    if bool(((labels >= num_classes) & valid).any()):
        raise ValueError(f"label {int(labels[valid].max())} outside the class table (0..{num_classes - 1})")
    votes = torch.bincount(index[valid] * num_classes + labels[valid], minlength=num_segments * num_classes)
    votes = votes[: num_segments * num_classes].reshape(num_segments, num_classes)
    best, winner = votes.max(dim=1)
    ties = (votes == best[:, None]).sum(dim=1) > 1
    return torch.where((best > 0) & ~ties, winner, torch.full_like(winner, IGNORE_INDEX))


@dataclass(frozen=True)
class Segments:
    """The point -> graph-node map of one scene (or one batch with batch-unique ids).

    node: (P,) int64 node of every point, -1 where the point has no super-voxel.
    ids: (S,) int64 original super-voxel id of every node (sorted).
    counts: (S,) int64 points per node (all >= 1).
    """

    node: torch.Tensor
    ids: torch.Tensor
    counts: torch.Tensor

    @classmethod
    def from_ids(cls, supervoxel: torch.Tensor) -> Segments:
        """supervoxel: (P,) int super-voxel id per point, -1 = none.  Ids need not be contiguous."""
        supervoxel = supervoxel.to(torch.int64)
        has = supervoxel >= 0
        ids, inverse, counts = torch.unique(supervoxel[has], return_inverse=True, return_counts=True)
        node = torch.full_like(supervoxel, -1)
        node[has] = inverse
        return cls(node=node, ids=ids, counts=counts)

    @property
    def num_nodes(self) -> int:
        return int(self.ids.shape[0])

    @property
    def num_points(self) -> int:
        return int(self.node.shape[0])

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """(P, F) or (P,) per-point values -> (S, F) or (S,) per-node means (Eq. 2), differentiable."""
        return segment_mean(values, self.node, self.num_nodes)[0]

    def max(self, values: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """(P, F) or (P,) per-point values -> (S, F) or (S,) per-node maxima (see :func:`segment_max`)."""
        return segment_max(values, self.node, self.num_nodes, fill)[0]

    def majority(self, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
        """(P,) point labels -> (S,) node labels (see :func:`segment_majority`)."""
        return segment_majority(labels, self.node, self.num_nodes, num_classes)

    def to_points(self, node_values: torch.Tensor, fill: float | int) -> torch.Tensor:
        """(S, ...) per-node values -> (P, ...) per-point values; points without a node get ``fill``."""
        if node_values.shape[0] != self.num_nodes:
            raise ValueError(f"node_values has {node_values.shape[0]} rows, expected {self.num_nodes} nodes")
        out = node_values.new_full((self.num_points, *node_values.shape[1:]), fill)
        has = self.node >= 0
        out[has] = node_values[self.node[has]]
        return out
