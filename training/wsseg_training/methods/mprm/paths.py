"""The multi-path region mining module [MPRM §4.1-4.2, Fig. 3-4]: four classification paths on one backbone feature
map A, each ending in a 1x1 classifier whose output is that path's class-activation map (CAM).

Rows: A is (M, c), the voxels of one U-Net level in the level's reference order (``UNetOutput.encoder[l]`` /
``decoder[l]``; :mod:`wsseg_training.model.levels`); ``sample`` (M,) int64 gives each row's batch position
(``DeviceBatch.level_batch(l)``), so attention never crosses samples: it is computed on the rows of one sample at a
time, split by the voxel counts **at this level** (the official code split by the input-level counts, a bug).

Paths (h = ``path_channels``, d = ``qk_channels``, C = classes)::

    pcam  A -> dropout -> 1x1 -> C                                                          (Eq. 2)
    sa    A' = simple(A) (h);  Q, K = 1x1 (d), V = 1x1 (h);  E = softmax_i(Q_j . K_i) per sample;  F = E V
          G = alpha F + A'  (alpha learnable, 0 at init);  simple(G) -> dropout -> 1x1 -> C        (Eq. 3-4)
    ca    A' = simple(A) (h);  B = softmax_i(A'_i . A'_j) over the h x h Gram of the sample's rows
          D = beta A' B^T + A'  (beta learnable, 0 at init);  simple(D) -> dropout -> 1x1 -> C     (Eq. 5-6)
    psa   A' = simple(A) (h);  its own Q, K, V and E as in sa;  simple([A, E V]) -> dropout -> 1x1 -> C   (Fig. 4c)

``simple`` = submanifold 3x3x3 convolution + BatchNorm + ReLU at the level (the official code's KPConv "simple
block"; the paper's figure draws 1x1 convolutions).  As in the official code, G adds F to the projection A', not
to A (the paper writes A: with differing widths only A' fits).  Channel attention uses the paper's softmax of the
Gram matrix (the official code's DANet form softmax(rowmax - Gram) is not used).  PSA concatenates E V, already a
weighted mean over the sample (the official code also divides it by the point count).  Attention runs in float32
(also under autocast): the Gram of a few thousand voxels overflows float16.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from wsseg_training.methods.mprm.options import PATHS
from wsseg_training.model.sparse_conv import SubmanifoldConv3d
from wsseg_training.model.unet import ConvOps


class SimpleBlock(nn.Module):
    """Submanifold 3x3x3 convolution + BatchNorm + ReLU on the rows of one level (reference order in and out)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = SubmanifoldConv3d(in_channels, out_channels)
        self.norm = nn.BatchNorm1d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor, ops: ConvOps, level: int) -> torch.Tensor:
        out = ops.to_reference(ops.subm(self.conv, ops.from_reference(x, level), level), level)
        return self.relu(self.norm(out))


def sample_rows(sample: torch.Tensor, num_samples: int | None = None) -> list[torch.Tensor]:
    """Row indices of every batch position: ``sample`` (M,) int64 -> [(M_b,) int64 for b in 0..B-1]."""
    count = int(sample.max()) + 1 if sample.numel() else 0
    count = max(count, num_samples or 0)
    order = torch.argsort(sample, stable=True)
    sizes = torch.bincount(sample, minlength=count).tolist()
    return list(order.split(sizes))


def spatial_aggregate(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rows: Sequence[torch.Tensor]) -> torch.Tensor:
    """F = softmax_i(q_j . k_i) v per sample (Eq. 3): (M, d), (M, d), (M, h) -> (M, h), float32."""
    q, k, v = q.float(), k.float(), v.float()
    out = v.new_zeros(v.shape)
    for index in rows:
        if index.numel() == 0:
            continue
        energy = q[index] @ k[index].t()  # (n, n): row j = the influence of every point i on point j
        out[index] = torch.softmax(energy, dim=1) @ v[index]
    return out


def channel_aggregate(x: torch.Tensor, rows: Sequence[torch.Tensor]) -> torch.Tensor:
    """sum_i b_ji x_i per sample (Eq. 5-6 without beta and the residual): (M, h) -> (M, h), float32.

    b = softmax over i of the Gram entries x_i . x_j (channels i, j; columns of the sample's rows)."""
    x = x.float()
    out = x.new_zeros(x.shape)
    for index in rows:
        if index.numel() == 0:
            continue
        rows_x = x[index]  # (n, h)
        attention = torch.softmax(rows_x.t() @ rows_x, dim=1)  # (h, h): row j = the weights b_j. over channels i
        out[index] = rows_x @ attention.t()
    return out


class _Classifier(nn.Module):
    """Dropout + 1x1 classifier (with bias) -> (M, C) class-activation map."""

    def __init__(self, channels: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(x))


class SpatialAttentionPath(nn.Module):
    """sa (module docstring); ``forward`` -> (CAM (M, C), G (M, h), F (M, h))."""

    def __init__(self, channels: int, hidden: int, qk: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.project = SimpleBlock(channels, hidden)
        self.query = nn.Linear(hidden, qk)
        self.key = nn.Linear(hidden, qk)
        self.value = nn.Linear(hidden, hidden)
        self.alpha = nn.Parameter(torch.zeros(()))
        self.out = SimpleBlock(hidden, hidden)
        self.classifier = _Classifier(hidden, num_classes, dropout)

    def attend(self, projected: torch.Tensor, rows: Sequence[torch.Tensor]) -> torch.Tensor:
        """F (M, h) of the projected features A'."""
        return spatial_aggregate(self.query(projected), self.key(projected), self.value(projected), rows)

    def forward(self, a: torch.Tensor, ops: ConvOps, level: int,
                rows: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        projected = self.project(a, ops, level)
        aggregated = self.attend(projected, rows).to(projected.dtype)
        g = self.alpha * aggregated + projected
        return self.classifier(self.out(g, ops, level)), g, aggregated


class ChannelAttentionPath(nn.Module):
    """ca (module docstring); ``forward`` -> (CAM (M, C), D (M, h))."""

    def __init__(self, channels: int, hidden: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.project = SimpleBlock(channels, hidden)
        self.beta = nn.Parameter(torch.zeros(()))
        self.out = SimpleBlock(hidden, hidden)
        self.classifier = _Classifier(hidden, num_classes, dropout)

    def forward(self, a: torch.Tensor, ops: ConvOps, level: int,
                rows: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        projected = self.project(a, ops, level)
        d = self.beta * channel_aggregate(projected, rows).to(projected.dtype) + projected
        return self.classifier(self.out(d, ops, level)), d


class PointwiseSpatialAttentionPath(nn.Module):
    """psa (module docstring): the original features concatenated with their aggregated spatial-attention feature."""

    def __init__(self, channels: int, hidden: int, qk: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.project = SimpleBlock(channels, hidden)
        self.query = nn.Linear(hidden, qk)
        self.key = nn.Linear(hidden, qk)
        self.value = nn.Linear(hidden, hidden)
        self.out = SimpleBlock(channels + hidden, hidden)
        self.classifier = _Classifier(hidden, num_classes, dropout)

    def forward(self, a: torch.Tensor, ops: ConvOps, level: int, rows: Sequence[torch.Tensor]) -> torch.Tensor:
        projected = self.project(a, ops, level)
        aggregated = spatial_aggregate(self.query(projected), self.key(projected), self.value(projected), rows)
        return self.classifier(self.out(torch.cat([a, aggregated.to(a.dtype)], dim=1), ops, level))


class MultiPathModule(nn.Module):
    """The chosen paths over one feature map (module docstring).

    channels: width c of A.  num_classes: C.  paths: a subset of :data:`PATHS`.  hidden / qk: h and d.
    ``forward(a, ops, level, sample)`` -> {path: (M, C) CAM} for ``a`` (M, c) in the level's reference order,
    ``ops`` the forward pass's convolution ops (``UNetOutput.state.ops``), ``sample`` (M,) int64 batch positions.
    """

    def __init__(self, channels: int, num_classes: int, paths: Sequence[str] = PATHS, hidden: int | None = None,
                 qk: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        unknown = [p for p in paths if p not in PATHS]
        if unknown or not paths:
            raise ValueError(f"MPRM paths {list(paths)} must be a non-empty subset of {PATHS}")
        hidden = hidden or channels
        qk = qk or max(4, hidden // 8)
        self.paths = tuple(p for p in PATHS if p in paths)
        self.channels = channels
        self.num_classes = num_classes
        if "pcam" in self.paths:
            self.pcam = _Classifier(channels, num_classes, dropout)
        if "sa" in self.paths:
            self.sa = SpatialAttentionPath(channels, hidden, qk, num_classes, dropout)
        if "ca" in self.paths:
            self.ca = ChannelAttentionPath(channels, hidden, num_classes, dropout)
        if "psa" in self.paths:
            self.psa = PointwiseSpatialAttentionPath(channels, hidden, qk, num_classes, dropout)

    def forward(self, a: torch.Tensor, ops: ConvOps, level: int, sample: torch.Tensor,
                num_samples: int | None = None) -> dict[str, torch.Tensor]:
        if a.ndim != 2 or a.shape[1] != self.channels or sample.shape != (a.shape[0],):
            raise ValueError(f"MPRM paths: features {tuple(a.shape)} must be (M, {self.channels}) with a sample "
                             f"index (M,), got {tuple(sample.shape)}")
        rows = sample_rows(sample, num_samples)
        cams: dict[str, torch.Tensor] = {}
        if "pcam" in self.paths:
            cams["pcam"] = self.pcam(a)
        if "sa" in self.paths:
            cams["sa"] = self.sa(a, ops, level, rows)[0]
        if "ca" in self.paths:
            cams["ca"] = self.ca(a, ops, level, rows)[0]
        if "psa" in self.paths:
            cams["psa"] = self.psa(a, ops, level, rows)
        return cams


def sample_scores(cam: torch.Tensor, sample: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Global average pooling of a CAM over each sample's rows: (M, C), (M,) -> (B, C) classification logits."""
    sums = cam.new_zeros((num_samples, cam.shape[1])).index_add(0, sample, cam)
    counts = torch.bincount(sample, minlength=num_samples).clamp(min=1).to(cam.dtype)
    return sums / counts[:, None]
