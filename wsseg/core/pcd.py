"""PCD v0.7 point clouds (PCL): ``ascii``, ``binary`` and ``binary_compressed`` (LZF) data, in and out.

Layouts: ``binary`` stores one packed record per point (fields in header order);
``binary_compressed`` stores ``uint32 compressed_size, uint32 uncompressed_size`` and then an LZF
block whose content is field-major (all values of the first field, then the second, ...).
Organized clouds keep ``WIDTH`` x ``HEIGHT`` (row-major) and their NaN points.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsseg.core.atomic import atomic_path
from wsseg.core.cloud_io import CloudFileError, PointCloudFile, cloud_from_fields, cloud_to_fields
from wsseg.core.lzf import LZFError, lzf_compress, lzf_decompress

DATA_KINDS = ("ascii", "binary", "binary_compressed")
_TYPES = {("I", 1): "i1", ("U", 1): "u1", ("I", 2): "i2", ("U", 2): "u2", ("I", 4): "i4", ("U", 4): "u4",
          ("I", 8): "i8", ("U", 8): "u8", ("F", 4): "f4", ("F", 8): "f8"}
_HEADER_KEYS = ("VERSION", "FIELDS", "SIZE", "TYPE", "COUNT", "WIDTH", "HEIGHT", "VIEWPOINT", "POINTS", "DATA")


@dataclass
class _Header:
    names: list[str]
    codes: list[str]  # numpy type codes, e.g. "f4"
    counts: list[int]
    width: int
    height: int
    points: int
    data: str
    body_offset: int


def _parse_header(path: Path, raw: bytes) -> _Header:
    values: dict[str, tuple[int, list[str]]] = {}
    pos = 0
    number = 0
    while "DATA" not in values:
        end = raw.find(b"\n", pos)
        if end < 0:
            raise CloudFileError(f"{path}: PCD header ends before its DATA line (truncated or not a PCD file)")
        number += 1
        line = raw[pos:end].decode("ascii", errors="replace").strip()
        pos = end + 1
        if not line or line.startswith("#"):
            continue
        words = line.split()
        key = words[0].upper()
        if key not in _HEADER_KEYS:
            raise CloudFileError(f"{path}: header line {number}: unknown PCD keyword {words[0]!r}")
        values[key] = (number, words[1:])
    for key in ("FIELDS", "SIZE", "TYPE", "WIDTH", "POINTS"):
        if key not in values:
            raise CloudFileError(f"{path}: PCD header has no {key} line")
    names = values["FIELDS"][1]
    n_fields = len(names)

    def ints(key: str, default: list[int] | None = None) -> list[int]:
        if key not in values and default is not None:
            return default
        line, words = values[key]
        try:
            out = [int(w) for w in words]
        except ValueError:
            raise CloudFileError(f"{path}: header line {line} ({key}): non-integer value in {words}") from None
        return out

    sizes, counts = ints("SIZE"), ints("COUNT", [1] * n_fields)
    types = [t.upper() for t in values["TYPE"][1]]
    for key, seq in (("SIZE", sizes), ("TYPE", types), ("COUNT", counts)):
        if len(seq) != n_fields:
            raise CloudFileError(f"{path}: header line {values[key][0]} ({key}): {len(seq)} values but "
                                 f"FIELDS names {n_fields}")
    codes = []
    for name, typ, size, count in zip(names, types, sizes, counts, strict=True):
        if (typ, size) not in _TYPES:
            raise CloudFileError(f"{path}: header line {values['TYPE'][0]}: field '{name}' has unsupported "
                                 f"TYPE {typ} SIZE {size}")
        if count < 1:
            raise CloudFileError(f"{path}: header line {values['COUNT'][0]}: field '{name}' has COUNT {count}")
        codes.append(_TYPES[(typ, size)])
    width, points, height = (next(iter(ints(key, [1])), -1) for key in ("WIDTH", "POINTS", "HEIGHT"))
    if min(width, points, height) < 0:
        raise CloudFileError(f"{path}: WIDTH, HEIGHT and POINTS must be non-negative integers")
    if width * height != points:
        raise CloudFileError(f"{path}: header says WIDTH {width} x HEIGHT {height} but POINTS {points}")
    data_line, data_words = values["DATA"]
    kind = data_words[0].lower() if data_words else ""
    if kind not in DATA_KINDS:
        raise CloudFileError(f"{path}: header line {data_line}: unsupported DATA {kind!r}, "
                             f"expected one of {DATA_KINDS}")
    return _Header(names, codes, counts, width, height, points, kind, pos)


def _unique_names(path: Path, names: list[str]) -> list[str]:
    """Padding fields are all called ``_``: give each a distinct key; any other name given twice is an error
    (which of the two would be meant?)."""
    out = []
    for i, name in enumerate(names):
        if name != "_" and name in out:
            raise CloudFileError(f"{path}: FIELDS: field '{name}' appears twice ({names})")
        out.append(f"_pad{i}" if name == "_" else name)
    return out


def read_pcd(path: str | Path) -> PointCloudFile:
    """Read a PCD file (see module docstring); organized layout and NaN points are kept."""
    path = Path(path)
    raw = path.read_bytes()
    h = _parse_header(path, raw)
    keys = _unique_names(path, h.names)
    n = h.points
    arrays: dict[str, np.ndarray] = {}
    if h.data == "ascii":
        total = sum(h.counts)
        tokens = raw[h.body_offset:].split()
        if len(tokens) != n * total:
            line = len(tokens) // total + 1 if total else 0
            what = "short or malformed near point" if len(tokens) < n * total else "more data than POINTS; point"
            raise CloudFileError(f"{path}: ascii data has {len(tokens)} values, expected {n} points x {total} "
                                 f"(header POINTS {n}; {what} {line})")
        try:
            table = np.array(tokens).astype(np.float64).reshape(n, total)
        except ValueError as exc:
            raise CloudFileError(f"{path}: non-numeric ascii value ({exc})") from None
        col = 0
        for key, code, count in zip(keys, h.codes, h.counts, strict=True):
            arrays[key] = _column(table[:, col:col + count], code)
            col += count
    elif h.data == "binary":
        dtype = np.dtype([(key, "<" + code, (count,) if count > 1 else ())
                          for key, code, count in zip(keys, h.codes, h.counts, strict=True)])
        needed = n * dtype.itemsize
        if len(raw) - h.body_offset < needed:
            raise CloudFileError(f"{path}: truncated: binary data needs {needed} bytes (POINTS {n} x "
                                 f"{dtype.itemsize}), file has {len(raw) - h.body_offset}")
        if len(raw) - h.body_offset > needed:
            raise CloudFileError(f"{path}: binary data has {len(raw) - h.body_offset} bytes, but the header "
                                 f"(POINTS {n} x {dtype.itemsize} bytes) describes {needed}: header and data disagree")
        records = np.frombuffer(raw, dtype=dtype, count=n, offset=h.body_offset)
        arrays = {key: np.ascontiguousarray(records[key]) for key in keys}
    else:
        arrays = _read_compressed(path, raw, h, keys)
    return cloud_from_fields(arrays, h.width, h.height, str(path))


def _column(values: np.ndarray, code: str) -> np.ndarray:
    """values: (N, count) float64 parsed text -> (N,) or (N, count) of the field type."""
    out = values.astype(code)
    return out[:, 0] if out.shape[1] == 1 else out


def _read_compressed(path: Path, raw: bytes, h: _Header, keys: list[str]) -> dict[str, np.ndarray]:
    start = h.body_offset
    if len(raw) < start + 8:
        raise CloudFileError(f"{path}: truncated: binary_compressed data has no size words")
    compressed_size, size = (int(v) for v in np.frombuffer(raw, "<u4", count=2, offset=start))
    sizes = [h.points * int(code[1]) * count for code, count in zip(h.codes, h.counts, strict=True)]
    if size != sum(sizes):
        raise CloudFileError(f"{path}: binary_compressed uncompressed size {size} != {sum(sizes)} expected from "
                             f"the header (POINTS {h.points}, fields {h.names})")
    if len(raw) < start + 8 + compressed_size:
        raise CloudFileError(f"{path}: truncated: compressed block of {compressed_size} bytes, file has "
                             f"{len(raw) - start - 8}")
    try:
        body = lzf_decompress(memoryview(raw)[start + 8:start + 8 + compressed_size], size)
    except LZFError as exc:
        raise CloudFileError(f"{path}: corrupt binary_compressed data: {exc}") from None
    arrays = {}
    offset = 0
    for key, code, count, nbytes in zip(keys, h.codes, h.counts, sizes, strict=True):
        values = np.frombuffer(body, dtype="<" + code, count=h.points * count, offset=offset)
        arrays[key] = values.reshape(h.points, count) if count > 1 else values
        offset += nbytes
    return arrays


def write_pcd(path: str | Path, cloud: PointCloudFile, data: str = "binary") -> Path:
    """Write ``cloud`` as PCD v0.7 with ``data`` in ``DATA_KINDS``; colour as packed ``rgb`` U4, layout kept."""
    path = Path(path)
    if data not in DATA_KINDS:
        raise CloudFileError(f"{path}: unsupported DATA {data!r}, expected one of {DATA_KINDS}")
    try:
        arrays = cloud_to_fields(cloud, packed_rgb=True)
    except ValueError as exc:
        raise CloudFileError(f"{path}: {exc}") from None
    n = cloud.num_points
    width, height = (cloud.width, cloud.height) if cloud.width * cloud.height == n else (n, 1)
    names, sizes, types, counts = [], [], [], []
    for name, values in arrays.items():
        code = values.dtype.str[1:]
        kind = {"i": "I", "u": "U", "f": "F"}.get(code[0])
        if kind is None or (kind, int(code[1:])) not in _TYPES or values.ndim > 2:
            raise CloudFileError(f"{path}: field '{name}' has dtype {values.dtype} / shape {values.shape}, "
                                 "which PCD cannot store")
        names.append(name)
        sizes.append(code[1:])
        types.append(kind)
        counts.append(str(values.shape[1] if values.ndim == 2 else 1))
    header = ["# .PCD v0.7 - Point Cloud Data file format (written by wsseg)", "VERSION 0.7",
              "FIELDS " + " ".join(names), "SIZE " + " ".join(sizes), "TYPE " + " ".join(types),
              "COUNT " + " ".join(counts), f"WIDTH {width}", f"HEIGHT {height}", "VIEWPOINT 0 0 0 1 0 0 0",
              f"POINTS {n}", f"DATA {data}"]
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(("\n".join(header) + "\n").encode("ascii"))
        columns = [arrays[name].reshape(n, -1) for name in names]
        if data == "ascii":
            fmts = []
            for column in columns:
                fmt = "%d" if np.issubdtype(column.dtype, np.integer) else (
                    "%.9g" if column.dtype == np.float32 else "%.17g")
                fmts += [fmt] * column.shape[1]
            table = np.concatenate([c.astype(np.float64) for c in columns], axis=1)
            np.savetxt(fh, table, fmt=fmts, delimiter=" ")
        elif data == "binary":
            dtype = np.dtype([(f"f{i}", "<" + c.dtype.str[1:], (c.shape[1],) if c.shape[1] > 1 else ())
                              for i, c in enumerate(columns)])
            records = np.empty(n, dtype=dtype)
            for i, column in enumerate(columns):
                records[f"f{i}"] = column if column.shape[1] > 1 else column[:, 0]
            fh.write(records.tobytes())
        else:
            body = b"".join(np.ascontiguousarray(c.astype(c.dtype.newbyteorder("<"))).tobytes() for c in columns)
            packed = lzf_compress(body)
            fh.write(np.asarray([len(packed), len(body)], dtype="<u4").tobytes())
            fh.write(packed)
    return path
