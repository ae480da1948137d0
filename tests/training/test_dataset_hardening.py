"""Crafted datasets and failing commands (issue 21): paths confined to the dataset, scene names from a safe
character set, and commands that fail leave no partial output (real ``wsseg`` processes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from wsseg_training.data.dataset import Dataset, DatasetError, DatasetWriter, safe_scene_name

from tests.conftest import REPO_ROOT, make_box_scene
from wsseg.core.classes import S3DIS
from wsseg.core.scene import Scene, save_scene

WSSEG = str(Path(sys.executable).parent / "wsseg")
CLASSES = {"name": "boxes", "names": ["floor", "wall", "box"], "palette": [[1, 2, 3], [4, 5, 6], [7, 8, 9]]}


def run_wsseg(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([WSSEG, *args], capture_output=True, text=True, timeout=timeout)


def box_scene(seed: int) -> Scene:
    xyz, rgb, semantic = make_box_scene(seed=seed, n=900)
    return Scene(xyz=xyz, rgb=rgb, semantic=semantic.astype(np.int16))


def crafted(root: Path, scenes: dict[str, str], splits: dict[str, list[str]] | None = None) -> Path:
    """A dataset.yaml whose scene entries point at ``scenes[name]`` (relative to ``root`` unless absolute)."""
    root.mkdir(parents=True, exist_ok=True)
    entries = {name: {"file": file, "points": 900} for name, file in scenes.items()}
    (root / "dataset.yaml").write_text(yaml.safe_dump({
        "format": "wsseg-dataset", "format_version": 1, "name": "crafted", "classes": CLASSES, "sensor": "rgbd",
        "splits": splits or {"train": list(scenes), "val": list(scenes)}, "scenes": entries}))
    return root


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A scene file outside the dataset that a crafted dataset.yaml points at."""
    (tmp_path / "victim").mkdir()
    return save_scene(tmp_path / "victim" / "scene.npz", box_scene(60))


@pytest.mark.parametrize("file", ["../victim/scene.npz", "scenes/../../victim/scene.npz", "ABSOLUTE"])
def test_scene_files_outside_the_dataset_are_refused(tmp_path: Path, victim: Path, file: str) -> None:
    """Defect 4: scene files given as ../victim/... or absolute paths were read and rewritten."""
    root = crafted(tmp_path / "data", {"a": str(victim) if file == "ABSOLUTE" else file})
    with pytest.raises(DatasetError, match=r"scenes.a.file .* outside the dataset directory") as info:
        Dataset(root)
    assert "dataset.yaml" in str(info.value)


def test_a_symlink_out_of_the_dataset_is_refused(tmp_path: Path, victim: Path) -> None:
    root = crafted(tmp_path / "data", {"a": "scenes/a.npz"})
    (root / "scenes").mkdir()
    os.symlink(victim, root / "scenes" / "a.npz")
    with pytest.raises(DatasetError, match="resolves outside the dataset directory"):
        Dataset(root).scene_path("a")


@pytest.mark.parametrize("name", ["../../x", "a/b", ".hidden", "", "x" * 300, "tab\tname", "semi;colon"])
def test_unsafe_scene_names_are_refused(tmp_path: Path, name: str) -> None:
    """Defect 4: a scene named ../../x made ``wsseg eval`` write its picture outside --out."""
    root = crafted(tmp_path / "data", {name: "scenes/a.npz"})
    with pytest.raises(DatasetError, match="scene name"):
        Dataset(root)
    with pytest.raises(DatasetError, match="scene name"):
        DatasetWriter(tmp_path / "out", "x", S3DIS).add(name, box_scene(0))


def test_file_names_become_safe_scene_names() -> None:
    assert safe_scene_name("scan (1)") == "scan_1_"
    assert safe_scene_name("../../x") == "x"
    assert safe_scene_name("Area_1_office_2") == "Area_1_office_2"
    assert safe_scene_name("ünïcode scan") == "n_code_scan"


def test_supervoxels_does_not_rewrite_a_file_outside_the_dataset(tmp_path: Path, victim: Path) -> None:
    """Defect 4 through the CLI: ``wsseg data supervoxels`` rewrote ../victim/scene.npz."""
    before = victim.read_bytes()
    root = crafted(tmp_path / "data", {"a": "../victim/scene.npz"})
    result = run_wsseg("data", "supervoxels", "--data", str(root))
    assert result.returncode == 1 and "outside the dataset directory" in result.stderr, result.stderr
    assert victim.read_bytes() == before
    assert not (root / "supervoxels.yaml").exists()


def test_eval_and_train_refuse_a_crafted_dataset(tmp_path: Path, victim: Path, tiny_bundle: Path) -> None:
    """Defect 4: eval wrote a PNG outside --out for a scene named ../../x; train read a file outside the dataset."""
    root = crafted(tmp_path / "data", {"../../x": "scenes/x.npz"})
    (root / "scenes").mkdir()
    save_scene(root / "scenes" / "x.npz", box_scene(61))
    out = tmp_path / "deep" / "er" / "report"
    result = run_wsseg("eval", "--bundle", str(tiny_bundle), "--data", str(root), "--split", "val", "--out", str(out),
                       "--engine", "onnxruntime-cpu")
    assert result.returncode == 1 and "scene name '../../x'" in result.stderr, result.stderr
    assert not list(tmp_path.rglob("x.png"))
    outside = crafted(tmp_path / "data2", {"a": "../victim/scene.npz"})
    run = tmp_path / "run"
    result = run_wsseg("train", "--method", "full", "--data", str(outside), "--config",
                       str(REPO_ROOT / "configs" / "full_cpu.yaml"), "--out", str(run), "--steps", "1",
                       "--no-progress", "--threads", "1")
    assert result.returncode == 1 and "outside the dataset directory" in result.stderr, result.stderr


def test_a_convert_that_fails_leaves_no_partial_dataset(tmp_path: Path) -> None:
    """Defect 7: ``data convert`` failing on the 2nd scan left a scene file and no dataset.yaml."""
    velodyne = tmp_path / "kitti" / "sequences" / "00" / "velodyne"
    velodyne.mkdir(parents=True)
    xyz, _, _ = make_box_scene(seed=62, n=600)
    np.concatenate([xyz, np.zeros((600, 1), np.float32)], axis=1).tofile(velodyne / "000000.bin")
    (velodyne / "000001.bin").write_bytes(b"\x00" * 30)  # not whole 16-byte points
    out = tmp_path / "out"
    result = run_wsseg("data", "convert", "--format", "semantickitti", "--in", str(tmp_path / "kitti"), "--out",
                       str(out), "--quiet")
    assert result.returncode == 1 and "000001.bin" in result.stderr, result.stderr
    assert not out.exists() or not any(out.rglob("*")), sorted(out.rglob("*"))


def test_a_convert_into_an_existing_dataset_keeps_it_when_it_fails(tmp_path: Path) -> None:
    """--overwrite that fails half-way leaves the old dataset as it was (scenes and dataset.yaml)."""
    out = tmp_path / "out"
    with DatasetWriter(out, "old", S3DIS) as writer:
        writer.add("seq00_000000", box_scene(63), split="train")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    velodyne = tmp_path / "kitti" / "sequences" / "00" / "velodyne"
    velodyne.mkdir(parents=True)
    xyz, _, _ = make_box_scene(seed=64, n=600)
    np.concatenate([xyz, np.zeros((600, 1), np.float32)], axis=1).tofile(velodyne / "000000.bin")
    (velodyne / "000001.bin").write_bytes(b"\x00" * 30)
    result = run_wsseg("data", "convert", "--format", "semantickitti", "--in", str(tmp_path / "kitti"), "--out",
                       str(out), "--quiet", "--overwrite")
    assert result.returncode == 1
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_a_train_that_fails_leaves_no_run_directory(tmp_path: Path) -> None:
    """Defect 7: a failed ``train`` left config.yaml and an empty log.txt."""
    root = tmp_path / "data"
    with DatasetWriter(root, "boxes", S3DIS) as writer:
        writer.add("s0", box_scene(65), split="train")
    run = tmp_path / "run"
    result = run_wsseg("train", "--method", "full", "--data", str(root), "--config",
                       str(REPO_ROOT / "configs" / "full_cpu.yaml"), "--out", str(run), "--split", "nosuch",
                       "--no-progress", "--threads", "1")
    assert result.returncode == 1 and "nosuch" in result.stderr, result.stderr
    assert not run.exists(), sorted(run.rglob("*"))
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    result = run_wsseg("train", "--method", "full", "--data", str(root), "--config",
                       str(REPO_ROOT / "configs" / "full_cpu.yaml"), "--out", str(existing), "--split", "nosuch",
                       "--no-progress", "--threads", "1")
    assert result.returncode == 1
    assert sorted(p.name for p in existing.iterdir()) == ["notes.txt"]
