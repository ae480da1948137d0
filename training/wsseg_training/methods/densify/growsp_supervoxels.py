"""GrowSP-style initial super-voxels (DYL Supp. A.1; METHOD_NOTES §5.2): VCCS patches merged into
smooth regions, on a 5 cm voxel grid.

1. VCCS: :func:`wsseg_training.data.supervoxels.compute_supervoxels` with ``method="slic"`` (seeded
   clustering in the spirit of VCCS) at ``voxel_size_m`` with seeds every ``seed_spacing_m`` (GrowSP: 5 cm,
   0.5 m) and GrowSP's importances: spatial 0.4, normal 1.0, colour 0.2.
2. Region growing on normals: :func:`wsseg_training.data.region_growing.region_growing` (PCL's algorithm) with
   GrowSP's settings: the same 5 cm grid, 15 neighbours, ``smoothness_deg`` (GrowSP: 5° ScanNet, 3° S3DIS),
   curvature threshold 1 (every voxel may seed), residual test at one voxel, regions of any size (min 1).
3. Merge: a VCCS patch takes the id of the region that holds more than half of its voxels, otherwise it
   keeps its own id (so a planar wall becomes one super-voxel, a chair stays in patches).
4. Super-voxels with fewer than ``min_points`` points become -1 (GrowSP's ``drop_threshold``: 30 ScanNet,
   10 S3DIS).  Unlike GrowSP, no point is dropped by its ground-truth label (GrowSP sets points of
   ignored classes to -1, which reads the dense labels; METHOD_NOTES §5.8 pitfall 5).

Quality against the dataset's default super-voxels: ``bench/densify_supervoxels.py``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from wsseg.core.voxelize import voxelize
from wsseg_training.data.region_growing import RegionGrowingParams, region_growing
from wsseg_training.data.supervoxels import SupervoxelParams, compute_supervoxels


@dataclass(frozen=True)
class GrowspParams:
    """Settings of :func:`growsp_supervoxels` (module docstring); lengths in metres, angles in degrees."""

    voxel_size_m: float = 0.05
    seed_spacing_m: float = 0.5
    spatial_weight: float = 0.4
    normal_weight: float = 1.0
    colour_weight: float = 0.2
    normal_neighbours: int = 16
    region_normal_neighbours: int = 30
    region_neighbours: int = 15
    smoothness_deg: float = 5.0
    min_points: int = 10

    def __post_init__(self) -> None:
        positive = {"voxel_size_m": self.voxel_size_m, "seed_spacing_m": self.seed_spacing_m,
                    "smoothness_deg": self.smoothness_deg}
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"growsp super-voxels: {name}={value!r} must be > 0")
        if min(self.normal_neighbours, self.region_normal_neighbours) < 3 or self.region_neighbours < 1 \
                or self.min_points < 1:
            raise ValueError(f"growsp super-voxels: normal_neighbours={self.normal_neighbours} (>= 3), "
                             f"region_normal_neighbours={self.region_normal_neighbours} (>= 3), region_neighbours="
                             f"{self.region_neighbours} (>= 1), min_points={self.min_points} (>= 1) out of range")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def merge_patches(patch: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Step 3: a patch takes the region holding more than half of its voxels.

    patch, region: (V,) int64 per voxel.  Returns (V,) int64 ids: regions ``0..R-1``, kept patches ``R + patch``.
    """
    num_regions = int(region.max()) + 1 if region.size else 0
    pairs, shared = np.unique(np.stack([patch, region], axis=1), axis=0, return_counts=True)
    size = np.bincount(patch)
    order = np.lexsort((-shared, pairs[:, 0]))  # per patch, its largest overlap first
    pairs, shared = pairs[order], shared[order]
    first = np.unique(pairs[:, 0], return_index=True)[1]
    best_region = np.full(size.shape[0], -1, dtype=np.int64)
    majority = 2 * shared[first] > size[pairs[first, 0]]
    best_region[pairs[first, 0][majority]] = pairs[first, 1][majority]
    return np.where(best_region[patch] >= 0, best_region[patch], num_regions + patch)


def growsp_supervoxels(xyz: np.ndarray, rgb: np.ndarray | None = None,
                       params: GrowspParams | None = None) -> np.ndarray:
    """GrowSP-style super-voxels of one cloud (module docstring).

    xyz: (N, 3) float32 metres; rgb: (N, 3) uint8 or None.  Returns (N,) int32 ids 0..S-1 (in order of first
    point), -1 for points of dropped small super-voxels.
    """
    params = params or GrowspParams()
    xyz = np.asarray(xyz, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or xyz.shape[0] == 0:
        raise ValueError(f"xyz must have shape (N, 3) with N > 0, got {xyz.shape}")
    vccs = compute_supervoxels(xyz, rgb, SupervoxelParams(
        method="slic", voxel_size_m=params.voxel_size_m, seed_spacing_m=params.seed_spacing_m,
        spatial_weight=params.spatial_weight, normal_weight=params.normal_weight,
        colour_weight=params.colour_weight, normal_neighbours=params.normal_neighbours, min_points=1))
    regions = region_growing(xyz, RegionGrowingParams(
        voxel_size_m=params.voxel_size_m, normal_neighbours=params.region_normal_neighbours,
        neighbours=params.region_neighbours, smoothness_deg=params.smoothness_deg, curvature_threshold=1.0,
        residual_threshold_m=params.voxel_size_m, min_points=1))
    # Both label points on the same 5 cm grid, so every voxel's points share one patch and one region.
    grid = voxelize(xyz, params.voxel_size_m)
    patch = np.zeros(grid.num_voxels, dtype=np.int64)
    patch[grid.inverse] = vccs
    region = np.zeros(grid.num_voxels, dtype=np.int64)
    region[grid.inverse] = regions
    merged = merge_patches(patch, region)[grid.inverse]
    _, inverse, counts = np.unique(merged, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    keep = counts >= params.min_points
    out = np.full(xyz.shape[0], -1, dtype=np.int64)
    kept = keep[inverse]
    _, first, renum = np.unique(inverse[kept], return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    out[kept] = rank[renum.reshape(-1)]
    return out.astype(np.int32)
