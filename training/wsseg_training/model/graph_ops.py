"""The exported graph's convolutions: gather-GEMM or chunked pairs per level (:mod:`wsseg.core.conv_tables`).

:class:`GraphOps` is a :class:`~wsseg_training.model.unet.ConvOps` over the inputs named by
:func:`wsseg.core.conv_tables.graph_input_names`; :class:`GraphUNet` wraps a (BatchNorm-folded)
:class:`~wsseg_training.model.unet.SparseUNet` with the graph's signature
``forward(features, *tables) -> logits``, which is what ``wsseg export`` traces.  Training keeps
the gather / compact forms of :class:`~wsseg_training.model.unet.MapOps`; the chunked form sums
the same products in another order, so its logits equal them up to float rounding (tested).
"""

from __future__ import annotations

import torch
from torch import nn

from wsseg.core.conv_tables import GraphSpec, graph_input_names
from wsseg_training.model.sparse_conv import ChunkedTables, DownConv3d, SubmanifoldConv3d, UpConv3d
from wsseg_training.model.unet import ConvOps, SparseUNet


class GraphOps(ConvOps):
    """Convolutions through the tables of a :class:`GraphSpec` (name -> tensor)."""

    def __init__(self, spec: GraphSpec, tables: dict[str, torch.Tensor]) -> None:
        missing = [n for n in graph_input_names(spec) if n not in tables]
        if missing:
            raise ValueError(f"graph inputs missing: {missing}")
        self.spec = spec
        self.tables = tables

    def _chunked(self, prefix: str, centre: bool) -> ChunkedTables:
        t = self.tables
        slots = [t[f"{prefix}_slots{b}"] for b in range(self.spec.num_buckets)]
        return ChunkedTables(t[f"{prefix}_pairs"], t[f"{prefix}_offsets"], slots, t[f"{prefix}_order"], centre)

    def subm(self, conv: SubmanifoldConv3d, x: torch.Tensor, level: int) -> torch.Tensor:
        if self.spec.chunked(level):
            return conv.forward_chunked(x, self._chunked(f"subm{level}", centre=True))
        return conv(x, self.tables[f"neighbours_{level}"])

    def down(self, conv: DownConv3d, x: torch.Tensor, level: int) -> torch.Tensor:
        if self.spec.chunked(level + 1):
            return conv.forward_chunked(x, self._chunked(f"down{level}", centre=False))
        return conv(x, self.tables[f"down_{level}"])

    def to_reference(self, x: torch.Tensor, level: int) -> torch.Tensor:
        return x  # the graph's tables keep every level's rows in the kernel maps' (reference) order

    def from_reference(self, x: torch.Tensor, level: int) -> torch.Tensor:
        return x

    def up(self, conv: UpConv3d, x: torch.Tensor, level: int) -> torch.Tensor:
        if self.spec.chunked(level + 1):
            t = self.tables
            return conv.forward_chunked(x, t[f"up{level}_pairs"], t[f"up{level}_offsets"], t[f"up{level}_rows"])
        return conv(x, self.tables[f"up_{level}"])


class GraphUNet(nn.Module):
    """``forward(features, *tables)`` in :func:`graph_input_names` order -> logits (M_0, num_classes)."""

    def __init__(self, model: SparseUNet, spec: GraphSpec) -> None:
        super().__init__()
        if spec.num_levels != model.num_levels:
            raise ValueError(f"graph spec has {spec.num_levels} levels, the model {model.num_levels}")
        self.model = model
        self.spec = spec
        self.names = graph_input_names(spec)

    def forward(self, features: torch.Tensor, *tables: torch.Tensor) -> torch.Tensor:
        if len(tables) != len(self.names):
            raise ValueError(f"expected {len(self.names)} tables ({self.names[:3]} ...), got {len(tables)}")
        ops = GraphOps(self.spec, dict(zip(self.names, tables, strict=True)))
        return self.model.run(features, ops).logits


def auto_graph_spec(channels: tuple[int, ...], min_chunked_channels: int = 32) -> GraphSpec:
    """The default graph of a network: chunked where a level is at least ``min_chunked_channels`` wide.

    Narrow levels are memory-bound (the gather of the zero rows costs little next to the pairs'
    bookkeeping); wide ones are FLOP-bound, where skipping the absent taps pays (``bench/backbone.py``).
    """
    return GraphSpec(num_levels=len(channels), chunked_levels=tuple(c >= min_chunked_channels for c in channels))
