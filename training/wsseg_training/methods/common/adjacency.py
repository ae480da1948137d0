"""Which segments (regions, super-voxels) of a scene touch: adjacency from a k-nearest-neighbour graph.

WS3D §3.1 pairs "adjacent regions" found with a k-NN search; the paper gives no k.  Here two segments are
adjacent when some point of one has a point of the other among its ``k`` nearest neighbours (optionally
within ``max_distance_m``).  ASSUMPTION (METHOD_NOTES §4.3): k = 10..16; 10 is the default.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def knn_pairs(xyz: np.ndarray, k: int, max_distance_m: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols): (E,) int64 each, every point with each of its ``k`` nearest other points.

    xyz: (N, 3) float metres.  Neighbours farther than ``max_distance_m`` are dropped (None keeps all).
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    n = xyz.shape[0]
    if k < 1:
        raise ValueError(f"knn_pairs: k is {k}, expected >= 1")
    k = min(k, n - 1)
    if k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    upper = np.inf if max_distance_m is None else float(max_distance_m)
    distance, index = cKDTree(xyz).query(xyz, k=k + 1, distance_upper_bound=upper)
    rows = np.repeat(np.arange(n, dtype=np.int64), k + 1)
    cols = index.reshape(-1)
    keep = (cols < n) & (cols != rows) & np.isfinite(distance.reshape(-1))
    return rows[keep], cols[keep].astype(np.int64)


def region_adjacency(xyz: np.ndarray, region: np.ndarray, k: int = 10,
                     max_distance_m: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Adjacent region pairs of one scene.

    xyz: (N, 3) float metres.  region: (N,) int region id per point, -1 = none (never adjacent).
    Returns (pairs (E, 2) int64 with pairs[:, 0] < pairs[:, 1], sorted, each pair once; links (E,) int64, the
    number of k-NN links between the two regions, in either direction -- a contact-strength measure).
    """
    region = np.asarray(region).astype(np.int64)
    if region.shape[0] != np.asarray(xyz).shape[0]:
        raise ValueError(f"region_adjacency: region has {region.shape[0]} rows, xyz {np.asarray(xyz).shape[0]}")
    rows, cols = knn_pairs(xyz, k, max_distance_m)
    a, b = region[rows], region[cols]
    cross = (a >= 0) & (b >= 0) & (a != b)
    low, high = np.minimum(a[cross], b[cross]), np.maximum(a[cross], b[cross])
    if low.size == 0:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64)
    pairs, links = np.unique(np.stack([low, high], axis=1), axis=0, return_counts=True)
    return pairs.astype(np.int64), links.astype(np.int64)
