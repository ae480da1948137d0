"""OSD / mOSD table-top RGB-D frames (PCL data, ``segmentation/mOSD``) -> scenes, one per frame.

Each ``*.pcd`` is an organized 640x480 Kinect frame, PCD ``binary_compressed`` with fields
``label x y z rgba`` (camera optical frame, metres; invalid pixels NaN).  Labels: 0 = unlabelled
(ignored); 1-7 = the supporting surface -> class ``support``; >= 20 = object parts -> class
``object``; 8-19 do not occur and are ignored.  Instances are ``label // 10`` for every labelled
point: the support surface is instance 0, objects are 2, 3, ...  (parts of one object share the tens).

NaN pixels are left out of the scene; the ``pixel`` field keeps each point's row-major image index
so label images can be rebuilt (width/height in the scene metadata).  Split: frames sorted by their
number; ``val_frames`` of them, evenly spaced, are ``val`` (default 10 of 45), the rest ``train``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from wsseg.core.classes import IGNORE_INDEX, MOSD
from wsseg.core.cloud_io import CloudFileError, read_cloud
from wsseg.core.scene import Scene
from wsseg_training.data.readers.base import ReaderError, ReadScene

SUPPORT_LABELS = range(1, 8)
FIRST_OBJECT_LABEL = 20
_NUMBER = re.compile(r"(\d+)")


def map_mosd_labels(label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """label: (N,) integer OSD labels.  Returns (semantic (N,) int16, instance (N,) int32), -1 where ignored."""
    label = np.asarray(label).astype(np.int64)
    support = (label >= SUPPORT_LABELS.start) & (label < SUPPORT_LABELS.stop)
    obj = label >= FIRST_OBJECT_LABEL
    semantic = np.full(label.shape, IGNORE_INDEX, dtype=np.int16)
    semantic[support] = MOSD.names.index("support")
    semantic[obj] = MOSD.names.index("object")
    instance = np.where(support | obj, label // 10, -1).astype(np.int32)
    return semantic, instance


def val_indices(num_frames: int, val_frames: int) -> set[int]:
    """Evenly spaced positions of the validation frames among ``num_frames`` sorted frames."""
    val_frames = max(0, min(val_frames, num_frames))
    return {int((k + 0.5) * num_frames / val_frames) for k in range(val_frames)} if val_frames else set()


def read_frame(path: Path) -> tuple[Scene, dict[str, int]]:
    """One frame -> (scene with pixel indices, {"width", "height"})."""
    try:
        cloud = read_cloud(path)
    except CloudFileError as exc:
        raise ReaderError(str(exc)) from None
    if cloud.label is None or cloud.rgb is None:
        raise ReaderError(f"{path}: an OSD frame needs 'label' and 'rgba' fields (found labels: "
                          f"{cloud.label is not None}, colour: {cloud.rgb is not None})")
    valid = np.flatnonzero(cloud.valid_mask())
    if valid.size == 0:
        raise ReaderError(f"{path}: no valid (finite) points")
    semantic, instance = map_mosd_labels(cloud.label[valid])
    scene = Scene(xyz=np.ascontiguousarray(cloud.xyz[valid]), rgb=np.ascontiguousarray(cloud.rgb[valid]),
                  semantic=semantic, instance=instance, pixel=valid.astype(np.int32))
    return scene, {"width": cloud.width, "height": cloud.height}


class MOSDReader:
    """Frames ``*.pcd`` of ``root`` (e.g. ``mosd/learn``)."""

    name = "mosd"
    classes = MOSD
    sensor = "rgbd"

    def __init__(self, root: str | Path, val_frames: int = 10) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ReaderError(f"{self.root}: not a folder")
        self.frames = sorted(self.root.glob("*.pcd"), key=_frame_key)
        if not self.frames:
            raise ReaderError(f"{self.root}: no *.pcd frames")
        self.val = val_indices(len(self.frames), val_frames)

    def __len__(self) -> int:
        return len(self.frames)

    def __iter__(self) -> Iterator[ReadScene]:
        for position, path in enumerate(self.frames):
            scene, metadata = read_frame(path)
            yield ReadScene(path.stem, scene, "val" if position in self.val else "train",
                            {"source": path.name, **metadata})


def _frame_key(path: Path) -> tuple[str, int]:
    match = _NUMBER.search(path.stem)
    return (_NUMBER.sub("", path.stem), int(match.group(1)) if match else -1)
