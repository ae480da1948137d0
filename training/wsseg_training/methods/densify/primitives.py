"""Densify's primitives: one K-means round over every training super-voxel, and the state it leaves.

A round (DYL §3.2.1, Supp. A.2, A.4; METHOD_NOTES §5.5 step 1), given the eval-mode point features of every
training scene:

1. per super-voxel, the mean point feature, L2-normalised (:func:`supervoxel_means`);
2. during the warm-up, concatenated with ``c_rgb`` x mean colour and ``c_shape`` x normal-cosine histogram and
   normalised again (:func:`~wsseg_training.methods.densify.handcrafted.warmup_features`);
3. K-means with K clusters over the super-voxels of the whole training set (:mod:`.kmeans`);
4. the primitives ``f_prim`` = the L2-normalised mean of the members' *neural* rows (the hand-crafted part
   only steers the clustering);
5. after the warm-up, the primitives themselves are clustered into ``groups`` groups for assignment filtering.

Every point then carries its super-voxel's primitive (-1 for points without a super-voxel).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from wsseg_training.methods.densify.handcrafted import l2_normalise, warmup_features
from wsseg_training.methods.densify.kmeans import kmeans, member_means


@dataclass(frozen=True)
class Primitives:
    """The result of one K-means round.

    centroids: (K, H) float32 unit rows, the neural primitives.  assignment: per training scene, (S_i,) int64
    primitive of each of its super-voxels (node order).  groups: (K,) int64 filtering group of every primitive,
    or None before the warm-up ends.  epoch: the epoch whose start ran the round.  inertia: K-means objective.
    """

    centroids: np.ndarray
    assignment: list[np.ndarray]
    groups: np.ndarray | None
    epoch: int
    inertia: float

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    def point_primitives(self, scene: int, node: np.ndarray) -> np.ndarray:
        """(N,) int64 primitive of every point of training scene ``scene``; node: (N,) super-voxel node, -1 = none."""
        out = np.full(node.shape[0], -1, dtype=np.int64)
        has = node >= 0
        out[has] = self.assignment[scene][node[has]]
        return out

    def to_state(self) -> dict:
        """Plain tensors and numbers for a checkpoint (:meth:`from_state` inverts it)."""
        return {"centroids": torch.from_numpy(self.centroids.copy()),
                "assignment": torch.from_numpy(np.concatenate(self.assignment) if self.assignment else
                                               np.zeros(0, np.int64)),
                "lengths": [int(a.shape[0]) for a in self.assignment],
                "groups": None if self.groups is None else torch.from_numpy(self.groups.copy()),
                "epoch": self.epoch, "inertia": self.inertia}

    @classmethod
    def from_state(cls, state: dict) -> Primitives:
        flat = state["assignment"].numpy().astype(np.int64)
        bounds = np.cumsum([0, *state["lengths"]])
        groups = state.get("groups")
        return cls(centroids=state["centroids"].numpy().astype(np.float32),
                   assignment=[flat[a:b] for a, b in itertools.pairwise(bounds)],
                   groups=None if groups is None else groups.numpy().astype(np.int64),
                   epoch=int(state["epoch"]), inertia=float(state["inertia"]))


def supervoxel_nodes(supervoxel: np.ndarray, min_points: int) -> tuple[np.ndarray, int]:
    """Renumber a scene's super-voxels to nodes ``0..S-1``, dropping those with fewer than ``min_points`` points.

    supervoxel: (N,) int, -1 = none.  Returns (node (N,) int64 with -1 for dropped / missing, S).
    """
    supervoxel = np.asarray(supervoxel, dtype=np.int64)
    node = np.full(supervoxel.shape[0], -1, dtype=np.int64)
    has = supervoxel >= 0
    if not has.any():
        return node, 0
    ids, inverse, counts = np.unique(supervoxel[has], return_inverse=True, return_counts=True)
    keep = counts >= min_points
    renumber = np.full(ids.shape[0], -1, dtype=np.int64)
    renumber[keep] = np.arange(int(keep.sum()))
    node[has] = renumber[inverse.reshape(-1)]
    return node, int(keep.sum())


def supervoxel_means(features: torch.Tensor, node: torch.Tensor, num_nodes: int) -> np.ndarray:
    """(S, H) float32 mean point feature of every node (zeros for a node without points).

    features: (N, H) float; node: (N,) int64 in 0..S-1 or -1.
    """
    valid = node >= 0
    sums = features.new_zeros((num_nodes, features.shape[1]), dtype=torch.float64)
    sums.index_add_(0, node[valid], features[valid].to(torch.float64))
    counts = torch.bincount(node[valid], minlength=num_nodes).clamp(min=1).to(torch.float64)
    return (sums / counts[:, None]).cpu().numpy().astype(np.float32)


def cluster_primitives(neural: Sequence[np.ndarray], rgb: Sequence[np.ndarray], hist: Sequence[np.ndarray],
                       k: int, epoch: int, seed: int, handcrafted: bool, groups: int = 0, c_rgb: float = 3.0,
                       c_shape: float = 3.0, iterations: int = 20, threads: int | None = None) -> Primitives:
    """One K-means round over the super-voxels of every scene (module docstring).

    neural / rgb / hist: per scene (S_i, H) mean features, (S_i, 3) mean colours, (S_i, B) histograms.
    groups: filtering groups of the primitives (0 = none).  The K-means seeds derive from (seed, epoch).
    """
    lengths = [int(n.shape[0]) for n in neural]
    neural_all = l2_normalise(np.concatenate(neural)) if neural else np.zeros((0, 1), np.float32)
    if neural_all.shape[0] == 0:
        raise ValueError("k-means round: the training scenes have no super-voxel")
    rows = warmup_features(neural_all, np.concatenate(rgb), np.concatenate(hist), c_rgb, c_shape) \
        if handcrafted else neural_all
    seed_round = int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
    result = kmeans(rows, k, seed=seed_round, iterations=iterations, threads=threads)
    centroids = l2_normalise(member_means(neural_all, result.assignment, result.k))
    group_of = None
    if groups > 0:
        group_of = kmeans(centroids, groups, seed=seed_round + 1, iterations=iterations, threads=threads).assignment
    bounds = np.cumsum([0, *lengths])
    return Primitives(centroids=centroids,
                      assignment=[result.assignment[a:b] for a, b in itertools.pairwise(bounds)],
                      groups=group_of, epoch=epoch, inertia=result.inertia)
