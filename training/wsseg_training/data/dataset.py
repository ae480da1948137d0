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

A dataset cannot point outside itself: scene names are plain file stems (:data:`SCENE_NAME`, so a name
used in a file name -- a report's picture, a supervoxel record -- stays where it is put), and scene files
are relative paths inside the dataset directory that do not resolve (through a symlink) out of it.
A crafted ``dataset.yaml`` is refused with an error naming the field, before anything is read or written.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import yaml

from wsseg.core.atomic import temporary_path, write_text_atomic
from wsseg.core.classes import IGNORE_INDEX, ClassTable
from wsseg.core.scene import Scene, SceneError, load_scene, save_scene

DATASET_FORMAT = "wsseg-dataset"
DATASET_FORMAT_VERSION = 1
DATASET_YAML = "dataset.yaml"
SCENES_DIR = "scenes"
SENSOR_KINDS = ("rgbd", "lidar", "mixed", "unknown")
#: a scene name: letters, digits and ``_ . + -``, not starting with ``. + -``, at most 200 characters
SCENE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,199}")


class DatasetError(ValueError):
    """A dataset directory is missing, malformed or inconsistent."""


def check_scene_name(name: str, where: str) -> None:
    """Raise :class:`DatasetError` unless ``name`` matches :data:`SCENE_NAME`."""
    if not isinstance(name, str) or not SCENE_NAME.fullmatch(name):
        raise DatasetError(f"{where}: scene name {name!r} must be a plain file stem of letters, digits and "
                           "'_ . + -' (at most 200 characters, not starting with '. + -')")


def safe_scene_name(text: str) -> str:
    """A :data:`SCENE_NAME` made from any text (a file path, a topic): other characters become ``_``."""
    name = re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).lstrip("._+-")[:200]
    return name or "scene"


def check_scene_file(file: Any, where: str) -> str:
    """The ``file`` of a scene entry, which must be a relative path inside the dataset (no ``..``, not absolute)."""
    if not isinstance(file, str) or not file:
        raise DatasetError(f"{where} is {file!r}, expected a relative path such as 'scenes/NAME.npz'")
    parts = PurePosixPath(file.replace("\\", "/")).parts
    if PurePosixPath(file).is_absolute() or PureWindowsPath(file).is_absolute() or PureWindowsPath(file).drive \
            or ".." in parts:
        raise DatasetError(f"{where} {file!r} is outside the dataset directory (scene files are relative paths "
                           "inside it, without '..')")
    return file


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
        """The scene's file; refused when it resolves (through a symlink) outside the dataset directory."""
        if name not in self.info.scenes:
            raise DatasetError(f"{self.root / DATASET_YAML}: no scene {name!r}")
        path = self.root / self.info.scenes[name]["file"]
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise DatasetError(f"{self.root / DATASET_YAML}: scenes.{name}.file {str(path)!r} resolves outside the "
                               f"dataset directory (to {path.resolve()})")
        return path

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
        check_scene_name(str(name), f"{path}: scenes")
        if not isinstance(entry, dict) or "file" not in entry:
            raise DatasetError(f"{path}: scenes.{name} has no 'file'")
        check_scene_file(entry["file"], f"{path}: scenes.{name}.file")
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
    """Writes a dataset directory scene by scene; ``close()`` publishes it, a failure leaves nothing behind.

    Scenes are written into a staging folder inside ``root``; ``close()`` moves them into ``scenes/`` and writes
    ``dataset.yaml`` last (atomically).  Leaving the ``with`` block by an exception (or calling ``abort()``)
    deletes the staging folder, and ``root`` itself if the writer created it: a conversion that fails half-way
    leaves no partial dataset, and an existing dataset it would have overwritten stays as it was.

    Usage::

        with DatasetWriter(out, "mydata", S3DIS, sensor="rgbd") as writer:
            writer.add("room_1", scene, split="train", frame_id="map")
    """

    def __init__(self, root: str | Path, name: str, classes: ClassTable, sensor: str = "unknown",
                 extra: dict[str, Any] | None = None) -> None:
        if sensor not in SENSOR_KINDS:
            raise DatasetError(f"sensor {sensor!r} is not one of {SENSOR_KINDS}")
        self.root = Path(root)
        self._created_root = not self.root.exists()
        self.staging = temporary_path(self.root / SCENES_DIR)
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        self.info = DatasetInfo(name=name, classes=classes, sensor=sensor, extra=dict(extra or {}))

    def add(self, name: str, scene: Scene, split: str | None = None, **metadata: Any) -> Path:
        """Validate and stage one scene; ``metadata`` (plain YAML values) is kept in dataset.yaml.

        Returns the path the scene will have once the writer is closed.
        """
        if name in self.info.scenes:
            raise DatasetError(f"{self.root}: scene {name!r} added twice")
        check_scene_name(name, str(self.root))
        relative = f"{SCENES_DIR}/{name}.npz"
        try:
            save_scene(self.staging / f"{name}.npz", scene, num_classes=self.info.classes.num_classes)
        except SceneError as exc:
            raise DatasetError(str(exc).replace(str(self.staging), str(self.root / SCENES_DIR))) from None
        self.info.scenes[name] = {"file": relative, "points": scene.num_points, **metadata}
        if split is not None:
            self.info.splits.setdefault(split, []).append(name)
        return self.root / relative

    def close(self) -> Path:
        """Move the staged scenes into place and write ``dataset.yaml``; returns its path."""
        scenes = self.root / SCENES_DIR
        scenes.mkdir(parents=True, exist_ok=True)
        for name in self.info.scenes:
            os.replace(self.staging / f"{name}.npz", scenes / f"{name}.npz")
        shutil.rmtree(self.staging, ignore_errors=True)
        return write_text_atomic(self.root / DATASET_YAML, yaml.safe_dump(self.info.to_dict(), sort_keys=False))

    def abort(self) -> None:
        """Discard everything written so far (``root`` too when this writer created it and it is empty)."""
        shutil.rmtree(self.staging, ignore_errors=True)
        if self._created_root:
            for folder in (self.root / SCENES_DIR, self.root):
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
