"""The exported graph is TensorRT-ready: int32 index inputs, standard ops without Scatter, shapes that follow
from the input shapes only; the chunked formulation matches PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from wsseg_export.check import check_parity
from wsseg_export.onnx_export import ALLOWED_OPS, export_bundle
from wsseg_training.checkpoint import load_checkpoint, model_from_checkpoint, preprocess_from_checkpoint
from wsseg_training.model.fuse import fold_batchnorm
from wsseg_training.model.graph_ops import GraphUNet
from wsseg_training.model.inputs import to_torch

from tests.conftest import make_box_scene
from wsseg.core.bundle import load_bundle
from wsseg.core.conv_tables import GraphSpec, graph_inputs
from wsseg.core.preprocess import prepare_cloud
from wsseg.core.scene import Scene

#: op types whose output shape depends on tensor values (TensorRT needs shape-only dynamic dims)
DATA_DEPENDENT_OPS = {"NonZero", "Unique", "Compress", "TopK", "Range", "Loop", "If", "Scan", "Resize", "Tile",
                      "OneHot", "Where"}


@pytest.fixture(scope="module", params=["gather", "chunked"])
def bundle(request: pytest.FixtureRequest, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp(f"graph_{request.param}") / "bundle"
    export_bundle(tiny_checkpoint, out, graph=request.param)
    return out


def test_index_inputs_are_int32_and_ops_standard(bundle: Path) -> None:
    proto = onnx.load(str(bundle / "model.onnx"))
    types = {i.name: i.type.tensor_type.elem_type for i in proto.graph.input}
    assert types.pop("features") == onnx.TensorProto.FLOAT
    assert set(types.values()) == {onnx.TensorProto.INT32}, "every index table is int32"
    ops = {node.op_type for node in proto.graph.node}
    assert ops <= ALLOWED_OPS and not any(op.startswith("Scatter") for op in ops)
    assert not ops & DATA_DEPENDENT_OPS
    assert [i.name for i in proto.graph.input] == load_bundle(bundle).input_names


def test_every_shape_follows_from_the_input_shapes(bundle: Path) -> None:
    """Symbolic shape inference names every intermediate dimension by an expression of the input dims."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    proto = onnx.load(str(bundle / "model.onnx"))
    inferred = SymbolicShapeInference.infer_shapes(proto, auto_merge=True)
    unknown = []
    for value in list(inferred.graph.value_info) + list(inferred.graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value") and (not dim.dim_param or dim.dim_param.startswith("unk__")):
                unknown.append(value.name)
    assert not unknown, f"data-dependent dimensions: {unknown[:5]}"


def test_chunked_graph_matches_pytorch(tiny_checkpoint: Path, tmp_path: Path) -> None:
    bundle = export_bundle(tiny_checkpoint, tmp_path / "chunked", graph="chunked")
    assert bundle.meta.graph.formulation == "chunked" and all(bundle.meta.graph.chunked_levels)
    model = model_from_checkpoint(load_checkpoint(tiny_checkpoint))
    scenes = []
    for seed in (3, 4):
        xyz, rgb, semantic = make_box_scene(seed=seed, n=5000)
        scenes.append((f"box{seed}", Scene(xyz=xyz, rgb=rgb, semantic=semantic.astype(np.int16))))
    report = check_parity(bundle, model, scenes)
    assert report.label_agreement >= 0.999 and report.max_logit_diff < 1e-3


def test_a_light_finest_level_exports_and_matches_pytorch(tmp_path: Path) -> None:
    """blocks[0] = 0 (a light finest level: the stem, then a 1x1 decoder fuse) exports with standard ops;
    ORT == PyTorch."""
    from wsseg_training.checkpoint import make_checkpoint, save_checkpoint
    from wsseg_training.fit import LabelledInput, fit
    from wsseg_training.model.profiles import preprocess_config_for
    from wsseg_training.model.unet import SparseUNet, UNetConfig

    from wsseg.core.classes import ClassTable
    from wsseg.core.features import FeatureConfig

    config = preprocess_config_for("tiny", FeatureConfig(names=("offset", "rgb")), voxel_size_m=0.1)
    xyz, rgb, semantic = make_box_scene()
    torch.manual_seed(0)
    model = SparseUNet(UNetConfig(config.features.num_channels, 3, channels=(8, 16, 24), blocks=(0, 1, 1)))
    fit(model, [LabelledInput(prepare_cloud(config, xyz, rgb=rgb), semantic)], steps=10, lr=1e-2, progress=False)
    classes = ClassTable("boxes", ("floor", "wall", "box"), ((100, 80, 60), (200, 200, 200), (40, 90, 160)))
    ckpt = save_checkpoint(tmp_path / "light.pt", make_checkpoint(model.eval(), config, classes))
    bundle = export_bundle(ckpt, tmp_path / "bundle", graph="auto")
    graph = onnx.load(str(bundle.onnx_path))
    assert {node.op_type for node in graph.graph.node} <= set(ALLOWED_OPS)
    scenes = [(f"box{seed}", Scene(xyz=x, rgb=c, semantic=y.astype(np.int16)))
              for seed in (3, 4) for x, c, y in [make_box_scene(seed=seed, n=5000)]]
    report = check_parity(bundle, model_from_checkpoint(load_checkpoint(ckpt)), scenes)
    assert report.label_agreement >= 0.999 and report.max_logit_diff < 1e-3


def test_chunked_torch_forward_equals_gather_forward(tiny_checkpoint: Path) -> None:
    checkpoint = load_checkpoint(tiny_checkpoint)
    model = fold_batchnorm(model_from_checkpoint(checkpoint))
    xyz, rgb, _ = make_box_scene(seed=6, n=4000)
    net_input = prepare_cloud(preprocess_from_checkpoint(checkpoint), xyz, rgb=rgb)
    features, maps = to_torch(net_input)
    spec = GraphSpec(num_levels=model.num_levels, chunked_levels=(True,) * model.num_levels, chunk_rows=8)
    tables = graph_inputs(net_input.maps, spec)
    with torch.no_grad():
        reference = model(features, *maps)
        graph = GraphUNet(model, spec)
        chunked = graph(features, *(torch.from_numpy(tables[n]) for n in graph.names))
    torch.testing.assert_close(chunked, reference, rtol=1e-4, atol=1e-5)
