"""WS3D's offset head through export: the ONNX ``instance_offsets`` equal PyTorch's, the bundle records the
clustering settings, the robot-side Segmenter clusters instances exactly as offline evaluation does (and only for
a bundle with the head), and ``wsseg infer`` writes the ``instance`` field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from wsseg_training.checkpoint import load_checkpoint
from wsseg_training.methods.ws3d.predict import Ws3dPredictor

from tests.conftest import make_box_scene
from wsseg.cli import main as wsseg_main
from wsseg.core.bundle import BundleError
from wsseg.core.instances import INSTANCE_OFFSETS, InstanceConfig
from wsseg.core.scene import Scene, save_scene
from wsseg.runtime.segmenter import Segmenter


def test_bundle_records_the_offsets_output_and_its_clustering(instance_bundle: Path) -> None:
    meta = yaml.safe_load((instance_bundle / "model.yaml").read_text())
    assert meta["onnx"]["outputs"] == ["logits", INSTANCE_OFFSETS]
    (output,) = meta["extra_outputs"]
    assert output["name"] == INSTANCE_OFFSETS and output["channels"] == 3 and "metres" in output["description"]
    assert InstanceConfig.from_dict(output["attributes"]["clustering"]) == InstanceConfig(
        classes=(2,), radius_m=0.15, shifted_radius_m=0.15, min_points=5)


def test_exported_offsets_equal_pytorch_and_instances_equal_offline(instance_checkpoint: Path,
                                                                    instance_bundle: Path) -> None:
    xyz, rgb, _ = make_box_scene(seed=3, n=5000)
    result = Segmenter(instance_bundle, engine="onnxruntime-cpu").run(xyz, rgb=rgb)
    predictor = Ws3dPredictor.from_checkpoint(instance_checkpoint)
    head = predictor.offsets
    from wsseg_training.engine.inference import infer

    torch_offsets = infer([Scene(xyz=xyz, rgb=rgb)], predictor.model, predictor.preprocess, "cpu",
                          head=lambda view: {"o": head(view.output.point_features)})[0]["o"].numpy()
    onnx_offsets = result.outputs[INSTANCE_OFFSETS]
    assert onnx_offsets.shape == (5000, 3)
    assert float(np.abs(onnx_offsets - torch_offsets).max()) < 1e-4
    assert float(np.abs(torch_offsets).max()) > 1e-3  # a real, non-zero output
    # the robot clusters what offline evaluation clusters (same function, same outputs)
    offline = predictor.predict_instances(Scene(xyz=xyz, rgb=rgb))
    assert result.instance is not None and result.instance.dtype == np.uint32 and result.instance.shape == (5000,)
    assert (result.instance > 0).any() and (result.instance[result.labels != 2] == 0).all()  # box points only
    np.testing.assert_array_equal(result.labels.astype(np.int64), offline.labels)
    np.testing.assert_array_equal(result.instance, offline.instance)
    assert "instances" in result.timings_ms
    # points the network does not see get no instance
    holes = xyz.copy()
    holes[:10] = np.nan
    masked = Segmenter(instance_bundle, engine="onnxruntime-cpu").run(holes, rgb=rgb)
    assert (masked.instance[:10] == 0).all()


def test_bundle_without_the_head_has_no_instances(tiny_bundle: Path) -> None:
    xyz, rgb, _ = make_box_scene(seed=3, n=2000)
    assert Segmenter(tiny_bundle, engine="onnxruntime-cpu").run(xyz, rgb=rgb).instance is None


def test_offsets_output_without_clustering_is_refused(instance_bundle: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(instance_bundle, broken)
    meta = yaml.safe_load((broken / "model.yaml").read_text())
    del meta["extra_outputs"][0]["attributes"]
    (broken / "model.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(BundleError, match=r"extra_outputs\[0\]\.attributes\.clustering"):
        Segmenter(broken, engine="onnxruntime-cpu")


def test_infer_writes_the_instance_field(instance_bundle: Path, tiny_bundle: Path, tmp_path: Path) -> None:
    xyz, rgb, _ = make_box_scene(seed=4, n=3000)
    save_scene(tmp_path / "cloud.npz", Scene(xyz=xyz, rgb=rgb))
    assert wsseg_main(["infer", "--model", str(instance_bundle), "--in", str(tmp_path / "cloud.npz"),
                       "--out", str(tmp_path / "out.npz")]) == 0
    with np.load(tmp_path / "out.npz") as out:
        expected = Segmenter(instance_bundle, engine="onnxruntime-cpu").run(xyz, rgb=rgb).instance
        np.testing.assert_array_equal(out["instance"], expected)
    assert wsseg_main(["infer", "--model", str(instance_bundle), "--in", str(tmp_path / "cloud.npz"),
                       "--out", str(tmp_path / "out.ply")]) == 0
    from wsseg.core.cloud_io import read_cloud

    ply = read_cloud(tmp_path / "out.ply")
    np.testing.assert_array_equal(ply.instance, expected)
    assert wsseg_main(["infer", "--model", str(tiny_bundle), "--in", str(tmp_path / "cloud.npz"),
                       "--out", str(tmp_path / "plain.npz")]) == 0
    with np.load(tmp_path / "plain.npz") as out:
        assert "instance" not in out.files


def test_checkpoint_keeps_the_clustering(instance_checkpoint: Path) -> None:
    spec = load_checkpoint(instance_checkpoint)["heads"][INSTANCE_OFFSETS]["spec"]
    assert spec["attributes"]["clustering"]["classes"] == [2]
