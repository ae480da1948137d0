"""Super-voxel pooling (1T1C Eq. 2) and the per-super-voxel node attributes of the graph.

A scene's super-voxel ids are arbitrary non-negative ints (-1 = the point belongs to none).
:class:`Segments` renumbers the ids that occur to graph nodes ``0..S-1``; every pooled quantity is
the plain mean over a node's points (Eq. 2 averages over points, so a densely sampled voxel weighs
more; voxel-level values are gathered to points with ``grid.inverse`` first).  All ops are
``index_add`` based: differentiable, vectorised, device-agnostic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from wsseg.core.classes import IGNORE_INDEX


def segment_sum(values: torch.Tensor, index: torch.Tensor, num_segments: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum rows of ``values`` per segment.

    values: (P, F) or (P,) float.  index: (P,) int64 segment of each row in ``0..num_segments-1``, or -1 to
    skip the row.  Returns (sums (S, F) or (S,), counts (S,) int64); empty segments sum to 0.
    """
    if index.shape[0] != values.shape[0]:
        raise ValueError(f"segment index has {index.shape[0]} rows, values have {values.shape[0]}")
    index = index.to(torch.int64)
    valid = index >= 0
    if valid.any() and int(index.max()) >= num_segments:
        raise ValueError(f"segment index {int(index.max())} outside 0..{num_segments - 1}")
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


@dataclass(frozen=True)
class SupervoxelNodes:
    """Pooled attributes of the super-voxels of one scene (the CRF's nodes).

    segments: the point -> node map.
    xyz: (S, 3) mean coordinates, metres.  rgb: (S, 3) mean colour in [0, 1], or None without colour.
    prob: (S, C) mean of Θ's per-point class probabilities (Eq. 2).
    unet_feature: (S, F) mean of Θ's last decoder features (u_j of Eq. 5), or None.
    relation_embedding: (S, D) mean of R's per-point embeddings (f_j), or None when R is not used.
    """

    segments: Segments
    xyz: torch.Tensor
    rgb: torch.Tensor | None
    prob: torch.Tensor
    unet_feature: torch.Tensor | None = None
    relation_embedding: torch.Tensor | None = None

    @property
    def num_nodes(self) -> int:
        return self.segments.num_nodes


def pool_nodes(segments: Segments, xyz: torch.Tensor, prob: torch.Tensor, rgb: torch.Tensor | None = None,
               unet_feature: torch.Tensor | None = None,
               relation_embedding: torch.Tensor | None = None) -> SupervoxelNodes:
    """Pool per-point quantities of one scene to its super-voxels.

    xyz: (P, 3) float metres.  prob: (P, C) Θ's softmax per point.  rgb: (P, 3) uint8 0..255 or float in
    [0, 1].  unet_feature: (P, F).  relation_embedding: (P, D).  All rows follow ``segments.node``.
    """
    n = segments.num_points
    named = {"xyz": xyz, "prob": prob, "rgb": rgb, "unet_feature": unet_feature,
             "relation_embedding": relation_embedding}
    for name, value in named.items():
        if value is not None and value.shape[0] != n:
            raise ValueError(f"pool_nodes: '{name}' has {value.shape[0]} rows, the segments have {n} points")
    colour = None
    if rgb is not None:
        colour = rgb.to(prob.dtype) / 255.0 if rgb.dtype == torch.uint8 else rgb.to(prob.dtype)
    return SupervoxelNodes(
        segments=segments,
        xyz=segments.mean(xyz.to(prob.dtype)),
        rgb=None if colour is None else segments.mean(colour),
        prob=segments.mean(prob),
        unet_feature=None if unet_feature is None else segments.mean(unet_feature),
        relation_embedding=None if relation_embedding is None else segments.mean(relation_embedding),
    )
