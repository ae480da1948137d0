"""Plain point-cloud files (PLY, PCD, LAS/LAZ) -> scenes, one per file.

Colour, intensity, label and instance fields are optional (names as in ``wsseg.core.cloud_io``;
LAS: ``red green blue``, ``intensity``, and ``label`` as an extra dimension or else ASPRS
``classification``).  Labels are mapped by a class table (``--classes``: a built-in name or a YAML
file with ``names`` and optionally ``palette`` and ``label_map``); without one, raw label values
are class ids of a generic table ``class_0 .. class_K`` sized from the data.  ``ignore_values``
(default 65535, the robot-side "unlabelled") and negative labels become ignore.

Invalid (NaN) points are dropped; for organized clouds the ``pixel`` field keeps the image index.
LAS coordinates far from the origin (> 10 km) are shifted by a whole-metre ``origin_m`` kept in
the metadata, so that float32 keeps millimetres.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from wsseg.core.classes import UNLABELLED_ID, ClassTable
from wsseg.core.cloud_io import CloudFileError, PointCloudFile, read_cloud
from wsseg_training.data.dataset import safe_scene_name
from wsseg_training.data.readers.base import ReaderError, ReadScene
from wsseg_training.data.readers.common import UNSPECIFIED, LabelMap, cloud_to_scene, generic_table

log = logging.getLogger(__name__)

SUFFIXES = {"ply": (".ply",), "pcd": (".pcd",), "las": (".las", ".laz")}
FAR_COORDINATE_M = 1.0e4


def read_las(path: Path) -> tuple[PointCloudFile, list[float]]:
    """A LAS/LAZ file -> (cloud, origin_m subtracted from the coordinates)."""
    import laspy

    try:
        las = laspy.read(path)
    except Exception as exc:  # laspy raises its own and OS errors; report them with the file
        raise ReaderError(f"{path}: not a readable LAS file ({exc})") from None
    xyz64 = np.stack([np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)], axis=1)
    origin = [0.0, 0.0, 0.0]
    if xyz64.size and np.abs(xyz64).max() > FAR_COORDINATE_M:
        origin = [float(v) for v in np.floor(xyz64.min(axis=0))]
        xyz64 = xyz64 - np.asarray(origin)
    dims = {name.lower(): name for name in las.point_format.dimension_names}
    rgb = None
    if all(c in dims for c in ("red", "green", "blue")):
        channels = np.stack([np.asarray(las[dims[c]]) for c in ("red", "green", "blue")], axis=1).astype(np.uint32)
        rgb = (channels >> 8 if channels.size and channels.max() > 255 else channels).astype(np.uint8)
    intensity = np.asarray(las.intensity, dtype=np.float32) if "intensity" in dims else None
    label = None
    if "label" in dims:
        label = np.asarray(las[dims["label"]]).astype(np.int64)
    elif "classification" in dims:
        classification = np.asarray(las.classification).astype(np.int64)
        label = classification if classification.any() else None
    instance = np.asarray(las[dims["instance"]]).astype(np.int64) if "instance" in dims else None
    cloud = PointCloudFile(xyz=xyz64.astype(np.float32), rgb=rgb, intensity=intensity, label=label,
                           instance=instance)
    return cloud, origin


def list_files(root: Path, fmt: str) -> list[Path]:
    """``root`` itself, or the files with ``fmt``'s suffixes below it, sorted."""
    if fmt not in SUFFIXES:
        raise ReaderError(f"unknown file format {fmt!r} (expected one of {sorted(SUFFIXES)})")
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise ReaderError(f"{root}: no such file or folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES[fmt] and p.is_file())
    if not files:
        raise ReaderError(f"{root}: no {'/'.join(SUFFIXES[fmt])} files")
    return files


class FileReader:
    """Files of one format under ``root`` -> scenes named by their relative path, all in ``split``."""

    sensor = "unknown"

    def __init__(self, root: str | Path, fmt: str, classes: ClassTable | None = None,
                 label_map: dict[int, int] | None = None, split: str = "train",
                 ignore_values: tuple[int, ...] = (UNLABELLED_ID,)) -> None:
        self.root = Path(root)
        self.fmt = fmt
        self.name = f"{fmt}_files"
        self.files = list_files(self.root, fmt)
        self.split = split
        if classes is None:
            classes = self._default_table(ignore_values)
        self.classes = classes
        self.labels = LabelMap(classes, label_map, ignore_values) if classes.num_classes else None

    def _read(self, path: Path) -> tuple[PointCloudFile, dict[str, Any]]:
        if self.fmt == "las":
            cloud, origin = read_las(path)
            return cloud, {"origin_m": origin} if any(origin) else {}
        try:
            return read_cloud(path), {}
        except CloudFileError as exc:
            raise ReaderError(str(exc)) from None

    def _default_table(self, ignore_values: tuple[int, ...]) -> ClassTable:
        """A generic table covering the largest label in the files (a first pass), or none without labels."""
        largest = -1
        for path in self.files:
            label = self._read(path)[0].label
            if label is not None:
                used = label[(label >= 0) & ~np.isin(label, ignore_values)]
                largest = max(largest, int(used.max()) if used.size else -1)
        if largest < 0:
            return UNSPECIFIED
        log.info("no --classes given: using a generic table class_0 .. class_%d", largest)
        return generic_table(largest + 1)

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[ReadScene]:
        used: set[str] = set()
        for path in self.files:
            cloud, metadata = self._read(path)
            scene, layout = cloud_to_scene(cloud, self.labels, str(path))
            relative = path.relative_to(self.root) if path != self.root else Path(path.name)
            name = safe_scene_name("_".join(relative.with_suffix("").parts) or path.stem)
            while name in used:
                name += "_"
            used.add(name)
            yield ReadScene(name, scene, self.split, {"source": str(relative), **layout, **metadata})
