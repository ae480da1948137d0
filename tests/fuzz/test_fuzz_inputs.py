"""Property-based fuzzing of everything that reads outside input (issue 21), bounded for CI (well under 60 s).

Generated: malformed ``sensor_msgs`` PointCloud2 / Image / CameraInfo messages (real message classes) and
PCD / PLY files (valid files with corrupted headers, counts and bodies).  Asserted for every example: the
decoder returns well-formed arrays or raises its module's error type (``FrameError`` / ``CloudFileError``)
with a message naming where and which field -- never another exception; and the node's pipeline, having
seen whatever a decoder let through, still segments the next valid frame exactly as before.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from tests.conftest import make_box_scene
from wsseg.core.classes import UNLABELLED_ID
from wsseg.core.cloud_io import CloudFileError, PointCloudFile, read_cloud
from wsseg.core.pcd import write_pcd
from wsseg.core.ply import write_ply
from wsseg.ros.conversions import (
    FrameError,
    cloud_from_msg,
    cloud_to_msg,
    colour_from_msg,
    depth_from_msg,
    intrinsics_from_msg,
)
from wsseg.ros.pipeline import Limits, segment_frame
from wsseg.ros.rgbd import backproject_depth
from wsseg.runtime.segmenter import Segmenter

WHERE = "/fuzz/input"
FIELD_NAMES = ["x", "y", "z", "rgb", "rgba", "r", "g", "b", "intensity", "label", "_", "ring", "t"]
#: words a decoder's message uses to say which part of the message is at fault
MESSAGE_PARTS = ("data", "row_step", "point_step", "step", "width", "height", "encoding", "field", "points", "k")


def assert_names_a_field(exc: Exception, names: list[str]) -> None:
    text = str(exc)
    assert text.startswith(WHERE), text
    assert any(re.search(rf"\b{re.escape(part)}\b", text) for part in (*MESSAGE_PARTS, *names)), text


@st.composite
def random_pointclouds(draw: st.DrawFn) -> PointCloud2:
    """PointCloud2 messages of any fields, offsets, types, counts, steps and lengths (mostly unreadable)."""
    fields = []
    for name in draw(st.lists(st.sampled_from(FIELD_NAMES), min_size=0, max_size=7)):
        fields.append(PointField(name=name, offset=draw(st.integers(0, 40)), datatype=draw(st.integers(0, 9)),
                                 count=draw(st.integers(0, 4))))
    width, height = draw(st.integers(0, 12)), draw(st.integers(0, 3))
    point_step = draw(st.integers(0, 40))
    row_step = max(0, width * point_step + draw(st.integers(-4, 8)))
    length = max(0, row_step * height + draw(st.sampled_from([0, 0, 0, -1, 1, -7, 5])))
    data = draw(st.binary(min_size=length, max_size=length))
    return PointCloud2(height=height, width=width, fields=fields, is_bigendian=draw(st.booleans()),
                       point_step=point_step, row_step=row_step, data=data, is_dense=False)


SIZES = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 8: 8}


@st.composite
def plausible_pointclouds(draw: st.DrawFn) -> PointCloud2:
    """A well-formed layout (x, y, z + optional colour / intensity / extras, padding, row padding), then 0-2
    corruptions of one aspect each: datatype, count, offset, a duplicate name, a step, the data length."""
    colour = draw(st.sampled_from([[], ["rgb"], ["rgba"], ["r", "g", "b"], ["red", "green", "blue"]]))
    names = ["x", "y", "z", *colour]
    names += draw(st.lists(st.sampled_from(["intensity", "label", "ring", "t", "_"]), max_size=3, unique=True))
    fields, offset = [], 0
    for name in names:
        datatype = draw(st.sampled_from([7, 7, 8])) if name in "xyz" else (
            7 if name in ("rgb", "rgba") else draw(st.integers(1, 8)))
        count = 1 if name in ("x", "y", "z", "rgb", "rgba") else draw(st.sampled_from([1, 1, 1, 2]))
        offset += draw(st.sampled_from([0, 0, 0, 1, 4]))
        fields.append(PointField(name=name, offset=offset, datatype=datatype, count=count))
        offset += SIZES[datatype] * count
    width, height = draw(st.integers(0, 10)), draw(st.integers(1, 3))
    point_step = offset + draw(st.sampled_from([0, 0, 4]))
    row_step = width * point_step + draw(st.sampled_from([0, 0, 8]))
    length = row_step * height
    for _ in range(draw(st.integers(0, 2))):
        what = draw(st.sampled_from(["datatype", "count", "offset", "duplicate", "point_step", "row_step", "data"]))
        field = draw(st.sampled_from(fields))
        if what == "datatype":
            field.datatype = draw(st.integers(0, 9))
        elif what == "count":
            field.count = draw(st.integers(0, 3))
        elif what == "offset":
            field.offset = draw(st.integers(0, point_step + 4))
        elif what == "duplicate":
            fields.append(PointField(name=field.name, offset=field.offset, datatype=field.datatype, count=1))
        elif what == "point_step":
            point_step = max(0, point_step + draw(st.integers(-8, 8)))
        elif what == "row_step":
            row_step = max(0, row_step + draw(st.integers(-8, 8)))
        else:
            length = max(0, length + draw(st.integers(-9, 9)))
    data = draw(st.binary(min_size=length, max_size=length))
    return PointCloud2(height=height, width=width, fields=fields, is_bigendian=draw(st.booleans()),
                       point_step=point_step, row_step=row_step, data=data, is_dense=False)


def pointclouds() -> st.SearchStrategy[PointCloud2]:
    return st.one_of(plausible_pointclouds(), plausible_pointclouds(), random_pointclouds())


@settings(max_examples=400)
@given(msg=pointclouds(), attributes=st.sampled_from([("rgb", "intensity"), ("rgb",), ("intensity",), ()]))
def test_pointcloud2_decoder_returns_arrays_or_names_the_field(msg: PointCloud2, attributes: tuple[str, ...]) -> None:
    try:
        cloud = cloud_from_msg(msg, where=WHERE, attributes=attributes, max_points=30)
    except FrameError as exc:
        assert exc.cause and isinstance(exc.cause, str)
        assert_names_a_field(exc, [f.name for f in msg.fields])
        return
    n = msg.width * msg.height
    assert cloud.xyz.shape == (n, 3) and cloud.xyz.dtype == np.float32
    assert cloud.rgb is None or (cloud.rgb.shape == (n, 3) and cloud.rgb.dtype == np.uint8)
    assert cloud.intensity is None or (cloud.intensity.shape == (n,) and cloud.intensity.dtype == np.float32)
    assert "rgb" in attributes or cloud.rgb is None


@st.composite
def images(draw: st.DrawFn) -> Image:
    encoding = draw(st.sampled_from(["16UC1", "mono16", "32FC1", "rgb8", "bgr8", "rgba8", "bgra8", "8UC3", "", "yuv"]))
    width, height = draw(st.integers(0, 9)), draw(st.integers(0, 5))
    item = {"16UC1": 2, "mono16": 2, "32FC1": 4, "rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4}.get(encoding, 1)
    step = max(0, width * item + draw(st.sampled_from([0, 0, 0, -1, 1, 3, -5])))
    length = max(0, step * height + draw(st.sampled_from([0, 0, 0, -2, 1, 4])))
    return Image(height=height, width=width, encoding=encoding, is_bigendian=draw(st.booleans()), step=step,
                 data=draw(st.binary(min_size=length, max_size=length)))


@settings(max_examples=300)
@given(msg=images())
def test_image_decoders_return_arrays_or_name_the_field(msg: Image) -> None:
    for decode, channels in ((depth_from_msg, 0), (colour_from_msg, 3)):
        try:
            array = decode(msg, where=WHERE)
        except FrameError as exc:
            assert_names_a_field(exc, [])
            continue
        expected = (msg.height, msg.width, channels) if channels else (msg.height, msg.width)
        assert array.shape == expected
        assert array.dtype == (np.uint8 if channels else np.float32)
        if not channels:  # depth: metres, NaN where none, never 0 or negative or inf
            finite = array[np.isfinite(array)]
            assert (finite > 0).all() and not np.isinf(array).any()


@settings(max_examples=200)
@given(k=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=9, max_size=9))
def test_camera_info_gives_a_pinhole_matrix_or_names_k(k: list[float]) -> None:
    info = CameraInfo()
    info.k = k
    try:
        matrix = intrinsics_from_msg(info, where=WHERE)
    except FrameError as exc:
        assert "field 'k'" in str(exc) and str(exc).startswith(WHERE)
        return
    assert matrix.shape == (3, 3) and np.isfinite(matrix).all() and matrix[0, 0] > 0 and matrix[1, 1] > 0


# ------------------------------------------------------------------------------------------ cloud files


def sample_file(tmp: Path, kind: str) -> bytes:
    rng = np.random.default_rng(0)
    cloud = PointCloudFile(xyz=rng.normal(size=(12, 3)).astype(np.float32),
                           rgb=rng.integers(0, 256, (12, 3), dtype=np.uint8),
                           label=rng.integers(0, 4, 12).astype(np.uint16), width=4, height=3)
    path = tmp / f"sample.{kind.split('-')[0]}"
    if kind.startswith("pcd"):
        write_pcd(path, cloud, data=kind.split("-", 1)[1])
    else:
        write_ply(path, cloud, binary=kind == "ply-binary")
    return path.read_bytes()


KINDS = ["pcd-ascii", "pcd-binary", "pcd-binary_compressed", "ply-ascii", "ply-binary"]


@st.composite
def corrupted(draw: st.DrawFn, samples: dict[str, bytes]) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(KINDS))
    raw = bytearray(samples[kind])
    header_end = raw.find(b"DATA") if kind.startswith("pcd") else raw.find(b"end_header")
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "flip_header", "truncate", "append", "number", "delete_line"]))
        if action == "flip" and raw:
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
        elif action == "flip_header" and header_end > 0:
            raw[draw(st.integers(0, header_end - 1))] = draw(st.sampled_from(list(b" \n0123456789-xyzFUI")))
        elif action == "truncate":
            del raw[draw(st.integers(0, len(raw))):]
        elif action == "append":
            raw += draw(st.binary(min_size=1, max_size=40))
        elif action == "number":  # change one header number (counts, sizes, width, points)
            numbers = [m for m in re.finditer(rb"\d+", bytes(raw[:max(header_end, 0)]))]
            if numbers:
                m = draw(st.sampled_from(numbers))
                raw[m.start():m.end()] = str(draw(st.sampled_from([0, 1, 2, 3, 5, 11, 13, 99, 2**31]))).encode()
        elif action == "delete_line":
            lines = bytes(raw).split(b"\n")
            if len(lines) > 1:
                del lines[draw(st.integers(0, len(lines) - 1))]
                raw = bytearray(b"\n".join(lines))
        header_end = raw.find(b"DATA") if kind.startswith("pcd") else raw.find(b"end_header")
    return kind, bytes(raw)


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    tmp = tmp_path_factory.mktemp("fuzz_files")
    return {kind: sample_file(tmp, kind) for kind in KINDS}


def test_cloud_file_readers_return_clouds_or_name_the_file(samples: dict[str, bytes],
                                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("fuzzed")

    @settings(max_examples=300)
    @given(case=corrupted(samples))
    def check(case: tuple[str, bytes]) -> None:
        kind, raw = case
        path = folder / f"fuzzed.{kind.split('-')[0]}"
        path.write_bytes(raw)
        try:
            cloud = read_cloud(path)
        except CloudFileError as exc:
            assert str(path) in str(exc), str(exc)
            return
        n = cloud.num_points
        assert cloud.xyz.shape == (n, 3) and cloud.xyz.dtype == np.float32
        assert cloud.width * cloud.height == n
        assert cloud.rgb is None or (cloud.rgb.shape == (n, 3) and cloud.rgb.dtype == np.uint8)
        assert cloud.label is None or cloud.label.shape == (n,)

    check()


# ------------------------------------------------------------------------------------------ the pipeline


@pytest.fixture(scope="module")
def segmenter(tiny_bundle: Path) -> Segmenter:
    return Segmenter(tiny_bundle, engine="onnxruntime-cpu")


coordinates = st.floats(width=32, allow_nan=True, allow_infinity=True) | st.sampled_from(
    [0.0, 1e30, -1e30, 3.4e38, 1e-30, 2.0**20, -(2.0**18) * 0.1])


def test_pipeline_labels_any_decoded_cloud_and_then_the_next_valid_frame(segmenter: Segmenter) -> None:
    xyz, rgb, _ = make_box_scene(seed=70, n=1500)
    valid = cloud_from_msg(cloud_to_msg(Header(), xyz, 1500, 1, rgb=rgb))
    expected = segmenter.segment(xyz, rgb)[0]
    classes = segmenter.classes.num_classes

    @settings(max_examples=40)
    @given(points=st.lists(st.tuples(coordinates, coordinates, coordinates), min_size=0, max_size=60),
           msg=pointclouds(), max_range_m=st.sampled_from([0.0, 1000.0]))
    def check(points: list[tuple[float, float, float]], msg: PointCloud2, max_range_m: float) -> None:
        frames = [np.asarray(points, np.float32).reshape(-1, 3)]
        try:
            decoded = cloud_from_msg(msg, where=WHERE)
            if decoded.rgb is not None:
                frames.append(decoded.xyz)
        except FrameError:
            pass
        for cloud_xyz in frames:
            n = cloud_xyz.shape[0]
            cloud = cloud_from_msg(cloud_to_msg(Header(), cloud_xyz, n, 1, rgb=np.full((n, 3), 90, np.uint8)))
            result = segment_frame(segmenter, cloud, Limits(max_range_m=max_range_m), where=WHERE)
            labels = result.labels
            assert labels.shape == (n,) and labels.dtype == np.uint16
            assert ((labels < classes) | (labels == UNLABELLED_ID)).all()
            assert (labels[~np.isfinite(cloud_xyz).all(axis=1)] == UNLABELLED_ID).all()
        np.testing.assert_array_equal(segment_frame(segmenter, valid, Limits(), where=WHERE).labels, expected)

    check()


@settings(max_examples=60)
@given(depth=st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True), min_size=12, max_size=12),
       fx=st.floats(min_value=1e-30, max_value=1e6, allow_nan=False))
def test_backprojection_of_any_depth_is_segmentable(depth: list[float], fx: float) -> None:
    """Depth values and focal lengths of any size back-project to points that are finite or NaN-dropped."""
    image = np.asarray(depth, np.float32).reshape(3, 4)
    image[~np.isfinite(image) | (image <= 0)] = np.nan  # what depth_from_msg guarantees
    xyz = backproject_depth(image, np.array([[fx, 0, 1.5], [0, fx, 1.0], [0, 0, 1]]))
    assert xyz.shape == (12, 3) and xyz.dtype == np.float32
    assert np.isnan(xyz[np.isnan(image.ravel())]).all()
