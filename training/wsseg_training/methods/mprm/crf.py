"""Dense-CRF refinement of the pseudo labels [MPRM §4.3; its ``crf_postprocessing.py``], with the shared exact point
CRF (:func:`wsseg_training.methods.common.dense_crf.dense_crf`, :data:`MPRM_KERNELS`: xyz Gaussian θ 0.2 m weight 3,
xyz + RGB bilateral θ 0.2 m / 0.04 weight 10).

MPRM runs it on its 4 cm sub-sampled cloud; here it runs on the voxel centres of a grid (default: the network's):
per voxel, the centroid of its points, their mean colour and their mean voted scores; a voxel allows the classes
allowed at any of its points.  Unary = -log(s p + (1 - s) / K) with p the softmax of the scores over the K allowed
classes and s = 0.5 (pydensecrf's ``unary_from_softmax(scale=0.5)``, the official code's), a very large energy for
the others, so no mean-field step can move a voxel to a class its tags exclude.  The refined voxel labels are
carried back to the points; a point whose voxel label its own passes exclude keeps its own argmax.
"""

from __future__ import annotations

import numpy as np
import torch

from wsseg.core.voxelize import voxel_mean, voxelize
from wsseg_training.methods.common.dense_crf import MPRM_KERNELS, PairwiseKernel, dense_crf

#: the energy of an excluded class: exp(-1e4) is 0 in float32, and it stays finite (no inf - inf in mean field)
EXCLUDED_ENERGY = 1.0e4


def mixed_unary(scores: torch.Tensor, allowed: torch.Tensor, scale: float = 0.5) -> torch.Tensor:
    """Unary energies (N, C) from scores (N, C) float and allowed (N, C) bool (module docstring)."""
    logits = scores.float().masked_fill(~allowed, float("-inf"))
    probabilities = torch.softmax(logits, dim=1)
    uniform = allowed.float() / allowed.sum(dim=1, keepdim=True).clamp(min=1).float()
    mixed = scale * probabilities + (1.0 - scale) * uniform
    return torch.where(allowed, -torch.log(mixed.clamp(min=1e-12)), torch.full_like(mixed, EXCLUDED_ENERGY))


def refine_with_crf(scores: np.ndarray, allowed: np.ndarray, xyz: np.ndarray, rgb: np.ndarray | None,
                    voxel_size_m: float, iterations: int = 5, scale: float = 0.5,
                    kernels: tuple[PairwiseKernel, ...] = MPRM_KERNELS, valid: np.ndarray | None = None) -> np.ndarray:
    """CRF-refined labels (N,) int64 of one scene (module docstring).

    scores: (N, C) float voted scores (finite).  allowed: (N, C) bool.  xyz: (N, 3) metres.  rgb: (N, 3) uint8
    (None: the Gaussian kernels only).  voxel_size_m: the CRF's grid.  valid: (N,) bool points that have scores
    (others get -1 and take no part).
    """
    n = int(xyz.shape[0])
    valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    labels = np.full(n, -1, np.int64)
    if not valid.any():
        return labels
    allowed = np.asarray(allowed, bool) | ~np.asarray(allowed, bool).any(axis=1, keepdims=True)
    points = np.flatnonzero(valid)
    grid = voxelize(np.asarray(xyz, np.float32)[points], voxel_size_m)
    voxel_scores = voxel_mean(np.asarray(scores, np.float32)[points], grid)
    voxel_allowed = np.zeros((grid.num_voxels, allowed.shape[1]), bool)
    np.logical_or.at(voxel_allowed, grid.inverse, allowed[points])
    centres = voxel_mean(np.asarray(xyz, np.float64)[points], grid)
    colours = None if rgb is None else voxel_mean(np.asarray(rgb, np.float32)[points] / 255.0, grid)
    use = kernels if colours is not None else tuple(k for k in kernels if k.theta_rgb is None)
    if not use:
        raise ValueError("MPRM CRF: no kernel left without colour (every kernel is bilateral)")
    unary = mixed_unary(torch.from_numpy(voxel_scores), torch.from_numpy(voxel_allowed), scale)
    q = dense_crf(unary, centres, colours, kernels=use, iterations=iterations)
    voxel_labels = q.argmax(dim=1).numpy().astype(np.int64)
    carried = voxel_labels[grid.inverse]
    own = np.where(allowed[points], scores[points], -np.inf).argmax(axis=1)
    consistent = allowed[points, carried]
    labels[points] = np.where(consistent, carried, own)
    return labels
