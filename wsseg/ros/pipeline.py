"""The segment node's algorithm, free of ROS: decoded arrays -> Segmenter -> output arrays.

``segment_frame`` applies the point cap and the range crop, runs the :class:`Segmenter` on the
valid points and returns a label and a confidence per input point (layout kept: invalid or
cropped points get ``UNLABELLED_ID`` and confidence 0).  Invalid points are dropped, never the
frame: non-finite coordinates, points outside the range crop, and (in the Segmenter) points the
voxel grid cannot index.  ``output_fields`` and
``visualization_fields`` build the per-point arrays of the two output clouds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from wsseg.core.backend import compiled
from wsseg.core.classes import UNLABELLED_ID, ClassTable
from wsseg.core.cloud_io import pack_rgb
from wsseg.core.features import SUPPORT_FEATURES
from wsseg.core.geometry import NoSupportPlaneError
from wsseg.core.transforms import transform_points
from wsseg.ros.conversions import CloudArrays, FrameError, check_point_count
from wsseg.runtime.segmenter import Segmenter

#: colour of unlabelled points in the visualization cloud
UNLABELLED_RGB = (0, 0, 0)


@dataclass(frozen=True)
class Limits:
    """Range crop (metres from the sensor origin; 0 = off) and cap on the points of a frame (0 = none)."""

    min_range_m: float = 0.0
    max_range_m: float = 0.0
    max_points: int = 0


@dataclass(frozen=True)
class FrameResult:
    """labels: (N,) uint16; confidence: (N,) float32; timings_ms: Segmenter's pre/inference/post/total;
    valid_points: points segmented (finite and inside the crop); instance: (N,) uint32 instance id (0 = none,
    invalid or cropped) when the bundle has an instance output, else None."""

    labels: np.ndarray
    confidence: np.ndarray
    valid_points: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    instance: np.ndarray | None = None


def crop_mask(xyz: np.ndarray, limits: Limits) -> np.ndarray:
    """(N,) bool: finite points whose range is inside ``[min_range_m, max_range_m]`` (bounds that are 0 are off)."""
    kernels = compiled()
    if kernels is not None and xyz.dtype in (np.float32, np.float64) and xyz.ndim == 2 and xyz.shape[1] == 3:
        return kernels.finite_in_range(np.ascontiguousarray(xyz), float(limits.min_range_m) ** 2,
                                       float(limits.max_range_m) ** 2)
    valid = np.isfinite(xyz).all(axis=1)
    if limits.min_range_m > 0 or limits.max_range_m > 0:
        with np.errstate(invalid="ignore", over="ignore"):  # NaN rows are already invalid
            squared = np.einsum("ij,ij->i", xyz, xyz, dtype=np.float64)
        if limits.min_range_m > 0:
            valid &= squared >= limits.min_range_m ** 2
        if limits.max_range_m > 0:
            valid &= squared <= limits.max_range_m ** 2
    return valid


def segment_frame(segmenter: Segmenter, cloud: CloudArrays, limits: Limits, where: str = "frame",
                  to_model: np.ndarray | None = None) -> FrameResult:
    """Segment one decoded cloud; raises :class:`FrameError` for a missing model input or the point cap.

    ``limits.max_points`` caps the points of the frame (``width x height``, valid or not), as the node checks
    before decoding.

    to_model: optional (4, 4) pose of the input frame in the model's frame
    (:func:`wsseg.core.transforms.pose_matrix`); the
    range crop stays in the input frame (distance from the sensor), the network sees the moved points.
    """
    n = cloud.xyz.shape[0]
    features = segmenter.input_features
    if "rgb" in features and cloud.rgb is None:
        raise FrameError(f"{where}: the model needs colour but the cloud has no 'rgb'/'rgba' field", "missing_rgb")
    if "intensity" in features and cloud.intensity is None:
        raise FrameError(f"{where}: the model needs intensity but the cloud has no intensity field",
                         "missing_intensity")
    check_point_count(cloud.width, cloud.height, limits.max_points, where)
    start = time.perf_counter()
    keep = crop_mask(cloud.xyz, limits)
    count = int(keep.sum())
    crop_ms = (time.perf_counter() - start) * 1e3
    labels = np.full(n, UNLABELLED_ID, dtype=np.uint16)
    confidence = np.zeros(n, dtype=np.float32)
    if count == 0:
        no_instance = None if segmenter.instances is None else np.zeros(n, dtype=np.uint32)
        return FrameResult(labels, confidence, 0, {"pre": crop_ms, "inference": 0.0, "post": 0.0, "total": crop_ms},
                           no_instance)
    moved = time.perf_counter()
    xyz = cloud.xyz if to_model is None else transform_points(cloud.xyz, to_model)  # NaN rows stay NaN
    crop_ms += (time.perf_counter() - moved) * 1e3
    try:
        result = segmenter.run(xyz, rgb=cloud.rgb, intensity=cloud.intensity, valid=keep)  # one compaction, inside
    except NoSupportPlaneError as exc:  # the bundle's support-plane features need a plane this cloud lacks
        raise FrameError(f"{where}: the model's features {[f for f in features if f in SUPPORT_FEATURES]} need "
                         f"a support plane: {exc}", "no_support_plane") from None
    labels, confidence = result.labels, result.confidence
    timings = dict(result.timings_ms)
    timings["pre"] += crop_ms
    timings["total"] += crop_ms
    return FrameResult(labels, confidence, count, timings, result.instance)


def output_fields(xyz: np.ndarray, labels: np.ndarray, confidence: np.ndarray,
                  instance: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Arrays of ``~/output/points``: x, y, z float32 (NaN kept), confidence float32, label uint16, and
    instance uint32 (0 = none) when the bundle has an instance output."""
    out = {"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], "confidence": confidence.astype(np.float32, copy=False),
           "label": labels.astype(np.uint16, copy=False)}
    if instance is not None:
        out["instance"] = instance.astype(np.uint32, copy=False)
    return out


def visualization_fields(xyz: np.ndarray, labels: np.ndarray, classes: ClassTable) -> dict[str, np.ndarray]:
    """Arrays of ``~/output/visualization``: x, y, z float32 and rgb (packed float32) from the class palette."""
    return {"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], "rgb": _packed_palette(classes)[labels].view(np.float32)}


@lru_cache(maxsize=8)
def _packed_palette(classes: ClassTable) -> np.ndarray:
    """(65536,) uint32 packed rgb of every uint16 label (the class palette, ``UNLABELLED_RGB`` elsewhere):
    one gather per frame instead of colourize + pack."""
    lut = np.full(65536, pack_rgb(np.asarray([UNLABELLED_RGB], dtype=np.uint8))[0], dtype=np.uint32)
    lut[:classes.num_classes] = pack_rgb(classes.palette_array())
    lut.setflags(write=False)
    return lut


def classes_payload(classes: ClassTable) -> dict:
    """What ``~/output/classes`` carries (as JSON): class table name, names, palette, unlabelled id."""
    return {"name": classes.name, "names": list(classes.names), "palette": [list(c) for c in classes.palette],
            "unlabelled_id": UNLABELLED_ID}
