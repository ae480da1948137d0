"""The sub-scene split (the diverse-tags protocol): every point of a training room in exactly one cell, tags of a
sub-scene = the classes present in its cell, val rooms whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from wsseg_training.data.dataset import Dataset, DatasetWriter
from wsseg_training.data.subscenes import grid_cells, parse_grid, split_scene, subscene_dataset
from wsseg_training.labels import simulate_scene_tags

from wsseg.core.classes import IGNORE_INDEX, S3DIS
from wsseg.core.scene import Scene

CEILING, FLOOR, WALL, TABLE, CHAIR = 0, 1, 2, 7, 8


def room(seed: int) -> Scene:
    """A 6 x 4 x 2.5 m room: floor, ceiling, a wall at x = 0, a table in the x < 3 half and a chair in the other,
    some unlabelled points; ``instance`` = the point's index (to follow points through the split)."""
    rng = np.random.default_rng(seed)

    def box(n: int, lo: tuple, hi: tuple) -> np.ndarray:
        return np.array(lo) + rng.random((n, 3)) * (np.array(hi) - np.array(lo))

    parts = [(box(2000, (0, 0, 0), (6, 4, 0)), FLOOR), (box(2000, (0, 0, 2.5), (6, 4, 2.5)), CEILING),
             (box(800, (0, 0, 0), (0, 4, 2.5)), WALL), (box(300, (1, 1, 0), (2, 2, 0.8)), TABLE),
             (box(300, (4, 2, 0), (4.5, 2.5, 0.9)), CHAIR), (box(50, (0, 0, 0), (6, 4, 2.5)), IGNORE_INDEX)]
    xyz = np.concatenate([p for p, _ in parts]).astype(np.float32)
    semantic = np.concatenate([np.full(len(p), c, np.int16) for p, c in parts])
    rgb = rng.integers(0, 256, (len(xyz), 3)).astype(np.uint8)
    return Scene(xyz=xyz, rgb=rgb, semantic=semantic, instance=np.arange(len(xyz), dtype=np.int32))


def test_grid_cells_known_answer() -> None:
    xyz = np.array([[0, 0, 0], [2.99, 1, 1], [3.0, 1, 1], [6, 4, 2], [5, 0, 2]], dtype=np.float32)
    cells = grid_cells(xyz, (2, 1, 2))  # bounding box [0, 6] x [0, 4] x [0, 2]
    # the upper faces (x = 6, z = 2) belong to the last cell
    assert cells.tolist() == [[0, 0, 0], [0, 0, 1], [1, 0, 1], [1, 0, 1], [1, 0, 1]]


def test_split_scene_partitions_the_room() -> None:
    scene = room(0)
    parts = split_scene(scene, (3, 2, 2), min_points=1)
    ids = np.concatenate([p.instance for p in parts.values()])
    assert np.array_equal(np.sort(ids), np.arange(scene.num_points))  # every point once, no point twice
    cells = grid_cells(scene.xyz, (3, 2, 2))
    for name, part in parts.items():
        i, j, k = (int(c) for c in name[1:])
        assert (cells[part.instance] == (i, j, k)).all()
        assert np.array_equal(part.xyz, scene.xyz[part.instance])  # every field cut with the points
        assert np.array_equal(part.rgb, scene.rgb[part.instance])
        assert np.array_equal(part.semantic, scene.semantic[part.instance])


def test_split_scene_leaves_out_small_cells() -> None:
    scene = room(1)
    counts = {f"c{i}{j}{k}": int((grid_cells(scene.xyz, (3, 2, 2)) == (i, j, k)).all(axis=1).sum())
              for i, j, k in np.ndindex(3, 2, 2)}
    threshold = sorted(counts.values())[len(counts) // 2]
    parts = split_scene(scene, (3, 2, 2), min_points=threshold)
    assert set(parts) == {name for name, n in counts.items() if n >= threshold}
    assert {name: p.num_points for name, p in parts.items()} == {n: counts[n] for n in parts}


def make_dataset(root: Path) -> Dataset:
    with DatasetWriter(root, "rooms", S3DIS, sensor="rgbd") as writer:
        writer.add("a", room(2), split="train")
        writer.add("b", room(3), split="train")
        writer.add("v", room(4), split="val")
    return Dataset(root)


def test_subscene_tags_are_the_classes_of_each_cell(tmp_path: Path) -> None:
    rooms = make_dataset(tmp_path / "rooms")
    grid = (2, 1, 2)  # x halves (table | chair), z halves (floor | ceiling)
    sub = subscene_dataset(rooms, tmp_path / "sub", grid, min_points=1)
    assert sub.scene_names("val") == ["v"] and sub.load("v").num_points == rooms.load("v").num_points
    train = sub.scene_names("train")
    assert sorted(train) == sorted(f"{r}_c{i}0{k}" for r in "ab" for i in range(2) for k in range(2))
    tags = simulate_scene_tags(sub, train, seed=0)
    for room_name in "ab":
        whole = rooms.load(room_name)
        cells = grid_cells(whole.xyz, grid)
        for i, k in np.ndindex(2, 2):
            semantic = whole.semantic[(cells == (i, 0, k)).all(axis=1)]
            expected = sorted(int(c) for c in np.unique(semantic[semantic >= 0]))
            assert sorted(tags.tags[f"{room_name}_c{i}0{k}"]) == expected
    # the known answer behind it: the lower cells hold no ceiling, the upper no floor; table left, chair right
    assert CEILING not in tags.tags["a_c000"] and FLOOR not in tags.tags["a_c001"]
    assert TABLE in tags.tags["a_c000"] and CHAIR not in tags.tags["a_c000"] and CHAIR in tags.tags["a_c100"]
    assert sorted(simulate_scene_tags(rooms, ["a"], seed=0).tags["a"]) == [CEILING, FLOOR, WALL, TABLE, CHAIR]


def test_subscene_dataset_is_reused(tmp_path: Path) -> None:
    rooms = make_dataset(tmp_path / "rooms")
    first = subscene_dataset(rooms, tmp_path / "sub", (2, 1, 1))
    again = subscene_dataset(rooms, tmp_path / "sub", (3, 3, 3))  # already written: the grid is not re-applied
    assert again.scene_names() == first.scene_names()


@pytest.mark.parametrize("text", ["3,3", "3,3,0", "a,b,c", "", "1,2,3,4"])
def test_parse_grid_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="NX,NY,NZ"):
        parse_grid(text)


def test_parse_grid() -> None:
    assert parse_grid("3,3,2") == (3, 3, 2)
