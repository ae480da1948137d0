"""ROS 2 bags (sqlite3 and MCAP, written with rosbags) -> dataset via ``wsseg data convert --format rosbag``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from wsseg_training.data.dataset import Dataset
from wsseg_training.data.readers.base import ReaderError
from wsseg_training.data.readers.rosbag import RosbagReader

from wsseg.cli import main
from wsseg.core.cloud_io import PointCloudFile
from wsseg.core.pointcloud2_fields import cloud_to_pointcloud2

TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)


def frame_cloud(k: int, organized: bool) -> PointCloudFile:
    """Frame k: 4x3 points whose x encodes the frame, a NaN pixel in organized frames, labels 0/1/65535."""
    xyz = np.stack(np.meshgrid(np.arange(4), np.arange(3), [k], indexing="xy"), axis=-1).reshape(-1, 3)
    xyz = xyz.astype(np.float32) + np.float32(0.5)
    if organized:
        xyz[5] = np.nan
    rgb = np.full((12, 3), 10 * k, dtype=np.uint8)
    label = np.array([0, 1] * 5 + [65535, 1], dtype=np.uint16)
    return PointCloudFile(xyz=xyz, rgb=rgb, intensity=np.arange(12, dtype=np.float32), label=label,
                          width=4 if organized else 12, height=3 if organized else 1)


def pointcloud2_message(cloud: PointCloudFile, k: int, frame_id: str):  # type: ignore[no-untyped-def]
    specs, data, step = cloud_to_pointcloud2(cloud)
    types = TYPESTORE.types
    return types["sensor_msgs/msg/PointCloud2"](
        header=types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=100 + k, nanosec=5),
                                            frame_id=frame_id),
        height=cloud.height, width=cloud.width,
        fields=[types["sensor_msgs/msg/PointField"](name=s.name, offset=s.offset, datatype=s.datatype, count=s.count)
                for s in specs],
        is_bigendian=False, point_step=step, row_step=step * cloud.width,
        data=np.frombuffer(data, dtype=np.uint8), is_dense=False)


def write_bag(path: Path, storage: StoragePlugin, frames: int = 5) -> Path:
    """Topic /camera/points (organized) x frames, /lidar/points (flat) x 2, and a String topic."""
    with Writer(path, version=9, storage_plugin=storage) as writer:
        camera = writer.add_connection("/camera/points", "sensor_msgs/msg/PointCloud2", typestore=TYPESTORE)
        lidar = writer.add_connection("/lidar/points", "sensor_msgs/msg/PointCloud2", typestore=TYPESTORE)
        chatter = writer.add_connection("/chatter", "std_msgs/msg/String", typestore=TYPESTORE)
        for k in range(frames):
            t = 1_000_000_000 * (k + 1)
            message = pointcloud2_message(frame_cloud(k, True), k, "camera_optical")
            writer.write(camera, t, TYPESTORE.serialize_cdr(message, "sensor_msgs/msg/PointCloud2"))
            writer.write(chatter, t + 1, TYPESTORE.serialize_cdr(TYPESTORE.types["std_msgs/msg/String"](data="hi"),
                                                                  "std_msgs/msg/String"))
            if k < 2:
                message = pointcloud2_message(frame_cloud(k, False), k, "lidar")
                writer.write(lidar, t + 2, TYPESTORE.serialize_cdr(message, "sensor_msgs/msg/PointCloud2"))
    return path


@pytest.mark.parametrize("storage", [StoragePlugin.SQLITE3, StoragePlugin.MCAP])
def test_convert_bag_every_second_message(tmp_path: Path, storage: StoragePlugin) -> None:
    bag = write_bag(tmp_path / "bag", storage)
    classes = tmp_path / "classes.yaml"
    classes.write_text(yaml.safe_dump({"name": "robot", "names": ["floor", "box"]}))
    out = tmp_path / "ds"
    assert main(["data", "convert", "--format", "rosbag", "--in", str(bag), "--out", str(out), "--quiet",
                 "--topics", "/camera/points", "--every", "2", "--classes", str(classes)]) == 0
    ds = Dataset(out)
    assert ds.classes.names == ("floor", "box")
    assert ds.scene_names("train") == ["camera_points_000000", "camera_points_000002", "camera_points_000004"]
    for k, name in zip((0, 2, 4), ds.scene_names(), strict=True):
        meta = ds.info.scenes[name]
        assert meta["frame_id"] == "camera_optical" and meta["topic"] == "/camera/points"
        assert meta["stamp_ns"] == (100 + k) * 1_000_000_000 + 5
        assert (meta["width"], meta["height"]) == (4, 3)
        scene = ds.load(name)
        assert scene.num_points == 11  # the NaN pixel is dropped ...
        np.testing.assert_array_equal(scene.pixel, [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11])  # ... and its index kept
        np.testing.assert_array_equal(scene.xyz[:, 2], k + 0.5)
        np.testing.assert_array_equal(scene.rgb, 10 * k)
        np.testing.assert_array_equal(scene.semantic, [0, 1, 0, 1, 0, 0, 1, 0, 1, -1, 1])
        np.testing.assert_array_equal(scene.intensity, [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11])


def test_reader_all_pointcloud_topics_without_labels(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "bag", StoragePlugin.MCAP, frames=3)
    reader = RosbagReader(bag)
    assert reader.topics == ["/camera/points", "/lidar/points"] and len(reader) == 5
    scenes = list(reader)
    assert sorted(s.name for s in scenes) == ["camera_points_000000", "camera_points_000001", "camera_points_000002",
                                              "lidar_points_000000", "lidar_points_000001"]
    lidar = next(s for s in scenes if s.name == "lidar_points_000001")
    assert lidar.scene.semantic is None and lidar.scene.pixel is None and lidar.scene.num_points == 12
    assert lidar.metadata["frame_id"] == "lidar" and "width" not in lidar.metadata
    assert reader.classes.num_classes == 0


def test_bag_errors_name_bag_and_topic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bag = write_bag(tmp_path / "bag", StoragePlugin.SQLITE3, frames=1)
    with pytest.raises(ReaderError, match=r"topic\(s\) \['/chatter'\] carry no sensor_msgs/msg/PointCloud2"):
        RosbagReader(bag, topics=["/chatter"])
    with pytest.raises(ReaderError, match="no such bag"):
        RosbagReader(tmp_path / "missing")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "metadata.yaml").write_text("not: a bag\n")
    with pytest.raises(ReaderError, match="junk: not a readable ROS 2 bag"):
        RosbagReader(tmp_path / "junk")
    with pytest.raises(ReaderError, match="--every must be >= 1"):
        RosbagReader(bag, every=0)
    classes = tmp_path / "c.yaml"
    classes.write_text(yaml.safe_dump({"names": ["only"]}))
    code = main(["data", "convert", "--format", "rosbag", "--in", str(bag), "--out", str(tmp_path / "o"),
                 "--quiet", "--topics", "/camera/points", "--classes", str(classes)])
    assert code == 1
    err = capsys.readouterr().err
    assert "topic /camera/points message 0: label value 1 is outside the class table" in err
