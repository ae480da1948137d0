"""S3DIS (Stanford Large-Scale 3D Indoor Spaces, v1.2) -> scenes, one per room.

Layout: ``<root>/Area_N/<room>/Annotations/<class>_<k>.txt``, each row ``x y z r g b``
(metres, colour 0..255).  Each annotation file is one instance; the class is the file name's
prefix.  The 13 classes are ``wsseg.core.classes.S3DIS``; ``stairs`` (a 14th name that occurs in a
few rooms) is merged into ``clutter``, as is customary for the 13-class benchmark.
Area 5 is the validation split by default, the other areas are ``train``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from wsseg.core.classes import S3DIS
from wsseg.core.scene import Scene
from wsseg_training.data.readers.base import ReaderError, ReadScene

log = logging.getLogger(__name__)

#: annotation class names merged into another class
MERGED_CLASSES = {"stairs": "clutter"}
_AREA = re.compile(r"^Area_(\d+)$")
_ANNOTATION = re.compile(r"^(?P<cls>[A-Za-z]+)_(?P<k>\d+)\.txt$")


def read_rows(path: Path, columns: int = 6) -> np.ndarray:
    """A whitespace-separated text table with ``columns`` numbers per row -> (R, columns) float64."""
    text = path.read_bytes()
    tokens = text.split()
    try:
        values = np.array(tokens).astype(np.float64) if tokens else np.zeros(0)
    except ValueError:
        values = None
    if values is not None and values.size % columns == 0:
        return values.reshape(-1, columns)
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split()
        if not words:
            continue
        if len(words) != columns:
            raise ReaderError(f"{path}:{number}: {len(words)} values, expected {columns} (x y z r g b)")
        try:
            [float(w) for w in words]
        except ValueError:
            raise ReaderError(f"{path}:{number}: non-numeric value in {line[:80]!r}") from None
    raise ReaderError(f"{path}: malformed table")  # pragma: no cover - one of the above fires


class S3DISReader:
    """Rooms of ``root`` (the folder holding ``Area_1`` ... ``Area_6``)."""

    name = "s3dis"
    classes = S3DIS
    sensor = "rgbd"

    def __init__(self, root: str | Path, val_area: int = 5) -> None:
        self.root = Path(root)
        areas = sorted((p for p in self.root.iterdir() if p.is_dir() and _AREA.match(p.name)),
                       key=lambda p: int(_AREA.match(p.name).group(1))) if self.root.is_dir() else []  # type: ignore[union-attr]
        if not areas:
            raise ReaderError(f"{self.root}: no Area_N folders (expected the S3DIS root holding Area_1 ... Area_6)")
        self.val_area = val_area
        self.rooms = [room for area in areas for room in sorted(area.iterdir())
                      if (room / "Annotations").is_dir()]
        if not self.rooms:
            raise ReaderError(f"{self.root}: no <room>/Annotations folders under {[a.name for a in areas]}")

    def __len__(self) -> int:
        return len(self.rooms)

    def __iter__(self) -> Iterator[ReadScene]:
        for room in self.rooms:
            area = room.parent.name
            split = "val" if area == f"Area_{self.val_area}" else "train"
            scene, instances = self.read_room(room)
            yield ReadScene(f"{area}_{room.name}", scene, split, {"area": area, "room": room.name,
                                                                   "instances": instances})

    @staticmethod
    def read_room(room: Path) -> tuple[Scene, int]:
        """One room: (scene, number of instances).  Instance ids follow the sorted annotation files."""
        files = sorted(p for p in (room / "Annotations").iterdir() if p.suffix == ".txt")
        parts, semantic, instance = [], [], []
        for inst, path in enumerate(files):
            match = _ANNOTATION.match(path.name)
            if match is None:
                raise ReaderError(f"{path}: annotation file name is not <class>_<k>.txt")
            cls = MERGED_CLASSES.get(match["cls"], match["cls"])
            if cls not in S3DIS.names:
                raise ReaderError(f"{path}: unknown S3DIS class {match['cls']!r} (known: {list(S3DIS.names)})")
            rows = read_rows(path)
            parts.append(rows)
            semantic.append(np.full(len(rows), S3DIS.names.index(cls), np.int16))
            instance.append(np.full(len(rows), inst, np.int32))
        if not parts or sum(len(p) for p in parts) == 0:
            raise ReaderError(f"{room / 'Annotations'}: no annotated points")
        table = np.concatenate(parts)
        if table[:, 3:].min() < 0 or table[:, 3:].max() > 255:
            raise ReaderError(f"{room / 'Annotations'}: colour values outside 0..255")
        scene = Scene(xyz=table[:, :3].astype(np.float32), rgb=table[:, 3:].round().astype(np.uint8),
                      semantic=np.concatenate(semantic), instance=np.concatenate(instance))
        return scene, len(files)
