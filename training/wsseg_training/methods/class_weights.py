"""Per-class weights of a cross-entropy from label counts, shared by the methods that offer them (``full``, ``otoc``).

Both methods divide the weighted loss by the summed weights of the labelled points, so a common factor on the
weights does not change the loss; each method keeps its own normalisation for readable logged weights.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from wsseg.core.classes import IGNORE_INDEX


def label_counts(labels: Iterable[np.ndarray], num_classes: int) -> np.ndarray:
    """(C,) int64 labelled points per class over several scenes' (N_i,) int labels (``IGNORE_INDEX`` skipped)."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for scene in labels:
        scene = np.asarray(scene)
        counts += np.bincount(scene[scene != IGNORE_INDEX], minlength=num_classes)[:num_classes]
    return counts


def inverse_frequency(counts: np.ndarray, exponent: float) -> np.ndarray:
    """(C,) counts -> (C,) float64 ``share_c ** -exponent`` for present classes, 0 for classes without a point.

    share_c is the class's fraction of all counted points; exponent 1 = inverse frequency, 0.5 = its square root,
    0 = all present classes equal.
    """
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = (counts[present] / counts[present].sum()) ** -exponent
    return weights
