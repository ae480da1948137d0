"""Bootstrapping ("Ours*", DYL §4.1): dense pseudo labels from the trained classifier, kept where consistent
with the scene's tags; a fresh network is then trained on them with per-point cross-entropy."""

from __future__ import annotations

import numpy as np

from wsseg.core.classes import IGNORE_INDEX


def bootstrap_labels(predicted: np.ndarray, tags: np.ndarray) -> np.ndarray:
    """Keep the points whose predicted class is among the scene's tags.

    predicted: (N,) int predicted class per point.  tags: (C,) multi-hot (bool / 0-1 float) of the scene.
    Returns (N,) int64: the predicted class where tagged, ``IGNORE_INDEX`` elsewhere.
    """
    predicted = np.asarray(predicted, dtype=np.int64)
    tagged = np.asarray(tags) > 0.5
    if predicted.size and (predicted.min() < 0 or predicted.max() >= tagged.shape[0]):
        raise ValueError(f"predicted classes span {predicted.min()}..{predicted.max()}, "
                         f"outside the {tagged.shape[0]} tagged classes")
    return np.where(tagged[predicted], predicted, IGNORE_INDEX).astype(np.int64)
