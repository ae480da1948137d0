"""The torch backbone: sparse convolutions over kernel maps, the residual sparse U-Net, profiles and
BatchNorm folding.  The spconv backend is :mod:`wsseg_training.model.spconv_backend`, not imported
here because spconv is an optional dependency."""

from wsseg_training.model.fuse import fold_batchnorm
from wsseg_training.model.inputs import coords_to_torch, to_torch
from wsseg_training.model.profiles import PROFILES, ModelProfile, get_profile, preprocess_config_for, unet_config_for
from wsseg_training.model.sparse_conv import DownConv3d, KernelPairs, PointwiseLinear, SubmanifoldConv3d, UpConv3d
from wsseg_training.model.unet import ConvOps, MapOps, SparseUNet, UNetConfig, UNetOutput, count_parameters

__all__ = [
    "PROFILES",
    "ConvOps",
    "DownConv3d",
    "KernelPairs",
    "MapOps",
    "ModelProfile",
    "PointwiseLinear",
    "SparseUNet",
    "SubmanifoldConv3d",
    "UNetConfig",
    "UNetOutput",
    "UpConv3d",
    "coords_to_torch",
    "count_parameters",
    "fold_batchnorm",
    "get_profile",
    "preprocess_config_for",
    "to_torch",
    "unet_config_for",
]
