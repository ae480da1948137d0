"""Input checks of the node's pure parts (issue 21): ambiguous layouts, unused fields, caps, coordinates, stalls."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, PointCloud2, PointField
from std_msgs.msg import Header

from tests.conftest import make_box_scene
from wsseg.core.classes import UNLABELLED_ID
from wsseg.core.pointcloud2_fields import decode_fields, encode_fields
from wsseg.ros.conversions import CloudArrays, FrameError, cloud_from_msg, cloud_to_msg, intrinsics_from_msg
from wsseg.ros.diagnostics import ERROR, OK, WARN, NodeStats
from wsseg.ros.params import DEFAULT_MAX_POINTS, config_from_values, max_points_for
from wsseg.ros.pipeline import Limits, segment_frame
from wsseg.ros.rgbd import backproject_depth
from wsseg.runtime.segmenter import Segmenter


def message(arrays: dict[str, np.ndarray]) -> PointCloud2:
    specs, data, step = encode_fields(arrays)
    n = next(iter(arrays.values())).shape[0]
    msg = PointCloud2(height=1, width=n, point_step=step, row_step=step * n, is_bigendian=False, data=data)
    msg.fields = [PointField(name=s.name, offset=s.offset, datatype=s.datatype, count=s.count) for s in specs]
    return msg


def test_duplicate_field_names_are_refused() -> None:
    """Defect 5: a second 'x' (last one won) gave other labels without a word."""
    xyz, rgb, _ = make_box_scene(seed=1, n=100)
    msg = cloud_to_msg(Header(), xyz, 100, 1, rgb=rgb)
    msg.fields = [*msg.fields, PointField(name="x", offset=4, datatype=PointField.FLOAT32, count=1)]
    with pytest.raises(FrameError, match=r"field\(s\) \['x'\] declared more than once") as info:
        cloud_from_msg(msg, where="/in")
    assert info.value.cause == "duplicate_field" and "/in" in str(info.value)


def test_overlapping_fields_are_refused() -> None:
    """Defect 5: x declared FLOAT64 over the bytes of x and y was decoded as one number."""
    xyz, rgb, _ = make_box_scene(seed=2, n=100)
    msg = cloud_to_msg(Header(), xyz, 100, 1, rgb=rgb)
    msg.fields[0].datatype = PointField.FLOAT64
    with pytest.raises(FrameError, match=r"field 'x' .* overlaps field 'y'") as info:
        cloud_from_msg(msg)
    assert info.value.cause == "overlapping_fields"
    with pytest.raises(ValueError, match="overlaps"):  # the shared decoder (bag reader) refuses it too
        decode_fields([("x", 0, 8, 1), ("y", 4, 7, 1)], bytes(msg.data), point_step=msg.point_step,
                      row_step=msg.row_step, width=100, height=1)


def test_fields_the_model_does_not_use_are_not_read() -> None:
    """Defect 9: a malformed intensity (UINT8 x 4) rejected the frame of a model that uses only colour."""
    xyz, _, _ = make_box_scene(seed=3, n=100)
    msg = message({"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], "intensity": np.zeros((100, 4), np.uint8)})
    cloud = cloud_from_msg(msg, attributes=("rgb",))
    assert cloud.intensity is None and cloud.rgb is None
    np.testing.assert_array_equal(cloud.xyz, xyz)
    with pytest.raises(FrameError, match="field 'intensity' has datatype UINT8 x 4"):
        cloud_from_msg(msg, attributes=("intensity",))


@pytest.mark.parametrize("names", [("r", "g", "b"), ("red", "green", "blue")])
def test_separate_colour_fields_are_colour(names: tuple[str, str, str]) -> None:
    """Defect 9: r, g, b UINT8 fields were not recognised as colour by the node."""
    xyz, rgb, _ = make_box_scene(seed=4, n=100)
    msg = message({"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], names[0]: rgb[:, 0], names[1]: rgb[:, 1],
                   names[2]: rgb[:, 2]})
    cloud = cloud_from_msg(msg)
    assert cloud.rgb is not None
    np.testing.assert_array_equal(cloud.rgb, rgb)


def test_point_cap_is_checked_before_decoding() -> None:
    """Defect 2: the cap refuses a frame by its header (width x height), before its payload is read."""
    msg = PointCloud2(height=1000, width=2000, point_step=16, row_step=32000)  # no data at all: never read
    with pytest.raises(FrameError, match="2000 x 1000 = 2000000 points exceed max_points 1200000") as info:
        cloud_from_msg(msg, max_points=1_200_000)
    assert info.value.cause == "max_points"


def test_default_point_cap_is_sized_to_the_sensor() -> None:
    """Defect 2: max_points 0 used to mean no cap; now it is the sensor's cap."""
    points = config_from_values({"model": "/m"})
    assert points.max_points == 0
    assert max_points_for(points, "lidar") == DEFAULT_MAX_POINTS["lidar"] == 500_000
    assert max_points_for(points, "any") == max_points_for(points, "rgbd") == 1_200_000
    assert max_points_for(config_from_values({"model": "/m", "input_mode": "rgbd"}), "lidar") == 1_200_000
    assert max_points_for(config_from_values({"model": "/m", "max_points": 7}), "lidar") == 7
    assert points.max_range_m == 1000.0


def test_camera_info_with_a_malformed_k_is_a_frame_error() -> None:
    info = CameraInfo()
    info.k = [0.0] * 9
    with pytest.raises(FrameError, match="field 'k'"):
        intrinsics_from_msg(info)

    class Loose:  # what a bag reader may hand over
        def __init__(self) -> None:
            self.k = [1.0, 2.0]

    with pytest.raises(FrameError, match="field 'k' has 2 values"):
        intrinsics_from_msg(Loose())  # type: ignore[arg-type]


def test_extreme_coordinates_become_invalid_points(tiny_bundle: Path) -> None:
    """Defect 6: the float -> int64 voxel cast overflowed (one label at confidence 1 for 1e30), or one point at
    1e30 rejected the frame with negative extents."""
    segmenter = Segmenter(tiny_bundle, engine="onnxruntime-cpu")
    xyz, rgb, _ = make_box_scene(seed=5, n=3000)
    bad = xyz.copy()
    bad[[3, 4, 5, 6]] = [[1e30, 0, 0], [-1e30, 1e30, -1e30], [0, 0, 3e38], [2e7, 0, 0]]
    everywhere = Limits()  # no range crop: the Segmenter alone drops what the grid cannot index
    result = segment_frame(segmenter, CloudArrays(bad, rgb, None, 3000, 1), everywhere)
    assert (result.labels[[3, 4, 5, 6]] == UNLABELLED_ID).all() and (result.confidence[[3, 4, 5, 6]] == 0).all()
    keep = np.ones(3000, bool)
    keep[[3, 4, 5, 6]] = False
    np.testing.assert_array_equal(result.labels[keep], segmenter.segment(xyz[keep], rgb[keep])[0])
    labels, confidence = segmenter.segment(np.full((50, 3), 1e30, np.float32), np.zeros((50, 3), np.uint8))
    assert (labels == UNLABELLED_ID).all() and (confidence == 0).all()
    depth = np.full((4, 5), 1.0, np.float32)
    far = backproject_depth(depth, np.array([[1e-30, 0, 2.0], [0, 1e-30, 1.5], [0, 0, 1]]))  # fx = 1e-30
    cropped = segment_frame(segmenter, CloudArrays(far, np.zeros((20, 3), np.uint8), None, 5, 4),
                            Limits(max_range_m=1000.0))
    assert (cropped.labels == UNLABELLED_ID).all()


def test_stall_levels_when_inputs_arrive_but_nothing_is_answered() -> None:
    """Defect 1: diagnostics said OK 'idle' while RGB-D inputs arrived and nothing was paired."""
    stats = NodeStats(primary="depth", streams=("depth", "color", "camera_info"))
    engine = {"active": "onnxruntime-cpu"}
    for k in range(30):  # 10 Hz depth and camera_info, no colour
        stats.record_arrival("depth", now=k * 0.1)
        stats.record_arrival("camera_info", now=k * 0.1)
        stats.expect_output(now=k * 0.1)
    assert stats.status(200.0, 1000.0, engine, now=0.5, stall_warn_s=1.0, stall_error_s=2.5).level == OK
    warn = stats.status(200.0, 1000.0, engine, now=1.5, stall_warn_s=1.0, stall_error_s=2.5)
    assert warn.level == WARN and "no frame answered for 1.5 s" in warn.message
    error = stats.status(200.0, 1000.0, engine, now=3.0, stall_warn_s=1.0, stall_error_s=2.5)
    assert error.level == ERROR and "color 0.0 Hz" in error.message and "not paired" in error.message
    stats.record_frame({"total": 50.0}, now=3.1)
    ok = stats.status(200.0, 1000.0, engine, now=3.2, stall_warn_s=1.0, stall_error_s=2.5)
    assert ok.level == OK and ok.values["longest_stall_s"] == "3.1"
    idle = NodeStats().status(200.0, 1000.0, engine, now=10.0)
    assert idle.message == "idle (no input)"
