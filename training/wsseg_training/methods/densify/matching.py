"""Semantic assignment of a scene's primitives to its tagged classes (DYL §3.2.2, Supp. A.4).

Per scene, primitive k has a score ``E[k, c] = y_c · L(f̄_k; ω)_c`` (Eq. 7): the classifier's logit of its
mean feature, restricted to the tagged classes.

* :func:`hungarian_match` (Eq. 6, §4.4): a maximum-score bipartite matching between the scene's primitives
  and its *present* classes, one primitive per class (``scipy.optimize.linear_sum_assignment``); the other
  primitives get -1 and are ignored.  With fewer primitives than classes, some classes go unmatched.
* :func:`naive_match` (Tab. 4's ℓ*_match): every primitive takes its best-scoring present class.
* :func:`filter_assignments` (Supp. A.4): after the warm-up the K primitive centroids are clustered into G
  groups; a group whose primitives carry different labels in a scene is un-assigned there, a group with one
  label spreads it to its other primitives in that scene.

Our reading of the ambiguous A.4 rule ("when a new group has more than two primitives with different
assigned labels, we un-assign all the primitives of that group"): the conflict the paragraph motivates is
two semantically similar primitives carrying *two* different labels, so a group is in conflict as soon as
its matched primitives show ``conflict_labels = 2`` distinct labels.  The literal "more than two" is
``conflict_labels = 3``.  Since Hungarian matching gives each class one primitive per scene, distinct labels
in a group = matched primitives in it.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

UNMATCHED = -1


def hungarian_match(scores: np.ndarray, present: np.ndarray) -> np.ndarray:
    """One primitive per present class, maximising the summed score.

    scores: (K_s, C) float, ``E`` of the scene's primitives (rows) for every class.  present: (C,) bool tags.
    Returns (K_s,) int64: the class matched to each primitive, ``UNMATCHED`` (-1) for the others.
    """
    scores = np.asarray(scores, dtype=np.float64)
    present = np.asarray(present, dtype=bool)
    if scores.ndim != 2 or scores.shape[1] != present.shape[0]:
        raise ValueError(f"scores {scores.shape} and tags {present.shape} disagree on the number of classes")
    out = np.full(scores.shape[0], UNMATCHED, dtype=np.int64)
    classes = np.flatnonzero(present)
    if classes.size == 0 or scores.shape[0] == 0:
        return out
    rows, cols = linear_sum_assignment(scores[:, classes], maximize=True)
    out[rows] = classes[cols]
    return out


def naive_match(scores: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Every primitive takes its best-scoring present class (ℓ*_match of Tab. 4).

    scores: (K_s, C); present: (C,) bool.  Returns (K_s,) int64 (all -1 when no class is tagged).
    """
    scores = np.asarray(scores, dtype=np.float64)
    present = np.asarray(present, dtype=bool)
    if not present.any():
        return np.full(scores.shape[0], UNMATCHED, dtype=np.int64)
    masked = np.where(present[None, :], scores, -np.inf)
    return masked.argmax(axis=1).astype(np.int64)


def filter_assignments(labels: np.ndarray, primitives: np.ndarray, group_of: np.ndarray,
                       conflict_labels: int = 2) -> np.ndarray:
    """Assignment filtering of one scene (module docstring).

    labels: (K_s,) int64 class of each of the scene's primitives, -1 = unmatched.  primitives: (K_s,) int64 their
    global primitive ids.  group_of: (K,) int64 group of every primitive.  conflict_labels: distinct labels that
    make a group a conflict.  Returns (K_s,) int64: conflicting groups -> -1, single-label groups -> that label on
    all their primitives, groups without a label unchanged (-1).
    """
    labels = np.asarray(labels, dtype=np.int64)
    groups = np.asarray(group_of, dtype=np.int64)[np.asarray(primitives, dtype=np.int64)]
    out = labels.copy()
    for group in np.unique(groups):
        mine = groups == group
        found = np.unique(labels[mine & (labels != UNMATCHED)])
        if found.size >= conflict_labels:
            out[mine] = UNMATCHED
        elif found.size == 1:
            out[mine] = found[0]
    return out
