"""TensorRT readiness without TensorRT: profiles in model.yaml, EP options and cache keys, build-engine / build_only.

The TensorRT execution provider itself is not in the CPU ONNX Runtime wheel: what runs here is
everything up to handing the options to it (and the clear error when it is missing).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from wsseg_export.node_replay import free_domain_id, start_segment_node

from tests.conftest import REPO_ROOT, make_box_scene
from wsseg.core.bundle import load_bundle
from wsseg.core.conv_tables import GraphSpec
from wsseg.core.preprocess import prepare_cloud
from wsseg.runtime.engines import tensorrt_options
from wsseg.runtime.tensorrt import build_engine, cache_key, input_profiles, profile_strings

WSSEG = str(Path(sys.executable).parent / "wsseg")


@pytest.mark.parametrize("graph", ["gather", "chunked"])
def test_profiles_cover_real_frames_and_are_ordered(graph: str, tiny_checkpoint: Path, tmp_path: Path) -> None:
    from wsseg_export.onnx_export import export_bundle

    bundle = export_bundle(tiny_checkpoint, tmp_path / graph, graph=graph)
    profiles = bundle.meta.tensorrt_profiles
    assert list(profiles) == bundle.input_names  # every input has min / opt / max, read back from model.yaml
    for name, p in profiles.items():
        assert all(1 <= a <= b <= c for a, b, c in zip(p["min"], p["opt"], p["max"], strict=True)), name
    xyz, rgb, _ = make_box_scene(seed=5, n=6000)
    inputs = bundle.model_inputs(prepare_cloud(bundle.meta.preprocess, xyz, rgb=rgb))
    for name, array in inputs.items():
        p = profiles[name]
        inside = all(lo <= d <= hi for lo, d, hi in zip(p["min"], array.shape, p["max"], strict=True))
        assert inside, (name, array.shape, p)


def test_sensor_kinds_scale_the_profiles() -> None:
    graph = GraphSpec(num_levels=4, chunked_levels=(False, True, True, True))
    lidar, rgbd = input_profiles(graph, 4, "lidar"), input_profiles(graph, 6, "rgbd")
    assert lidar["features"].max == (250_000, 4) and rgbd["features"].max[1] == 6
    assert lidar["neighbours_0"].opt[0] > rgbd["neighbours_0"].opt[0]
    strings = profile_strings(lidar)
    assert set(strings) == {"trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes"}
    assert strings["trt_profile_max_shapes"].startswith("features:250000x4,neighbours_0:250000x27,subm1_pairs:")


def test_provider_options_and_cache_key(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    options = tensorrt_options(bundle, "fp16")
    assert options["trt_fp16_enable"] is True and options["trt_engine_cache_enable"] is True
    cache = Path(str(options["trt_engine_cache_path"]))
    assert cache.parent == tiny_bundle / "trt_cache" and cache.name.endswith("_fp16")
    assert options["trt_timing_cache_path"] == options["trt_engine_cache_path"]
    assert all(f"{name}:" in str(options["trt_profile_opt_shapes"]) for name in bundle.input_names)
    key = cache_key(bundle.onnx_path, "fp16", trt_version="10.9", gpu="Orin (nvgpu)")
    assert key.endswith("_trt10.9_Orin-nvgpu-_fp16") and len(key.split("_")[0]) == 16
    assert cache_key(bundle.onnx_path, "fp32", "10.9", "Orin") != cache_key(bundle.onnx_path, "fp16", "10.9", "Orin")
    other = tmp_path / "other.onnx"
    other.write_bytes(bundle.onnx_path.read_bytes() + b"\0")
    assert cache_key(other, "fp16", "10.9", "Orin") != cache_key(bundle.onnx_path, "fp16", "10.9", "Orin")
    with pytest.raises(ValueError, match="precision"):
        cache_key(bundle.onnx_path, "int8")


@pytest.mark.skipif("TensorrtExecutionProvider" in ort.get_available_providers(), reason="TensorRT present")
def test_build_engine_without_tensorrt_says_so(tiny_bundle: Path) -> None:
    with pytest.raises(ValueError, match="no TensorrtExecutionProvider"):
        build_engine(tiny_bundle)
    result = subprocess.run([WSSEG, "export", "--build-engine", str(tiny_bundle)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1 and "TensorrtExecutionProvider" in result.stderr


@pytest.mark.skipif("TensorrtExecutionProvider" not in ort.get_available_providers(), reason="no TensorRT EP here")
def test_build_engine_writes_the_cache(tiny_bundle: Path) -> None:  # pragma: no cover - needs a TensorRT machine
    cache = build_engine(tiny_bundle)
    assert cache.is_dir() and any(cache.iterdir())


def test_node_build_only_warms_up_and_exits(tiny_bundle: Path, tmp_path: Path) -> None:
    log = tmp_path / "node.log"
    node = start_segment_node(tiny_bundle, REPO_ROOT / "config" / "segment.yaml", free_domain_id(),
                              {"build_only": True, "input_mode": "rgbd"}, log_path=log)
    deadline = time.monotonic() + 120
    while node.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not node.alive(), "build_only node did not exit"
    assert node.stop() == 0, node.log()
    assert "build_only: engine onnxruntime-cpu ready" in node.log()
    assert np.isfinite(float(node.log().split("warm-up frame ")[1].split(" ms")[0]))
