"""Densify's pure parts with known answers: normal-cosine histogram, K-means, matching, filtering, losses,
schedule, bootstrapping's point filter and the GrowSP-style super-voxels."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from wsseg_training.data.supervoxel_metrics import evaluate_supervoxels
from wsseg_training.methods.densify.bootstrap import bootstrap_labels
from wsseg_training.methods.densify.growsp_supervoxels import GrowspParams, growsp_supervoxels, merge_patches
from wsseg_training.methods.densify.handcrafted import (
    normal_cosine_histogram,
    supervoxel_descriptors,
    warmup_features,
)
from wsseg_training.methods.densify.kmeans import kmeans, member_means, nearest_centroid
from wsseg_training.methods.densify.losses import cam_loss, match_loss, unsupervised_loss
from wsseg_training.methods.densify.matching import filter_assignments, hungarian_match, naive_match
from wsseg_training.methods.densify.primitive_count import auto_primitive_count
from wsseg_training.methods.densify.primitives import (
    Primitives,
    cluster_primitives,
    supervoxel_means,
    supervoxel_nodes,
)
from wsseg_training.methods.densify.schedule import DensifySchedule

from tests.conftest import make_box_scene
from wsseg.core.classes import IGNORE_INDEX


def sphere_points(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------- hand-crafted features

def test_histogram_of_a_plane_is_all_in_the_last_bin() -> None:
    normals = np.tile([0.0, 0.0, 2.0], (50, 1))  # not unit: normalised inside
    hist = normal_cosine_histogram(normals)
    np.testing.assert_allclose(hist, [0] * 9 + [1.0])


def test_histogram_of_a_sphere_is_flat() -> None:
    hist = normal_cosine_histogram(sphere_points(600), max_normals=600)
    assert hist.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(hist, np.full(10, 0.1), atol=0.012)


def test_histogram_of_fewer_than_two_normals_is_empty() -> None:
    assert not normal_cosine_histogram(np.array([[0.0, 0.0, 1.0]])).any()


def test_descriptors_from_estimated_normals_tell_a_plane_from_a_sphere() -> None:
    rng = np.random.default_rng(1)
    plane = np.column_stack([rng.uniform(-1, 1, 4000), rng.uniform(-1, 1, 4000), rng.normal(0, 0.002, 4000)])
    sphere = sphere_points(8000, seed=2) * 1.0 + np.array([0.0, 0.0, 3.0])
    xyz = np.concatenate([plane, sphere]).astype(np.float32)
    sv = np.repeat([0, 1], [4000, 8000])
    rgb = np.repeat(np.array([[255, 0, 0], [0, 0, 255]], np.uint8), [4000, 8000], axis=0)
    d = supervoxel_descriptors(xyz, rgb, sv, voxel_size_m=0.05)
    assert d.ids.tolist() == [0, 1]
    np.testing.assert_allclose(d.rgb, [[0.5, -0.5, -0.5], [-0.5, -0.5, 0.5]], atol=1e-6)
    assert d.hist[0, -1] > 0.99  # the plane
    assert d.hist[1].max() < 0.2  # the sphere spreads over all bins (its normals, estimated, are oriented)
    assert (d.hist[1] > 0.03).all()


def test_descriptors_skip_points_without_a_supervoxel() -> None:
    xyz = np.random.default_rng(0).uniform(0, 1, (500, 3)).astype(np.float32)
    sv = np.where(np.arange(500) < 100, -1, 3)
    d = supervoxel_descriptors(xyz, None, sv)
    assert d.ids.tolist() == [3] and d.rgb.shape == (1, 3) and not d.rgb.any()


def test_warmup_features_are_unit_rows_of_the_three_parts() -> None:
    neural = np.array([[3.0, 4.0], [0.0, 0.0]])
    rgb = np.array([[0.5, 0.0, 0.0], [0.0, 0.0, 0.0]])
    hist = np.array([[0.0, 1.0], [0.0, 0.0]])
    out = warmup_features(neural, rgb, hist, c_rgb=3.0, c_shape=3.0)
    expected = np.array([0.6, 0.8, 1.5, 0, 0, 0, 3.0])
    np.testing.assert_allclose(out[0], expected / np.linalg.norm(expected), rtol=1e-6)
    assert not out[1].any()  # a zero row stays zero
    with pytest.raises(ValueError, match="must match"):
        warmup_features(neural, rgb[:1], hist)


# ---------------------------------------------------------------------------------------- K-means

def blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    means = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0]])
    truth = rng.integers(4, size=2000)
    rows = means[truth] + rng.normal(0, 0.5, (2000, 3))
    return rows.astype(np.float32), truth, means


def test_kmeans_recovers_separable_clusters_and_their_means() -> None:
    rows, truth, means = blobs()
    result = kmeans(rows, 4, seed=0, iterations=10, threads=1)
    # one-to-one between clusters and blobs
    pairs = set(zip(result.assignment.tolist(), truth.tolist(), strict=True))
    assert len(pairs) == 4 and len({a for a, _ in pairs}) == 4
    # each centroid is the mean of its members (the Lloyd update) and near its blob's mean
    np.testing.assert_allclose(member_means(rows, result.assignment, 4), result.centroids, atol=1e-4)
    for cluster, blob in pairs:
        np.testing.assert_allclose(result.centroids[cluster], means[blob], atol=0.1)


def test_kmeans_is_deterministic_for_a_seed() -> None:
    rows, _, _ = blobs(1)
    a, b = kmeans(rows, 6, seed=3, threads=1), kmeans(rows, 6, seed=3, threads=1)
    np.testing.assert_array_equal(a.assignment, b.assignment)
    np.testing.assert_array_equal(a.centroids, b.centroids)


def test_kmeans_with_fewer_rows_than_clusters_uses_every_row() -> None:
    result = kmeans(np.eye(3, dtype=np.float32), 5, threads=1)
    assert result.k == 3 and sorted(result.assignment.tolist()) == [0, 1, 2]


def test_kmeans_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="NaN"):
        kmeans(np.array([[np.nan, 0.0]]), 1)
    with pytest.raises(ValueError, match="non-empty"):
        kmeans(np.zeros((0, 3)), 1)


def test_member_means_and_nearest_centroid() -> None:
    rows = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(member_means(rows, np.array([0, 0, 2]), 3), [[2.0, 0.0], [0.0, 0.0], [0.0, 2.0]])
    f = torch.tensor([[5.0, 0.1], [0.2, 3.0]])
    assert nearest_centroid(f, torch.tensor([[0.0, 1.0], [1.0, 0.0]])).tolist() == [1, 0]


# ---------------------------------------------------------------------------------------- matching

def brute_force_best(scores: np.ndarray, classes: list[int]) -> float:
    best = -np.inf
    for rows in itertools.permutations(range(scores.shape[0]), len(classes)):
        best = max(best, sum(scores[r, c] for r, c in zip(rows, classes, strict=True)))
    return best


def test_hungarian_finds_the_optimum_that_greedy_misses_and_leaves_extra_primitives_unmatched() -> None:
    scores = np.array([[10.0, 0.0, 9.0],
                       [9.0, 5.0, 1.0],
                       [0.0, 7.0, 0.0],
                       [2.0, 8.0, 3.0]])
    present = np.array([True, False, True])
    matched = hungarian_match(scores, present)
    # greedy would give primitive 0 -> class 0 (10) and then 3 -> class 2 (3): 13; the optimum is 9 + 9 = 18
    assert matched.tolist() == [2, 0, -1, -1]
    assert scores[0, 2] + scores[1, 0] == brute_force_best(scores, [0, 2])
    assert (matched >= 0).sum() == present.sum()


def test_hungarian_on_random_scores_equals_brute_force() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = rng.normal(size=(5, 4))
        present = rng.random(4) < 0.6
        matched = hungarian_match(scores, present)
        classes = np.flatnonzero(present).tolist()
        got = sum(scores[k, c] for k, c in enumerate(matched) if c >= 0)
        assert got == pytest.approx(brute_force_best(scores, classes))
        assert sorted(c for c in matched.tolist() if c >= 0) == classes  # each class exactly once


def test_hungarian_with_fewer_primitives_than_classes_and_without_tags() -> None:
    scores = np.array([[1.0, 5.0, 2.0]])
    assert hungarian_match(scores, np.array([True, True, True])).tolist() == [1]
    assert hungarian_match(scores, np.zeros(3, bool)).tolist() == [-1]
    with pytest.raises(ValueError, match="number of classes"):
        hungarian_match(scores, np.ones(2, bool))


def test_naive_match_takes_every_primitives_best_tagged_class() -> None:
    scores = np.array([[10.0, 0.0, 9.0], [9.0, 5.0, 1.0], [0.0, 7.0, 0.0]])
    assert naive_match(scores, np.array([True, False, True])).tolist() == [0, 0, 0]
    assert naive_match(scores, np.zeros(3, bool)).tolist() == [-1, -1, -1]


def test_filtering_unassigns_conflicting_groups_and_spreads_single_labels() -> None:
    group_of = np.array([0, 0, 1, 1, 1, 2, 2])      # 7 primitives, 3 groups
    primitives = np.array([0, 1, 2, 3, 4, 5, 6])
    labels = np.array([3, 5, 4, -1, -1, -1, -1])     # group 0: two labels; group 1: one label; group 2: none
    out = filter_assignments(labels, primitives, group_of)
    assert out.tolist() == [-1, -1, 4, 4, 4, -1, -1]
    # the literal reading ("more than two" labels) keeps group 0 as it was
    assert filter_assignments(labels, primitives, group_of, conflict_labels=3).tolist() == [3, 5, 4, 4, 4, -1, -1]
    # only the scene's own primitives are touched
    assert filter_assignments(np.array([-1, 2]), np.array([3, 4]), group_of).tolist() == [2, 2]


# ---------------------------------------------------------------------------------------- losses

def test_cam_loss_of_zero_logits_is_c_log_2_per_scene() -> None:
    logits = torch.zeros(10, 4)
    batch = torch.tensor([0] * 6 + [1] * 4)
    tags = torch.tensor([[1.0, 0, 1, 0], [0, 0, 0, 1]])
    total, count = cam_loss(logits, batch, tags)
    assert count == 2 and float(total) == pytest.approx(2 * 4 * np.log(2.0), rel=1e-6)


def test_cam_loss_uses_the_mean_score_of_each_scene() -> None:
    # scene 0: half the points certain of class 0, half certain it is absent -> mean score 0.5
    logits = torch.tensor([[20.0], [-20.0], [20.0], [20.0]])
    batch = torch.tensor([0, 0, 1, 1])
    total, _ = cam_loss(logits, batch, torch.tensor([[1.0], [1.0]]))
    assert float(total) == pytest.approx(np.log(2.0), abs=1e-5)  # scene 1 contributes ~0


def test_unsupervised_loss_is_the_cross_entropy_of_scaled_cosines() -> None:
    centroids = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    features = torch.tensor([[3.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    primitive = torch.tensor([0, 1, -1])
    total, count = unsupervised_loss(features, primitive, centroids, scale=5.0)
    expected = 2 * -np.log(np.exp(5.0) / (np.exp(5.0) + np.exp(0.0)))
    assert count == 2 and float(total) == pytest.approx(expected, rel=1e-6)


def test_match_loss_matches_one_primitive_per_tagged_class_and_reaches_the_points() -> None:
    # Classifier = identity (H = C = 3).  Scene 0 tags {0, 2}; its primitives 0, 1, 2 have mean features with
    # logits favouring class 0 (prim 0), class 2 (prim 1) and class 2 weaker (prim 2).  Scene 1 tags {1}.
    features = torch.tensor([[4.0, 0, 0], [2.0, 0, 0], [0, 0, 5.0], [0, 0, 2.0], [0, 1.0, 0], [0, 3.0, 0]],
                            requires_grad=True)
    primitive = torch.tensor([0, 0, 1, 2, 1, 1])
    batch = torch.tensor([0, 0, 0, 0, 1, 1])
    tags = torch.tensor([[1.0, 0, 1], [0, 1.0, 0]])
    result = match_loss(features, primitive, batch, tags, lambda f: f, num_primitives=3)
    got = {(int(s), int(p)): int(c) for s, p, c in zip(result.scene, result.primitive, result.label, strict=True)}
    assert got == {(0, 0): 0, (0, 1): 2, (0, 2): -1, (1, 1): 1}
    assert result.matched == 3
    means = torch.tensor([[3.0, 0, 0], [0, 0, 5.0], [0, 2.0, 0]])
    expected = torch.nn.functional.cross_entropy(means, torch.tensor([0, 2, 1]), reduction="sum")
    assert float(result.loss_sum.detach()) == pytest.approx(float(expected), rel=1e-6)
    result.loss_sum.backward()
    assert features.grad is not None
    assert features.grad[3].abs().sum() == 0  # the unmatched primitive's point gets no gradient
    assert features.grad[0].abs().sum() > 0


def test_naive_match_loss_labels_every_primitive_and_filtering_applies() -> None:
    features = torch.tensor([[4.0, 0, 0], [0, 0, 5.0], [0, 0, 2.0]])
    primitive = torch.tensor([0, 1, 2])
    batch = torch.zeros(3, dtype=torch.int64)
    tags = torch.tensor([[1.0, 0, 1]])
    naive = match_loss(features, primitive, batch, tags, lambda f: f, 3, mode="naive")
    assert naive.label.tolist() == [0, 2, 2] and naive.matched == 3
    # primitives 1 and 2 in one group: Hungarian matches 1 -> 2 and leaves 2; filtering spreads class 2 to it
    filtered = match_loss(features, primitive, batch, tags, lambda f: f, 3, group_of=np.array([0, 1, 1]))
    assert filtered.label.tolist() == [0, 2, 2]
    with pytest.raises(ValueError, match="match mode"):
        match_loss(features, primitive, batch, tags, lambda f: f, 3, mode="greedy")


# ---------------------------------------------------------------------------------------- schedule

def test_paper_schedule_switches_at_the_right_epochs_and_steps() -> None:
    schedule = DensifySchedule()
    assert schedule.kmeans_epochs()[:3] == [0, 10, 20] and schedule.kmeans_epochs()[-1] == 390
    assert len(schedule.periods()) == 40
    assert not schedule.matching(59) and schedule.matching(60)
    assert schedule.handcrafted(240) and not schedule.handcrafted(250)
    assert not schedule.filtering(240) and schedule.filtering(250)
    steps_per_epoch = 3  # e.g. 12 scenes in batches of 4
    assert not schedule.matching(schedule.epoch_of_step(179, steps_per_epoch))
    assert schedule.matching(schedule.epoch_of_step(180, steps_per_epoch))


def test_scaled_schedule_keeps_the_papers_proportions() -> None:
    s = DensifySchedule.scaled(40)
    assert (s.epochs, s.kmeans_every_epochs, s.warmup_epochs, s.match_off_epochs) == (40, 1, 25, 6)
    s = DensifySchedule.scaled(80)
    assert (s.kmeans_every_epochs, s.warmup_epochs, s.match_off_epochs) == (2, 50, 12)
    assert DensifySchedule(epochs=25, kmeans_every_epochs=10).periods() == [(0, 10), (10, 10), (20, 5)]
    with pytest.raises(ValueError, match="epochs"):
        DensifySchedule(epochs=0)


def test_auto_primitive_count_scales_with_supervoxels_above_a_floor() -> None:
    assert auto_primitive_count(1_000_000, 20) == 300  # the paper's ScanNet setting
    assert auto_primitive_count(2_000_000, 20) == 600
    assert auto_primitive_count(2_000, 13) == 39  # a dozen rooms: the floor, 3 per class
    assert auto_primitive_count(20, 13) == 20  # never more primitives than super-voxels


# ---------------------------------------------------------------------------------------- bootstrapping

def test_bootstrap_drops_points_whose_class_is_not_tagged() -> None:
    predicted = np.array([0, 1, 2, 2, 3])
    tags = np.array([1.0, 0.0, 1.0, 0.0])
    assert bootstrap_labels(predicted, tags).tolist() == [0, IGNORE_INDEX, 2, 2, IGNORE_INDEX]
    with pytest.raises(ValueError, match="outside"):
        bootstrap_labels(np.array([4]), tags)


# ---------------------------------------------------------------------------------------- super-voxels

def test_merge_gives_a_patch_its_majority_region() -> None:
    patch = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2])
    region = np.array([5, 5, 1, 5, 5, 1, 1, 1, 0])
    merged = merge_patches(patch, region)
    # patch 0: region 5 holds 2 of 3 -> 5; patch 1: 2 of 4 is not a majority -> own id; patch 2: a tie -> own id
    assert merged.tolist() == [5, 5, 5, 7, 7, 7, 7, 8, 8]


def test_growsp_supervoxels_keep_planes_whole_and_follow_the_objects() -> None:
    xyz, rgb, semantic = make_box_scene(seed=0, n=36000)
    sv = growsp_supervoxels(xyz, rgb, GrowspParams(min_points=10))
    assert sv.dtype == np.int32 and sv.shape == semantic.shape
    metrics = evaluate_supervoxels(xyz, sv, semantic, None)
    assert metrics.achievable_accuracy > 0.97
    floor = sv[semantic == 0]
    assert np.bincount(floor[floor >= 0]).max() > 0.8 * floor.size  # the floor is (nearly) one super-voxel
    box = sv[semantic == 2]
    assert np.unique(box[box >= 0]).size >= 2  # the box's faces are not one plane


def test_growsp_supervoxels_drop_small_ones() -> None:
    xyz, _, _ = make_box_scene(seed=1, n=6000)
    lonely = np.array([[9.0, 9.0, 9.0]], np.float32)  # a single far point: its own, too small super-voxel
    sv = growsp_supervoxels(np.concatenate([xyz, lonely]), None, GrowspParams(min_points=5))
    assert sv[-1] == -1 and (sv[:-1] >= 0).mean() > 0.95
    with pytest.raises(ValueError, match="smoothness_deg"):
        GrowspParams(smoothness_deg=0.0)


# ---------------------------------------------------------------------------------------- K-means rounds

def test_supervoxel_nodes_drop_small_supervoxels() -> None:
    node, count = supervoxel_nodes(np.array([7, 7, 7, -1, 3, 9, 9, 9]), min_points=2)
    assert count == 2 and node.tolist() == [0, 0, 0, -1, -1, 1, 1, 1]


def test_supervoxel_means_average_the_points_of_each_node() -> None:
    f = torch.tensor([[1.0, 0.0], [3.0, 2.0], [9.0, 9.0], [0.0, 4.0]])
    means = supervoxel_means(f, torch.tensor([0, 0, -1, 2]), 3)
    np.testing.assert_allclose(means, [[2.0, 1.0], [0.0, 0.0], [0.0, 4.0]])


def test_warmup_round_separates_by_colour_what_the_network_cannot() -> None:
    # Two scenes; every super-voxel has the same neural feature, half are red and half blue.
    neural = [np.ones((6, 4), np.float32), np.ones((4, 4), np.float32)]
    red, blue = [0.5, -0.5, -0.5], [-0.5, -0.5, 0.5]
    rgb = [np.array([red] * 3 + [blue] * 3, np.float32), np.array([red, blue, red, blue], np.float32)]
    hist = [np.zeros((6, 10), np.float32), np.zeros((4, 10), np.float32)]
    warm = cluster_primitives(neural, rgb, hist, k=2, epoch=0, seed=0, handcrafted=True, threads=1)
    assert [a.shape[0] for a in warm.assignment] == [6, 4]
    colour_of = {int(a): c for a, c in zip(np.concatenate(warm.assignment),
                                           np.concatenate(rgb)[:, 0].tolist(), strict=True)}
    assert len(colour_of) == 2 and sorted(colour_of.values()) == [-0.5, 0.5]  # one primitive per colour
    # the primitives are the members' neural means (normalised): the colour only steered the clustering
    np.testing.assert_allclose(warm.centroids, np.full((2, 4), 0.5), atol=1e-6)
    state = Primitives.from_state(warm.to_state())
    assert [a.tolist() for a in state.assignment] == [a.tolist() for a in warm.assignment]
    assert state.point_primitives(1, np.array([3, -1, 0])).tolist() == [int(warm.assignment[1][3]), -1,
                                                                         int(warm.assignment[1][0])]


def test_round_after_warmup_uses_neural_features_and_groups_the_primitives() -> None:
    rng = np.random.default_rng(0)
    directions = np.eye(4, dtype=np.float32)
    truth = rng.integers(4, size=200)
    neural = [directions[truth] + rng.normal(0, 0.05, (200, 4)).astype(np.float32)]
    rgb, hist = [np.zeros((200, 3), np.float32)], [np.zeros((200, 10), np.float32)]
    result = cluster_primitives(neural, rgb, hist, k=8, epoch=5, seed=0, handcrafted=False, groups=4, threads=1)
    assert result.k == 8 and result.groups is not None and result.groups.shape == (8,)
    np.testing.assert_allclose(np.linalg.norm(result.centroids, axis=1), 1.0, rtol=1e-5)
    # primitives of one direction fall into one group
    direction_of = {}
    for prim, t in zip(result.assignment[0].tolist(), truth.tolist(), strict=True):
        direction_of.setdefault(prim, set()).add(t)
    assert all(len(v) == 1 for v in direction_of.values())
    group_direction = {}
    for prim, dirs in direction_of.items():
        group_direction.setdefault(int(result.groups[prim]), set()).update(dirs)
    assert all(len(v) == 1 for v in group_direction.values())
