"""Weak-label files: simulate -> save -> load for every kind, counts as specified, malformed files refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from wsseg_training.data.dataset import Dataset, DatasetWriter
from wsseg_training.labels import (
    Clicks,
    LabelledScenes,
    SceneTags,
    SparsePoints,
    SubcloudTags,
    WeakLabelError,
    compute_stats,
    load_weak_labels,
    save_weak_labels,
    simulate_clicks,
    simulate_labelled_scenes,
    simulate_scene_tags,
    simulate_sparse_points,
    simulate_subcloud_tags,
)
from wsseg_training.labels.simulate import object_ids, sample_sparse_points, subcloud_centres

from wsseg.cli import main as wsseg_main
from wsseg.core.classes import IGNORE_INDEX, S3DIS
from wsseg.core.scene import Scene

CEILING, FLOOR, WALL, TABLE, CHAIR, CLUTTER = 0, 1, 2, 7, 8, 12


def room(seed: int, num_boxes: int) -> Scene:
    """A 5 x 4 x 2.5 m room: floor + ceiling + one wall (instances 0..2), ``num_boxes`` box objects,
    a few unlabelled points, plus a stretch of floor without instance id."""
    rng = np.random.default_rng(seed)
    parts: list[tuple[np.ndarray, int, int]] = []

    def plane(n: int, lo: tuple, hi: tuple) -> np.ndarray:
        return (np.array(lo) + rng.random((n, 3)) * (np.array(hi) - np.array(lo))).astype(np.float32)

    parts.append((plane(3000, (0, 0, 0), (5, 4, 0)), FLOOR, 0))
    parts.append((plane(2500, (0, 0, 2.5), (5, 4, 2.5)), CEILING, 1))
    parts.append((plane(1500, (0, 0, 0), (0, 4, 2.5)), WALL, 2))
    for b in range(num_boxes):
        corner = rng.random(2) * np.array([4.3, 3.3])
        pts = plane(int(rng.integers(40, 300)), (*corner, 0.0), (*(corner + 0.5), 0.8))
        parts.append((pts, (TABLE, CHAIR, CLUTTER)[b % 3], 3 + b))
    parts.append((plane(200, (2, 2, 0), (3, 3, 0)), FLOOR, -1))
    parts.append((plane(100, (1, 1, 1), (2, 2, 2)), IGNORE_INDEX, -1))
    xyz = np.concatenate([p for p, _, _ in parts])
    semantic = np.concatenate([np.full(len(p), c, np.int16) for p, c, _ in parts])
    instance = np.concatenate([np.full(len(p), i, np.int32) for p, _, i in parts])
    order = rng.permutation(len(xyz))
    return Scene(xyz=xyz[order], semantic=semantic[order], instance=instance[order])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    root = tmp_path_factory.mktemp("rooms")
    with DatasetWriter(root, "rooms", S3DIS, sensor="rgbd") as writer:
        for i in range(4):
            writer.add(f"room_{i}", room(i, num_boxes=6 + 4 * i), split="train")
        writer.add("val_0", room(10, num_boxes=5), split="val")
    return Dataset(root)


TRAIN = ["room_0", "room_1", "room_2", "room_3"]


def round_trip(labels, path: Path, dataset: Dataset):  # type: ignore[no-untyped-def]
    save_weak_labels(labels, path)
    loaded = load_weak_labels(path, dataset)
    assert type(loaded) is type(labels)
    assert loaded.header == labels.header
    return loaded


def assert_points_equal(a: Clicks | SparsePoints, b: Clicks | SparsePoints) -> None:
    assert list(a.scenes) == list(b.scenes)
    for name in a.scenes:
        for field in ("point", "cls", "instance"):
            np.testing.assert_array_equal(getattr(a.scenes[name], field), getattr(b.scenes[name], field))


def test_one_click_per_object(dataset: Dataset, tmp_path: Path) -> None:
    clicks = simulate_clicks(dataset, TRAIN, seed=3)
    for name in TRAIN:
        scene = dataset.load(name)
        entry = clicks.scenes[name]
        obj = object_ids(scene.semantic.astype(np.int64), scene.instance)
        assert np.array_equal(np.sort(obj[entry.point]), np.arange(obj.max() + 1))  # every object exactly once
        np.testing.assert_array_equal(entry.cls, scene.semantic[entry.point])
        np.testing.assert_array_equal(entry.instance, scene.instance[entry.point])
        labels = clicks.point_labels(name, scene.num_points)
        assert labels.dtype == np.int64 and int((labels != IGNORE_INDEX).sum()) == len(entry)
        np.testing.assert_array_equal(labels[entry.point], scene.semantic[entry.point])
    loaded = round_trip(clicks, tmp_path / "1t1c.json", dataset)
    assert_points_equal(clicks, loaded)
    assert_points_equal(clicks, simulate_clicks(dataset, TRAIN, seed=3))
    other = simulate_clicks(dataset, TRAIN, seed=4)
    assert not np.array_equal(other.scenes["room_0"].point, clicks.scenes["room_0"].point)
    # A scene's clicks do not depend on which other scenes are simulated.
    np.testing.assert_array_equal(simulate_clicks(dataset, ["room_2"], seed=3).scenes["room_2"].point,
                                  clicks.scenes["room_2"].point)


def test_click_variants(dataset: Dataset, tmp_path: Path) -> None:
    three = simulate_clicks(dataset, TRAIN, seed=0, clicks_per_object=3)
    for name in TRAIN:
        scene = dataset.load(name)
        obj = object_ids(scene.semantic.astype(np.int64), scene.instance)
        entry = three.scenes[name]
        assert np.unique(entry.point).size == len(entry)
        expected = np.minimum(np.bincount(obj[obj >= 0]), 3)
        np.testing.assert_array_equal(np.bincount(obj[entry.point], minlength=expected.size), expected)
    round_trip(three, tmp_path / "1t3c.json", dataset)

    half = simulate_clicks(dataset, TRAIN, seed=0, object_fraction=0.5)
    for name in TRAIN:
        scene = dataset.load(name)
        num_objects = int(object_ids(scene.semantic.astype(np.int64), scene.instance).max()) + 1
        assert abs(len(half.scenes[name]) - 0.5 * num_objects) <= 1

    per_scene = simulate_clicks(dataset, TRAIN, seed=0, points_per_scene=20)
    for name in TRAIN:
        entry = per_scene.scenes[name]
        assert len(entry) == 20 == np.unique(entry.point).size
        assert (dataset.load(name).semantic[entry.point] >= 0).all()
    assert round_trip(per_scene, tmp_path / "p20.json", dataset).header.options["points_per_scene"] == 20


@pytest.mark.parametrize("fraction", [0.1, 0.01])
def test_sparse_points_per_class_fraction(dataset: Dataset, tmp_path: Path, fraction: float) -> None:
    sparse = simulate_sparse_points(dataset, TRAIN, seed=1, fraction=fraction)
    for name in TRAIN:
        semantic = dataset.load(name).semantic
        entry = sparse.scenes[name]
        counts = np.bincount(semantic[semantic >= 0], minlength=13)
        got = np.bincount(entry.cls, minlength=13)
        expected = np.where(counts > 0, np.maximum(np.floor(fraction * counts + 0.5), 1), 0)
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(semantic[entry.point], entry.cls)
    path = tmp_path / "dsp.npz"
    assert_points_equal(sparse, round_trip(sparse, path, dataset))
    stats = compute_stats(load_weak_labels(path, dataset))
    assert stats.labelled_percent == pytest.approx(100 * fraction, rel=0.3)


def test_sparse_points_from_voxels(dataset: Dataset) -> None:
    sparse = simulate_sparse_points(dataset, ["room_0"], seed=1, fraction=1.0, voxel_size_m=0.2)
    xyz = dataset.load("room_0").xyz
    cells = np.floor(xyz[sparse.scenes["room_0"].point] / 0.2).astype(np.int64)
    assert np.unique(cells, axis=0).shape[0] == cells.shape[0]  # one labelled point per voxel


def test_sparse_points_rule_for_rare_classes(dataset: Dataset, tmp_path: Path) -> None:
    """k_c = floor(share x n_c + 0.5); a class rounding to 0 keeps exactly one point, or none when asked."""
    semantic = np.repeat(np.array([0, 1, 3, -1]), [1000, 30, 1, 50])
    rng = np.random.default_rng(0)
    got = np.bincount(sample_sparse_points(semantic, rng, 0.01).cls, minlength=4)
    assert got.tolist() == [10, 1, 0, 1]
    got = np.bincount(sample_sparse_points(semantic, rng, 0.01, at_least_one=False).cls, minlength=4)
    assert got.tolist() == [10, 0, 0, 0]
    out = tmp_path / "rare.npz"
    assert wsseg_main(["labels", "simulate", "--kind", "sparse_points", "--data", str(dataset.root), "--fraction",
                       "0.01", "--no-at-least-one", "--voxel-size-m", "auto", "--out", str(out)]) == 0
    labels = load_weak_labels(out, dataset)
    assert labels.header.options["at_least_one"] is False and labels.header.options["voxel_size_m"] > 0
    for name, entry in labels.scenes.items():
        cells = np.floor(dataset.load(name).xyz[entry.point] / labels.header.options["voxel_size_m"])
        assert np.unique(cells, axis=0).shape[0] == len(entry)  # points of distinct voxels
    with pytest.raises(SystemExit):
        wsseg_main(["labels", "simulate", "--kind", "sparse_points", "--data", str(dataset.root), "--voxel-size-m",
                    "fine"])


def test_scene_tags_and_removal(dataset: Dataset, tmp_path: Path) -> None:
    tags = simulate_scene_tags(dataset, TRAIN, seed=5)
    for name in TRAIN:
        semantic = dataset.load(name).semantic
        assert tags.tags[name] == tuple(np.unique(semantic[semantic >= 0]).tolist())
    reduced = simulate_scene_tags(dataset, TRAIN, seed=5, drop=[("floor", 1), ("ceiling", 1)])
    assert [c for _, c in reduced.removed] == [FLOOR, CEILING]
    scenes = [s for s, _ in reduced.removed]
    assert len(set(scenes)) == 2
    for name in TRAIN:
        lost = set(tags.tags[name]) - set(reduced.tags[name])
        assert lost == {c for s, c in reduced.removed if s == name}
    loaded = round_trip(reduced, tmp_path / "tags.json", dataset)
    assert loaded.tags == reduced.tags and loaded.removed == reduced.removed
    assert loaded.multi_hot(scenes[0], 13).sum() == len(reduced.tags[scenes[0]])
    with pytest.raises(ValueError, match="sofa"):
        simulate_scene_tags(dataset, TRAIN, seed=5, drop=[("sofa", 1)])


def test_subcloud_tags_respect_radius(dataset: Dataset, tmp_path: Path) -> None:
    sub = simulate_subcloud_tags(dataset, TRAIN, seed=0, radius_m=2.0)
    for name in TRAIN:
        scene = dataset.load(name)
        extent = scene.xyz.max(axis=0) - scene.xyz.min(axis=0)
        assert len(subcloud_centres(scene.xyz, 2.0)) == int(np.prod(np.maximum(1, np.ceil(extent / 2.0))))
        assert sub.scenes[name]
        for sc in sub.scenes[name]:
            inside = ((scene.xyz.astype(np.float64) - sc.centre) ** 2).sum(axis=1) < 4.0
            np.testing.assert_array_equal(sc.mask(scene.xyz), inside)
            labels = scene.semantic[inside]
            assert sc.classes == tuple(np.unique(labels[labels >= 0]).tolist())
            assert sc.num_points == int(inside.sum()) and sc.radius_m == 2.0
    loaded = round_trip(sub, tmp_path / "sub.json", dataset)
    assert [s.classes for s in loaded.scenes["room_1"]] == [s.classes for s in sub.scenes["room_1"]]
    np.testing.assert_allclose(loaded.scenes["room_1"][0].centre, sub.scenes["room_1"][0].centre, atol=1e-4)


def test_labelled_scenes(dataset: Dataset, tmp_path: Path) -> None:
    split = simulate_labelled_scenes(dataset, TRAIN, seed=2, fraction=0.3)
    total = split.header.total_points
    labelled = sum(int(split.labelled_mask(n, dataset.load(n).xyz).sum()) for n in TRAIN)
    assert labelled == round(0.3 * total)
    assert len(split.cuts) == 1
    assert set(split.labelled) | set(split.unlabelled) | set(split.cuts) == set(TRAIN)
    loaded = round_trip(split, tmp_path / "ws3d.json", dataset)
    assert (loaded.labelled, loaded.unlabelled, loaded.cuts) == (split.labelled, split.unlabelled, split.cuts)
    assert compute_stats(loaded, dataset).labelled_points == labelled
    by_scene = simulate_labelled_scenes(dataset, TRAIN, seed=2, fraction=0.5, by="scenes")
    assert len(by_scene.labelled) == 2 and not by_scene.cuts


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fraction", [0.01, 0.05, 0.1, 0.2, 0.9])
def test_labelled_scenes_cut_at_most_one_scene_to_the_exact_share(dataset: Dataset, fraction: float,
                                                                   seed: int) -> None:
    # WS3D §4.1: whole scenes labelled, at most one scene split in two to hit the labelled-point share exactly
    split = simulate_labelled_scenes(dataset, TRAIN, seed=seed, fraction=fraction)
    assert len(split.cuts) <= 1
    masks = {n: split.labelled_mask(n, dataset.load(n).xyz) for n in TRAIN}
    assert sum(int(m.sum()) for m in masks.values()) == round(fraction * split.header.total_points)
    for name, mask in masks.items():
        if name in split.cuts:
            assert 0 < mask.sum() < mask.size  # both sub-scenes are non-empty
        else:
            assert mask.all() == (name in split.labelled) and mask.any() == (name in split.labelled)


def test_one_click_share_is_tiny(dataset: Dataset) -> None:
    stats = compute_stats(simulate_clicks(dataset, TRAIN, seed=0))
    objects = sum(int(object_ids(dataset.load(n).semantic.astype(np.int64), dataset.load(n).instance).max()) + 1
                  for n in TRAIN)
    assert stats.labelled_points == objects
    assert stats.per_class["floor"] == 2 * len(TRAIN)  # the floor instance + the floor without instance id


# --------------------------------------------------------------------------- malformed files


@pytest.fixture()
def clicks_file(dataset: Dataset, tmp_path: Path) -> Path:
    return save_weak_labels(simulate_clicks(dataset, ["room_0", "room_1"], seed=0), tmp_path / "clicks.json")


def edit(path: Path, change) -> Path:  # type: ignore[no-untyped-def]
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))
    return path


def test_malformed_clicks_are_refused(dataset: Dataset, clicks_file: Path) -> None:
    n0 = dataset.info.scenes["room_0"]["points"]
    cases = [
        (lambda d: d.update(kind="boxes"), r"clicks\.json: field 'kind': unknown kind 'boxes'"),
        (lambda d: d.update(schema_version=2), r"schema_version': 2 is not supported"),
        (lambda d: d["scenes"]["room_0"]["clicks"][0].__setitem__(0, n0 + 5),
         rf"scenes\.room_0\.clicks\[0\]: point {n0 + 5} outside the cloud \(N={n0}\)"),
        (lambda d: d["scenes"]["room_0"]["clicks"][1].__setitem__(1, 13),
         r"scenes\.room_0\.clicks\[1\]: class 13 outside the class table \(0\.\.12\)"),
        (lambda d: d["scenes"]["room_0"]["clicks"][1].__setitem__(0, "seven"), r"expected an integer, got 'seven'"),
        (lambda d: d["dataset"].update(name="office"), r"dataset\.name: file is for dataset 'office', not 'rooms'"),
        (lambda d: d["dataset"].update(fingerprint="0" * 64), r"dataset\.fingerprint: .*edited"),
    ]
    original = clicks_file.read_text()
    for change, message in cases:
        clicks_file.write_text(original)
        with pytest.raises(WeakLabelError, match=message):
            load_weak_labels(edit(clicks_file, change), dataset)
    clicks_file.write_text(original[:-20])
    with pytest.raises(WeakLabelError, match=r"clicks\.json: line \d+: invalid JSON"):
        load_weak_labels(clicks_file, dataset)


def test_file_for_another_dataset_is_refused(dataset: Dataset, clicks_file: Path, tmp_path: Path) -> None:
    # Same name, same scene names, different clouds: the fingerprint differs.
    other = tmp_path / "other"
    with DatasetWriter(other, "rooms", S3DIS) as writer:
        writer.add("room_0", room(20, 3), split="train")
        writer.add("room_1", room(1, 10), split="train")
    message = r"dataset fingerprint mismatch.*scene 'room_0' has \d+ points in the file"
    with pytest.raises(WeakLabelError, match=message):
        load_weak_labels(clicks_file, other)
    # A scene the dataset does not have (file consistent with itself).
    fewer = tmp_path / "fewer"
    with DatasetWriter(fewer, "rooms", S3DIS) as writer:
        writer.add("room_0", dataset.load("room_0"))
    with pytest.raises(WeakLabelError, match=r"scenes\.room_1: scene 'room_1' is not in dataset 'rooms'"):
        load_weak_labels(clicks_file, fewer)


def test_malformed_sparse_and_tag_files_are_refused(dataset: Dataset, tmp_path: Path) -> None:
    sparse = simulate_sparse_points(dataset, ["room_0"], seed=0, fraction=0.1)
    path = save_weak_labels(sparse, tmp_path / "s.npz")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    n0 = dataset.info.scenes["room_0"]["points"]
    arrays["point"][3] = n0
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(WeakLabelError, match=rf"bad\.npz: point \(scene 'room_0'\) \[3\]: point {n0} outside .*N={n0}"):
        load_weak_labels(tmp_path / "bad.npz", dataset)
    arrays["point"][3] = 0
    arrays["class"][5] = 40
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(WeakLabelError, match=r"class\[5\]: class 40 outside the class table"):
        load_weak_labels(tmp_path / "bad.npz", dataset)

    sub = save_weak_labels(simulate_subcloud_tags(dataset, ["room_0"], seed=0), tmp_path / "sub.json")
    edit(sub, lambda d: d["scenes"]["room_0"]["subclouds"][0].update(radius_m=-1))
    with pytest.raises(WeakLabelError, match=r"subclouds\[0\]\.radius_m: radius -1"):
        load_weak_labels(sub, dataset)
    tags = save_weak_labels(simulate_scene_tags(dataset, ["room_0"], seed=0), tmp_path / "tags.json")
    edit(tags, lambda d: d["scenes"]["room_0"]["classes"].append(99))
    with pytest.raises(WeakLabelError, match=r"scenes\.room_0\.classes\[\d+\]: class 99 outside"):
        load_weak_labels(tags, dataset)
    split = save_weak_labels(simulate_labelled_scenes(dataset, ["room_0", "room_1"], seed=0, fraction=0.5),
                             tmp_path / "ls.json")
    edit(split, lambda d: d["scenes"]["room_0"].update(status="half"))
    with pytest.raises(WeakLabelError, match=r"scenes\.room_0\.status: status 'half'"):
        load_weak_labels(split, dataset)


# --------------------------------------------------------------------------- commands


def test_commands(dataset: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "c.json"
    assert wsseg_main(["labels", "simulate", "--kind", "clicks", "--data", str(dataset.root), "--out", str(out),
                       "--seed", "7"]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "split train" in text
    labels = load_weak_labels(out, dataset)
    assert isinstance(labels, Clicks) and list(labels.scenes) == TRAIN and labels.header.seed == 7
    assert wsseg_main(["labels", "stats", str(out), "--data", str(dataset.root)]) == 0
    text = capsys.readouterr().out
    assert "labelled points:" in text and "per class (clicks):" in text
    assert wsseg_main(["labels", "validate", str(out), "--data", str(dataset.root)]) == 0
    assert "valid clicks file" in capsys.readouterr().out
    edit(out, lambda d: d.update(kind="polygons"))
    assert wsseg_main(["labels", "validate", str(out), "--data", str(dataset.root)]) == 1
    assert "unknown kind 'polygons'" in capsys.readouterr().err
    for kind, extra, cls in (("sparse_points", ["--fraction", "0.01"], SparsePoints),
                             ("scene_tags", ["--drop-tag", "floor:1"], SceneTags),
                             ("subcloud_tags", [], SubcloudTags),
                             ("labelled_scenes", ["--fraction", "0.25"], LabelledScenes)):
        assert wsseg_main(["labels", "simulate", "--kind", kind, "--data", str(dataset.root), *extra]) == 0
        suffix = ".npz" if kind == "sparse_points" else ".json"
        written = dataset.root / "weak_labels" / f"{kind}-seed0{suffix}"
        assert isinstance(load_weak_labels(written, dataset), cls)
