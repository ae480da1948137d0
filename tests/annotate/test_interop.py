"""SemanticKITTI .label and Segments.ai labels in and out, through the real files and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from wsseg_training.annotate.interop import (
    InteropError,
    category_map,
    read_kitti_label,
    read_segments_label,
    write_dense,
    write_kitti_label,
)
from wsseg_training.data.dataset import Dataset
from wsseg_training.labels import load_weak_labels, save_weak_labels, simulate_clicks, simulate_scene_tags
from wsseg_training.methods.otoc.config import OtocConfig
from wsseg_training.methods.otoc.pseudo_labels import initial_pseudo_labels

from tests.annotate.scenes import OBJECTS
from wsseg.cli import main as wsseg_main
from wsseg.core.classes import SEMANTIC_KITTI19


def ground_truth_folder(dataset: Dataset, folder: Path, fmt: str, scenes: tuple[str, ...] = ("room_a",)) -> Path:
    for name in scenes:
        scene = dataset.load(name)
        write_dense(folder, name, fmt, scene.semantic, scene.instance, dataset.classes)  # type: ignore[arg-type]
    return folder


@pytest.mark.parametrize("fmt", ["semantickitti", "segments"])
def test_dense_labels_round_trip(dataset: Dataset, tmp_path: Path, fmt: str) -> None:
    scene = dataset.load("room_a")
    semantic = scene.semantic.astype(np.int64)  # type: ignore[union-attr]
    semantic[:50] = -1  # some unlabelled points
    instance = np.where(semantic >= 0, scene.instance, -1)  # type: ignore[arg-type]
    path = write_dense(tmp_path, "room_a", fmt, semantic, instance, dataset.classes)
    if fmt == "semantickitti":
        assert path.stat().st_size == 4 * scene.num_points
        got_sem, got_inst = read_kitti_label(path, scene.num_points, dataset.classes)
        assert np.array_equal(got_inst, instance)  # ids kept (+1 on disk, 0 = none)
    else:
        document = json.loads(path.read_text())
        assert document["format_version"] == "0.1" and len(document["annotations"]) == len(OBJECTS)
        assert document["point_annotations"][:50] == [0] * 50
        got_sem, got_inst = read_segments_label(path, scene.num_points, category_map(tmp_path, dataset.classes))
        for obj in np.unique(instance[instance >= 0]):  # one annotation id per object
            assert np.unique(got_inst[instance == obj]).size == 1
    assert np.array_equal(got_sem, semantic)


def test_semantickitti_table_uses_the_raw_ids(tmp_path: Path) -> None:
    semantic = np.array([0, 8, 12, -1, 5])  # car, road, building, unlabelled, person
    path = write_kitti_label(tmp_path / "x.label", semantic, np.array([3, -1, -1, -1, 7]), SEMANTIC_KITTI19)
    raw = np.fromfile(path, dtype="<u4")
    assert (raw & 0xFFFF).tolist() == [10, 40, 50, 0, 30] and (raw >> 16).tolist() == [4, 0, 0, 0, 8]
    got, instance = read_kitti_label(path, 5, SEMANTIC_KITTI19)
    assert got.tolist() == semantic.tolist() and (instance >= 0).tolist() == [True, False, False, False, True]


def test_segments_categories_map_by_name(dataset: Dataset, tmp_path: Path) -> None:
    (tmp_path / "categories.json").write_text(json.dumps({"categories": [{"id": 7, "name": "chair"},
                                                                         {"id": 9, "name": "floor"}]}))
    (tmp_path / "s.json").write_text(json.dumps({"format_version": "0.1", "point_annotations": [0, 1, 1, 2],
                                                 "annotations": [{"id": 1, "category_id": 7},
                                                                 {"id": 2, "category_id": 9}]}))
    semantic, instance = read_segments_label(tmp_path / "s.json", 4, category_map(tmp_path, dataset.classes))
    assert semantic.tolist() == [-1, 3, 3, 0] and instance.tolist() == [-1, 1, 1, 2]
    (tmp_path / "categories.json").write_text(json.dumps({"categories": [{"id": 1, "name": "sofa"}]}))
    with pytest.raises(InteropError, match=r"categories \['sofa'\] are not in the class table"):
        category_map(tmp_path, dataset.classes)


def test_bad_files_name_the_file_and_the_value(dataset: Dataset, tmp_path: Path) -> None:
    (tmp_path / "short.label").write_bytes(b"\x00" * 12)
    with pytest.raises(InteropError, match=r"short.label: 12 bytes = 3 labels, but the scene has 10 points"):
        read_kitti_label(tmp_path / "short.label", 10, dataset.classes)
    np.array([9], dtype="<u4").tofile(tmp_path / "class.label")
    with pytest.raises(InteropError, match="semantic id 9, outside the class table"):
        read_kitti_label(tmp_path / "class.label", 1, dataset.classes)
    (tmp_path / "s.json").write_text(json.dumps({"annotations": [], "point_annotations": [0, 3]}))
    with pytest.raises(InteropError, match="object id 3, not in 'annotations'"):
        read_segments_label(tmp_path / "s.json", 2, category_map(tmp_path, dataset.classes))


@pytest.mark.parametrize("fmt", ["semantickitti", "segments"])
def test_import_makes_one_click_per_object(dataset: Dataset, tmp_path: Path, fmt: str) -> None:
    source = ground_truth_folder(dataset, tmp_path / "in", fmt)
    out = tmp_path / "clicks.json"
    assert wsseg_main(["labels", "import", str(source), "--format", fmt, "--data", str(dataset.root),
                       "--out", str(out)]) == 0
    clicks = load_weak_labels(out, dataset)
    assert list(clicks.header.scene_points) == ["room_a"]  # room_b had no file
    scene = dataset.load("room_a")
    entry = clicks.scenes["room_a"]  # type: ignore[union-attr]
    assert sorted(entry.cls.tolist()) == sorted(c for c, _ in OBJECTS.values())
    assert np.array_equal(scene.semantic[entry.point], entry.cls)  # type: ignore[index]
    tags = tmp_path / "tags.json"
    assert wsseg_main(["labels", "import", str(source), "--format", fmt, "--data", str(dataset.root),
                       "--kind", "scene_tags", "--out", str(tags)]) == 0
    assert load_weak_labels(tags, dataset).tags == {"room_a": (0, 1, 2, 3)}  # type: ignore[union-attr]


def test_import_reads_a_semantickitti_tree(dataset: Dataset, tmp_path: Path) -> None:
    """A scene named seqNN_XXXXXX (as `wsseg data convert --format semantickitti` names them) is found at
    sequences/NN/labels/XXXXXX.label."""
    from wsseg_training.annotate.interop import label_path

    tree = tmp_path / "kitti" / "sequences" / "08" / "labels"
    tree.mkdir(parents=True)
    (tree / "000042.label").write_bytes(b"")
    assert label_path(tmp_path / "kitti", "seq08_000042", "semantickitti") == tree / "000042.label"
    assert label_path(tmp_path / "kitti", "seq08_000043", "semantickitti") is None


@pytest.mark.parametrize("fmt", ["semantickitti", "segments"])
def test_export_writes_exactly_the_1t1c_expansion(dataset: Dataset, tmp_path: Path, fmt: str) -> None:
    clicks_file = save_weak_labels(simulate_clicks(dataset, ["room_a"], seed=0), tmp_path / "clicks.json")
    out = tmp_path / "out"
    assert wsseg_main(["labels", "export", str(clicks_file), "--format", fmt, "--data", str(dataset.root),
                       "--out", str(out)]) == 0
    scene = dataset.load("room_a")
    clicks = load_weak_labels(clicks_file, dataset)
    expected = initial_pseudo_labels(clicks.point_labels("room_a", scene.num_points), scene.supervoxel,  # type: ignore[union-attr]
                                     scene.xyz, dataset.classes, OtocConfig())
    if fmt == "semantickitti":
        semantic, instance = read_kitti_label(out / "room_a.label", scene.num_points, dataset.classes)
    else:
        semantic, instance = read_segments_label(out / "room_a.json", scene.num_points,
                                                 category_map(out, dataset.classes))
    assert np.array_equal(semantic, expected)
    entry = clicks.scenes["room_a"]  # type: ignore[union-attr]
    assert np.unique(instance[entry.point]).size == len(entry)  # every click its own object


def test_export_of_tags_is_refused(dataset: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tags = save_weak_labels(simulate_scene_tags(dataset, ["room_a"], 0), tmp_path / "tags.json")
    assert wsseg_main(["labels", "export", str(tags), "--format", "segments", "--data", str(dataset.root),
                       "--out", str(tmp_path / "o")]) == 1
    assert "only clicks export" in capsys.readouterr().err
