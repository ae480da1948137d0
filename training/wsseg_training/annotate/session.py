"""An annotation session: one dataset, one weak-label kind, one file, edited by the browser.

Saving and concurrency (the rule):

* the server is the only writer of the file.  Every edit, from any tab, is applied to the one in-memory
  state under a lock and the whole file is then written with :func:`save_weak_labels` (a unique temporary
  file in the same folder, fsync, rename, fsync of the folder): a reader, a killed server or a killed
  browser sees the previous complete file or the new one, never a torn one, and at most the edit in
  flight is lost;
* edits are operations (add this click, untick that tag), not whole-state uploads, so two tabs editing
  the same scene both keep their edits, in the order they reached the server; undo / redo act on the
  scene's latest edit whichever tab made it; every answer carries the scene's revision, and a tab that
  sees a revision it did not make reloads the scene;
* a second ``wsseg annotate`` on the same file is refused: the session holds an exclusive advisory lock
  (``flock``) on ``FILE.lock`` for its lifetime.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from wsseg.core.classes import IGNORE_INDEX
from wsseg.core.scene import Scene
from wsseg_training.annotate.state import Click, SceneHistory, SceneState
from wsseg_training.data.dataset import Dataset
from wsseg_training.labels.schema import load_weak_labels, save_weak_labels
from wsseg_training.labels.simulate import make_header, subcloud_centres
from wsseg_training.labels.types import Clicks, PointLabels, SceneTags, Subcloud, SubcloudTags, WeakLabels
from wsseg_training.methods.otoc.config import OtocConfig
from wsseg_training.methods.otoc.pseudo_labels import initial_pseudo_labels

ANNOTATABLE_KINDS = ("clicks", "scene_tags", "subcloud_tags")
TOOL_NAME = "wsseg annotate"
SCENE_CACHE = 2


class SessionError(ValueError):
    """The session cannot start (file of another kind or dataset, file locked); one line naming what."""


@dataclass(frozen=True)
class SubcloudGrid:
    """How sub-cloud balls are laid out (``labels.simulate.subcloud_centres``): radius, grid rule, min points."""

    radius_m: float = 2.0
    grid: str = "paper"
    min_points: int = 1


@dataclass(frozen=True)
class Balls:
    """The sub-cloud balls of one scene: centres (B, 3) float64 metres, point counts (B,) int64."""

    centres: np.ndarray
    points: np.ndarray
    radius_m: float


class FileLock:
    """An exclusive ``flock`` on ``<labels file>.lock``, held until :meth:`release`."""

    def __init__(self, labels_path: Path) -> None:
        self.path = labels_path.with_name(labels_path.name + ".lock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a+")  # noqa: SIM115 -- held open for the session's lifetime
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            owner = self.handle.read().strip() or "?"
            self.handle.close()
            raise SessionError(f"{labels_path}: already open in another wsseg annotate (pid {owner}, lock "
                               f"{self.path}); close it first") from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(str(os.getpid()))
        self.handle.flush()

    def release(self) -> None:
        if not self.handle.closed:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()


class Session:
    """The state of an annotation run (see the module docstring for the saving rule).

    dataset: the dataset being labelled; kind: one of ``ANNOTATABLE_KINDS``; path: the weak-label file
    (read when it exists, written after every edit); scenes: the scene names offered, in order;
    expansion: the 1T1C rule whose click expansion the view shows (``initial_pseudo_labels``).
    """

    def __init__(self, dataset: Dataset, kind: str, path: Path, scenes: list[str],
                 expansion: OtocConfig | None = None, grid: SubcloudGrid | None = None, lock: bool = True) -> None:
        if kind not in ANNOTATABLE_KINDS:
            raise SessionError(f"--kind {kind!r} cannot be annotated by hand (choose {', '.join(ANNOTATABLE_KINDS)})")
        if not scenes:
            raise SessionError(f"{dataset.root}: no scenes to annotate")
        self.dataset = dataset
        self.kind = kind
        self.path = Path(path)
        self.scenes = list(scenes)
        self.expansion = expansion or OtocConfig()
        self.grid = grid or SubcloudGrid()
        self.lock = threading.RLock()
        self.header = make_header(dataset, kind, self.scenes, None, {})
        self.options: dict[str, Any] = {"tool": TOOL_NAME}
        if kind == "subcloud_tags":
            self.options.update({"radius_m": self.grid.radius_m, "grid": self.grid.grid,
                                 "min_points": self.grid.min_points})
        self._cache: OrderedDict[str, Scene] = OrderedDict()
        self._balls: dict[str, Balls] = {}
        self._sv_order: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._histories: dict[str, SceneHistory] = {}
        self.revisions: dict[str, int] = dict.fromkeys(self.scenes, 0)
        self.saves = 0
        loaded = self._read_existing()  # before taking the lock: a bad file must not leave a lock behind
        self._file_lock = FileLock(self.path) if lock else None
        for name, state in loaded.items():
            self._histories[name] = self._new_history(name, state)

    # ---------------------------------------------------------------- existing file

    def _read_existing(self) -> dict[str, SceneState]:
        if not self.path.exists():
            return {}
        labels = load_weak_labels(self.path, self.dataset)  # WeakLabelError names file, dataset, field
        if labels.kind != self.kind:
            raise SessionError(f"{self.path}: is a {labels.kind} file, not {self.kind} (pass --kind {labels.kind} "
                               f"or another --labels file)")
        unknown = [s for s in labels.header.scene_points if s not in self.revisions]
        if unknown:
            raise SessionError(f"{self.path}: scene(s) {unknown[:3]} are not among the scenes offered (--split?)")
        self.options.update({k: v for k, v in labels.header.options.items() if k != "tool"})
        if self.kind == "subcloud_tags" and "radius_m" in labels.header.options:
            self.grid = SubcloudGrid(float(labels.header.options["radius_m"]),
                                     str(labels.header.options.get("grid", self.grid.grid)),
                                     int(labels.header.options.get("min_points", self.grid.min_points)))
        states: dict[str, SceneState] = {}
        if isinstance(labels, Clicks):
            for name, entry in labels.scenes.items():
                states[name] = SceneState(clicks=[Click(int(p), int(c), int(i)) for p, c, i in
                                                  zip(entry.point, entry.cls, entry.instance, strict=True)])
        elif isinstance(labels, SceneTags):
            states = {name: SceneState(tags=set(tags)) for name, tags in labels.tags.items()}
        elif isinstance(labels, SubcloudTags):
            for name, subclouds in labels.scenes.items():
                states[name] = SceneState(balls=self._match_balls(name, subclouds))
        return states

    def _match_balls(self, name: str, subclouds: tuple[Subcloud, ...]) -> dict[int, set[int]]:
        balls = self.balls(name)
        out: dict[int, set[int]] = {}
        for k, sc in enumerate(subclouds):
            distance = np.linalg.norm(balls.centres - sc.centre, axis=1)
            ball = int(np.argmin(distance)) if distance.size else -1
            if ball < 0 or distance[ball] > 1e-3:
                raise SessionError(f"{self.path}: scenes.{name}.subclouds[{k}] centre {sc.centre.tolist()} is not "
                                   f"on the {self.grid.grid} grid of radius {self.grid.radius_m} m")
            out[ball] = set(sc.classes)
        return out

    # ---------------------------------------------------------------- scenes

    def scene(self, name: str) -> Scene:
        """The scene record (cached: the last ``SCENE_CACHE`` scenes)."""
        if name not in self.revisions:
            raise KeyError(f"no scene {name!r} in this session")
        with self.lock:
            if name in self._cache:
                self._cache.move_to_end(name)
                return self._cache[name]
        scene = self.dataset.load(name)
        with self.lock:
            self._cache[name] = scene
            while len(self._cache) > SCENE_CACHE:
                self._cache.popitem(last=False)
        return scene

    def balls(self, name: str) -> Balls:
        """The sub-cloud balls of a scene that hold at least ``min_points`` points."""
        if name not in self._balls:
            xyz = self.scene(name).xyz
            centres = subcloud_centres(xyz, self.grid.radius_m, self.grid.grid)
            counts = cKDTree(np.asarray(xyz, np.float64)).query_ball_point(centres, self.grid.radius_m,
                                                                             return_length=True)
            keep = np.asarray(counts) >= self.grid.min_points
            self._balls[name] = Balls(centres[keep], np.asarray(counts, np.int64)[keep], self.grid.radius_m)
        return self._balls[name]

    def _new_history(self, name: str, state: SceneState | None = None) -> SceneHistory:
        balls = len(self.balls(name).centres) if self.kind == "subcloud_tags" else 0
        return SceneHistory(self.kind, self.header.scene_points[name], self.dataset.classes.num_classes, balls, state)

    def history(self, name: str) -> SceneHistory:
        if name not in self.revisions:
            raise KeyError(f"no scene {name!r} in this session")
        with self.lock:
            if name not in self._histories:
                self._histories[name] = self._new_history(name)
            return self._histories[name]

    # ---------------------------------------------------------------- edits

    def edit(self, name: str, op: Any) -> int:
        """Apply one edit to scene ``name`` and save; returns the scene's new revision."""
        with self.lock:
            self.history(name).apply(op)
            return self._changed(name)

    def undo(self, name: str) -> bool:
        with self.lock:
            done = self.history(name).undo()
            if done:
                self._changed(name)
            return done

    def redo(self, name: str) -> bool:
        with self.lock:
            done = self.history(name).redo()
            if done:
                self._changed(name)
            return done

    def _changed(self, name: str) -> int:
        self.revisions[name] += 1
        self.save()
        return self.revisions[name]

    # ---------------------------------------------------------------- the file

    def weak_labels(self) -> WeakLabels:
        """The current annotation as a weak-label object; it covers the scenes with something labelled."""
        with self.lock:
            covered = [n for n in self.scenes if n in self._histories and not self._histories[n].state.is_empty()]
            header = make_header(self.dataset, self.kind, covered, None, dict(self.options))
            states = {n: self._histories[n].state for n in covered}
            if self.kind == "clicks":
                return Clicks(header=header, scenes={n: _point_labels(s) for n, s in states.items()})
            if self.kind == "scene_tags":
                return SceneTags(header=header, tags={n: tuple(sorted(s.tags)) for n, s in states.items()})
            return SubcloudTags(header=header, scenes={n: self._subclouds(n, s) for n, s in states.items()})

    def _subclouds(self, name: str, state: SceneState) -> tuple[Subcloud, ...]:
        balls = self.balls(name)
        return tuple(Subcloud(centre=balls.centres[b], radius_m=balls.radius_m, classes=tuple(sorted(classes)),
                              num_points=int(balls.points[b]))
                     for b, classes in sorted(state.balls.items()) if classes)

    def save(self) -> Path:
        """Write the file now (atomically; see the module docstring)."""
        with self.lock:
            path = save_weak_labels(self.weak_labels(), self.path)
            self.saves += 1
            return path

    def close(self) -> None:
        if self._file_lock is not None:
            self._file_lock.release()

    # ---------------------------------------------------------------- what the view shows

    def expanded_labels(self, name: str) -> np.ndarray:
        """(N,) int64: what 1T1C's first round trains on from this scene's clicks (``initial_pseudo_labels``)
        under the session's rule; ``IGNORE_INDEX`` (-1) elsewhere.  Without super-voxels: the clicked points."""
        scene = self.scene(name)
        with self.lock:
            clicks = click_labels(self.history(name).state, scene.num_points)
        if scene.supervoxel is None:
            return clicks
        # The expansion never leaves a clicked super-voxel, so running it on the points of those super-voxels
        # alone gives the same labels (a test checks) in time proportional to them, not to N.
        clicked = np.flatnonzero(clicks >= 0)
        subset = np.union1d(self._members(name, scene.supervoxel[clicked]), clicked)
        out = np.full(scene.num_points, IGNORE_INDEX, dtype=np.int64)
        out[subset] = initial_pseudo_labels(clicks[subset], scene.supervoxel[subset], scene.xyz[subset],
                                            self.dataset.classes, self.expansion)
        return out

    def _members(self, name: str, ids: np.ndarray) -> np.ndarray:
        """(K,) int64 indices of the points of super-voxels ``ids`` (>= 0) of scene ``name``."""
        if name not in self._sv_order:
            supervoxel = self.scene(name).supervoxel
            order = np.argsort(supervoxel, kind="stable")  # type: ignore[arg-type]
            self._sv_order[name] = (order, supervoxel[order])  # type: ignore[index]
        order, sorted_ids = self._sv_order[name]
        ids = np.unique(ids[ids >= 0])
        starts, ends = np.searchsorted(sorted_ids, ids, "left"), np.searchsorted(sorted_ids, ids, "right")
        return np.concatenate([order[a:b] for a, b in zip(starts, ends, strict=True)] or [np.zeros(0, np.int64)])

    def progress(self) -> dict[str, Any]:
        """Per scene: clicks / tags / tagged balls; classes seen over all scenes."""
        with self.lock:
            rows, seen = [], set()
            for name in self.scenes:
                state = self._histories[name].state if name in self._histories else SceneState()
                classes = {c.cls for c in state.clicks} | state.tags | set().union(*state.balls.values())
                seen |= classes
                rows.append({"scene": name, "clicks": len(state.clicks), "tags": len(state.tags),
                             "balls": sum(1 for v in state.balls.values() if v), "done": not state.is_empty(),
                             "revision": self.revisions[name]})
            return {"scenes": rows, "done": sum(r["done"] for r in rows), "total": len(rows),
                    "classes_seen": sorted(seen), "saves": self.saves, "file": str(self.path)}


def _point_labels(state: SceneState) -> PointLabels:
    rows = np.asarray([(c.point, c.cls, c.instance) for c in state.clicks], dtype=np.int64).reshape(-1, 3)
    return PointLabels(point=rows[:, 0].copy(), cls=rows[:, 1].copy(), instance=rows[:, 2].copy())


def click_labels(state: SceneState, num_points: int) -> np.ndarray:
    """(N,) int64: the class of each clicked point, ``IGNORE_INDEX`` elsewhere (``Clicks.point_labels``)."""
    labels = np.full(num_points, IGNORE_INDEX, dtype=np.int64)
    for click in state.clicks:
        labels[click.point] = click.cls
    return labels
