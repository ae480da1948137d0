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
from wsseg_training.methods.common.heads import heads_from_checkpoint
from wsseg_training.model.fuse import fold_batchnorm
from wsseg_training.model.graph_ops import GraphOps, GraphUNet, auto_graph_spec
from wsseg_training.model.unet import SparseUNet

from wsseg.core.bundle import (
    DEFAULT_OPSET,
    LOGITS_OUTPUT,
    MODEL_ONNX,
    BundleMeta,
    ExtraOutput,
    ModelBundle,
    load_bundle,
    model_input_names,
    write_bundle_meta,
)
from wsseg.core.conv_tables import FORMULATIONS, GraphSpec, graph_inputs
from wsseg.core.preprocess import NetworkInput, PreprocessConfig, prepare_cloud
from wsseg.runtime.tensorrt import input_profiles

log = logging.getLogger(__name__)

#: Op types an exported wsseg graph may contain (asserted by the tests).
ALLOWED_OPS = frozenset({
    "Gather", "Reshape", "MatMul", "Gemm", "Concat", "Add", "Relu", "Constant", "ConstantOfShape",
    "Shape", "Unsqueeze", "Squeeze", "Slice", "Cast", "Mul", "Expand", "Identity", "Transpose", "ReduceSum",
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


class GraphUNetWithHeads(GraphUNet):
    """:class:`GraphUNet` plus a method's exported heads (``Method.export_heads``) in one graph:
    ``(features, *tables) -> (logits, *[head(point_features)])``, each (M_0, K) float32."""

    def __init__(self, model: SparseUNet, spec: GraphSpec, heads: dict[str, torch.nn.Module]) -> None:
        super().__init__(model, spec)
        self.heads = torch.nn.ModuleDict(heads)

    def forward(self, features: torch.Tensor, *tables: torch.Tensor) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        out = self.model.run(features, GraphOps(self.spec, dict(zip(self.names, tables, strict=True))))
        return (out.logits, *(head(out.point_features) for head in self.heads.values()))


def dynamic_axes(graph: GraphSpec) -> dict[str, dict[int, str]]:
    """Every dimension of every input is dynamic, named by what it counts (``voxels_<level>``, ...)."""
    levels = graph.num_levels
    axes: dict[str, dict[int, str]] = {"features": {0: "voxels_0"}, LOGITS_OUTPUT: {0: "voxels_0"}}
    for level in range(levels):
        axes[f"neighbours_{level}"] = {0: f"voxels_{level}"}
    for level in range(levels - 1):
        axes[f"down_{level}"] = {0: f"voxels_{level + 1}"}
        axes[f"up_{level}"] = {0: f"voxels_{level}"}
    for prefix, voxels in ([(f"subm{lv}", f"voxels_{lv}") for lv in range(levels)]
                           + [(f"down{lv}", f"voxels_{lv + 1}") for lv in range(levels - 1)]):
        axes[f"{prefix}_pairs"] = {0: f"{prefix}_chunks", 1: "chunk_rows"}
        axes[f"{prefix}_offsets"] = {0: f"{prefix}_chunks"}
        axes[f"{prefix}_order"] = {0: voxels}
        for b in range(graph.num_buckets):
            axes[f"{prefix}_slots{b}"] = {0: f"{prefix}_bucket{b}_rows", 1: f"{prefix}_bucket{b}_width"}
    for level in range(levels - 1):
        axes[f"up{level}_pairs"] = {0: f"up{level}_chunks", 1: "chunk_rows"}
        axes[f"up{level}_offsets"] = {0: f"up{level}_chunks"}
        axes[f"up{level}_rows"] = {0: f"voxels_{level}"}
    names = set(model_input_names(levels, graph)) | {LOGITS_OUTPUT}
    return {name: dims for name, dims in axes.items() if name in names}


def export_onnx(model: torch.nn.Module, config: PreprocessConfig, opset: int = DEFAULT_OPSET,
                graph: GraphSpec | None = None, heads: dict[str, torch.nn.Module] | None = None) -> onnx.ModelProto:
    """Trace a (BatchNorm-folded, eval) backbone into an ONNX model of ``graph`` (default: gather) and check it.

    heads: a method's exported heads, each an extra output after ``logits`` (:class:`GraphUNetWithHeads`)."""
    graph = graph or GraphSpec(num_levels=config.num_levels)
    sample = tracing_cloud(config)
    tables = graph_inputs(sample.maps, graph)  # int32 graph inputs (TensorRT has no int64 indices)
    names = model_input_names(config.num_levels, graph)
    args = (torch.from_numpy(sample.features), *(torch.from_numpy(tables[n]) for n in names[1:]))
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        wrapped = GraphUNetWithHeads(model, graph, heads) if heads else GraphUNet(model, graph)
        extra = list(heads or {})
        torch.onnx.export(
            wrapped, args, buffer, input_names=names, output_names=[LOGITS_OUTPUT, *extra],
            dynamic_axes={**dynamic_axes(graph), **{name: {0: "voxels_0"} for name in extra}},
            opset_version=opset, dynamo=False, do_constant_folding=True,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(proto, full_check=True)
    unexpected = sorted({node.op_type for node in proto.graph.node} - ALLOWED_OPS)
    if unexpected:
        raise RuntimeError(f"exported graph contains non-standard op types {unexpected}")
    return proto


def graph_for(formulation: str, model: SparseUNet) -> GraphSpec:
    """``gather`` (every level), ``chunked`` (every level) or ``auto`` (:func:`auto_graph_spec`)."""
    levels = model.num_levels
    if formulation == "gather":
        return GraphSpec(num_levels=levels)
    if formulation == "chunked":
        return GraphSpec(num_levels=levels, chunked_levels=(True,) * levels)
    if formulation == "auto":
        return auto_graph_spec(model.config.channels)
    raise ValueError(f"graph formulation {formulation!r} is not one of {['auto', *FORMULATIONS]}")


def export_bundle(checkpoint_path: str | Path, out_dir: str | Path, opset: int = DEFAULT_OPSET,
                  graph: str = "auto") -> ModelBundle:
    """Write a model bundle for a training checkpoint; returns the loaded bundle.

    graph: the convolution formulation of the ONNX graph (:func:`graph_for`).
    """
    checkpoint = load_checkpoint(checkpoint_path)
    config = preprocess_from_checkpoint(checkpoint)
    model = fold_batchnorm(model_from_checkpoint(checkpoint))
    spec = graph_for(graph, model)
    heads = {name: head.eval() for name, head in heads_from_checkpoint(checkpoint).items()}  # none for most methods
    proto = export_onnx(model, config, opset=opset, graph=spec, heads=heads)
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
                 "profile": provenance.get("profile", "custom"), "batchnorm_folded": True,
                 "graph": spec.to_dict()},
        sensor=str(checkpoint.get("sensor", "any")),
        tensorrt_profiles={name: p.to_dict() for name, p in input_profiles(
            spec, config.features.num_channels, str(checkpoint.get("sensor", "any"))).items()},
        provenance=provenance,
        opset=opset,
        extra_outputs=tuple(ExtraOutput(name, head.out_channels, str(head.spec["description"]),
                                        dict(head.spec.get("attributes") or {}))
                            for name, head in heads.items()),
    )
    write_bundle_meta(out_dir, meta)
    log.info("wrote model bundle %s", out_dir)
    return load_bundle(out_dir)
