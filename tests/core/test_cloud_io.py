"""PLY / PCD / NPZ reading and writing: hand-made byte layouts, round trips, Open3D cross-checks, bad files."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from wsseg.core.cloud_io import CloudFileError, PointCloudFile, pack_rgb, read_cloud, write_cloud
from wsseg.core.lzf import LZFError, lzf_compress, lzf_decompress
from wsseg.core.pcd import write_pcd
from wsseg.core.ply import write_ply
from wsseg.core.scene import Scene, save_scene

MOSD = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mosd" / "learn"


def sample_cloud(n: int = 50, seed: int = 0) -> PointCloudFile:
    rng = np.random.default_rng(seed)
    return PointCloudFile(
        xyz=rng.normal(size=(n, 3)).astype(np.float32),
        rgb=rng.integers(0, 256, size=(n, 3), dtype=np.uint8),
        intensity=rng.random(n).astype(np.float32),
        label=rng.integers(0, 20, size=n).astype(np.uint16),
        fields={"confidence": rng.random(n).astype(np.float32)},
    )


def assert_same(a: PointCloudFile, b: PointCloudFile) -> None:
    np.testing.assert_array_equal(a.xyz, b.xyz)
    np.testing.assert_array_equal(a.rgb, b.rgb)
    np.testing.assert_array_equal(a.intensity, b.intensity)
    np.testing.assert_array_equal(a.label, b.label)
    assert b.label is not None and b.label.dtype == np.uint16
    np.testing.assert_array_equal(a.fields["confidence"], b.fields["confidence"])
    assert b.fields["confidence"].dtype == np.float32


# --------------------------------------------------------------------------- LZF


def test_lzf_round_trip_and_overlapping_reference() -> None:
    rng = np.random.default_rng(1)
    data = rng.integers(0, 4, 5000, dtype=np.uint8).tobytes() + b"\x00" * 3000 + bytes(range(256)) * 8
    packed = lzf_compress(data)
    assert len(packed) < len(data) // 2
    assert lzf_decompress(packed, len(data)) == data
    # hand-made: literal "ab", then a reference of length 6 at distance 1 (repeats "b"), then of length 4 at 8
    stream = bytes([1]) + b"ab" + bytes([(4 << 5) | 0, 0]) + bytes([(2 << 5) | 0, 7])
    assert lzf_decompress(stream, 12) == b"abbbbbbbabbb"


def test_lzf_rejects_corrupt_streams() -> None:
    with pytest.raises(LZFError, match="before the start"):
        lzf_decompress(bytes([0]) + b"a" + bytes([(1 << 5), 5]), 4)
    with pytest.raises(LZFError, match="past the end"):
        lzf_decompress(bytes([9]) + b"abc", 10)
    with pytest.raises(LZFError, match="announces 5"):
        lzf_decompress(bytes([2]) + b"abc", 5)


# --------------------------------------------------------------------------- PLY


@pytest.mark.parametrize("binary", [True, False])
def test_ply_round_trip(tmp_path: Path, binary: bool) -> None:
    cloud = sample_cloud()
    path = write_ply(tmp_path / "c.ply", cloud, binary=binary)
    back = read_cloud(path)
    assert_same(cloud, back)
    assert (back.width, back.height) == (50, 1)


def test_ply_big_endian_any_order_with_faces(tmp_path: Path) -> None:
    """A big-endian mesh: properties in an unusual order and types, a face list after the vertices."""
    header = (b"ply\nformat binary_big_endian 1.0\ncomment odd layout\nelement vertex 2\n"
              b"property ushort label\nproperty double z\nproperty float x\nproperty float y\n"
              b"property uchar r\nproperty uchar g\nproperty uchar b\nproperty float scalar_intensity\n"
              b"property int instance\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n")
    rows = [(7, 3.5, 1.0, 2.0, 10, 20, 30, 0.25, 4), (65535, -1.0, 0.5, -0.5, 255, 0, 1, 1.5, -1)]
    body = b"".join(struct.pack(">Hdffbbbfi", *r[:4], *[v - 256 if v > 127 else v for v in r[4:7]], *r[7:])
                    for r in rows)
    body += struct.pack(">Biii", 3, 0, 1, 1)
    (tmp_path / "m.ply").write_bytes(header + body)
    cloud = read_cloud(tmp_path / "m.ply")
    np.testing.assert_array_equal(cloud.xyz, [[1.0, 2.0, 3.5], [0.5, -0.5, -1.0]])
    np.testing.assert_array_equal(cloud.rgb, [[10, 20, 30], [255, 0, 1]])
    np.testing.assert_array_equal(cloud.intensity, [0.25, 1.5])
    np.testing.assert_array_equal(cloud.label, [7, 65535])
    np.testing.assert_array_equal(cloud.instance, [4, -1])


def test_ply_ascii_with_comments_and_faces(tmp_path: Path) -> None:
    text = ("ply\nformat ascii 1.0\ncomment made by hand\nelement vertex 3\nproperty float x\nproperty float y\n"
            "property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nproperty int class\n"
            "element face 1\nproperty list uchar int vertex_indices\nend_header\n"
            "0 0 0 255 0 0 2\n1.5 0 0 0 255 0 3\n0 2.25 -1 0 0 255 2\n3 0 1 2\n")
    (tmp_path / "a.ply").write_text(text)
    cloud = read_cloud(tmp_path / "a.ply")
    np.testing.assert_array_equal(cloud.xyz[:, 0], [0, 1.5, 0])
    np.testing.assert_array_equal(cloud.xyz[2], [0, 2.25, -1])
    np.testing.assert_array_equal(cloud.label, [2, 3, 2])
    np.testing.assert_array_equal(cloud.rgb[1], [0, 255, 0])


def test_ply_interoperates_with_open3d(tmp_path: Path) -> None:
    o3d = pytest.importorskip("open3d")
    cloud = sample_cloud(30)
    write_ply(tmp_path / "ours.ply", cloud)
    theirs = o3d.io.read_point_cloud(str(tmp_path / "ours.ply"))
    np.testing.assert_allclose(np.asarray(theirs.points), cloud.xyz, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(theirs.colors) * 255, cloud.rgb, atol=0.5)
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud.xyz.astype(np.float64)))
    pcd.colors = o3d.utility.Vector3dVector(cloud.rgb / 255.0)
    o3d.io.write_point_cloud(str(tmp_path / "o3d.ply"), pcd, write_ascii=True)
    back = read_cloud(tmp_path / "o3d.ply")
    np.testing.assert_allclose(back.xyz, cloud.xyz, atol=1e-5)  # Open3D's ascii keeps 6 decimals
    np.testing.assert_array_equal(back.rgb, cloud.rgb)


@pytest.mark.parametrize(("content", "match"), [
    (b"plx\nformat ascii 1.0\n", "does not start with 'ply'"),
    (b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\n", "no 'end_header'"),
    (b"ply\nformat binary_middle_endian 1.0\nend_header\n", "header line 2.*unsupported format"),
    (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float128 x\nend_header\n", "header line 4"),
    (b"ply\nformat ascii 1.0\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n3 0 1 2\n",
     "no 'vertex' element"),
    (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nend_header\n1 2\n",
     "'x', 'y', 'z'"),
    (b"ply\nformat binary_little_endian 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
     b"property float z\nend_header\n" + b"\x00" * 30, "truncated.*48 bytes"),
    (b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
     b"end_header\n1 2 3\n4 5 6\n", "truncated"),
    (b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\n"
     b"end_header\n1 2 3\n4 5\n", "vertex line 2 has 2 values"),
])
def test_ply_errors_name_the_problem(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "bad.ply"
    path.write_bytes(content)
    with pytest.raises(CloudFileError, match=match) as info:
        read_cloud(path)
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------- PCD


@pytest.mark.parametrize("data", ["ascii", "binary", "binary_compressed"])
def test_pcd_round_trip(tmp_path: Path, data: str) -> None:
    cloud = sample_cloud()
    path = write_pcd(tmp_path / "c.pcd", cloud, data=data)
    assert f"DATA {data}" in path.read_bytes()[:400].decode("ascii", "replace")
    assert_same(cloud, read_cloud(path))


def test_pcd_organized_nan_layout_is_kept(tmp_path: Path) -> None:
    xyz = np.arange(24, dtype=np.float32).reshape(8, 3)
    xyz[[1, 6]] = np.nan
    cloud = PointCloudFile(xyz=xyz, label=np.arange(8, dtype=np.uint32), width=4, height=2)
    for data in ("ascii", "binary", "binary_compressed"):
        back = read_cloud(write_pcd(tmp_path / f"o_{data}.pcd", cloud, data=data))
        assert (back.width, back.height, back.is_organized) == (4, 2, True)
        np.testing.assert_array_equal(back.valid_mask(), [True, False, True, True, True, True, False, True])
        np.testing.assert_array_equal(back.xyz, xyz)


def test_pcd_binary_with_padding_and_counts(tmp_path: Path) -> None:
    """PCL-style binary: padding fields '_', a COUNT 3 field, packed rgb as float, fields out of order."""
    header = (b"# .PCD v0.7\nVERSION 0.7\nFIELDS rgb _ z x y normal _ intensity\nSIZE 4 1 4 4 4 4 1 4\n"
              b"TYPE F U F F F F U F\nCOUNT 1 3 1 1 1 3 1 1\nWIDTH 2\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\n"
              b"POINTS 2\nDATA binary\n")
    rgb = np.array([[1, 2, 3], [200, 100, 50]], dtype=np.uint8)
    packed = pack_rgb(rgb).view(np.float32)
    body = b""
    for i in range(2):
        body += struct.pack("<f", packed[i]) + b"\xaa\xbb\xcc" + struct.pack("<fff", 3.0 + i, 1.0 + i, 2.0 + i)
        body += struct.pack("<fff", 0, 0, 1) + b"\xdd" + struct.pack("<f", 0.5 * i)
    (tmp_path / "p.pcd").write_bytes(header + body)
    cloud = read_cloud(tmp_path / "p.pcd")
    np.testing.assert_array_equal(cloud.xyz, [[1, 2, 3], [2, 3, 4]])
    np.testing.assert_array_equal(cloud.rgb, rgb)
    np.testing.assert_array_equal(cloud.intensity, [0, 0.5])
    assert cloud.fields["normal"].shape == (2, 3)
    assert not any(name.startswith("_") for name in cloud.fields)


def test_pcd_ascii_rgba_integer_and_label(tmp_path: Path) -> None:
    text = ("VERSION .7\nFIELDS label x y z rgba\nSIZE 4 4 4 4 4\nTYPE U F F F U\nCOUNT 1 1 1 1 1\nWIDTH 2\n"
            "HEIGHT 2\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 4\nDATA ascii\n"
            f"0 nan nan nan 0\n1 0.5 0.25 1 {0xFF102030}\n21 1 1 1 {0xFF0000FF}\n30 2 2 2 {0x00FFFFFF}\n")
    (tmp_path / "a.pcd").write_text(text)
    cloud = read_cloud(tmp_path / "a.pcd")
    assert (cloud.width, cloud.height) == (2, 2)
    np.testing.assert_array_equal(cloud.label, [0, 1, 21, 30])
    np.testing.assert_array_equal(cloud.rgb[1:], [[0x10, 0x20, 0x30], [0, 0, 255], [255, 255, 255]])
    assert np.isnan(cloud.xyz[0]).all()


def test_pcd_interoperates_with_open3d(tmp_path: Path) -> None:
    o3d = pytest.importorskip("open3d")
    cloud = sample_cloud(40)
    for data in ("ascii", "binary", "binary_compressed"):
        write_pcd(tmp_path / f"ours_{data}.pcd", cloud, data=data)
        theirs = o3d.io.read_point_cloud(str(tmp_path / f"ours_{data}.pcd"))
        np.testing.assert_allclose(np.asarray(theirs.points), cloud.xyz, atol=1e-6)
        np.testing.assert_allclose(np.asarray(theirs.colors) * 255, cloud.rgb, atol=0.5)
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud.xyz.astype(np.float64)))
    pcd.colors = o3d.utility.Vector3dVector(cloud.rgb / 255.0)
    o3d.io.write_point_cloud(str(tmp_path / "o3d.pcd"), pcd, compressed=True)  # Open3D's own LZF stream
    assert b"DATA binary_compressed" in (tmp_path / "o3d.pcd").read_bytes()[:400]
    back = read_cloud(tmp_path / "o3d.pcd")
    np.testing.assert_allclose(back.xyz, cloud.xyz, atol=1e-6)
    np.testing.assert_array_equal(back.rgb, cloud.rgb)


PCD_HEAD = "VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 2\nHEIGHT 1\nPOINTS 2\n"


@pytest.mark.parametrize(("content", "match"), [
    (PCD_HEAD.replace("SIZE 4 4 4", "SIZE 4 4") + "DATA ascii\n1 2 3\n4 5 6\n", "header line 3 \\(SIZE\\): 2 values"),
    (PCD_HEAD.replace("TYPE F F F", "TYPE F F Q") + "DATA ascii\n1 2 3\n4 5 6\n", "field 'z' has unsupported TYPE"),
    (PCD_HEAD.replace("POINTS 2", "POINTS 3") + "DATA ascii\n1 2 3\n4 5 6\n", "POINTS 3"),
    (PCD_HEAD + "DATA binary_lz4\n", "unsupported DATA 'binary_lz4'"),
    (PCD_HEAD + "DATA ascii\n1 2 3\n4 5\n", "5 values, expected 2 points x 3"),
    (PCD_HEAD + "DATA ascii\n1 2 3\n4 five 6\n", "non-numeric"),
    (PCD_HEAD + "DATA binary\n" + "\0" * 20, "truncated.*24 bytes"),
    (PCD_HEAD + "DATA binary_compressed\n\x05\0\0\0\x18\0\0\0\x00", "truncated: compressed block"),
    (PCD_HEAD + "DATA binary_compressed\n\x03\0\0\0\x18\0\0\0\x01ab", "corrupt binary_compressed"),
    (PCD_HEAD + "DATA binary_compressed\n\x03\0\0\0\x10\0\0\0\x01ab", "uncompressed size 16 != 24"),
    (PCD_HEAD, "before its DATA line"),
    ("VERSION 0.7\nFIELDS x y z\nBOGUS 1\n", "header line 3: unknown PCD keyword 'BOGUS'"),
])
def test_pcd_errors_name_the_problem(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "bad.pcd"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(CloudFileError, match=match) as info:
        read_cloud(path)
    assert str(path) in str(info.value)


def test_writers_refuse_what_they_cannot_store(tmp_path: Path) -> None:
    cloud = PointCloudFile(xyz=np.zeros((3, 3), np.float32), fields={"big": np.zeros(3, np.int64)})
    with pytest.raises(CloudFileError, match="field 'big' has dtype int64"):
        write_ply(tmp_path / "x.ply", cloud)
    bad_rows = PointCloudFile(xyz=np.zeros((3, 3), np.float32), label=np.zeros(2, np.uint16))
    with pytest.raises(CloudFileError, match="field 'label' has 2 rows"):
        write_pcd(tmp_path / "x.pcd", bad_rows)
    with pytest.raises(CloudFileError, match=r"suffix '\.xyz'"):
        write_cloud(tmp_path / "x.xyz", cloud)
    (tmp_path / "x.txt").write_text("1 2 3\n")
    with pytest.raises(CloudFileError, match=r"suffix '\.txt'"):
        read_cloud(tmp_path / "x.txt")


def test_npz_scene_record(tmp_path: Path) -> None:
    xyz = np.arange(12, dtype=np.float32).reshape(4, 3)
    save_scene(tmp_path / "s.npz", Scene(xyz=xyz, semantic=np.array([0, 1, -1, 2], np.int16),
                                          supervoxel=np.array([0, 0, 1, 1], np.int32)))
    cloud = read_cloud(tmp_path / "s.npz")
    np.testing.assert_array_equal(cloud.xyz, xyz)
    np.testing.assert_array_equal(cloud.label, [0, 1, -1, 2])
    np.testing.assert_array_equal(cloud.fields["supervoxel"], [0, 0, 1, 1])
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(CloudFileError, match=r"broken\.npz"):
        read_cloud(tmp_path / "broken.npz")


# --------------------------------------------------------------------------- real data


@pytest.mark.skipif(not MOSD.is_dir(), reason="shared mOSD data not present")
def test_real_mosd_frame_matches_open3d() -> None:
    o3d = pytest.importorskip("open3d")
    path = MOSD / "learn0.pcd"
    cloud = read_cloud(path)
    assert (cloud.width, cloud.height, cloud.num_points) == (640, 480, 307200)
    valid = cloud.valid_mask()
    assert 160_000 <= valid.sum() <= 210_000
    labels = set(np.unique(cloud.label[valid]).tolist())
    assert 1 in labels and any(v >= 20 for v in labels)
    theirs = o3d.io.read_point_cloud(str(path), remove_nan_points=False)
    np.testing.assert_array_equal(np.isnan(np.asarray(theirs.points)), np.isnan(cloud.xyz))
    np.testing.assert_allclose(np.asarray(theirs.points)[valid], cloud.xyz[valid], atol=1e-6)
    np.testing.assert_allclose(np.asarray(theirs.colors)[valid] * 255, cloud.rgb[valid], atol=0.5)
