"""Residual sparse 3D U-Net (SparseConvNet / MinkUNet family) over kernel maps.

Layout for ``L = len(channels)`` levels, ``c_l = channels[l]``, ``b_l = blocks[l]``::

    stem      subm 3x3x3 (C_in -> c_0) + BN + ReLU                              level 0
    encoder   b_l residual blocks at c_l                                        level l
    down      2x2x2 stride 2 (c_l -> c_{l+1}) + BN + ReLU                       l -> l+1
    bottom    the encoder blocks of level L-1
    up        transposed 2x2x2 stride 2 (c_{l+1} -> c_l) + BN + ReLU           l+1 -> l
    decoder   concat(up, encoder skip) (2 c_l) -> b_l residual blocks -> c_l    level l
    head      per-voxel linear c_0 -> num_classes (with bias)

A residual block is ``subm-BN-ReLU-subm-BN`` plus the identity (or a 1x1 linear +
BN when the width changes), then ReLU.  ``b_l = 0`` makes level ``l`` light: no encoder block (level 0:
the stem alone) and a decoder that fuses ``concat(up, skip)`` with a 1x1 linear + BN + ReLU
(2 c_l -> c_l) instead of 3x3x3 blocks (``decoder_blocks`` sets the decoder's count apart from the
encoder's); at level 0, where a LiDAR frame has the most voxels and the fewest neighbours per voxel, that
removes the costliest convolutions of the network.
Blocks end in ReLU, so no separate final BN/ReLU stands before the head; every BatchNorm directly
follows a convolution and folds into it at export (:mod:`wsseg_training.model.fuse`).  BatchNorm normalises
over the active voxels of the whole batch (``BatchNorm1d`` on ``(M, C)``).

The network structure is written once against :class:`ConvOps`; the kernel-map
ops here are the reference (and the ONNX graph), the spconv backend
(:mod:`wsseg_training.model.spconv_backend`) runs the same modules through spconv.

Features in the middle of the network: ``UNetOutput.encoder[l]`` / ``decoder[l]`` are level ``l``'s features
in the level's reference row order on both backends (:mod:`wsseg_training.model.levels`;
``DeviceBatch.level_rows(l)`` maps points to them).  :meth:`SparseUNet.decode_from` takes features that
replace ``decoder[l]`` and runs the rest of the decoder (levels l-1 .. 0, each sample's own encoder skip
connections) and the head.  DSP's "after the first up-sampling" is decoder level ``L - 2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from wsseg_training.model.sparse_conv import DownConv3d, KernelPairs, PointwiseLinear, SubmanifoldConv3d, UpConv3d


@dataclass(frozen=True)
class UNetConfig:
    """Shape of the U-Net.

    in_channels: per-voxel input features (``FeatureConfig.num_channels``).
    num_classes: output logits per voxel.
    channels: feature width of each level, finest first; ``num_levels = len(channels)``.
    blocks: residual blocks per level of the encoder (and of the decoder unless ``decoder_blocks`` is given),
        >= 0 (0: a light level, see the module docstring).
    decoder_blocks: residual blocks per decoder level when they differ from ``blocks`` (the coarsest level's
        entry is unused: the bottom has no decoder stage).
    """

    in_channels: int
    num_classes: int
    channels: tuple[int, ...]
    blocks: tuple[int, ...]
    decoder_blocks: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.in_channels < 1 or self.num_classes < 1:
            raise ValueError(
                f"UNetConfig: in_channels={self.in_channels} and num_classes={self.num_classes} must be >= 1"
            )
        if not self.channels or len(self.channels) != len(self.blocks):
            raise ValueError(
                f"UNetConfig: channels {self.channels} and blocks {self.blocks} must be non-empty and of equal length"
            )
        if min(self.channels) < 1 or min(self.blocks) < 0:
            raise ValueError(f"UNetConfig: channels {self.channels} must all be >= 1 and blocks {self.blocks} >= 0")
        decoder = self.decoder_blocks
        if decoder is not None and (len(decoder) != len(self.channels) or min(decoder) < 0):
            raise ValueError(f"UNetConfig: decoder_blocks {decoder} must have one entry >= 0 per level "
                             f"({len(self.channels)})")

    @property
    def decoder_stage_blocks(self) -> tuple[int, ...]:
        """Residual blocks of each decoder level (``decoder_blocks`` or ``blocks``)."""
        return self.blocks if self.decoder_blocks is None else self.decoder_blocks

    @property
    def num_levels(self) -> int:
        return len(self.channels)

    def to_dict(self) -> dict:
        return {
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "channels": list(self.channels),
            "blocks": list(self.blocks),
        } | ({} if self.decoder_blocks is None else {"decoder_blocks": list(self.decoder_blocks)})

    @classmethod
    def from_dict(cls, data: dict) -> UNetConfig:
        return cls(
            in_channels=int(data["in_channels"]),
            num_classes=int(data["num_classes"]),
            channels=tuple(int(c) for c in data["channels"]),
            blocks=tuple(int(b) for b in data["blocks"]),
            decoder_blocks=tuple(int(b) for b in data["decoder_blocks"]) if data.get("decoder_blocks") else None,
        )


@dataclass
class UNetOutput:
    """Everything one forward pass produces (rows of level l in its reference order, see the module docstring).

    logits: (M_0, num_classes).
    encoder: per level l, (M_l, c_l), the encoder output (level L-1 = the bottom).
    decoder: per level l, (M_l, c_l), the decoder output; ``decoder[L-1]`` is the bottom.
    point_features: (M_0, c_0) = ``decoder[0]``, the features the head classifies.
    state: what :meth:`SparseUNet.decode_from` needs to run the decoder again (the pass's convolution ops
        and skip features in the backend's own row order); None for outputs not made by ``run``.
    """

    logits: torch.Tensor
    encoder: list[torch.Tensor]
    decoder: list[torch.Tensor]
    point_features: torch.Tensor
    state: DecoderState | None = None


@dataclass(frozen=True)
class DecoderState:
    """ops: the forward pass's :class:`ConvOps`.  skips: encoder features per level, in the ops' row order."""

    ops: ConvOps
    skips: list[torch.Tensor]


class ConvOps(Protocol):
    """How the convolutions of one forward pass reach their neighbourhoods."""

    def subm(self, conv: SubmanifoldConv3d, x: torch.Tensor, level: int) -> torch.Tensor:
        """(M_level, C_in) -> (M_level, C_out)."""
        ...

    def down(self, conv: DownConv3d, x: torch.Tensor, level: int) -> torch.Tensor:
        """(M_level, C_in) -> (M_{level+1}, C_out)."""
        ...

    def up(self, conv: UpConv3d, x: torch.Tensor, level: int) -> torch.Tensor:
        """(M_{level+1}, C_in) -> (M_level, C_out)."""
        ...

    def to_reference(self, x: torch.Tensor, level: int) -> torch.Tensor:
        """Rows of ``level`` from the ops' own order to the reference order.

        The default (for ops over the kernel maps' rows, which are the reference order) is the identity;
        subclass :class:`ConvOps` to inherit it.  The spconv backend maps its own coarse-level order.
        """
        return x

    def from_reference(self, x: torch.Tensor, level: int) -> torch.Tensor:
        """The inverse of :meth:`to_reference` (identity by default)."""
        return x


class MapOps(ConvOps):
    """The reference :class:`ConvOps`: gather through the kernel maps of :mod:`wsseg.core.kernel_maps`.

    ``compact=True`` convolves only the active voxel pairs (:class:`KernelPairs`,
    built once per level and pass): same result, 2-3x faster training on CPU,
    but it scatters (``index_add``), so export and inference use the default.
    """

    def __init__(self, maps: Sequence[torch.Tensor], num_levels: int, compact: bool = False) -> None:
        expected = 3 * num_levels - 2
        if len(maps) != expected:
            raise ValueError(
                f"a {num_levels}-level U-Net takes {expected} kernel maps "
                f"(neighbours_0..{num_levels - 1}, down_*, up_*), got {len(maps)}"
            )
        self.neighbours = maps[:num_levels]
        self.downs = maps[num_levels : 2 * num_levels - 1]
        self.ups = maps[2 * num_levels - 1 :]
        self.compact = compact
        self._pairs: dict[tuple[str, int], KernelPairs] = {}

    def _pairs_of(self, kind: str, level: int) -> KernelPairs:
        key = (kind, level)
        if key not in self._pairs:
            index = self.neighbours[level] if kind == "subm" else self.downs[level]
            self._pairs[key] = KernelPairs(index, num_in=int(self.neighbours[level].shape[0]))
        return self._pairs[key]

    def subm(self, conv: SubmanifoldConv3d, x: torch.Tensor, level: int) -> torch.Tensor:
        if self.compact:
            return conv.forward_pairs(x, self._pairs_of("subm", level))
        return conv(x, self.neighbours[level])

    def down(self, conv: DownConv3d, x: torch.Tensor, level: int) -> torch.Tensor:
        if self.compact:
            return conv.forward_pairs(x, self._pairs_of("down", level))
        return conv(x, self.downs[level])

    def up(self, conv: UpConv3d, x: torch.Tensor, level: int) -> torch.Tensor:
        return conv(x, self.ups[level])


class ConvNormReLU(nn.Module):
    """One convolution (``kind`` = "subm", "down" or "up") + BatchNorm + ReLU."""

    FOLD_PAIRS = (("conv", "norm"),)

    def __init__(self, kind: str, in_channels: int, out_channels: int) -> None:
        super().__init__()
        conv_types = {"subm": SubmanifoldConv3d, "down": DownConv3d, "up": UpConv3d}
        if kind not in conv_types:
            raise ValueError(f"unknown convolution kind {kind!r}; known: {list(conv_types)}")
        self.kind = kind
        self.conv = conv_types[kind](in_channels, out_channels)
        self.norm: nn.Module = nn.BatchNorm1d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor, ops: ConvOps, level: int) -> torch.Tensor:
        apply = {"subm": ops.subm, "down": ops.down, "up": ops.up}[self.kind]
        return self.relu(self.norm(apply(self.conv, x, level)))


class ResidualBlock(nn.Module):
    """``relu(BN(subm(relu(BN(subm(x))))) + shortcut(x))``; shortcut = identity or 1x1 linear + BN."""

    FOLD_PAIRS = (("conv1", "norm1"), ("conv2", "norm2"), ("shortcut", "shortcut_norm"))

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = SubmanifoldConv3d(in_channels, out_channels)
        self.norm1: nn.Module = nn.BatchNorm1d(out_channels)
        self.conv2 = SubmanifoldConv3d(out_channels, out_channels)
        self.norm2: nn.Module = nn.BatchNorm1d(out_channels)
        self.relu = nn.ReLU()
        if in_channels == out_channels:
            self.shortcut: PointwiseLinear | None = None
            self.shortcut_norm: nn.Module = nn.Identity()
        else:
            self.shortcut = PointwiseLinear(in_channels, out_channels)
            self.shortcut_norm = nn.BatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor, ops: ConvOps, level: int) -> torch.Tensor:
        out = self.relu(self.norm1(ops.subm(self.conv1, x, level)))
        out = self.norm2(ops.subm(self.conv2, out, level))
        identity = x if self.shortcut is None else self.shortcut_norm(self.shortcut(x))
        return self.relu(out + identity)


class PointwiseNormReLU(nn.Module):
    """``relu(BN(linear(x)))`` per voxel: the decoder of a light level (no neighbourhood)."""

    FOLD_PAIRS = (("linear", "norm"),)

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.linear = PointwiseLinear(in_channels, out_channels)
        self.norm: nn.Module = nn.BatchNorm1d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor, ops: ConvOps, level: int) -> torch.Tensor:
        return self.relu(self.norm(self.linear(x)))


def _stage(in_channels: int, out_channels: int, count: int) -> nn.ModuleList:
    """``count`` residual blocks; none when the width stays, a 1x1 fuse when it changes and ``count = 0``."""
    if count == 0:
        return nn.ModuleList([] if in_channels == out_channels else [PointwiseNormReLU(in_channels, out_channels)])
    return nn.ModuleList(
        ResidualBlock(in_channels if i == 0 else out_channels, out_channels) for i in range(count)
    )


class SparseUNet(nn.Module):
    """The backbone + segmentation head; see the module docstring for the layout.

    ``forward(features, *maps)`` is the ONNX signature: features (M_0, C_in)
    float32, then the kernel maps in :func:`wsseg.core.kernel_maps.map_input_names`
    order (neighbours_0..L-1, down_0..L-2, up_0..L-2, int64); returns logits
    (M_0, num_classes).
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        ch, blocks = config.channels, config.blocks
        levels = config.num_levels
        self.stem = ConvNormReLU("subm", config.in_channels, ch[0])
        self.encoders = nn.ModuleList(_stage(ch[level], ch[level], blocks[level]) for level in range(levels))
        self.downs = nn.ModuleList(ConvNormReLU("down", ch[level], ch[level + 1]) for level in range(levels - 1))
        self.ups = nn.ModuleList(ConvNormReLU("up", ch[level + 1], ch[level]) for level in range(levels - 1))
        decoder_blocks = config.decoder_stage_blocks
        self.decoders = nn.ModuleList(_stage(2 * ch[level], ch[level], decoder_blocks[level])
                                      for level in range(levels - 1))
        self.head = PointwiseLinear(ch[0], config.num_classes, bias=True)

    @property
    def num_levels(self) -> int:
        return self.config.num_levels

    @property
    def feature_channels(self) -> int:
        """Width of ``point_features`` (= channels[0])."""
        return self.config.channels[0]

    def forward(self, features: torch.Tensor, *maps: torch.Tensor) -> torch.Tensor:
        return self.forward_features(features, maps).logits

    def forward_features(
        self, features: torch.Tensor, maps: Sequence[torch.Tensor], compact: bool = False
    ) -> UNetOutput:
        """Run over kernel maps (``map_input_names`` order); returns logits and per-level features.

        compact: convolve only active voxel pairs (faster training, same result; see :class:`MapOps`).
        """
        return self.run(features, MapOps(maps, self.num_levels, compact=compact))

    def run(self, features: torch.Tensor, ops: ConvOps) -> UNetOutput:
        """The network over any :class:`ConvOps` (kernel maps or spconv)."""
        if features.ndim != 2 or features.shape[1] != self.config.in_channels:
            raise ValueError(
                f"features must have shape (M, {self.config.in_channels}), got {tuple(features.shape)}"
            )
        levels = self.num_levels
        x = self.stem(features, ops, 0)
        encoder: list[torch.Tensor] = []
        for level in range(levels):
            if level > 0:
                x = self.downs[level - 1](x, ops, level - 1)
            for block in self.encoders[level]:
                x = block(x, ops, level)
            encoder.append(x)
        decoder = self._decode(x, levels - 1, encoder, ops)
        return UNetOutput(
            logits=self.head(decoder[0]),
            encoder=[ops.to_reference(e, level) for level, e in enumerate(encoder)],
            decoder=[ops.to_reference(d, level) for level, d in enumerate(decoder)],
            point_features=decoder[0],
            state=DecoderState(ops=ops, skips=encoder),
        )

    def decode_from(self, output: UNetOutput, level: int, features: torch.Tensor) -> UNetOutput:
        """Replace ``output.decoder[level]`` by ``features`` and run the rest of the decoder and the head.

        output: a forward pass of this network (same batch).  features: (M_level, channels[level]) in the
        level's reference row order.  Returns a new output: logits and ``decoder[0..level]`` from
        ``features``; ``encoder`` and the coarser ``decoder`` levels are those of ``output``.  The skip
        connections are the batch's own encoder features, so rows of sample b decode with sample b's skips.
        """
        if output.state is None:
            raise ValueError("decode_from needs an output of SparseUNet.run / forward_features (it has no state)")
        if not 0 <= level < self.num_levels:
            raise ValueError(f"decoder level {level} is outside 0..{self.num_levels - 1}")
        expected = (output.decoder[level].shape[0], self.config.channels[level])
        if tuple(features.shape) != expected:
            raise ValueError(f"features for decoder level {level} must have shape {expected}, "
                             f"got {tuple(features.shape)}")
        ops = output.state.ops
        decoder = self._decode(ops.from_reference(features, level), level, output.state.skips, ops)
        return UNetOutput(
            logits=self.head(decoder[0]),
            encoder=output.encoder,
            decoder=[ops.to_reference(d, lv) for lv, d in enumerate(decoder[:level])] + [features]
            + output.decoder[level + 1:],
            point_features=decoder[0],
            state=output.state,
        )

    def _decode(self, x: torch.Tensor, level: int, skips: list[torch.Tensor], ops: ConvOps) -> list[torch.Tensor]:
        """Decoder outputs of levels 0..``level`` (``x`` = level ``level``'s), in the ops' row order."""
        decoder: list[torch.Tensor] = [x]
        for lv in range(level - 1, -1, -1):
            x = self.ups[lv](x, ops, lv)
            x = torch.cat([x, skips[lv]], dim=1)
            for block in self.decoders[lv]:
                x = block(x, ops, lv)
            decoder.insert(0, x)
        return decoder


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
