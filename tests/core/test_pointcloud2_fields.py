"""PointCloud2 bytes <-> numpy: field order, point and row padding, big-endian, packed colour, bad layouts."""

from __future__ import annotations

import numpy as np
import pytest

from wsseg.core.cloud_io import PointCloudFile, pack_rgb
from wsseg.core.pointcloud2_fields import (
    FLOAT32,
    FLOAT64,
    UINT8,
    UINT16,
    UINT32,
    FieldSpec,
    cloud_to_pointcloud2,
    decode_fields,
    encode_fields,
    pointcloud2_to_cloud,
)


def padded_payload(big_endian: bool) -> tuple[list[FieldSpec], bytes, dict[str, np.ndarray]]:
    """2 rows x 3 points; fields out of order, 4 bytes padding per point, 5 bytes per row; NaN at (1, 2)."""
    order = ">" if big_endian else "<"
    rng = np.random.default_rng(3)
    xyz = rng.normal(size=(6, 3)).astype(np.float32)
    xyz[5] = np.nan
    rgb = rng.integers(0, 256, (6, 3), dtype=np.uint8)
    values = {"intensity": rng.random(6).astype(np.float64), "z": xyz[:, 2], "rgb": pack_rgb(rgb).view(np.float32),
              "x": xyz[:, 0], "ring": np.arange(6, dtype=np.uint16), "y": xyz[:, 1]}
    specs = [FieldSpec("intensity", 0, FLOAT64, 1), FieldSpec("z", 8, FLOAT32, 1), FieldSpec("rgb", 12, FLOAT32, 1),
             FieldSpec("x", 16, FLOAT32, 1), FieldSpec("ring", 20, UINT16, 1), FieldSpec("y", 24, FLOAT32, 1)]
    point_step = 32  # row_step = 3 * 32 + 5 (rows are padded below)
    dtype = np.dtype({"names": [s.name for s in specs],
                      "formats": [order + ("f8" if s.datatype == FLOAT64 else "u2" if s.datatype == UINT16 else "f4")
                                  for s in specs],
                      "offsets": [s.offset for s in specs], "itemsize": point_step})
    records = np.zeros(6, dtype=dtype)
    for name, column in values.items():
        records[name] = column
    data = bytearray()
    for row in range(2):
        data += records[row * 3:(row + 1) * 3].tobytes() + b"\xee" * 5
    return specs, bytes(data), {**values, "xyz": xyz, "rgb": rgb}


@pytest.mark.parametrize("big_endian", [False, True])
def test_decode_padded_out_of_order(big_endian: bool) -> None:
    specs, data, truth = padded_payload(big_endian)
    cloud = pointcloud2_to_cloud(specs, data, point_step=32, row_step=101, width=3, height=2,
                                 is_bigendian=big_endian)
    assert (cloud.width, cloud.height) == (3, 2)
    np.testing.assert_array_equal(cloud.xyz, truth["xyz"])
    np.testing.assert_array_equal(cloud.rgb, truth["rgb"])
    np.testing.assert_array_equal(cloud.intensity, truth["intensity"].astype(np.float32))
    np.testing.assert_array_equal(cloud.fields["ring"], np.arange(6))
    assert cloud.fields["ring"].dtype == np.uint16
    np.testing.assert_array_equal(cloud.valid_mask(), [True] * 5 + [False])


def test_encode_decode_round_trip_with_label_and_confidence() -> None:
    rng = np.random.default_rng(0)
    cloud = PointCloudFile(xyz=rng.normal(size=(7, 3)).astype(np.float32),
                           rgb=rng.integers(0, 256, (7, 3), dtype=np.uint8),
                           label=np.array([0, 1, 2, 65535, 3, 1, 0], np.uint16),
                           fields={"confidence": rng.random(7).astype(np.float32),
                                   "normal": rng.random((7, 3)).astype(np.float32)})
    specs, data, step = cloud_to_pointcloud2(cloud)
    assert [s.name for s in specs] == ["x", "y", "z", "rgb", "label", "confidence", "normal"]
    assert step == 12 + 4 + 2 + 4 + 12
    assert specs[4].datatype == UINT16 and specs[6].count == 3
    back = pointcloud2_to_cloud(specs, data, point_step=step, row_step=7 * step, width=7, height=1)
    np.testing.assert_array_equal(back.xyz, cloud.xyz)
    np.testing.assert_array_equal(back.rgb, cloud.rgb)
    np.testing.assert_array_equal(back.label, cloud.label)
    np.testing.assert_array_equal(back.fields["confidence"], cloud.fields["confidence"])
    np.testing.assert_array_equal(back.fields["normal"], cloud.fields["normal"])


def test_decode_accepts_uint8_array_payload_and_empty_cloud() -> None:
    specs, data, _ = encode_fields({"x": np.ones(2, np.float32), "y": np.zeros(2, np.float32),
                                    "z": np.zeros(2, np.float32), "rgba": np.array([0xFF0000FF, 7], np.uint32)})
    arrays = decode_fields(specs, np.frombuffer(data, np.uint8), point_step=16, row_step=32, width=2, height=1)
    assert arrays["rgba"].dtype == np.uint32 and arrays["rgba"][0] == 0xFF0000FF
    empty = decode_fields(specs, b"", point_step=16, row_step=0, width=0, height=1)
    assert empty["x"].shape == (0,)


@pytest.mark.parametrize(("specs", "kwargs", "match"), [
    ([("x", 0, 42, 1)], {}, "field 'x' has unknown datatype 42"),
    ([("x", 0, FLOAT32, 1), ("y", 14, FLOAT32, 1)], {}, "field 'y' .* does not fit in point_step 16"),
    ([("x", 0, FLOAT32, 1), ("x", 4, FLOAT32, 1)], {}, "field 'x' appears twice"),
    ([("x", 0, FLOAT32, 1)], {"row_step": 20}, "row_step 20 < width 2"),
    ([("x", 0, FLOAT32, 1)], {"data": b"\0" * 31}, "data has 31 bytes, expected at least 32"),
    ([("x", 0, UINT8, 0)], {}, "field 'x' has count 0"),
])
def test_decode_rejects_bad_layouts(specs: list, kwargs: dict, match: str) -> None:
    args = {"data": b"\0" * 32, "point_step": 16, "row_step": 32, "width": 2, "height": 1} | kwargs
    data = args.pop("data")
    with pytest.raises(ValueError, match=match):
        decode_fields(specs, data, where="/camera/points", **args)


def test_missing_xyz_and_unsupported_dtype() -> None:
    specs, data, step = encode_fields({"intensity": np.ones(3, np.float32)})
    with pytest.raises(ValueError, match="needs fields 'x', 'y', 'z'"):
        pointcloud2_to_cloud(specs, data, point_step=step, row_step=3 * step, width=3, height=1)
    with pytest.raises(ValueError, match="field 'id' has dtype int64"):
        encode_fields({"id": np.zeros(3, np.int64)})
    assert UINT32 == 6
