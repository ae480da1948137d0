"""Region growing on normals and curvature: the over-segmentation WS3D §3.1 uses for its regions.

The algorithm of PCL's ``RegionGrowing`` (Rabbani et al.), as GrowSP configures it (METHOD_NOTES §4.2, §5.2):

1. pre-grid the cloud (5 cm), PCA normals and curvature (surface variation λ_0 / Σλ) per grid point;
2. visit the grid points by increasing curvature; each point not yet in a region starts one;
3. a region grows from its seeds over their ``neighbours`` nearest grid points: a neighbour joins when the
   angle between its normal and the seed's (unoriented, ``|n_s . n_q|``) is below ``smoothness_deg``; it
   becomes a seed itself when its curvature is below ``curvature_threshold`` and, with
   ``residual_threshold_m``, its distance to the seed's tangent plane is below that (PCL's residual test);
4. regions lighter than ``min_points`` points are merged into the graph neighbour with the most similar
   normal (as :func:`wsseg_training.data.supervoxels.merge_small` does for super-voxels).

GrowSP's values: 5 cm grid, normals from a 3-voxel radius (here the ``normal_neighbours`` nearest, 30 ~ a
3-voxel disc on a surface), 15 neighbours, 5 degrees (S3DIS 3), curvature threshold 1 (PCL's curvature is at
most 1/3, so every point is a seed), residual test on at 1 voxel.  A region grows in breadth-first layers;
since acceptance depends only on a neighbour and its seed, the grown set is the same as PCL's one seed at a
time.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from wsseg.core.voxelize import voxel_mean, voxelize
from wsseg_training.data.supervoxels import edge_weights, estimate_normals, knn_edges, merge_small


@dataclass(frozen=True)
class RegionGrowingParams:
    """Region-growing settings (units in the names; see the module docstring)."""

    voxel_size_m: float = 0.05
    normal_neighbours: int = 30
    neighbours: int = 15
    smoothness_deg: float = 5.0
    curvature_threshold: float = 1.0
    residual_threshold_m: float | None = 0.05
    min_points: int = 30

    def __post_init__(self) -> None:
        checks = {
            "voxel_size_m": self.voxel_size_m >= 0, "normal_neighbours": self.normal_neighbours >= 3,
            "neighbours": self.neighbours >= 1, "smoothness_deg": 0 < self.smoothness_deg <= 90,
            "curvature_threshold": self.curvature_threshold >= 0, "min_points": self.min_points >= 1,
            "residual_threshold_m": self.residual_threshold_m is None or self.residual_threshold_m > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"region growing parameter {name}={getattr(self, name)!r} is out of range")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def grow_regions(pos: np.ndarray, normals: np.ndarray, curvature: np.ndarray, neighbours: np.ndarray,
                 smoothness_deg: float, curvature_threshold: float,
                 residual_threshold_m: float | None = None) -> np.ndarray:
    """The growing itself over precomputed neighbourhoods.

    pos: (V, 3) float metres.  normals: (V, 3) unit.  curvature: (V,).  neighbours: (V, k) int64 neighbour
    rows of every row (itself may appear; it is skipped).  Returns (V,) int64 region of every row, numbered in
    the order regions were started.
    """
    v = pos.shape[0]
    region = np.full(v, -1, dtype=np.int64)
    cos_limit = math.cos(math.radians(smoothness_deg))
    order = np.argsort(curvature, kind="stable")
    can_seed = curvature < curvature_threshold
    next_id = 0
    for start in order:
        if region[start] >= 0:
            continue
        region[start] = next_id
        seeds = np.array([start], dtype=np.int64)
        while seeds.size:
            cand = neighbours[seeds]  # (S, k)
            src = np.repeat(seeds, cand.shape[1])
            dst = cand.reshape(-1)
            free = region[dst] < 0
            src, dst = src[free], dst[free]
            smooth = np.abs(np.einsum("ed,ed->e", normals[src], normals[dst])) >= cos_limit
            src, dst = src[smooth], dst[smooth]
            if dst.size == 0:
                break
            seed_ok = can_seed[dst]
            if residual_threshold_m is not None:
                residual = np.abs(np.einsum("ed,ed->e", pos[dst] - pos[src], normals[src]))
                seed_ok &= residual < residual_threshold_m
            # A row reached from several seeds joins once; it seeds if any of its seeds allow it.
            joined = np.unique(dst)
            region[joined] = next_id
            seeding = np.zeros(v, dtype=bool)
            seeding[dst[seed_ok]] = True
            seeds = joined[seeding[joined]]
        next_id += 1
    return region


def region_growing(xyz: np.ndarray, params: RegionGrowingParams | None = None) -> np.ndarray:
    """Over-segment one cloud by region growing.

    xyz: (N, 3) float32 metres.  Returns (N,) int32 region ids 0..R-1, numbered in order of first point.
    """
    params = params or RegionGrowingParams()
    xyz = np.asarray(xyz, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or xyz.shape[0] == 0:
        raise ValueError(f"region_growing: xyz must have shape (N, 3) with N > 0, got {xyz.shape}")
    if not np.isfinite(xyz).all():
        raise ValueError("region_growing: xyz contains NaN or inf; drop invalid points first")
    if params.voxel_size_m > 0:
        grid = voxelize(xyz, params.voxel_size_m)
        pos = voxel_mean(xyz, grid).astype(np.float64)
        inverse, mass = grid.inverse, grid.counts
    else:
        pos, inverse, mass = xyz, np.arange(xyz.shape[0]), np.ones(xyz.shape[0], dtype=np.int64)
    tree = cKDTree(pos)
    normals, curvature = estimate_normals(pos, params.normal_neighbours, tree)
    k = min(params.neighbours + 1, pos.shape[0])
    _, neighbours = tree.query(pos, k=k)
    neighbours = np.asarray(neighbours, dtype=np.int64).reshape(pos.shape[0], k)
    labels = grow_regions(pos, normals.astype(np.float64), curvature.astype(np.float64), neighbours,
                          params.smoothness_deg, params.curvature_threshold, params.residual_threshold_m)
    edges, _ = knn_edges(pos, params.neighbours, None, tree)
    weights = edge_weights(edges, normals, None, 1.0, 0.0)
    labels = merge_small(labels, mass, edges, weights, params.min_points)
    point_labels = labels[inverse]
    _, first, inv = np.unique(point_labels, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    return rank[inv.reshape(-1)].astype(np.int32)
