"""Geometry features end to end: the bundle carries them, training and the node compute them identically,
and the node refuses a cloud that cannot provide them.  The support-plane refinement likewise: carried by the
bundle, applied identically by the node (``Segmenter``) and offline evaluation (``TorchPredictor``), and a
support class outside the class table is refused."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from std_msgs.msg import Header

from tests.conftest import make_box_scene
from wsseg.core.bundle import BundleError, load_bundle
from wsseg.core.classes import ClassTable
from wsseg.core.features import FeatureConfig
from wsseg.core.geometry import NoSupportPlaneError, PlaneParams
from wsseg.core.preprocess import refine_point_labels
from wsseg.core.refine import SupportRefine
from wsseg.core.scene import Scene
from wsseg.ros.conversions import FrameError, cloud_from_msg, cloud_to_msg
from wsseg.ros.pipeline import Limits, segment_frame
from wsseg.runtime.segmenter import Segmenter

FEATURES = ("offset", "rgb", "normal", "support_height", "support_cos")
# on the 10 cm grid: floor points of non-floor voxels up to 4 cm high become floor; floor-voxel points above 6 cm
# next to a wall / box voxel take its class
REFINE = SupportRefine(support_class="floor", below_m=0.04, above_m=0.06)


def sensor_frame_box_scene(seed: int = 0, n: int = 6000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``make_box_scene`` seen from a sensor 2 m above the floor's centre (the origin is the sensor)."""
    xyz, rgb, semantic = make_box_scene(seed=seed, n=n)
    return xyz - np.array([1.5, 1.5, 2.0], dtype=np.float32), rgb, semantic


@pytest.fixture(scope="module")
def geometry_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from wsseg_export.onnx_export import export_bundle
    from wsseg_training.checkpoint import make_checkpoint, save_checkpoint
    from wsseg_training.fit import LabelledInput, fit
    from wsseg_training.model.profiles import preprocess_config_for, unet_config_for
    from wsseg_training.model.unet import SparseUNet

    from wsseg.core.preprocess import prepare_cloud

    features = FeatureConfig(names=FEATURES, support_scale_m=0.5, plane=PlaneParams(threshold_m=0.02))
    config = preprocess_config_for("tiny", features, voxel_size_m=0.1)
    xyz, rgb, semantic = sensor_frame_box_scene()
    model = SparseUNet(unet_config_for("tiny", config.features.num_channels, 3))
    fit(model, [LabelledInput(prepare_cloud(config, xyz, rgb=rgb), semantic)], steps=10, lr=1e-2, progress=False)
    classes = ClassTable("boxes", ("floor", "wall", "box"), ((100, 80, 60), (200, 200, 200), (40, 90, 160)))
    root = tmp_path_factory.mktemp("geometry")
    checkpoint = save_checkpoint(root / "model.pt", make_checkpoint(model.eval(), config, classes, sensor="rgbd"))
    export_bundle(checkpoint, root / "bundle")
    return root / "bundle"


def test_bundle_lists_the_geometry_features_and_plane_settings(geometry_bundle: Path) -> None:
    written = yaml.safe_load((geometry_bundle / "model.yaml").read_text())["preprocess"]["features"]
    assert written["names"] == list(FEATURES)
    assert written["plane"]["threshold_m"] == 0.02 and written["support_scale_m"] == 0.5
    assert load_bundle(geometry_bundle).meta.preprocess.features.plane == PlaneParams(threshold_m=0.02)


def test_training_batches_and_the_node_feed_the_network_the_same_features(geometry_bundle: Path) -> None:
    from wsseg_training.engine.batches import collate
    from wsseg_training.engine.sampling import Sample
    from wsseg_training.engine.scenes import TrainScene

    segmenter = Segmenter(geometry_bundle, engine="onnxruntime-cpu")
    seen: list[np.ndarray] = []
    run = segmenter.engine.run
    segmenter.engine.run = lambda inputs: (seen.append(inputs["features"]), run(inputs))[1]  # type: ignore[method-assign]
    xyz, rgb, _ = sensor_frame_box_scene(seed=2)
    organized = xyz.copy()
    organized[::7] = np.nan  # invalid pixels: the node drops them, the scene record never had them
    cloud = cloud_from_msg(cloud_to_msg(Header(), organized, organized.shape[0], 1, rgb=rgb))
    result = segment_frame(segmenter, cloud, Limits())
    valid = np.isfinite(organized).all(axis=1)
    scene = TrainScene(name="s", xyz=xyz[valid], rgb=rgb[valid])
    whole = Sample(scene=0, subcloud=-1, pick=np.arange(int(valid.sum())), xyz=scene.xyz, rgb=scene.rgb, tags=None,
                   slot=0, group=0, member=0)
    batch = collate([scene], [whole], segmenter.bundle.meta.preprocess)
    assert len(seen) == 1
    np.testing.assert_array_equal(batch.net_input.features, seen[0])
    assert (result.labels[~valid] == 65535).all() and (result.labels[valid] < 3).all()


def test_node_refuses_a_cloud_without_a_support_plane(geometry_bundle: Path) -> None:
    segmenter = Segmenter(geometry_bundle, engine="onnxruntime-cpu")
    rng = np.random.default_rng(0)
    ball = rng.normal(size=(4000, 3))  # a sphere of 2 m: no plane holds 5 % of its voxels
    ball = (ball / np.linalg.norm(ball, axis=1, keepdims=True) * 2.0 + [0.0, 0.0, 3.0]).astype(np.float32)
    cloud = cloud_from_msg(cloud_to_msg(Header(), ball, 4000, 1, rgb=np.full((4000, 3), 128, np.uint8)))
    with pytest.raises(FrameError, match=r"support_height.*need a support plane") as caught:
        segment_frame(segmenter, cloud, Limits(), where="frame 7")
    assert caught.value.cause == "no_support_plane" and "frame 7" in str(caught.value)
    with pytest.raises(NoSupportPlaneError, match="min_inlier_fraction"):  # offline: the same clear error
        segmenter.segment(ball, np.full((4000, 3), 128, np.uint8))
    xyz, rgb, _ = sensor_frame_box_scene(seed=4)  # the next frame, with a floor, is segmented
    frame = segment_frame(segmenter, cloud_from_msg(cloud_to_msg(Header(), xyz, len(xyz), 1, rgb=rgb)), Limits())
    assert frame.valid_points == len(xyz)


def with_refine(bundle: Path, root: Path, refine: dict) -> Path:
    """A copy of ``bundle`` whose model.yaml has ``preprocess.refine = refine`` (the ONNX graph is the same)."""
    out = root / "bundle_refine"
    shutil.copytree(bundle, out)
    meta = yaml.safe_load((out / "model.yaml").read_text())
    meta["preprocess"]["refine"] = refine
    (out / "model.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return out


def test_node_and_offline_evaluation_refine_identically(geometry_bundle: Path, tmp_path: Path) -> None:
    from wsseg_training.checkpoint import load_checkpoint, model_from_checkpoint
    from wsseg_training.evaluation.evaluate import TorchPredictor

    refined_path = with_refine(geometry_bundle, tmp_path, REFINE.to_dict())
    bundle = load_bundle(refined_path)
    assert bundle.meta.preprocess.refine == REFINE  # model.yaml carries it
    xyz, rgb, _ = sensor_frame_box_scene(seed=3)
    plain = Segmenter(geometry_bundle, engine="onnxruntime-cpu").run(xyz, rgb)
    node = Segmenter(bundle, engine="onnxruntime-cpu").run(xyz, rgb)
    names = bundle.meta.classes.names
    expected = refine_point_labels(bundle.meta.preprocess, names, xyz, plain.labels.astype(np.int64))
    changed = expected != plain.labels
    assert changed.any()  # the rule moved points: the node's labels are not simply its voxels'
    np.testing.assert_array_equal(node.labels, expected)
    np.testing.assert_array_equal(node.confidence[~changed], plain.confidence[~changed])
    assert (node.confidence[changed] < plain.confidence[changed]).all()  # the network's probability of the new label
    model = model_from_checkpoint(load_checkpoint(geometry_bundle.parent / "model.pt"))
    scene = Scene(xyz=xyz, rgb=rgb)
    offline = TorchPredictor(model, bundle.meta.preprocess, classes=bundle.meta.classes).predict(scene)
    assert np.mean(offline == node.labels) > 0.999  # torch vs ONNX Runtime: the same rule on the same voxels
    with pytest.raises(ValueError, match="needs the class table"):
        TorchPredictor(model, bundle.meta.preprocess).predict(scene)


def test_a_support_class_outside_the_class_table_is_refused(geometry_bundle: Path, tmp_path: Path) -> None:
    bad = with_refine(geometry_bundle, tmp_path, dataclasses.replace(REFINE, support_class="table").to_dict())
    with pytest.raises(BundleError, match=r"model\.yaml: refine support_class 'table' is not a class of the model; "
                                          r"classes: \['floor', 'wall', 'box'\]"):
        Segmenter(bad, engine="onnxruntime-cpu")
