"""The node's pure parts without a ROS context: message checks, RGB-D geometry, sync, slot, parameters, stats."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import yaml
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from tests.conftest import SHARED_DATA, make_box_scene
from wsseg.core.classes import UNLABELLED_ID
from wsseg.core.transforms import pose_matrix
from wsseg.ros.conversions import (
    FrameError,
    cloud_from_msg,
    cloud_to_msg,
    colour_from_msg,
    depth_from_msg,
    make_image,
)
from wsseg.ros.diagnostics import ERROR, OK, WARN, NodeStats
from wsseg.ros.params import ParameterError, config_from_values, schema_dict
from wsseg.ros.pipeline import Limits, segment_frame
from wsseg.ros.replay_sources import load_frames
from wsseg.ros.rgbd import backproject_depth, depth_to_millimetres
from wsseg.ros.slot import KeepLatestSlot
from wsseg.ros.sync import ApproximateSync
from wsseg.runtime.segmenter import Segmenter

REPO = Path(__file__).resolve().parents[2]
MOSD_FRAME = SHARED_DATA / "mosd" / "learn" / "learn0.pcd"


def padded_cloud(xyz: np.ndarray, rgb: np.ndarray, bigendian: bool = False) -> PointCloud2:
    """Fields in an unusual order (rgb, z, _, x, y) with padding inside points and at row ends."""
    n = xyz.shape[0]
    width, height = n // 2, 2
    order = ">" if bigendian else "<"
    dtype = np.dtype({"names": ["rgb", "z", "x", "y"], "formats": [order + "u4", order + "f4", order + "f4",
                                                                   order + "f4"],
                      "offsets": [0, 4, 12, 16], "itemsize": 24})
    records = np.zeros(n, dtype=dtype)
    records["x"], records["y"], records["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    records["rgb"] = (rgb[:, 0].astype(np.uint32) << 16) | (rgb[:, 1].astype(np.uint32) << 8) | rgb[:, 2]
    rows = np.zeros((height, width * 24 + 8), dtype=np.uint8)
    rows[:, :width * 24] = records.view(np.uint8).reshape(height, width * 24)
    msg = PointCloud2(height=height, width=width, point_step=24, row_step=width * 24 + 8, is_bigendian=bigendian)
    msg.fields = [PointField(name="rgb", offset=0, datatype=PointField.UINT32, count=1),
                  PointField(name="z", offset=4, datatype=PointField.FLOAT32, count=1),
                  PointField(name="x", offset=12, datatype=PointField.FLOAT32, count=1),
                  PointField(name="y", offset=16, datatype=PointField.FLOAT32, count=1)]
    msg.data = rows.tobytes()
    return msg


def test_cloud_decoding_any_order_padding_and_endianness() -> None:
    xyz, rgb, _ = make_box_scene(seed=1, n=600)
    for bigendian in (False, True):
        cloud = cloud_from_msg(padded_cloud(xyz, rgb, bigendian))
        assert (cloud.width, cloud.height) == (300, 2)
        np.testing.assert_array_equal(cloud.xyz, xyz)
        np.testing.assert_array_equal(cloud.rgb, rgb)
    plain = cloud_from_msg(cloud_to_msg(Header(), xyz, 600, 1, rgb=rgb, intensity=xyz[:, 0]))
    np.testing.assert_array_equal(plain.intensity, xyz[:, 0])


@pytest.mark.parametrize(("mutate", "cause", "text"), [
    (lambda m: setattr(m, "fields", [f for f in m.fields if f.name != "y"]), "missing_xyz", "no field 'y'"),
    (lambda m: setattr(m.fields[1], "datatype", PointField.UINT16), "datatype", "field 'z' has datatype UINT16"),
    (lambda m: setattr(m.fields[0], "datatype", PointField.FLOAT64), "datatype", "field 'rgb'"),
    (lambda m: setattr(m, "data", bytes(m.data)[:-5]), "data_length", "expected row_step"),
    (lambda m: setattr(m, "point_step", 32), "layout", "row_step"),
])
def test_each_malformed_cloud_is_a_named_frame_error(mutate: object, cause: str, text: str) -> None:
    xyz, rgb, _ = make_box_scene(seed=2, n=200)
    msg = padded_cloud(xyz, rgb)
    mutate(msg)  # type: ignore[operator]
    with pytest.raises(FrameError, match=text) as info:
        cloud_from_msg(msg, where="/segment_node/input/points")
    assert info.value.cause == cause and "/segment_node/input/points" in str(info.value)


def test_images_round_trip_and_bad_encodings() -> None:
    depth_m = np.array([[0.5, np.nan], [1.25, 2.0]], dtype=np.float32)
    mm = depth_from_msg(make_image(Header(), depth_to_millimetres(depth_m), "16UC1"))
    np.testing.assert_allclose(mm, depth_m, atol=1e-6)
    metres = depth_from_msg(make_image(Header(), depth_m, "32FC1"))
    np.testing.assert_array_equal(np.isnan(metres), np.isnan(depth_m))
    colour = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    np.testing.assert_array_equal(colour_from_msg(make_image(Header(), colour[..., ::-1], "bgr8")), colour)
    with pytest.raises(FrameError, match="not a depth encoding"):
        depth_from_msg(make_image(Header(), colour, "rgb8"))
    short = make_image(Header(), colour, "rgb8")
    short.data = bytes(short.data)[:-1]
    with pytest.raises(FrameError, match="expected step"):
        colour_from_msg(short)


def test_segment_frame_crop_cap_nan_and_empty(tiny_bundle: Path) -> None:
    segmenter = Segmenter(tiny_bundle, engine="onnxruntime-cpu")
    xyz, rgb, _ = make_box_scene(seed=3, n=3000)
    xyz[::10] = np.nan
    cloud = cloud_from_msg(cloud_to_msg(Header(), xyz, 3000, 1, rgb=rgb))
    full = segment_frame(segmenter, cloud, Limits())
    np.testing.assert_array_equal(full.labels, segmenter.segment(xyz, rgb)[0])  # same as offline
    assert (full.labels[::10] == UNLABELLED_ID).all()
    cropped = segment_frame(segmenter, cloud, Limits(max_range_m=2.0))
    far = np.linalg.norm(np.nan_to_num(xyz, nan=1e9), axis=1) > 2.0
    assert (cropped.labels[far] == UNLABELLED_ID).all() and (cropped.labels[~far] != UNLABELLED_ID).all()
    with pytest.raises(FrameError, match="exceed max_points 100"):
        segment_frame(segmenter, cloud, Limits(max_points=100))
    empty = cloud_from_msg(cloud_to_msg(Header(), np.zeros((0, 3), np.float32), 0, 1, rgb=np.zeros((0, 3), np.uint8)))
    assert segment_frame(segmenter, empty, Limits()).labels.shape == (0,)
    no_colour = cloud_from_msg(cloud_to_msg(Header(), xyz, 3000, 1))
    with pytest.raises(FrameError, match="needs colour"):
        segment_frame(segmenter, no_colour, Limits())


def test_rgbd_round_trip_of_a_real_kinect_frame() -> None:
    if not MOSD_FRAME.is_file():
        pytest.skip(f"{MOSD_FRAME} not available")
    frame = load_frames(MOSD_FRAME)[0]
    rgbd = frame.as_rgbd()
    assert rgbd.intrinsics is not None and rgbd.depth_m is not None
    np.testing.assert_allclose(rgbd.intrinsics[[0, 1, 0, 1], [0, 1, 2, 2]], [525.0, 525.0, 319.5, 239.5], atol=1e-3)
    back = backproject_depth(rgbd.depth_m, rgbd.intrinsics)
    valid = np.isfinite(frame.xyz).all(axis=1)
    np.testing.assert_array_equal(np.isfinite(back).all(axis=1), valid)
    np.testing.assert_allclose(back[valid], frame.xyz[valid], atol=1e-4)


def test_sync_matches_nearest_and_discards_superseded_depth() -> None:
    sync: ApproximateSync[str] = ApproximateSync(slop_s=0.01, queue_size=5)
    ms = 1_000_000
    assert sync.add("depth", 100 * ms, "d100") is None
    assert sync.add("color", 95 * ms, "c95") is None  # colour before depth: a nearer one may still come
    assert sync.add("camera_info", 100 * ms, "i100") is None
    matched = sync.add("color", 103 * ms, "c103")
    assert matched is not None and (matched.depth, matched.color, matched.camera_info) == ("d100", "c103", "i100")
    assert sync.add("depth", 200 * ms, "d200") is None
    assert sync.add("depth", 300 * ms, "d300") is None
    assert sync.add("color", 250 * ms, "c250") is None  # 50 ms from d200 / d300: outside the slop
    sync.add("camera_info", 300 * ms, "i300")
    matched = sync.add("color", 301 * ms, "c301")
    assert matched is not None and matched.depth == "d300" and sync.unmatched == 1  # d200 superseded
    assert all(not q for name, q in sync.queues.items() if name != "color") and not sync.queues["color"]


def test_keep_latest_slot_never_queues() -> None:
    slot: KeepLatestSlot[int] = KeepLatestSlot()
    for i in range(5):
        slot.put(i)
    assert slot.take(timeout=0.1) == 4 and slot.dropped == 4
    assert slot.take(timeout=0.05) is None
    slot.close()
    assert slot.take(timeout=1.0) is None


def test_parameters_are_validated_by_name() -> None:
    assert config_from_values({"model": "/m", "max_range_m": 30}).max_range_m == 30.0
    for values, name in (({"model": ""}, "model"), ({"model": "/m", "engine": "gpu"}, "engine"),
                         ({"model": "/m", "max_points": -1}, "max_points"),
                         ({"model": "/m", "min_range_m": 5.0, "max_range_m": 2.0}, "max_range_m"),
                         ({"model": "/m", "input_qos": 3}, "input_qos"), ({"model": "/m", "typo_m": 1}, "typo_m"),
                         ({"model": "/m", "model_frame_transform": [1.0, 2.0]}, "model_frame_transform"),
                         ({"model": "/m", "model_frame_transform": ["a"] * 6}, "model_frame_transform"),
                         ({"model": "/m", "model_frame_transform": [float("nan")] * 6}, "model_frame_transform")):
        with pytest.raises(ParameterError, match=name):
            config_from_values(values)
    moved = config_from_values({"model": "/m", "model_frame_transform": [0, 0, 1, 0, 0, 0]})
    assert moved.model_frame_transform == (0.0, 0.0, 1.0, 0.0, 0.0, 0.0)


def test_pose_matrix_of_a_camera_optical_frame() -> None:
    """roll = yaw = -90 deg: optical z (forward) -> +x, x (right) -> -y, y (down) -> -z, as for a level camera."""
    pose = pose_matrix([0.1, 0.0, 1.2, -np.pi / 2, 0.0, -np.pi / 2])
    assert pose is not None and pose_matrix([0.0] * 6) is None
    np.testing.assert_allclose(pose[:3, :3] @ [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(pose[:3, :3] @ [1.0, 0.0, 0.0], [0.0, -1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(pose[:3, :3] @ [0.0, 1.0, 0.0], [0.0, 0.0, -1.0], atol=1e-12)
    np.testing.assert_allclose(pose[:3, 3], [0.1, 0.0, 1.2])
    yawed = pose_matrix([0.0, 0.0, 0.0, 0.0, 0.0, np.pi / 2])
    np.testing.assert_allclose(yawed[:3, :3] @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)  # type: ignore[index]


def test_segment_frame_moves_points_into_the_model_frame(tiny_bundle: Path) -> None:
    """The network sees the moved points; the range crop stays in the sensor frame."""
    segmenter = Segmenter(tiny_bundle, engine="onnxruntime-cpu")
    xyz, rgb, _ = make_box_scene(seed=4, n=3000)
    cloud = cloud_from_msg(cloud_to_msg(Header(), xyz, 3000, 1, rgb=rgb))
    pose = pose_matrix([0.5, -0.2, 1.2, -np.pi / 2, 0.1, -np.pi / 2])
    assert pose is not None
    moved = (xyz.astype(np.float64) @ pose[:3, :3].T + pose[:3, 3]).astype(np.float32)
    keep = np.linalg.norm(xyz, axis=1) <= 2.5
    expected = np.full(xyz.shape[0], UNLABELLED_ID, dtype=np.uint16)
    expected[keep] = segmenter.segment(moved[keep], rgb[keep])[0]
    result = segment_frame(segmenter, cloud, Limits(max_range_m=2.5), to_model=pose)
    np.testing.assert_array_equal(result.labels, expected)


def test_shipped_yaml_validates_against_the_shipped_schema() -> None:
    schema = json.loads((REPO / "config" / "segment.schema.json").read_text())
    assert schema == schema_dict(), "config/segment.schema.json is stale: regenerate it from wsseg.ros.params"
    files = sorted((REPO / "config").glob("segment*.yaml"))
    assert len(files) == 3
    for path in files:
        data = yaml.safe_load(path.read_text())
        jsonschema.validate(data, schema)
        config_from_values({**data["/**"]["ros__parameters"], "model": "/bundle"})
    bad = yaml.safe_load(files[0].read_text())
    bad["/**"]["ros__parameters"]["max_range"] = 3.0
    with pytest.raises(jsonschema.ValidationError, match="max_range"):
        jsonschema.validate(bad, schema)


def test_diagnostic_levels() -> None:
    stats = NodeStats()
    engine = {"active": "onnxruntime-cpu"}
    assert stats.status(100.0, 500.0, engine, now=0.0).level == OK
    stats.record_frame({"pre": 10.0, "inference": 150.0, "post": 5.0, "total": 165.0}, now=1.0)
    status = stats.status(100.0, 500.0, engine, now=1.5)
    assert status.level == WARN and status.values["total_ms_median"] == "165.00"
    stats.record_rejected("missing_xyz", "no field 'x'")
    status = stats.status(100.0, 500.0, engine, now=2.0)
    assert status.level == ERROR and "no field 'x'" in status.message and status.values["frames_rejected"] == "1"
    assert stats.status(100.0, 500.0, engine, now=2.5).level == WARN  # errors are reported once


def test_rgbd_frame_moves_into_the_scene_frame_with_its_pose(tmp_path: Path) -> None:
    """A synthetic frame file's pose takes its organized cloud into the scene frame; NaN pixels stay NaN."""
    h, w = 4, 5
    depth = np.full((h, w), 2000, dtype=np.uint16)
    depth[1, 2] = 0  # no measurement
    k = np.array([[10.0, 0.0, 2.0], [0.0, 10.0, 1.5], [0.0, 0.0, 1.0]])
    pose = np.eye(4)
    pose[:3, :3] = [[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]  # optical (z forward) -> z up
    pose[:3, 3] = [1.0, 2.0, 1.5]
    colour = np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)
    np.savez(tmp_path / "frame_0000.npz", depth=depth, colour=colour, intrinsics=k, pose=pose,
             semantic=np.ones((h, w), dtype=np.int16), depth_scale=np.float64(0.001))
    frame = load_frames(tmp_path / "frame_0000.npz")[0]
    moved = frame.in_scene_frame()
    assert (moved.width, moved.height) == (w, h) and moved.semantic is not None
    camera = backproject_depth(frame.depth_m, k)
    valid = np.isfinite(camera).all(axis=1)
    assert valid.sum() == h * w - 1 and not np.isfinite(moved.xyz[~valid]).any()
    np.testing.assert_allclose(moved.xyz[valid], camera[valid] @ pose[:3, :3].T + pose[:3, 3], atol=1e-5)
    np.testing.assert_allclose(moved.xyz[valid][:, 0], 1.0 + 2.0, atol=1e-5)  # 2 m in front of the camera = +x
    np.testing.assert_array_equal(moved.rgb, colour.reshape(-1, 3))

    np.savez(tmp_path / "no_pose.npz", depth=depth, colour=colour, intrinsics=k)
    with pytest.raises(ValueError, match="no sensor pose"):
        load_frames(tmp_path / "no_pose.npz")[0].in_scene_frame()
    np.savez(tmp_path / "bad_pose.npz", depth=depth, colour=colour, intrinsics=k, pose=np.eye(3))
    with pytest.raises(ValueError, match="'pose' has shape"):
        load_frames(tmp_path / "bad_pose.npz")
