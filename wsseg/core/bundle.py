"""The model bundle: the contract between offline training and the robot.

A bundle is a directory::

    model.onnx    inputs: ``features`` (M_0, C_in) float32 + the kernel maps of
                  every level (names from ``model_input_names``); output:
                  ``logits`` (M_0, num_classes) float32
    model.yaml    class table, preprocessing, network summary, provenance
    *.plan        optional TensorRT engines, listed in model.yaml with the GPU
                  and TensorRT version they were built for
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from wsseg import __version__
from wsseg.core.classes import IGNORE_INDEX, UNLABELLED_ID, ClassTable
from wsseg.core.conv_tables import GraphSpec, graph_input_names, graph_inputs
from wsseg.core.preprocess import NetworkInput, PreprocessConfig

BUNDLE_FORMAT = "wsseg-bundle"
BUNDLE_FORMAT_VERSION = 1
MODEL_YAML = "model.yaml"
MODEL_ONNX = "model.onnx"
LOGITS_OUTPUT = "logits"
#: ONNX opset the exporter writes by default (bundles need >= 17).
DEFAULT_OPSET = 17


class BundleError(ValueError):
    """A model bundle is missing, malformed or incompatible."""


def model_input_names(num_levels: int, graph: GraphSpec | None = None) -> list[str]:
    """Every ONNX input name, in order: ``features`` then the index tables of ``graph``
    (default: the gather graph, whose tables are the kernel maps)."""
    return ["features", *graph_input_names(graph or GraphSpec(num_levels=num_levels))]


@dataclass(frozen=True)
class TensorRTPlan:
    """A serialized TensorRT engine built for one GPU and TensorRT version."""

    file: str
    gpu: str
    tensorrt_version: str


@dataclass(frozen=True)
class BundleMeta:
    """Contents of ``model.yaml``."""

    classes: ClassTable
    preprocess: PreprocessConfig
    network: dict[str, Any] = field(default_factory=dict)
    sensor: str = "any"
    provenance: dict[str, Any] = field(default_factory=dict)
    tensorrt_plans: tuple[TensorRTPlan, ...] = ()
    opset: int = DEFAULT_OPSET

    @property
    def graph(self) -> GraphSpec:
        """How the graph convolves (``network.graph``; bundles without it use the gather graph)."""
        return GraphSpec.from_dict(self.network.get("graph"), self.preprocess.num_levels)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": BUNDLE_FORMAT,
            "format_version": BUNDLE_FORMAT_VERSION,
            "wsseg_version": __version__,
            "classes": self.classes.to_dict(),
            "ignore_index": IGNORE_INDEX,
            "unlabelled_id": UNLABELLED_ID,
            "preprocess": self.preprocess.to_dict(),
            "network": dict(self.network),
            "sensor": self.sensor,
            "onnx": {
                "file": MODEL_ONNX,
                "opset": self.opset,
                "inputs": model_input_names(self.preprocess.num_levels, self.graph),
                "outputs": [LOGITS_OUTPUT],
            },
            "tensorrt": [vars(p) for p in self.tensorrt_plans],
            "provenance": dict(self.provenance),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> BundleMeta:
        if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"{where}: not a wsseg model.yaml (field 'format' must be {BUNDLE_FORMAT!r})")
        version = data.get("format_version")
        if version != BUNDLE_FORMAT_VERSION:
            raise BundleError(
                f"{where}: format_version {version!r} is not supported (expected {BUNDLE_FORMAT_VERSION})"
            )
        try:
            preprocess = PreprocessConfig.from_dict(data["preprocess"])
            plans = tuple(
                TensorRTPlan(file=str(p["file"]), gpu=str(p["gpu"]), tensorrt_version=str(p["tensorrt_version"]))
                for p in data.get("tensorrt") or []
            )
            meta = cls(
                classes=ClassTable.from_dict(data["classes"], where=f"{where}: field 'classes'"),
                preprocess=preprocess,
                network=dict(data.get("network") or {}),
                sensor=str(data.get("sensor", "any")),
                provenance=dict(data.get("provenance") or {}),
                tensorrt_plans=plans,
                opset=int(data.get("onnx", {}).get("opset", 17)),
            )
            meta.graph  # noqa: B018 -- validates network.graph
            return meta
        except KeyError as exc:
            raise BundleError(f"{where}: missing field {exc}") from None
        except (TypeError, ValueError) as exc:
            raise BundleError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class ModelBundle:
    """A loaded bundle directory: its metadata and file paths."""

    path: Path
    meta: BundleMeta

    @property
    def onnx_path(self) -> Path:
        return self.path / MODEL_ONNX

    @property
    def input_names(self) -> list[str]:
        return model_input_names(self.meta.preprocess.num_levels, self.meta.graph)

    def model_inputs(self, net_input: NetworkInput) -> dict[str, np.ndarray]:
        """The named ONNX inputs for one prepared cloud: ``features`` and the tables of the bundle's graph."""
        return {"features": net_input.features, **graph_inputs(net_input.maps, self.meta.graph)}


def load_bundle(path: str | Path) -> ModelBundle:
    """Read and validate a bundle directory (``model.yaml`` + ``model.onnx``)."""
    path = Path(path)
    yaml_path = path / MODEL_YAML
    if not path.is_dir():
        raise BundleError(f"{path}: model bundle directory does not exist")
    if not yaml_path.is_file():
        raise BundleError(f"{path}: no {MODEL_YAML} in the model bundle")
    try:
        data = yaml.safe_load(yaml_path.read_text())
    except yaml.YAMLError as exc:
        raise BundleError(f"{yaml_path}: invalid YAML ({exc})") from None
    meta = BundleMeta.from_dict(data, where=str(yaml_path))
    if not (path / MODEL_ONNX).is_file():
        raise BundleError(f"{path}: no {MODEL_ONNX} in the model bundle")
    return ModelBundle(path=path, meta=meta)


def write_bundle_meta(path: str | Path, meta: BundleMeta) -> Path:
    """Write ``model.yaml`` into bundle directory ``path`` (created if needed)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    target = path / MODEL_YAML
    tmp = target.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(meta.to_dict(), sort_keys=False))
    tmp.replace(target)
    return target
