"""sensor_msgs/PointCloud2 payloads <-> numpy, without importing ROS.

A PointCloud2 is described here by plain values: fields as ``(name, offset, datatype, count)``
tuples (datatype codes of ``sensor_msgs/PointField``), the ``data`` bytes, ``point_step``,
``row_step``, ``width``, ``height`` and ``is_bigendian``.  Fields may come in any order, with
padding inside a point (``point_step`` larger than the fields) and at the end of each row
(``row_step`` larger than ``width * point_step``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from wsseg.core.cloud_io import PADDING_NAMES, PointCloudFile, cloud_from_fields, cloud_to_fields

INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64 = range(1, 9)
#: PointField datatype code -> numpy type code (without byte order)
DATATYPES: dict[int, str] = {INT8: "i1", UINT8: "u1", INT16: "i2", UINT16: "u2", INT32: "i4", UINT32: "u4",
                             FLOAT32: "f4", FLOAT64: "f8"}
_CODES = {code: datatype for datatype, code in DATATYPES.items()}


class FieldSpec(NamedTuple):
    """One ``sensor_msgs/PointField``."""

    name: str
    offset: int
    datatype: int
    count: int = 1


def field_bytes(spec: FieldSpec) -> tuple[int, int] | None:
    """Byte range ``[start, end)`` of a field inside a point, None for an unknown datatype or a bad count."""
    code = DATATYPES.get(spec.datatype)
    if code is None or spec.count < 1:
        return None
    return spec.offset, spec.offset + int(code[1]) * spec.count


def duplicate_names(fields: list[FieldSpec]) -> list[str]:
    """Field names declared more than once, in order of first appearance (padding fields ``_`` excepted)."""
    seen: set[str] = set()
    twice: list[str] = []
    for spec in fields:
        if spec.name in seen and spec.name not in twice and spec.name not in PADDING_NAMES:
            twice.append(spec.name)
        seen.add(spec.name)
    return twice


def overlapping_fields(wanted: list[FieldSpec], declared: list[FieldSpec]) -> tuple[FieldSpec, FieldSpec] | None:
    """The first pair (a field of ``wanted``, another declared field) whose bytes overlap, else None.

    E.g. ``x`` declared FLOAT64 at offset 0 over ``y`` FLOAT32 at offset 4: both cannot be meant.
    Fields with an unknown datatype are not sized and so not compared.
    """
    for a in wanted:
        span_a = field_bytes(a)
        if span_a is None:
            continue
        for b in declared:
            span_b = field_bytes(b)
            if b == a or span_b is None:
                continue
            if span_a[0] < span_b[1] and span_b[0] < span_a[1]:
                return a, b
    return None


def decode_fields(fields: list[FieldSpec] | list[tuple[str, int, int, int]], data: bytes | np.ndarray, *,
                  point_step: int, row_step: int, width: int, height: int, is_bigendian: bool = False,
                  where: str = "PointCloud2") -> dict[str, np.ndarray]:
    """Decode every field into (width*height,) or (width*height, count) arrays, native byte order, row-major.

    Raises ``ValueError`` naming ``where`` and the field for an unknown datatype, a bad count, a name given
    twice, fields that overlap or do not fit in ``point_step``, and for too little data.
    """
    specs = [FieldSpec(*f) for f in fields]
    n = width * height
    if point_step <= 0 and n:
        raise ValueError(f"{where}: point_step is {point_step}")
    if row_step < width * point_step:
        raise ValueError(f"{where}: row_step {row_step} < width {width} x point_step {point_step}")
    order = ">" if is_bigendian else "<"
    names, formats, offsets = [], [], []
    for spec in specs:
        if spec.datatype not in DATATYPES:
            raise ValueError(f"{where}: field '{spec.name}' has unknown datatype {spec.datatype}")
        if spec.count < 1:
            raise ValueError(f"{where}: field '{spec.name}' has count {spec.count}")
        if spec.name in names:
            raise ValueError(f"{where}: field '{spec.name}' appears twice")
        code = DATATYPES[spec.datatype]
        if spec.offset < 0 or spec.offset + int(code[1]) * spec.count > point_step:
            raise ValueError(f"{where}: field '{spec.name}' (offset {spec.offset}, {code} x {spec.count}) does not "
                             f"fit in point_step {point_step}")
        names.append(spec.name)
        formats.append((order + code, (spec.count,)) if spec.count > 1 else order + code)
        offsets.append(spec.offset)
    clash = overlapping_fields(specs, specs)
    if clash:
        raise ValueError(f"{where}: field '{clash[0].name}' (offset {clash[0].offset}) overlaps field "
                         f"'{clash[1].name}' (offset {clash[1].offset})")
    raw = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8).ravel()
    needed = (height - 1) * row_step + width * point_step if n else 0
    if raw.size < needed:
        raise ValueError(f"{where}: data has {raw.size} bytes, expected at least {needed} "
                         f"(height {height} x row_step {row_step})")
    if n == 0:
        return {spec.name: np.zeros((0, spec.count) if spec.count > 1 else 0, DATATYPES[spec.datatype])
                for spec in specs}
    if row_step == width * point_step:
        packed = raw[:n * point_step]
    else:  # drop row padding
        rows = np.lib.stride_tricks.as_strided(raw, shape=(height, width * point_step), strides=(row_step, 1))
        packed = np.ascontiguousarray(rows).ravel()
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step})
    records = np.frombuffer(np.ascontiguousarray(packed).data, dtype=dtype, count=n)
    return {name: records[name].astype(records.dtype[name].base.newbyteorder("=")) for name in names}


def pointcloud2_to_cloud(fields: list[FieldSpec] | list[tuple[str, int, int, int]], data: bytes | np.ndarray, *,
                         point_step: int, row_step: int, width: int, height: int, is_bigendian: bool = False,
                         where: str = "PointCloud2") -> PointCloudFile:
    """Decode a PointCloud2 payload into a ``PointCloudFile`` (x, y, z, rgb/rgba, intensity, label, ...).

    Padding fields (``_``) are skipped; a name declared twice is an error.
    """
    specs = [FieldSpec(*f) for f in fields]
    twice = duplicate_names(specs)
    if twice:
        raise ValueError(f"{where}: field(s) {twice} declared more than once")
    fields = [spec for spec in specs if spec.name not in PADDING_NAMES]
    arrays = decode_fields(fields, data, point_step=point_step, row_step=row_step, width=width, height=height,
                           is_bigendian=is_bigendian, where=where)
    return cloud_from_fields(arrays, width, height, where)


def encode_fields(arrays: dict[str, np.ndarray], align: int = 1) -> tuple[list[FieldSpec], bytes, int]:
    """Pack named per-point arrays ((N,) or (N, count)) little-endian, in the given order, fields unpadded and
    ``point_step`` rounded up to a multiple of ``align`` bytes (zero padding at the end of each point).

    Returns ``(fields, data, point_step)``; ``row_step = width * point_step`` for the caller's layout.
    """
    specs, columns = [], []
    offset = 0
    n = None
    for name, values in arrays.items():
        values = np.asarray(values)
        n = values.shape[0] if n is None else n
        if values.shape[0] != n:
            raise ValueError(f"field '{name}' has {values.shape[0]} rows, expected {n}")
        code = values.dtype.str[1:]
        if code not in _CODES or values.ndim > 2:
            raise ValueError(f"field '{name}' has dtype {values.dtype} / shape {values.shape}, which PointCloud2 "
                             "cannot carry")
        count = values.shape[1] if values.ndim == 2 else 1
        specs.append(FieldSpec(name, offset, _CODES[code], count))
        columns.append(values)
        offset += int(code[1]) * count
    dtype = np.dtype({"names": [s.name for s in specs],
                      "formats": [("<" + DATATYPES[s.datatype], (s.count,)) if s.count > 1 else "<" + DATATYPES[
                          s.datatype] for s in specs],
                      "offsets": [s.offset for s in specs], "itemsize": -(-offset // align) * align})
    records = np.zeros(n or 0, dtype=dtype)
    for spec, values in zip(specs, columns, strict=True):
        records[spec.name] = values
    return specs, records.tobytes(), dtype.itemsize


def cloud_to_pointcloud2(cloud: PointCloudFile) -> tuple[list[FieldSpec], bytes, int]:
    """Fields, data and point_step for ``cloud`` (colour as packed ``rgb`` float32, the ROS convention)."""
    arrays = cloud_to_fields(cloud, packed_rgb=True)
    if "rgb" in arrays:
        arrays["rgb"] = arrays["rgb"].view(np.float32)
    return encode_fields(arrays)
