"""K-means over every training super-voxel (Densify's primitives, DYL §3.2.1) with ``faiss-cpu``.

Why faiss: DYL clusters all super-voxels of the training set (ScanNet: ~1M rows of 128 + 13 features,
K = 300) every 10 epochs, 40 times a run.  faiss's k-means is a BLAS assignment plus a parallel centroid
update over float32 rows with no per-row Python work, deterministic for a seed, and ~1.7x faster than
scikit-learn's Lloyd on the same rows and thread (measured once, ``bench/results/densify_kmeans.md``);
``faiss-gpu`` has the same API on a GPU.  All rows take part (``max_points_per_centroid`` is lifted:
faiss otherwise trains on 256 sampled rows per centroid).

Centroids are initialised by k-means++ (D²-weighted seeding, faiss's ``KMEANS_PLUS_PLUS``: plain random rows
left two of three well separated toy clusters sharing a centroid); empty clusters are re-seeded by splitting
a large one (faiss).  The result is a pure function of (rows, k, seed, iterations)
for a given thread count, which resume relies on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import faiss
import numpy as np
import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KMeansResult:
    """assignment: (S,) int64 cluster of every row in ``0..k-1``.  centroids: (k, F) float32.  inertia: sum of
    squared distances of the rows to their centroid (last iteration)."""

    assignment: np.ndarray
    centroids: np.ndarray
    inertia: float

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])


def kmeans(rows: np.ndarray, k: int, seed: int = 0, iterations: int = 20, threads: int | None = None) -> KMeansResult:
    """Cluster ``rows`` into ``min(k, S)`` clusters (Euclidean; Lloyd iterations).

    rows: (S, F) float, finite.  k >= 1.  threads: OpenMP threads (None = ``torch.get_num_threads()``).
    With fewer distinct rows than ``k`` the surplus clusters stay empty (faiss keeps their seed rows).
    """
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    if rows.ndim != 2 or rows.shape[0] == 0:
        raise ValueError(f"k-means needs a non-empty (S, F) array, got shape {rows.shape}")
    if k < 1 or iterations < 1:
        raise ValueError(f"k-means: k={k} and iterations={iterations} must be >= 1")
    if not np.isfinite(rows).all():
        raise ValueError("k-means: the features contain NaN or inf")
    if rows.shape[0] < k:
        log.warning("k-means: %d rows for k=%d clusters; using k=%d", rows.shape[0], k, rows.shape[0])
        k = rows.shape[0]
    faiss.omp_set_num_threads(int(threads or torch.get_num_threads()))
    clus = faiss.Clustering(rows.shape[1], k)
    clus.niter = iterations
    clus.seed = int(seed) % (2**31)
    clus.max_points_per_centroid = max(1, -(-rows.shape[0] // k))  # all rows, no sub-sampling
    clus.min_points_per_centroid = 1
    clus.verbose = False
    clus.init_method = faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS
    index = faiss.IndexFlatL2(rows.shape[1])
    clus.train(rows, index)
    distance, nearest = index.search(rows, 1)
    centroids = faiss.vector_to_array(clus.centroids).reshape(k, rows.shape[1]).astype(np.float32)
    return KMeansResult(assignment=nearest[:, 0].astype(np.int64), centroids=centroids,
                        inertia=float(distance.sum(dtype=np.float64)))


def member_means(rows: np.ndarray, assignment: np.ndarray, k: int) -> np.ndarray:
    """(k, F) float32 mean of the rows of each cluster (zero rows for empty clusters).

    rows: (S, F) float; assignment: (S,) int in ``0..k-1``.
    """
    rows = np.asarray(rows, dtype=np.float64)
    sums = np.zeros((k, rows.shape[1]))
    np.add.at(sums, assignment, rows)
    counts = np.bincount(assignment, minlength=k)[:, None]
    return (sums / np.maximum(counts, 1)).astype(np.float32)


def nearest_centroid(features: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """(P,) int64 index of the centroid of largest cosine similarity to each row.

    features: (P, H) float; centroids: (K, H) float (normalised here).
    """
    f = torch.nn.functional.normalize(features.float(), dim=1)
    c = torch.nn.functional.normalize(centroids.float(), dim=1)
    return (f @ c.T).argmax(dim=1)
