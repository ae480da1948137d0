"""segment_node under hostile input (issue 21): one real node process over Fast DDS per defect class.

Each test feeds the real node what broke it before (a driver clock glitch, a 2M-point frame, ambiguous
field layouts, coordinates the voxel grid cannot index, malformed fields the model does not use, a
failing engine reload) and checks that the node answers the next valid frame, labels what it can, and
says in /diagnostics and its log what it refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header
from wsseg_export.node_replay import FASTDDS_PROFILE, NodeClient, NodeProcess, decode_labels, free_domain_id
from wsseg_export.node_replay import start_segment_node as start_node

from tests.conftest import make_box_scene
from wsseg.core.classes import UNLABELLED_ID
from wsseg.core.pointcloud2_fields import encode_fields
from wsseg.ros.conversions import cloud_to_msg, make_camera_info, make_image
from wsseg.ros.rgbd import depth_to_millimetres
from wsseg.runtime.segmenter import Segmenter

REPO = Path(__file__).resolve().parents[2]
PARAMS = REPO / "config" / "segment.yaml"
S = 1_000_000_000


def stamped(msg: Any, stamp_ns: int) -> Any:
    """``msg`` (a message with a header, or a Header) stamped ``stamp_ns``; a new Header, not shared."""
    header = Header(frame_id=getattr(msg, "frame_id", "") or getattr(getattr(msg, "header", None), "frame_id", ""))
    header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, S)
    if isinstance(msg, Header):
        return header
    msg.header = header
    return msg


def last_status(client: NodeClient) -> dict[str, str]:
    with client.lock:
        status = client.diagnostics[-1]
    return {"level": str(status.level[0]), "message": status.message, **{kv.key: kv.value for kv in status.values}}


class Harness:
    """A running node + client; ``send`` publishes a message and waits for the answer (or not)."""

    def __init__(self, node: NodeProcess, client: NodeClient) -> None:
        self.node, self.client = node, client
        self.stamp = 1000 * S

    def next_stamp(self) -> int:
        self.stamp += S // 10
        return self.stamp

    def send(self, msg: PointCloud2, wait_s: float = 20.0) -> PointCloud2 | None:
        """Publish ``msg`` with a new stamp; the labelled output, or None when none came within ``wait_s``."""
        stamp = self.next_stamp()
        self.client.publish({"points": stamped(msg, stamp)})
        self.client.wait_until(lambda: stamp in self.client.points, wait_s)
        with self.client.lock:
            return self.client.points.get(stamp)

    def status_after(self, seconds: float = 0.6) -> dict[str, str]:
        time.sleep(seconds)  # a diagnostics period or two
        return last_status(self.client)


@pytest.fixture(scope="module")
def points_node(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """The node with the shipped defaults (config/segment.yaml), reliable input, fast diagnostics."""
    log = tmp_path_factory.mktemp("node") / "node.log"
    domain = free_domain_id()
    node = start_node(tiny_bundle, PARAMS, domain, {"input_qos": "reliable", "diagnostics_period_s": 0.2},
                      log_path=log, fastdds_profile=FASTDDS_PROFILE)
    client = NodeClient(domain, input_qos="reliable", fastdds_profile=FASTDDS_PROFILE)
    try:
        assert client.wait_for_node(60.0), node.log()
        yield Harness(node, client)
    finally:
        client.close()
        assert node.stop() == 0, node.log()


def good_cloud(seed: int = 40, n: int = 3000) -> tuple[PointCloud2, np.ndarray, np.ndarray]:
    xyz, rgb, _ = make_box_scene(seed=seed, n=n)
    return cloud_to_msg(Header(), xyz, n, 1, rgb=rgb), xyz, rgb


def assert_answers_valid_frame(harness: Harness, bundle: Path) -> None:
    msg, xyz, rgb = good_cloud()
    out = harness.send(msg)
    assert out is not None, harness.node.log()
    np.testing.assert_array_equal(decode_labels(out), Segmenter(bundle, engine="onnxruntime-cpu").segment(xyz, rgb)[0])
    assert harness.node.alive()


def test_a_2m_point_frame_is_rejected_by_the_default_cap(points_node: Harness, tiny_bundle: Path) -> None:
    """Defect 2: no default max_points -- a 2,000,000-point cloud took 12-17 s and 3 GB; now refused at once."""
    n = 2_000_000
    rng = np.random.default_rng(0)
    xyz = rng.uniform(0.0, 3.0, (n, 3)).astype(np.float32)
    big = cloud_to_msg(Header(), xyz, n, 1, rgb=rng.integers(0, 256, (n, 3), dtype=np.uint8))
    started = time.monotonic()
    assert points_node.send(big, wait_s=3.0) is None  # no answer: rejected
    status = points_node.status_after()
    assert "max_points=1" in status["rejected_by_cause"], status
    assert status["max_points"] == "1200000" and "exceed max_points 1200000" in status["last_error"]
    assert status["malloc_policy"] == "mmap threshold fixed at 8 MiB", status  # RSS flat in soaks
    assert_answers_valid_frame(points_node, tiny_bundle)
    assert time.monotonic() - started < 20.0
    assert "2000000 points exceed max_points" in points_node.node.log()


def _idle_heap_bytes(trace: Path, after_s: float) -> int:
    """malloc's bytes in use (heap + mmap-served) in the node's last memory report, made ``after_s`` from now."""
    time.sleep(after_s)  # no frame in flight: a few trace reports with nothing but what the node keeps
    line = json.loads(trace.read_text().splitlines()[-1])
    return int(line["malloc"]["in_use"]) + int(line["malloc"]["mmapped"])


def test_rejected_oversized_frames_leave_no_memory_behind(tiny_bundle: Path, tmp_path: Path) -> None:
    """Defect 10 (found by the soak): with rmw_fastrtps's history memory policy (PREALLOCATED_WITH_REALLOC) the
    subscription's payload kept the size of the largest frame it had received, so every oversized frame the node
    rejected left its size in use for good (~8 MB per 2000x1000 RGB-D frame, +1 MB/min under faults).  The shipped
    Fast DDS profile frees payloads after use.  A fresh node (payload sizes are per node); ~15 s."""
    trace = tmp_path / "memory.jsonl"
    domain = free_domain_id()
    node = start_node(tiny_bundle, PARAMS, domain, {"input_qos": "reliable", "diagnostics_period_s": 0.2},
                      log_path=tmp_path / "node.log", fastdds_profile=FASTDDS_PROFILE,
                      env={"WSSEG_MEMORY_TRACE": str(trace), "WSSEG_MEMORY_TRACE_PERIOD_S": "0.2"})
    client = NodeClient(domain, input_qos="reliable", fastdds_profile=FASTDDS_PROFILE)
    try:
        assert client.wait_for_node(60.0), node.log()
        harness = Harness(node, client)
        good, _, _ = good_cloud()
        for _ in range(3):
            assert harness.send(good) is not None, node.log()
        before = _idle_heap_bytes(trace, 1.0)
        n = 1_500_000  # over the default max_points 1,200,000: 24 MB on the wire, rejected unread
        rng = np.random.default_rng(1)
        big = cloud_to_msg(Header(), rng.uniform(0.0, 3.0, (n, 3)).astype(np.float32), n, 1,
                           rgb=rng.integers(0, 256, (n, 3), dtype=np.uint8))
        for _ in range(2):
            assert harness.send(big, wait_s=3.0) is None
            assert harness.send(good) is not None, node.log()
        status = harness.status_after()
        assert "max_points=2" in status["rejected_by_cause"], status
        after = _idle_heap_bytes(trace, 1.0)
        assert after - before < 12 * 2**20, f"{(after - before) / 2**20:.1f} MiB kept after 2 rejected 24 MB frames"
    finally:
        client.close()
        assert node.stop() == 0, node.log()


def test_ambiguous_field_layouts_are_rejected(points_node: Harness, tiny_bundle: Path) -> None:
    """Defect 5: duplicate field names (last won) and overlapping fields were accepted silently."""
    duplicate, _, _ = good_cloud(seed=41)
    duplicate.fields = [*duplicate.fields, PointField(name="x", offset=4, datatype=PointField.FLOAT32, count=1)]
    assert points_node.send(duplicate, wait_s=2.0) is None
    overlapping, _, _ = good_cloud(seed=42)
    overlapping.fields[0].datatype = PointField.FLOAT64  # x as FLOAT64 covers the bytes of y
    assert points_node.send(overlapping, wait_s=2.0) is None
    status = points_node.status_after()
    assert "duplicate_field=1" in status["rejected_by_cause"] and "overlapping_fields=1" in status["rejected_by_cause"]
    assert_answers_valid_frame(points_node, tiny_bundle)
    log = points_node.node.log()
    assert "field(s) ['x'] declared more than once" in log
    assert "field 'x' (offset 0, FLOAT64 x 1) overlaps field 'y'" in log


def test_extreme_coordinates_are_invalid_points_not_a_rejected_frame(points_node: Harness, tiny_bundle: Path) -> None:
    """Defect 6: 1e30 overflowed the int voxel cast (one label at confidence 1), or rejected the whole frame."""
    segmenter = Segmenter(tiny_bundle, engine="onnxruntime-cpu")
    _, xyz, rgb = good_cloud(seed=43)
    mixed = xyz.copy()
    mixed[7] = (1e30, 0.0, 0.0)
    mixed[8] = (-1e30, 1e30, -1e30)
    out = points_node.send(cloud_to_msg(Header(), mixed, mixed.shape[0], 1, rgb=rgb))
    assert out is not None, points_node.node.log()
    labels = decode_labels(out)
    assert (labels[[7, 8]] == UNLABELLED_ID).all()
    keep = np.ones(len(xyz), bool)
    keep[[7, 8]] = False
    np.testing.assert_array_equal(labels[keep], segmenter.segment(xyz[keep], rgb[keep])[0])
    far = np.full((500, 3), 1e30, np.float32)
    out = points_node.send(cloud_to_msg(Header(), far, 500, 1, rgb=np.zeros((500, 3), np.uint8)))
    assert out is not None and (decode_labels(out) == UNLABELLED_ID).all()


def test_unused_malformed_fields_and_separate_rgb_fields(points_node: Harness, tiny_bundle: Path) -> None:
    """Defect 9: intensity UINT8 x 4 rejected an rgb model's frame; r, g, b UINT8 fields were not colour."""
    _, xyz, rgb = good_cloud(seed=44)
    n = xyz.shape[0]
    specs, data, step = encode_fields({"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], "r": rgb[:, 0], "g": rgb[:, 1],
                                       "b": rgb[:, 2], "intensity": np.zeros((n, 4), np.uint8)})
    msg = PointCloud2(height=1, width=n, point_step=step, row_step=step * n, is_bigendian=False, data=data)
    msg.fields = [PointField(name=s.name, offset=s.offset, datatype=s.datatype, count=s.count) for s in specs]
    out = points_node.send(msg)
    assert out is not None, points_node.node.log()
    expected = Segmenter(tiny_bundle, engine="onnxruntime-cpu").segment(xyz, rgb)[0]
    np.testing.assert_array_equal(decode_labels(out), expected)


def set_parameter(client: NodeClient, name: str, value: str, timeout_s: float = 60.0) -> Any:
    service = client.node.create_client(SetParameters, "/segment_node/set_parameters")
    assert service.wait_for_service(timeout_sec=20.0)
    request = SetParameters.Request(parameters=[ParameterMsg(
        name=name, value=ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value))])
    future = service.call_async(request)
    deadline = time.monotonic() + timeout_s
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert future.done(), "set_parameters did not answer"
    return future.result().results[0]


def test_an_engine_reload_that_fails_keeps_the_old_engine(points_node: Harness, tiny_bundle: Path,
                                                          tmp_path: Path) -> None:
    """A bad ``model`` set on the running node is refused with the reason; frames are still answered."""
    result = set_parameter(points_node.client, "model", str(tmp_path / "no_bundle"))
    assert not result.successful and "no_bundle" in result.reason and "keeping" in result.reason
    status = points_node.status_after()
    assert "engine_reload=1" in status["errors"] and status["model"] == str(tiny_bundle)
    assert_answers_valid_frame(points_node, tiny_bundle)
    ok = set_parameter(points_node.client, "model", str(tiny_bundle))  # reloading a good bundle works
    assert ok.successful, ok.reason
    assert_answers_valid_frame(points_node, tiny_bundle)


# ------------------------------------------------------------------------------------------------ RGB-D


def rgbd_messages(stamp_ns: int, h: int = 24, w: int = 32, fx: float = 30.0) -> dict[str, Any]:
    depth = np.full((h, w), 1.5, np.float32) + 0.01 * np.arange(h, dtype=np.float32)[:, None]
    colour = np.full((h, w, 3), 120, np.uint8)
    k = np.array([[fx, 0.0, w / 2 - 0.5], [0.0, fx, h / 2 - 0.5], [0.0, 0.0, 1.0]])
    header = stamped(Header(frame_id="camera"), stamp_ns)
    return {"depth": make_image(header, depth_to_millimetres(depth), "16UC1"),
            "color": make_image(header, colour, "rgb8"), "camera_info": make_camera_info(header, k, w, h)}


def test_rgbd_node_survives_a_clock_glitch_and_reports_stalls(tiny_bundle: Path, tmp_path: Path) -> None:
    """Defect 1: ~10 colour frames stamped 1000 s ahead froze the RGB-D node for good, with diagnostics OK."""
    domain = free_domain_id()
    node = start_node(tiny_bundle, PARAMS, domain, {"input_mode": "rgbd", "input_qos": "reliable",
                                                    "diagnostics_period_s": 0.2, "stall_warn_s": 1.0,
                                                    "stall_error_s": 2.0}, log_path=tmp_path / "node.log")
    client = NodeClient(domain, mode="rgbd", input_qos="reliable")
    try:
        assert client.wait_for_node(60.0), node.log()

        def play(count: int, future_colour: bool = False, colour: bool = True, closed_loop: bool = False) -> list[int]:
            """Publish ``count`` captures at 10 Hz, or closed-loop (next one once answered, at most 15 s each)."""
            stamps = []
            for _ in range(count):
                stamp = time.time_ns()
                messages = rgbd_messages(stamp)
                if future_colour:
                    stamped(messages["color"], stamp + 1000 * S)
                if not colour:
                    del messages["color"]
                client.publish(messages)
                stamps.append(stamp)
                if closed_loop:
                    client.wait_until(lambda s=stamp: client.answered(s), 15.0)
                else:
                    time.sleep(0.1)  # 10 Hz
            return stamps

        before = play(3, closed_loop=True)
        assert all(client.answered(s) for s in before), node.log()
        play(10, future_colour=True)
        after = play(10, closed_loop=True)  # closed loop: how fast the node is does not matter, a freeze does
        answered = sum(client.answered(s) for s in after)
        assert answered >= 9 and client.answered(after[-1]), (answered, node.log())
        status = last_status(client)
        assert int(status["sync_resets"]) >= 1, status

        # colour stops: depth and camera_info keep coming, nothing can pair -> WARN, then ERROR
        play(30, colour=False)
        status = last_status(client)
        assert status["level"] == "2" and "no frame answered" in status["message"], status
        assert "color" in status["message"] and float(status["stalled_s"]) >= 2.0

        # fx = 1e-30 pushes every point to ~1e30 m: an answered frame of unlabelled points, not one label
        stamp = time.time_ns()
        client.publish(rgbd_messages(stamp, fx=1e-30))
        assert client.wait_until(lambda: client.answered(stamp), 20.0), node.log()
        assert (decode_labels(client.points[stamp]) == UNLABELLED_ID).all()
    finally:
        client.close()
        assert node.stop() == 0, node.log()
