"""How a stage draws its samples: the region of a scene each batch slot sees, and how slots are grouped.

A method declares it per stage, ``Stage(..., sampling=Sampling(region="subcloud"))``
(:mod:`wsseg_training.engine.schedule`); the default :data:`CROP` is the engine's original crop.

Regions (``Sampling.region``)::

    crop      the ``max_points`` points nearest in x, y to a random point of the scene (all if fewer)  [default]
    subcloud  the ball of one annotated sub-cloud (``TrainScene.subclouds``: centre + radius of a
              ``subcloud_tags`` file, MPRM); one epoch visits every sub-cloud once
    ball      the points within ``radius_m`` of a random point of the scene
    scene     the whole scene (Densify), never capped

``subcloud`` and ``ball`` keep at most ``max_points`` points, the nearest to the centre.  ``max_points``
None means ``data.crop_max_points`` (0 = no cap).

Groups (``Sampling.group``): consecutive slots of the global batch form groups of ``group_size``::

    single    every slot its own sample                                                   [default]
    pairs     slot 2k draws a sample as above; slot 2k+1 a partner that shares at least one class
              with it (DSP's cross-sample module): a class c of sample 2k is drawn, then a unit of another
              scene holding c and, for crop / ball, a centre on one of its points labelled c
    views     ``views`` slots with the same points (same scene, same region) and independent augmentations
              (WS3D): point i of one view is point i of every other view -- an exact correspondence

Scenes (``Sampling.scenes``): the names of the scenes whose units are drawn (None = every training scene);
e.g. WS3D trains its boundary network on the labelled scenes only.

Per-sample targets, ``tags`` (C,) float32 multi-hot (C = the class table's size):

* region ``subcloud``: the sub-cloud's annotated tags;
* otherwise, when the scene has per-point labels (``point_targets[label_key]``, ``IGNORE_INDEX`` = unlabelled):
  the classes among the sample's labelled points, so a crop that lost a class does not claim it;
* otherwise the scene's tags (``TrainScene.tags``): exact for ``scene``, an approximation for ``crop`` and
  ``ball`` -- a crop may miss a tagged class (MPRM's scene-tag training on 2 m balls makes the same one).

The classes a pair must share are these tags (with tags only, pairs share a class at the tag level).

Determinism: the units (scenes; (scene, sub-cloud) for ``subcloud``) are visited in per-epoch permutations
drawn from ``(seed, epoch)``; group g of step s takes unit ``s * groups_per_step + g`` of that sequence.
Every random number of slot j comes from ``default_rng([seed, step, j])``; the views of a group share the
region drawn from their first slot's generator, which then also augments view 0.  So a sample is a pure
function of (seed, step, slot), and with :data:`CROP` the draws are exactly the engine's original ones.
With W processes, rank r takes the groups ``g % W == r`` (a pair or a set of views never straddles ranks).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wsseg.core.classes import IGNORE_INDEX
from wsseg_training.engine.augment import augment
from wsseg_training.engine.config import DataConfig
from wsseg_training.engine.scenes import TrainScene

REGIONS = ("crop", "subcloud", "ball", "scene")
GROUPS = ("single", "pairs", "views")


@dataclass(frozen=True, kw_only=True)
class Sampling:
    """A stage's sampling (see the module docstring).

    region: crop | subcloud | ball | scene.  group: single | pairs | views.  views: slots per group for
    ``views`` (>= 2).  radius_m: ball radius, metres.  max_points: cap of crop / subcloud / ball (None =
    ``data.crop_max_points``).  label_key: the per-point target whose classes define a sample's tags.
    scenes: names of the scenes drawn from (None = all training scenes; a list is stored as a tuple).
    """

    region: str = "crop"
    group: str = "single"
    views: int = 2
    radius_m: float = 2.0
    max_points: int | None = None
    label_key: str = "labels"
    scenes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.scenes is not None:
            object.__setattr__(self, "scenes", tuple(str(n) for n in self.scenes))
        if self.region not in REGIONS:
            raise ValueError(f"sampling: region {self.region!r} is not one of {REGIONS}")
        if self.group not in GROUPS:
            raise ValueError(f"sampling: group {self.group!r} is not one of {GROUPS}")
        if self.group == "views" and self.views < 2:
            raise ValueError(f"sampling: views must be >= 2 for group 'views', got {self.views}")
        if not self.radius_m > 0:
            raise ValueError(f"sampling: radius_m must be > 0, got {self.radius_m}")
        if self.max_points is not None and self.max_points < 0:
            raise ValueError(f"sampling: max_points must be >= 0 or None, got {self.max_points}")

    @property
    def group_size(self) -> int:
        """Slots per group: 1 (single), 2 (pairs) or ``views``."""
        return {"single": 1, "pairs": 2, "views": self.views}[self.group]


#: the default: crops of ``data.crop_max_points``, one sample per slot
CROP = Sampling()


@dataclass(frozen=True)
class Sample:
    """One slot's sample.

    scene: index into the scene list.  subcloud: sub-cloud index in the scene (-1 unless region subcloud).
    pick: (K,) int64 sorted point indices into the scene.  xyz: (K, 3) float32 metres (augmented).
    rgb: (K, 3) uint8 or None.  tags: (C,) float32 multi-hot or None (no class count given).
    slot: global batch slot.  group: global group index.  member: position in the group (view index;
    0 / 1 within a pair).
    """

    scene: int
    subcloud: int
    pick: np.ndarray
    xyz: np.ndarray
    rgb: np.ndarray | None
    tags: np.ndarray | None
    slot: int
    group: int
    member: int


def crop_indices(xyz: np.ndarray, max_points: int, rng: np.random.Generator) -> np.ndarray:
    """(K,) sorted indices of the ``max_points`` points nearest in x, y to a random point (all if fewer)."""
    n = xyz.shape[0]
    if max_points <= 0 or n <= max_points:
        return np.arange(n, dtype=np.int64)
    return crop_around(xyz, int(rng.integers(n)), max_points)


def crop_around(xyz: np.ndarray, centre: int, max_points: int) -> np.ndarray:
    """(K,) sorted indices of the ``max_points`` points nearest in x, y to point ``centre`` (all if fewer)."""
    n = xyz.shape[0]
    if max_points <= 0 or n <= max_points:
        return np.arange(n, dtype=np.int64)
    d2 = ((xyz[:, :2] - xyz[centre, :2]) ** 2).sum(axis=1)
    return np.sort(np.argpartition(d2, max_points - 1)[:max_points]).astype(np.int64)


def ball_indices(xyz: np.ndarray, centre: np.ndarray, radius_m: float, max_points: int) -> np.ndarray:
    """(K,) sorted indices of the points closer than ``radius_m`` to ``centre`` (3,) metres (MPRM Eq. 1, the
    membership of :meth:`~wsseg_training.labels.types.Subcloud.mask`); the ``max_points`` nearest to it when more
    (0 = no cap).  Empty when no point is that close."""
    d2 = ((np.asarray(xyz, dtype=np.float64) - np.asarray(centre, dtype=np.float64)) ** 2).sum(axis=1)
    inside = np.flatnonzero(d2 < radius_m**2)
    if 0 < max_points < inside.size:
        inside = inside[np.argpartition(d2[inside], max_points - 1)[:max_points]]
    return np.sort(inside).astype(np.int64)


def units_of_step(seed: int, step: int, num_units: int, groups_per_step: int) -> list[int]:
    """Unit indices of the groups of ``step`` (0-based), one per group: per-epoch permutations of the units."""
    out = []
    for group in range(groups_per_step):
        k = step * groups_per_step + group
        epoch, position = divmod(k, num_units)
        order = np.random.default_rng([seed, epoch]).permutation(num_units)
        out.append(int(order[position]))
    return out


def multi_hot(classes: np.ndarray | Sequence[int], num_classes: int) -> np.ndarray:
    """(C,) float32 with 1 at ``classes`` (ids outside 0..C-1 are dropped)."""
    out = np.zeros(num_classes, dtype=np.float32)
    ids = np.asarray(classes, dtype=np.int64)
    out[ids[(ids >= 0) & (ids < num_classes)]] = 1.0
    return out


class SampleDrawer:
    """Draws the samples of one group of one step (see the module docstring); pure in (seed, step, slot).

    scenes: the training scenes (their ``point_targets`` may change between stages; per-scene class sets are
    recomputed when the label array is replaced).  num_classes: C for the tags (None: no tags).
    """

    def __init__(self, scenes: Sequence[TrainScene], sampling: Sampling, data: DataConfig, seed: int,
                 num_classes: int | None = None, augment_data: bool = True) -> None:
        self.scenes = list(scenes)
        self.sampling = sampling
        self.data = data
        self.seed = seed
        self.num_classes = num_classes
        self.augment_data = augment_data
        self.max_points = data.crop_max_points if sampling.max_points is None else sampling.max_points
        self.units = sample_units(self.scenes, sampling)
        if not self.units and sampling.scenes is not None:
            raise ValueError(f"sampling: none of the scenes {list(sampling.scenes)[:5]} (of {len(sampling.scenes)}) "
                             "is a training scene with a unit to draw")
        if not self.units:
            raise ValueError("sampling 'subcloud': no training scene has a sub-cloud with points in it (check the "
                             "subcloud_tags file and the method's make_targets)")
        self._label_classes: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def groups_per_step(self, batch_samples: int) -> int:
        return max(1, batch_samples // self.sampling.group_size)

    def steps_per_epoch(self, batch_samples: int) -> int:
        """Steps that visit every unit once (rounded up)."""
        return max(1, math.ceil(len(self.units) / self.groups_per_step(batch_samples)))

    # ------------------------------------------------------------------------------------------ drawing

    def draw_group(self, step: int, group: int, batch_samples: int) -> list[Sample]:
        """The samples of the slots of global group ``group`` at ``step``."""
        size = self.sampling.group_size
        unit = self.units[units_of_step(self.seed, step, len(self.units), self.groups_per_step(batch_samples))[group]]
        first_slot = group * size
        rng = np.random.default_rng([self.seed, step, first_slot])
        pick = self._region(unit, rng)
        first = self._finish(unit, pick, rng, first_slot, group, 0)
        if self.sampling.group == "single":
            return [first]
        if self.sampling.group == "views":
            views = [first]
            for member in range(1, size):
                slot = first_slot + member
                views.append(self._finish(unit, pick, np.random.default_rng([self.seed, step, slot]), slot, group,
                                          member))
            return views
        slot = first_slot + 1
        partner_rng = np.random.default_rng([self.seed, step, slot])
        partner_unit, partner_pick = self._partner(unit, first, partner_rng)
        return [first, self._finish(partner_unit, partner_pick, partner_rng, slot, group, 1)]

    def _finish(self, unit: tuple[int, int], pick: np.ndarray, rng: np.random.Generator, slot: int, group: int,
                member: int) -> Sample:
        scene = self.scenes[unit[0]]
        xyz = scene.xyz[pick]
        rgb = None if scene.rgb is None else scene.rgb[pick]
        if self.augment_data:
            xyz, rgb = augment(xyz, rgb, self.data.augment, rng)
        return Sample(scene=unit[0], subcloud=unit[1], pick=pick, xyz=xyz, rgb=rgb, tags=self._tags(unit, pick),
                      slot=slot, group=group, member=member)

    def _region(self, unit: tuple[int, int], rng: np.random.Generator, centre: int | None = None) -> np.ndarray:
        """Point indices of the unit's region; ``centre``: a point index to centre crop / ball on (else random)."""
        scene = self.scenes[unit[0]]
        region = self.sampling.region
        if region == "scene":
            return np.arange(scene.num_points, dtype=np.int64)
        if region == "subcloud":
            subcloud = scene.subclouds[unit[1]]
            return ball_indices(scene.xyz, subcloud.centre, subcloud.radius_m, self.max_points)
        if region == "crop":
            if centre is None:
                return crop_indices(scene.xyz, self.max_points, rng)
            return crop_around(scene.xyz, centre, self.max_points)
        if centre is None:
            centre = int(rng.integers(scene.num_points))
        return ball_indices(scene.xyz, scene.xyz[centre], self.sampling.radius_m, self.max_points)

    def _partner(self, unit: tuple[int, int], first: Sample,
                 rng: np.random.Generator) -> tuple[tuple[int, int], np.ndarray]:
        """A unit and region sharing a class with ``first`` (an unconstrained one when it has no class)."""
        classes = self._sample_classes(unit, first.pick)
        if classes.size == 0:
            other = self.units[int(rng.integers(len(self.units)))]
            return other, self._region(other, rng)
        cls = int(classes[int(rng.integers(classes.size))])
        holding = [u for u in self.units if cls in self._unit_classes(u)]
        elsewhere = [u for u in holding if u[0] != unit[0]]
        candidates = elsewhere or holding or [unit]
        chosen = candidates[int(rng.integers(len(candidates)))]
        if self.sampling.region in ("scene", "subcloud"):
            return chosen, self._region(chosen, rng)
        labels = self._labels(chosen[0])
        points = np.flatnonzero(labels == cls) if labels is not None else np.empty(0, np.int64)
        if points.size == 0:  # tags only: any point of a scene tagged with the class
            return chosen, self._region(chosen, rng)
        return chosen, self._region(chosen, rng, centre=int(points[int(rng.integers(points.size))]))

    # ------------------------------------------------------------------------------------------ classes

    def _labels(self, scene_index: int) -> np.ndarray | None:
        return self.scenes[scene_index].point_targets.get(self.sampling.label_key)

    def _scene_label_classes(self, scene_index: int) -> np.ndarray:
        """Sorted class ids among the scene's labelled points (cached while its label array is the same)."""
        labels = self._labels(scene_index)
        if labels is None:
            return np.empty(0, np.int64)
        cached = self._label_classes.get(scene_index)
        if cached is None or cached[0] is not labels:
            cached = (labels, _labelled_classes(labels))
            self._label_classes[scene_index] = cached
        return cached[1]

    def _unit_classes(self, unit: tuple[int, int]) -> np.ndarray:
        scene = self.scenes[unit[0]]
        if unit[1] >= 0:
            return np.asarray(scene.subclouds[unit[1]].classes, dtype=np.int64)
        if self._labels(unit[0]) is not None:
            return self._scene_label_classes(unit[0])
        return np.flatnonzero(scene.tags) if scene.tags is not None else np.empty(0, np.int64)

    def _sample_classes(self, unit: tuple[int, int], pick: np.ndarray) -> np.ndarray:
        """Sorted class ids a sample holds (the rule of the module docstring)."""
        scene = self.scenes[unit[0]]
        if unit[1] >= 0:
            return np.unique(np.asarray(scene.subclouds[unit[1]].classes, dtype=np.int64))
        labels = self._labels(unit[0])
        if labels is not None:
            return _labelled_classes(labels[pick])
        return np.flatnonzero(scene.tags) if scene.tags is not None else np.empty(0, np.int64)

    def _tags(self, unit: tuple[int, int], pick: np.ndarray) -> np.ndarray | None:
        if self.num_classes is None:
            return None
        return multi_hot(self._sample_classes(unit, pick), self.num_classes)


def _labelled_classes(labels: np.ndarray) -> np.ndarray:
    """Sorted distinct class ids of labelled entries (``labels`` (N,) int, ``IGNORE_INDEX`` / negative = none)."""
    values = np.unique(labels)
    return values[(values != IGNORE_INDEX) & (values >= 0)].astype(np.int64)


def sample_units(scenes: Sequence[TrainScene], sampling: Sampling) -> list[tuple[int, int]]:
    """(scene index, sub-cloud index or -1) of every unit an epoch visits (sub-clouds without points are left out;
    only the scenes named in ``sampling.scenes`` when set)."""
    wanted = None if sampling.scenes is None else set(sampling.scenes)
    chosen = [i for i, scene in enumerate(scenes) if wanted is None or scene.name in wanted]
    if sampling.region != "subcloud":
        return [(i, -1) for i in chosen]
    # a count recorded in the file (checked against the dataset when loaded) spares a distance pass per sub-cloud
    return [(i, k) for i in chosen for k, subcloud in enumerate(scenes[i].subclouds)
            if subcloud.num_points > 0 or subcloud.mask(scenes[i].xyz).any()]
