"""The "diverse tags" protocol: every training room cut into a grid of sub-scenes, each a scene of its own.

Scene tags simulated on whole synthetic rooms carry almost no information (nearly every room holds nearly every
class); tagged per sub-scene they vary as an RGB-D frame's or a ScanNet room's do (ceiling and floor no longer in
every scene).  One source of truth for the benchmarks that use it (``bench/densify.py``, ``bench/mprm.py``
``--subscenes NX,NY,NZ``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from wsseg.core.scene import Scene
from wsseg_training.data.dataset import Dataset, DatasetWriter

Grid = tuple[int, int, int]


def parse_grid(text: str) -> Grid:
    """``"NX,NY,NZ"`` (three positive integers) -> (nx, ny, nz); ValueError naming the text otherwise."""
    try:
        grid = tuple(int(v) for v in text.split(","))
    except ValueError:
        grid = ()
    if len(grid) != 3 or min(grid) < 1:
        raise ValueError(f"sub-scene grid {text!r}: expected NX,NY,NZ, three positive integers (e.g. 3,3,2)")
    return grid  # type: ignore[return-value]


def grid_cells(xyz: np.ndarray, grid: Grid) -> np.ndarray:
    """(N, 3) integer cell (i, j, k) of every point of ``xyz`` (N, 3, metres) in the ``grid`` of equal cells of its
    bounding box; the upper faces belong to the last cell, so every point is in exactly one cell."""
    cells = np.asarray(grid, dtype=np.int64)
    low, high = xyz.min(axis=0), xyz.max(axis=0)
    cell = np.floor((xyz - low) / np.maximum(high - low, 1e-6) * cells).astype(np.int64)
    return np.clip(cell, 0, cells - 1)


def split_scene(scene: Scene, grid: Grid, min_points: int = 200) -> dict[str, Scene]:
    """{``cIJK``: the points of cell (i, j, k), every field cut with them} for each cell of ``grid``
    (:func:`grid_cells`) holding at least ``min_points`` points, in ``np.ndindex`` order; smaller cells are left out."""
    cell = grid_cells(scene.xyz, grid)
    fields = {f.name: getattr(scene, f.name) for f in dataclasses.fields(scene)}
    out: dict[str, Scene] = {}
    for i, j, k in np.ndindex(*grid):
        mask = (cell == (i, j, k)).all(axis=1)
        if int(mask.sum()) >= min_points:
            out[f"c{i}{j}{k}"] = Scene(**{key: None if v is None else v[mask] for key, v in fields.items()})
    return out


def subscene_dataset(dataset: Dataset, out: Path, grid: Grid, min_points: int = 200) -> Dataset:
    """``dataset`` with every training room replaced by its sub-scenes (:func:`split_scene`, named ``ROOM_cIJK``,
    split ``train``); every other scene whole, split ``val``.  Written once into ``out`` (an existing dataset there
    is reused as it is)."""
    if (out / "dataset.yaml").is_file():
        return Dataset(out)
    train = set(dataset.scene_names("train"))
    with DatasetWriter(out, f"{dataset.info.name}-subscenes", dataset.classes, sensor=dataset.info.sensor) as writer:
        for name in dataset.scene_names():
            scene = dataset.load(name)
            if name not in train:
                writer.add(name, scene, split="val")
                continue
            for cell, part in split_scene(scene, grid, min_points).items():
                writer.add(f"{name}_{cell}", part, split="train")
    return Dataset(out)
