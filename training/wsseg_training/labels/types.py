"""Typed weak labels, one class per kind (ARCHITECTURE.md decision 6).

Every object carries a :class:`Header` (kind, schema version, the dataset it
was made for, seed, options) and answers the questions training asks: which
points are labelled and with what, which classes a scene or subcloud holds,
which scenes are fully labelled.  Point indices index the scene record's
points; class ids index the dataset's class table; ``IGNORE_INDEX`` (-1)
marks unlabelled points.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wsseg.core.classes import IGNORE_INDEX

WEAK_LABEL_FORMAT = "wsseg-weak-labels"
#: kind -> current schema version
SCHEMA_VERSIONS: dict[str, int] = {
    "clicks": 1, "sparse_points": 1, "scene_tags": 1, "subcloud_tags": 1, "labelled_scenes": 1,
}
KINDS = tuple(SCHEMA_VERSIONS)


class WeakLabelError(ValueError):
    """A weak-label file is malformed or does not belong to the dataset; the message names file, field, value."""


def dataset_fingerprint(scene_points: Mapping[str, int]) -> str:
    """sha256 hex of the sorted ``scene<TAB>point count`` lines of the scenes a file covers."""
    text = "".join(f"{name}\t{int(n)}\n" for name, n in sorted(scene_points.items()))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Header:
    """What every weak-label file states about itself.

    scene_points: covered scene -> number of points N of its record (the fingerprint's input).
    class_names: the dataset's class table when the file was made.
    """

    kind: str
    dataset: str
    class_names: tuple[str, ...]
    scene_points: dict[str, int]
    seed: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    schema_version: int = 0

    def __post_init__(self) -> None:
        if self.schema_version == 0:
            object.__setattr__(self, "schema_version", SCHEMA_VERSIONS[self.kind])

    @property
    def fingerprint(self) -> str:
        return dataset_fingerprint(self.scene_points)

    @property
    def total_points(self) -> int:
        return int(sum(self.scene_points.values()))

    def scene_names(self) -> list[str]:
        return list(self.scene_points)


def _labels_from(points: np.ndarray, classes: np.ndarray, num_points: int) -> np.ndarray:
    labels = np.full(num_points, IGNORE_INDEX, dtype=np.int64)
    if points.size and int(points.max()) >= num_points:
        raise ValueError(f"point index {int(points.max())} outside the cloud (N={num_points})")
    labels[points] = classes
    return labels


@dataclass(frozen=True)
class PointLabels:
    """Labelled points of one scene.

    point: (K,) int64 indices into the scene's points; cls: (K,) int64 class ids;
    instance: (K,) int64 instance id of the clicked object, -1 when unknown.
    """

    point: np.ndarray
    cls: np.ndarray
    instance: np.ndarray

    def __len__(self) -> int:
        return int(self.point.shape[0])


@dataclass(frozen=True)
class _PointKind:
    header: Header
    scenes: dict[str, PointLabels]

    def point_labels(self, scene: str, num_points: int) -> np.ndarray:
        """(N,) int64: class id at the labelled points, ``IGNORE_INDEX`` elsewhere."""
        if scene not in self.scenes:
            raise KeyError(f"{self.header.kind}: no labels for scene {scene!r}")
        entry = self.scenes[scene]
        return _labels_from(entry.point, entry.cls, num_points)

    def num_labelled(self) -> int:
        """Distinct labelled points over all scenes."""
        return int(sum(np.unique(e.point).size for e in self.scenes.values()))

    def class_counts(self, num_classes: int) -> np.ndarray:
        """(C,) int64 labels per class (clicks counted once each)."""
        counts = np.zeros(num_classes, dtype=np.int64)
        for entry in self.scenes.values():
            counts += np.bincount(entry.cls, minlength=num_classes)[:num_classes]
        return counts


@dataclass(frozen=True)
class Clicks(_PointKind):
    """``clicks``: (scene, point, class, instance) per click (1T1C, 1T3C, fractions, N points per scene)."""

    kind = "clicks"


@dataclass(frozen=True)
class SparsePoints(_PointKind):
    """``sparse_points``: a fraction of the points of every class labelled (DSP 10% / 1%)."""

    kind = "sparse_points"


@dataclass(frozen=True)
class SceneTags:
    """``scene_tags``: class ids present per scene; ``removed`` lists (scene, class) tags dropped on purpose."""

    header: Header
    tags: dict[str, tuple[int, ...]]
    removed: tuple[tuple[str, int], ...] = ()
    kind = "scene_tags"

    def multi_hot(self, scene: str, num_classes: int) -> np.ndarray:
        """(C,) float32, 1 for every tagged class."""
        out = np.zeros(num_classes, dtype=np.float32)
        out[list(self.tags[scene])] = 1.0
        return out


@dataclass(frozen=True)
class Subcloud:
    """A ball of the scene: centre (3,) float64 metres, radius_m, tagged class ids, its point count when made."""

    centre: np.ndarray
    radius_m: float
    classes: tuple[int, ...]
    num_points: int = 0

    def mask(self, xyz: np.ndarray) -> np.ndarray:
        """xyz: (N, 3) float metres -> (N,) bool, points closer than ``radius_m`` to the centre (MPRM Eq. 1:
        ||p - q|| < r)."""
        d2 = ((np.asarray(xyz, dtype=np.float64) - self.centre) ** 2).sum(axis=1)
        return d2 < self.radius_m**2

    def multi_hot(self, num_classes: int) -> np.ndarray:
        out = np.zeros(num_classes, dtype=np.float32)
        out[list(self.classes)] = 1.0
        return out


@dataclass(frozen=True)
class SubcloudTags:
    """``subcloud_tags``: per scene, the seeded subclouds with their class tags (MPRM)."""

    header: Header
    scenes: dict[str, tuple[Subcloud, ...]]
    kind = "subcloud_tags"


@dataclass(frozen=True)
class Cut:
    """A scene split in two: points with ``xyz[:, axis] < below_m`` are the labelled part."""

    axis: int
    below_m: float


@dataclass(frozen=True)
class LabelledScenes:
    """``labelled_scenes``: fully labelled scenes, unlabelled scenes, and at most one cut scene (WS3D)."""

    header: Header
    labelled: tuple[str, ...]
    unlabelled: tuple[str, ...]
    cuts: dict[str, Cut] = field(default_factory=dict)
    kind = "labelled_scenes"

    def labelled_mask(self, scene: str, xyz: np.ndarray) -> np.ndarray:
        """xyz: (N, 3) float metres -> (N,) bool, True where ground truth may be used."""
        n = int(np.asarray(xyz).shape[0])
        if scene in self.cuts:
            cut = self.cuts[scene]
            return np.asarray(xyz)[:, cut.axis] < cut.below_m
        if scene in self.labelled:
            return np.ones(n, dtype=bool)
        if scene in self.unlabelled:
            return np.zeros(n, dtype=bool)
        raise KeyError(f"labelled_scenes: scene {scene!r} is not in the file")


WeakLabels = Clicks | SparsePoints | SceneTags | SubcloudTags | LabelledScenes
