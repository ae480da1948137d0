"""ROS 2 bags: ``wsseg segment-bag`` offline, and replay_node republishing a bag into the segment node."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Writer
from rosbags.typesys import Stores, get_typestore
from wsseg_export.node_replay import NodeClient, NodeProcess, decode_labels, free_domain_id, start_segment_node

from tests.conftest import make_box_scene
from wsseg.cli import main as wsseg_main
from wsseg.core.pointcloud2_fields import decode_fields, encode_fields
from wsseg.runtime.segmenter import Segmenter

REPO = Path(__file__).resolve().parents[2]
TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)
PC2 = "sensor_msgs/msg/PointCloud2"


def write_bag(path: Path, clouds: list[tuple[np.ndarray, np.ndarray]], broken: bool = True) -> Path:
    """PointCloud2 messages (x, y, z, rgb) on /points, 0.2 s apart; with ``broken`` one lacks 'z'."""
    types = TYPESTORE.types
    with Writer(path, version=8) as writer:
        connection = writer.add_connection("/points", PC2, typestore=TYPESTORE)
        for index, (xyz, rgb) in enumerate(clouds):
            packed = (rgb[:, 0].astype(np.uint32) << 16) | (rgb[:, 1].astype(np.uint32) << 8) | rgb[:, 2]
            specs, data, step = encode_fields({"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2],
                                               "rgb": packed.view(np.float32)})
            if broken and index == 1:
                specs = [s for s in specs if s.name != "z"]
            stamp = types["builtin_interfaces/msg/Time"](sec=100 + index, nanosec=0)
            header = types["std_msgs/msg/Header"](stamp=stamp, frame_id="lidar")
            msg = types[PC2](header=header, height=1, width=xyz.shape[0],
                             fields=[types["sensor_msgs/msg/PointField"](name=s.name, offset=s.offset,
                                                                         datatype=s.datatype, count=s.count)
                                     for s in specs],
                             is_bigendian=False, point_step=step, row_step=step * xyz.shape[0],
                             data=np.frombuffer(data, np.uint8), is_dense=True)
            writer.write(connection, (100 + index) * 10**9 // 5, TYPESTORE.serialize_cdr(msg, PC2))
    return path


def test_segment_bag_writes_labelled_clouds(tiny_bundle: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    clouds = [make_box_scene(seed=40 + k, n=2500)[:2] for k in range(3)]
    source = write_bag(tmp_path / "in_bag", clouds)
    out = tmp_path / "out_bag"
    assert wsseg_main(["segment-bag", "--model", str(tiny_bundle), "--in", str(source), "--out", str(out),
                       "--copy"]) == 0
    summary = capsys.readouterr().out
    assert "2 cloud(s) segmented" in summary and "1 rejected" in summary
    segmenter = Segmenter(tiny_bundle, engine="onnxruntime-cpu")
    with AnyReader([out], default_typestore=TYPESTORE) as reader:
        topics = {c.topic: c.msgcount for c in reader.connections}
        assert topics == {"/points": 3, "/points/segmented": 2}
        outputs = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages()
                   if c.topic == "/points/segmented"]
    for msg, (xyz, rgb) in zip(outputs, [clouds[0], clouds[2]], strict=True):
        assert msg.header.frame_id == "lidar" and msg.width == xyz.shape[0]
        fields = [(f.name, f.offset, f.datatype, f.count) for f in msg.fields]
        arrays = decode_fields(fields, msg.data, point_step=msg.point_step, row_step=msg.row_step, width=msg.width,
                               height=msg.height)
        np.testing.assert_array_equal(arrays["label"], segmenter.segment(xyz, rgb)[0])
        np.testing.assert_array_equal(arrays["x"], xyz[:, 0])
    assert wsseg_main(["segment-bag", "--model", str(tiny_bundle), "--in", str(source), "--out", str(out)]) == 1


def test_replay_node_republishes_a_bag_into_the_node(tiny_bundle: Path, tmp_path: Path) -> None:
    clouds = [make_box_scene(seed=50 + k, n=2000)[:2] for k in range(2)]
    bag = write_bag(tmp_path / "bag", clouds, broken=False)
    domain = free_domain_id()
    node = start_segment_node(tiny_bundle, REPO / "config" / "segment.yaml", domain,
                              {"input_qos": "reliable"}, log_path=tmp_path / "node.log")
    client = NodeClient(domain, input_qos="reliable")
    replay = None
    try:
        assert client.wait_for_node(60.0), node.log()
        replay = NodeProcess("replay_node", ["-p", f"source:={bag}", "-p", "qos:=reliable", "-p", "rate_hz:=1.0",
                                             "-p", "restamp:=false", "-r", "/points:=/segment_node/input/points"],
                             domain, tmp_path / "replay.log")
        assert client.wait_until(lambda: len(client.points) >= 2, 40.0), node.log() + replay.log()
        assert replay.process.wait(30) == 0, replay.log()
    finally:
        if replay is not None:
            replay.stop()
        client.close()
        node.stop()
    segmenter = Segmenter(tiny_bundle, engine="onnxruntime-cpu")
    for k, (xyz, rgb) in enumerate(clouds):
        msg = client.points[(100 + k) * 10**9]  # recorded stamps kept (restamp false)
        np.testing.assert_array_equal(decode_labels(msg), segmenter.segment(xyz, rgb)[0])
