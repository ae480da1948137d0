"""A tiny dataset whose answer is known, for the annotation tool's tests.

Scene ``room_a``: a 3 x 3 m floor (class 0, z = 0), a wall at y = 3 m (class 1), a table box (class 2) and a
chair box (class 3) on the floor, every surface a regular grid of 5 cm so that each point is a few pixels
from its neighbours on screen; super-voxel = object (floor, wall, table, chair).  Scene ``room_b``: the
same room shifted, without the chair.  Colours are greys: any saturated class colour in a screenshot comes
from the tool's label overlay, not from the data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from wsseg_training.data.dataset import DatasetWriter

from wsseg.core.classes import ClassTable
from wsseg.core.scene import Scene

CLASSES = ClassTable("annotate_test", ("floor", "wall", "table", "chair"),
                     ((40, 80, 255), (255, 140, 0), (0, 220, 60), (230, 0, 200)))
SPACING_M = 0.05
#: object -> (class, instance)
OBJECTS = {"floor": (0, 0), "wall": (1, 1), "table": (2, 2), "chair": (3, 3)}


def _grid(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uu, vv = np.meshgrid(u, v, indexing="ij")
    return uu.reshape(-1), vv.reshape(-1)


def _box(lo: tuple[float, float, float], hi: tuple[float, float, float]) -> np.ndarray:
    """Points on the top and four sides of an axis-aligned box, (K, 3) metres."""
    x = np.arange(lo[0], hi[0] + 1e-6, SPACING_M)
    y = np.arange(lo[1], hi[1] + 1e-6, SPACING_M)
    z = np.arange(lo[2] + SPACING_M, hi[2] + 1e-6, SPACING_M)
    parts = [np.column_stack([*_grid(x, y), np.full(x.size * y.size, hi[2])])]
    for fixed, axis_values, other in ((lo[0], y, 0), (hi[0], y, 0), (lo[1], x, 1), (hi[1], x, 1)):
        a, b = _grid(axis_values, z)
        constant = np.full(a.size, fixed)
        parts.append(np.column_stack([constant, a, b] if other == 0 else [a, constant, b]))
    return np.unique(np.round(np.concatenate(parts), 4), axis=0)


def room(with_chair: bool = True, shift_m: float = 0.0) -> Scene:
    """One room (see the module docstring); instance / supervoxel = object id."""
    u = np.arange(0.0, 3.0 + 1e-6, SPACING_M)
    fx, fy = _grid(u, u)
    floor = np.column_stack([fx, fy, np.zeros_like(fx)])
    wx, wz = _grid(u, np.arange(SPACING_M, 2.0 + 1e-6, SPACING_M))
    wall = np.column_stack([wx, np.full_like(wx, 3.0), wz])
    parts = {"floor": floor, "wall": wall, "table": _box((0.6, 0.8, 0.0), (1.4, 1.6, 0.75))}
    if with_chair:
        parts["chair"] = _box((1.9, 0.6, 0.0), (2.4, 1.1, 0.45))
    xyz = np.concatenate(list(parts.values())).astype(np.float32) + np.float32(shift_m)
    ids = np.concatenate([np.full(len(p), OBJECTS[k][1]) for k, p in parts.items()])
    semantic = np.concatenate([np.full(len(p), OBJECTS[k][0]) for k, p in parts.items()])
    grey = np.array([90, 130, 170, 110], dtype=np.uint8)[ids]
    rgb = np.repeat(grey[:, None], 3, axis=1).astype(np.uint8)
    return Scene(xyz=xyz, rgb=rgb, semantic=semantic.astype(np.int16), instance=ids.astype(np.int32),
                 supervoxel=ids.astype(np.int32))


def write_dataset(root: Path, name: str = "annotate_test") -> Path:
    """The two-room dataset at ``root``; returns ``root``."""
    with DatasetWriter(root, name, CLASSES, sensor="rgbd") as writer:
        writer.add("room_a", room(), split="train")
        writer.add("room_b", room(with_chair=False, shift_m=0.5), split="train")
    return root
