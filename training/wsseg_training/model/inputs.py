"""Numpy network inputs (:class:`wsseg.core.preprocess.NetworkInput`) -> torch tensors."""

from __future__ import annotations

import numpy as np
import torch

from wsseg.core.preprocess import NetworkInput


def to_torch(
    net_input: NetworkInput, device: torch.device | str = "cpu", index_dtype: torch.dtype = torch.int64
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Features and kernel maps as tensors on ``device``.

    Returns features (M_0, C_in) float32 and the maps in
    :func:`wsseg.core.kernel_maps.map_input_names` order, ``index_dtype`` (int64 for training,
    int32 -- the tables' own dtype -- for export) — the arguments of ``SparseUNet.forward(features, *maps)``.
    """
    features = torch.from_numpy(np.ascontiguousarray(net_input.features, dtype=np.float32)).to(device)
    numpy_dtype = {torch.int64: np.int64, torch.int32: np.int32}[index_dtype]
    maps = [
        torch.from_numpy(np.ascontiguousarray(array, dtype=numpy_dtype)).to(device)
        for array in net_input.maps.as_inputs().values()
    ]
    return features, maps


def coords_to_torch(net_input: NetworkInput, device: torch.device | str = "cpu") -> torch.Tensor:
    """Level-0 voxel coordinates (M_0, 4) int32 ``[batch, x, y, z]`` (the spconv backend's input)."""
    return torch.from_numpy(np.ascontiguousarray(net_input.maps.coords[0], dtype=np.int32)).to(device)
