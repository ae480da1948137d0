"""Class tables and palettes: the one definition per dataset of what labels mean.

Label conventions, used by every part of wsseg:

* in datasets and training, ``semantic`` is int, ``IGNORE_INDEX`` (-1) where a
  point has no usable label;
* on the robot side (ROS messages, label images), labels are uint16 and
  ``UNLABELLED_ID`` (65535) marks invalid or unlabelled points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = -1
UNLABELLED_ID = 65535


@dataclass(frozen=True)
class ClassTable:
    """Names and display colours of a label set.

    names: class names, index = class id.  palette: one ``(r, g, b)`` 0..255 per class.
    """

    name: str
    names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.palette):
            raise ValueError(f"class table {self.name!r}: {len(self.names)} names but {len(self.palette)} colours")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"class table {self.name!r}: duplicate class names")
        for colour in self.palette:
            if len(colour) != 3 or not all(0 <= int(c) <= 255 for c in colour):
                raise ValueError(f"class table {self.name!r}: colour {colour} is not (r, g, b) in 0..255")

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def palette_array(self) -> np.ndarray:
        """(C, 3) uint8 palette."""
        return np.asarray(self.palette, dtype=np.uint8).reshape(-1, 3)

    def colourize(self, labels: np.ndarray, unknown_rgb: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
        """labels: (N,) or (H, W) int class ids (anything outside [0, C) is "unknown").  Returns (..., 3) uint8."""
        labels = np.asarray(labels).astype(np.int64)
        table = np.concatenate([self.palette_array(), np.asarray([unknown_rgb], dtype=np.uint8)])
        index = np.where((labels >= 0) & (labels < self.num_classes), labels, self.num_classes)
        return table[index]

    def to_dict(self) -> dict:
        return {"name": self.name, "names": list(self.names), "palette": [list(c) for c in self.palette]}

    @classmethod
    def from_dict(cls, data: dict, where: str = "class table") -> ClassTable:
        try:
            return cls(
                name=str(data.get("name", "custom")),
                names=tuple(str(n) for n in data["names"]),
                palette=tuple(tuple(int(v) for v in c) for c in data["palette"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: invalid class table ({exc})") from None


S3DIS = ClassTable(
    "s3dis",
    ("ceiling", "floor", "wall", "beam", "column", "window", "door",
     "table", "chair", "sofa", "bookcase", "board", "clutter"),
    ((0, 255, 0), (0, 0, 255), (0, 255, 255), (255, 255, 0), (255, 0, 255), (100, 100, 255), (200, 200, 100),
     (170, 120, 200), (255, 0, 0), (200, 100, 100), (10, 200, 100), (200, 200, 200), (50, 50, 50)),
)

SCANNET20 = ClassTable(
    "scannet20",
    ("wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
     "picture", "counter", "desk", "curtain", "refrigerator", "shower curtain", "toilet", "sink",
     "bathtub", "otherfurniture"),
    ((174, 199, 232), (152, 223, 138), (31, 119, 180), (255, 187, 120), (188, 189, 34), (140, 86, 75),
     (255, 152, 150), (214, 39, 40), (197, 176, 213), (148, 103, 189), (196, 156, 148), (23, 190, 207),
     (247, 182, 210), (219, 219, 141), (255, 127, 14), (158, 218, 229), (44, 160, 44), (112, 128, 144),
     (227, 119, 194), (82, 84, 163)),
)

SEMANTIC_KITTI19 = ClassTable(
    "semantickitti19",
    ("car", "bicycle", "motorcycle", "truck", "other-vehicle", "person", "bicyclist", "motorcyclist",
     "road", "parking", "sidewalk", "other-ground", "building", "fence", "vegetation", "trunk",
     "terrain", "pole", "traffic-sign"),
    ((100, 150, 245), (100, 230, 245), (30, 60, 150), (80, 30, 180), (0, 0, 255), (255, 30, 30),
     (255, 40, 200), (150, 30, 90), (255, 0, 255), (255, 150, 255), (75, 0, 75), (175, 0, 75),
     (255, 200, 0), (255, 120, 50), (0, 175, 0), (135, 60, 0), (150, 240, 80), (255, 240, 150),
     (255, 0, 0)),
)

SYNTHETIC_OUTDOOR = ClassTable(
    "synthetic_outdoor",
    ("road", "sidewalk", "building", "vegetation", "trunk", "pole", "car", "person", "fence", "terrain"),
    ((255, 0, 255), (75, 0, 75), (255, 200, 0), (0, 175, 0), (135, 60, 0), (255, 240, 150),
     (100, 150, 245), (255, 30, 30), (255, 120, 50), (150, 240, 80)),
)

MOSD = ClassTable("mosd", ("support", "object"), ((160, 160, 160), (230, 60, 40)))

#: The built-in tables by name.
CLASS_TABLES: dict[str, ClassTable] = {
    t.name: t for t in (S3DIS, SCANNET20, SEMANTIC_KITTI19, SYNTHETIC_OUTDOOR, MOSD)
}

#: Amorphous "stuff" classes of each built-in table (building structure, ground, vegetation): surfaces that
#: run through a whole scene, as opposed to countable objects.  1T1C expands a click of such a class to its
#: whole super-voxel and a click on an object only to the nearby part of it
#: (``wsseg_training.methods.otoc.pseudo_labels``).
STRUCTURE_CLASSES: dict[str, tuple[str, ...]] = {
    "s3dis": ("ceiling", "floor", "wall", "beam", "column"),
    "scannet20": ("wall", "floor"),
    "semantickitti19": ("road", "parking", "sidewalk", "other-ground", "building", "fence", "vegetation",
                        "terrain"),
    "synthetic_outdoor": ("road", "sidewalk", "building", "vegetation", "fence", "terrain"),
    "mosd": ("support",),
}
