"""Dataset readers: tiny files in each source's exact layout -> ``wsseg data convert`` -> checked scenes."""

from __future__ import annotations

import itertools
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml
from wsseg_training.data.dataset import Dataset
from wsseg_training.data.readers.base import ReaderError
from wsseg_training.data.readers.common import load_class_option
from wsseg_training.data.readers.mosd import MOSDReader
from wsseg_training.data.readers.s3dis import S3DISReader
from wsseg_training.data.readers.scannet import ScanNetReader
from wsseg_training.data.readers.semantickitti import SemanticKITTIReader

from wsseg.cli import main
from wsseg.core.classes import S3DIS, SCANNET20, SEMANTIC_KITTI19
from wsseg.core.cloud_io import PointCloudFile
from wsseg.core.lzf import lzf_compress
from wsseg.core.pcd import write_pcd
from wsseg.core.ply import write_ply

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def convert(fmt: str, source: Path, out: Path, *options: str) -> Dataset:
    code = main(["data", "convert", "--format", fmt, "--in", str(source), "--out", str(out), "--quiet", *options])
    assert code == 0
    return Dataset(out)


# --------------------------------------------------------------------------- S3DIS


def write_annotation(room: Path, name: str, rows: list[list[float]]) -> None:
    (room / "Annotations").mkdir(parents=True, exist_ok=True)
    (room / "Annotations" / name).write_text("".join(" ".join(f"{v:g}" for v in r) + "\n" for r in rows))


def test_s3dis_rooms_classes_instances_and_area5_val(tmp_path: Path) -> None:
    root = tmp_path / "Stanford3dDataset_v1.2_Aligned_Version"
    office = root / "Area_1" / "office_1"
    write_annotation(office, "chair_1.txt", [[0, 0, 0.5, 200, 10, 10], [0.1, 0, 0.5, 201, 11, 12]])
    write_annotation(office, "chair_2.txt", [[1, 1, 0.5, 10, 200, 10]])
    write_annotation(office, "stairs_1.txt", [[2, 2, 0, 5, 5, 5]])
    write_annotation(office, "wall_1.txt", [[0, -1, 1, 128, 128, 128], [0, -1, 2, 129, 129, 129]])
    (office / "office_1.txt").write_text("ignored whole-room file\n")
    write_annotation(root / "Area_5" / "hallway_1", "floor_1.txt", [[0, 0, 0, 1, 2, 3]])
    ds = convert("s3dis", root, tmp_path / "out")
    assert ds.classes == S3DIS and ds.info.sensor == "rgbd"
    assert ds.scene_names("train") == ["Area_1_office_1"] and ds.scene_names("val") == ["Area_5_hallway_1"]
    scene = ds.load("Area_1_office_1")
    names = [S3DIS.names[i] for i in scene.semantic]
    assert names == ["chair", "chair", "chair", "clutter", "wall", "wall"]
    np.testing.assert_array_equal(scene.instance, [0, 0, 1, 2, 3, 3])
    np.testing.assert_allclose(scene.xyz[1], [0.1, 0, 0.5])
    np.testing.assert_array_equal(scene.rgb[1], [201, 11, 12])
    assert ds.info.scenes["Area_1_office_1"]["instances"] == 4
    other = convert("s3dis", root, tmp_path / "out2", "--val-area", "1")
    assert other.scene_names("val") == ["Area_1_office_1"]


def test_s3dis_errors_name_file_and_line(tmp_path: Path) -> None:
    room = tmp_path / "Area_2" / "conf_1"
    write_annotation(room, "lamp_1.txt", [[0, 0, 0, 1, 1, 1]])
    with pytest.raises(ReaderError, match=r"lamp_1\.txt: unknown S3DIS class 'lamp'"):
        list(S3DISReader(tmp_path))
    (room / "Annotations" / "lamp_1.txt").unlink()
    (room / "Annotations" / "board_1.txt").write_text("0 0 0 1 1 1\n0 0 0 1 1 x\n")
    with pytest.raises(ReaderError, match=r"board_1\.txt:2: non-numeric value"):
        list(S3DISReader(tmp_path))
    (room / "Annotations" / "board_1.txt").write_text("0 0 0 1 1 1\n0 0 0 1 1\x1f1\n")  # the known stray byte
    with pytest.raises(ReaderError, match=r"board_1\.txt:2: 5 values, expected 6"):
        list(S3DISReader(tmp_path))
    with pytest.raises(ReaderError, match="no Area_N folders"):
        S3DISReader(room)


# --------------------------------------------------------------------------- ScanNet


def write_scannet_scan(folder: Path, nyu40: list[int], segments: list[int], groups: list[dict]) -> None:
    """The four files of one scan, as ScanNet v2 ships them (binary little-endian PLY meshes, JSON)."""
    name = folder.name
    folder.mkdir(parents=True)
    n = len(nyu40)
    xyz = np.arange(n * 3, dtype=np.float32).reshape(n, 3) / 10
    for suffix, extra in (("_vh_clean_2.ply", None), ("_vh_clean_2.labels.ply", nyu40)):
        header = (f"ply\nformat binary_little_endian 1.0\ncomment VCGLIB generated\nelement vertex {n}\n"
                  "property float x\nproperty float y\nproperty float z\nproperty uchar red\nproperty uchar green\n"
                  "property uchar blue\nproperty uchar alpha\n" + ("property ushort label\n" if extra else "")
                  + "element face 1\nproperty list uchar int vertex_indices\nend_header\n").encode()
        body = b"".join(struct.pack("<fffBBBB", *xyz[i], 10 * i, 20, 30, 255)
                        + (struct.pack("<H", extra[i]) if extra else b"") for i in range(n))
        (folder / f"{name}{suffix}").write_bytes(header + body + struct.pack("<Biii", 3, 0, 1, 2))
    (folder / f"{name}_vh_clean_2.0.010000.segs.json").write_text(
        json.dumps({"params": {"kThresh": "0.0001"}, "sceneId": name, "segIndices": segments}))
    (folder / f"{name}.aggregation.json").write_text(json.dumps({"sceneId": name, "segGroups": groups}))


def test_scannet_nyu40_mapping_segments_instances_and_lists(tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    write_scannet_scan(scans / "scene0000_00", [1, 5, 13, 39, 0, 36], [4, 4, 90, 90, 17, 17],
                       [{"id": 0, "objectId": 0, "label": "chair", "segments": [90]},
                        {"id": 1, "objectId": 1, "label": "bathtub", "segments": [17]}])
    write_scannet_scan(scans / "scene0001_00", [2, 2], [3, 3], [])
    (tmp_path / "scannetv2_train.txt").write_text("scene0000_00\n")
    (tmp_path / "scannetv2_val.txt").write_text("scene0001_00\n")
    ds = convert("scannet", scans, tmp_path / "out", "--split-dir", str(tmp_path))
    assert ds.classes == SCANNET20
    assert ds.scene_names("train") == ["scene0000_00"] and ds.scene_names("val") == ["scene0001_00"]
    scene = ds.load("scene0000_00")
    assert [SCANNET20.names[i] if i >= 0 else None for i in scene.semantic] == [
        "wall", "chair", None, "otherfurniture", None, "bathtub"]
    np.testing.assert_array_equal(scene.supervoxel, [0, 0, 2, 2, 1, 1])
    np.testing.assert_array_equal(scene.instance, [-1, -1, 0, 0, 1, 1])
    np.testing.assert_allclose(scene.xyz[2], [0.6, 0.7, 0.8])
    np.testing.assert_array_equal(scene.rgb[:, 0], [0, 10, 20, 30, 40, 50])
    no_lists = convert("scannet", scans, tmp_path / "out2")
    assert no_lists.scene_names("train") == ["scene0000_00", "scene0001_00"]


def test_scannet_inconsistent_files(tmp_path: Path) -> None:
    write_scannet_scan(tmp_path / "scene0002_00", [1, 1, 1], [0, 0], [])
    with pytest.raises(ReaderError, match=r"segs\.json: field 'segIndices' has 2 entries, mesh has 3"):
        list(ScanNetReader(tmp_path))
    (tmp_path / "scene0002_00" / "scene0002_00_vh_clean_2.0.010000.segs.json").write_text('{"segIndices": [0, 0, 1]}')
    (tmp_path / "scene0002_00" / "scene0002_00.aggregation.json").write_text('{"segGroups": [{"label": "x"}]}')
    with pytest.raises(ReaderError, match=r"aggregation\.json: segGroups\[0\] lacks an integer 'objectId'"):
        list(ScanNetReader(tmp_path))


# --------------------------------------------------------------------------- SemanticKITTI


def write_kitti_scan(root: Path, seq: str, scan: str, xyzr: np.ndarray, raw: np.ndarray | None) -> None:
    (root / "sequences" / seq / "velodyne").mkdir(parents=True, exist_ok=True)
    xyzr.astype("<f4").tofile(root / "sequences" / seq / "velodyne" / f"{scan}.bin")
    if raw is not None:
        (root / "sequences" / seq / "labels").mkdir(exist_ok=True)
        raw.astype("<u4").tofile(root / "sequences" / seq / "labels" / f"{scan}.label")


def test_semantickitti_learning_map_instances_and_splits(tmp_path: Path) -> None:
    points = np.arange(24, dtype=np.float32).reshape(6, 4)
    raw = np.array([10 | 3 << 16, 252 | 3 << 16, 40, 0, 99, 254 | 7 << 16], dtype=np.uint32)
    write_kitti_scan(tmp_path, "00", "000000", points, raw)
    write_kitti_scan(tmp_path, "08", "000000", points[:2], raw[:2])
    write_kitti_scan(tmp_path, "11", "000000", points[:3], None)
    ds = convert("semantickitti", tmp_path, tmp_path / "out")
    assert ds.classes == SEMANTIC_KITTI19 and ds.info.sensor == "lidar"
    assert ds.info.splits == {"train": ["seq00_000000"], "val": ["seq08_000000"], "test": ["seq11_000000"]}
    scene = ds.load("seq00_000000")
    assert [SEMANTIC_KITTI19.names[i] if i >= 0 else None for i in scene.semantic] == [
        "car", "car", "road", None, None, "person"]
    assert scene.instance[0] != scene.instance[1] and scene.instance[0] >= 0 and scene.instance[5] >= 0
    np.testing.assert_array_equal(scene.instance[2:5], -1)
    np.testing.assert_array_equal(scene.xyz, points[:, :3])
    np.testing.assert_array_equal(scene.intensity, points[:, 3])
    assert ds.load("seq11_000000").semantic is None
    only = convert("semantickitti", tmp_path, tmp_path / "out2", "--sequences", "8")
    assert only.scene_names() == ["seq08_000000"]


def test_semantickitti_bad_sizes(tmp_path: Path) -> None:
    write_kitti_scan(tmp_path, "00", "000000", np.zeros((3, 4)), np.zeros(2, np.uint32))
    with pytest.raises(ReaderError, match=r"000000\.label: 8 bytes = 2 labels, but 000000\.bin has 3 points"):
        list(SemanticKITTIReader(tmp_path))
    (tmp_path / "sequences" / "00" / "velodyne" / "000000.bin").write_bytes(b"\0" * 20)
    with pytest.raises(ReaderError, match="20 bytes is not a whole number of 16-byte"):
        list(SemanticKITTIReader(tmp_path))


@pytest.mark.skipif(not (SHARED / "semantickitti").is_dir(), reason="shared SemanticKITTI sample not present")
def test_real_semantickitti_scans() -> None:
    reader = SemanticKITTIReader(SHARED / "semantickitti")
    scenes = list(reader)
    assert [s.split for s in scenes].count("val") == 1 and len(scenes) == 4
    for item in scenes:
        scene = item.scene
        assert 120_000 <= scene.num_points <= 126_000
        assert np.abs(scene.xyz).max() < 120 and scene.intensity.min() >= 0 and scene.intensity.max() <= 1
        present = {SEMANTIC_KITTI19.names[i] for i in np.unique(scene.semantic) if i >= 0}
        assert {"road", "sidewalk", "building", "vegetation", "car"} <= present
        assert (scene.semantic == -1).mean() < 0.1
        assert scene.instance.max() >= 1


# --------------------------------------------------------------------------- PLY / PCD / LAS files


def test_ply_files_with_generic_and_yaml_class_tables(tmp_path: Path) -> None:
    src = tmp_path / "clouds"
    (src / "site_b").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for path, labels in ((src / "a.ply", [0, 1, 2, 2]), (src / "site_b" / "b.ply", [1, 1, 65535, 0])):
        write_ply(path, PointCloudFile(xyz=rng.normal(size=(4, 3)).astype(np.float32),
                                       intensity=np.arange(4, dtype=np.float32),
                                       label=np.array(labels, np.uint16)), binary=path.stem == "a")
    ds = convert("ply", src, tmp_path / "generic")
    assert ds.classes.names == ("class_0", "class_1", "class_2")
    assert ds.scene_names("train") == ["a", "site_b_b"]
    np.testing.assert_array_equal(ds.load("site_b_b").semantic, [1, 1, -1, 0])
    classes = tmp_path / "classes.yaml"
    classes.write_text(yaml.safe_dump({"name": "site", "names": ["ground", "object"], "palette": [[1, 2, 3], [4, 5, 6]],
                                       "label_map": {0: "ignore", 1: "ground", 2: 1}}))
    ds = convert("ply", src, tmp_path / "mapped", "--classes", str(classes), "--split", "val")
    assert ds.classes.name == "site" and ds.scene_names("val") == ["a", "site_b_b"]
    np.testing.assert_array_equal(ds.load("a").semantic, [-1, 0, 1, 1])
    np.testing.assert_array_equal(ds.load("a").intensity, [0, 1, 2, 3])


def test_organized_pcd_keeps_pixels(tmp_path: Path) -> None:
    xyz = np.ones((6, 3), np.float32)
    xyz[[0, 4]] = np.nan
    write_pcd(tmp_path / "f.pcd", PointCloudFile(xyz=xyz, rgb=np.full((6, 3), 7, np.uint8), width=3, height=2),
              data="binary_compressed")
    ds = convert("pcd", tmp_path / "f.pcd", tmp_path / "out")
    scene = ds.load("f")
    np.testing.assert_array_equal(scene.pixel, [1, 2, 3, 5])
    assert scene.semantic is None and ds.classes.num_classes == 0
    assert (ds.info.scenes["f"]["width"], ds.info.scenes["f"]["height"]) == (3, 2)


def test_las_files_colour_intensity_classification_and_origin(tmp_path: Path) -> None:
    laspy = pytest.importorskip("laspy")
    las = laspy.LasData(laspy.LasHeader(point_format=3, version="1.2"))
    las.header.offsets = np.array([500000.0, 4000000.0, 0.0])
    las.header.scales = np.array([0.001, 0.001, 0.001])
    las.x = np.array([500100.125, 500101.5, 500102.0])
    las.y = np.array([4000200.25, 4000200.0, 4000201.0])
    las.z = np.array([10.5, 11.0, 12.0])
    las.red = np.array([65535, 256 * 128, 0], np.uint16)
    las.green = np.array([0, 256 * 64, 256], np.uint16)
    las.blue = np.array([0, 0, 65535], np.uint16)
    las.intensity = np.array([100, 200, 300], np.uint16)
    las.classification = np.array([2, 6, 2], np.uint8)
    las.write(tmp_path / "tile.las")
    ds = convert("las", tmp_path, tmp_path / "out", "--classes", "s3dis")
    scene = ds.load("tile")
    assert ds.info.scenes["tile"]["origin_m"] == [500100.0, 4000200.0, 10.0]
    np.testing.assert_allclose(scene.xyz, [[0.125, 0.25, 0.5], [1.5, 0, 1], [2, 1, 2]], atol=1e-6)
    np.testing.assert_array_equal(scene.rgb, [[255, 0, 0], [128, 64, 0], [0, 1, 255]])
    np.testing.assert_array_equal(scene.intensity, [100, 200, 300])
    np.testing.assert_array_equal(scene.semantic, [2, 6, 2])


def test_class_option_errors(tmp_path: Path) -> None:
    with pytest.raises(ReaderError, match="neither a built-in table"):
        load_class_option("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"names": ["a"], "label_map": {3: "b"}}))
    with pytest.raises(ReaderError, match=r"bad\.yaml: label_map 3: 'b' is not a class"):
        load_class_option(str(bad))
    bad.write_text("names: [a, b]\npalette: [[1, 2]]\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: invalid class table"):
        load_class_option(str(bad))
    write_ply(tmp_path / "x.ply", PointCloudFile(xyz=np.zeros((2, 3), np.float32), label=np.array([0, 5], np.int32)))
    assert main(["data", "convert", "--format", "ply", "--in", str(tmp_path / "x.ply"), "--out",
                 str(tmp_path / "o"), "--quiet", "--classes", "mosd"]) == 1


# --------------------------------------------------------------------------- mOSD


def write_osd_frame(path: Path, label: np.ndarray, xyz: np.ndarray, width: int, height: int) -> None:
    """The OSD layout: FIELDS label x y z rgba, binary_compressed (LZF over the field-major body)."""
    n = width * height
    rgba = (np.uint32(0xFF) << 24) | np.arange(n, dtype=np.uint32)
    header = (f"# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS label x y z rgba\nSIZE 4 4 4 4 4\n"
              f"TYPE U F F F U\nCOUNT 1 1 1 1 1\nWIDTH {width}\nHEIGHT {height}\nVIEWPOINT 0 0 0 1 0 0 0\n"
              f"POINTS {n}\nDATA binary_compressed\n").encode()
    body = (label.astype("<u4").tobytes() + b"".join(xyz[:, i].astype("<f4").tobytes() for i in range(3))
            + rgba.astype("<u4").tobytes())
    packed = lzf_compress(body)
    path.write_bytes(header + struct.pack("<II", len(packed), len(body)) + packed)


def test_mosd_frames_classes_instances_pixels_split(tmp_path: Path) -> None:
    label = np.array([0, 1, 1, 20, 21, 30, 0, 15], np.uint32)
    xyz = np.arange(24, dtype=np.float32).reshape(8, 3)
    xyz[[0, 6]] = np.nan
    for k in range(3):
        write_osd_frame(tmp_path / f"learn{k * 5}.pcd", label, xyz + k, 4, 2)
    ds = convert("mosd", tmp_path, tmp_path / "out", "--val-frames", "1")
    assert ds.scene_names("train") == ["learn0", "learn10"] and ds.scene_names("val") == ["learn5"]
    scene = ds.load("learn5")
    np.testing.assert_array_equal(scene.pixel, [1, 2, 3, 4, 5, 7])
    np.testing.assert_array_equal(scene.semantic, [0, 0, 1, 1, 1, -1])  # 15 is neither support nor object
    np.testing.assert_array_equal(scene.instance, [0, 0, 2, 2, 3, -1])
    np.testing.assert_array_equal(scene.xyz, xyz[[1, 2, 3, 4, 5, 7]] + 1)
    np.testing.assert_array_equal(scene.rgb[:, 2], [1, 2, 3, 4, 5, 7])
    assert ds.info.scenes["learn5"]["width"] == 4 and ds.info.scenes["learn5"]["height"] == 2


@pytest.mark.skipif(not (SHARED / "mosd" / "learn").is_dir(), reason="shared mOSD frames not present")
def test_real_mosd_frames() -> None:
    reader = MOSDReader(SHARED / "mosd" / "learn")
    assert len(reader) == 45 and len(reader.val) == 10
    for item in itertools.islice(reader, 2):
        scene, meta = item.scene, item.metadata
        assert (meta["width"], meta["height"]) == (640, 480)
        assert 160_000 <= scene.num_points <= 210_000
        assert set(np.unique(scene.semantic).tolist()) == {0, 1}
        assert len(np.unique(scene.instance[scene.semantic == 1])) >= 2
        image = np.full(640 * 480, -1, np.int16)
        image[scene.pixel] = scene.semantic
        rows = image.reshape(480, 640)
        assert (rows >= 0).any(axis=1).sum() > 300  # labelled pixels span most image rows
