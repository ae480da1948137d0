"""BatchNorm folding for export: every BatchNorm becomes part of the convolution before it.

For a convolution ``y = W x + b`` followed by an eval-mode BatchNorm
``z = gamma * (y - mean) / sqrt(var + eps) + beta``, the folded convolution is
``W' = s W`` (scaled along C_out, the first weight axis) and
``b' = s (b - mean) + beta`` with ``s = gamma / sqrt(var + eps)``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from wsseg_training.model.unet import SparseUNet


@torch.no_grad()
def _fold_pair(conv: nn.Module, norm: nn.BatchNorm1d) -> None:
    weight = conv.weight
    if not isinstance(weight, torch.Tensor) or norm.running_mean is None or norm.running_var is None:
        raise ValueError(f"cannot fold {type(norm).__name__} without running statistics into {type(conv).__name__}")
    scale = norm.running_var.add(norm.eps).rsqrt()
    if norm.weight is not None:
        scale = scale * norm.weight
    bias = conv.bias if isinstance(conv.bias, torch.Tensor) else torch.zeros_like(norm.running_mean)
    new_bias = (bias - norm.running_mean) * scale
    if norm.bias is not None:
        new_bias = new_bias + norm.bias
    weight.mul_(scale.reshape(-1, *([1] * (weight.ndim - 1))))
    conv.bias = nn.Parameter(new_bias.to(weight.dtype))


def fold_batchnorm(model: SparseUNet) -> SparseUNet:
    """An eval-mode copy of ``model`` with every BatchNorm folded into its convolution.

    The copy has the same class and ``forward`` signature (BatchNorms become
    ``nn.Identity``), so it exports with the same inputs; its outputs equal
    ``model.eval()``'s up to float rounding.  ``model`` itself is not changed.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        for conv_name, norm_name in getattr(module, "FOLD_PAIRS", ()):
            conv, norm = getattr(module, conv_name), getattr(module, norm_name)
            if conv is None or isinstance(norm, nn.Identity):
                continue
            if not isinstance(norm, nn.BatchNorm1d):
                raise ValueError(f"{type(module).__name__}.{norm_name} is {type(norm).__name__}, expected BatchNorm1d")
            _fold_pair(conv, norm)
            setattr(module, norm_name, nn.Identity())
    return folded
