"""Sparse 3D convolutions over precomputed kernel maps, in plain torch.

Every convolution is *gather -> reshape -> matmul* over the index tables of
:mod:`wsseg.core.kernel_maps`, so the graph uses only ops that ONNX exports as
Gather, Reshape, Transpose, MatMul, Concat and Add: stock ONNX Runtime and
TensorRT run it without plugins, and it behaves the same on CPU and CUDA.

Weights use the spconv layout ``[C_out, k, k, k, C_in]`` (k = 3 or 2), kernel
axes in the order of the coordinate columns ``x, y, z``, so slice
``weight[:, kx, ky, kz, :]`` is the offset ``(kx - 1, ky - 1, kz - 1)`` of a
submanifold conv and the child offset ``(kx, ky, kz)`` of a stride-2 conv.
Flattened, this is exactly the column order of the neighbour/down maps and the
child-offset order of the up map.  The spconv backend uses the same tensors.

Every convolution has an optional bias (``None`` while a BatchNorm follows it;
:func:`wsseg_training.model.fuse.fold_batchnorm` folds the BatchNorm in and
sets the bias).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _pad_zero_row(features: torch.Tensor) -> torch.Tensor:
    """(M, C) -> (M + 1, C): the appended zero row is what "no neighbour" indices (= M) read."""
    return torch.cat([features, features.new_zeros((1, features.shape[1]))], dim=0)


class _KernelConv(nn.Module):
    """Shared parameters of the map-based convolutions: weight ``[C_out, k, k, k, C_in]``, optional bias."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = False) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"channels must be >= 1, got in={in_channels} out={out_channels}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.kernel_volume = kernel_size**3
        self.weight = nn.Parameter(torch.empty(out_channels, kernel_size, kernel_size, kernel_size, in_channels))
        if bias:
            self.bias: nn.Parameter | None = nn.Parameter(torch.zeros(out_channels))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # He (fan-in) init for ReLU networks; fan-in = kernel volume * C_in.
        fan_in = self.kernel_volume * self.in_channels
        nn.init.normal_(self.weight, mean=0.0, std=math.sqrt(2.0 / fan_in))
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def _add_bias(self, out: torch.Tensor) -> torch.Tensor:
        return out if self.bias is None else out + self.bias

    def _gather_matmul(self, features: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """features (M_in, C_in), index (M_out, K) rows into features (M_in = zero row) -> (M_out, C_out)."""
        padded = _pad_zero_row(features)
        gathered = torch.index_select(padded, 0, index.reshape(-1))  # (M_out * K, C_in)
        gathered = gathered.reshape(index.shape[0], self.kernel_volume * self.in_channels)
        kernel = self.weight.reshape(self.out_channels, self.kernel_volume * self.in_channels)
        return self._add_bias(torch.matmul(gathered, kernel.t()))

    def _pairs_matmul(self, features: torch.Tensor, pairs: KernelPairs) -> torch.Tensor:
        """Same result as :meth:`_gather_matmul`, computing only the active (output, input) pairs."""
        kernel = self.weight.reshape(self.out_channels, self.kernel_volume, self.in_channels)
        # One gather and one scatter for all offsets; a matmul per offset in between.
        gathered = torch.index_select(features, 0, pairs.in_rows).split(pairs.counts)
        contributions = [
            torch.matmul(chunk, kernel[:, k, :].t()) for k, chunk in enumerate(gathered) if chunk.shape[0] > 0
        ]
        if not contributions:
            return self._add_bias(features.new_zeros((pairs.num_out, self.out_channels)))
        stacked = torch.cat(contributions, dim=0)  # float16 / bfloat16 under autocast
        out = stacked.new_zeros((pairs.num_out, self.out_channels))
        return self._add_bias(out.index_add_(0, pairs.out_rows, stacked))

    def _chunk_products(self, features: torch.Tensor, pairs: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Every pair's product ``W_offset x_in`` of the chunked form: (Nc * T, C_out).

        pairs: (Nc, T) input rows; offsets: (Nc,) kernel offset of each chunk, ``K`` = the zero slice.
        """
        kernel = self.weight.reshape(self.out_channels, self.kernel_volume, self.in_channels).permute(1, 2, 0)
        kernel = torch.cat([kernel, kernel.new_zeros((1, self.in_channels, self.out_channels))])  # (K + 1, C_in, C_out)
        gathered = torch.index_select(features, 0, pairs.reshape(-1)).reshape(
            pairs.shape[0], pairs.shape[1], self.in_channels)
        products = torch.matmul(gathered, torch.index_select(kernel, 0, offsets))  # (Nc, T, C_out)
        return products.reshape(-1, self.out_channels)

    def _chunked_matmul(self, features: torch.Tensor, tables: ChunkedTables) -> torch.Tensor:
        """Same result as :meth:`_gather_matmul` (up to float summation order), computing only present pairs."""
        products = self._chunk_products(features, tables.pairs, tables.offsets)
        buckets = [torch.index_select(products, 0, slots.reshape(-1)).reshape(
            slots.shape[0], slots.shape[1], self.out_channels).sum(dim=1) for slots in tables.slots]
        out = torch.index_select(torch.cat(buckets, dim=0), 0, tables.order)
        if tables.centre:
            centre = self.weight.reshape(self.out_channels, self.kernel_volume, self.in_channels)[
                :, self.kernel_volume // 2, :]
            out = out + torch.matmul(features, centre.t())
        return self._add_bias(out)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, bias={self.bias is not None}"


class ChunkedTables:
    """One convolution's tables in the chunked form of :mod:`wsseg.core.conv_tables` (the export path).

    pairs (Nc, T), offsets (Nc,), slots: per bucket (M_b, S_b), order (M_out,) -- int32 or int64 tensors;
    centre: the centre tap is computed densely (submanifold convolutions).
    """

    def __init__(self, pairs: torch.Tensor, offsets: torch.Tensor, slots: list[torch.Tensor], order: torch.Tensor,
                 centre: bool) -> None:
        self.pairs, self.offsets, self.slots, self.order, self.centre = pairs, offsets, slots, order, centre


class KernelPairs:
    """A kernel map (M_out, K) as its active (output row, input row) pairs, grouped by kernel offset.

    For training: convolving only the active pairs skips the zero rows that the
    gather form multiplies (surfaces fill ~8 of 27 neighbours), 2-4x faster on
    CPU.  Uses ``index_add_`` (a scatter), so it is not the export path.

    index: (M_out, K) int64, ``num_in`` marks "absent".  Attributes: ``out_rows``,
    ``in_rows`` (P,) int64 pairs ordered by offset; ``counts``: K ints, pairs per offset.
    """

    def __init__(self, index: torch.Tensor, num_in: int) -> None:
        self.num_out = int(index.shape[0])
        # Offset-major order: transpose so that nonzero walks offset by offset.
        offset_major = index.t()
        offset, out_rows = torch.nonzero(offset_major < num_in, as_tuple=True)
        self.out_rows = out_rows
        self.in_rows = offset_major[offset, out_rows]
        self.counts: list[int] = torch.bincount(offset, minlength=index.shape[1]).tolist()


class SubmanifoldConv3d(_KernelConv):
    """3x3x3 submanifold convolution: outputs only at the active input voxels.

    forward(features (M, C_in) float, neighbours (M, 27) int64) -> (M, C_out).
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size=3, bias=bias)

    def forward(self, features: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
        return self._gather_matmul(features, neighbours)

    def forward_pairs(self, features: torch.Tensor, pairs: KernelPairs) -> torch.Tensor:
        """Training fast path: ``pairs = KernelPairs(neighbours, M)``; equals ``forward``."""
        return self._pairs_matmul(features, pairs)

    def forward_chunked(self, features: torch.Tensor, tables: ChunkedTables) -> torch.Tensor:
        """Export path without Scatter or zero-row products; equals ``forward`` up to float rounding."""
        return self._chunked_matmul(features, tables)


class DownConv3d(_KernelConv):
    """2x2x2 stride-2 convolution from level l to level l+1.

    forward(features (M_l, C_in), down (M_{l+1}, 8) int64) -> (M_{l+1}, C_out).
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size=2, bias=bias)

    def forward(self, features: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
        return self._gather_matmul(features, down)

    def forward_pairs(self, features: torch.Tensor, pairs: KernelPairs) -> torch.Tensor:
        """Training fast path: ``pairs = KernelPairs(down, M_l)``; equals ``forward``."""
        return self._pairs_matmul(features, pairs)

    def forward_chunked(self, features: torch.Tensor, tables: ChunkedTables) -> torch.Tensor:
        """Export path (chunked tables of the down map); equals ``forward`` up to float rounding."""
        return self._chunked_matmul(features, tables)


class UpConv3d(_KernelConv):
    """Transposed 2x2x2 stride-2 convolution from level l+1 back to the voxels of level l.

    Every child voxel has exactly one parent, so the output is: parents times
    all 8 kernel slices -> (M_{l+1} * 8, C_out), row ``parent * 8 + k``,
    then gather the rows named by the up map.

    forward(features (M_{l+1}, C_in), up (M_l,) int64) -> (M_l, C_out).
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size=2, bias=bias)

    def forward(self, features: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        # [C_out, 8, C_in] -> [C_in, 8 * C_out], column = k * C_out + c_out.
        kernel = self.weight.reshape(self.out_channels, 8, self.in_channels).permute(2, 1, 0)
        kernel = kernel.reshape(self.in_channels, 8 * self.out_channels)
        all_children = torch.matmul(features, kernel).reshape(features.shape[0] * 8, self.out_channels)
        return self._add_bias(torch.index_select(all_children, 0, up))

    def forward_chunked(self, features: torch.Tensor, pairs: torch.Tensor, offsets: torch.Tensor,
                        rows: torch.Tensor) -> torch.Tensor:
        """Export path: one product per fine voxel (its parent times its child slot), no wasted slices.

        pairs (Nc, T) parent rows, offsets (Nc,) child slots, rows (M_l,) the product of each fine voxel.
        """
        return self._add_bias(torch.index_select(self._chunk_products(features, pairs, offsets), 0, rows))


class PointwiseLinear(nn.Module):
    """1x1x1 convolution (per-voxel linear map), weight ``[C_out, C_in]``, optional bias.

    forward(features (M, C_in)) -> (M, C_out).
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = False) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels))
        if bias:
            self.bias: nn.Parameter | None = nn.Parameter(torch.zeros(out_channels))
        else:
            self.register_parameter("bias", None)
        nn.init.normal_(self.weight, mean=0.0, std=math.sqrt(2.0 / in_channels))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out = torch.matmul(features, self.weight.t())
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, bias={self.bias is not None}"
