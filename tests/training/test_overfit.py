"""The U-Net can learn: 100 Adam steps memorise one small labelled scene (~4.5k voxels, 5 classes).

Runs single-threaded: on a shared 2-core machine two OpenMP threads were up to 4x slower per step.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from wsseg_training.model import SparseUNet, preprocess_config_for, to_torch, unet_config_for

from wsseg.core.preprocess import prepare_cloud
from wsseg.core.voxelize import devoxelize

CLASSES = ("floor", "wall", "box", "sphere", "cylinder")


def labelled_room(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A floor, a wall, a box, a sphere and a cylinder, sampled on their surfaces.

    Returns xyz (N, 3) float32 metres, rgb (N, 3) uint8, labels (N,) int64 index into CLASSES.
    Box and cylinder share a colour, so telling them apart needs geometry.
    """
    rng = np.random.default_rng(seed)
    parts = []
    n = 1500
    floor = np.c_[rng.uniform(-1.5, 1.5, (n, 2)), np.zeros(n)]
    wall = np.c_[rng.uniform(-1.5, 1.5, n), np.full(n, 1.5), rng.uniform(0, 1.5, n)]
    # Box 0.5 m cube standing on the floor at (-0.7, -0.5): sample its 5 visible faces.
    face = rng.integers(0, 5, n)
    u, v = rng.uniform(0, 0.5, n), rng.uniform(0, 0.5, n)
    box = np.select(
        [face[:, None] == k for k in range(5)],
        [np.c_[u, v, np.full(n, 0.5)], np.c_[u, np.zeros(n), v], np.c_[u, np.full(n, 0.5), v],
         np.c_[np.zeros(n), u, v], np.c_[np.full(n, 0.5), u, v]],
    ) + np.array([-0.95, -0.75, 0.0])
    direction = rng.normal(size=(n, 3))
    sphere = 0.35 * direction / np.linalg.norm(direction, axis=1, keepdims=True) + np.array([0.6, -0.4, 0.35])
    angle, height = rng.uniform(0, 2 * np.pi, n), rng.uniform(0, 1.0, n)
    cylinder = np.c_[0.2 * np.cos(angle) + 0.3, 0.2 * np.sin(angle) + 0.7, height]
    colours = np.array([[140, 110, 80], [220, 220, 210], [90, 90, 100], [200, 40, 40], [90, 90, 100]], dtype=float)
    for label, points in enumerate((floor, wall, box, sphere, cylinder)):
        parts.append((points, np.clip(colours[label] + rng.normal(0, 12, (n, 3)), 0, 255), np.full(n, label)))
    xyz = np.concatenate([p[0] for p in parts]) + rng.normal(0, 0.005, (5 * n, 3))
    rgb = np.concatenate([p[1] for p in parts]).astype(np.uint8)
    labels = np.concatenate([p[2] for p in parts]).astype(np.int64)
    return xyz.astype(np.float32), rgb, labels


def voxel_majority(labels: np.ndarray, inverse: np.ndarray, num_voxels: int, num_classes: int) -> np.ndarray:
    """(M,) int64 most frequent point label of every voxel."""
    votes = np.zeros((num_voxels, num_classes), dtype=np.int64)
    np.add.at(votes, (inverse, labels), 1)
    return votes.argmax(axis=1)


def test_overfits_one_scene() -> None:
    torch.manual_seed(0)
    xyz, rgb, labels = labelled_room()
    net_input = prepare_cloud(preprocess_config_for("cpu", voxel_size_m=0.05), xyz, rgb)
    features, maps = to_torch(net_input)
    voxel_labels = torch.from_numpy(voxel_majority(labels, net_input.grid.inverse, features.shape[0], len(CLASSES)))
    model = SparseUNet(unet_config_for("cpu", in_channels=features.shape[1], num_classes=len(CLASSES)))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)

    start = time.perf_counter()
    losses = []
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(100):
            optimiser.zero_grad()
            logits = model.forward_features(features, maps, compact=True).logits
            loss = torch.nn.functional.cross_entropy(logits, voxel_labels)
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
    finally:
        torch.set_num_threads(threads)
    elapsed = time.perf_counter() - start

    model.eval()
    with torch.no_grad():
        voxel_prediction = model(features, *maps).argmax(dim=1).numpy()
    point_accuracy = float((devoxelize(voxel_prediction, net_input.grid) == labels).mean())

    assert np.mean(losses[-10:]) < 0.1 * np.mean(losses[:5]), f"loss {losses[:5]} -> {losses[-10:]}"
    assert point_accuracy > 0.95, f"point accuracy {point_accuracy:.3f} after {len(losses)} steps ({elapsed:.1f} s)"
