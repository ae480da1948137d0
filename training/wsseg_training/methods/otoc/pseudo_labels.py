"""Pseudo labels of the self-training loop: the initial click expansion (Algorithm 1 line 1), the update
Y_t -> Y_{t+1} from the confident super-voxels, coverage, and pseudo-label quality for logging.

Arrays here are numpy (they live in ``TrainScene.point_targets``): labels are (N,) int64 with
``IGNORE_INDEX`` (-1) where unlabelled; ``supervoxel`` is (N,) int, -1 where a point has none.
"""

from __future__ import annotations

import numpy as np
import torch

from wsseg.core.classes import IGNORE_INDEX, STRUCTURE_CLASSES, ClassTable
from wsseg_training.evaluation.metrics import ConfusionMatrix
from wsseg_training.methods.common.segments import Segments
from wsseg_training.methods.otoc.config import OtocConfig


def _check_points(name: str, array: np.ndarray, n: int) -> None:
    if array.shape[0] != n:
        raise ValueError(f"'{name}' has {array.shape[0]} rows, expected {n} (one per point)")


def expand_clicks(clicks: np.ndarray, supervoxel: np.ndarray, num_classes: int, xyz: np.ndarray | None = None,
                  radius_m: float | None = None, capped: np.ndarray | None = None) -> np.ndarray:
    """Initial pseudo labels Y_0: each click's class spread over its super-voxel.

    clicks: (N,) int64, class id at clicked points, ``IGNORE_INDEX`` elsewhere (``Clicks.point_labels``).
    supervoxel: (N,) int super-voxel id, -1 = none.  Returns (N,) int64.

    Without ``radius_m`` (Algorithm 1 line 1): every click labels its whole super-voxel.  Several clicks in one
    super-voxel vote: the majority class wins; a tie leaves the super-voxel unlabelled.

    With ``radius_m`` (metres), ``xyz`` (N, 3) float metres and ``capped`` (C,) bool: a click of a capped class
    labels only the points of its super-voxel within ``radius_m`` of it (the nearest such click wins where
    balls overlap, over any vote); only the other clicks vote for whole super-voxels.

    Either way a clicked point keeps its own click (a human said so), and a click on a point without a
    super-voxel labels that point only.
    """
    clicks = np.asarray(clicks).astype(np.int64)
    supervoxel = np.asarray(supervoxel).astype(np.int64)
    _check_points("supervoxel", supervoxel, clicks.shape[0])
    clicked = clicks >= 0
    ball = np.zeros_like(clicked)
    if radius_m is not None:
        if xyz is None or capped is None:
            raise ValueError("expand_clicks: radius_m needs xyz and capped")
        _check_points("xyz", np.asarray(xyz), clicks.shape[0])
        if np.asarray(capped).shape != (num_classes,):
            raise ValueError(f"expand_clicks: capped has shape {np.asarray(capped).shape}, expected ({num_classes},)")
        ball = clicked & np.asarray(capped, dtype=bool)[np.where(clicked, clicks, 0)]
    segments = Segments.from_ids(torch.from_numpy(supervoxel))
    votes = segments.majority(torch.from_numpy(np.where(ball, IGNORE_INDEX, clicks)), num_classes)
    labels = segments.to_points(votes, IGNORE_INDEX).numpy().astype(np.int64)
    if ball.any():
        _label_balls(labels, clicks, supervoxel, np.asarray(xyz, dtype=np.float64), np.flatnonzero(ball),
                     float(radius_m))  # type: ignore[arg-type]
    labels[clicked] = clicks[clicked]
    return labels


def _label_balls(labels: np.ndarray, clicks: np.ndarray, supervoxel: np.ndarray, xyz: np.ndarray,
                 centres: np.ndarray, radius_m: float) -> None:
    """In place: points of each centre click's super-voxel within ``radius_m`` take its class (nearest wins)."""
    order = np.argsort(supervoxel, kind="stable")
    sorted_ids = supervoxel[order]
    nearest = np.full(labels.shape[0], np.inf)
    for centre in centres:
        sv = supervoxel[centre]
        if sv < 0:
            continue
        members = order[np.searchsorted(sorted_ids, sv, "left"):np.searchsorted(sorted_ids, sv, "right")]
        distance = np.linalg.norm(xyz[members] - xyz[centre], axis=1)
        inside = (distance <= radius_m) & (distance < nearest[members])
        labels[members[inside]] = clicks[centre]
        nearest[members[inside]] = distance[inside]


def object_classes(classes: ClassTable, structure: tuple[str, ...] | None = None) -> np.ndarray:
    """(C,) bool: classes whose clicks :func:`expand_clicks` limits to a ball -- every class but the structure ones.

    structure: class names; None = the table's ``STRUCTURE_CLASSES`` entry (a table without one: no class is
    limited, so every click expands to its whole super-voxel).  ``ValueError`` names an unknown class.
    """
    names = STRUCTURE_CLASSES.get(classes.name, tuple(classes.names)) if structure is None else structure
    unknown = sorted(set(names) - set(classes.names))
    if unknown:
        raise ValueError(f"structure classes {unknown} are not in class table {classes.name!r} {list(classes.names)}")
    return np.array([name not in names for name in classes.names], dtype=bool)


def initial_pseudo_labels(clicks: np.ndarray, supervoxel: np.ndarray, xyz: np.ndarray, classes: ClassTable,
                          config: OtocConfig) -> np.ndarray:
    """Y_0 of a scene under ``config``: :func:`expand_clicks`, object clicks limited to ``click_radius_m``.

    clicks, supervoxel: (N,) as in :func:`expand_clicks`; xyz: (N, 3) float32 metres.  Returns (N,) int64.
    """
    if config.click_radius_m is None:
        return expand_clicks(clicks, supervoxel, classes.num_classes)
    return expand_clicks(clicks, supervoxel, classes.num_classes, xyz=xyz, radius_m=config.click_radius_m,
                         capped=object_classes(classes, config.structure_classes))


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
