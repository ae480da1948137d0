"""On-disk schema of weak-label files, writer and checking loader.

Every file states (``schema_version`` 1 for each kind)::

    format: "wsseg-weak-labels"
    kind: clicks | sparse_points | scene_tags | subcloud_tags | labelled_scenes
    schema_version: 1
    dataset: {name, fingerprint, classes: [class names]}
    seed: int | null
    options: {...}                      # the simulation options (or the annotation tool's)
    scenes: {scene: {points: N, ...}}   # the covered scenes and their point counts

``fingerprint`` = sha256 of the sorted ``scene<TAB>N`` lines, so a file made for
another dataset (or an edited one) is refused.  Per-scene fields by kind:

* ``clicks`` (JSON): ``clicks: [[point, class, instance], ...]``, instance -1 if unknown;
* ``scene_tags`` (JSON): ``classes: [class, ...]``; top level ``removed: [{scene, class}]``;
* ``subcloud_tags`` (JSON): ``subclouds: [{centre: [x, y, z], radius_m, classes: [...], points}]``;
* ``labelled_scenes`` (JSON): ``status: labelled | unlabelled | cut`` and, for ``cut``,
  ``cut: {axis, below_m}`` (points with ``xyz[axis] < below_m`` are labelled);
* ``sparse_points`` (NPZ, because 10 % of every scene is millions of indices):
  ``header`` 0-d str = the JSON above without per-scene fields beyond ``points``;
  ``scene`` (S,) str; ``offsets`` (S+1,) int64; ``point`` (M,) int64; ``class`` (M,) int16.
  Scene ``scene[s]`` owns rows ``offsets[s]:offsets[s+1]``.

JSON is used for the other kinds because they are small and are also what an
annotation tool writes and a person reads.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from wsseg_training.data.dataset import Dataset
from wsseg_training.labels.types import (
    KINDS,
    SCHEMA_VERSIONS,
    WEAK_LABEL_FORMAT,
    Clicks,
    Cut,
    Header,
    LabelledScenes,
    PointLabels,
    SceneTags,
    SparsePoints,
    Subcloud,
    SubcloudTags,
    WeakLabelError,
    WeakLabels,
    dataset_fingerprint,
)

NPZ_KINDS = ("sparse_points",)


def default_suffix(kind: str) -> str:
    return ".npz" if kind in NPZ_KINDS else ".json"


# --------------------------------------------------------------------------- writing


def _header_dict(header: Header) -> dict[str, Any]:
    return {
        "format": WEAK_LABEL_FORMAT,
        "kind": header.kind,
        "schema_version": header.schema_version,
        "dataset": {"name": header.dataset, "fingerprint": header.fingerprint, "classes": list(header.class_names)},
        "seed": header.seed,
        "options": header.options,
    }


def _ints(values: np.ndarray) -> list[int]:
    return [int(v) for v in np.asarray(values).reshape(-1)]


def write_atomically(path: Path, data: bytes) -> Path:
    """Replace ``path`` by ``data`` so that a reader or a crash sees the old file or the new one, never a torn one.

    A unique temporary file in the same folder (so concurrent writers never share one), fsync, rename over
    ``path``, fsync of the folder (so the rename itself survives a power cut).
    """
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644  # mkstemp's 0600 would hide the file
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return path


def save_weak_labels(labels: WeakLabels, path: str | Path) -> Path:
    """Write ``labels`` to ``path`` (JSON or NPZ by kind) with :func:`write_atomically`."""
    path = Path(path)
    header = labels.header
    document = _header_dict(header)
    scenes: dict[str, dict[str, Any]] = {name: {"points": int(n)} for name, n in header.scene_points.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(labels, SparsePoints):
        names = list(header.scene_points)
        entries = [labels.scenes[n] for n in names]
        offsets = np.cumsum([0] + [len(e) for e in entries]).astype(np.int64)
        empty = np.zeros(0, np.int64)
        document["scenes"] = scenes
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer, header=np.array(json.dumps(document)), scene=np.array(names, dtype=str), offsets=offsets,
            point=np.concatenate([e.point for e in entries] or [empty]).astype(np.int64),
            **{"class": np.concatenate([e.cls for e in entries] or [empty]).astype(np.int16)},
        )
        return write_atomically(path, buffer.getvalue())
    if isinstance(labels, Clicks):
        for name, entry in labels.scenes.items():
            rows = np.stack([entry.point, entry.cls, entry.instance], axis=1) if len(entry) else np.zeros((0, 3))
            scenes[name]["clicks"] = [_ints(r) for r in rows]
    elif isinstance(labels, SceneTags):
        for name, tags in labels.tags.items():
            scenes[name]["classes"] = sorted(int(c) for c in tags)
        document["removed"] = [{"scene": s, "class": int(c)} for s, c in labels.removed]
    elif isinstance(labels, SubcloudTags):
        for name, subclouds in labels.scenes.items():
            scenes[name]["subclouds"] = [
                {"centre": [round(float(v), 4) for v in sc.centre], "radius_m": float(sc.radius_m),
                 "classes": sorted(int(c) for c in sc.classes), "points": int(sc.num_points)}
                for sc in subclouds
            ]
    elif isinstance(labels, LabelledScenes):
        for name in labels.labelled:
            scenes[name]["status"] = "labelled"
        for name in labels.unlabelled:
            scenes[name]["status"] = "unlabelled"
        for name, cut in labels.cuts.items():
            scenes[name]["status"] = "cut"
            scenes[name]["cut"] = {"axis": int(cut.axis), "below_m": float(cut.below_m)}
    else:
        raise TypeError(f"not a weak-label object: {type(labels).__name__}")
    document["scenes"] = scenes
    return write_atomically(path, (json.dumps(document, indent=1) + "\n").encode())


# --------------------------------------------------------------------------- reading


class _Checker:
    """Field checks that raise :class:`WeakLabelError` naming the file, the field path and the value."""

    def __init__(self, path: Path, num_classes: int) -> None:
        self.path = path
        self.num_classes = num_classes

    def fail(self, where: str, message: str) -> WeakLabelError:
        return WeakLabelError(f"{self.path}: {where}: {message}")

    def get(self, data: Any, key: str, where: str) -> Any:
        if not isinstance(data, dict):
            raise self.fail(where, f"expected a mapping, got {type(data).__name__}")
        if key not in data:
            raise self.fail(where, f"missing field {key!r}")
        return data[key]

    def integer(self, value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise self.fail(where, f"expected an integer, got {value!r}")
        return int(value)

    def number(self, value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
            raise self.fail(where, f"expected a finite number, got {value!r}")
        return float(value)

    def int_list(self, value: Any, where: str) -> list[int]:
        if not isinstance(value, list):
            raise self.fail(where, f"expected a list, got {type(value).__name__}")
        return [self.integer(v, f"{where}[{i}]") for i, v in enumerate(value)]

    def class_id(self, value: int, where: str) -> int:
        if not 0 <= value < self.num_classes:
            raise self.fail(where, f"class {value} outside the class table (0..{self.num_classes - 1})")
        return value

    def point_ids(self, points: np.ndarray, n: int, where: str) -> None:
        bad = np.flatnonzero((points < 0) | (points >= n))
        if bad.size:
            i = int(bad[0])
            raise self.fail(f"{where}[{i}]", f"point {int(points[i])} outside the cloud (N={n})")


def _read_document(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray] | None]:
    if not path.is_file():
        raise WeakLabelError(f"{path}: weak-label file does not exist")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise WeakLabelError(f"{path}: not a readable .npz weak-label file ({exc})") from None
        if "header" not in arrays:
            raise WeakLabelError(f"{path}: missing array 'header'")
        text = str(arrays["header"])
    else:
        arrays = None
        text = path.read_text()
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WeakLabelError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(document, dict):
        raise WeakLabelError(f"{path}: expected a JSON object at the top level")
    return document, arrays


def _check_dataset(check: _Checker, header: Header, fingerprint: str, dataset: Dataset) -> None:
    info = dataset.info
    if header.dataset != info.name:
        raise check.fail("dataset.name", f"file is for dataset {header.dataset!r}, not {info.name!r} ({dataset.root})")
    if tuple(header.class_names) != tuple(info.classes.names):
        raise check.fail("dataset.classes", f"class table {list(header.class_names)} differs from the dataset's "
                                            f"{list(info.classes.names)}")
    actual: dict[str, int] = {}
    for name in header.scene_points:
        if name not in info.scenes:
            raise check.fail(f"scenes.{name}", f"scene {name!r} is not in dataset {info.name!r} ({dataset.root})")
        actual[name] = int(info.scenes[name].get("points", -1))
        if actual[name] < 0:
            actual[name] = dataset.load(name).num_points
    if dataset_fingerprint(actual) != fingerprint:
        diff = next((f"scene {k!r} has {v} points in the file, {actual[k]} in the dataset"
                     for k, v in header.scene_points.items() if actual[k] != v), "")
        raise check.fail("dataset.fingerprint", f"dataset fingerprint mismatch: file {fingerprint[:12]}…, "
                                                f"dataset {dataset_fingerprint(actual)[:12]}… {diff}".rstrip())


def load_weak_labels(path: str | Path, dataset: Dataset | str | Path | None = None) -> WeakLabels:
    """Read a weak-label file and check it (against ``dataset`` when given).

    Raises :class:`WeakLabelError` naming the file, the field and the value for: unreadable
    files, unknown kind, unsupported schema_version, another dataset (name, class table,
    scenes, fingerprint), point index outside the cloud, class outside the class table.
    """
    path = Path(path)
    if dataset is not None and not isinstance(dataset, Dataset):
        dataset = Dataset(dataset)
    document, arrays = _read_document(path)
    if document.get("format") != WEAK_LABEL_FORMAT:
        raise WeakLabelError(f"{path}: field 'format' is {document.get('format')!r}, expected {WEAK_LABEL_FORMAT!r}")
    kind = document.get("kind")
    if kind not in KINDS:
        raise WeakLabelError(f"{path}: field 'kind': unknown kind {kind!r} (known: {', '.join(KINDS)})")
    version = document.get("schema_version")
    if version != SCHEMA_VERSIONS[kind]:
        raise WeakLabelError(f"{path}: field 'schema_version': {version!r} is not supported for kind {kind!r} "
                             f"(this wsseg reads version {SCHEMA_VERSIONS[kind]})")
    if (path.suffix == ".npz") != (kind in NPZ_KINDS):
        raise WeakLabelError(f"{path}: kind {kind!r} is stored as {default_suffix(kind)}, not {path.suffix}")
    probe = _Checker(path, 0)
    meta = probe.get(document, "dataset", "dataset")
    names = probe.get(meta, "classes", "dataset")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise probe.fail("dataset.classes", f"expected a list of class names, got {names!r}")
    check = _Checker(path, len(names))
    raw_scenes = check.get(document, "scenes", "top level")
    if not isinstance(raw_scenes, dict):
        raise check.fail("scenes", f"expected a mapping scene -> {{points: N, ...}}, got {type(raw_scenes).__name__}")
    scene_points = {str(s): check.integer(check.get(e, "points", f"scenes.{s}"), f"scenes.{s}.points")
                    for s, e in raw_scenes.items()}
    seed = document.get("seed")
    header = Header(
        kind=kind, dataset=str(check.get(meta, "name", "dataset")), class_names=tuple(names),
        scene_points=scene_points, seed=None if seed is None else check.integer(seed, "seed"),
        options=dict(document.get("options") or {}), schema_version=version,
    )
    fingerprint = str(check.get(meta, "fingerprint", "dataset"))
    if fingerprint != header.fingerprint:
        raise check.fail("dataset.fingerprint", f"fingerprint {fingerprint[:12]}… does not match the file's own "
                                                f"scene list ({header.fingerprint[:12]}…); the file was edited")
    if isinstance(dataset, Dataset):
        _check_dataset(check, header, fingerprint, dataset)
    if kind == "sparse_points":
        return _parse_sparse(check, header, arrays or {})
    return _PARSERS[kind](check, header, document, raw_scenes)


def _parse_clicks(check: _Checker, header: Header, document: dict, scenes: dict) -> Clicks:
    out: dict[str, PointLabels] = {}
    for name, entry in scenes.items():
        where = f"scenes.{name}.clicks"
        rows = check.get(entry, "clicks", f"scenes.{name}")
        if not isinstance(rows, list):
            raise check.fail(where, f"expected a list of [point, class, instance], got {type(rows).__name__}")
        parsed = []
        for i, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != 3:
                raise check.fail(f"{where}[{i}]", f"expected [point, class, instance], got {row!r}")
            point, cls, inst = (check.integer(v, f"{where}[{i}]") for v in row)
            check.class_id(cls, f"{where}[{i}]")
            parsed.append((point, cls, inst))
        array = np.asarray(parsed, dtype=np.int64).reshape(-1, 3)
        check.point_ids(array[:, 0], header.scene_points[name], where)
        out[name] = PointLabels(point=array[:, 0].copy(), cls=array[:, 1].copy(), instance=array[:, 2].copy())
    return Clicks(header=header, scenes=out)


def _parse_sparse(check: _Checker, header: Header, arrays: dict[str, np.ndarray]) -> SparsePoints:
    for key in ("scene", "offsets", "point", "class"):
        if key not in arrays:
            raise check.fail("arrays", f"missing array {key!r}")
    names = [str(s) for s in arrays["scene"]]
    offsets = arrays["offsets"].astype(np.int64)
    point, cls = arrays["point"].astype(np.int64), arrays["class"].astype(np.int64)
    if names != list(header.scene_points):
        raise check.fail("scene", f"scene list {names[:5]}… differs from the header's scenes")
    if (offsets.shape != (len(names) + 1,) or offsets[0] != 0 or offsets[-1] != point.size
            or (np.diff(offsets) < 0).any()):
        raise check.fail("offsets", f"expected {len(names) + 1} non-decreasing offsets from 0 to {point.size}")
    if cls.shape != point.shape:
        raise check.fail("class", f"has {cls.size} rows but 'point' has {point.size}")
    bad = np.flatnonzero((cls < 0) | (cls >= check.num_classes))
    if bad.size:
        raise check.fail(f"class[{int(bad[0])}]", f"class {int(cls[bad[0]])} outside the class table "
                                                  f"(0..{check.num_classes - 1})")
    out: dict[str, PointLabels] = {}
    for s, name in enumerate(names):
        lo, hi = int(offsets[s]), int(offsets[s + 1])
        check.point_ids(point[lo:hi], header.scene_points[name], f"point (scene {name!r}) ")
        out[name] = PointLabels(point=point[lo:hi], cls=cls[lo:hi], instance=np.full(hi - lo, -1, np.int64))
    return SparsePoints(header=header, scenes=out)


def _parse_scene_tags(check: _Checker, header: Header, document: dict, scenes: dict) -> SceneTags:
    tags = {}
    for name, entry in scenes.items():
        where = f"scenes.{name}.classes"
        tags[name] = tuple(check.class_id(c, f"{where}[{i}]")
                           for i, c in enumerate(check.int_list(check.get(entry, "classes", f"scenes.{name}"), where)))
    removed = []
    for i, item in enumerate(document.get("removed") or []):
        scene = str(check.get(item, "scene", f"removed[{i}]"))
        if scene not in scenes:
            raise check.fail(f"removed[{i}].scene", f"scene {scene!r} is not in the file's scenes")
        removed.append((scene, check.class_id(check.integer(check.get(item, "class", f"removed[{i}]"),
                                                            f"removed[{i}].class"), f"removed[{i}].class")))
    return SceneTags(header=header, tags=tags, removed=tuple(removed))


def _parse_subcloud_tags(check: _Checker, header: Header, document: dict, scenes: dict) -> SubcloudTags:
    out: dict[str, tuple[Subcloud, ...]] = {}
    for name, entry in scenes.items():
        items = check.get(entry, "subclouds", f"scenes.{name}")
        if not isinstance(items, list):
            raise check.fail(f"scenes.{name}.subclouds", f"expected a list, got {type(items).__name__}")
        parsed = []
        for i, item in enumerate(items):
            where = f"scenes.{name}.subclouds[{i}]"
            centre = check.get(item, "centre", where)
            if not isinstance(centre, list) or len(centre) != 3:
                raise check.fail(f"{where}.centre", f"expected [x, y, z] in metres, got {centre!r}")
            radius = check.number(check.get(item, "radius_m", where), f"{where}.radius_m")
            if radius <= 0:
                raise check.fail(f"{where}.radius_m", f"radius {radius} must be > 0")
            classes = check.int_list(check.get(item, "classes", where), f"{where}.classes")
            parsed.append(Subcloud(
                centre=np.array([check.number(v, f"{where}.centre") for v in centre], dtype=np.float64),
                radius_m=radius, classes=tuple(check.class_id(c, f"{where}.classes") for c in classes),
                num_points=check.integer(item.get("points", 0), f"{where}.points"),
            ))
        out[name] = tuple(parsed)
    return SubcloudTags(header=header, scenes=out)


def _parse_labelled_scenes(check: _Checker, header: Header, document: dict, scenes: dict) -> LabelledScenes:
    labelled, unlabelled, cuts = [], [], {}
    for name, entry in scenes.items():
        status = check.get(entry, "status", f"scenes.{name}")
        if status == "labelled":
            labelled.append(name)
        elif status == "unlabelled":
            unlabelled.append(name)
        elif status == "cut":
            cut = check.get(entry, "cut", f"scenes.{name}")
            axis = check.integer(check.get(cut, "axis", f"scenes.{name}.cut"), f"scenes.{name}.cut.axis")
            if axis not in (0, 1, 2):
                raise check.fail(f"scenes.{name}.cut.axis", f"axis {axis} is not 0, 1 or 2")
            cuts[name] = Cut(axis=axis, below_m=check.number(check.get(cut, "below_m", f"scenes.{name}.cut"),
                                                             f"scenes.{name}.cut.below_m"))
        else:
            raise check.fail(f"scenes.{name}.status", f"status {status!r} is not labelled, unlabelled or cut")
    return LabelledScenes(header=header, labelled=tuple(labelled), unlabelled=tuple(unlabelled), cuts=cuts)


_PARSERS = {
    "clicks": _parse_clicks,
    "scene_tags": _parse_scene_tags,
    "subcloud_tags": _parse_subcloud_tags,
    "labelled_scenes": _parse_labelled_scenes,
}
