"""Synthetic scenes: determinism, labels, sensor physics (noise, occlusion, beams) and saved RGB-D frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.spatial import cKDTree
from wsseg_training.data.dataset import Dataset
from wsseg_training.data.synth.config import Difficulty, IndoorConfig, LidarConfig, OutdoorConfig, RGBDCameraConfig
from wsseg_training.data.synth.generate import split_of, write_synthetic_dataset
from wsseg_training.data.synth.indoor import build_room
from wsseg_training.data.synth.meshes import MeshBuilder, box_between
from wsseg_training.data.synth.outdoor import build_street, synthesize_outdoor
from wsseg_training.data.synth.sensors import (
    Lighting,
    backproject,
    beam_elevations_deg,
    intrinsics_matrix,
    load_frame,
    look_at_pose,
    render_rgbd,
    scan_lidar,
)

from wsseg.cli import main as wsseg_main
from wsseg.core.classes import S3DIS, SYNTHETIC_OUTDOOR

TINY_INDOOR = IndoorConfig(room_side_m=(3.5, 5.0), views=4, camera=RGBDCameraConfig(width_px=64, height_px=48))
SMALL_OUTDOOR = OutdoorConfig(street_half_length_m=40.0, lidar=LidarConfig(beams=16, horizontal_resolution_deg=1.0))


def _arrays(root: Path) -> dict[str, dict[str, np.ndarray]]:
    dataset = Dataset(root)
    return {name: dataset.load(name).arrays() for name in dataset.scene_names()}


@pytest.mark.parametrize("config", [TINY_INDOOR, SMALL_OUTDOOR], ids=["indoor", "outdoor"])
def test_same_seed_gives_identical_arrays(tmp_path: Path, config: IndoorConfig | OutdoorConfig) -> None:
    write_synthetic_dataset(tmp_path / "a", config, scenes=2, seed=7)
    write_synthetic_dataset(tmp_path / "b", config, scenes=2, seed=7)
    write_synthetic_dataset(tmp_path / "c", config, scenes=2, seed=8)
    a, b, c = _arrays(tmp_path / "a"), _arrays(tmp_path / "b"), _arrays(tmp_path / "c")
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].keys() == b[name].keys()
        for field, array in a[name].items():
            assert array.tobytes() == b[name][field].tobytes(), f"{name}.{field} differs for the same seed"
    first = next(iter(a))
    assert a[first]["xyz"].shape != c[first]["xyz"].shape or not np.array_equal(a[first]["xyz"], c[first]["xyz"])


def test_scene_does_not_depend_on_number_of_scenes(tmp_path: Path) -> None:
    write_synthetic_dataset(tmp_path / "one", TINY_INDOOR, scenes=1, seed=3)
    write_synthetic_dataset(tmp_path / "two", TINY_INDOOR, scenes=2, seed=3)
    one, two = _arrays(tmp_path / "one"), _arrays(tmp_path / "two")
    assert np.array_equal(one["room_0000"]["xyz"], two["room_0000"]["xyz"])


def test_rooms_hold_all_s3dis_classes_and_consistent_instances() -> None:
    seen: set[int] = set()
    for seed in range(8):
        mesh, (width, depth, height) = build_room(np.random.default_rng(seed), TINY_INDOOR)
        seen |= set(np.unique(mesh.semantic).tolist())
        assert 3.5 <= width <= 5.0 and 3.5 <= depth <= 5.0 and 2.6 <= height <= 3.4
        # Every object has exactly one class.
        pairs = np.unique(np.stack([mesh.instance, mesh.semantic], axis=1), axis=0)
        assert len(np.unique(pairs[:, 0])) == len(pairs)
    assert seen == set(range(S3DIS.num_classes)), f"missing {set(S3DIS.names) - {S3DIS.names[i] for i in seen}}"


def test_indoor_scene_labels(tmp_path: Path) -> None:
    write_synthetic_dataset(tmp_path, TINY_INDOOR, scenes=1, seed=11)
    scene = Dataset(tmp_path).load("room_0000")
    present = {S3DIS.names[i] for i in np.unique(scene.semantic)}
    assert {"floor", "wall", "ceiling"} <= present and len(present) >= 5
    assert (scene.instance >= 0).all() and (scene.semantic >= 0).all()
    assert scene.rgb is not None and scene.rgb.dtype == np.uint8
    assert len(np.unique(scene.instance)) >= 8
    pairs = np.unique(np.stack([scene.instance, scene.semantic], axis=1), axis=0)
    assert len(np.unique(pairs[:, 0])) == len(pairs), "an instance carries two classes"


def test_streets_hold_all_outdoor_classes() -> None:
    seen: set[int] = set()
    for seed in range(4):
        mesh, sensor = build_street(np.random.default_rng(seed), SMALL_OUTDOOR)
        seen |= set(np.unique(mesh.semantic).tolist())
        assert sensor[2] == pytest.approx(SMALL_OUTDOOR.lidar.sensor_height_m)
    assert seen == set(range(SYNTHETIC_OUTDOOR.num_classes))


def test_default_64_beam_scan_is_hdl64_sized() -> None:
    result = synthesize_outdoor(np.random.default_rng(0), OutdoorConfig())
    scene = result.scene
    assert 90_000 <= scene.num_points <= 135_000
    assert scene.intensity is not None and scene.intensity.min() >= 0.0 and scene.intensity.max() <= 1.0
    present = {SYNTHETIC_OUTDOOR.names[i] for i in np.unique(scene.semantic)}
    assert {"road", "building", "car"} <= present
    ground = scene.xyz[scene.semantic == SYNTHETIC_OUTDOOR.names.index("road")]
    assert np.median(ground[:, 2]) == pytest.approx(-OutdoorConfig().lidar.sensor_height_m, abs=0.05)


def _count_rings(elevation_deg: np.ndarray, spacing_deg: float) -> int:
    values = np.sort(elevation_deg)
    return 1 + int((np.diff(values) > spacing_deg / 2).sum())


@pytest.mark.parametrize("beams", [16, 32])
def test_lidar_beam_count_is_respected(beams: int) -> None:
    builder = MeshBuilder()
    # Ground and a ring of walls around the sensor, so every beam hits something.
    builder.add(box_between((-30, -30, -1), (30, 30, 0)), 0, builder.new_instance(), np.ones(3))
    for low, high in (((-30, 20, 0), (30, 21, 30)), ((-30, -21, 0), (30, -20, 30)),
                      ((20, -30, 0), (21, 30, 30)), ((-21, -30, 0), (-20, 30, 30))):
        builder.add(box_between(low, high), 1, builder.new_instance(), np.ones(3))
    mesh = builder.build()
    lidar = LidarConfig(beams=beams, fov_up_deg=10.0, fov_down_deg=-20.0, horizontal_resolution_deg=2.0,
                        dropout_rate=0.0)
    scan = scan_lidar(mesh, mesh.raycaster(), lidar, np.array([0.0, 0.0, 1.7]), np.random.default_rng(0))
    xyz = scan.xyz.astype(np.float64)
    elevation = np.degrees(np.arctan2(xyz[:, 2], np.hypot(xyz[:, 0], xyz[:, 1])))
    spacing = 30.0 / (beams - 1)
    assert _count_rings(elevation, spacing) == beams
    assert np.allclose(np.sort(np.unique(np.round(elevation, 2))), np.round(beam_elevations_deg(lidar), 2), atol=0.02)


def _plane_scene(distance_m: float) -> MeshBuilder:
    builder = MeshBuilder()
    builder.add(box_between((distance_m, -20, -20), (distance_m + 0.1, 20, 20)), 2, builder.new_instance(), np.ones(3))
    return builder


def test_depth_noise_grows_with_range() -> None:
    camera = RGBDCameraConfig(width_px=80, height_px=60, dropout_rate=0.0, grazing_dropout=0.0, max_range_m=8.0)
    pose = look_at_pose(np.zeros(3), np.array([1.0, 0.0, 0.0]))
    sigmas = []
    for distance in (1.5, 5.0):
        mesh = _plane_scene(distance).build()
        frame = render_rgbd(mesh, mesh.raycaster(), camera, pose, Lighting(direction=np.array([0.0, 0.0, 1.0])),
                            np.random.default_rng(0))
        depth_m = frame.depth[frame.valid()].astype(np.float64) / 1000.0
        assert depth_m.size > 0.95 * frame.depth.size
        sigmas.append(float(np.std(depth_m - distance)))
    expected = [camera.depth_noise_k_per_m * d**2 for d in (1.5, 5.0)]
    assert sigmas[1] > 5 * sigmas[0]
    for measured, model in zip(sigmas, expected, strict=True):
        assert measured == pytest.approx(model, rel=0.25)


def test_box_behind_a_wall_gets_no_points() -> None:
    camera = RGBDCameraConfig(width_px=64, height_px=48)
    pose = look_at_pose(np.zeros(3), np.array([1.0, 0.0, 0.0]))
    light = Lighting(direction=np.array([0.0, 0.0, 1.0]))

    def seen_classes(with_wall: bool) -> set[int]:
        builder = _plane_scene(6.0)  # background, class 2
        builder.add(box_between((3.0, -0.3, -0.3), (3.6, 0.3, 0.3)), 7, builder.new_instance(), np.ones(3))
        if with_wall:
            builder.add(box_between((2.0, -2.0, -2.0), (2.1, 2.0, 2.0)), 5, builder.new_instance(), np.ones(3))
        mesh = builder.build()
        frame = render_rgbd(mesh, mesh.raycaster(), camera, pose, light, np.random.default_rng(0))
        return set(np.unique(frame.semantic[frame.valid()]).tolist())

    assert 7 in seen_classes(with_wall=False)
    assert 7 not in seen_classes(with_wall=True)


def test_frames_back_project_onto_the_fused_scene(tmp_path: Path) -> None:
    write_synthetic_dataset(tmp_path, TINY_INDOOR, scenes=1, seed=5, frames_dir=tmp_path / "frames")
    dataset = Dataset(tmp_path)
    assert dataset.info.scenes["room_0000"]["frames"] == "frames/room_0000"
    scene = dataset.load("room_0000")
    frame_files = sorted((tmp_path / "frames" / "room_0000").glob("frame_*.npz"))
    assert len(frame_files) == TINY_INDOOR.views
    tree = cKDTree(scene.xyz)
    voxel = TINY_INDOOR.fused_voxel_m
    for path in frame_files:
        frame = load_frame(path)
        h, w = TINY_INDOOR.camera.height_px, TINY_INDOOR.camera.width_px
        assert frame.depth.shape == frame.semantic.shape == frame.instance.shape == (h, w)
        assert frame.colour.shape == (h, w, 3)
        assert np.allclose(frame.intrinsics, intrinsics_matrix(TINY_INDOOR.camera))
        assert frame.intrinsics[0, 2] == pytest.approx((w - 1) / 2)
        assert np.allclose(frame.pose[:3, :3] @ frame.pose[:3, :3].T, np.eye(3), atol=1e-9)
        xyz, pixels = backproject(frame.depth, frame.intrinsics, frame.pose)
        distance, nearest = tree.query(xyz)
        assert np.quantile(distance, 0.99) <= voxel * np.sqrt(3) + 1e-3
        same = scene.semantic[nearest] == frame.semantic.reshape(-1)[pixels]
        assert same.mean() > 0.9


def test_dataset_yaml_records_knobs_and_splits(tmp_path: Path) -> None:
    config = IndoorConfig(room_side_m=(3.5, 4.0), views=2, camera=RGBDCameraConfig(width_px=32, height_px=24),
                          difficulty=Difficulty(colour_overlap=0.3, clutter_density=2.0))
    write_synthetic_dataset(tmp_path, config, scenes=5, seed=1)
    data = yaml.safe_load((tmp_path / "dataset.yaml").read_text())
    synth = data["extra"]["synth"]
    assert synth["seed"] == 1 and synth["kind"] == "indoor"
    assert synth["config"]["difficulty"]["colour_overlap"] == 0.3
    assert synth["config"]["difficulty"]["clutter_density"] == 2.0
    assert synth["config"]["camera"]["width_px"] == 32
    assert data["splits"] == {"train": ["room_0000", "room_0001", "room_0002", "room_0003"], "val": ["room_0004"]}
    assert [split_of(i, 20, 0.2) for i in range(20)].count("val") == 4


def test_cli_writes_dataset_with_knobs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "lidar"
    rc = wsseg_main(["data", "synth", "--kind", "outdoor", "--scenes", "2", "--seed", "4", "--out", str(out),
                     "--beams", "32", "--h-res-deg", "0.8", "--noise-scale", "0.5"])
    assert rc == 0
    assert "wrote 2 outdoor scenes" in capsys.readouterr().out
    dataset = Dataset(out)
    assert dataset.info.sensor == "lidar" and dataset.classes == SYNTHETIC_OUTDOOR
    assert dataset.info.extra["synth"]["config"]["lidar"]["beams"] == 32
    assert dataset.info.extra["synth"]["config"]["difficulty"]["noise_scale"] == 0.5
    scene = dataset.load("scan_0000")
    assert scene.intensity is not None and scene.rgb is None


def test_cli_rejects_bad_knobs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = wsseg_main(["data", "synth", "--kind", "indoor", "--out", str(tmp_path), "--colour-overlap", "1.5"])
    assert rc == 1 and "colour_overlap" in capsys.readouterr().err
    rc = wsseg_main(["data", "synth", "--kind", "indoor", "--out", str(tmp_path), "--beams", "32"])
    assert rc == 1 and "beams" in capsys.readouterr().err
    with pytest.raises(ValueError, match="beams"):
        LidarConfig(beams=0)
