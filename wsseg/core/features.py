"""Per-voxel network input features and their normalisation (one definition).

Feature names and the channels they add, in this fixed order:

* ``offset``: 3 channels, mean point position inside the voxel relative to the
  voxel centre, in voxel units, in [-0.5, 0.5];
* ``rgb``: 3 channels, mean colour mapped from 0..255 to [-1, 1];
* ``intensity``: 1 channel, mean ``intensity / intensity_scale`` clipped to [0, 1];
* ``height``: 1 channel, mean ``z`` in metres divided by ``height_scale_m``;
* ``normal``: 3 channels, unit normal of the voxel's 3x3x3 neighbourhood, facing the origin
  (:func:`wsseg.core.geometry.voxel_normals`; zeros where fewer than 3 points);
* ``support_height``: 1 channel, signed distance of the voxel centroid to the dominant plane
  (RANSAC, :func:`wsseg.core.geometry.fit_support_plane`), divided by ``support_scale_m`` and
  clipped to [-4, 4]; a cloud without such a plane cannot provide it
  (:class:`wsseg.core.geometry.NoSupportPlaneError`);
* ``support_cos``: 1 channel, cosine between the voxel normal and the support plane's normal.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from wsseg.core import geometry
from wsseg.core.voxelize import VoxelGrid, centroid_offset_from_mean, voxel_mean

FEATURE_CHANNELS: dict[str, int] = {"offset": 3, "rgb": 3, "intensity": 1, "height": 1, "normal": 3,
                                    "support_height": 1, "support_cos": 1}
#: features that need the support plane (a cloud without one cannot provide them)
SUPPORT_FEATURES = ("support_height", "support_cos")


@dataclass(frozen=True)
class FeatureConfig:
    """Which input features a network takes and how they are scaled.

    names: subset of ``FEATURE_CHANNELS``, in any order (channels follow the
    canonical order).  intensity_scale: raw intensity that maps to 1.0
    (1.0 for SemanticKITTI remission, 255.0 for 8-bit sensors).
    height_scale_m: z (metres) that maps to 1.0.  support_scale_m: height above the support plane
    (metres) that maps to 1.0.  plane: the support plane's RANSAC settings.
    """

    names: tuple[str, ...] = ("offset", "rgb")
    intensity_scale: float = 1.0
    height_scale_m: float = 3.0
    support_scale_m: float = 0.25
    plane: geometry.PlaneParams = field(default_factory=geometry.PlaneParams)

    def __post_init__(self) -> None:
        unknown = [n for n in self.names if n not in FEATURE_CHANNELS]
        if unknown:
            raise ValueError(f"unknown input feature(s) {unknown}; known: {list(FEATURE_CHANNELS)}")
        if not self.names:
            raise ValueError("at least one input feature is needed")
        if not self.intensity_scale > 0 or not self.height_scale_m > 0 or not self.support_scale_m > 0:
            raise ValueError("intensity_scale, height_scale_m and support_scale_m must be > 0")

    @property
    def ordered_names(self) -> tuple[str, ...]:
        return tuple(n for n in FEATURE_CHANNELS if n in self.names)

    @property
    def num_channels(self) -> int:
        return sum(FEATURE_CHANNELS[n] for n in self.ordered_names)

    @property
    def needs_neighbours(self) -> bool:
        """Whether a feature reads the level-0 neighbour map (the normals: ``normal``, ``support_cos``)."""
        return "normal" in self.names or "support_cos" in self.names

    def to_dict(self) -> dict:
        data = asdict(self)
        data["names"] = list(self.ordered_names)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> FeatureConfig:
        return cls(
            names=tuple(data.get("names", ("offset", "rgb"))),
            intensity_scale=float(data.get("intensity_scale", 1.0)),
            height_scale_m=float(data.get("height_scale_m", 3.0)),
            support_scale_m=float(data.get("support_scale_m", 0.25)),
            plane=geometry.PlaneParams(**(data.get("plane") or {})),
        )


def voxel_features(
    grid: VoxelGrid,
    config: FeatureConfig,
    xyz: np.ndarray,
    rgb: np.ndarray | None = None,
    intensity: np.ndarray | None = None,
    neighbours: np.ndarray | None = None,
    centroids: np.ndarray | None = None,
    planes: list[geometry.Plane] | None = None,
) -> np.ndarray:
    """Aggregate point attributes into the network's per-voxel input.

    xyz: (N, 3) float32, metres.  rgb: (N, 3) uint8 or None.  intensity: (N,)
    float or None.  neighbours: (M, 27) int64 level-0 neighbour map of ``grid`` (built when
    None and a geometry feature needs it).  centroids: (M, 3) :func:`~wsseg.core.geometry.voxel_centroids`
    and planes: :func:`support_planes_of` of the grid, when the caller has them already (computed when None).
    Returns (M, config.num_channels) float32.  A feature the config asks for but the cloud lacks raises
    ``ValueError`` (:class:`~wsseg.core.geometry.NoSupportPlaneError` for the support features).
    """
    names = config.ordered_names
    geometric = [n for n in names if n in ("normal", *SUPPORT_FEATURES)]
    if centroids is None:
        centroids = geometry.voxel_centroids(grid, xyz) if geometric else np.zeros((0, 3))
    normal = plane_normal = plane_offset = None
    if config.needs_neighbours:
        if neighbours is None:
            from wsseg.core.kernel_maps import neighbour_map

            neighbours = neighbour_map(grid.coords)
        normal = geometry.voxel_normals(centroids, neighbours, batch=grid.coords[:, 0])
    if any(n in names for n in SUPPORT_FEATURES):
        batch = grid.coords[:, 0].astype(np.int64)
        if planes is None:
            planes = support_planes_of(grid, centroids, config)
        plane_normal, plane_offset = geometry.plane_frame(planes, batch)
    averaged = _point_means(grid, names, config, xyz, rgb, intensity)
    parts = []
    for name in names:
        if name in averaged:
            parts.append(averaged[name])
        elif name == "normal":
            parts.append(normal)
        elif name == "support_height":
            height = np.einsum("ij,ij->i", centroids, plane_normal) + plane_offset
            parts.append(np.clip(height / config.support_scale_m, -4.0, 4.0)[:, None])
        elif name == "support_cos":
            parts.append(np.einsum("ij,ij->i", normal, plane_normal)[:, None])
    return np.concatenate(parts, axis=1).astype(np.float32)


def support_planes_of(grid: VoxelGrid, centroids: np.ndarray, config: FeatureConfig) -> list[geometry.Plane]:
    """The support plane of every scene of ``grid`` (batch order), fitted on its voxel centroids (M, 3) with the
    config's RANSAC settings: the one plane the support features and the point refinement
    (:mod:`wsseg.core.refine`) use."""
    return geometry.support_planes(centroids, grid.coords[:, 0].astype(np.int64), config.plane)


def _point_means(
    grid: VoxelGrid, names: tuple[str, ...], config: FeatureConfig, xyz: np.ndarray,
    rgb: np.ndarray | None, intensity: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """The features that average per-point values (offset, rgb, intensity, height), in one pass over the points.

    Returns name -> (M, channels) float32; every channel's mean is the one :func:`voxel_mean` gives alone.
    """
    columns: dict[str, list[np.ndarray]] = {}
    for name in names:
        if name == "offset":
            xyz = np.asarray(xyz)
            columns[name] = [xyz[:, 0], xyz[:, 1], xyz[:, 2]]
        elif name == "rgb":
            if rgb is None:
                raise ValueError("the model needs 'rgb' but the cloud has no colour")
            scaled = np.asarray(rgb, dtype=np.float32) / 127.5 - 1.0
            columns[name] = [scaled[:, 0], scaled[:, 1], scaled[:, 2]]
        elif name == "intensity":
            if intensity is None:
                raise ValueError("the model needs 'intensity' but the cloud has none")
            columns[name] = [
                np.clip(np.asarray(intensity, dtype=np.float32).reshape(-1) / config.intensity_scale, 0.0, 1.0)]
        elif name == "height":
            columns[name] = [np.asarray(xyz, dtype=np.float32)[:, 2] / config.height_scale_m]
    if not columns:
        return {}
    flat = [column for group in columns.values() for column in group]
    # float32 columns stay float32 (exact in the float64 sums); anything else is summed as float64
    dtype = np.float32 if all(c.dtype == np.float32 for c in flat) else np.float64
    values = np.empty((grid.inverse.shape[0], len(flat)), dtype=dtype)
    for c, column in enumerate(flat):
        values[:, c] = column
    means = voxel_mean(values, grid)
    out, start = {}, 0
    for name, group in columns.items():
        out[name] = means[:, start:start + len(group)]
        start += len(group)
    if "offset" in out:
        out["offset"] = centroid_offset_from_mean(out["offset"], grid)
    return out
