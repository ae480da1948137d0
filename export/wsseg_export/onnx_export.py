"""Checkpoint -> model bundle (``model.onnx`` with BatchNorm folded + ``model.yaml``).

The ONNX graph is the pure-torch gather-GEMM U-Net traced with the legacy
TorchScript exporter (``dynamo=False``: the traced graph is a straight chain of
standard ops).  Every voxel count is a dynamic axis (``voxels_<level>``), so one
file serves any cloud size; :data:`ALLOWED_OPS` lists the op types the graph may
contain — all standard ONNX ops that stock ONNX Runtime and TensorRT run
without plugins.
"""

from __future__ import annotations

import io
import logging
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import torch
from wsseg_training.checkpoint import (
    classes_from_checkpoint,
    load_checkpoint,
    model_from_checkpoint,
    preprocess_from_checkpoint,
)
from wsseg_training.model.fuse import fold_batchnorm
from wsseg_training.model.inputs import to_torch

from wsseg.core.bundle import (
    DEFAULT_OPSET,
    LOGITS_OUTPUT,
    MODEL_ONNX,
    BundleMeta,
    ModelBundle,
    load_bundle,
    model_input_names,
    write_bundle_meta,
)
from wsseg.core.preprocess import NetworkInput, PreprocessConfig, prepare_cloud

log = logging.getLogger(__name__)

#: Op types an exported wsseg graph may contain (asserted by the tests).
ALLOWED_OPS = frozenset({
    "Gather", "Reshape", "MatMul", "Gemm", "Concat", "Add", "Relu", "Constant", "ConstantOfShape",
    "Shape", "Unsqueeze", "Squeeze", "Slice", "Cast", "Mul", "Expand", "Identity", "Transpose",
})


def tracing_cloud(config: PreprocessConfig, num_points: int = 4000, seed: int = 0) -> NetworkInput:
    """A deterministic random cloud (a few surfaces in a 3 m box) used only to trace the graph."""
    rng = np.random.default_rng(seed)
    extent = max(3.0, 40 * config.voxel_size_m)
    xyz = rng.uniform(0.0, extent, size=(num_points, 3)).astype(np.float32)
    xyz[: num_points // 2, 2] = 0.0  # a floor, so submanifold neighbourhoods are not all empty
    rgb = rng.integers(0, 256, size=(num_points, 3), dtype=np.uint8)
    intensity = rng.uniform(0.0, config.features.intensity_scale, size=num_points).astype(np.float32)
    return prepare_cloud(config, xyz, rgb=rgb, intensity=intensity)


def dynamic_axes(num_levels: int) -> dict[str, dict[int, str]]:
    axes: dict[str, dict[int, str]] = {"features": {0: "voxels_0"}, LOGITS_OUTPUT: {0: "voxels_0"}}
    for level in range(num_levels):
        axes[f"neighbours_{level}"] = {0: f"voxels_{level}"}
    for level in range(num_levels - 1):
        axes[f"down_{level}"] = {0: f"voxels_{level + 1}"}
        axes[f"up_{level}"] = {0: f"voxels_{level}"}
    return axes


def export_onnx(model: torch.nn.Module, config: PreprocessConfig, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Trace a (BatchNorm-folded, eval) backbone into an ONNX model and check it."""
    sample = tracing_cloud(config)
    features, maps = to_torch(sample, index_dtype=torch.int32)  # int32 graph inputs (TensorRT has no int64 indices)
    names = model_input_names(config.num_levels)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            model, (features, *maps), buffer,
            input_names=names, output_names=[LOGITS_OUTPUT], dynamic_axes=dynamic_axes(config.num_levels),
            opset_version=opset, dynamo=False, do_constant_folding=True,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(proto, full_check=True)
    unexpected = sorted({node.op_type for node in proto.graph.node} - ALLOWED_OPS)
    if unexpected:
        raise RuntimeError(f"exported graph contains non-standard op types {unexpected}")
    return proto


def export_bundle(checkpoint_path: str | Path, out_dir: str | Path, opset: int = DEFAULT_OPSET) -> ModelBundle:
    """Write a model bundle for a training checkpoint; returns the loaded bundle."""
    checkpoint = load_checkpoint(checkpoint_path)
    config = preprocess_from_checkpoint(checkpoint)
    model = fold_batchnorm(model_from_checkpoint(checkpoint))
    proto = export_onnx(model, config, opset=opset)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{MODEL_ONNX}.tmp"
    onnx.save(proto, str(tmp))
    tmp.replace(out_dir / MODEL_ONNX)
    provenance = dict(checkpoint.get("provenance") or {})
    provenance.update({
        "checkpoint": str(Path(checkpoint_path).resolve()),
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "torch_version": str(torch.__version__),
        "onnx_version": str(onnx.__version__),
    })
    meta = BundleMeta(
        classes=classes_from_checkpoint(checkpoint),
        preprocess=config,
        network={"architecture": "residual sparse 3D U-Net (gather-GEMM)", **checkpoint["unet"],
                 "profile": provenance.get("profile", "custom"), "batchnorm_folded": True},
        sensor=str(checkpoint.get("sensor", "any")),
        provenance=provenance,
        opset=opset,
    )
    write_bundle_meta(out_dir, meta)
    log.info("wrote model bundle %s", out_dir)
    return load_bundle(out_dir)
