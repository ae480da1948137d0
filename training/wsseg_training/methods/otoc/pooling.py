"""1T1C's super-voxel nodes: the per-super-voxel attributes of the graph (Eq. 2 pooling of each quantity).

Pooling itself is :mod:`wsseg_training.methods.common.segments` (shared with the other methods).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from wsseg_training.methods.common.segments import Segments


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
