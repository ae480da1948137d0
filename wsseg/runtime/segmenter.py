"""``Segmenter``: a cloud in, a label and a confidence per point out, from a model bundle."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wsseg.core.backend import compiled
from wsseg.core.bundle import BundleError, ModelBundle, load_bundle
from wsseg.core.classes import UNLABELLED_ID, ClassTable
from wsseg.core.instances import INSTANCE_OFFSETS, instance_config_of, segment_instances
from wsseg.core.preprocess import NetworkInput, prepare_cloud, refine_point_labels
from wsseg.core.voxelize import indexable_mask
from wsseg.runtime.engines import OnnxRuntimeEngine


@dataclass(frozen=True)
class SegmentationResult:
    """labels: (N,) uint16 class ids, ``UNLABELLED_ID`` for invalid points (non-finite, or too far out for
    the voxel grid: :func:`wsseg.core.voxelize.indexable_mask`).
    confidence: (N,) float32 softmax probability of the label, 0 for invalid points.  With the bundle's
    support-plane refinement (``preprocess.refine``, :mod:`wsseg.core.refine`) a refined point's confidence
    is still the network's probability of the published label in its voxel (low where the plane overruled it).
    timings_ms: per-stage wall time: ``pre`` (voxelize, features, kernel maps),
    ``inference`` (the engine), ``post`` (softmax, devoxelize, refinement), ``total``.
    outputs: the bundle's extra outputs (model.yaml ``extra_outputs``, e.g. ``instance_offsets``) per point,
    (N, K) float32 each, NaN rows for invalid points; empty for a bundle without any.
    instance: (N,) uint32 instance id per point (1, 2, ... by proposal score; 0 = no instance or invalid), only
    for a bundle with ``instance_offsets`` (clustered by :func:`wsseg.core.instances.segment_instances`); else
    None.  Its clustering time is ``timings_ms["instances"]`` (part of ``post``).
    """

    labels: np.ndarray
    confidence: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    instance: np.ndarray | None = None


def softmax_max(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """logits: (M, C) float32 -> (argmax (M,) int64, max probability (M,) float32).

    One compiled pass when numba is there (:func:`wsseg.core.compiled_graph.softmax_max`), else numpy.
    """
    kernels = compiled()
    if kernels is not None and logits.dtype == np.float32 and logits.ndim == 2 and logits.shape[1] > 0:
        return kernels.softmax_max(np.ascontiguousarray(logits))
    labels = logits.argmax(axis=1)
    return labels, class_probability(logits, np.arange(logits.shape[0]), labels)


def class_probability(logits: np.ndarray, rows: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Softmax probability of class ``labels[i]`` in voxel ``rows[i]``: logits (M, C) float32, rows and labels
    (K,) int -> (K,) float32."""
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (exp[rows, labels] / exp.sum(axis=1)[rows]).astype(np.float32)


class Segmenter:
    """Segments point clouds with a model bundle (ONNX Runtime; CUDA/TensorRT when present).

    engine: see :mod:`wsseg.runtime.engines`.  num_threads: ONNX Runtime intra-op
    threads (0 = its default).  precision: TensorRT precision (fp16 / fp32; TensorRT engine only).
    """

    def __init__(self, bundle: str | Path | ModelBundle, engine: str = "auto", num_threads: int = 0,
                 precision: str = "fp16") -> None:
        self.bundle = bundle if isinstance(bundle, ModelBundle) else load_bundle(bundle)
        try:
            self.instances = instance_config_of(self.bundle.meta.extra_outputs, str(self.bundle.path / "model.yaml"))
            refine = self.bundle.meta.preprocess.refine
            if refine is not None:
                refine.support_id(self.bundle.meta.classes.names)
        except ValueError as exc:
            raise BundleError(f"{self.bundle.path / 'model.yaml'}: {exc}") from None
        self.engine = OnnxRuntimeEngine(self.bundle, engine=engine, num_threads=num_threads, precision=precision)

    @property
    def classes(self) -> ClassTable:
        return self.bundle.meta.classes

    @property
    def input_features(self) -> tuple[str, ...]:
        return self.bundle.meta.preprocess.features.ordered_names

    def warm_up(self) -> float:
        """Run one synthetic frame (builds a TensorRT engine, warms ONNX Runtime up); returns its ms."""
        from wsseg.runtime.tensorrt import warm_up_cloud

        xyz = warm_up_cloud(self.bundle.meta.preprocess.voxel_size_m, voxels=2000)
        n = xyz.shape[0]
        extra = {name: np.zeros(n, np.float32) for name in ("intensity",) if name in self.input_features}
        rgb = np.full((n, 3), 128, np.uint8) if "rgb" in self.input_features else None
        return self.run(xyz, rgb=rgb, **extra).timings_ms["total"]

    def segment(
        self, xyz: np.ndarray, rgb: np.ndarray | None = None, intensity: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """xyz: (N, 3) float32 metres (NaN allowed); rgb: (N, 3) uint8; intensity: (N,) float32.

        Returns (labels (N,) uint16, confidence (N,) float32).
        """
        result = self.run(xyz, rgb=rgb, intensity=intensity)
        return result.labels, result.confidence

    def run(
        self, xyz: np.ndarray, rgb: np.ndarray | None = None, intensity: np.ndarray | None = None,
        valid: np.ndarray | None = None,
    ) -> SegmentationResult:
        """Like :meth:`segment`, with per-stage timings.

        valid: optional (N,) bool, the points to segment (the caller's finite-and-cropped mask; others get
        ``UNLABELLED_ID``); "all" when None.  Points the voxel grid cannot index (non-finite, 1e30, ...:
        :func:`wsseg.core.voxelize.indexable_mask`) are dropped either way.
        """
        t0 = time.perf_counter()
        xyz = np.asarray(xyz, dtype=np.float32)
        if xyz.ndim != 2 or xyz.shape[1] != 3:
            raise ValueError(f"xyz must have shape (N, 3), got {xyz.shape}")
        n = xyz.shape[0]
        indexable = indexable_mask(xyz, self.bundle.meta.preprocess.voxel_size_m)  # finite, in the grid's reach
        if valid is None:
            valid = indexable
        else:
            valid = np.asarray(valid, dtype=bool)
            if valid.shape != (n,):
                raise ValueError(f"valid must have shape ({n},), got {valid.shape}")
            valid = valid & indexable
        count = int(np.count_nonzero(valid))
        if count == 0:
            total = (time.perf_counter() - t0) * 1e3
            empty = {o.name: np.full((n, o.channels), np.nan, dtype=np.float32) for o in self.bundle.meta.extra_outputs}
            timings = {"pre": total, "inference": 0.0, "post": 0.0, "total": total}
            no_instance = None if self.instances is None else np.zeros(n, dtype=np.uint32)
            return SegmentationResult(np.full((n,), UNLABELLED_ID, dtype=np.uint16), np.zeros((n,), dtype=np.float32),
                                      timings, empty, no_instance)
        everything = count == n

        kernels = compiled()

        def pick(values: np.ndarray | None, name: str | None = None) -> np.ndarray | None:
            if values is None or (name is not None and name not in self.input_features):
                return None
            values = np.asarray(values)
            if everything:
                return values
            if kernels is not None and values.ndim == 2:
                return kernels.compact_rows(np.ascontiguousarray(values), valid, count)
            return values[valid]

        net_input = prepare_cloud(self.bundle.meta.preprocess, pick(xyz), rgb=pick(rgb, "rgb"),
                                  intensity=pick(intensity, "intensity"))
        inputs = self.bundle.model_inputs(net_input)  # + the chunked graph's tables
        t1 = time.perf_counter()
        extra: dict[str, np.ndarray] = {}
        if self.engine.extra_outputs:
            extra = self.engine.run_all(inputs)
            logits = extra.pop("logits")
        else:
            logits = self.engine.run(inputs)
        if logits.ndim != 2 or logits.shape[1] != self.classes.num_classes:
            raise BundleError(f"{self.bundle.onnx_path}: logits have shape {logits.shape}, but model.yaml lists "
                              f"{self.classes.num_classes} classes")
        t2 = time.perf_counter()
        voxel_labels, voxel_conf = softmax_max(logits)
        voxel_labels = voxel_labels.astype(np.uint16)  # cast M voxels, not N points
        if kernels is not None:
            labels, confidence = kernels.devoxelize_labels(valid, net_input.grid.inverse, voxel_labels, voxel_conf,
                                                           UNLABELLED_ID)
        elif everything:
            labels, confidence = voxel_labels[net_input.grid.inverse], voxel_conf[net_input.grid.inverse]
        else:
            labels = np.full((n,), UNLABELLED_ID, dtype=np.uint16)
            confidence = np.zeros((n,), dtype=np.float32)
            labels[valid] = voxel_labels[net_input.grid.inverse]
            confidence[valid] = voxel_conf[net_input.grid.inverse]
        if self.bundle.meta.preprocess.refine is not None:
            self._refine(labels, confidence, valid, pick(xyz), logits, voxel_labels, net_input)
        outputs = {}
        for name, values in extra.items():
            per_point = np.full((n, values.shape[1]), np.nan, dtype=np.float32)
            per_point[valid] = values[net_input.grid.inverse]
            outputs[name] = per_point
        instance, instances_ms = None, 0.0
        if self.instances is not None:
            t_instances = time.perf_counter()
            _, ids = segment_instances(pick(xyz), net_input.grid, voxel_labels.astype(np.int64), voxel_conf,
                                       extra[INSTANCE_OFFSETS], self.instances)
            instance = np.zeros(n, dtype=np.uint32)
            instance[valid] = ids
            instances_ms = (time.perf_counter() - t_instances) * 1e3
        t3 = time.perf_counter()
        timings = {
            "pre": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3, "post": (t3 - t2) * 1e3, "total": (t3 - t0) * 1e3
        }
        if instance is not None:
            timings["instances"] = instances_ms
        return SegmentationResult(labels, confidence, timings, outputs, instance)

    def _refine(self, labels: np.ndarray, confidence: np.ndarray, valid: np.ndarray, xyz: np.ndarray,
                logits: np.ndarray, voxel_labels: np.ndarray, net_input: NetworkInput) -> None:
        """The bundle's support-plane refinement of the valid points, in place: labels (N,) uint16 and
        confidence (N,) float32 (the network's probability of the refined label in the point's voxel)."""
        inverse = net_input.grid.inverse
        point_labels = voxel_labels[inverse]
        refined = refine_point_labels(self.bundle.meta.preprocess, self.classes.names, xyz, point_labels, net_input)
        moved = refined != point_labels  # the others keep their voxel's probability from softmax_max
        labels[valid] = refined
        points = np.flatnonzero(valid)[moved]
        confidence[points] = class_probability(logits, inverse[moved], refined[moved].astype(np.int64))
