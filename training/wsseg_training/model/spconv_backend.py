"""spconv backend: the same :class:`SparseUNet` modules and parameters, convolved by ``spconv.pytorch``.

Use it for fast GPU training; the kernel-map path (:class:`MapOps`) stays the
reference and the exported graph.  ``tests/training/test_spconv_parity.py``
checks both give the same logits.

What was verified empirically (spconv 2.3.8, ``tests/training/test_spconv_parity.py``):

* Weight layout and kernel orientation agree with ours, so parameters are used
  as they are (no flip, no permute): spconv weights are ``[C_out, k, k, k, C_in]``
  (KRSC) with the kernel axes in the order of the index columns 1..3, slice
  ``[kx, ky, kz]`` of ``SubMConv3d`` reads the input at ``x + (kx - 1, ky - 1, kz - 1)``,
  ``SparseConv3d(k=2, s=2)`` reads the child ``2 p + (kx, ky, kz)``, and
  ``SparseInverseConv3d`` (reusing the down conv's ``indice_key``) writes that
  child, which is exactly our ``UpConv3d``.  The inverse conv returns the voxels
  of the level it goes back to, in their original row order.
* spconv silently misreads an indices tensor that is not C-contiguous (e.g.
  ``torch.from_numpy(np.argwhere(...))``, which is Fortran-ordered): the
  backend makes them contiguous.
* spconv's coarse levels have their own row order (not sorted); level 0 (logits,
  point features) keeps the input order.  :class:`SpconvOps` maps every coarse
  level onto the reference order (rows sorted by ``[batch, x, y, z]``, see
  :mod:`wsseg_training.model.levels`) by sorting the level's spconv coordinates:
  the per-scene shift below moves a scene by a multiple of ``2 ** l`` voxels of
  level l, so it keeps each scene's order, and the batch index sorts first.
  ``encoder``/``decoder`` features therefore equal the reference's row for row.
* spconv's CPU build races with more than one torch thread: on a ~23k-voxel
  cloud 7-62 rows of a single submanifold conv (about 1 in 400-3000) come out
  wrong, different rows on every run, and the errors spread through the U-Net.
  With ``torch.set_num_threads(1)`` it is deterministic and equals the reference.
* spconv's CPU build has no backward with a CPU-only torch (its fallback GEMM
  path calls ``torch.cuda.current_stream``).  So on CPU the backend is for
  inference/parity checks only; train on CPU with the kernel-map path
  (``compact=True``), and use this backend for GPU training (spconv-cuXXX).

spconv needs non-negative coordinates inside ``spatial_shape``; wsseg
coordinates may be negative (world frames).  Each scene is shifted by its
minimum rounded down to a multiple of ``2 ** (num_levels - 1)``, so every
stride-2 parent/child grouping, and so the result, is unchanged; the spatial
shape is rounded up to that multiple too so that no coarse voxel falls outside.
"""

from __future__ import annotations

import torch
from torch import nn

from wsseg_training.model.sparse_conv import DownConv3d, SubmanifoldConv3d, UpConv3d
from wsseg_training.model.unet import ConvOps, SparseUNet, UNetOutput

try:
    import spconv.pytorch as spconv
except ImportError:  # spconv is an optional dependency (pip install wsseg-training[spconv])
    spconv = None


def spconv_available() -> bool:
    """Whether ``spconv.pytorch`` imports in this environment."""
    return spconv is not None


def shift_to_non_negative(coords: torch.Tensor, num_levels: int) -> tuple[torch.Tensor, list[int]]:
    """Shift every scene of a batch into the non-negative octant, keeping stride-2 groupings.

    coords: (M, 4) int ``[batch, x, y, z]``.  Returns the shifted (M, 4) int32
    C-contiguous coordinates and the spatial shape ``[sx, sy, sz]`` (each a
    multiple of ``2 ** (num_levels - 1)``).
    """
    if coords.ndim != 2 or coords.shape[1] != 4 or coords.shape[0] == 0:
        raise ValueError(f"coords must have shape (M, 4) with M > 0, got {tuple(coords.shape)}")
    step = 2 ** (num_levels - 1)
    coords = coords.to(torch.int64)
    batch = coords[:, 0]
    num_scenes = int(batch.max().item()) + 1
    xyz = coords[:, 1:]
    minimum = torch.full((num_scenes, 3), torch.iinfo(torch.int64).max, dtype=torch.int64, device=coords.device)
    minimum = minimum.scatter_reduce(0, batch[:, None].expand(-1, 3), xyz, reduce="amin", include_self=True)
    # Absent scene indices keep the int64 max; they shift nothing.
    minimum = torch.where(minimum == torch.iinfo(torch.int64).max, torch.zeros_like(minimum), minimum)
    origin = torch.div(minimum, step, rounding_mode="floor") * step
    shifted = xyz - origin[batch]
    extent = shifted.max(dim=0).values + 1
    spatial_shape = [int((int(e) + step - 1) // step * step) for e in extent.tolist()]
    out = torch.cat([batch[:, None], shifted], dim=1).to(torch.int32).contiguous()
    return out, spatial_shape


class SpconvOps(ConvOps):
    """:class:`wsseg_training.model.unet.ConvOps` over spconv, for one forward pass.

    The spconv modules are parameter-less shells: each call hands them the
    weight (and bias) of our convolution, so gradients reach our parameters.
    """

    def __init__(self, coords: torch.Tensor, num_levels: int, shells: dict[int, nn.Module]) -> None:
        indices, spatial_shape = shift_to_non_negative(coords, num_levels)
        self.batch_size = int(indices[:, 0].max().item()) + 1
        self.indices: dict[int, torch.Tensor] = {0: indices}
        self.spatial_shape: dict[int, list[int]] = {0: spatial_shape}
        self.indice_dict: dict = {}
        self._shells = shells
        self._order: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def _reference_order(self, level: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(order, inverse): spconv row ``order[i]`` is reference row i; ``inverse[j]`` is spconv row j's."""
        if level not in self._order:
            idx = self.indices[level].to(torch.int64)
            sx, sy, sz = self.spatial_shape[level]
            key = ((idx[:, 0] * sx + idx[:, 1]) * sy + idx[:, 2]) * sz + idx[:, 3]
            order = torch.argsort(key)
            inverse = torch.empty_like(order)
            inverse[order] = torch.arange(order.shape[0], device=order.device)
            self._order[level] = (order, inverse)
        return self._order[level]

    def to_reference(self, x: torch.Tensor, level: int) -> torch.Tensor:
        if level == 0:  # spconv keeps the input rows
            return x
        return x[self._reference_order(level)[0]]

    def from_reference(self, x: torch.Tensor, level: int) -> torch.Tensor:
        if level == 0:
            return x
        return x[self._reference_order(level)[1]]

    def _tensor(self, x: torch.Tensor, level: int):  # -> spconv.SparseConvTensor
        return spconv.SparseConvTensor(
            x.contiguous(),
            self.indices[level],
            self.spatial_shape[level],
            self.batch_size,
            indice_dict=self.indice_dict,
        )

    def _run(self, conv: nn.Module, x: torch.Tensor, level: int, key_level: int):  # -> spconv.SparseConvTensor
        """Apply ``conv`` to features ``x`` of ``level``; ``key_level`` names its indice_key."""
        shell = self._shells.get(id(conv))
        if shell is None:  # a convolution always runs at the same level, so its shell is made once
            shell = self._shells[id(conv)] = _make_shell(conv, key_level)
        shell.weight = conv.weight
        shell.bias = conv.bias
        out = shell(self._tensor(x, level))
        self.indice_dict.update(out.indice_dict)
        return out

    def subm(self, conv: SubmanifoldConv3d, x: torch.Tensor, level: int) -> torch.Tensor:
        return self._run(conv, x, level, level).features

    def down(self, conv: DownConv3d, x: torch.Tensor, level: int) -> torch.Tensor:
        out = self._run(conv, x, level, level)
        self.indices[level + 1] = out.indices
        self.spatial_shape[level + 1] = list(out.spatial_shape)
        return out.features

    def up(self, conv: UpConv3d, x: torch.Tensor, level: int) -> torch.Tensor:
        out = self._run(conv, x, level + 1, level)
        if out.indices.shape[0] != self.indices[level].shape[0]:
            raise RuntimeError(f"spconv inverse conv to level {level} returned {out.indices.shape[0]} voxels, "
                               f"expected {self.indices[level].shape[0]}")
        return out.features


def _make_shell(conv: nn.Module, level: int) -> nn.Module:
    """A spconv module with the geometry of ``conv``; ``level``: the (finer) level of its indice_key."""
    if isinstance(conv, SubmanifoldConv3d):
        shell = spconv.SubMConv3d(conv.in_channels, conv.out_channels, 3, bias=False, indice_key=f"subm{level}")
    elif isinstance(conv, DownConv3d):
        shell = spconv.SparseConv3d(
            conv.in_channels, conv.out_channels, 2, stride=2, bias=False, indice_key=f"down{level}"
        )
    elif isinstance(conv, UpConv3d):
        shell = spconv.SparseInverseConv3d(
            conv.in_channels, conv.out_channels, 2, bias=False, indice_key=f"down{level}"
        )
    else:
        raise TypeError(f"no spconv counterpart for {type(conv).__name__}")
    shell.register_parameter("weight", None)  # our parameter is handed over at every call
    return shell


class SpconvUNet(nn.Module):
    """Runs ``unet`` (same modules, same parameters) through spconv.

    forward(coords (M, 4) int32 ``[batch, x, y, z]``, features (M, C_in) float32)
    -> logits (M, num_classes), rows in the order of ``coords``.  ``coords``
    must be unique; any row order works (spconv sorts nothing at level 0).
    """

    def __init__(self, unet: SparseUNet) -> None:
        super().__init__()
        if spconv is None:
            raise ImportError("the spconv backend needs spconv: pip install 'spconv-cu121' (GPU) or 'spconv' (CPU)")
        self.unet = unet
        # Kept outside the module tree: the shells own no parameters and must not appear in state_dict.
        self._shells: dict[int, nn.Module] = {}

    def forward(self, coords: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return self.forward_features(coords, features).logits

    def forward_features(self, coords: torch.Tensor, features: torch.Tensor) -> UNetOutput:
        """Like :meth:`SparseUNet.forward_features`, rows of every level in the reference order."""
        if coords.shape[0] != features.shape[0]:
            raise ValueError(f"coords has {coords.shape[0]} rows, features {features.shape[0]}")
        ops = SpconvOps(coords, self.unet.num_levels, self._shells)
        return self.unet.run(features, ops)
