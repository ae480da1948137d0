"""Per-class weights of a cross-entropy from label counts, with one vocabulary for every method.

``class_weighting`` (a method option) is one of::

    none                     every class weighs 1
    inverse_sqrt_frequency   share_c ** -0.5   (share_c = the class's fraction of the counted labelled points)
    inverse_frequency        share_c ** -1

``inverse_sqrt`` and ``inverse`` are accepted aliases (1T1C's first spelling); :func:`canonical_weighting`
maps them.  Two normalisations, chosen by the caller because each keeps logged weights readable for its case
(the weighted losses divide by the summed weights of the labelled points, so a common factor on the weights
does not change the loss):

* ``classes``: mean 1 over the classes that have a labelled point, 0 for the others (``full``);
* ``points``: the labelled points' mean weight is 1, classes without a point get 1 (``otoc``, recomputed
  every round from the pseudo labels).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from wsseg.core.classes import IGNORE_INDEX

#: ``class_weighting`` values -> exponent on the inverse class frequency
WEIGHTING_EXPONENTS: dict[str, float] = {"none": 0.0, "inverse_sqrt_frequency": 0.5, "inverse_frequency": 1.0}
#: accepted older spellings -> the canonical name
WEIGHTING_ALIASES: dict[str, str] = {"inverse_sqrt": "inverse_sqrt_frequency", "inverse": "inverse_frequency"}
#: every accepted ``class_weighting`` spelling (canonical first)
CLASS_WEIGHTINGS: tuple[str, ...] = (*WEIGHTING_EXPONENTS, *WEIGHTING_ALIASES)
#: :func:`class_weights` normalisations
NORMALISATIONS = ("classes", "points")


def canonical_weighting(name: str) -> str:
    """The canonical ``class_weighting`` name of ``name`` (an alias or itself); ``ValueError`` otherwise."""
    name = WEIGHTING_ALIASES.get(name, name)
    if name not in WEIGHTING_EXPONENTS:
        raise ValueError(f"class weighting {name!r} is not one of {CLASS_WEIGHTINGS}")
    return name


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


def class_weights(counts: np.ndarray, weighting: str, normalisation: str = "classes") -> np.ndarray:
    """counts: (C,) labelled points per class -> (C,) float32 loss weights (module docstring).

    weighting: a ``class_weighting`` value (aliases accepted).  normalisation: ``classes`` or ``points``.
    """
    exponent = WEIGHTING_EXPONENTS[canonical_weighting(weighting)]
    counts = np.asarray(counts)
    if normalisation == "classes":
        if exponent == 0.0:
            return np.ones(len(counts), dtype=np.float32)
        weights = inverse_frequency(counts, exponent)
        present = weights > 0
        if present.any():
            weights[present] /= weights[present].mean()
        return weights.astype(np.float32)
    if normalisation != "points":
        raise ValueError(f"class weight normalisation {normalisation!r} is not one of {NORMALISATIONS}")
    raw = inverse_frequency(counts, exponent)
    present = counts > 0
    weights = np.ones(len(counts))
    if exponent > 0 and present.any():
        share = counts[present] / counts.sum()
        weights[present] = raw[present] / float((share * raw[present]).sum())
    return weights.astype(np.float32)
