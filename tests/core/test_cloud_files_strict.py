"""Cloud files whose header and data disagree are errors, not silently truncated (issue 21, defect 8)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from wsseg.core.cloud_io import CloudFileError, PointCloudFile, read_cloud
from wsseg.core.pcd import write_pcd
from wsseg.core.ply import write_ply


def cloud(n: int = 20) -> PointCloudFile:
    rng = np.random.default_rng(n)
    return PointCloudFile(xyz=rng.normal(size=(n, 3)).astype(np.float32),
                          rgb=rng.integers(0, 256, (n, 3), dtype=np.uint8))


def shrink_header(path: Path, old: bytes, new: bytes) -> None:
    raw = path.read_bytes()
    end = raw.index(b"DATA") if path.suffix == ".pcd" else raw.index(b"end_header")
    header = raw[:end].replace(old, new)
    assert header != raw[:end]
    path.write_bytes(header + raw[end:])


@pytest.mark.parametrize("data", ["ascii", "binary", "binary_compressed"])
def test_pcd_with_fewer_points_in_the_header_than_in_the_data(tmp_path: Path, data: str) -> None:
    path = write_pcd(tmp_path / "c.pcd", cloud(20), data=data)
    assert read_cloud(path).num_points == 20
    shrink_header(path, b"WIDTH 20\n", b"WIDTH 15\n")
    shrink_header(path, b"POINTS 20\n", b"POINTS 15\n")
    with pytest.raises(CloudFileError, match="POINTS 15") as info:
        read_cloud(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("binary", [True, False])
def test_ply_with_fewer_vertices_in_the_header_than_in_the_data(tmp_path: Path, binary: bool) -> None:
    path = write_ply(tmp_path / "c.ply", cloud(20), binary=binary)
    assert read_cloud(path).num_points == 20
    shrink_header(path, b"element vertex 20\n", b"element vertex 12\n")
    with pytest.raises(CloudFileError, match=r"element 'vertex' .*12") as info:
        read_cloud(path)
    assert str(path) in str(info.value)


def test_ply_faces_after_the_vertices_are_still_fine(tmp_path: Path) -> None:
    text = ("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
            "element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    (tmp_path / "m.ply").write_text(text)
    assert read_cloud(tmp_path / "m.ply").num_points == 3
    (tmp_path / "extra.ply").write_text(text + "3 0 2 1\n")  # a second face the header does not declare
    with pytest.raises(CloudFileError, match=re.escape("1 line(s) after the declared elements")):
        read_cloud(tmp_path / "extra.ply")


def test_pcd_field_named_twice_is_refused(tmp_path: Path) -> None:
    path = write_pcd(tmp_path / "c.pcd", cloud(5), data="ascii")
    shrink_header(path, b"FIELDS x y z rgb", b"FIELDS x y x rgb")
    with pytest.raises(CloudFileError, match="field 'x' appears twice"):
        read_cloud(path)
