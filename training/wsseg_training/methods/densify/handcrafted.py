"""Hand-crafted super-voxel descriptors of Densify's primitive warm-up (DYL §3.2.1, Supp. A.2).

During the warm-up, the K-means input of every super-voxel is its L2-normalised mean network feature
concatenated with ``c_rgb`` x its mean colour and ``c_shape`` x its normal-cosine histogram, L2-normalised
again (GrowSP's recipe, ``c_rgb = c_shape = 3``).  What the papers call "PFH" is, in GrowSP's code, not
Rusu's point feature histogram but a 10-bin histogram over [-1, 1] of the cosines between the unit normals
of the super-voxel's points, normalised to sum 1 (METHOD_NOTES §5.5, step 2).  We histogram the distinct
pairs ``i < j`` only: GrowSP's ``torch.triu(N Nᵀ)`` also counts the diagonal (cos = 1) and the zeroed
lower triangle (a spike of cos = 0 pairs in the bin around 0), which a plane and a sphere then share.

Colour follows GrowSP's input scaling, ``rgb / 255 - 0.5`` in [-0.5, 0.5].  Normals are PCA normals of a
voxel grid (:func:`wsseg_training.data.supervoxels.estimate_normals`), oriented towards the scene's
centroid so that the cosine of two parallel surfaces seen from the room's inside is +1 (unoriented PCA
normals would split a plane's mass between the first and the last bin at random).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wsseg.core.voxelize import voxel_mean, voxelize
from wsseg_training.data.supervoxels import estimate_normals

#: bins of the normal-cosine histogram (GrowSP)
HIST_BINS = 10


def normal_cosine_histogram(normals: np.ndarray, bins: int = HIST_BINS, max_normals: int = 256) -> np.ndarray:
    """Histogram over [-1, 1] of the cosines between the distinct pairs of ``normals``.

    normals: (n, 3) float, unit or not (normalised here; zero rows are dropped).  At most ``max_normals``
    normals are used, evenly spaced over the rows (the pair count grows with n², so big planes are sampled).
    Returns (bins,) float64 summing to 1; all zeros when fewer than two usable normals remain.
    A plane (parallel normals) puts everything into the last bin; normals uniform on the sphere give a
    flat histogram (the cosine of two independent uniform unit vectors is uniform on [-1, 1]).
    """
    normals = np.asarray(normals, dtype=np.float64).reshape(-1, 3)
    length = np.linalg.norm(normals, axis=1)
    normals = normals[length > 0] / length[length > 0, None]
    if normals.shape[0] > max_normals:
        normals = normals[np.linspace(0, normals.shape[0] - 1, max_normals).round().astype(np.int64)]
    n = normals.shape[0]
    if n < 2:
        return np.zeros(bins, dtype=np.float64)
    i, j = np.triu_indices(n, k=1)
    cos = np.clip(np.einsum("pd,pd->p", normals[i], normals[j]), -1.0, 1.0)
    index = np.minimum(((cos + 1.0) * 0.5 * bins).astype(np.int64), bins - 1)
    counts = np.bincount(index, minlength=bins).astype(np.float64)
    return counts / counts.sum()


def orient_towards(normals: np.ndarray, xyz: np.ndarray, viewpoint: np.ndarray) -> np.ndarray:
    """Flip each normal to point towards ``viewpoint``.

    normals: (n, 3) float unit; xyz: (n, 3) float metres; viewpoint: (3,) float metres.  Returns (n, 3) float32.
    """
    facing = np.einsum("nd,nd->n", normals, np.asarray(viewpoint)[None, :] - xyz)
    return np.where(facing[:, None] < 0, -normals, normals).astype(np.float32)


@dataclass(frozen=True)
class SupervoxelDescriptors:
    """Per-super-voxel hand-crafted features of one scene.

    ids: (S,) int64 super-voxel ids present (sorted; -1 excluded).
    rgb: (S, 3) float32 mean colour, ``rgb / 255 - 0.5`` (zeros for a scene without colour).
    hist: (S, HIST_BINS) float32 normal-cosine histograms.
    """

    ids: np.ndarray
    rgb: np.ndarray
    hist: np.ndarray


def supervoxel_descriptors(xyz: np.ndarray, rgb: np.ndarray | None, supervoxel: np.ndarray,
                           voxel_size_m: float = 0.05, normal_neighbours: int = 16, bins: int = HIST_BINS,
                           max_normals: int = 256) -> SupervoxelDescriptors:
    """Mean colour and normal-cosine histogram of every super-voxel of one scene.

    xyz: (N, 3) float32 metres.  rgb: (N, 3) uint8 or None.  supervoxel: (N,) int, -1 = none.
    Normals are estimated once per ``voxel_size_m`` voxel (GrowSP: 5 cm) from its ``normal_neighbours``
    nearest voxels and oriented towards the scene centroid; a super-voxel's histogram is over its voxels
    (each voxel once, however many of its points it holds).
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    supervoxel = np.asarray(supervoxel, dtype=np.int64)
    if supervoxel.shape != (xyz.shape[0],):
        raise ValueError(f"supervoxel has shape {supervoxel.shape}, expected ({xyz.shape[0]},)")
    ids, member = np.unique(supervoxel, return_inverse=True)
    member = member.reshape(-1)
    if ids.size and ids[0] < 0:
        ids, member = ids[1:], member - 1  # -1 (no super-voxel) becomes member -1
    num = ids.size
    colour = np.zeros((num, 3), dtype=np.float32)
    if rgb is not None and num:
        valid = member >= 0
        sums = np.zeros((num, 3))
        np.add.at(sums, member[valid], np.asarray(rgb, dtype=np.float64)[valid] / 255.0 - 0.5)
        colour = (sums / np.bincount(member[valid], minlength=num)[:, None]).astype(np.float32)
    hist = np.zeros((num, bins), dtype=np.float32)
    if num:
        grid = voxelize(xyz, voxel_size_m)
        centres = voxel_mean(xyz, grid).astype(np.float64)
        normals, _ = estimate_normals(centres, normal_neighbours)
        normals = orient_towards(normals, centres, xyz.mean(axis=0))
        valid = member >= 0
        pairs = np.unique(np.stack([member[valid], grid.inverse[valid]], axis=1), axis=0)
        starts = np.searchsorted(pairs[:, 0], np.arange(num + 1))
        for s in range(num):
            voxels = pairs[starts[s]:starts[s + 1], 1]
            hist[s] = normal_cosine_histogram(normals[voxels], bins, max_normals)
    return SupervoxelDescriptors(ids=ids, rgb=colour, hist=hist)


def warmup_features(neural: np.ndarray, rgb: np.ndarray, hist: np.ndarray, c_rgb: float = 3.0,
                    c_shape: float = 3.0) -> np.ndarray:
    """K-means input during the warm-up: ``normalise([normalise(neural), c_rgb rgb, c_shape hist])``.

    neural: (S, H) mean network feature per super-voxel; rgb: (S, 3); hist: (S, B).
    Returns (S, H + 3 + B) float32, rows of unit length (zero rows stay zero).
    """
    if not (neural.shape[0] == rgb.shape[0] == hist.shape[0]):
        raise ValueError(f"warm-up features: {neural.shape[0]} neural, {rgb.shape[0]} colour and "
                         f"{hist.shape[0]} histogram rows must match")
    joined = np.concatenate([l2_normalise(neural), c_rgb * rgb, c_shape * hist], axis=1)
    return l2_normalise(joined)


def l2_normalise(rows: np.ndarray) -> np.ndarray:
    """(S, F) -> (S, F) float32 rows of unit Euclidean length (zero rows stay zero)."""
    rows = np.asarray(rows, dtype=np.float32)
    norm = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norm, 1e-12)
