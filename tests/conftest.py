"""Shared fixtures: tiny labelled scenes, a trained-ish tiny checkpoint and its exported bundle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def make_box_scene(seed: int = 0, n: int = 6000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A floor (class 0), a wall (class 1) and a box on the floor (class 2), with class-dependent colours.

    Returns xyz (N, 3) float32 metres, rgb (N, 3) uint8, semantic (N,) int64.
    """
    rng = np.random.default_rng(seed)
    k = n // 3
    floor = np.column_stack([rng.uniform(0, 3, k), rng.uniform(0, 3, k), rng.normal(0, 0.005, k)])
    wall = np.column_stack([rng.uniform(0, 3, k), np.full(k, 3.0) + rng.normal(0, 0.005, k), rng.uniform(0, 2, k)])
    box = rng.uniform([1.0, 1.0, 0.0], [1.6, 1.6, 0.6], size=(n - 2 * k, 3))
    xyz = np.concatenate([floor, wall, box]).astype(np.float32)
    semantic = np.repeat(np.arange(3), [k, k, n - 2 * k])
    base = np.array([[120, 100, 80], [200, 200, 190], [40, 90, 160]], dtype=np.float64)
    rgb = np.clip(base[semantic] + rng.normal(0, 12, (n, 3)), 0, 255).astype(np.uint8)
    return xyz, rgb, semantic



@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for the tests of a module (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``):
    small trainings run faster and reproducibly so; the previous count comes back after the module."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

def make_box_dataset(root: Path, train: int = 3, val: int = 1, points: int = 3000, supervoxels: bool = False) -> Any:
    """A dataset of box scenes (``make_box_scene`` seeds 0..train+val-1; the last ``val`` are the val split),
    classes floor / wall / box; ``supervoxels``: 0.4 m grid cells as super-voxels."""
    from wsseg_training.data.dataset import Dataset, DatasetWriter

    from wsseg.core.classes import ClassTable
    from wsseg.core.scene import Scene

    classes = ClassTable("boxes", ("floor", "wall", "box"), ((100, 80, 60), (200, 200, 200), (40, 90, 160)))
    with DatasetWriter(root, "boxes", classes, sensor="rgbd") as writer:
        for i in range(train + val):
            xyz, rgb, semantic = make_box_scene(seed=i, n=points)
            cells = np.floor(xyz / 0.4).astype(np.int64)
            supervoxel = (cells[:, 0] * 100 + cells[:, 1] * 10 + cells[:, 2]).astype(np.int32) if supervoxels else None
            writer.add(f"s{i}", Scene(xyz=xyz, rgb=rgb, semantic=semantic.astype(np.int16), supervoxel=supervoxel),
                       split="train" if i < train else "val")
    return Dataset(root)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-level checkpoint whose BatchNorm statistics are non-trivial (a few train-mode steps)."""
    from wsseg_training.checkpoint import make_checkpoint, save_checkpoint
    from wsseg_training.fit import LabelledInput, fit
    from wsseg_training.model.profiles import preprocess_config_for, unet_config_for
    from wsseg_training.model.unet import SparseUNet

    from wsseg.core.classes import ClassTable
    from wsseg.core.features import FeatureConfig
    from wsseg.core.preprocess import prepare_cloud

    config = preprocess_config_for("tiny", FeatureConfig(names=("offset", "rgb")), voxel_size_m=0.1)
    xyz, rgb, semantic = make_box_scene()
    scene = LabelledInput(prepare_cloud(config, xyz, rgb=rgb), semantic)
    model = SparseUNet(unet_config_for("tiny", config.features.num_channels, 3))
    fit(model, [scene], steps=15, lr=1e-2, progress=False)
    classes = ClassTable("boxes", ("floor", "wall", "box"), ((100, 80, 60), (200, 200, 200), (40, 90, 160)))
    checkpoint = make_checkpoint(model.eval(), config, classes, sensor="rgbd", provenance={"profile": "tiny"})
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", checkpoint)


def _exported(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """``wsseg export`` of ``checkpoint`` into a fresh temporary folder ``.../name``."""
    from wsseg_export.onnx_export import export_bundle

    out = tmp_path_factory.mktemp("bundle") / name
    export_bundle(checkpoint, out)
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _exported(tiny_checkpoint, tmp_path_factory, "tiny_bundle")


@pytest.fixture(scope="session")
def instance_checkpoint(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_checkpoint`` plus a WS3D offset head (seeded random weights) with its clustering settings (class
    ``box`` has instances), the way ``ws3d`` training stores it in ``model.pt``."""
    import torch
    from wsseg_training.checkpoint import load_checkpoint, save_checkpoint
    from wsseg_training.methods.common.heads import heads_to_checkpoint
    from wsseg_training.methods.ws3d.instance import OFFSETS_OUTPUT, offset_head, with_clustering

    from wsseg.core.instances import InstanceConfig

    checkpoint = load_checkpoint(tiny_checkpoint)
    torch.manual_seed(0)
    config = InstanceConfig(classes=(2,), radius_m=0.15, shifted_radius_m=0.15, min_points=5)
    head = with_clustering(offset_head(int(checkpoint["unet"]["channels"][0])), config)
    checkpoint["heads"] = heads_to_checkpoint({OFFSETS_OUTPUT: head})
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "instances.pt", checkpoint)


@pytest.fixture(scope="session")
def instance_bundle(instance_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _exported(instance_checkpoint, tmp_path_factory, "instance_bundle")


#: base colours of :func:`make_two_box_room`'s classes (floor, wall, box)
ROOM_RGB = np.array([[120, 100, 80], [200, 200, 190], [40, 90, 160]], dtype=np.float64)


def make_two_box_room(seed: int, n: int = 1200) -> Any:
    """Floor, a wall and two boxes (two instances of class ``box``); super-voxels = 0.5 m cells within each object
    (classes 0 floor, 1 wall, 2 box; a ``wsseg.core.scene.Scene``).

    The super-voxels follow object boundaries, as a good over-segmentation does; coverage by clicks alone is
    a handful of cells, so propagation has room to grow.
    """
    from wsseg.core.scene import Scene

    rng = np.random.default_rng(seed)
    k = n // 4
    floor = np.column_stack([rng.uniform(0, 3, k), rng.uniform(0, 3, k), rng.normal(0, 0.005, k)])
    wall = np.column_stack([rng.uniform(0, 3, k), np.full(k, 3.0) + rng.normal(0, 0.005, k), rng.uniform(0, 2, k)])
    box1 = rng.uniform([0.4, 0.4, 0.0], [1.1, 1.1, 0.7], size=(k, 3))
    box2 = rng.uniform([1.8, 1.6, 0.0], [2.6, 2.4, 0.5], size=(n - 3 * k, 3))
    xyz = np.concatenate([floor, wall, box1, box2]).astype(np.float32)
    semantic = np.repeat([0, 1, 2, 2], [k, k, k, n - 3 * k]).astype(np.int16)
    instance = np.repeat([0, 1, 2, 3], [k, k, k, n - 3 * k]).astype(np.int32)
    rgb = np.clip(ROOM_RGB[semantic] + rng.normal(0, 12, (n, 3)), 0, 255).astype(np.uint8)
    cell = np.floor(xyz[:, :2] / 0.5).astype(np.int64)
    supervoxel = (instance.astype(np.int64) * 100 + cell[:, 0] * 10 + cell[:, 1]).astype(np.int32)
    return Scene(xyz=xyz, rgb=rgb, semantic=semantic, instance=instance, supervoxel=supervoxel)
