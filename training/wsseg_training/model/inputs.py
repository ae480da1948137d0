"""Numpy network inputs (:class:`wsseg.core.preprocess.NetworkInput`) -> torch tensors."""

from __future__ import annotations

import numpy as np
import torch

from wsseg.core.preprocess import NetworkInput


def to_torch(net_input: NetworkInput, device: torch.device | str = "cpu") -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Features and kernel maps as tensors on ``device``.

    Returns features (M_0, C_in) float32 and the maps in
    :func:`wsseg.core.kernel_maps.map_input_names` order, int64 — the
    arguments of ``SparseUNet.forward(features, *maps)``.
    """
    features = torch.from_numpy(np.ascontiguousarray(net_input.features, dtype=np.float32)).to(device)
    maps = [
        torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64)).to(device)
        for array in net_input.maps.as_inputs().values()
    ]
    return features, maps


def coords_to_torch(net_input: NetworkInput, device: torch.device | str = "cpu") -> torch.Tensor:
    """Level-0 voxel coordinates (M_0, 4) int32 ``[batch, x, y, z]`` (the spconv backend's input)."""
    return torch.from_numpy(np.ascontiguousarray(net_input.maps.coords[0], dtype=np.int32)).to(device)
