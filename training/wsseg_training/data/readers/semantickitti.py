"""SemanticKITTI -> scenes, one per LiDAR scan.

Layout: ``<root>/sequences/NN/velodyne/XXXXXX.bin`` (float32 ``x y z remission`` per point,
metres, sensor frame) and ``<root>/sequences/NN/labels/XXXXXX.label`` (uint32 per point: lower
16 bits raw semantic id, upper 16 bits instance id).  Raw ids are mapped to the 19 evaluation
classes by the official learning map (``semantic-kitti.yaml``; moving classes fold into their static
class, unlabelled / outlier / other-structure / other-object are ignored).  Sequence 08 is ``val``,
00-07 and 09-10 ``train``, 11-21 (no labels) ``test``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from wsseg.core.classes import IGNORE_INDEX, SEMANTIC_KITTI19
from wsseg.core.scene import Scene
from wsseg_training.data.readers.base import ReaderError, ReadScene

log = logging.getLogger(__name__)

#: raw SemanticKITTI id -> index into SEMANTIC_KITTI19 (official learning map minus one; absent = ignore)
RAW_TO_CLASS: dict[int, int] = {
    10: 0, 11: 1, 13: 4, 15: 2, 16: 4, 18: 3, 20: 4,  # vehicles (bus, on-rails -> other-vehicle)
    30: 5, 31: 6, 32: 7,  # person, bicyclist, motorcyclist
    40: 8, 44: 9, 48: 10, 49: 11, 60: 8,  # road, parking, sidewalk, other-ground, lane-marking -> road
    50: 12, 51: 13, 70: 14, 71: 15, 72: 16, 80: 17, 81: 18,  # building .. traffic-sign
    252: 0, 253: 6, 254: 5, 255: 7, 256: 4, 257: 4, 258: 3, 259: 4,  # moving-* -> static counterparts
}
#: raw ids that the learning map sends to "unlabeled" (ignored without a warning)
RAW_IGNORED = (0, 1, 52, 99)
VAL_SEQUENCES = ("08",)
TEST_SEQUENCES = tuple(f"{i:02d}" for i in range(11, 22))


def map_raw_labels(raw: np.ndarray) -> np.ndarray:
    """raw: (N,) uint32 label words.  Returns (N,) int16 SEMANTIC_KITTI19 ids or IGNORE_INDEX."""
    lut = np.full(1 << 16, IGNORE_INDEX, dtype=np.int16)
    for raw_id, cls in RAW_TO_CLASS.items():
        lut[raw_id] = cls
    return lut[np.asarray(raw, dtype=np.uint32) & 0xFFFF]


def scan_instances(raw: np.ndarray) -> np.ndarray:
    """raw: (N,) uint32 label words.  Returns (N,) int32 instance ids 0..K-1 within the scan, -1 for none.

    The upper 16 bits identify an object together with its class, so the whole word is the key.
    """
    raw = np.asarray(raw, dtype=np.uint32)
    has = (raw >> 16) > 0
    out = np.full(raw.shape, -1, dtype=np.int32)
    if has.any():
        out[has] = np.unique(raw[has], return_inverse=True)[1].astype(np.int32)
    return out


def read_scan(bin_path: Path, label_path: Path | None) -> Scene:
    """One scan (see module docstring); ``label_path`` None or missing -> unlabelled scene."""
    size = bin_path.stat().st_size
    if size % 16:
        raise ReaderError(f"{bin_path}: {size} bytes is not a whole number of 16-byte (x, y, z, remission) points")
    points = np.fromfile(bin_path, dtype="<f4").reshape(-1, 4)
    semantic = instance = None
    if label_path is not None and label_path.is_file():
        raw = np.fromfile(label_path, dtype="<u4")
        if raw.size != points.shape[0] or label_path.stat().st_size % 4:
            raise ReaderError(f"{label_path}: {label_path.stat().st_size} bytes = {raw.size} labels, but "
                              f"{bin_path.name} has {points.shape[0]} points")
        unknown = ~np.isin(raw & 0xFFFF, list(RAW_TO_CLASS) + list(RAW_IGNORED))
        if unknown.any():
            log.warning("%s: %d points with raw ids outside the learning map (e.g. %d) ignored", label_path,
                        int(unknown.sum()), int(raw[unknown][0] & 0xFFFF))
        semantic = map_raw_labels(raw)
        instance = scan_instances(raw)
    return Scene(xyz=np.ascontiguousarray(points[:, :3]), intensity=np.ascontiguousarray(points[:, 3]),
                 semantic=semantic, instance=instance)


class SemanticKITTIReader:
    """Scans of ``root`` (the folder holding ``sequences/``, or ``sequences/`` itself)."""

    name = "semantickitti"
    classes = SEMANTIC_KITTI19
    sensor = "lidar"

    def __init__(self, root: str | Path, sequences: list[str] | None = None,
                 val_sequences: tuple[str, ...] = VAL_SEQUENCES) -> None:
        self.root = Path(root)
        seq_root = self.root / "sequences" if (self.root / "sequences").is_dir() else self.root
        if not seq_root.is_dir():
            raise ReaderError(f"{self.root}: not a folder")
        wanted = {f"{int(s):02d}" for s in sequences} if sequences else None
        self.val_sequences = tuple(f"{int(s):02d}" for s in val_sequences)
        self.scans: list[tuple[str, Path]] = []
        for seq in sorted(p for p in seq_root.iterdir() if p.is_dir() and p.name.isdigit()):
            if wanted is None or seq.name in wanted:
                self.scans += [(seq.name, b) for b in sorted((seq / "velodyne").glob("*.bin"))]
        if not self.scans:
            raise ReaderError(f"{self.root}: no sequences/NN/velodyne/*.bin scans"
                              + (f" in sequences {sorted(wanted)}" if wanted else ""))

    def __len__(self) -> int:
        return len(self.scans)

    def __iter__(self) -> Iterator[ReadScene]:
        for seq, bin_path in self.scans:
            label_path = bin_path.parent.parent / "labels" / (bin_path.stem + ".label")
            scene = read_scan(bin_path, label_path)
            if seq in self.val_sequences:
                split = "val"
            elif seq in TEST_SEQUENCES or scene.semantic is None:
                split = "test"
            else:
                split = "train"
            yield ReadScene(f"seq{seq}_{bin_path.stem}", scene, split, {"sequence": seq, "scan": bin_path.stem})
