"""The model bundle: the contract between offline training and the robot.

A bundle is a directory::

    model.onnx    inputs: ``features`` (M_0, C_in) float32 + the kernel maps of
                  every level (names from ``model_input_names``); output:
                  ``logits`` (M_0, num_classes) float32, then the optional extra outputs
                  listed in model.yaml ``extra_outputs`` (per voxel, (M_0, channels) float32,
                  e.g. WS3D's ``instance_offsets``); readers that do not use them ignore them
    model.yaml    class table, preprocessing, network summary, provenance
    *.plan        optional TensorRT engines, listed in model.yaml with the GPU
                  and TensorRT version they were built for
"""

from __future__ import annotations

import re
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
class ExtraOutput:
    """An exported output beside ``logits``: ``name`` (lower-case identifier), (M_0, ``channels``) float32 per
    voxel; ``description`` says what it is and its unit (the method that trained it documents it);
    ``attributes``: plain data the method records with it (e.g. ``instance_offsets``: ``clustering``, the
    settings of :mod:`wsseg.core.instances`)."""

    name: str
    channels: int
    description: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "channels": self.channels, "description": self.description}
        if self.attributes:
            data["attributes"] = dict(self.attributes)
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ExtraOutput:
        if not isinstance(data, dict):
            raise BundleError(f"{where} is {data!r}, expected a mapping with 'name' and 'channels'")
        name, channels = data.get("name"), data.get("channels")
        if not isinstance(name, str) or not name.isidentifier() or name == LOGITS_OUTPUT:
            raise BundleError(f"{where}: field 'name' is {name!r}, expected an identifier other than 'logits'")
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise BundleError(f"{where}: field 'channels' is {channels!r}, expected an integer >= 1")
        attributes = data.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise BundleError(f"{where}: field 'attributes' is {attributes!r}, expected a mapping")
        return cls(name=name, channels=channels, description=str(data.get("description", "")),
                   attributes=dict(attributes))


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
    #: TensorRT optimisation profile of every input: {name: {"min": [...], "opt": [...], "max": [...]}}
    tensorrt_profiles: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    extra_outputs: tuple[ExtraOutput, ...] = ()

    @property
    def output_names(self) -> list[str]:
        """``logits`` then the extra outputs, in the ONNX graph's order."""
        return [LOGITS_OUTPUT, *(o.name for o in self.extra_outputs)]

    @property
    def graph(self) -> GraphSpec:
        """How the graph convolves (``network.graph``; bundles without it use the gather graph)."""
        return GraphSpec.from_dict(self.network.get("graph"), self.preprocess.num_levels)

    def to_dict(self) -> dict[str, Any]:
        data = {
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
                "outputs": self.output_names,
            },
            "tensorrt": [vars(p) for p in self.tensorrt_plans],
            "tensorrt_profiles": {k: dict(v) for k, v in self.tensorrt_profiles.items()},
            "provenance": dict(self.provenance),
        }
        if self.extra_outputs:
            data["extra_outputs"] = [o.to_dict() for o in self.extra_outputs]
        return data

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
                extra_outputs=tuple(ExtraOutput.from_dict(o, f"{where}: field 'extra_outputs[{i}]'")
                                    for i, o in enumerate(data.get("extra_outputs") or [])),
                tensorrt_profiles={str(k): {w: [int(d) for d in v[w]] for w in ("min", "opt", "max")}
                                   for k, v in (data.get("tensorrt_profiles") or {}).items()},
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

    @property
    def output_names(self) -> list[str]:
        return self.meta.output_names


def check_model_signature(bundle: ModelBundle, inputs: list[tuple[str, list[Any]]],
                          outputs: list[tuple[str, list[Any]]]) -> None:
    """Check what ``model.onnx`` declares against ``model.yaml``, once at load; a mismatch is a :class:`BundleError`
    naming both files and both values.

    inputs / outputs: ``(name, shape)`` of the ONNX graph's inputs and outputs, in order (a dimension is an int
    or a symbolic name).  Checked: the input names (``features`` + the kernel maps of ``preprocess.num_levels``),
    the channels of ``features`` (``preprocess.features``), the widths of the kernel maps (27 and 8), and the
    classes of ``logits`` (``classes``).
    """
    onnx_path, yaml_path = bundle.onnx_path, bundle.path / MODEL_YAML
    names = [name for name, _ in inputs]
    if names != bundle.input_names:
        raise BundleError(f"{onnx_path}: model inputs {names} do not match {yaml_path} "
                          f"(preprocess.num_levels {bundle.meta.preprocess.num_levels}: {bundle.input_names})")
    shapes = dict(inputs)
    features = bundle.meta.preprocess.features
    expected = {"features": (features.num_channels, f"preprocess.features {list(features.ordered_names)}")}
    expected.update({name: (27 if name.startswith("neighbours") else 8, "3x3x3 / 2x2x2 kernel maps")
                     for name in names if re.fullmatch(r"(neighbours|down)_\d+", name)})  # the gather graph's maps
    for name, (width, why) in expected.items():
        shape = shapes[name]
        if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != width):
            raise BundleError(f"{onnx_path}: input '{name}' has shape {shape}, but {yaml_path} ({why}) needs "
                              f"(N, {width})")
    declared = dict(outputs)
    if LOGITS_OUTPUT not in declared:
        raise BundleError(f"{onnx_path}: no output {LOGITS_OUTPUT!r} (outputs: {list(declared)})")
    logits = declared[LOGITS_OUTPUT]
    classes = bundle.meta.classes
    if len(logits) != 2 or (isinstance(logits[1], int) and logits[1] != classes.num_classes):
        raise BundleError(f"{onnx_path}: output '{LOGITS_OUTPUT}' has shape {logits} ({logits[-1] if logits else '?'} "
                          f"classes), but {yaml_path} lists {classes.num_classes} classes {list(classes.names)}")


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
