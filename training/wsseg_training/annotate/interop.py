"""Per-point label files of other tools <-> wsseg weak labels.

Two layouts, one file per scene, points in the order of the scene record:

* **SemanticKITTI ``.label``** (what point_labeler and the SemanticKITTI tools read and write): one
  little-endian uint32 per point, lower 16 bits the semantic id, upper 16 bits the instance id (0 = none).
  wsseg writes instance ``i`` as ``i + 1``.  For a dataset with the SemanticKITTI class table
  (``wsseg data convert --format semantickitti``) the semantic ids are the raw SemanticKITTI ids (the
  official learning map, as the reader uses; a class is written as its first raw id).  For any other
  class table: id = class index + 1, 0 = unlabelled.
* **Segments.ai point-cloud segmentation label** (the ``attributes`` of a ``pointcloud-segmentation``
  label, as its SDK returns and accepts it): ``{"format_version": "0.1", "annotations": [{"id": k,
  "category_id": c}, ...], "point_annotations": [k per point, 0 = unlabelled]}``; the categories
  (``{"categories": [{"id": c, "name": ...}]}``, the dataset's task attributes) map ``category_id`` to a
  class by name; without them category id = class index + 1.

Importing turns dense labels into the weak labels a human with those labels would give: one click per
object (``labels.simulate.sample_object_clicks``), the classes present (``scene_classes``) or sub-cloud
tags (``scene_subclouds``).  Exporting writes what a clicks file labels for 1T1C: the clicks spread over
their super-voxels (``initial_pseudo_labels``), each labelled point with the instance of its click.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from wsseg.core.classes import IGNORE_INDEX, SEMANTIC_KITTI19, ClassTable
from wsseg_training.data.readers.semantickitti import RAW_TO_CLASS, map_raw_labels, scan_instances

FORMATS = ("semantickitti", "segments")
SUFFIX = {"semantickitti": ".label", "segments": ".json"}
SEGMENTS_CATEGORIES = "categories.json"
SEGMENTS_FORMAT_VERSION = "0.1"
_KITTI_SCENE = re.compile(r"^seq(\d+)_(\d+)$")


class InteropError(ValueError):
    """A foreign label file is malformed or does not fit the scene; the message names the file and the value."""


def _is_kitti(classes: ClassTable) -> bool:
    return tuple(classes.names) == tuple(SEMANTIC_KITTI19.names)


def label_path(folder: Path, scene: str, fmt: str) -> Path | None:
    """The file of ``scene`` in ``folder``: ``<scene><suffix>``, or for SemanticKITTI scene names
    ``seqNN_XXXXXX`` also ``[sequences/]NN/labels/XXXXXX.label``; None when there is none."""
    flat = folder / f"{scene}{SUFFIX[fmt]}"
    if flat.is_file():
        return flat
    match = _KITTI_SCENE.match(scene)
    if fmt == "semantickitti" and match:
        for base in (folder / "sequences", folder):
            tree = base / match.group(1) / "labels" / f"{match.group(2)}.label"
            if tree.is_file():
                return tree
    return None


# ------------------------------------------------------------------------------------------ SemanticKITTI


def read_kitti_label(path: Path, num_points: int, classes: ClassTable) -> tuple[np.ndarray, np.ndarray]:
    """-> semantic (N,) int64 class ids (``IGNORE_INDEX`` unlabelled), instance (N,) int64 (-1 none)."""
    size = path.stat().st_size
    if size != 4 * num_points:
        raise InteropError(f"{path}: {size} bytes = {size / 4:g} labels, but the scene has {num_points} points")
    raw = np.fromfile(path, dtype="<u4")
    if _is_kitti(classes):
        return map_raw_labels(raw).astype(np.int64), scan_instances(raw).astype(np.int64)
    semantic = (raw & 0xFFFF).astype(np.int64) - 1
    bad = np.flatnonzero(semantic >= classes.num_classes)
    if bad.size:
        raise InteropError(f"{path}: point {int(bad[0])} has semantic id {int(semantic[bad[0]]) + 1}, outside the "
                           f"class table (1..{classes.num_classes}, 0 = unlabelled)")
    instance = (raw >> 16).astype(np.int64)
    return semantic, np.where(instance > 0, instance - 1, -1)


def write_kitti_label(path: Path, semantic: np.ndarray, instance: np.ndarray, classes: ClassTable) -> Path:
    """semantic: (N,) int class ids or -1; instance: (N,) int, -1 none (0..65534 otherwise)."""
    semantic = np.asarray(semantic, dtype=np.int64)
    instance = np.asarray(instance, dtype=np.int64)
    if _is_kitti(classes):
        first_raw = {}
        for raw_id, cls in sorted(RAW_TO_CLASS.items()):
            first_raw.setdefault(cls, raw_id)
        lut = np.array([first_raw[c] for c in range(classes.num_classes)] + [0], dtype=np.uint32)
        low = lut[np.where(semantic >= 0, semantic, classes.num_classes)]
    else:
        low = np.where(semantic >= 0, semantic + 1, 0).astype(np.uint32)
    high = np.where(instance >= 0, instance + 1, 0).astype(np.uint32)
    if high.size and int(high.max()) > 0xFFFF:
        raise InteropError(f"{path}: instance id {int(high.max()) - 1} does not fit the 16 bits of a .label")
    ((high << 16) | low).astype("<u4").tofile(path)
    return path


# ------------------------------------------------------------------------------------------ Segments.ai


def segments_categories(classes: ClassTable) -> dict[str, Any]:
    """The task attributes that name the categories of exported labels: id = class index + 1."""
    return {"format_version": SEGMENTS_FORMAT_VERSION,
            "categories": [{"id": i + 1, "name": name} for i, name in enumerate(classes.names)]}


def category_map(folder: Path, classes: ClassTable) -> dict[int, int]:
    """category_id -> class index, from ``folder/categories.json`` by name (else id = index + 1)."""
    path = folder / SEGMENTS_CATEGORIES
    if not path.is_file():
        return {i + 1: i for i in range(classes.num_classes)}
    try:
        items = json.loads(path.read_text())["categories"]
        names = {int(c["id"]): str(c["name"]) for c in items}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InteropError(f"{path}: expected {{'categories': [{{'id': int, 'name': str}}, ...]}} ({exc})") from None
    unknown = sorted(n for n in names.values() if n not in classes.names)
    if unknown:
        raise InteropError(f"{path}: categories {unknown} are not in the class table {list(classes.names)}")
    return {cid: classes.names.index(name) for cid, name in names.items()}


def read_segments_label(path: Path, num_points: int, categories: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """-> semantic (N,) int64, instance (N,) int64 (the annotation id, -1 where unlabelled)."""
    try:
        document = json.loads(path.read_text())
        annotations = {int(a["id"]): int(a["category_id"]) for a in document["annotations"]}
        points = np.asarray(document["point_annotations"], dtype=np.int64)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InteropError(f"{path}: not a Segments.ai point-cloud segmentation label ({exc})") from None
    if points.shape != (num_points,):
        raise InteropError(f"{path}: point_annotations has {points.size} entries, the scene {num_points} points")
    unknown = sorted(set(np.unique(points[points > 0]).tolist()) - set(annotations))
    if unknown:
        raise InteropError(f"{path}: point_annotations refers to object id {unknown[0]}, not in 'annotations'")
    bad = sorted({c for c in annotations.values() if c not in categories})
    if bad:
        raise InteropError(f"{path}: category_id {bad[0]} is not a known category (have {sorted(categories)})")
    ids = np.array(sorted(annotations), dtype=np.int64)
    cls = np.array([categories[annotations[i]] for i in ids], dtype=np.int64)
    semantic = np.full(num_points, IGNORE_INDEX, dtype=np.int64)
    labelled = points > 0
    semantic[labelled] = cls[np.searchsorted(ids, points[labelled])]
    return semantic, np.where(labelled, points, -1)


def write_segments_label(path: Path, semantic: np.ndarray, instance: np.ndarray) -> Path:
    """One annotation per (instance, class) pair, ids from 1; category_id = class index + 1."""
    semantic = np.asarray(semantic, dtype=np.int64)
    instance = np.asarray(instance, dtype=np.int64)
    labelled = semantic >= 0
    pairs = np.unique(np.stack([instance[labelled], semantic[labelled]], axis=1), axis=0)
    point_ids = np.zeros(semantic.shape[0], dtype=np.int64)
    if pairs.size:
        keys = np.stack([instance[labelled], semantic[labelled]], axis=1)
        point_ids[labelled] = 1 + np.unique(keys, axis=0, return_inverse=True)[1].reshape(-1)
    document = {"format_version": SEGMENTS_FORMAT_VERSION,
                "annotations": [{"id": k + 1, "category_id": int(c) + 1} for k, (_, c) in enumerate(pairs)],
                "point_annotations": point_ids.tolist()}
    path.write_text(json.dumps(document, separators=(",", ":")) + "\n")
    return path


# ------------------------------------------------------------------------------------------ dispatch


def read_dense(folder: Path, scene: str, fmt: str, num_points: int, classes: ClassTable) -> tuple[np.ndarray,
                                                                                                   np.ndarray] | None:
    """Dense (semantic, instance) of ``scene`` from ``folder`` in ``fmt``; None when the scene has no file."""
    path = label_path(folder, scene, fmt)
    if path is None:
        return None
    if fmt == "semantickitti":
        return read_kitti_label(path, num_points, classes)
    return read_segments_label(path, num_points, category_map(folder, classes))


def write_dense(folder: Path, scene: str, fmt: str, semantic: np.ndarray, instance: np.ndarray,
                classes: ClassTable) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{scene}{SUFFIX[fmt]}"
    if fmt == "semantickitti":
        return write_kitti_label(path, semantic, instance, classes)
    if not (folder / SEGMENTS_CATEGORIES).is_file():
        (folder / SEGMENTS_CATEGORIES).write_text(json.dumps(segments_categories(classes), indent=1) + "\n")
    return write_segments_label(path, semantic, instance)


def click_instances(labels: np.ndarray, supervoxel: np.ndarray | None, xyz: np.ndarray, points: np.ndarray,
                    cls: np.ndarray, instance: np.ndarray) -> np.ndarray:
    """(N,) int64 instance of every labelled point of a click expansion: that of the nearest click of the
    same class in its super-voxel (the click itself for clicked points), -1 elsewhere.

    labels: (N,) expanded labels (``initial_pseudo_labels``); points / cls / instance: (K,) the clicks.
    """
    out = np.full(labels.shape[0], -1, dtype=np.int64)
    xyz = np.asarray(xyz, dtype=np.float64)
    groups = supervoxel if supervoxel is not None else np.full(labels.shape[0], -1)
    for sv in np.unique(groups[points]):
        members = np.flatnonzero(groups == sv) if sv >= 0 else np.zeros(0, np.int64)
        here = np.flatnonzero(groups[points] == sv)
        for c in np.unique(cls[here]):
            mine = here[cls[here] == c]
            target = members[labels[members] == c]
            if target.size == 0:
                continue
            distance = np.linalg.norm(xyz[target][:, None, :] - xyz[points[mine]][None, :, :], axis=2)
            out[target] = instance[mine][distance.argmin(axis=1)]
    out[points] = instance
    return out
