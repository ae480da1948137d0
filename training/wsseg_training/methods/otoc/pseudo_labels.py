"""Pseudo labels of the self-training loop: the initial click expansion (Algorithm 1 line 1), the update
Y_t -> Y_{t+1} from the confident super-voxels, coverage, and pseudo-label quality for logging.

Arrays here are numpy (they live in ``TrainScene.point_targets``): labels are (N,) int64 with
``IGNORE_INDEX`` (-1) where unlabelled; ``supervoxel`` is (N,) int, -1 where a point has none.
"""

from __future__ import annotations

import numpy as np
import torch

from wsseg.core.classes import IGNORE_INDEX
from wsseg_training.evaluation.metrics import ConfusionMatrix
from wsseg_training.methods.otoc.pooling import Segments


def _check_points(name: str, array: np.ndarray, n: int) -> None:
    if array.shape[0] != n:
        raise ValueError(f"'{name}' has {array.shape[0]} rows, expected {n} (one per point)")


def expand_clicks(clicks: np.ndarray, supervoxel: np.ndarray, num_classes: int) -> np.ndarray:
    """Initial pseudo labels Y_0: each click's class spread to every point of its super-voxel.

    clicks: (N,) int64, class id at clicked points, ``IGNORE_INDEX`` elsewhere (``Clicks.point_labels``).
    supervoxel: (N,) int super-voxel id, -1 = none.  Returns (N,) int64.

    Several clicks in one super-voxel vote: the majority class wins; a tie leaves the super-voxel
    unlabelled.  A clicked point always keeps its own click (a human said so), also inside a super-voxel
    that voted otherwise, and a click on a point without super-voxel labels that point only.
    """
    clicks = np.asarray(clicks).astype(np.int64)
    supervoxel = np.asarray(supervoxel).astype(np.int64)
    _check_points("supervoxel", supervoxel, clicks.shape[0])
    segments = Segments.from_ids(torch.from_numpy(supervoxel))
    votes = segments.majority(torch.from_numpy(clicks), num_classes)
    labels = segments.to_points(votes, IGNORE_INDEX).numpy().astype(np.int64)
    clicked = clicks >= 0
    labels[clicked] = clicks[clicked]
    return labels


def clicked_supervoxel_mask(clicks: np.ndarray, supervoxel: np.ndarray) -> np.ndarray:
    """(N,) bool: points whose super-voxel holds at least one click (plus clicked points without one)."""
    clicks = np.asarray(clicks)
    supervoxel = np.asarray(supervoxel).astype(np.int64)
    _check_points("supervoxel", supervoxel, clicks.shape[0])
    clicked = clicks >= 0
    hit = np.unique(supervoxel[clicked & (supervoxel >= 0)])
    return np.isin(supervoxel, hit) & (supervoxel >= 0) | clicked


def next_pseudo_labels(point_node: np.ndarray, node_labels: np.ndarray, keep: np.ndarray,
                       initial: np.ndarray) -> np.ndarray:
    """Y_{t+1}: the labels of the kept super-voxels, with the initial (click-expanded) labels on top.

    point_node: (N,) int64 node of each point (``Segments.node``), -1 = none.  node_labels: (S,) int64 label
    of each node after propagation.  keep: (S,) bool, nodes that passed the confidence rule.  initial: (N,)
    int64, Y_0 from :func:`expand_clicks`.  Returns (N,) int64.

    Pseudo labels are rebuilt from scratch each round (as the authors' code does), so a super-voxel that
    loses confidence loses its label; the clicked super-voxels always keep their click labels.
    """
    point_node = np.asarray(point_node).astype(np.int64)
    node_labels = np.asarray(node_labels).astype(np.int64)
    keep = np.asarray(keep).astype(bool)
    initial = np.asarray(initial).astype(np.int64)
    _check_points("initial", initial, point_node.shape[0])
    if node_labels.shape != keep.shape:
        raise ValueError(f"node_labels has shape {node_labels.shape}, keep {keep.shape}")
    node_out = np.where(keep, node_labels, IGNORE_INDEX)
    labels = np.full(point_node.shape[0], IGNORE_INDEX, dtype=np.int64)
    has = point_node >= 0
    if has.any() and int(point_node[has].max()) >= node_out.shape[0]:
        raise ValueError(f"point_node {int(point_node[has].max())} outside the {node_out.shape[0]} nodes")
    labels[has] = node_out[point_node[has]]
    return np.where(initial >= 0, initial, labels)


def point_pseudo_labels(point_prob: np.ndarray, threshold: float, initial: np.ndarray) -> np.ndarray:
    """Y_{t+1} of the ``unet`` variant (Table 3 "3D U-Net": Θ's own confidence, no graph, no super-voxels).

    point_prob: (N, C) Θ's softmax per point.  A point keeps its argmax when its probability is >= threshold
    (Eq. 8 for a single point: -ln p <= -ln T).  initial: (N,) int64 Y_0, always kept.  Returns (N,) int64.
    """
    point_prob = np.asarray(point_prob)
    initial = np.asarray(initial).astype(np.int64)
    _check_points("initial", initial, point_prob.shape[0])
    labels = np.where(point_prob.max(axis=1) >= threshold, point_prob.argmax(axis=1), IGNORE_INDEX)
    return np.where(initial >= 0, initial, labels).astype(np.int64)


def coverage(labels: np.ndarray) -> float:
    """Fraction of points with a pseudo label (0 for an empty array)."""
    labels = np.asarray(labels)
    return float((labels >= 0).mean()) if labels.size else 0.0


def pseudo_label_confusion(labels: np.ndarray, truth: np.ndarray, num_classes: int) -> ConfusionMatrix:
    """Confusion of the pseudo-labelled points against ground truth -- for logging only, never for training.

    labels: (N,) int64 pseudo labels (unlabelled points are not scored).  truth: (N,) int ground truth.
    Merge the matrices of all scenes and read ``.miou()`` / ``.overall_accuracy()``.
    """
    labels = np.asarray(labels).astype(np.int64)
    truth = np.asarray(truth).astype(np.int64)
    _check_points("truth", truth, labels.shape[0])
    scored = labels >= 0
    return ConfusionMatrix(num_classes).add(truth[scored], labels[scored])
