"""ONNX export: standard ops only, dynamic voxel counts, folded BatchNorm, parity with PyTorch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from wsseg_export.check import check_parity
from wsseg_export.onnx_export import ALLOWED_OPS
from wsseg_training.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint

from tests.conftest import make_box_scene
from wsseg.core.bundle import BundleError, load_bundle, model_input_names
from wsseg.core.scene import Scene, save_scene


def test_bundle_contents(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    proto = onnx.load(str(bundle.onnx_path))
    ops = {node.op_type for node in proto.graph.node}
    assert ops <= ALLOWED_OPS
    assert {"Gather", "MatMul", "Relu", "Concat"} <= ops
    assert "BatchNormalization" not in ops
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert all(o.domain in ("", "ai.onnx") for o in proto.opset_import)  # no custom op domains
    assert [i.name for i in proto.graph.input] == model_input_names(3)
    for value in proto.graph.input:
        assert value.type.tensor_type.shape.dim[0].dim_param.startswith("voxels_")  # dynamic voxel count
    meta = bundle.meta
    assert meta.classes.names == ("floor", "wall", "box")
    assert meta.preprocess.num_levels == 3 and meta.network["batchnorm_folded"] is True


@pytest.mark.parametrize("seed", [1, 2])
def test_onnxruntime_matches_pytorch_on_other_clouds(tiny_bundle: Path, tiny_checkpoint: Path, seed: int) -> None:
    bundle = load_bundle(tiny_bundle)
    model = model_from_checkpoint(load_checkpoint(tiny_checkpoint))
    xyz, rgb, _ = make_box_scene(seed=seed, n=9000 * seed)
    report = check_parity(bundle, model, [("box", Scene(xyz=xyz, rgb=rgb))])
    assert report.voxels > 1000
    assert report.label_agreement >= 0.999
    assert report.max_logit_diff < 1e-3


def test_export_check_command(tiny_bundle: Path, tmp_path: Path) -> None:
    xyz, rgb, semantic = make_box_scene(seed=5)
    scene_path = save_scene(tmp_path / "scene.npz", Scene(xyz=xyz, rgb=rgb, semantic=semantic.astype(np.int16)))
    wsseg = Path(sys.executable).parent / "wsseg"
    result = subprocess.run([str(wsseg), "export", "--check", str(tiny_bundle), "--data", str(scene_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "label agreement: 100.000%" in result.stdout or "label agreement: 99.9" in result.stdout
    assert "max |logit diff|:" in result.stdout


def test_bad_bundles_are_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nope")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.yaml").write_text((tiny_bundle / "model.yaml").read_text())
    with pytest.raises(BundleError, match=r"no model\.onnx"):
        load_bundle(broken)
    data = yaml.safe_load((tiny_bundle / "model.yaml").read_text())
    data["format_version"] = 99
    (broken / "model.yaml").write_text(yaml.safe_dump(data))
    (broken / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(BundleError, match="format_version"):
        load_bundle(broken)
    del data["preprocess"]
    data["format_version"] = 1
    (broken / "model.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(BundleError, match="preprocess"):
        load_bundle(broken)


def test_bad_checkpoints_are_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(tiny_checkpoint.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
