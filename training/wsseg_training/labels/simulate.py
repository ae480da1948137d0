"""Simulate weak labels from full ground truth, as the papers do for their benchmarks.

Randomness: every scene draws from its own generator seeded by ``(seed, crc32(scene name))``,
so a scene's labels do not depend on which other scenes are simulated; choices across
scenes (tag removal, labelled scenes) draw from ``default_rng(seed)``.

"Objects" are the ``(semantic, instance)`` groups of labelled points: instances as the
dataset defines them (walls and floors included when they have instance ids), and one
object per class for labelled points without an instance id.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Sequence

import numpy as np
from scipy.spatial import cKDTree

from wsseg.core.scene import Scene
from wsseg.core.voxelize import voxelize
from wsseg_training.data.dataset import Dataset
from wsseg_training.labels.types import (
    Clicks,
    Cut,
    Header,
    LabelledScenes,
    PointLabels,
    SceneTags,
    SparsePoints,
    Subcloud,
    SubcloudTags,
)

Progress = Callable[[Iterable[str]], Iterable[str]]
SUBCLOUD_GRIDS = ("paper", "code")


def scene_rng(seed: int, scene: str) -> np.random.Generator:
    """The generator of one scene (see module docstring)."""
    return np.random.default_rng([int(seed), zlib.crc32(scene.encode())])


def make_header(dataset: Dataset, kind: str, names: Sequence[str], seed: int | None, options: dict) -> Header:
    points = {n: int(dataset.info.scenes[n].get("points", -1)) for n in names}
    for n, count in points.items():
        if count < 0:
            points[n] = dataset.load(n).num_points
    return Header(kind=kind, dataset=dataset.info.name, class_names=tuple(dataset.classes.names),
                  scene_points=points, seed=seed, options=dict(options))


def _semantic(scene: Scene, name: str) -> np.ndarray:
    if scene.semantic is None:
        raise ValueError(f"scene {name!r} has no 'semantic' field; weak labels are simulated from ground truth")
    return scene.semantic.astype(np.int64)


def object_ids(semantic: np.ndarray, instance: np.ndarray | None) -> np.ndarray:
    """(N,) int64 object id 0..O-1 of every labelled point, -1 where ``semantic`` is -1."""
    valid = semantic >= 0
    out = np.full(semantic.shape[0], -1, dtype=np.int64)
    inst = np.full(semantic.shape[0], -1, np.int64) if instance is None else instance.astype(np.int64)
    if valid.any():
        pairs = np.stack([semantic[valid], inst[valid]], axis=1)
        _, ids = np.unique(pairs, axis=0, return_inverse=True)
        out[valid] = ids.reshape(-1)
    return out


def _first_k_per_group(candidates: np.ndarray, group: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The first ``k[g]`` candidates of every group g, in candidate order (candidates already shuffled)."""
    order = np.argsort(group, kind="stable")
    g_sorted = group[order]
    starts = np.searchsorted(g_sorted, g_sorted, side="left")
    rank = np.arange(g_sorted.size) - starts
    return candidates[order[rank < k[g_sorted]]]


def sample_object_clicks(semantic: np.ndarray, instance: np.ndarray | None, rng: np.random.Generator,
                         clicks_per_object: int = 1, object_fraction: float = 1.0) -> PointLabels:
    """Clicks on uniformly random points of objects.

    semantic: (N,) int, -1 unlabelled; instance: (N,) int or None.  A random subset of
    ``floor(fraction * O + u)`` objects (u ~ U[0, 1): unbiased rounding) gets
    ``min(clicks_per_object, object size)`` distinct clicks each.
    """
    obj = object_ids(semantic, instance)
    num_objects = int(obj.max()) + 1 if obj.size else 0
    chosen = np.zeros(num_objects, dtype=bool)
    if object_fraction >= 1.0:
        chosen[:] = True
    elif num_objects:
        m = math.floor(object_fraction * num_objects + rng.random())
        chosen[rng.choice(num_objects, size=min(m, num_objects), replace=False)] = True
    candidates = rng.permutation(np.flatnonzero(obj >= 0))
    candidates = candidates[chosen[obj[candidates]]]
    k = np.full(num_objects, clicks_per_object, dtype=np.int64)
    points = np.sort(_first_k_per_group(candidates, obj[candidates], k))
    inst = np.full(points.size, -1, np.int64) if instance is None else instance[points].astype(np.int64)
    return PointLabels(point=points.astype(np.int64), cls=semantic[points].astype(np.int64), instance=inst)


def sample_scene_points(semantic: np.ndarray, instance: np.ndarray | None, rng: np.random.Generator,
                        count: int) -> PointLabels:
    """``count`` distinct uniformly random labelled points of a scene (ScanNet data-efficient "N points")."""
    valid = np.flatnonzero(semantic >= 0)
    points = np.sort(rng.choice(valid, size=min(count, valid.size), replace=False)).astype(np.int64)
    inst = np.full(points.size, -1, np.int64) if instance is None else instance[points].astype(np.int64)
    return PointLabels(point=points, cls=semantic[points].astype(np.int64), instance=inst)


def sample_sparse_points(semantic: np.ndarray, rng: np.random.Generator, fraction: float,
                         at_least_one: bool = True, xyz: np.ndarray | None = None,
                         voxel_size_m: float = 0.0) -> PointLabels:
    """A per-class stratified sample: ``k_c = floor(fraction * n_c + 0.5)`` random points of every class c.

    n_c counts the candidates of class c: all labelled points, or with ``voxel_size_m`` > 0 one random point per
    voxel (the network input: DSP labels 10 % / 1 % of its sub-sampled input) -- the labelled points are then
    points of distinct voxels.  Rare classes (n_c < 0.5 / fraction, e.g. < 50 voxels at 1 %): with
    ``at_least_one`` (the default, our choice) every class present keeps exactly 1 point, so no class of a scene
    is left without a label; without it such a class gets none.
    """
    candidates = rng.permutation(np.flatnonzero(semantic >= 0))
    if voxel_size_m > 0:
        if xyz is None:
            raise ValueError("voxel_size_m needs xyz")
        grid = voxelize(xyz[candidates], voxel_size_m)
        _, first = np.unique(grid.inverse, return_index=True)
        candidates = candidates[np.sort(first)]
    cls = semantic[candidates]
    counts = np.bincount(cls) if cls.size else np.zeros(0, np.int64)
    k = np.floor(fraction * counts + 0.5).astype(np.int64)
    if at_least_one:
        k = np.where(counts > 0, np.maximum(k, 1), 0)
    points = np.sort(_first_k_per_group(candidates, cls, k)).astype(np.int64)
    return PointLabels(point=points, cls=semantic[points].astype(np.int64), instance=np.full(points.size, -1, np.int64))


def scene_classes(semantic: np.ndarray, min_points: int = 1) -> tuple[int, ...]:
    """Class ids with at least ``min_points`` points (ignore never counts)."""
    counts = np.bincount(semantic[semantic >= 0]) if (semantic >= 0).any() else np.zeros(0, np.int64)
    return tuple(int(c) for c in np.flatnonzero(counts >= min_points))


def subcloud_centres(xyz: np.ndarray, radius_m: float, grid: str = "paper") -> np.ndarray:
    """Seed points of MPRM subclouds over the scene's bounding box.

    ``paper``: n = ceil(l / r) seeds per axis at the centres of n equal cells (at least 1);
    ``code``: n = floor(l / r) + 1 seeds per axis from min to max with ``linspace`` (MPRM's code).
    xyz: (N, 3) float metres.  Returns (M, 3) float64, M = n_x * n_y * n_z.
    """
    if grid not in SUBCLOUD_GRIDS:
        raise ValueError(f"subcloud grid {grid!r} is not one of {SUBCLOUD_GRIDS}")
    low, high = xyz.min(axis=0).astype(np.float64), xyz.max(axis=0).astype(np.float64)
    axes = []
    for lo, hi in zip(low, high, strict=True):
        length = hi - lo
        if grid == "paper":
            n = max(1, math.ceil(length / radius_m))
            axes.append(lo + (np.arange(n) + 0.5) * length / n)
        else:
            axes.append(np.linspace(lo, hi, math.floor(length / radius_m) + 1))
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh], axis=1)


def scene_subclouds(xyz: np.ndarray, semantic: np.ndarray, radius_m: float = 2.0, grid: str = "paper",
                    min_points: int = 1) -> tuple[Subcloud, ...]:
    """Subclouds = all points closer than ``radius_m`` to each seed (MPRM Eq. 1: ||p - q|| < r, the membership of
    :meth:`Subcloud.mask`); tagged with the classes they hold.

    Subclouds with fewer than ``min_points`` labelled points are dropped (they carry no tag).
    """
    points = np.asarray(xyz, dtype=np.float64)
    tree = cKDTree(points)
    out = []
    for centre in subcloud_centres(xyz, radius_m, grid):
        members = np.sort(np.asarray(tree.query_ball_point(centre, radius_m), dtype=np.int64))
        members = members[((points[members] - centre) ** 2).sum(axis=1) < radius_m**2]
        labels = semantic[members]
        if int((labels >= 0).sum()) < min_points:
            continue
        out.append(Subcloud(centre=centre, radius_m=float(radius_m), classes=scene_classes(labels),
                            num_points=int(members.size)))
    return tuple(out)


def _iterate(names: Sequence[str], progress: Progress | None) -> Iterable[str]:
    return progress(names) if progress is not None else names


def simulate_clicks(dataset: Dataset, names: Sequence[str], seed: int, clicks_per_object: int = 1,
                    object_fraction: float = 1.0, points_per_scene: int | None = None,
                    progress: Progress | None = None) -> Clicks:
    """1T1C (k = 1), 1T3C (k = 3), "two things one click" (fraction 0.5) or, with
    ``points_per_scene``, N random labelled points per scene."""
    if clicks_per_object < 1 or not 0.0 < object_fraction <= 1.0:
        raise ValueError(f"clicks_per_object={clicks_per_object} must be >= 1 and "
                         f"object_fraction={object_fraction} in (0, 1]")
    if points_per_scene is not None and points_per_scene < 1:
        raise ValueError(f"points_per_scene={points_per_scene} must be >= 1")
    options: dict = ({"mode": "points_per_scene", "points_per_scene": points_per_scene} if points_per_scene
                     else {"mode": "objects", "clicks_per_object": clicks_per_object,
                           "object_fraction": object_fraction})
    scenes = {}
    for name in _iterate(names, progress):
        scene = dataset.load(name)
        rng = scene_rng(seed, name)
        if points_per_scene:
            scenes[name] = sample_scene_points(_semantic(scene, name), scene.instance, rng, points_per_scene)
        else:
            scenes[name] = sample_object_clicks(_semantic(scene, name), scene.instance, rng, clicks_per_object,
                                                object_fraction)
    return Clicks(header=make_header(dataset, "clicks", names, seed, options), scenes=scenes)


def simulate_sparse_points(dataset: Dataset, names: Sequence[str], seed: int, fraction: float = 0.1,
                           at_least_one: bool = True, voxel_size_m: float = 0.0,
                           progress: Progress | None = None) -> SparsePoints:
    """DSP-style per-class fraction of points per scene."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction={fraction} must be in (0, 1]")
    options = {"fraction": fraction, "at_least_one": at_least_one, "voxel_size_m": voxel_size_m}
    scenes = {}
    for name in _iterate(names, progress):
        scene = dataset.load(name)
        scenes[name] = sample_sparse_points(_semantic(scene, name), scene_rng(seed, name), fraction, at_least_one,
                                            scene.xyz, voxel_size_m)
    return SparsePoints(header=make_header(dataset, "sparse_points", names, seed, options), scenes=scenes)


def simulate_scene_tags(dataset: Dataset, names: Sequence[str], seed: int,
                        drop: Sequence[tuple[str, int]] = (), min_points: int = 1,
                        progress: Progress | None = None) -> SceneTags:
    """Classes present per scene; ``drop`` = [(class name, number of scenes)] removes that tag from that
    many random scenes holding it, each removal in a scene not touched before (DYL §4.5)."""
    class_names = list(dataset.classes.names)
    for cls_name, count in drop:
        if cls_name not in class_names:
            raise ValueError(f"drop: class {cls_name!r} is not in the class table {class_names}")
        if count < 0:
            raise ValueError(f"drop: count {count} for {cls_name!r} must be >= 0")
    tags = {name: scene_classes(_semantic(dataset.load(name), name), min_points)
            for name in _iterate(names, progress)}
    rng = np.random.default_rng(seed)
    touched: set[str] = set()
    removed: list[tuple[str, int]] = []
    for cls_name, count in drop:
        cls = class_names.index(cls_name)
        pool = [n for n in names if cls in tags[n] and n not in touched]
        if count > len(pool):
            raise ValueError(f"drop: {count} scene(s) asked to lose {cls_name!r}, only {len(pool)} available")
        for index in sorted(rng.choice(len(pool), size=count, replace=False).tolist()):
            scene = pool[index]
            tags[scene] = tuple(c for c in tags[scene] if c != cls)
            touched.add(scene)
            removed.append((scene, cls))
    options = {"min_points": min_points, "drop": [[c, int(k)] for c, k in drop]}
    return SceneTags(header=make_header(dataset, "scene_tags", names, seed, options), tags=tags,
                     removed=tuple(removed))


def simulate_subcloud_tags(dataset: Dataset, names: Sequence[str], seed: int, radius_m: float = 2.0,
                           grid: str = "paper", min_points: int = 1,
                           progress: Progress | None = None) -> SubcloudTags:
    """MPRM subcloud tags on a fixed seeding grid (deterministic; ``seed`` is recorded only)."""
    if radius_m <= 0:
        raise ValueError(f"radius_m={radius_m} must be > 0")
    options = {"radius_m": radius_m, "grid": grid, "min_points": min_points}
    scenes = {}
    for name in _iterate(names, progress):
        scene = dataset.load(name)
        scenes[name] = scene_subclouds(scene.xyz, _semantic(scene, name), radius_m, grid, min_points)
    return SubcloudTags(header=make_header(dataset, "subcloud_tags", names, seed, options), scenes=scenes)


def _best_cut(xyz: np.ndarray, want: int) -> Cut:
    """The horizontal cut ``xyz[:, axis] < below_m`` whose labelled count is closest to ``want``
    (exact unless many points share a coordinate, e.g. a wall at x = const), longer axis on ties."""
    xyz = np.asarray(xyz, dtype=np.float64)
    extent = xyz.max(axis=0) - xyz.min(axis=0)
    options = []
    for axis in (0, 1):
        values = np.unique(xyz[:, axis])
        if want >= xyz.shape[0]:
            options.append((0, -float(extent[axis]), axis, float(values[-1]) + 1.0))
            continue
        counts = np.searchsorted(np.sort(xyz[:, axis]), values, side="left")
        i = int(np.argmin(np.abs(counts - want)))
        options.append((abs(int(counts[i]) - want), -float(extent[axis]), axis, float(values[i])))
    _, _, axis, below = min(options)
    return Cut(axis=axis, below_m=below)


def simulate_labelled_scenes(dataset: Dataset, names: Sequence[str], seed: int, fraction: float = 0.1,
                             by: str = "points", cut: bool = True) -> LabelledScenes:
    """WS3D split: random scenes fully labelled until ``fraction`` of the points (``by="points"``) or of
    the scenes (``by="scenes"``) is reached; with ``cut`` the next scene is split along its longer
    horizontal axis so that the labelled-point share is exact (one cut scene at most)."""
    if not 0.0 < fraction <= 1.0 or by not in ("points", "scenes"):
        raise ValueError(f"fraction={fraction} must be in (0, 1] and by={by!r} 'points' or 'scenes'")
    header = make_header(dataset, "labelled_scenes", names, seed,
                         {"fraction": fraction, "by": by, "cut": cut and by == "points"})
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    labelled: list[str] = []
    cuts: dict[str, Cut] = {}
    if by == "scenes":
        labelled = order[: math.floor(fraction * len(names) + 0.5)]
    else:
        target = fraction * header.total_points
        have = 0
        for name in order:
            n = header.scene_points[name]
            if have + n <= target:
                labelled.append(name)
                have += n
                continue
            if cut and target - have >= 1:
                cuts[name] = _best_cut(dataset.load(name).xyz, round(target - have))
            break
    unlabelled = tuple(n for n in names if n not in labelled and n not in cuts)
    return LabelledScenes(header=header, labelled=tuple(n for n in names if n in labelled), unlabelled=unlabelled,
                          cuts=cuts)
