"""segment_node (real rclpy + Fast DDS, its own process) publishes an ``instance`` (uint32) field on
``~/output/points`` when its bundle has WS3D's ``instance_offsets`` output, equal to the offline Segmenter's,
and no such field with a bundle without it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sensor_msgs.msg import PointField
from std_msgs.msg import Header
from wsseg_export.node_replay import NodeClient, decode_labels, free_domain_id, start_segment_node

from tests.conftest import make_box_scene
from wsseg.core.pointcloud2_fields import decode_fields
from wsseg.ros.conversions import cloud_to_msg
from wsseg.runtime.segmenter import Segmenter

REPO = Path(__file__).resolve().parents[2]
PARAMS = REPO / "config" / "segment.yaml"


def published(bundle: Path, xyz: np.ndarray, rgb: np.ndarray, log: Path) -> object:
    """The node's ``~/output/points`` message for one cloud."""
    domain = free_domain_id()
    node = start_segment_node(bundle, PARAMS, domain, {"input_qos": "reliable"}, log_path=log)
    client = NodeClient(domain, input_qos="reliable")
    try:
        assert client.wait_for_node(60.0), node.log()
        msg = cloud_to_msg(Header(), xyz, xyz.shape[0], 1, rgb=rgb)
        msg.header.stamp.sec = 7
        client.publish({"points": msg})
        assert client.wait_until(lambda: 7 * 1_000_000_000 in client.points, 30.0), node.log()
        return client.points[7 * 1_000_000_000]
    finally:
        client.close()
        assert node.stop() == 0, node.log()


def test_node_publishes_instances_only_with_the_head(instance_bundle: Path, tiny_bundle: Path,
                                                     tmp_path: Path) -> None:
    xyz, rgb, _ = make_box_scene(seed=5, n=3000)
    xyz[:5] = np.nan  # invalid points: no instance
    msg = published(instance_bundle, xyz, rgb, tmp_path / "node.log")
    fields = {f.name: f for f in msg.fields}  # type: ignore[attr-defined]
    assert fields["instance"].datatype == PointField.UINT32 and fields["instance"].count == 1
    spec = [("instance", fields["instance"].offset, fields["instance"].datatype, 1)]
    decoded = decode_fields(spec, np.frombuffer(msg.data, dtype=np.uint8), point_step=msg.point_step,  # type: ignore[attr-defined]
                            row_step=msg.row_step, width=msg.width, height=msg.height)["instance"]  # type: ignore[attr-defined]
    expected = Segmenter(instance_bundle, engine="onnxruntime-cpu").run(xyz, rgb=rgb)
    np.testing.assert_array_equal(decoded, expected.instance)
    np.testing.assert_array_equal(decode_labels(msg), expected.labels)
    assert (decoded[:5] == 0).all()
    plain = published(tiny_bundle, xyz, rgb, tmp_path / "plain.log")
    assert "instance" not in {f.name for f in plain.fields}  # type: ignore[attr-defined]
