"""The PointGroup-style offset head of WS3D's instance segmentation (Tab. 4) and its losses.

The head reads the features the segmentation head reads (``point_features`` = ``decoder[0]``, (M_0, c_0)) and
predicts per voxel a vector (metres) from the voxel to the centre of its instance: ``Linear(c_0, c_0) - ReLU -
Linear(c_0, 3)`` (a :class:`~wsseg_training.methods.common.heads.PointHead`; PointGroup uses one more layer, our
backbones are narrower).  It is exported with the backbone as the bundle's second output ``instance_offsets``
(M_0, 3) float32 metres, so the robot clusters instances from it (:mod:`wsseg.core.instances`).

Training (labelled points of instance classes with an instance id only), PointGroup's two terms per point i
of instance k with centre c_k (the mean of k's points in the sample, augmented frame):

* ``L_reg = |o_i - (c_k - x_i)|_1`` (summed over x, y, z);
* ``L_dir = -(o_i / |o_i|) . ((c_k - x_i) / |c_k - x_i|)`` (cosine; points at their centre are skipped).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from wsseg.core.instances import INSTANCE_OFFSETS, InstanceConfig
from wsseg_training.methods.common.heads import PointHead
from wsseg_training.methods.common.segments import segment_mean

#: the exported output's name (defined on the robot side, which reads it) and meaning (model.yaml ``extra_outputs``)
OFFSETS_OUTPUT = INSTANCE_OFFSETS
OFFSETS_DESCRIPTION = "per voxel: vector from the voxel to the centre of its instance, metres (x, y, z)"


def offset_head(channels: int) -> PointHead:
    """The offset head over ``point_features`` (M_0, channels) -> (M_0, 3) metres (module docstring)."""
    return PointHead(channels, (channels,), 3, description=OFFSETS_DESCRIPTION)


def with_clustering(head: PointHead, config: InstanceConfig) -> PointHead:
    """Record the clustering settings in the head's spec (``attributes.clustering``: model.pt and model.yaml)."""
    head.spec["attributes"] = {"clustering": config.to_dict()}
    return head


def clustering_of(spec: dict, where: str) -> InstanceConfig:
    """The clustering settings a head's spec (or a bundle output's ``attributes``) records."""
    data = (spec.get("attributes") or {}).get("clustering")
    if data is None:
        raise ValueError(f"{where}: the '{OFFSETS_OUTPUT}' output records no clustering settings "
                         "(attributes.clustering)")
    return InstanceConfig.from_dict(data, where=f"{where}: attributes.clustering")


def instance_centres(xyz: torch.Tensor, instance: torch.Tensor) -> torch.Tensor:
    """Centre of every point's instance.

    xyz: (P, 3) float metres.  instance: (P,) int64 instance id unique in the batch, -1 = none.
    Returns (P, 3): the mean position of the point's instance (the point itself where it has none).
    """
    has = instance >= 0
    out = xyz.clone()
    if not bool(has.any()):
        return out
    ids, local = torch.unique(instance[has], return_inverse=True)
    means, _ = segment_mean(xyz[has], local, int(ids.shape[0]))
    out[has] = means[local]
    return out


@dataclass(frozen=True)
class OffsetTerms:
    """Sums over ``count`` points: ``l1_sum`` (L_reg) and ``direction_sum`` (L_dir, over ``direction_count``)."""

    l1_sum: torch.Tensor
    direction_sum: torch.Tensor
    count: torch.Tensor
    direction_count: torch.Tensor


def offset_losses(offsets: torch.Tensor, xyz: torch.Tensor, instance: torch.Tensor) -> OffsetTerms:
    """PointGroup's offset terms (module docstring).

    offsets: (P, 3) predicted per point (voxel offsets gathered to points).  xyz: (P, 3) metres, the sample's
    (augmented) positions.  instance: (P,) int64 batch-unique instance id, -1 = not trained.
    """
    if offsets.shape != xyz.shape or instance.shape != xyz.shape[:1]:
        raise ValueError(f"offset_losses: offsets {tuple(offsets.shape)}, xyz {tuple(xyz.shape)}, "
                         f"instance {tuple(instance.shape)} disagree")
    has = instance >= 0
    target = (instance_centres(xyz, instance) - xyz)[has]
    pred = offsets[has].float()
    l1 = (pred - target).abs().sum()
    norm = target.norm(dim=1)
    moving = norm > 1e-6
    cos = F.cosine_similarity(pred[moving], target[moving], dim=1, eps=1e-8)
    return OffsetTerms(l1_sum=l1, direction_sum=-cos.sum(), count=has.sum().to(l1.dtype),
                       direction_count=moving.sum().to(l1.dtype))
