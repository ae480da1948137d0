"""Segmenter (ONNX Runtime) on real bundles: labels, confidences, invalid points, engine fallback."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_box_scene
from wsseg.core import backend
from wsseg.core.bundle import BundleError
from wsseg.core.classes import UNLABELLED_ID
from wsseg.core.preprocess import prepare_cloud
from wsseg.runtime.engines import SPIN_CONFIG_KEY, SPIN_ENV, OnnxRuntimeEngine, choose_engine
from wsseg.runtime.segmenter import Segmenter, softmax_max


def test_segment_learns_the_scene(tiny_bundle: Path) -> None:
    segmenter = Segmenter(tiny_bundle, engine="onnxruntime-cpu")
    xyz, rgb, semantic = make_box_scene(seed=3)
    labels, confidence = segmenter.segment(xyz, rgb=rgb)
    assert labels.dtype == np.uint16 and labels.shape == (xyz.shape[0],)
    assert confidence.dtype == np.float32 and ((confidence > 0) & (confidence <= 1)).all()
    # the fixture trained only 15 steps, yet floor / wall / box are already far above chance (1/3)
    assert (labels == semantic).mean() > 0.6


def test_invalid_points_are_unlabelled(tiny_bundle: Path) -> None:
    segmenter = Segmenter(tiny_bundle)
    xyz, rgb, _ = make_box_scene(seed=4, n=3000)
    xyz[::7] = np.nan
    xyz[1, 2] = np.inf
    result = segmenter.run(xyz, rgb=rgb)
    invalid = ~np.isfinite(xyz).all(axis=1)
    assert (result.labels[invalid] == UNLABELLED_ID).all() and (result.confidence[invalid] == 0).all()
    assert (result.labels[~invalid] < 3).all()
    assert set(result.timings_ms) == {"pre", "inference", "post", "total"}
    empty = segmenter.run(np.full((5, 3), np.nan, dtype=np.float32), rgb=np.zeros((5, 3), np.uint8))
    assert (empty.labels == UNLABELLED_ID).all()


def test_missing_feature_is_a_clear_error(tiny_bundle: Path) -> None:
    with pytest.raises(ValueError, match="rgb"):
        Segmenter(tiny_bundle).segment(np.zeros((10, 3), dtype=np.float32))


def test_wrong_model_file_is_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.yaml").write_text((tiny_bundle / "model.yaml").read_text())
    (bad / "model.onnx").write_bytes(b"\x08\x01garbage")
    with pytest.raises(BundleError, match="ONNX Runtime cannot load"):
        Segmenter(bad)


def test_engine_choice_and_fallback() -> None:
    cpu_only = ["CPUExecutionProvider"]
    assert choose_engine("auto", cpu_only).active == "onnxruntime-cpu"
    fallback = choose_engine("tensorrt", cpu_only)
    assert fallback.active == "onnxruntime-cpu" and "TensorrtExecutionProvider" in (fallback.fallback_reason or "")
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_engine("auto", gpu).active == "tensorrt"
    assert choose_engine("onnxruntime-cuda", gpu).active == "onnxruntime-cuda"
    with pytest.raises(ValueError, match="engine"):
        choose_engine("openvino", cpu_only)


def test_intra_op_threads_do_not_spin_unless_asked(tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    segmenter = Segmenter(tiny_bundle, engine="onnxruntime-cpu", num_threads=2)
    xyz, rgb, _ = make_box_scene(seed=5, n=3000)
    inputs = segmenter.bundle.model_inputs(prepare_cloud(segmenter.bundle.meta.preprocess, xyz, rgb=rgb))

    def spin_setting(engine: OnnxRuntimeEngine) -> str:
        return engine._session.get_session_options().get_session_config_entry(SPIN_CONFIG_KEY)

    monkeypatch.delenv(SPIN_ENV, raising=False)
    quiet = segmenter.engine
    assert not quiet.spinning and spin_setting(quiet) == "0"
    spinning = OnnxRuntimeEngine(segmenter.bundle, engine="onnxruntime-cpu", num_threads=2, spin=True)
    assert spinning.spinning and spin_setting(spinning) == "1"
    monkeypatch.setenv(SPIN_ENV, "1")
    assert spin_setting(OnnxRuntimeEngine(segmenter.bundle, engine="onnxruntime-cpu")) == "1"
    # the setting changes only how idle threads wait, never the result
    np.testing.assert_allclose(quiet.run(inputs), spinning.run(inputs), rtol=0, atol=1e-6)


@pytest.mark.parametrize("compiled_backend", [True, False], ids=["compiled", "numpy"])
def test_softmax_max(compiled_backend: bool) -> None:
    logits = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, np.log(3.0)]], dtype=np.float32)
    with contextlib.nullcontext() if compiled_backend else backend.numpy_only():
        labels, conf = softmax_max(logits)
    assert labels.tolist() == [0, 0, 1] and labels.dtype == np.int64 and conf.dtype == np.float32
    np.testing.assert_allclose(conf, [0.5, 1 / (1 + np.exp(-10)), 0.75], rtol=1e-6)


def test_compiled_softmax_max_matches_numpy_on_ties_nan_and_inf() -> None:
    pytest.importorskip("numba")
    rng = np.random.default_rng(3)
    logits = (rng.normal(size=(5000, 19)) * 4).astype(np.float32)
    logits[:50] = np.round(logits[:50])  # ties: the first maximum wins in both
    logits[50, 7] = np.nan  # a NaN is the maximum, as for ndarray.argmax
    logits[51, 0] = np.nan
    logits[52, 3] = np.inf
    logits[53] = -np.inf
    assert backend.name() == "numba"
    labels, conf = softmax_max(logits)
    with backend.numpy_only(), np.errstate(invalid="ignore"):  # inf - inf in the reference's shift
        reference_labels, reference_conf = softmax_max(logits)
    np.testing.assert_array_equal(labels, reference_labels)
    assert labels[50] == 7 and labels[51] == 0 and labels[52] == 3
    np.testing.assert_array_equal(np.isnan(conf), np.isnan(reference_conf))
    assert np.isnan(conf[50:54]).all()
    np.testing.assert_allclose(conf, reference_conf, rtol=1e-6, atol=0)


def test_robot_side_never_imports_training_libraries() -> None:
    code = (
        "import sys, wsseg, wsseg.core.preprocess, wsseg.core.bundle, wsseg.runtime, wsseg.ros, wsseg.cli\n"
        "import wsseg.runtime.cli\n"
        "import wsseg.ros.segment_node, wsseg.ros.replay_node, wsseg.ros.bag_cli\n"
        "heavy = sorted(m for m in ('torch', 'open3d', 'spconv') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == ""
