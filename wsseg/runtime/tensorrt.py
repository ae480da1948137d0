"""TensorRT readiness of a bundle: optimisation profiles, TensorRT execution-provider options, engine caches.

Nothing here needs TensorRT to be installed: the profiles are plain data in ``model.yaml`` and the
options are what ONNX Runtime's TensorRT execution provider documents (``trt_fp16_enable``,
``trt_engine_cache_enable`` / ``_path``, ``trt_timing_cache_enable`` / ``_path``,
``trt_profile_min_shapes`` / ``_opt_shapes`` / ``_max_shapes`` as ``name:d0xd1,...``).  TensorRT
builds one engine per profile; explicit profiles (instead of TensorRT guessing from the first
frames) mean one engine covers every frame of the sensor and nothing is rebuilt at run time.

Profiles come from the bundle's sensor kind (:data:`SENSOR_VOXELS`: level-0 voxels of a typical
and of the largest frame) and the graph (:func:`input_profiles`): coarser levels keep at most
at most as many voxels as the finer one, pair tables at most 26 pairs per voxel.

Engine and timing caches live under ``<bundle>/trt_cache/<key>/``, ``key`` = ONNX hash, TensorRT
version, GPU name and precision, so a changed model, driver stack or GPU never reuses a stale plan.
Not run here: these machines have no TensorRT; ``docs/runtime.md`` says what was and was not tested.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from wsseg.core.conv_tables import GraphSpec, graph_input_names

#: level-0 voxels of a typical (opt) and of the largest (max) frame, per sensor kind
SENSOR_VOXELS: dict[str, tuple[int, int]] = {
    "lidar": (100_000, 250_000),   # 64-beam scan, 5-10 cm grid (SemanticKITTI: 60-92k)
    "rgbd": (20_000, 160_000),     # 640x480 camera, 2 cm grid (mOSD table tops: ~3-10k)
    "indoor": (60_000, 300_000),   # RGB-D rooms / fused scans, 4 cm grid
    "any": (60_000, 400_000),
}
#: a coarser level holds at least 1/8 and (measured on LiDAR and RGB-D) typically ~1/2 of the finer one's voxels
LEVEL_SHRINK_OPT = 2.0
#: bound used for the max profile: a coarser level never holds more voxels than the finer one
LEVEL_SHRINK_MAX = 1.0
#: present neighbours assumed per voxel for the opt profile of pair tables (LiDAR at 5-10 cm: 3-6 of 26)
OPT_PAIRS_PER_VOXEL = 6
PRECISIONS = ("fp16", "fp32")


@dataclass(frozen=True)
class Profile:
    """min / opt / max shape of one input."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def input_profiles(graph: GraphSpec, in_channels: int, sensor: str) -> dict[str, Profile]:
    """Profiles of every ONNX input of ``graph`` for ``sensor`` (``any`` when the kind is not listed)."""
    opt0, max0 = SENSOR_VOXELS.get(sensor, SENSOR_VOXELS["any"])
    opt_v = [max(1, int(opt0 / LEVEL_SHRINK_OPT ** lv)) for lv in range(graph.num_levels)]
    max_v = [max(1, int(max0 / LEVEL_SHRINK_MAX ** lv)) for lv in range(graph.num_levels)]
    t = graph.chunk_rows
    out = {"features": Profile((1, in_channels), (opt_v[0], in_channels), (max_v[0], in_channels))}

    def chunked(prefix: str, out_opt: int, out_max: int, taps: int) -> None:
        pairs_opt = min(taps, OPT_PAIRS_PER_VOXEL) * out_opt
        out[f"{prefix}_pairs"] = Profile((1, t), (pairs_opt // t + taps + 1, t), (taps * out_max // t + taps + 1, t))
        out[f"{prefix}_offsets"] = Profile((1,), (pairs_opt // t + taps + 1,), (taps * out_max // t + taps + 1,))
        out[f"{prefix}_order"] = Profile((1,), (out_opt,), (out_max,))
        for b in range(graph.num_buckets):
            width = max(1, taps * (b + 1) // graph.num_buckets)
            out[f"{prefix}_slots{b}"] = Profile((1, 1), (max(1, out_opt // graph.num_buckets), width),
                                                (out_max + 1, taps))

    for lv in range(graph.num_levels):
        if graph.chunked(lv):
            chunked(f"subm{lv}", opt_v[lv], max_v[lv], 26)
        else:
            out[f"neighbours_{lv}"] = Profile((1, 27), (opt_v[lv], 27), (max_v[lv], 27))
    for lv in range(graph.num_levels - 1):
        if graph.chunked(lv + 1):
            chunked(f"down{lv}", opt_v[lv + 1], max_v[lv + 1], 8)
            out[f"up{lv}_pairs"] = Profile((1, t), (opt_v[lv] // t + 9, t), (max_v[lv] // t + 9, t))
            out[f"up{lv}_offsets"] = Profile((1,), (opt_v[lv] // t + 9,), (max_v[lv] // t + 9,))
            out[f"up{lv}_rows"] = Profile((1,), (opt_v[lv],), (max_v[lv],))
        else:
            out[f"down_{lv}"] = Profile((1, 8), (opt_v[lv + 1], 8), (max_v[lv + 1], 8))
            out[f"up_{lv}"] = Profile((1,), (opt_v[lv],), (max_v[lv],))
    names = ["features", *graph_input_names(graph)]
    return {name: out[name] for name in names}


def profile_strings(profiles: dict[str, Profile]) -> dict[str, str]:
    """The TensorRT EP's ``trt_profile_{min,opt,max}_shapes`` values: ``name:d0xd1,name2:...``."""
    return {f"trt_profile_{which}_shapes": ",".join(
        f"{name}:{'x'.join(str(d) for d in getattr(p, which))}" for name, p in profiles.items())
        for which in ("min", "opt", "max")}


def tensorrt_version() -> str:
    """Version of the installed ``tensorrt`` Python package (``none`` when absent)."""
    for dist in ("tensorrt", "tensorrt-cu12", "tensorrt-libs"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "none"


def gpu_name() -> str:
    """Name of GPU 0 from ``nvidia-smi`` (``no-gpu`` when there is none)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "-i", "0"],
                             capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "no-gpu"
    return out.splitlines()[0].strip() if out else "no-gpu"


def cache_key(onnx_path: Path, precision: str, trt_version: str | None = None, gpu: str | None = None) -> str:
    """``<onnx sha256[:16]>_trt<version>_<gpu>_<precision>``, file-name safe."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
    digest = hashlib.sha256(Path(onnx_path).read_bytes()).hexdigest()[:16]
    raw = f"{digest}_trt{trt_version or tensorrt_version()}_{gpu or gpu_name()}_{precision}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw)


def provider_options(bundle_path: Path, onnx_path: Path, profiles: dict[str, Profile], precision: str = "fp16",
                     key: str | None = None) -> dict[str, object]:
    """ONNX Runtime TensorRT execution-provider options for a bundle (caches under ``trt_cache/<key>``)."""
    key = key or cache_key(onnx_path, precision)
    cache = Path(bundle_path) / "trt_cache" / key
    return {
        "trt_fp16_enable": precision == "fp16",
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache),
        "trt_max_workspace_size": 2 * 1024 ** 3,
        **profile_strings(profiles),
    }


def warm_up_cloud(voxel_size_m: float, voxels: int = 20_000) -> np.ndarray:
    """(N, 3) float32 metres: a floor and a wall sampled at half the voxel size, about ``voxels`` voxels
    (a deterministic cloud to build an engine or warm a session up with)."""
    side = max(2, int((voxels / 2) ** 0.5))
    u = (np.arange(2 * side) * 0.5 + 0.25) * voxel_size_m
    a, b = np.meshgrid(u, u, indexing="ij")
    floor = np.stack([a.ravel(), b.ravel(), np.zeros(a.size)], axis=1)
    wall = np.stack([a.ravel(), np.zeros(a.size), b.ravel()], axis=1)
    return np.concatenate([floor, wall]).astype(np.float32)


def build_engine(bundle_dir: str | Path, precision: str = "fp16") -> Path:
    """Build (or load) the TensorRT engine of a bundle into its cache and return the cache folder.

    Runs one frame through ONNX Runtime's TensorRT execution provider, which builds the engine for the
    bundle's profiles and writes the engine and timing caches.  Raises ``ValueError`` when this
    ONNX Runtime has no TensorRT execution provider (the CPU wheel has none).
    """
    import onnxruntime as ort

    from wsseg.runtime.segmenter import Segmenter

    available = ort.get_available_providers()
    if "TensorrtExecutionProvider" not in available:
        raise ValueError(f"this ONNX Runtime has no TensorrtExecutionProvider (providers: {available}); install an "
                         "onnxruntime-gpu build with TensorRT (JetPack's, or onnxruntime-gpu + tensorrt from pip)")
    segmenter = Segmenter(bundle_dir, engine="tensorrt", precision=precision)
    segmenter.warm_up()
    return Path(str(segmenter.engine.tensorrt_options["trt_engine_cache_path"]))
