"""The robot path's fast variants equal the plain ones: cached back-projection, masked segmentation, palette LUT."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.conftest import make_box_scene
from wsseg.core import backend
from wsseg.core.classes import UNLABELLED_ID
from wsseg.core.cloud_io import pack_rgb
from wsseg.core.pointcloud2_fields import encode_fields
from wsseg.ros.pipeline import UNLABELLED_RGB, Limits, crop_mask, visualization_fields
from wsseg.ros.rgbd import Backprojector, backproject_depth
from wsseg.runtime.segmenter import Segmenter


def test_backprojector_reuses_its_buffer_and_equals_backproject_depth() -> None:
    rng = np.random.default_rng(0)
    k = np.array([[520.0, 0, 319.5], [0, 525.0, 239.5], [0, 0, 1]])
    project = Backprojector()
    previous = None
    for frame in range(3):
        depth = rng.uniform(0.5, 4, (48, 64)).astype(np.float32)
        depth[rng.random(depth.shape) < 0.2] = np.nan
        intrinsics = k if frame < 2 else k * [[1.1], [1.1], [1]]
        cloud = project(depth, intrinsics)
        np.testing.assert_array_equal(cloud, backproject_depth(depth, intrinsics))
        if frame == 1:
            assert np.shares_memory(cloud, previous)  # same camera: the buffer is reused
        previous = cloud


def test_masked_segmentation_equals_nan_masking_and_the_numpy_path(tiny_bundle: Path) -> None:
    segmenter = Segmenter(tiny_bundle, engine="onnxruntime-cpu")
    xyz, rgb, _ = make_box_scene(seed=3, n=4000)
    keep = np.random.default_rng(1).random(len(xyz)) > 0.3
    masked = xyz.copy()
    masked[~keep] = np.nan
    fast = segmenter.run(xyz, rgb=rgb, valid=keep)
    plain = segmenter.run(masked, rgb=rgb)
    with backend.numpy_only():
        oracle = segmenter.run(xyz, rgb=rgb, valid=keep)
    for other in (plain, oracle):
        np.testing.assert_array_equal(fast.labels, other.labels)
    np.testing.assert_array_equal(fast.confidence, plain.confidence)
    np.testing.assert_allclose(fast.confidence, oracle.confidence, rtol=1e-6, atol=0)  # numba's exp vs numpy's
    assert (fast.labels[~keep] == UNLABELLED_ID).all() and (fast.confidence[~keep] == 0).all()
    assert np.array_equal(crop_mask(masked, Limits()), keep)
    ranged = crop_mask(masked, Limits(min_range_m=1.0, max_range_m=3.0))
    with backend.numpy_only():
        assert np.array_equal(ranged, crop_mask(masked, Limits(min_range_m=1.0, max_range_m=3.0)))


def test_palette_lookup_equals_colourize(tiny_bundle: Path) -> None:
    classes = Segmenter(tiny_bundle, engine="onnxruntime-cpu").classes
    labels = np.array([0, 1, 2, UNLABELLED_ID, 1], dtype=np.uint16)
    rgb = visualization_fields(np.zeros((5, 3), np.float32), labels, classes)["rgb"].view(np.uint32)
    np.testing.assert_array_equal(rgb, pack_rgb(classes.colourize(labels, unknown_rgb=UNLABELLED_RGB)))


def test_encode_fields_pads_the_point_step() -> None:
    arrays = {"x": np.arange(3, dtype=np.float32), "label": np.array([1, 2, 3], dtype=np.uint16)}
    specs, data, step = encode_fields(arrays, align=4)
    assert step == 8 and len(data) == 24 and [s.offset for s in specs] == [0, 4]
    records = np.frombuffer(data, dtype=np.uint8).reshape(3, 8)
    assert (records[:, 6:] == 0).all()
    assert encode_fields(arrays)[2] == 6
