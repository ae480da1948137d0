"""The dataset directory: writer, reader, and errors that name the file and field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from wsseg_training.data.dataset import Dataset, DatasetError, DatasetWriter

from wsseg.core.classes import S3DIS
from wsseg.core.scene import Scene


def scene(n: int, label: int = 0) -> Scene:
    return Scene(xyz=np.random.default_rng(n).normal(size=(n, 3)).astype(np.float32),
                 semantic=np.full(n, label, np.int16))


def write_small(root: Path) -> Path:
    with DatasetWriter(root, "small", S3DIS, sensor="rgbd") as writer:
        writer.add("a", scene(5), split="train", frame_id="map")
        writer.add("b", scene(7, 3), split="val")
        writer.add("c", scene(3))
    return root


def test_write_and_read(tmp_path: Path) -> None:
    dataset = Dataset(write_small(tmp_path / "ds"))
    assert len(dataset) == 3 and dataset.classes == S3DIS and dataset.info.sensor == "rgbd"
    assert dataset.scene_names("train") == ["a"] and dataset.scene_names("val") == ["b"]
    assert dataset.scene_names() == ["a", "b", "c"]
    assert dataset.info.scenes["a"]["frame_id"] == "map" and dataset.info.scenes["b"]["points"] == 7
    assert dataset.load("b").semantic.tolist() == [3] * 7


def test_writer_refuses_bad_scenes(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path / "ds", "x", S3DIS)
    writer.add("a", scene(4))
    with pytest.raises(DatasetError, match="added twice"):
        writer.add("a", scene(4))
    with pytest.raises(DatasetError, match="label 13 at point 0"):
        writer.add("b", scene(4, label=13))
    with pytest.raises(DatasetError, match="plain file stem"):
        writer.add("../evil", scene(4))
    with pytest.raises(DatasetError, match="sensor"):
        DatasetWriter(tmp_path / "ds2", "x", S3DIS, sensor="sonar")


def test_reader_errors_name_file_and_field(tmp_path: Path) -> None:
    root = write_small(tmp_path / "ds")
    with pytest.raises(DatasetError, match="not a wsseg dataset"):
        Dataset(tmp_path)
    meta = yaml.safe_load((root / "dataset.yaml").read_text())
    for change, message in (
        ({"format": "other"}, "field 'format'"),
        ({"sensor": "sonar"}, "field 'sensor' is 'sonar'"),
        ({"splits": {"train": ["zzz"]}}, "split 'train' names unknown scene"),
        ({"scenes": {"a": {"points": 3}}}, "scenes.a has no 'file'"),
        ({"classes": {"names": ["x"]}}, "field 'classes'"),
    ):
        (root / "dataset.yaml").write_text(yaml.safe_dump({**meta, **change}))
        with pytest.raises(DatasetError, match=message):
            Dataset(root)
    (root / "dataset.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(DatasetError, match="no split 'test'"):
        Dataset(root).scene_names("test")
    (root / "scenes" / "b.npz").write_bytes(b"truncated")
    with pytest.raises(ValueError, match=r"b\.npz: not a readable"):
        Dataset(root).load("b")
