"""Cloud -> network inputs: the single preprocessing path of training, export and the robot.

``prepare_cloud`` = voxelize + aggregate features + build kernel maps.  Every
consumer (training data loader, export check, ``Segmenter``, ROS node) calls it,
so the network always sees identically prepared inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wsseg.core.features import FeatureConfig, voxel_features
from wsseg.core.kernel_maps import KernelMaps, build_kernel_maps
from wsseg.core.voxelize import VoxelGrid, voxelize


@dataclass(frozen=True)
class PreprocessConfig:
    """Voxel size, input features and U-Net depth: everything that shapes the inputs.

    voxel_size_m: voxel edge, metres.  num_levels: U-Net levels (kernel maps built per level).
    """

    voxel_size_m: float = 0.05
    num_levels: int = 4
    features: FeatureConfig = field(default_factory=FeatureConfig)

    def __post_init__(self) -> None:
        if not self.voxel_size_m > 0:
            raise ValueError(f"voxel_size_m must be > 0, got {self.voxel_size_m}")
        if not 1 <= self.num_levels <= 8:
            raise ValueError(f"num_levels must be in [1, 8], got {self.num_levels}")

    def to_dict(self) -> dict:
        return {"voxel_size_m": self.voxel_size_m, "num_levels": self.num_levels, "features": self.features.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> PreprocessConfig:
        return cls(
            voxel_size_m=float(data["voxel_size_m"]),
            num_levels=int(data["num_levels"]),
            features=FeatureConfig.from_dict(data.get("features", {})),
        )


@dataclass(frozen=True)
class NetworkInput:
    """What the network consumes for one cloud (or one batch of clouds).

    grid: the level-0 voxel grid (``grid.inverse`` maps points to voxels).
    features: (M_0, C_in) float32 per-voxel input features.
    maps: kernel maps of every level.
    """

    grid: VoxelGrid
    features: np.ndarray
    maps: KernelMaps

    def as_inputs(self) -> dict[str, np.ndarray]:
        """Named model inputs: ``features`` plus the kernel maps (see ``model_input_names``)."""
        return {"features": self.features, **self.maps.as_inputs()}


def prepare_cloud(
    config: PreprocessConfig,
    xyz: np.ndarray,
    rgb: np.ndarray | None = None,
    intensity: np.ndarray | None = None,
    batch: np.ndarray | None = None,
) -> NetworkInput:
    """Voxelize a cloud (or a batch of clouds) and build every network input.

    xyz: (N, 3) float32, metres, finite.  rgb: (N, 3) uint8.  intensity: (N,) float.
    batch: (N,) int scene index for batched training (default: one scene).
    """
    xyz = np.asarray(xyz, dtype=np.float32)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or xyz.shape[0] == 0:
        raise ValueError(f"xyz must have shape (N, 3) with N > 0, got {xyz.shape}")
    for name, values, width in (("rgb", rgb, 3), ("intensity", intensity, 1)):
        if values is not None and (np.shape(values)[0] != xyz.shape[0] or np.size(values) != xyz.shape[0] * width):
            raise ValueError(f"{name} has shape {np.shape(values)}, expected {xyz.shape[0]} points")
    grid = voxelize(xyz, config.voxel_size_m, batch=batch)
    maps = build_kernel_maps(grid.coords, config.num_levels)
    features = voxel_features(grid, config.features, xyz, rgb=rgb, intensity=intensity,
                              neighbours=maps.neighbours[0])
    return NetworkInput(grid=grid, features=features, maps=maps)
