"""The runtime under bad bundles and bad files (issue 21): consistency checked at load, ``wsseg infer`` errors
that name the file, atomic and readable ``.npz`` output, ONNX Runtime telemetry off."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from wsseg_export.node_replay import free_domain_id, start_segment_node

from tests.conftest import make_box_scene
from wsseg.core.bundle import BundleError
from wsseg.core.cloud_io import PointCloudFile, read_cloud, write_cloud
from wsseg.runtime.segmenter import Segmenter

WSSEG = str(Path(sys.executable).parent / "wsseg")
REPO = Path(__file__).resolve().parents[2]


def run_wsseg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([WSSEG, *args], capture_output=True, text=True, timeout=180)


def edited_bundle(bundle: Path, out: Path, edit: object) -> Path:
    """A copy of ``bundle`` whose model.yaml went through ``edit(data)``."""
    shutil.copytree(bundle, out)
    data = yaml.safe_load((out / "model.yaml").read_text())
    edit(data)  # type: ignore[operator]
    (out / "model.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def two_classes(data: dict) -> None:
    data["classes"]["names"] = data["classes"]["names"][:2]
    data["classes"]["palette"] = data["classes"]["palette"][:2]


def offset_only(data: dict) -> None:
    data["preprocess"]["features"]["names"] = ["offset"]


def test_a_bundle_whose_files_disagree_is_refused_at_load(tiny_bundle: Path, tmp_path: Path) -> None:
    """Defect 3: model.yaml with 2 classes over a 3-class ONNX was used (label 2 written, outside the table);
    a feature-count mismatch loaded and failed on every frame."""
    classes = edited_bundle(tiny_bundle, tmp_path / "classes", two_classes)
    with pytest.raises(BundleError, match=r"output 'logits' has shape .* but .*model.yaml lists 2 classes") as info:
        Segmenter(classes, engine="onnxruntime-cpu")
    assert "model.onnx" in str(info.value)
    features = edited_bundle(tiny_bundle, tmp_path / "features", offset_only)
    with pytest.raises(BundleError, match=r"input 'features' has shape \[.*6\], but .*model.yaml") as info:
        Segmenter(features, engine="onnxruntime-cpu")
    assert "preprocess.features ['offset']" in str(info.value) and "model.onnx" in str(info.value)


def test_infer_refuses_inconsistent_bundles_with_both_files_named(tiny_bundle: Path, tmp_path: Path) -> None:
    """Defect 3 through the CLI: exit 1 and a one-line error, not exit 0 with label 2 or a traceback."""
    xyz, rgb, _ = make_box_scene(seed=50, n=500)
    source = write_cloud(tmp_path / "in.ply", PointCloudFile(xyz=xyz, rgb=rgb))
    for name, edit in (("classes", two_classes), ("features", offset_only)):
        bundle = edited_bundle(tiny_bundle, tmp_path / name, edit)
        result = run_wsseg("infer", "--model", str(bundle), "--in", str(source), "--out", str(tmp_path / f"{name}.ply"))
        assert result.returncode == 1, result.stdout + result.stderr
        assert "Traceback" not in result.stderr and "model.onnx" in result.stderr and "model.yaml" in result.stderr
        assert not (tmp_path / f"{name}.ply").exists()


def test_node_refuses_an_inconsistent_bundle_at_start(tiny_bundle: Path, tmp_path: Path) -> None:
    """Defect 3 on the node: it started and then rejected every frame; now it exits 1 naming both files."""
    bundle = edited_bundle(tiny_bundle, tmp_path / "classes", two_classes)
    node = start_segment_node(bundle, REPO / "config" / "segment.yaml", free_domain_id(), log_path=tmp_path / "n.log")
    with contextlib.suppress(subprocess.TimeoutExpired):  # a node that starts anyway is stopped below
        node.process.wait(60)
    assert node.stop() == 1
    log = node.log()
    assert "model.onnx" in log and "model.yaml lists 2 classes" in log


def test_infer_errors_name_the_input_file(tiny_bundle: Path, tmp_path: Path) -> None:
    """Defect 9: a cloud without the colour the model needs failed with a message that did not name the file."""
    xyz, _, _ = make_box_scene(seed=51, n=300)
    source = write_cloud(tmp_path / "grey.pcd", PointCloudFile(xyz=xyz))
    result = run_wsseg("infer", "--model", str(tiny_bundle), "--in", str(source), "--out", str(tmp_path / "o.pcd"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "grey.pcd" in result.stderr and "rgb" in result.stderr


def test_infer_npz_output_is_atomic_and_reads_back(tiny_bundle: Path, tmp_path: Path) -> None:
    """Defect 7: ``infer --out x.npz`` wrote in place, and its output could not be read back by ``infer``."""
    xyz, rgb, _ = make_box_scene(seed=52, n=800)
    source = write_cloud(tmp_path / "in.ply", PointCloudFile(xyz=xyz, rgb=rgb))
    first = tmp_path / "first.npz"
    assert run_wsseg("infer", "--model", str(tiny_bundle), "--in", str(source), "--out", str(first)).returncode == 0
    cloud = read_cloud(first)
    expected = Segmenter(tiny_bundle, engine="onnxruntime-cpu").segment(xyz, rgb)[0]
    np.testing.assert_array_equal(cloud.label, expected)
    np.testing.assert_array_equal(cloud.rgb, rgb)
    again = run_wsseg("infer", "--model", str(tiny_bundle), "--in", str(first), "--out", str(tmp_path / "again.npz"))
    assert again.returncode == 0, again.stderr
    np.testing.assert_array_equal(read_cloud(tmp_path / "again.npz").label, expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.npz", "first.npz", "in.ply"]  # no temporaries


def test_onnx_runtime_telemetry_is_off(tiny_bundle: Path, tmp_path: Path) -> None:
    """Defect 9: ONNX Runtime wrote a device id and a telemetry database under ~/.cache (its opt-out is called)."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME")}
    env["HOME"] = str(tmp_path)
    code = ("import numpy as np; from wsseg.runtime.segmenter import Segmenter; "
            f"Segmenter({str(tiny_bundle)!r}).segment(np.random.rand(100, 3).astype('f4'), np.zeros((100, 3), 'u1'))")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    written = [str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")]
    assert not written, written
