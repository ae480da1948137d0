"""Cloud -> network inputs: the single preprocessing path of training, export and the robot.

``prepare_cloud`` = voxelize + aggregate features + build kernel maps.  Every
consumer (training data loader, export check, ``Segmenter``, ROS node) calls it,
so the network always sees identically prepared inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wsseg.core import backend, geometry
from wsseg.core.features import SUPPORT_FEATURES, FeatureConfig, support_planes_of, voxel_features
from wsseg.core.kernel_maps import KernelMaps, build_kernel_maps, neighbour_map
from wsseg.core.refine import SupportRefine, refine_labels
from wsseg.core.voxelize import VoxelGrid, voxelize


@dataclass(frozen=True)
class PreprocessConfig:
    """Voxel size, input features and U-Net depth: everything that shapes the inputs; and how voxel labels
    go back to the points.

    voxel_size_m: voxel edge, metres.  num_levels: U-Net levels (kernel maps built per level).
    refine: the support-plane refinement of point labels at devoxelization (:mod:`wsseg.core.refine`);
    None = every point takes its voxel's label.
    """

    voxel_size_m: float = 0.05
    num_levels: int = 4
    features: FeatureConfig = field(default_factory=FeatureConfig)
    refine: SupportRefine | None = None

    def __post_init__(self) -> None:
        if not self.voxel_size_m > 0:
            raise ValueError(f"voxel_size_m must be > 0, got {self.voxel_size_m}")
        if not 1 <= self.num_levels <= 8:
            raise ValueError(f"num_levels must be in [1, 8], got {self.num_levels}")

    @property
    def needs_planes(self) -> bool:
        """Whether preprocessing fits the support plane (a support feature or the refinement uses it)."""
        return self.refine is not None or any(n in self.features.names for n in SUPPORT_FEATURES)

    def to_dict(self) -> dict:
        data = {"voxel_size_m": self.voxel_size_m, "num_levels": self.num_levels, "features": self.features.to_dict()}
        if self.refine is not None:  # omitted when off: bundles without it read as before
            data["refine"] = self.refine.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> PreprocessConfig:
        return cls(
            voxel_size_m=float(data["voxel_size_m"]),
            num_levels=int(data["num_levels"]),
            features=FeatureConfig.from_dict(data.get("features", {})),
            refine=SupportRefine.from_dict(data.get("refine")),
        )


@dataclass(frozen=True)
class NetworkInput:
    """What the network consumes for one cloud (or one batch of clouds).

    grid: the level-0 voxel grid (``grid.inverse`` maps points to voxels).
    features: (M_0, C_in) float32 per-voxel input features.
    maps: kernel maps of every level.
    planes: the support plane of every scene (batch order) when the config needs it
    (``PreprocessConfig.needs_planes``), else None.
    """

    grid: VoxelGrid
    features: np.ndarray
    maps: KernelMaps
    planes: list[geometry.Plane] | None = None

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
    if not config.features.needs_neighbours:  # features and kernel maps at once (preprocessing threads > 1)
        pending = backend.submit(_features, config, grid, xyz, rgb, intensity, None)
        maps = build_kernel_maps(grid.coords, config.num_levels)
        features, planes = pending.take()
    else:
        maps = build_kernel_maps(grid.coords, config.num_levels)
        features, planes = _features(config, grid, xyz, rgb, intensity, maps.neighbours[0])
    return NetworkInput(grid=grid, features=features, maps=maps, planes=planes)


def _features(config: PreprocessConfig, grid: VoxelGrid, xyz: np.ndarray, rgb: np.ndarray | None,
              intensity: np.ndarray | None, neighbours: np.ndarray | None
              ) -> tuple[np.ndarray, list[geometry.Plane] | None]:
    """(features (M_0, C_in) float32, support planes or None) of a voxelized cloud; ``neighbours``: the level-0
    map, or None when the features need none."""
    centroids = planes = None
    if config.needs_planes:
        centroids = geometry.voxel_centroids(grid, xyz)
        planes = support_planes_of(grid, centroids, config.features)
    features = voxel_features(grid, config.features, xyz, rgb=rgb, intensity=intensity,
                              neighbours=neighbours, centroids=centroids, planes=planes)
    return features, planes


def refine_point_labels(config: PreprocessConfig, class_names: tuple[str, ...] | list[str], xyz: np.ndarray,
                        labels: np.ndarray, net_input: NetworkInput | None = None) -> np.ndarray:
    """Per-point labels after the config's refinement (:func:`wsseg.core.refine.refine_labels`); ``labels``
    itself when ``config.refine`` is None.

    xyz: (N, 3) float32 metres, the cloud the labels belong to (one scene).  labels: (N,) int class ids.
    net_input: ``prepare_cloud(config, xyz, ...)`` of that cloud when the caller has it (the robot); without it
    the grid, its neighbour map and the plane are rebuilt by the same functions, so offline evaluation
    refines exactly as the node does.  Raises ``ValueError`` when the support class is not in ``class_names``
    and :class:`~wsseg.core.geometry.NoSupportPlaneError` for a cloud without a support plane.
    """
    if config.refine is None:
        return labels
    support_id = config.refine.support_id(class_names)
    xyz = np.asarray(xyz, dtype=np.float32)
    if net_input is not None and net_input.planes is not None:
        grid, neighbours, planes = net_input.grid, net_input.maps.neighbours[0], net_input.planes
    else:
        grid = voxelize(xyz, config.voxel_size_m)
        neighbours = neighbour_map(grid.coords)
        planes = support_planes_of(grid, geometry.voxel_centroids(grid, xyz), config.features)
    refined, _ = refine_labels(labels, xyz, grid, neighbours, planes, config.refine, support_id, len(class_names))
    return refined
