"""Helpers shared by the readers: class-table options, label mapping, cloud -> scene."""

from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from wsseg.core.classes import CLASS_TABLES, IGNORE_INDEX, UNLABELLED_ID, ClassTable
from wsseg.core.cloud_io import PointCloudFile
from wsseg.core.scene import Scene
from wsseg_training.data.readers.base import ReaderError

#: Class table used when a source has no labels and the user named none.
UNSPECIFIED = ClassTable("unspecified", (), ())


def generic_palette(num: int) -> tuple[tuple[int, int, int], ...]:
    """``num`` distinct colours (golden-ratio hue steps), deterministic."""
    colours = []
    for i in range(num):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.65, 0.95)
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return tuple(colours)


def generic_table(num_classes: int, name: str = "generic") -> ClassTable:
    """Classes ``class_0 .. class_{num_classes-1}`` for labelled data without a class table."""
    return ClassTable(name, tuple(f"class_{i}" for i in range(num_classes)), generic_palette(num_classes))


class LabelMap:
    """Raw label values -> class ids (``IGNORE_INDEX`` for unlabelled values).

    Without an explicit map, a raw value is the class id itself; ``ignore_values`` (and negative
    values) become ``IGNORE_INDEX``; any other value outside the table is an error naming the file.
    """

    def __init__(self, classes: ClassTable, mapping: dict[int, int] | None = None,
                 ignore_values: tuple[int, ...] = (UNLABELLED_ID,)) -> None:
        self.classes = classes
        self.mapping = mapping
        self.ignore_values = ignore_values

    def __call__(self, raw: np.ndarray, where: str) -> np.ndarray:
        """raw: (N,) integer labels.  Returns (N,) int16 class ids."""
        raw = np.asarray(raw).astype(np.int64)
        ignore = (raw < 0) | np.isin(raw, self.ignore_values)
        if self.mapping is not None:
            values, inverse = np.unique(raw, return_inverse=True)
            lut = np.array([self.mapping.get(int(v), -2) for v in values], dtype=np.int64)
            out = lut[inverse]
            bad = (out == -2) & ~ignore
            if bad.any():
                value = int(raw[np.flatnonzero(bad)[0]])
                raise ReaderError(f"{where}: label value {value} is not in the class table's label_map "
                                  f"(known: {sorted(self.mapping)[:20]})")
        else:
            out = raw.copy()
            bad = ~ignore & (raw >= self.classes.num_classes)
            if bad.any():
                value = int(raw[np.flatnonzero(bad)[0]])
                raise ReaderError(f"{where}: label value {value} is outside the class table {self.classes.name!r} "
                                  f"(0..{self.classes.num_classes - 1}); give --classes with a label_map")
        out[ignore] = IGNORE_INDEX
        return out.astype(np.int16)


def load_class_option(value: str | None) -> tuple[ClassTable | None, dict[int, int] | None]:
    """``--classes``: a built-in table name or a YAML file ``{name, names, palette?, label_map?}``.

    ``label_map`` maps raw label values to class names, class ids or ``ignore``.
    Returns ``(None, None)`` when ``value`` is None.
    """
    if value is None:
        return None, None
    if value in CLASS_TABLES:
        return CLASS_TABLES[value], None
    path = Path(value)
    if not path.is_file():
        raise ReaderError(f"--classes {value!r}: neither a built-in table ({sorted(CLASS_TABLES)}) nor a file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ReaderError(f"{path}: invalid YAML ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("names"), list) or not data["names"]:
        raise ReaderError(f"{path}: a class table needs a non-empty list field 'names'")
    names = [str(n) for n in data["names"]]
    table_dict: dict[str, Any] = {"name": data.get("name", path.stem), "names": names,
                                  "palette": data.get("palette") or [list(c) for c in generic_palette(len(names))]}
    table = ClassTable.from_dict(table_dict, where=str(path))
    raw_map = data.get("label_map")
    if raw_map is None:
        return table, None
    if not isinstance(raw_map, dict):
        raise ReaderError(f"{path}: field 'label_map' must map raw label values to class names or ids")
    mapping: dict[int, int] = {}
    for raw, target in raw_map.items():
        try:
            raw_value = int(raw)
        except (TypeError, ValueError):
            raise ReaderError(f"{path}: label_map key {raw!r} is not an integer label value") from None
        if target == "ignore" or target == IGNORE_INDEX:
            mapping[raw_value] = IGNORE_INDEX
        elif isinstance(target, int) and 0 <= target < len(names):
            mapping[raw_value] = target
        elif isinstance(target, str) and target in names:
            mapping[raw_value] = names.index(target)
        else:
            raise ReaderError(f"{path}: label_map {raw!r}: {target!r} is not a class name/id of {names} or 'ignore'")
    return table, mapping


def cloud_to_scene(cloud: PointCloudFile, labels: LabelMap | None, where: str) -> tuple[Scene, dict[str, Any]]:
    """Drop invalid (NaN) points, keep their pixel index when the cloud is organized or had NaNs.

    Returns the scene and metadata (``width``/``height`` when a ``pixel`` field was written).
    """
    valid = cloud.valid_mask()
    if not valid.any():
        raise ReaderError(f"{where}: no valid (finite) points")
    keep_pixels = cloud.is_organized or not valid.all()
    index = np.flatnonzero(valid)
    semantic = None
    if cloud.label is not None and labels is not None:
        semantic = labels(cloud.label[index], where)
    instance = None
    if cloud.instance is not None:
        instance = np.where(cloud.instance[index] < 0, -1, cloud.instance[index]).astype(np.int32)
    scene = Scene(
        xyz=np.ascontiguousarray(cloud.xyz[index]),
        rgb=None if cloud.rgb is None else np.ascontiguousarray(cloud.rgb[index]),
        intensity=None if cloud.intensity is None else np.ascontiguousarray(cloud.intensity[index]),
        semantic=semantic,
        instance=instance,
        pixel=index.astype(np.int32) if keep_pixels else None,
    )
    metadata: dict[str, Any] = {"width": cloud.width, "height": cloud.height} if keep_pixels else {}
    return scene, metadata
