"""Super-voxels: gaps are never crossed, metrics equal hand-computed values, the command stores them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from wsseg_training.data.dataset import Dataset, DatasetWriter
from wsseg_training.data.supervoxel_metrics import (
    achievable_accuracy,
    boundary_scores,
    evaluate_supervoxels,
    undersegmentation_error,
)
from wsseg_training.data.supervoxels import SupervoxelParams, compute_supervoxels

from wsseg.cli import main as wsseg_main
from wsseg.core.classes import S3DIS
from wsseg.core.scene import Scene, load_scene

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def plane_patch(x0: float, x1: float, y0: float, y1: float, z: float, spacing: float) -> np.ndarray:
    xs, ys = np.meshgrid(np.arange(x0, x1, spacing), np.arange(y0, y1, spacing), indexing="ij")
    return np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, z)], axis=1).astype(np.float32)


def box_surface(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, density: float) -> np.ndarray:
    """Random points on the 5 visible faces (no bottom) of an axis-aligned box, ~density points/m²."""
    size = hi - lo
    faces = []
    for axis in range(3):
        for side in (0, 1):
            if axis == 2 and side == 0:
                continue
            u, v = [a for a in range(3) if a != axis]
            n = max(1, int(density * size[u] * size[v]))
            pts = lo + rng.random((n, 3)) * size
            pts[:, axis] = lo[axis] if side == 0 else hi[axis]
            faces.append(pts)
    return np.concatenate(faces).astype(np.float32)


def tabletop_scene(seed: int = 0) -> Scene:
    """A floor (class floor) with three boxes of distinct colours (class table / chair / clutter)."""
    rng = np.random.default_rng(seed)
    parts = [(plane_patch(0, 3, 0, 3, 0.0, 0.03), 1, 0, (120, 120, 120))]
    boxes = [((0.3, 0.3, 0.0), (0.9, 0.8, 0.6), 7, (200, 50, 50)),
             ((1.5, 1.4, 0.0), (2.0, 2.1, 0.45), 8, (50, 200, 60)),
             ((2.2, 0.4, 0.0), (2.7, 0.9, 0.3), 12, (40, 60, 210))]
    for i, (lo, hi, cls, rgb) in enumerate(boxes):
        pts = box_surface(rng, np.array(lo), np.array(hi), 1500.0)
        parts.append((pts, cls, i + 1, rgb))
    xyz = np.concatenate([p for p, *_ in parts])
    keep = np.ones(len(xyz), dtype=bool)
    # Floor points under a box are not visible.
    for lo, hi, *_ in boxes:
        under = (xyz[:, 2] == 0) & (xyz[:, 0] > lo[0]) & (xyz[:, 0] < hi[0]) & (xyz[:, 1] > lo[1]) & (xyz[:, 1] < hi[1])
        keep &= ~under
    semantic = np.concatenate([np.full(len(p), c, np.int16) for p, c, _, _ in parts])
    instance = np.concatenate([np.full(len(p), i, np.int32) for p, _, i, _ in parts])
    rgb = np.concatenate([np.tile(np.array(c, np.uint8), (len(p), 1)) for p, _, _, c in parts])
    rgb = np.clip(rgb.astype(np.int16) + rng.integers(-10, 11, rgb.shape), 0, 255).astype(np.uint8)
    return Scene(xyz=xyz[keep], rgb=rgb[keep], semantic=semantic[keep], instance=instance[keep])


@pytest.mark.parametrize("method", ["felzenszwalb", "slic", "cutpursuit"])
def test_supervoxels_never_cross_a_clean_gap(method: str) -> None:
    # Two coplanar patches, same colour and normal, 10 cm apart: only the gap separates them.
    left = plane_patch(0.0, 1.0, 0.0, 1.0, 0.0, 0.02)
    right = plane_patch(1.1, 2.1, 0.0, 1.0, 0.0, 0.02)
    xyz = np.concatenate([left, right])
    side = np.r_[np.zeros(len(left), int), np.ones(len(right), int)]
    rgb = np.full((len(xyz), 3), 128, np.uint8)
    # A huge threshold / seed spacing would merge everything that is connected.
    params = SupervoxelParams(method=method, voxel_size_m=0.0, threshold=1e6, seed_spacing_m=3.0, min_points=5000,
                              regularization=1e6)
    sv = compute_supervoxels(xyz, rgb, params)
    assert sv.dtype == np.int32 and sv.shape == (len(xyz),)
    for s in np.unique(sv):
        assert np.unique(side[sv == s]).size == 1, f"super-voxel {s} spans the gap"
    assert np.unique(sv).size == 2  # everything connected was merged


def test_metrics_equal_hand_computed_values() -> None:
    # 10 points on a line, spacing 1 m: ground truth A = 0..5, B = 6..9.
    xyz = np.stack([np.arange(10.0), np.zeros(10), np.zeros(10)], axis=1)
    gt = np.array([0] * 6 + [1] * 4)
    sv = np.array([0, 0, 0, 1, 1, 1, 1, 1, 2, 2])
    # USE: A: s0 min(3, 0) + s1 min(3, 2); B: s1 min(2, 3) + s2 min(2, 0) -> 4 / 10.
    assert undersegmentation_error(sv, gt) == pytest.approx(0.4)
    # ASA: (3 + 3 + 2) / 10.
    assert achievable_accuracy(sv, gt) == pytest.approx(0.8)
    # k = 2 neighbours: GT boundary points {5, 6}; super-voxel boundary points {2, 3, 7, 8}.
    assert boundary_scores(xyz, sv, gt, k=2) == (0.0, 0.0)
    recall, _ = boundary_scores(xyz, sv, gt, k=2, tolerance_m=1.0)  # 6 has 7 within 1 m, 5 has none
    assert recall == pytest.approx(0.5)
    # An over-segmentation that keeps the true boundary: USE 0, ASA 1, BR 1, precision 2/4.
    fine = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    metrics = evaluate_supervoxels(xyz, fine, gt.astype(np.int16), None, k=2)
    assert metrics.undersegmentation_error == 0.0 and metrics.achievable_accuracy == 1.0
    assert metrics.boundary_recall == 1.0 and metrics.boundary_precision == pytest.approx(0.5)
    assert metrics.mean_size == pytest.approx(10 / 3) and metrics.num_segments == 2


def test_metrics_skip_unlabelled_points() -> None:
    xyz = np.stack([np.arange(6.0), np.zeros(6), np.zeros(6)], axis=1)
    semantic = np.array([0, 0, -1, -1, 1, 1], np.int16)
    metrics = evaluate_supervoxels(xyz, np.array([0, 0, 0, 1, 1, 1]), semantic, None)
    assert metrics.num_points == 4 and metrics.undersegmentation_error == 0.0


def noisy_wall(depth_noise_m: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A flat 3 m x 2.5 m wall sampled every 1 cm with Gaussian depth noise: (xyz (N, 3) float32, rgb (N, 3) uint8)."""
    rng = np.random.default_rng(seed)
    u, v = np.meshgrid(np.arange(0.0, 3.0, 0.01), np.arange(0.0, 2.5, 0.01))
    xyz = np.stack([u.ravel(), rng.normal(0.0, depth_noise_m, u.size), v.ravel()], axis=1).astype(np.float32)
    rgb = np.clip(rng.normal(200.0, 3.0, (u.size, 3)), 0, 255).astype(np.uint8)
    return xyz, rgb


def test_default_normals_keep_a_noisy_wall_whole() -> None:
    xyz, rgb = noisy_wall(0.006)
    assert int(compute_supervoxels(xyz, rgb).max()) + 1 <= 2
    # 16-neighbour normals tilt with the depth noise and cut the same wall into dozens of pieces
    assert int(compute_supervoxels(xyz, rgb, SupervoxelParams(normal_neighbours=16)).max()) + 1 > 20


def test_cut_pursuit_penalty_sets_the_size() -> None:
    """The l0 penalty trades pieces for fidelity: a larger regularization gives fewer, larger super-voxels."""
    scene = tabletop_scene(2)
    counts = [int(compute_supervoxels(scene.xyz, scene.rgb, SupervoxelParams(
        method="cutpursuit", voxel_size_m=0.03, regularization=r)).max()) + 1 for r in (0.01, 3.0)]
    # (not monotone in between: measured 125, 178, 235, 258, 134, 57 pieces for 0.01 ... 3.0)
    assert counts[0] > 1.5 * counts[1] and counts[1] >= 4  # the floor and three boxes stay apart


def test_normal_neighbours_default_per_method_and_recorded() -> None:
    assert SupervoxelParams().normals_k == 64 and SupervoxelParams(method="slic").normals_k == 16
    assert SupervoxelParams(method="slic", normal_neighbours=40).normals_k == 40
    assert SupervoxelParams().to_dict()["normal_neighbours"] == 64
    with pytest.raises(ValueError, match="normal_neighbours"):
        SupervoxelParams(normal_neighbours=2)


@pytest.mark.parametrize("method", ["felzenszwalb", "slic", "cutpursuit"])
def test_supervoxels_fit_a_tabletop_scene(method: str) -> None:
    scene = tabletop_scene()
    params = SupervoxelParams(method=method, voxel_size_m=0.03, min_points=30, seed_spacing_m=0.3)
    sv = compute_supervoxels(scene.xyz, scene.rgb, params)
    np.testing.assert_array_equal(sv, compute_supervoxels(scene.xyz, scene.rgb, params))  # deterministic
    metrics = evaluate_supervoxels(scene.xyz, sv, scene.semantic, scene.instance, tolerance_m=0.03)
    assert metrics.achievable_accuracy > 0.97
    assert metrics.undersegmentation_error < 0.05
    assert metrics.boundary_recall > 0.8
    assert 1 < metrics.num_supervoxels < scene.num_points / 30
    sizes = np.bincount(sv)
    assert sizes.min() >= 30


def test_command_stores_supervoxels_and_keeps_existing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "ds"
    mesh_segments = np.arange(tabletop_scene(1).num_points, dtype=np.int32) % 7
    with DatasetWriter(root, "tiny", S3DIS, sensor="rgbd") as writer:
        writer.add("a", tabletop_scene(0), split="train")
        keep = tabletop_scene(1)
        writer.add("b", Scene(**{**keep.arrays(), "supervoxel": mesh_segments}), split="train")
    argv = ["data", "supervoxels", "--data", str(root), "--voxel-size-m", "0.03", "--min-points", "30"]
    assert wsseg_main(argv) == 0
    out = capsys.readouterr().out
    assert "1 scene(s) segmented with felzenszwalb" in out and "1 kept" in out and "USE" in out
    dataset = Dataset(root)
    a = load_scene(dataset.scene_path("a"))
    assert a.supervoxel is not None and a.supervoxel.dtype == np.int32 and a.supervoxel.shape == (a.num_points,)
    np.testing.assert_array_equal(dataset.load("b").supervoxel, mesh_segments)
    record = yaml.safe_load((root / "supervoxels.yaml").read_text())
    assert record["method"] == "felzenszwalb" and record["params"]["min_points"] == 30
    assert record["scenes"]["a"]["metrics"]["achievable_accuracy"] > 0.95
    assert record["scenes"]["b"]["source"] == "existing"
    assert wsseg_main([*argv, "--overwrite", "--method", "slic"]) == 0
    assert not np.array_equal(dataset.load("b").supervoxel, mesh_segments)
    assert yaml.safe_load((root / "supervoxels.yaml").read_text())["scenes"]["b"]["source"] == "slic"


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="method"):
        SupervoxelParams(method="watershed")
    with pytest.raises(ValueError, match="min_points"):
        SupervoxelParams(min_points=0)
    with pytest.raises(ValueError, match="NaN"):
        compute_supervoxels(np.array([[0, 0, 0], [np.nan, 0, 0]], np.float32))


@pytest.mark.shared_data
def test_real_mosd_frame() -> None:
    frame = SHARED_DATA / "mosd" / "learn" / "learn0.pcd"
    if not frame.is_file():
        pytest.skip(f"{frame} not available")
    mosd = pytest.importorskip("wsseg_training.data.readers.mosd")
    scene, _ = mosd.read_frame(frame)
    sv = compute_supervoxels(scene.xyz, scene.rgb, SupervoxelParams())
    metrics = evaluate_supervoxels(scene.xyz, sv, scene.semantic, scene.instance, tolerance_m=0.02)
    assert metrics.achievable_accuracy > 0.98 and metrics.boundary_recall > 0.8
