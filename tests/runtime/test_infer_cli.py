"""``wsseg infer`` on real PLY / PCD / NPZ files: labels equal the Segmenter's, layout and fields kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_box_scene
from wsseg.core.classes import UNLABELLED_ID
from wsseg.core.cloud_io import PointCloudFile, read_cloud, write_cloud
from wsseg.runtime.segmenter import Segmenter

WSSEG = str(Path(sys.executable).parent / "wsseg")


def run_wsseg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([WSSEG, *args], capture_output=True, text=True, timeout=180)


@pytest.mark.parametrize("suffix", [".ply", ".pcd"])
def test_infer_file_round_trip(tiny_bundle: Path, tmp_path: Path, suffix: str) -> None:
    xyz, rgb, _ = make_box_scene(seed=8, n=3000)
    xyz[5] = np.nan  # an invalid point survives and comes out unlabelled
    source = write_cloud(tmp_path / f"in{suffix}", PointCloudFile(xyz=xyz, rgb=rgb))
    target = tmp_path / f"out{suffix}"
    result = run_wsseg("infer", "--model", str(tiny_bundle), "--in", str(source), "--out", str(target))
    assert result.returncode == 0, result.stderr
    assert "points labelled" in result.stdout
    labelled = read_cloud(target)
    expected_labels, expected_conf = Segmenter(tiny_bundle).segment(xyz, rgb=rgb)
    np.testing.assert_array_equal(labelled.label, expected_labels)
    np.testing.assert_allclose(labelled.fields["confidence"], expected_conf, rtol=1e-6)
    assert labelled.label[5] == UNLABELLED_ID
    np.testing.assert_array_equal(labelled.rgb, rgb)


def test_infer_labels_do_not_depend_on_preprocessing_threads(tiny_bundle: Path, tmp_path: Path) -> None:
    xyz, rgb, _ = make_box_scene(seed=4, n=20000)
    source = write_cloud(tmp_path / "in.ply", PointCloudFile(xyz=xyz, rgb=rgb))
    outputs = []
    for threads in ("1", "2"):
        target = tmp_path / f"out{threads}.ply"
        result = run_wsseg("infer", "--model", str(tiny_bundle), "--in", str(source), "--out", str(target),
                           "--preprocess-threads", threads)
        assert result.returncode == 0, result.stderr
        outputs.append(read_cloud(target))
    np.testing.assert_array_equal(outputs[0].label, outputs[1].label)
    np.testing.assert_array_equal(outputs[0].fields["confidence"], outputs[1].fields["confidence"])
    bad = run_wsseg("infer", "--model", str(tiny_bundle), "--in", str(source), "--out", str(tmp_path / "x.ply"),
                    "--preprocess-threads", "0")
    assert bad.returncode == 2 and "--preprocess-threads: must be >= 1, got 0" in bad.stderr


def test_infer_keeps_organized_layout(tiny_bundle: Path, tmp_path: Path) -> None:
    xyz, rgb, _ = make_box_scene(seed=9, n=1200)
    source = write_cloud(tmp_path / "organized.pcd", PointCloudFile(xyz=xyz, rgb=rgb, width=40, height=30))
    target = tmp_path / "organized_out.pcd"
    assert run_wsseg("infer", "--model", str(tiny_bundle), "--in", str(source), "--out", str(target)).returncode == 0
    labelled = read_cloud(target)
    assert (labelled.width, labelled.height) == (40, 30)


def test_infer_reports_bad_input(tiny_bundle: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.ply"
    bad.write_text("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nend_header\n1\n2\n")
    result = run_wsseg("infer", "--model", str(tiny_bundle), "--in", str(bad), "--out", str(tmp_path / "o.ply"))
    assert result.returncode == 1
    assert "bad.ply" in result.stderr
    missing = run_wsseg("infer", "--model", str(tmp_path / "nobundle"), "--in", str(bad), "--out", "x.ply")
    assert missing.returncode == 1 and "model bundle directory does not exist" in missing.stderr


def test_infer_many_files_reports_per_file_and_total_time(tiny_bundle: Path, tmp_path: Path) -> None:
    sources = []
    for seed in range(3):
        xyz, rgb, _ = make_box_scene(seed=20 + seed, n=1500)
        sources.append(str(write_cloud(tmp_path / f"cloud{seed}.ply", PointCloudFile(xyz=xyz, rgb=rgb))))
    result = run_wsseg("infer", "--model", str(tiny_bundle), "--in", *sources, "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    per_file = [line for line in result.stdout.splitlines() if "points labelled" in line]
    assert len(per_file) == 3 and all("read" in x and "segment" in x and "write" in x for x in per_file)
    total = result.stdout.strip().splitlines()[-1]
    assert total.startswith("done: 3 file(s), 4500 points in") and "ms per file" in total
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"cloud{i}_labelled.ply" for i in range(3)]
