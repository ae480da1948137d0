"""Inference engines that run a bundle's ``model.onnx``.

Engine names (the node's ``engine`` parameter and ``wsseg infer --engine``):

* ``onnxruntime-cpu``: ONNX Runtime, CPU execution provider (always available);
* ``onnxruntime-cuda``: ONNX Runtime, CUDA execution provider;
* ``tensorrt``: ONNX Runtime's TensorRT execution provider (engine cache next
  to the bundle), which builds the plan on first use;
* ``auto``: the first available of tensorrt, onnxruntime-cuda, onnxruntime-cpu.

Asking for an engine whose provider is missing falls back to the CPU with a
warning, so a robot without a GPU still runs.

ONNX Runtime's intra-op threads do not spin-wait between ops (its own default is to spin): on a
2-core robot computer the spinning threads take the cores from the node's other work (DDS,
preprocessing of the next frame).  On the shared 2-core VM under load they cost ~30 % more CPU per
LiDAR frame at the same or a longer wall time (``bench/backbone.py``, column "ORT spin"); on a
near-quiet run the node's LiDAR rate was within noise either way (bench/results/node_spin_*.md).
``WSSEG_ORT_SPIN=1`` (or ``spin=True``) brings the spinning back.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from wsseg.core.bundle import LOGITS_OUTPUT, BundleError, ModelBundle, check_model_signature

log = logging.getLogger(__name__)

_ONNX_DTYPES = {"tensor(float)": np.dtype(np.float32), "tensor(int32)": np.dtype(np.int32),
                "tensor(int64)": np.dtype(np.int64)}
ENGINE_NAMES = ("auto", "onnxruntime-cpu", "onnxruntime-cuda", "tensorrt")
#: environment variable: "1" lets ONNX Runtime's intra-op threads spin-wait (read when an engine is made)
SPIN_ENV = "WSSEG_ORT_SPIN"
#: ONNX Runtime session config key of the intra-op spin-wait
SPIN_CONFIG_KEY = "session.intra_op.allow_spinning"
_PROVIDERS = {
    "onnxruntime-cpu": "CPUExecutionProvider",
    "onnxruntime-cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


@dataclass(frozen=True)
class EngineChoice:
    """Which engine was asked for and which one runs (they differ after a fallback)."""

    requested: str
    active: str
    fallback_reason: str | None = None


def choose_engine(requested: str, available_providers: list[str]) -> EngineChoice:
    """Resolve an engine name against the ONNX Runtime providers present on this machine."""
    if requested not in ENGINE_NAMES:
        raise ValueError(f"engine {requested!r} is not one of {ENGINE_NAMES}")
    if requested == "auto":
        for name in ("tensorrt", "onnxruntime-cuda"):
            if _PROVIDERS[name] in available_providers:
                return EngineChoice(requested, name)
        return EngineChoice(requested, "onnxruntime-cpu")
    if _PROVIDERS[requested] in available_providers:
        return EngineChoice(requested, requested)
    reason = f"{_PROVIDERS[requested]} is not available (have {available_providers}); using onnxruntime-cpu"
    return EngineChoice(requested, "onnxruntime-cpu", reason)


def tensorrt_options(bundle: ModelBundle, precision: str = "fp16") -> dict[str, object]:
    """TensorRT EP options of a bundle: its ``model.yaml`` profiles (or ones derived from its sensor kind for
    older bundles) and engine/timing caches keyed by ONNX hash, TensorRT version, GPU and precision."""
    from wsseg.runtime import tensorrt

    meta = bundle.meta
    if meta.tensorrt_profiles:
        profiles = {name: tensorrt.Profile(tuple(p["min"]), tuple(p["opt"]), tuple(p["max"]))
                    for name, p in meta.tensorrt_profiles.items()}
    else:
        profiles = tensorrt.input_profiles(meta.graph, meta.preprocess.features.num_channels, meta.sensor)
    return tensorrt.provider_options(bundle.path, bundle.onnx_path, profiles, precision)


def _without_telemetry():  # type: ignore[no-untyped-def]
    """``onnxruntime`` with its telemetry off (its documented opt-outs: ``ORT_DISABLE_TELEMETRY=1`` read when
    the runtime initialises, and ``disable_telemetry_events()``); otherwise it keeps a device id and an
    event cache under ``~/.cache/Microsoft``."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime as ort  # imported here so that `import wsseg.runtime` stays cheap

    ort.disable_telemetry_events()
    return ort


class OnnxRuntimeEngine:
    """Runs ``model.onnx`` with ONNX Runtime; ``run(inputs) -> logits (M_0, C) float32``."""

    def __init__(self, bundle: ModelBundle, engine: str = "auto", num_threads: int = 0,
                 precision: str = "fp16", spin: bool | None = None) -> None:
        """spin: let the intra-op threads spin-wait; None = ``WSSEG_ORT_SPIN`` ("1" = on), off when unset."""
        ort = _without_telemetry()
        self.choice = choose_engine(engine, ort.get_available_providers())
        if self.choice.fallback_reason:
            log.warning("engine %s: %s", engine, self.choice.fallback_reason)
        providers: list = []
        self.tensorrt_options: dict[str, object] = {}
        if self.choice.active == "tensorrt":
            self.tensorrt_options = tensorrt_options(bundle, precision)
            providers.append(("TensorrtExecutionProvider", self.tensorrt_options))
        if self.choice.active in ("tensorrt", "onnxruntime-cuda"):
            providers.append("CUDAExecutionProvider")
        providers.append("CPUExecutionProvider")
        options = ort.SessionOptions()
        if num_threads > 0:
            options.intra_op_num_threads = num_threads
        self.spinning = os.environ.get(SPIN_ENV, "0").strip() == "1" if spin is None else bool(spin)
        options.add_session_config_entry(SPIN_CONFIG_KEY, "1" if self.spinning else "0")
        try:
            self._session = ort.InferenceSession(str(bundle.onnx_path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BundleError(f"{bundle.onnx_path}: ONNX Runtime cannot load the model ({exc})") from None
        check_model_signature(bundle, [(i.name, list(i.shape)) for i in self._session.get_inputs()],
                              [(o.name, list(o.shape)) for o in self._session.get_outputs()])
        outputs = [o.name for o in self._session.get_outputs()]
        if outputs != bundle.output_names:
            raise BundleError(f"{bundle.onnx_path}: model outputs {outputs} do not match model.yaml "
                              f"({bundle.output_names}: {LOGITS_OUTPUT!r}, then its extra_outputs)")
        self.extra_outputs = bundle.output_names[1:]
        # bundles exported before the int32 tables declare int64 index inputs: cast for those only
        self._input_dtypes = {i.name: _ONNX_DTYPES.get(i.type) for i in self._session.get_inputs()}

    @property
    def name(self) -> str:
        return self.choice.active

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """inputs: the bundle's named inputs (features float32, index tables int32) -> logits (M_0, C) float32."""
        feeds = {}
        for name, array in inputs.items():
            dtype = self._input_dtypes.get(name)
            feeds[name] = array if dtype is None or array.dtype == dtype else array.astype(dtype)
        return self._session.run([LOGITS_OUTPUT], feeds)[0]

    def run_all(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{output name: (M_0, K) float32}: ``logits`` and the bundle's extra outputs, from one pass."""
        names = [LOGITS_OUTPUT, *self.extra_outputs]
        feeds = {}
        for name, array in inputs.items():
            dtype = self._input_dtypes.get(name)
            feeds[name] = array if dtype is None or array.dtype == dtype else array.astype(dtype)
        return dict(zip(names, self._session.run(names, feeds), strict=True))


def run_device(engine: OnnxRuntimeEngine, inputs: dict[str, object], num_classes: int, device_id: int = 0) -> object:
    """Run with every input already in GPU memory (CuPy arrays, e.g. from :mod:`wsseg.core.gpu_preprocess`)
    through ONNX Runtime IO binding: no host round trip for the tables.  Returns (M_0, num_classes) float32
    logits as a CuPy array written by ONNX Runtime in place.

    Needs the CUDA or TensorRT engine (an onnxruntime-gpu build) and CuPy.  Not run here: no GPU.
    """
    import cupy

    session = engine._session
    binding = session.io_binding()
    keep = []
    for name, array in inputs.items():
        dtype = engine._input_dtypes.get(name) or np.dtype(array.dtype)
        device_array = cupy.ascontiguousarray(array, dtype=dtype)
        keep.append(device_array)  # alive until the run is done
        binding.bind_input(name, "cuda", device_id, dtype, list(device_array.shape), device_array.data.ptr)
    voxels = int(keep[0].shape[0])
    logits = cupy.empty((voxels, num_classes), dtype=cupy.float32)
    binding.bind_output(LOGITS_OUTPUT, "cuda", device_id, np.float32, [voxels, num_classes], logits.data.ptr)
    session.run_with_iobinding(binding)
    return logits
