"""Method-owned outputs: a method's offline predictors for ``wsseg eval`` and extra exported per-voxel outputs
that ``wsseg export`` puts into the bundle, which the bundle reader and the runtime pass through."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
import yaml
from torch import nn
from wsseg_training.checkpoint import load_checkpoint, model_from_checkpoint, preprocess_from_checkpoint
from wsseg_training.data.dataset import Dataset, DatasetWriter
from wsseg_training.engine.config import config_from_dict
from wsseg_training.engine.loop import Trainer
from wsseg_training.engine.run_dir import RunDir
from wsseg_training.eval_cli import extra_predictors
from wsseg_training.methods import METHODS, FullMethod, StepContext
from wsseg_training.methods.common.heads import PointHead, heads_from_checkpoint, heads_to_checkpoint
from wsseg_training.model.inputs import to_torch

from tests.conftest import make_box_scene
from wsseg.core.bundle import BundleError, load_bundle
from wsseg.core.classes import ClassTable
from wsseg.core.preprocess import prepare_cloud
from wsseg.core.scene import Scene
from wsseg.runtime.segmenter import Segmenter

CLASSES = ClassTable("boxes", ("floor", "wall", "box"), ((100, 80, 60), (200, 200, 200), (40, 90, 160)))


class CentreOffsets(FullMethod):
    """``full`` plus a head regressing every voxel's offset to the box centre (like WS3D's instance offsets)."""

    name = "centre_offsets_toy"

    def build_modules(self, backbone: nn.Module) -> nn.ModuleDict:
        width = backbone.config.channels[0]  # type: ignore[attr-defined]
        return nn.ModuleDict({"offsets": PointHead(width, (8,), 3, "offset to the box centre, metres")})

    def losses(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        terms = super().losses(ctx)
        offsets = ctx.modules["offsets"](ctx.output.point_features)  # (M_0, 3); any regression target will do here
        terms["offsets"] = ctx.mean((offsets - 1.0).square().sum(), offsets.shape[0])
        return terms

    def export_heads(self, modules: nn.ModuleDict) -> dict[str, PointHead]:
        return {"centre_offsets": modules["offsets"]}  # type: ignore[dict-item]


class WithPredictor(FullMethod):
    name = "with_predictor_toy"
    made: ClassVar[list[Path]] = []

    @classmethod
    def offline_predictors(cls, checkpoint: Path, device: torch.device) -> dict:
        cls.made.append(checkpoint)
        return {"-toy": object()}


@pytest.fixture(scope="module")
def offsets_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("outputs")
    with DatasetWriter(root / "data", "boxes", CLASSES) as writer:
        for i in range(2):
            xyz, rgb, semantic = make_box_scene(seed=i, n=2500)
            writer.add(f"s{i}", Scene(xyz=xyz, rgb=rgb, semantic=semantic.astype(np.int16)), split="train")
    config = config_from_dict({"profile": "tiny", "device": "cpu", "data": {"batch_scenes": 2},
                               "train": {"steps": 3, "checkpoint_every_steps": 0, "keep_checkpoints": 0}})
    Trainer(config, CentreOffsets(CLASSES), Dataset(root / "data"), root / "run", progress=False).run()
    return root / "run"


@pytest.fixture(scope="module")
def offsets_bundle(offsets_run: Path) -> Path:
    from wsseg_export.onnx_export import export_bundle

    export_bundle(offsets_run / "model.pt", offsets_run.parent / "bundle")
    return offsets_run.parent / "bundle"


def test_model_checkpoint_carries_the_exported_heads(offsets_run: Path) -> None:
    checkpoint = load_checkpoint(offsets_run / "model.pt")
    heads = heads_from_checkpoint(checkpoint)
    assert list(heads) == ["centre_offsets"] and heads["centre_offsets"].out_channels == 3
    trained = load_checkpoint(offsets_run / "checkpoints" / "last.pt")["training"]["modules"]
    weight = heads["centre_offsets"].state_dict()["layers.0.weight"]
    torch.testing.assert_close(weight, trained["offsets.layers.0.weight"])
    assert "heads" not in load_checkpoint(offsets_run / "checkpoints" / "last.pt")  # only the final model.pt
    with pytest.raises(ValueError, match="'Offsets'"):
        heads_to_checkpoint({"Offsets": heads["centre_offsets"]})


def test_exported_bundle_has_the_extra_output_and_the_segmenter_returns_it(offsets_run: Path,
                                                                           offsets_bundle: Path) -> None:
    bundle = load_bundle(offsets_bundle)
    assert bundle.output_names == ["logits", "centre_offsets"]
    meta = yaml.safe_load((offsets_bundle / "model.yaml").read_text())
    assert meta["extra_outputs"] == [{"name": "centre_offsets", "channels": 3,
                                      "description": "offset to the box centre, metres"}]
    xyz, rgb, _ = make_box_scene(seed=5, n=2000)
    xyz[7] = np.nan  # an invalid point: NaN offsets, label 65535
    result = Segmenter(bundle).run(xyz, rgb=rgb)
    offsets = result.outputs["centre_offsets"]
    assert offsets.shape == (2000, 3) and np.isnan(offsets[7]).all() and np.isfinite(np.delete(offsets, 7, 0)).all()
    # the same numbers as the PyTorch backbone + head
    checkpoint = load_checkpoint(offsets_run / "model.pt")
    model, head = model_from_checkpoint(checkpoint).eval(), heads_from_checkpoint(checkpoint)["centre_offsets"].eval()
    valid = np.isfinite(xyz).all(axis=1)
    net_input = prepare_cloud(preprocess_from_checkpoint(checkpoint), xyz[valid], rgb=rgb[valid])
    features, maps = to_torch(net_input)
    with torch.no_grad():
        expected = head(model.forward_features(features, maps).point_features).numpy()[net_input.grid.inverse]
    np.testing.assert_allclose(offsets[valid], expected, atol=1e-4)


def test_bundle_reader_ignores_absent_and_rejects_bad_extra_outputs(offsets_bundle: Path, tmp_path: Path,
                                                                   tiny_bundle: Path) -> None:
    plain = Segmenter(tiny_bundle)  # a bundle without extra outputs: no "extra_outputs" key, nothing returned
    assert plain.bundle.output_names == ["logits"]
    xyz, rgb, _ = make_box_scene(n=500)
    assert plain.run(xyz, rgb=rgb).outputs == {}
    shutil.copytree(offsets_bundle, tmp_path / "b")
    path = tmp_path / "b" / "model.yaml"
    meta = yaml.safe_load(path.read_text())
    meta["extra_outputs"][0]["channels"] = 0
    path.write_text(yaml.safe_dump(meta))
    with pytest.raises(BundleError, match=r"field 'extra_outputs\[0\]': field 'channels' is 0"):
        load_bundle(tmp_path / "b")
    del meta["extra_outputs"]  # model.yaml forgets the output the graph has
    meta["onnx"]["outputs"] = ["logits"]
    path.write_text(yaml.safe_dump(meta))
    with pytest.raises(BundleError, match=r"model outputs \['logits', 'centre_offsets'\] do not match model.yaml"):
        Segmenter(tmp_path / "b")


def test_eval_asks_the_runs_method_for_its_predictors(offsets_run: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    run = RunDir(tmp_path / "run")
    assert extra_predictors(run, torch.device("cpu")) == []  # no checkpoint: nothing
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    checkpoint = load_checkpoint(offsets_run / "checkpoints" / "last.pt")
    checkpoint["provenance"]["method"] = "with_predictor_toy"
    torch.save(checkpoint, run.last)
    assert extra_predictors(run, torch.device("cpu")) == []  # a method wsseg does not know: nothing
    monkeypatch.setitem(METHODS, "with_predictor_toy", WithPredictor)
    [(_, source, suffix)] = extra_predictors(run, torch.device("cpu"))
    assert suffix == "-toy" and source == str(run.last.resolve()) and WithPredictor.made == [run.last]
    assert FullMethod.offline_predictors(run.last, torch.device("cpu")) == {}
