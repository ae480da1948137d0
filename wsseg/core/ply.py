"""PLY point clouds (ascii, binary_little_endian, binary_big_endian): the ``vertex`` element in and out.

Other elements (e.g. a mesh's ``face`` list) are skipped when they follow the vertices, or
precede them with fixed-size properties; a list element before ``vertex`` in a binary file
is refused with a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wsseg.core.atomic import atomic_path
from wsseg.core.cloud_io import CloudFileError, PointCloudFile, cloud_from_fields, cloud_to_fields

#: PLY scalar type name -> numpy type code (without byte order)
PLY_TYPES: dict[str, str] = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_WRITE_NAMES = {"i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort", "i4": "int", "u4": "uint",
                "f4": "float", "f8": "double"}
_FORMATS = {"ascii": "", "binary_little_endian": "<", "binary_big_endian": ">"}


@dataclass
class _Element:
    name: str
    count: int
    properties: list[tuple[str, str]] = field(default_factory=list)  # (name, type code)
    has_list: bool = False


def _parse_header(path: Path, data: bytes) -> tuple[str, list[_Element], int]:
    """Returns (format, elements, byte offset of the body)."""
    if not data.startswith(b"ply"):
        raise CloudFileError(f"{path}: not a PLY file (does not start with 'ply')")
    end = data.find(b"end_header")
    if end < 0:
        raise CloudFileError(f"{path}: PLY header has no 'end_header' line (truncated file?)")
    body = data.find(b"\n", end) + 1
    if body == 0:
        raise CloudFileError(f"{path}: PLY header is not terminated by a newline after 'end_header'")
    fmt = None
    elements: list[_Element] = []
    lines = data[:end].decode("ascii", errors="replace").splitlines()
    for number, line in enumerate(lines[1:], start=2):
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        where = f"{path}: header line {number} ({line.strip()!r})"
        if words[0] == "format":
            if len(words) < 2 or words[1] not in _FORMATS:
                raise CloudFileError(f"{where}: unsupported format, expected one of {list(_FORMATS)}")
            fmt = words[1]
        elif words[0] == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise CloudFileError(f"{where}: expected 'element <name> <count>'")
            elements.append(_Element(words[1], int(words[2])))
        elif words[0] == "property":
            if not elements:
                raise CloudFileError(f"{where}: property before any element")
            if len(words) == 5 and words[1] == "list":
                if words[2] not in PLY_TYPES or words[3] not in PLY_TYPES:
                    raise CloudFileError(f"{where}: unknown list type")
                elements[-1].has_list = True
                continue
            if len(words) != 3 or words[1] not in PLY_TYPES:
                raise CloudFileError(f"{where}: expected 'property <type> <name>' with type in {sorted(PLY_TYPES)}")
            elements[-1].properties.append((words[2], PLY_TYPES[words[1]]))
        else:
            raise CloudFileError(f"{where}: unknown header keyword {words[0]!r}")
    if fmt is None:
        raise CloudFileError(f"{path}: PLY header has no 'format' line")
    return fmt, elements, body


def read_ply(path: str | Path) -> PointCloudFile:
    """Read the vertices of a PLY file (any property order; see ``cloud_io`` for recognised names)."""
    path = Path(path)
    data = path.read_bytes()
    fmt, elements, offset = _parse_header(path, data)
    vertex = next((e for e in elements if e.name == "vertex"), None)
    if vertex is None:
        raise CloudFileError(f"{path}: PLY file has no 'vertex' element")
    if vertex.has_list:
        raise CloudFileError(f"{path}: element 'vertex' has a list property, which is not supported")
    names = [name for name, _ in vertex.properties]
    if len(set(names)) != len(names):
        raise CloudFileError(f"{path}: element 'vertex' has duplicate property names {names}")
    if fmt == "ascii":
        arrays = _read_ascii(path, data, offset, elements, vertex)
    else:
        arrays = _read_binary(path, data, offset, elements, vertex, _FORMATS[fmt])
    return cloud_from_fields(arrays, vertex.count, 1, str(path))


def _read_binary(path: Path, data: bytes, offset: int, elements: list[_Element], vertex: _Element,
                 order: str) -> dict[str, np.ndarray]:
    for element in elements:
        if element is vertex:
            break
        if element.has_list:
            raise CloudFileError(f"{path}: element '{element.name}' with a list property precedes 'vertex' in a "
                                 "binary PLY, which is not supported")
        offset += element.count * sum(int(code[1]) for _, code in element.properties)
    dtype = np.dtype([(name, order + code) for name, code in vertex.properties])
    needed = vertex.count * dtype.itemsize
    if offset + needed > len(data):
        raise CloudFileError(f"{path}: truncated: element 'vertex' needs {needed} bytes "
                             f"({vertex.count} x {dtype.itemsize}), file has {len(data) - offset} after the header")
    after = elements[elements.index(vertex) + 1:]
    if not any(e.has_list for e in after):  # list elements cannot be sized without parsing them
        expected = sum(e.count * sum(int(code[1]) for _, code in e.properties) for e in after)
        extra = len(data) - offset - needed - expected
        if extra:
            raise CloudFileError(f"{path}: header and data disagree: element 'vertex' {vertex.count} x "
                                 f"{dtype.itemsize} bytes{_declared(after)} leaves {extra:+d} bytes at the end of "
                                 "the file")
    records = np.frombuffer(data, dtype=dtype, count=vertex.count, offset=offset)
    return {name: records[name].astype(records.dtype[name].newbyteorder("=")) for name in dtype.names or ()}


def _declared(elements: list[_Element]) -> str:
    return "".join(f", then element '{e.name}' {e.count}" for e in elements)


def _read_ascii(path: Path, data: bytes, offset: int, elements: list[_Element],
                vertex: _Element) -> dict[str, np.ndarray]:
    skip = 0
    for element in elements:
        if element is vertex:
            break
        skip += element.count
    lines = data[offset:].split(b"\n", skip + vertex.count)
    rows = lines[skip:skip + vertex.count]
    if len(rows) < vertex.count or (rows and not rows[-1].strip()):
        raise CloudFileError(f"{path}: truncated: expected {vertex.count} vertex lines, found fewer")
    after = elements[elements.index(vertex) + 1:]
    rest = lines[skip + vertex.count] if len(lines) > skip + vertex.count else b""
    found, expected = sum(1 for line in rest.split(b"\n") if line.strip()), sum(e.count for e in after)
    if found > expected:
        raise CloudFileError(f"{path}: header and data disagree: {found - expected} line(s) after the declared "
                             f"elements (element 'vertex' {vertex.count}{_declared(after)})")
    if found < expected:
        raise CloudFileError(f"{path}: truncated: {found} line(s) after the vertices, the header declares "
                             f"{expected}{_declared(after)}")
    width = len(vertex.properties)
    tokens = b" ".join(rows).split()
    if len(tokens) != vertex.count * width:
        bad = next((i for i, row in enumerate(rows) if len(row.split()) != width), 0)
        raise CloudFileError(f"{path}: vertex line {bad + 1} has {len(rows[bad].split())} values, expected {width}")
    try:
        table = np.array(tokens).astype(np.float64).reshape(vertex.count, width)
    except ValueError as exc:
        raise CloudFileError(f"{path}: non-numeric vertex value ({exc})") from None
    return {name: table[:, i].astype(code) for i, (name, code) in enumerate(vertex.properties)}


def write_ply(path: str | Path, cloud: PointCloudFile, binary: bool = True) -> Path:
    """Write ``cloud`` as a PLY ``vertex`` element (colour as ``red green blue`` uchar); returns ``path``."""
    path = Path(path)
    try:
        arrays = cloud_to_fields(cloud, packed_rgb=False)
    except ValueError as exc:
        raise CloudFileError(f"{path}: {exc}") from None
    props: list[tuple[str, str]] = []
    for name, values in arrays.items():
        if values.ndim != 1:
            raise CloudFileError(f"{path}: field '{name}' has shape {values.shape}; PLY properties are scalars")
        code = values.dtype.str[1:]
        if code not in _WRITE_NAMES:
            raise CloudFileError(f"{path}: field '{name}' has dtype {values.dtype}, which PLY cannot store")
        props.append((name, code))
    header = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0", "comment written by wsseg",
              f"element vertex {cloud.num_points}"]
    header += [f"property {_WRITE_NAMES[code]} {name}" for name, code in props]
    header.append("end_header")
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(("\n".join(header) + "\n").encode("ascii"))
        if binary:
            records = np.empty(cloud.num_points, dtype=[(name, "<" + code) for name, code in props])
            for name, _ in props:
                records[name] = arrays[name]
            fh.write(records.tobytes())
        else:
            _write_ascii_rows(fh, [arrays[name] for name, _ in props])
    return path


def _write_ascii_rows(fh, columns: list[np.ndarray]) -> None:  # type: ignore[no-untyped-def]
    """One line per point; floats with enough digits to round-trip, integers exactly."""
    fmts = ["%d" if np.issubdtype(c.dtype, np.integer) else ("%.9g" if c.dtype == np.float32 else "%.17g")
            for c in columns]
    table = np.stack([c.astype(np.float64) for c in columns], axis=1) if columns else np.empty((0, 0))
    np.savetxt(fh, table, fmt=fmts, delimiter=" ")
