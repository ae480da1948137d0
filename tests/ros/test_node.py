"""segment_node with the real middleware (rclpy + Fast DDS), each node in its own process.

The node is started as the launch file starts it (``--ros-args --params-file config/segment.yaml -p
model:=...``) on a domain id of its own; the test process is the checker (and, except in the first
test, the publisher).  Offline reference: ``Segmenter`` on the same arrays (what ``wsseg infer`` runs).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from sensor_msgs.msg import PointField
from std_msgs.msg import Header
from wsseg_export.node_replay import (
    FASTDDS_PROFILE,
    NodeClient,
    NodeProcess,
    decode_labels,
    free_domain_id,
    run_replay,
    start_segment_node,
)

from tests.conftest import SHARED_DATA, make_box_scene
from wsseg.core.classes import UNLABELLED_ID
from wsseg.core.scene import Scene, save_scene
from wsseg.ros.conversions import cloud_to_msg
from wsseg.ros.replay_sources import ReplayFrame, load_frames
from wsseg.runtime.segmenter import Segmenter

REPO = Path(__file__).resolve().parents[2]
PARAMS = REPO / "config" / "segment.yaml"
MOSD = SHARED_DATA / "mosd" / "learn"


def box_frames(count: int, n: int = 4000) -> list[ReplayFrame]:
    frames = []
    for seed in range(count):
        xyz, rgb, _ = make_box_scene(seed=10 + seed, n=n)
        frames.append(ReplayFrame(f"box{seed}", xyz=xyz, rgb=rgb, width=n))
    return frames


def write_dataset(root: Path, frames: list[ReplayFrame]) -> Path:
    (root / "scenes").mkdir(parents=True)
    scenes = {}
    for frame in frames:
        save_scene(root / "scenes" / f"{frame.name}.npz", Scene(xyz=frame.xyz, rgb=frame.rgb))
        scenes[frame.name] = {"file": f"scenes/{frame.name}.npz", "points": int(frame.xyz.shape[0])}
    (root / "dataset.yaml").write_text(yaml.safe_dump({
        "format": "wsseg-dataset", "format_version": 1, "name": "boxes", "sensor": "rgbd", "units": "metres",
        "classes": {"name": "boxes", "names": ["floor", "wall", "box"], "palette": [[1, 2, 3], [4, 5, 6], [7, 8, 9]]},
        "splits": {"train": list(scenes)}, "scenes": scenes}))
    return root


def test_replay_node_to_segment_node_to_checker(tiny_bundle: Path, tmp_path: Path) -> None:
    """Three processes: replay_node publishes a dataset, the node segments, this process checks every frame."""
    frames = box_frames(3)
    dataset = write_dataset(tmp_path / "data", frames)
    domain = free_domain_id()
    node = start_segment_node(tiny_bundle, PARAMS, domain, log_path=tmp_path / "node.log",
                              fastdds_profile=FASTDDS_PROFILE)
    client = NodeClient(domain, fastdds_profile=FASTDDS_PROFILE)
    replay = None
    try:
        assert client.wait_for_node(60.0), node.log()
        replay = NodeProcess("replay_node", [
            "-p", f"source:={dataset}", "-p", "rate_hz:=3.0", "-p", "frame_id:=camera", "-p", "loop:=true",
            "-r", "points:=/segment_node/input/points"], domain, tmp_path / "replay.log", FASTDDS_PROFILE)
        # the replay loops, so a best-effort frame lost during discovery comes round again
        assert client.wait_until(lambda: len(client.points) >= 5, timeout_s=40.0), node.log() + replay.log()
    finally:
        if replay is not None:
            replay.stop()
        client.close()
        assert node.stop() == 0, node.log()
    segmenter = Segmenter(tiny_bundle, engine="onnxruntime-cpu")
    expected = [segmenter.segment(f.xyz, f.rgb)[0] for f in frames]
    seen = set()
    for msg in client.points.values():
        assert msg.header.frame_id == "camera" and (msg.width, msg.height) == (4000, 1)
        labels = decode_labels(msg)
        match = [k for k, e in enumerate(expected) if np.array_equal(labels, e)]
        assert match, "a frame's labels differ from the offline Segmenter"
        seen.update(match)
    assert seen == {0, 1, 2}


@pytest.mark.parametrize(("qos", "profile"), [("sensor_data", FASTDDS_PROFILE), ("reliable", None)])
def test_organized_kinect_frames_as_points_keep_their_layout(tiny_bundle: Path, tmp_path: Path, qos: str,
                                                             profile: Path | None) -> None:
    """Real 640x480 frames (6 MB PointCloud2 in, 6 MB out), both input QoS; best effort via the shipped profile."""
    files = sorted(MOSD.glob("*.pcd"))[:2]
    if not files:
        pytest.skip(f"{MOSD} not available")
    frames = [load_frames(f)[0] for f in files]
    stats = run_replay(tiny_bundle, frames, PARAMS, extra_params={"input_qos": qos}, fastdds_profile=profile,
                       log_path=tmp_path / "node.log", timeout_s=45.0)
    assert stats.frames_received == len(frames), (tmp_path / "node.log").read_text()
    segmenter = Segmenter(tiny_bundle, engine="onnxruntime-cpu")
    for frame, labels in zip(frames, stats.labels, strict=True):
        assert labels is not None and labels.shape == (640 * 480,)
        np.testing.assert_array_equal(labels, segmenter.segment(frame.xyz, frame.rgb)[0])
        assert (labels[~np.isfinite(frame.xyz).all(axis=1)] == UNLABELLED_ID).all()


@pytest.mark.parametrize("depth_encoding", ["16UC1", "32FC1"])
def test_rgbd_frames_give_a_matching_label_image(tiny_bundle: Path, tmp_path: Path, depth_encoding: str) -> None:
    """Depth + colour + camera_info (a real Kinect frame, a synthetic one) -> organized output + label image."""
    frames = []
    files = sorted(MOSD.glob("*.pcd"))[:1]
    if files:
        frames.append(load_frames(files[0])[0].as_rgbd())
    h, w = 48, 64  # a small synthetic RGB-D frame: a tilted plane with a colour ramp and holes
    k = np.array([[60.0, 0, 31.5], [0, 60.0, 23.5], [0, 0, 1]])
    depth = (1.0 + 0.01 * np.arange(h)[:, None] + 0.0 * np.arange(w)[None, :]).astype(np.float32)
    depth[::5, ::7] = np.nan
    colour = np.stack(np.broadcast_arrays(np.arange(w)[None, :] * 4, np.arange(h)[:, None] * 5, 90), -1)
    frames.append(ReplayFrame("synthetic", depth_m=depth, colour=colour.astype(np.uint8), intrinsics=k,
                              width=w, height=h))
    stats = run_replay(tiny_bundle, frames, PARAMS, mode="rgbd", depth_encoding=depth_encoding,
                       log_path=tmp_path / "node.log", timeout_s=45.0)
    assert stats.frames_received == len(frames), (tmp_path / "node.log").read_text()
    segmenter = Segmenter(tiny_bundle, engine="onnxruntime-cpu")
    for frame, labels, image in zip(frames, stats.labels, stats.label_images, strict=True):
        cloud = frame.as_cloud()
        if depth_encoding == "16UC1":  # what the node sees: millimetres
            from wsseg.ros.rgbd import backproject_depth, depth_to_millimetres

            mm = depth_to_millimetres(frame.depth_m).astype(np.float32) * np.float32(0.001)
            mm[mm == 0] = np.nan
            cloud = ReplayFrame("mm", xyz=backproject_depth(mm, frame.intrinsics), rgb=cloud.rgb,
                                width=frame.width, height=frame.height)
        expected = segmenter.segment(cloud.xyz, cloud.rgb)[0]
        assert image is not None and image.shape == (frame.height, frame.width)
        np.testing.assert_array_equal(image.ravel(), expected)
        np.testing.assert_array_equal(labels, expected)
        assert (image.ravel()[np.isnan(frame.depth_m).ravel()] == UNLABELLED_ID).all()


def bad_messages(good: object) -> list[tuple[str, object]]:
    """One malformed copy of ``good`` per input class the node must survive."""
    def copy() -> object:
        xyz, rgb, _ = make_box_scene(seed=30, n=2000)
        return cloud_to_msg(Header(), xyz, 2000, 1, rgb=rgb)

    out = []
    msg = copy()
    msg.fields = [f for f in msg.fields if f.name != "x"]
    out.append(("missing_xyz", msg))
    msg = copy()
    msg.fields[2].datatype = PointField.INT8
    out.append(("datatype", msg))
    msg = copy()
    msg.data = bytes(msg.data)[:-3]
    out.append(("data_length", msg))
    msg = copy()
    msg.fields = [f for f in msg.fields if f.name != "rgb"]
    out.append(("missing_rgb", msg))
    nan = cloud_to_msg(Header(), np.full((50, 3), np.nan, np.float32), 50, 1, rgb=np.zeros((50, 3), np.uint8))
    out.append(("nan", nan))
    out.append(("empty", cloud_to_msg(Header(), np.zeros((0, 3), np.float32), 0, 1, rgb=np.zeros((0, 3), np.uint8))))
    xyz, rgb, _ = make_box_scene(seed=31, n=1000)
    big = cloud_to_msg(Header(), xyz, 1000, 1, rgb=rgb)
    big.is_bigendian = True  # a big-endian payload that really is big-endian: decoded, not rejected
    records = np.frombuffer(big.data, np.uint8).reshape(1000, big.point_step).copy()
    for f in big.fields:
        records[:, f.offset:f.offset + 4] = records[:, f.offset:f.offset + 4][:, ::-1]
    big.data = records.tobytes()
    out.append(("bigendian", big))
    return out


def test_malformed_inputs_are_survived_and_diagnosed(tiny_bundle: Path, tmp_path: Path) -> None:
    domain = free_domain_id()
    node = start_segment_node(tiny_bundle, PARAMS, domain, {"input_qos": "reliable", "diagnostics_period_s": 0.2},
                              log_path=tmp_path / "node.log")
    client = NodeClient(domain, input_qos="reliable")
    xyz, rgb, _ = make_box_scene(seed=32, n=3000)
    expected = Segmenter(tiny_bundle, engine="onnxruntime-cpu").segment(xyz, rgb)[0]
    try:
        assert client.wait_for_node(60.0), node.log()
        stamp = 1000
        cases = bad_messages(None)
        for _, bad in cases:
            stamp += 1
            bad.header.stamp.sec = stamp
            client.publish({"points": bad})
            time.sleep(0.3)  # keep-latest: let the bad frame be taken before the good one
            stamp += 1
            good = cloud_to_msg(Header(), xyz, 3000, 1, rgb=rgb)
            good.header.stamp.sec = stamp
            client.publish({"points": good})
            assert client.wait_until(lambda s=stamp: s * 1_000_000_000 in client.points, 20.0), node.log()
            np.testing.assert_array_equal(decode_labels(client.points[stamp * 1_000_000_000]), expected)
        assert node.alive()
        time.sleep(0.5)
        answered = {k // 1_000_000_000 for k in client.points}
        for index, (cause, _) in enumerate(cases):
            if cause in ("nan", "empty", "bigendian"):  # readable: answered, all unlabelled / decoded
                assert 1001 + 2 * index in answered, cause
        big_stamp = (1001 + 2 * [c for c, _ in cases].index("bigendian")) * 1_000_000_000
        big_xyz, big_rgb, _ = make_box_scene(seed=31, n=1000)
        np.testing.assert_array_equal(decode_labels(client.points[big_stamp]),
                                      Segmenter(tiny_bundle, engine="onnxruntime-cpu").segment(big_xyz, big_rgb)[0])
        with client.lock:
            statuses = list(client.diagnostics)
        assert any(s.level == b"\x02" and "rejected" in s.message for s in statuses)
        last = {kv.key: kv.value for kv in statuses[-1].values}
        for cause in ("missing_xyz", "datatype", "data_length", "missing_rgb"):
            assert f"{cause}=1" in last["rejected_by_cause"]
        assert last["engine_active"] == "onnxruntime-cpu" and float(last["total_ms_median"]) > 0
    finally:
        client.close()
        assert node.stop() == 0, node.log()
    log = node.log()
    assert "no field 'x'" in log and "field 'z' has datatype INT8" in log and "expected row_step" in log


def test_no_backlog_when_input_outruns_inference(tiny_bundle: Path, tmp_path: Path) -> None:
    """60 frames at 40 Hz into a node that needs longer than 25 ms per frame: frames are dropped, never queued."""
    frames = box_frames(2, n=150_000)
    stats = run_replay(tiny_bundle, frames, PARAMS, rate_hz=40.0, repeat=30, collect_labels=True,
                       extra_params={"input_qos": "reliable"}, log_path=tmp_path / "node.log")
    assert stats.labels[-1] is not None, "the newest frame must be processed"
    assert stats.frames_received < stats.frames_sent
    assert int(stats.diagnostics["frames_dropped"]) > 0
    summary = stats.summary()
    assert summary["wait_ms_p95"] < 2 * summary["total_ms_median"] + 50, summary  # no queueing before the worker


def test_invalid_parameter_stops_the_node_with_its_name(tiny_bundle: Path, tmp_path: Path) -> None:
    node = start_segment_node(tiny_bundle, PARAMS, free_domain_id(), {"max_range_m": 1.0, "min_range_m": 2.0},
                              log_path=tmp_path / "node.log")
    node.process.wait(60)
    assert node.stop() == 1
    assert "max_range_m" in node.log()
    missing = start_segment_node(tmp_path / "nowhere", PARAMS, free_domain_id(), log_path=tmp_path / "missing.log")
    missing.process.wait(60)
    assert missing.stop() == 1 and "nowhere" in missing.log()


def test_replay_node_refuses_scene_frame_for_depth_images(tmp_path: Path) -> None:
    """``scene_frame`` moves clouds, not depth images: the replay node exits 1 naming the parameter."""
    h, w = 4, 5
    np.savez(tmp_path / "frame_0000.npz", depth=np.full((h, w), 1500, dtype=np.uint16),
             colour=np.zeros((h, w, 3), dtype=np.uint8), intrinsics=np.array([[5.0, 0, 2], [0, 5.0, 1.5], [0, 0, 1]]),
             pose=np.eye(4))
    replay = NodeProcess("replay_node", ["-p", f"source:={tmp_path / 'frame_0000.npz'}", "-p", "mode:=rgbd",
                                         "-p", "scene_frame:=true", "-p", "wait_for_subscribers_s:=0.0"],
                         free_domain_id(), tmp_path / "replay.log")
    replay.process.wait(60)
    assert replay.stop() == 1 and "scene_frame" in replay.log()


def test_node_applies_the_model_frame_transform(tiny_bundle: Path, tmp_path: Path) -> None:
    """``-p model_frame_transform:=[...]`` on the real node: labels == offline Segmenter on the moved points."""
    from wsseg.core.transforms import pose_matrix

    transform = [0.3, 0.0, 1.2, -1.5708, 0.0, -1.5708]
    frame = box_frames(1)[0]
    stats = run_replay(tiny_bundle, [frame], PARAMS, extra_params={"model_frame_transform": transform},
                       log_path=tmp_path / "node.log")
    assert stats.frames_received == 1, (tmp_path / "node.log").read_text()
    pose = pose_matrix(transform)
    assert pose is not None
    moved = (frame.xyz.astype(np.float64) @ pose[:3, :3].T + pose[:3, 3]).astype(np.float32)
    expected = Segmenter(tiny_bundle, engine="onnxruntime-cpu").segment(moved, frame.rgb)[0]
    np.testing.assert_array_equal(stats.labels[0], expected)


def test_free_domain_ids_are_not_handed_out_twice_by_one_process() -> None:
    """A module-scoped node keeps its domain while later tests start more: sharing one made a test read another
    node's diagnostics (a flaky stall test)."""
    issued: set[int] = set()
    ids = [free_domain_id(issued) for _ in range(100)]
    assert sorted(ids) == list(range(1, 101))
    assert free_domain_id(issued) in range(1, 101) and len(issued) == 1  # all 100 used: start again
