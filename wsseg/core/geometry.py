"""Cheap per-voxel geometry: normals from the voxel grid's neighbours and the dominant support plane.

Both run on what the robot already has (the level-0 voxel grid and its 3x3x3 neighbour map), in
numpy without per-point Python loops, and are deterministic: the same cloud gives the same values in
training preprocessing, in export checks and in the node (the RANSAC draws from a fixed seed).

* :func:`voxel_normals`: the normal of every voxel is the eigenvector of the smallest eigenvalue of
  the covariance of the voxel centroids in its 3x3x3 neighbourhood, oriented towards the viewpoint
  (the origin of the cloud's frame: the sensor, for clouds in the sensor frame).
* :func:`fit_support_plane`: RANSAC over voxel centroids (so every surface counts by its area, not
  by its point density), all hypotheses scored at once on a fixed-size sample, then refined by a
  least-squares fit to the inliers over all voxels.  The plane is oriented towards the viewpoint, so
  the signed distance is the height above the support surface for a sensor that looks at it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wsseg.core.voxelize import VoxelGrid, voxel_mean


class NoSupportPlaneError(ValueError):
    """The cloud has no plane with enough inliers to serve as the support surface."""


#: the support plane's inlier band as a share of the voxel edge (:meth:`PlaneParams.for_voxel`)
PLANE_THRESHOLD_PER_VOXEL = 0.5
#: ... and never narrower than this, metres (the 1 cm every RGB-D result was measured with)
MIN_PLANE_THRESHOLD_M = 0.01


@dataclass(frozen=True)
class PlaneParams:
    """RANSAC settings of the support plane (part of the bundle's feature config, so every side agrees).

    threshold_m: inlier distance, metres (training derives it from the grid, :meth:`for_voxel`; the
    default is what bundles without a ``plane`` section used).  iterations: plane hypotheses.
    sample_voxels: voxels the hypotheses are scored on (a seeded random subset).  min_inlier_fraction:
    the best plane must hold at least this fraction of the voxels, else there is no support plane.
    seed: RANSAC's seed.
    """

    threshold_m: float = 0.01
    iterations: int = 256
    sample_voxels: int = 2048
    min_inlier_fraction: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.threshold_m > 0:
            raise ValueError(f"plane threshold_m must be > 0, got {self.threshold_m}")
        if self.iterations < 1 or self.sample_voxels < 3:
            raise ValueError(f"plane iterations must be >= 1 and sample_voxels >= 3, got {self.iterations}, "
                             f"{self.sample_voxels}")
        if not 0.0 < self.min_inlier_fraction <= 1.0:
            raise ValueError(f"plane min_inlier_fraction must be in (0, 1], got {self.min_inlier_fraction}")

    @classmethod
    def for_voxel(cls, voxel_size_m: float) -> PlaneParams:
        """The settings for a grid of ``voxel_size_m`` (metres): inlier band ``max(1 cm, voxel / 2)``.

        The one place the band follows the sensor: the grid is chosen for the sensor's point spacing
        (:mod:`wsseg_training.data.sensor_defaults`), and its range noise and the unevenness of its
        support surface grow with it.  A fixed 1 cm band is right for a Kinect table top at 1-2 cm
        (unchanged there) but holds only 3.9-5.4 % of the voxels of a real SemanticKITTI scan at 0.10 m
        (no plane); 5 cm holds 19-21 % (docs/training.md).
        """
        if not voxel_size_m > 0:
            raise ValueError(f"voxel_size_m must be > 0, got {voxel_size_m}")
        return cls(threshold_m=round(max(MIN_PLANE_THRESHOLD_M, PLANE_THRESHOLD_PER_VOXEL * voxel_size_m), 6))


@dataclass(frozen=True)
class Plane:
    """``normal . x + offset_m = 0``; normal: (3,) float64 unit, pointing to the viewpoint's side.

    inlier_fraction: share of the voxels within the threshold.
    """

    normal: np.ndarray
    offset_m: float
    inlier_fraction: float

    def signed_distance(self, xyz: np.ndarray) -> np.ndarray:
        """xyz: (N, 3) metres -> (N,) float64 metres, positive on the viewpoint's side."""
        return np.asarray(xyz, dtype=np.float64) @ self.normal + self.offset_m


def voxel_normals(centroids: np.ndarray, neighbours: np.ndarray, viewpoint: np.ndarray | None = None,
                  batch: np.ndarray | None = None) -> np.ndarray:
    """Unit normal of every voxel from the centroids of the active voxels in its 3x3x3 neighbourhood.

    centroids: (M, 3) float metres (:func:`voxel_centroids`).  neighbours: (M, 27) int64 neighbour map
    of the grid (:func:`wsseg.core.kernel_maps.neighbour_map`; ``M`` = no neighbour).  Each active
    neighbour counts once, whatever its point count, so the sensor's density does not tilt the fit.
    viewpoint: (3,) metres the normals face (default the origin).  batch: (M,) scene index of every
    voxel (``coords[:, 0]``); each scene is centred on its own mean, so a scene's normals do not depend
    on the others in its batch.  Returns (M, 3) float32; zeros where fewer than 3 neighbourhood voxels
    are active (no plane to fit).
    """
    m = centroids.shape[0]
    view = np.zeros(3) if viewpoint is None else np.asarray(viewpoint, dtype=np.float64)
    scene = np.zeros(m, dtype=np.int64) if batch is None else np.asarray(batch, dtype=np.int64)
    sizes = np.bincount(scene).astype(np.float64) if m else np.zeros(1)
    means = np.stack([np.bincount(scene, weights=centroids[:, a]) for a in range(3)], axis=1) if m else np.zeros((1, 3))
    origin = (means / np.maximum(sizes, 1.0)[:, None])[scene]  # (M, 3): the mean of each voxel's scene
    c = np.asarray(centroids, dtype=np.float64) - origin
    moments = np.concatenate([np.ones((m, 1)), c, c[:, [0, 0, 0, 1, 1, 2]] * c[:, [0, 1, 2, 1, 2, 2]]], axis=1)
    padded = np.concatenate([moments, np.zeros((1, 10))], axis=0)
    total = padded[neighbours[:, 0]].copy()
    for k in range(1, neighbours.shape[1]):  # 27 gathers of (M, 10): faster than one (M, 27, 10) gather
        total += padded[neighbours[:, k]]
    count = total[:, 0]
    safe = np.maximum(count, 1.0)
    mean = total[:, 1:4] / safe[:, None]
    second = total[:, 4:10] / safe[:, None]
    pairs = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))
    cov = np.stack([second[:, k] - mean[:, i] * mean[:, j] for k, (i, j) in enumerate(pairs)], axis=1)
    normal = smallest_eigenvectors(cov)
    towards = (view - origin) - mean
    flip = np.einsum("ij,ij->i", normal, towards) < 0
    normal[flip] *= -1.0
    normal[count < 3] = 0.0
    return normal.astype(np.float32)


def smallest_eigenvectors(cov: np.ndarray) -> np.ndarray:
    """Unit eigenvector of the smallest eigenvalue of symmetric 3x3 matrices, in closed form.

    cov: (M, 6) float64 upper triangles ``[a00, a01, a02, a11, a12, a22]``.  Returns (M, 3) float64
    (sign arbitrary; any unit vector where the matrix is a multiple of the identity).  The smallest
    eigenvalue comes from the trigonometric solution of the characteristic cubic, the vector from the
    largest cross product of two rows of ``A - lambda I`` -- ~10x faster than batched ``eigh``.
    """
    a00, a01, a02, a11, a12, a22 = (cov[:, k] for k in range(6))
    q = (a00 + a11 + a22) / 3.0
    off = a01 * a01 + a02 * a02 + a12 * a12
    p = np.sqrt(((a00 - q) ** 2 + (a11 - q) ** 2 + (a22 - q) ** 2 + 2.0 * off) / 6.0)
    safe_p = np.where(p > 0, p, 1.0)
    b00, b11, b22 = (a00 - q) / safe_p, (a11 - q) / safe_p, (a22 - q) / safe_p
    b01, b02, b12 = a01 / safe_p, a02 / safe_p, a12 / safe_p
    det = b00 * (b11 * b22 - b12 * b12) - b01 * (b01 * b22 - b12 * b02) + b02 * (b01 * b12 - b11 * b02)
    phi = np.arccos(np.clip(det / 2.0, -1.0, 1.0)) / 3.0
    smallest = q + 2.0 * p * np.cos(phi + 2.0 * np.pi / 3.0)
    r0 = np.stack([a00 - smallest, a01, a02], axis=1)
    r1 = np.stack([a01, a11 - smallest, a12], axis=1)
    r2 = np.stack([a02, a12, a22 - smallest], axis=1)
    crosses = np.stack([np.cross(r0, r1), np.cross(r0, r2), np.cross(r1, r2)], axis=1)  # (M, 3, 3)
    norms = np.linalg.norm(crosses, axis=2)
    pick = np.argmax(norms, axis=1)
    rows = np.arange(cov.shape[0])
    vector = crosses[rows, pick]
    length = norms[rows, pick]
    out = np.zeros_like(vector)
    out[:, 2] = 1.0
    good = length > 0
    out[good] = vector[good] / length[good, None]
    return out


def voxel_centroids(grid: VoxelGrid, xyz: np.ndarray) -> np.ndarray:
    """(M, 3) float64 mean point of every voxel, metres (the one per-voxel mean, :func:`voxel_mean`)."""
    return voxel_mean(np.asarray(xyz, dtype=np.float32), grid).astype(np.float64)


def _hypotheses(points: np.ndarray, rng: np.random.Generator, iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """Planes through random triples of ``points``: (K, 3) unit normals, (K,) offsets (degenerate dropped)."""
    triples = rng.integers(0, points.shape[0], size=(iterations, 3))
    a, b, c = points[triples[:, 0]], points[triples[:, 1]], points[triples[:, 2]]
    normal = np.cross(b - a, c - a)
    length = np.linalg.norm(normal, axis=1)
    keep = length > 1e-12
    normal = normal[keep] / length[keep, None]
    return normal, -np.einsum("ij,ij->i", normal, a[keep])


def _refine(points: np.ndarray, inliers: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares plane through ``points[inliers]``: (unit normal (3,), offset)."""
    chosen = points[inliers]
    centre = chosen.mean(axis=0)
    _, vectors = np.linalg.eigh(np.cov((chosen - centre).T))
    normal = vectors[:, 0]
    return normal, float(-normal @ centre)


def fit_support_plane(centroids: np.ndarray, params: PlaneParams = PlaneParams(),
                      viewpoint: np.ndarray | None = None) -> Plane:
    """The dominant plane of a cloud's voxel centroids by RANSAC.

    centroids: (M, 3) float metres (:func:`voxel_centroids`).  Raises :class:`NoSupportPlaneError`
    (naming the best fraction found) when fewer than ``params.min_inlier_fraction`` of them lie on
    any plane.  Deterministic: the draws come from ``params.seed``.
    """
    points = np.asarray(centroids, dtype=np.float64)
    m = points.shape[0]
    if m < 3:
        raise NoSupportPlaneError(f"no support plane: the cloud has {m} voxel(s), a plane needs 3")
    rng = np.random.default_rng(params.seed)
    sample = points if m <= params.sample_voxels else points[rng.choice(m, params.sample_voxels, replace=False)]
    normals, offsets = _hypotheses(sample, rng, params.iterations)
    if normals.shape[0] == 0:
        raise NoSupportPlaneError("no support plane: every RANSAC triple was degenerate (collinear points)")
    distances = sample.astype(np.float32) @ normals.T.astype(np.float32) + offsets.astype(np.float32)
    scores = (np.abs(distances) <= params.threshold_m).sum(axis=0)
    best = int(np.argmax(scores))
    normal, offset = normals[best], float(offsets[best])
    inliers = np.abs(points @ normal + offset) <= params.threshold_m
    for _ in range(2):  # least squares on the inliers, then re-collect them
        if inliers.sum() < 3:
            break
        normal, offset = _refine(points, inliers)
        inliers = np.abs(points @ normal + offset) <= params.threshold_m
    fraction = float(inliers.mean())
    if fraction < params.min_inlier_fraction:
        raise NoSupportPlaneError(
            f"no support plane: the best plane holds {100 * fraction:.1f}% of the voxels, fewer than "
            f"min_inlier_fraction {100 * params.min_inlier_fraction:.1f}% (threshold {params.threshold_m} m)")
    view = np.zeros(3) if viewpoint is None else np.asarray(viewpoint, dtype=np.float64)
    if view @ normal + offset < 0:
        normal, offset = -normal, -offset
    return Plane(normal=normal, offset_m=offset, inlier_fraction=fraction)


def support_planes(centroids: np.ndarray, batch: np.ndarray, params: PlaneParams = PlaneParams()) -> list[Plane]:
    """One support plane per scene of a (batched) grid, in batch order.

    centroids: (M, 3) voxel centroids (:func:`voxel_centroids`); batch: (M,) ``coords[:, 0]``.
    """
    if batch.size == 0:
        raise NoSupportPlaneError("no support plane: the cloud is empty")
    return [fit_support_plane(centroids[batch == b], params) for b in range(int(batch.max()) + 1)]


def plane_frame(planes: list[Plane], batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-voxel plane of its scene: normals (M, 3) float64 and offsets (M,) float64."""
    normals = np.stack([p.normal for p in planes])[batch]
    offsets = np.array([p.offset_m for p in planes])[batch]
    return normals, offsets
