"""ScanNet v2 -> scenes, one per scan, with the mesh segments as super-voxels.

Per scan folder ``<scene>/`` (found anywhere under the root, e.g. ``scans/scene0000_00/``):

* ``<scene>_vh_clean_2.ply``: mesh vertices ``x y z red green blue alpha`` (the points);
* ``<scene>_vh_clean_2.labels.ply``: the same vertices with ``label`` = NYU40 class id;
* ``<scene>_vh_clean_2.0.010000.segs.json``: ``{"segIndices": [segment id per vertex]}``;
* ``<scene>.aggregation.json``: ``{"segGroups": [{"objectId", "label", "segments": [...]}]}``.

NYU40 ids are mapped to the 20 benchmark classes (``SCANNET20``); other ids are ignored.
Instances are the aggregation's ``objectId``; the segments are kept as ``supervoxel`` (renumbered
0..S-1), as 1T1C does.  Splits come from ``scannetv2_{train,val,test}.txt`` when present (scans in
no list get no split); without lists, labelled scans are ``train`` and unlabelled ones ``test``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from wsseg.core.classes import IGNORE_INDEX, SCANNET20
from wsseg.core.cloud_io import CloudFileError, read_cloud
from wsseg.core.scene import Scene
from wsseg_training.data.readers.base import ReaderError, ReadScene

log = logging.getLogger(__name__)

#: NYU40 ids of the 20 ScanNet benchmark classes, in SCANNET20 order
NYU40_BENCHMARK_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
SPLIT_LISTS = {"train": "scannetv2_train.txt", "val": "scannetv2_val.txt", "test": "scannetv2_test.txt"}
MESH_SUFFIX = "_vh_clean_2.ply"


def nyu40_to_scannet20(nyu40: np.ndarray) -> np.ndarray:
    """nyu40: (N,) integer NYU40 ids (0 = unannotated).  Returns (N,) int16 SCANNET20 ids or IGNORE_INDEX."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.int16)
    lut[list(NYU40_BENCHMARK_IDS)] = np.arange(len(NYU40_BENCHMARK_IDS), dtype=np.int16)
    nyu40 = np.asarray(nyu40).astype(np.int64)
    inside = (nyu40 >= 0) & (nyu40 < lut.size)
    return np.where(inside, lut[np.clip(nyu40, 0, lut.size - 1)], IGNORE_INDEX).astype(np.int16)


def _load_json(path: Path, key: str) -> Any:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ReaderError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict) or key not in data:
        raise ReaderError(f"{path}: missing field {key!r}")
    return data[key]


def read_split_lists(folder: Path) -> dict[str, str]:
    """scene name -> split from the official list files in ``folder`` (empty if there are none)."""
    splits: dict[str, str] = {}
    for split, filename in SPLIT_LISTS.items():
        path = folder / filename
        if path.is_file():
            for name in path.read_text().split():
                splits[name] = split
    return splits


class ScanNetReader:
    """Scans under ``root``; split lists from ``split_dir`` (default: ``root``)."""

    name = "scannet"
    classes = SCANNET20
    sensor = "rgbd"

    def __init__(self, root: str | Path, split_dir: str | Path | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ReaderError(f"{self.root}: not a folder")
        self.meshes = sorted(p for p in self.root.rglob(f"*{MESH_SUFFIX}") if p.name == p.parent.name + MESH_SUFFIX)
        if not self.meshes:
            raise ReaderError(f"{self.root}: no <scene>/<scene>{MESH_SUFFIX} files")
        self.splits = read_split_lists(Path(split_dir) if split_dir else self.root)

    def __len__(self) -> int:
        return len(self.meshes)

    def __iter__(self) -> Iterator[ReadScene]:
        for mesh in self.meshes:
            scene_name = mesh.parent.name
            scene, metadata = self.read_scan(mesh.parent)
            if self.splits:
                split = self.splits.get(scene_name)
                if split is None:
                    log.warning("%s: scan is in none of the split lists", scene_name)
            else:
                split = "train" if scene.semantic is not None else "test"
            yield ReadScene(scene_name, scene, split, metadata)

    @staticmethod
    def read_scan(folder: Path) -> tuple[Scene, dict[str, Any]]:
        name = folder.name
        try:
            mesh = read_cloud(folder / f"{name}{MESH_SUFFIX}")
        except CloudFileError as exc:
            raise ReaderError(str(exc)) from None
        n = mesh.num_points
        semantic = instance = supervoxel = None
        labels_path = folder / f"{name}_vh_clean_2.labels.ply"
        if labels_path.is_file():
            try:
                labelled = read_cloud(labels_path)
            except CloudFileError as exc:
                raise ReaderError(str(exc)) from None
            if labelled.label is None:
                raise ReaderError(f"{labels_path}: no 'label' vertex property")
            if labelled.num_points != n:
                raise ReaderError(f"{labels_path}: {labelled.num_points} vertices but the mesh has {n}")
            semantic = nyu40_to_scannet20(labelled.label)
        segs_path = folder / f"{name}_vh_clean_2.0.010000.segs.json"
        segments = None
        if segs_path.is_file():
            segments = np.asarray(_load_json(segs_path, "segIndices"), dtype=np.int64)
            if segments.shape != (n,):
                raise ReaderError(f"{segs_path}: field 'segIndices' has {segments.size} entries, mesh has {n} vertices")
            supervoxel = np.unique(segments, return_inverse=True)[1].astype(np.int32)
        agg_path = folder / f"{name}.aggregation.json"
        objects = 0
        if agg_path.is_file():
            if segments is None:
                raise ReaderError(f"{agg_path}: needs {segs_path.name} beside it to place the objects")
            instance = np.full(n, -1, dtype=np.int32)
            groups = _load_json(agg_path, "segGroups")
            order = np.argsort(segments, kind="stable")
            sorted_segments = segments[order]
            for k, group in enumerate(groups):
                try:
                    object_id = int(group["objectId"])
                    members = np.asarray(group["segments"], dtype=np.int64)
                except (KeyError, TypeError, ValueError):
                    raise ReaderError(f"{agg_path}: segGroups[{k}] lacks an integer 'objectId' or a 'segments' "
                                      "list") from None
                lo = np.searchsorted(sorted_segments, members, side="left")
                hi = np.searchsorted(sorted_segments, members, side="right")
                for a, b in zip(lo, hi, strict=True):
                    instance[order[a:b]] = object_id
            objects = len(groups)
        scene = Scene(xyz=mesh.xyz, rgb=mesh.rgb, semantic=semantic, instance=instance, supervoxel=supervoxel)
        return scene, {"objects": objects}
