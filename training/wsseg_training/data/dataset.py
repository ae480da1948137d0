"""The dataset directory: ``dataset.yaml`` + one ``.npz`` scene record per scene.

``dataset.yaml``::

    format: wsseg-dataset
    format_version: 1
    name: synthetic_indoor
    classes: {name, names, palette}     # wsseg.core.classes.ClassTable
    ignore_index: -1
    sensor: rgbd | lidar | mixed | unknown
    units: metres
    splits: {train: [scene, ...], val: [...], test: [...]}
    scenes: {scene: {file: scenes/<scene>.npz, points: N, ...extra metadata}}

Scene names are unique across splits; a scene in no split is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wsseg.core.classes import IGNORE_INDEX, ClassTable
from wsseg.core.scene import Scene, SceneError, load_scene, save_scene

DATASET_FORMAT = "wsseg-dataset"
DATASET_FORMAT_VERSION = 1
DATASET_YAML = "dataset.yaml"
SCENES_DIR = "scenes"
SENSOR_KINDS = ("rgbd", "lidar", "mixed", "unknown")


class DatasetError(ValueError):
    """A dataset directory is missing, malformed or inconsistent."""


@dataclass
class DatasetInfo:
    """The contents of ``dataset.yaml``."""

    name: str
    classes: ClassTable
    sensor: str = "unknown"
    splits: dict[str, list[str]] = field(default_factory=dict)
    scenes: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": DATASET_FORMAT,
            "format_version": DATASET_FORMAT_VERSION,
            "name": self.name,
            "classes": self.classes.to_dict(),
            "ignore_index": IGNORE_INDEX,
            "sensor": self.sensor,
            "units": "metres",
            "splits": {k: list(v) for k, v in self.splits.items()},
            "scenes": self.scenes,
            "extra": self.extra,
        }


class Dataset:
    """A dataset directory opened for reading."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.info = read_dataset_info(self.root)

    @property
    def classes(self) -> ClassTable:
        return self.info.classes

    def scene_names(self, split: str | None = None) -> list[str]:
        """Scene names of ``split`` (all scenes when None), in file order."""
        if split is None:
            return list(self.info.scenes)
        if split not in self.info.splits:
            raise DatasetError(f"{self.root / DATASET_YAML}: no split {split!r} (have {sorted(self.info.splits)})")
        return list(self.info.splits[split])

    def scene_path(self, name: str) -> Path:
        if name not in self.info.scenes:
            raise DatasetError(f"{self.root / DATASET_YAML}: no scene {name!r}")
        return self.root / self.info.scenes[name]["file"]

    def load(self, name: str) -> Scene:
        """Load and validate one scene (labels checked against the class table)."""
        return load_scene(self.scene_path(name), num_classes=self.classes.num_classes)

    def __len__(self) -> int:
        return len(self.info.scenes)


def read_dataset_info(root: str | Path) -> DatasetInfo:
    """Parse and check ``root/dataset.yaml``; errors name the file and the field."""
    path = Path(root) / DATASET_YAML
    if not path.is_file():
        raise DatasetError(f"{Path(root)}: not a wsseg dataset (no {DATASET_YAML})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DatasetError(f"{path}: invalid YAML ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != DATASET_FORMAT:
        raise DatasetError(f"{path}: field 'format' must be {DATASET_FORMAT!r}")
    if data.get("format_version") != DATASET_FORMAT_VERSION:
        raise DatasetError(f"{path}: unsupported format_version {data.get('format_version')!r}")
    for key in ("name", "classes", "scenes"):
        if key not in data:
            raise DatasetError(f"{path}: missing field {key!r}")
    sensor = str(data.get("sensor", "unknown"))
    if sensor not in SENSOR_KINDS:
        raise DatasetError(f"{path}: field 'sensor' is {sensor!r}, expected one of {SENSOR_KINDS}")
    scenes = data["scenes"] or {}
    if not isinstance(scenes, dict):
        raise DatasetError(f"{path}: field 'scenes' must be a mapping scene -> {{file: ...}}")
    for name, entry in scenes.items():
        if not isinstance(entry, dict) or "file" not in entry:
            raise DatasetError(f"{path}: scenes.{name} has no 'file'")
    splits = data.get("splits") or {}
    for split, names in splits.items():
        missing = [n for n in names or [] if n not in scenes]
        if missing:
            raise DatasetError(f"{path}: split {split!r} names unknown scene(s) {missing[:5]}")
    try:
        classes = ClassTable.from_dict(data["classes"], where=f"{path}: field 'classes'")
    except ValueError as exc:
        raise DatasetError(str(exc)) from None
    return DatasetInfo(
        name=str(data["name"]),
        classes=classes,
        sensor=sensor,
        splits={k: list(v or []) for k, v in splits.items()},
        scenes={str(k): dict(v) for k, v in scenes.items()},
        extra=dict(data.get("extra") or {}),
    )


class DatasetWriter:
    """Writes a dataset directory scene by scene; ``close()`` writes ``dataset.yaml``.

    Usage::

        with DatasetWriter(out, "mydata", S3DIS, sensor="rgbd") as writer:
            writer.add("room_1", scene, split="train", frame_id="map")
    """

    def __init__(self, root: str | Path, name: str, classes: ClassTable, sensor: str = "unknown",
                 extra: dict[str, Any] | None = None) -> None:
        if sensor not in SENSOR_KINDS:
            raise DatasetError(f"sensor {sensor!r} is not one of {SENSOR_KINDS}")
        self.root = Path(root)
        (self.root / SCENES_DIR).mkdir(parents=True, exist_ok=True)
        self.info = DatasetInfo(name=name, classes=classes, sensor=sensor, extra=dict(extra or {}))

    def add(self, name: str, scene: Scene, split: str | None = None, **metadata: Any) -> Path:
        """Validate and write one scene; ``metadata`` (plain YAML values) is kept in dataset.yaml."""
        if name in self.info.scenes:
            raise DatasetError(f"{self.root}: scene {name!r} added twice")
        if "/" in name or name.startswith("."):
            raise DatasetError(f"{self.root}: scene name {name!r} must be a plain file stem")
        relative = f"{SCENES_DIR}/{name}.npz"
        try:
            save_scene(self.root / relative, scene, num_classes=self.info.classes.num_classes)
        except SceneError as exc:
            raise DatasetError(str(exc)) from None
        self.info.scenes[name] = {"file": relative, "points": scene.num_points, **metadata}
        if split is not None:
            self.info.splits.setdefault(split, []).append(name)
        return self.root / relative

    def close(self) -> Path:
        path = self.root / DATASET_YAML
        tmp = path.with_suffix(".yaml.tmp")
        tmp.write_text(yaml.safe_dump(self.info.to_dict(), sort_keys=False))
        tmp.replace(path)
        return path

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
