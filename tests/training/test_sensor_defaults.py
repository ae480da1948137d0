"""Sensor-aware defaults: the grid and profile chosen from the data, and the coarse-grid warning."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
from wsseg_training.data.dataset import Dataset, DatasetWriter
from wsseg_training.data.sensor_defaults import (
    apply_sensor_defaults,
    choose_defaults,
    coarse_grid_warning,
    measure_scale,
)
from wsseg_training.engine.config import ConfigError, config_from_dict

from wsseg.core.classes import ClassTable
from wsseg.core.scene import Scene

CLASSES = ClassTable("two", ("support", "object"), ((120, 120, 120), (200, 60, 60)))


def _surface(rng: np.random.Generator, low: list[float], high: list[float], n: int) -> np.ndarray:
    return rng.uniform(low, high, size=(n, 3))


def write_dataset(root: Path, kind: str, scenes: int = 2, seed: int = 0) -> Dataset:
    """Tiny truths of the three kinds, in the sensor frame (the sensor at the origin, z forward/up).

    rgbd: a 1 m table 1 m from the camera with five 10 cm boxes; indoor: a 6 x 5 m room with 0.6 m
    furniture; lidar: 60 m of ground around the sensor with 4 x 1.8 m cars.
    """
    rng = np.random.default_rng(seed)
    sensor = "lidar" if kind == "lidar" else "rgbd"
    with DatasetWriter(root, kind, CLASSES, sensor=sensor) as writer:
        for s in range(scenes):
            parts, instance = [], []
            if kind == "rgbd":
                parts.append(_surface(rng, [-0.5, -0.5, 1.0], [0.5, 0.5, 1.0], 60000))
                boxes = [([x, y, 0.9], [x + 0.1, y + 0.1, 1.0]) for x, y in rng.uniform(-0.4, 0.3, (5, 2))]
                count = 3000
            elif kind == "indoor":
                parts.append(_surface(rng, [-3.0, -2.5, 0.0], [3.0, 2.5, 0.0], 60000))
                boxes = [([x, y, 0.0], [x + 0.6, y + 0.6, 0.6]) for x, y in rng.uniform(-2.5, 1.8, (5, 2))]
                count = 3000
            else:
                ring = rng.uniform(0, 2 * np.pi, 60000)
                radius = rng.uniform(3.0, 30.0, 60000)
                parts.append(np.column_stack([radius * np.cos(ring), radius * np.sin(ring), np.full(60000, -1.7)]))
                boxes = [([x, y, -1.7], [x + 4.0, y + 1.8, -0.2]) for x, y in rng.uniform(-20, 16, (5, 2))]
                count = 3000
            instance.append(np.zeros(len(parts[0]), np.int32))
            for k, (low, high) in enumerate(boxes, start=1):
                parts.append(_surface(rng, low, high, count))
                instance.append(np.full(count, k, np.int32))
            xyz = np.concatenate(parts).astype(np.float32)
            ids = np.concatenate(instance)
            semantic = np.where(ids > 0, 1, 0).astype(np.int16)
            rgb = None if kind == "lidar" else rng.integers(0, 256, (len(xyz), 3), dtype=np.uint8)
            intensity = rng.uniform(0, 1, len(xyz)).astype(np.float32) if kind == "lidar" else None
            writer.add(f"s{s}", Scene(xyz=xyz, rgb=rgb, intensity=intensity, semantic=semantic, instance=ids),
                       split="train")
    return Dataset(root)


@pytest.mark.parametrize(("kind", "voxel", "features"), [
    ("rgbd", 0.015, ("offset", "rgb")),       # 10 cm boxes: ~6 voxels across, inside 0.01-0.02 m
    ("indoor", 0.05, ("offset", "rgb")),      # 0.6 m furniture: the coarse end of 0.02-0.05 m
    ("lidar", 0.10, ("offset", "intensity")),  # 1.8 m wide cars: the coarse end of 0.05-0.10 m
])
def test_chooser_picks_the_documented_grid_and_profile(tmp_path: Path, kind: str, voxel: float,
                                                       features: tuple[str, ...]) -> None:
    dataset = write_dataset(tmp_path / kind, kind)
    scale = measure_scale(dataset)
    choice = choose_defaults(dataset.info.sensor, scale)
    assert (choice.kind, choice.voxel_size_m, choice.profile, choice.features) == (kind, voxel, f"{kind}_small",
                                                                                  features)
    assert "median instance" in choice.reason and f"{kind}_small" in choice.reason
    assert choose_defaults(dataset.info.sensor, scale, gpu=True).profile == f"{kind}_base"
    assert coarse_grid_warning(scale, choice.voxel_size_m) is None


def test_coarse_grid_warns_and_auto_config_is_filled(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path / "rgbd", "rgbd")
    warning = coarse_grid_warning(measure_scale(dataset), 0.08)  # the `cpu` profile's grid on 10 cm boxes
    assert warning is not None and "coarse" in warning and "span fewer than 4 voxels" in warning
    explicit, applied = apply_sensor_defaults(config_from_dict({"profile": "cpu"}), dataset)
    assert explicit.profile == "cpu" and explicit.data.voxel_size_m == 0.08
    assert applied.warning is not None and "from profile cpu" in applied.lines[0]
    auto, applied = apply_sensor_defaults(config_from_dict({}), dataset)
    assert (auto.profile, auto.data.voxel_size_m, auto.data.features) == ("rgbd_small", 0.015, ("offset", "rgb"))
    assert applied.warning is None and "from the data" in applied.lines[0]
    given, _ = apply_sensor_defaults(config_from_dict({"data": {"voxel_size_m": 0.01, "features": ["offset"]}}),
                                     dataset)
    assert (given.profile, given.data.voxel_size_m, given.data.features) == ("rgbd_small", 0.01, ("offset",))
    with pytest.raises(ConfigError, match="'profile' is 'huge'"):
        config_from_dict({"profile": "huge"})


def test_wsseg_train_prints_the_choice_and_the_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from wsseg_training.train_cli import run

    dataset = write_dataset(tmp_path / "rgbd", "rgbd", scenes=1)
    config = tmp_path / "c.yaml"
    config.write_text("profile: tiny\ndevice: cpu\ndata: {crop_max_points: 4000, batch_scenes: 1}\n"
                      "train: {steps: 1, checkpoint_every_steps: 0}\n")
    args = argparse.Namespace(method="full", data=dataset.root, labels=None, config=config, out=tmp_path / "run",
                              resume=False, profile=None, device=None, steps=None, seed=None, split="train",
                              no_progress=True, threads=1)
    assert run(args) == 0
    out = capsys.readouterr().out
    assert "wsseg train: profile tiny (from the config), voxel 0.1 m (from profile tiny)" in out
    assert "wsseg train: WARNING: voxel 0.1 m is coarse for this data" in out
    assert "median instance 10.0 cm across (6 instances)" in out
