"""Sensor-aware defaults: the voxel grid, the model profile and the input features chosen from the data.

:func:`measure_scale` looks at a few training scenes: how far the points are from the origin (the
sensor, for clouds in the sensor frame), the point spacing at the median range, how large the scenes
are and how large their instances are.  :func:`choose_defaults` turns that and the dataset's
``sensor`` kind into a grid and a profile, with the reason in words:

==============  =========================================  ===========  ==============
kind            when                                       voxel range  profile (CPU / GPU)
==============  =========================================  ===========  ==============
``rgbd``        RGB-D (or unknown) scenes < 4 m across     0.01-0.02 m  rgbd_small / rgbd_base
``indoor``      RGB-D (or unknown) scenes >= 4 m across    0.02-0.05 m  indoor_small / indoor_base
``lidar``       LiDAR scans (or unknown scenes >= 40 m)    0.05-0.10 m  lidar_small / lidar_base
==============  =========================================  ===========  ==============

Inside its range the voxel is the multiple of 5 mm nearest to the median instance's size divided by
:data:`TARGET_VOXELS_PER_INSTANCE` (the top of the range when the data has no instances), and never
finer than the point spacing.  :func:`coarse_grid_warning` fires when most
instances span fewer than :data:`MIN_VOXELS_PER_INSTANCE` voxels at the grid actually used.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from wsseg_training.data.dataset import Dataset

if TYPE_CHECKING:
    from wsseg_training.engine.config import TrainConfig

#: kind -> (finest voxel, coarsest voxel) in metres
VOXEL_RANGE_M: dict[str, tuple[float, float]] = {"rgbd": (0.01, 0.02), "indoor": (0.02, 0.05), "lidar": (0.05, 0.10)}
#: scenes at least this large (metres, robust bounding-box diagonal) are rooms, not table tops
INDOOR_EXTENT_M = 4.0
#: scenes of unknown sensor at least this large are treated as LiDAR scans
LIDAR_EXTENT_M = 40.0
#: the chosen grid aims at this many voxels across the median instance
TARGET_VOXELS_PER_INSTANCE = 6.0
#: fewer voxels than this across most instances: the grid is coarse for the data (warning)
MIN_VOXELS_PER_INSTANCE = 4.0
GRID_STEP_M = 0.005


@dataclass(frozen=True)
class DataScale:
    """What :func:`measure_scale` found (metres).

    scenes: scenes measured.  median_range_m: median distance of the points from the origin.
    spacing_m: median nearest-neighbour distance of points near the median range.  extent_m: median
    robust (2nd-98th percentile) bounding-box diagonal of a scene.  instance_sizes_m: (K,) size of
    every instance (the middle side of its bounding box), empty without instances.
    has_rgb / has_intensity: every measured scene has the field.
    """

    scenes: int
    median_range_m: float
    spacing_m: float
    extent_m: float
    instance_sizes_m: np.ndarray
    has_rgb: bool
    has_intensity: bool

    @property
    def median_instance_m(self) -> float | None:
        return float(np.median(self.instance_sizes_m)) if self.instance_sizes_m.size else None


@dataclass(frozen=True)
class SensorDefaults:
    """The choice: kind, voxel edge (metres), profile, input features and why."""

    kind: str
    voxel_size_m: float
    profile: str
    features: tuple[str, ...]
    reason: str


def _instance_sizes(xyz: np.ndarray, instance: np.ndarray | None) -> list[float]:
    """Middle side (metres) of the bounding box of every instance id >= 0."""
    if instance is None:
        return []
    keep = instance >= 0
    if not keep.any():
        return []
    ids, inverse = np.unique(instance[keep], return_inverse=True)
    points = xyz[keep].astype(np.float64)
    low = np.full((ids.size, 3), np.inf)
    high = np.full((ids.size, 3), -np.inf)
    np.minimum.at(low, inverse, points)
    np.maximum.at(high, inverse, points)
    return np.sort(high - low, axis=1)[:, 1].tolist()


def _spacing_near_median_range(xyz: np.ndarray, ranges: np.ndarray, rng: np.random.Generator,
                               samples: int = 2000) -> float:
    """Median distance from points in the 40-60th range percentile band to their nearest other point."""
    from scipy.spatial import cKDTree

    low, high = np.percentile(ranges, [40, 60])
    band = np.flatnonzero((ranges >= low) & (ranges <= high))
    if band.size == 0 or xyz.shape[0] < 2:
        return float("nan")
    picks = xyz[rng.choice(band, size=min(samples, band.size), replace=False)]
    distances, _ = cKDTree(xyz).query(picks, k=2)
    return float(np.median(distances[:, 1]))


def measure_scale(dataset: Dataset, split: str = "train", max_scenes: int = 6, seed: int = 0) -> DataScale:
    """Measure up to ``max_scenes`` scenes of ``split`` (evenly spaced; all scenes when the split is missing)."""
    names = dataset.scene_names(split if split in dataset.info.splits else None)
    if not names:
        raise ValueError(f"{dataset.root}: no scene to measure in split {split!r}")
    chosen = [names[int(i)] for i in np.unique(np.linspace(0, len(names) - 1, min(max_scenes, len(names))).round())]
    rng = np.random.default_rng(seed)
    medians, spacings, extents, sizes = [], [], [], []
    has_rgb = has_intensity = True
    for name in chosen:
        scene = dataset.load(name)
        xyz = scene.xyz
        ranges = np.linalg.norm(xyz.astype(np.float64), axis=1)
        medians.append(float(np.median(ranges)))
        spacings.append(_spacing_near_median_range(xyz, ranges, rng))
        low, high = np.percentile(xyz, [2, 98], axis=0)
        extents.append(float(np.linalg.norm(high - low)))
        sizes += _instance_sizes(xyz, scene.instance)
        has_rgb &= scene.rgb is not None
        has_intensity &= scene.intensity is not None
    return DataScale(scenes=len(chosen), median_range_m=float(np.median(medians)),
                     spacing_m=float(np.nanmedian(spacings)), extent_m=float(np.median(extents)),
                     instance_sizes_m=np.asarray(sizes, dtype=np.float64), has_rgb=has_rgb,
                     has_intensity=has_intensity)


def scene_kind(sensor: str, scale: DataScale) -> str:
    """``rgbd``, ``indoor`` or ``lidar`` from the dataset's sensor kind and the scenes' size."""
    if sensor == "lidar" or (sensor != "rgbd" and scale.extent_m >= LIDAR_EXTENT_M):
        return "lidar"
    return "indoor" if scale.extent_m >= INDOOR_EXTENT_M else "rgbd"


def default_features(kind: str, scale: DataScale) -> tuple[str, ...]:
    """Colour where every scene has it, else LiDAR intensity, else the height; always the offset."""
    if scale.has_rgb:
        return ("offset", "rgb")
    if scale.has_intensity:
        return ("offset", "intensity")
    return ("offset", "height")


def choose_defaults(sensor: str, scale: DataScale, gpu: bool = False) -> SensorDefaults:
    """The grid, profile and features for data of ``sensor`` kind measured as ``scale`` (see the module doc)."""
    kind = scene_kind(sensor, scale)
    finest, coarsest = VOXEL_RANGE_M[kind]
    instance = scale.median_instance_m
    voxel = coarsest
    why = [f"sensor '{sensor}', scenes {scale.extent_m:.1f} m across ({kind} range {finest:g}-{coarsest:g} m)",
           f"point spacing {1000 * scale.spacing_m:.1f} mm at the median range {scale.median_range_m:.2f} m"]
    if instance is not None:
        fit = np.round(instance / TARGET_VOXELS_PER_INSTANCE / GRID_STEP_M) * GRID_STEP_M
        voxel = float(np.clip(fit, finest, coarsest))
        why.append(f"median instance {100 * instance:.1f} cm across ({scale.instance_sizes_m.size} instances): "
                   f"{instance / voxel:.1f} voxels at {voxel:g} m")
    else:
        why.append("no instances: the coarse end of the range")
    if np.isfinite(scale.spacing_m) and voxel < scale.spacing_m:
        voxel = float(min(coarsest, np.ceil(scale.spacing_m / GRID_STEP_M) * GRID_STEP_M))
        why.append(f"raised to {voxel:g} m: no finer than the point spacing")
    profile = f"{kind}_{'base' if gpu else 'small'}"
    why.append(f"profile {profile} ({'GPU' if gpu else 'CPU'} training)")
    return SensorDefaults(kind=kind, voxel_size_m=round(voxel, 4), profile=profile,
                          features=default_features(kind, scale), reason="; ".join(why))


def coarse_grid_warning(scale: DataScale, voxel_size_m: float) -> str | None:
    """A warning when most instances span fewer than ``MIN_VOXELS_PER_INSTANCE`` voxels, else None."""
    sizes = scale.instance_sizes_m
    if sizes.size == 0:
        return None
    coarse = float(np.mean(sizes / voxel_size_m < MIN_VOXELS_PER_INSTANCE))
    if coarse <= 0.5:
        return None
    finest_ok = float(np.median(sizes)) / MIN_VOXELS_PER_INSTANCE
    return (f"voxel {voxel_size_m:g} m is coarse for this data: {100 * coarse:.0f}% of the {sizes.size} instances "
            f"span fewer than {MIN_VOXELS_PER_INSTANCE:g} voxels (median instance {100 * np.median(sizes):.1f} cm); "
            f"use data.voxel_size_m <= {finest_ok:.3f} or profile: auto")


@dataclass(frozen=True)
class AppliedDefaults:
    """What :func:`apply_sensor_defaults` decided: one line per choice (with its source) and the warning."""

    lines: tuple[str, ...]
    warning: str | None


def apply_sensor_defaults(config: TrainConfig, dataset: Dataset, split: str = "train",
                          gpu: bool = False) -> tuple[TrainConfig, AppliedDefaults]:
    """Fill ``profile: auto``, ``data.voxel_size_m: null`` and ``data.features: null`` from the data.

    Returns the config with every one of them explicit (what the run directory saves, so a resume
    sees the same choice) and what was chosen and why.  Fields the config gives are kept.
    """
    from wsseg_training.engine.config import AUTO_PROFILE
    from wsseg_training.model.profiles import get_profile

    scale = measure_scale(dataset, split)
    choice = choose_defaults(dataset.info.sensor, scale, gpu=gpu)
    auto = config.profile == AUTO_PROFILE
    profile = choice.profile if auto else config.profile
    if config.data.voxel_size_m is not None:
        voxel, voxel_from = config.data.voxel_size_m, "the config"
    elif auto:
        voxel, voxel_from = choice.voxel_size_m, "the data"
    else:
        voxel, voxel_from = get_profile(profile).voxel_size_m, f"profile {profile}"
    features = config.data.features if config.data.features is not None else choice.features
    lines = (f"profile {profile} (from {'the data' if auto else 'the config'}), voxel {voxel:g} m (from "
             f"{voxel_from}), features {list(features)} (from "
             f"{'the config' if config.data.features is not None else 'the data'})",
             f"measured on {scale.scenes} {dataset.info.name} scene(s): {choice.reason}")
    data = dataclasses.replace(config.data, voxel_size_m=float(voxel), features=tuple(features))
    return (config.replace(profile=profile, data=data),
            AppliedDefaults(lines=lines, warning=coarse_grid_warning(scale, float(voxel))))
