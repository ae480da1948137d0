"""Evaluation: per-point predictions on the original points, the report files, and evaluation through the
exported ONNX bundle (ONNX Runtime) giving the same metrics as PyTorch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from wsseg_training.data.dataset import Dataset, DatasetWriter
from wsseg_training.evaluation.evaluate import BundlePredictor, TorchPredictor, evaluate_split

from tests.conftest import make_box_scene
from wsseg.cli import main
from wsseg.core.classes import ClassTable
from wsseg.core.preprocess import prepare_cloud
from wsseg.core.scene import Scene

# the class table of the tiny_checkpoint fixture (tests/conftest.py)
CLASSES = ClassTable("boxes", ("floor", "wall", "box"), ((100, 80, 60), (200, 200, 200), (40, 90, 160)))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    root = tmp_path_factory.mktemp("eval_boxes")
    with DatasetWriter(root, "boxes", CLASSES, sensor="rgbd") as writer:
        for i in range(3):
            xyz, rgb, semantic = make_box_scene(seed=10 + i, n=4000)
            semantic = semantic.astype(np.int16)
            semantic[:50] = -1  # some ignored points
            writer.add(f"v{i}", Scene(xyz=xyz, rgb=rgb, semantic=semantic), split="val")
    return Dataset(root)


def test_predictions_cover_the_original_points(tiny_checkpoint: Path, dataset: Dataset) -> None:
    predictor = TorchPredictor.from_checkpoint(tiny_checkpoint)
    scene = dataset.load("v0")
    labels = predictor.predict(scene)
    assert labels.shape == (scene.num_points,) and labels.dtype == np.int64
    grid = prepare_cloud(predictor.preprocess, scene.xyz, rgb=scene.rgb).grid
    assert grid.num_voxels < scene.num_points  # several points per voxel ...
    per_voxel = np.full(grid.num_voxels, -1)
    per_voxel[grid.inverse] = labels
    assert np.array_equal(per_voxel[grid.inverse], labels)  # ... and they share their voxel's label


def test_onnx_bundle_evaluation_equals_pytorch(tiny_checkpoint: Path, tiny_bundle: Path, dataset: Dataset) -> None:
    torch_result = evaluate_split(TorchPredictor.from_checkpoint(tiny_checkpoint), dataset, "val", keep=3,
                                  progress=False)
    onnx_result = evaluate_split(BundlePredictor(tiny_bundle, engine="onnxruntime-cpu"), dataset, "val", keep=3,
                                 progress=False)
    a, b = torch_result.confusion, onnx_result.confusion
    assert a.total == b.total == 3 * (4000 - 50)
    assert a.miou() > 0.3  # a real model, not chance: the parity below means something
    for name in torch_result.predictions:
        agreement = np.mean(torch_result.predictions[name] == onnx_result.predictions[name])
        assert agreement >= 0.999, f"{name}: PyTorch and ONNX Runtime agree on only {agreement:.4%} of points"
    assert np.abs(a.matrix - b.matrix).sum() <= 0.002 * a.total
    assert b.miou() == pytest.approx(a.miou(), abs=1e-3)
    assert b.overall_accuracy() == pytest.approx(a.overall_accuracy(), abs=1e-3)


def test_eval_command_writes_report_and_run_metrics(tiny_checkpoint: Path, tiny_bundle: Path, dataset: Dataset,
                                                     tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_checkpoint, run / "model.pt")
    assert main(["eval", "--run", str(run), "--data", str(dataset.root), "--split", "val", "--render", "1",
                 "--no-progress"]) == 0
    assert "val (pytorch): mIoU" in capsys.readouterr().out
    assert main(["eval", "--run", str(run), "--bundle", str(tiny_bundle), "--engine", "onnxruntime-cpu",
                 "--data", str(dataset.root), "--split", "val", "--render", "0", "--no-progress"]) == 0
    report = run / "eval" / "val"
    for name in ("metrics.json", "report.md", "confusion.png", "scenes/v0.png"):
        assert (report / name).is_file() and (report / name).stat().st_size > 200, name
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["num_points"] == 3 * (4000 - 50) and set(metrics["per_class_iou"]) == set(CLASSES.names)
    text = (report / "report.md").read_text()
    assert "| **mIoU** |" in text and "| floor |" in text and "scenes/v0.png" in text
    summary = json.loads((run / "metrics.json").read_text())
    assert set(summary) == {"val", "val-onnx"}
    assert summary["val-onnx"]["miou"] == pytest.approx(summary["val"]["miou"], abs=1e-3)
    assert main(["eval", "--run", str(run), "--data", str(dataset.root), "--split", "test"]) == 1  # no such split
