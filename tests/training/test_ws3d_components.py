"""WS3D building blocks against answers worked out by hand: boundary ground truth, focal loss, boundary pair
labels, the region energy (value and gradient direction), the region InfoNCE, the contrast stages."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from wsseg_training.methods.ws3d.boundary import (
    boundary_pair_labels,
    boundary_targets,
    cell_offsets,
    focal_loss,
    region_has_boundary,
    score_boundaries,
)
from wsseg_training.methods.ws3d.contrast import (
    contrast_stages,
    region_info_nce,
    region_pseudo_classes,
    symmetric_info_nce,
)
from wsseg_training.methods.ws3d.energy import pairwise_energy, region_energy, unary_energy

from wsseg.core.classes import IGNORE_INDEX

X = IGNORE_INDEX


# --- boundary ground truth ---------------------------------------------------------------------------------

def two_boxes(step: float = 0.025) -> tuple[np.ndarray, np.ndarray]:
    """Two touching boxes: class 0 fills x in [0, 1), class 1 fills x in [1, 2); y, z in [0, 0.5)."""
    axis_x = np.arange(0.0, 2.0, step) + step / 2
    axis_yz = np.arange(0.0, 0.5, step) + step / 2
    grid = np.stack(np.meshgrid(axis_x, axis_yz, axis_yz, indexing="ij"), axis=-1).reshape(-1, 3)
    return grid.astype(np.float32), (grid[:, 0] >= 1.0).astype(np.int64)


def test_boundary_ground_truth_on_two_boxes() -> None:
    xyz, labels = two_boxes()
    # 10 cm grid, r = 2 cells: the cells 8, 9 (class 0) and 10, 11 (class 1) see the other class.
    truth = boundary_targets(xyz, labels, grid_m=0.1, radius_cells=2.0)
    expected = ((xyz[:, 0] >= 0.8) & (xyz[:, 0] < 1.2)).astype(np.int64)
    np.testing.assert_array_equal(truth, expected)
    # JSENet's 2 cm at a 1 cm grid is the same two cells: the band scales with the grid.
    truth_fine = boundary_targets(xyz, labels, grid_m=0.05, radius_cells=2.0)
    np.testing.assert_array_equal(truth_fine, ((xyz[:, 0] >= 0.9) & (xyz[:, 0] < 1.1)).astype(np.int64))
    # r = 1 cell (the benchmark's `radius1` variant): one cell each side, x in [0.9, 1.1) at a 10 cm grid.
    truth_one = boundary_targets(xyz, labels, grid_m=0.1, radius_cells=1.0)
    np.testing.assert_array_equal(truth_one, ((xyz[:, 0] >= 0.9) & (xyz[:, 0] < 1.1)).astype(np.int64))
    assert len(cell_offsets(1.0)) == 7  # the zero offset and the six face neighbours


def test_boundary_ground_truth_skips_unlabelled_points() -> None:
    xyz, labels = two_boxes()
    labels = labels.copy()
    gap = (xyz[:, 0] >= 0.7) & (xyz[:, 0] < 1.3)
    labels[gap] = X  # the two classes are now 6 cells apart: no labelled neighbour of another class
    truth = boundary_targets(xyz, labels, grid_m=0.1, radius_cells=2.0)
    assert (truth[gap] == X).all()
    assert (truth[~gap] == 0).all()
    assert (boundary_targets(xyz, np.full(len(xyz), X), 0.1) == X).all()


def test_boundary_ground_truth_diagonal_reach() -> None:
    # r = 2 cells holds (1, 1, 1) (|d| = 1.73) but not (2, 1, 0) (|d| = 2.24).
    offsets = {tuple(o) for o in cell_offsets(2.0).tolist()}
    assert (1, 1, 1) in offsets and (2, 0, 0) in offsets and (2, 1, 0) not in offsets
    assert len(offsets) == 33
    xyz = np.array([[0.05, 0.05, 0.05], [0.15, 0.15, 0.15], [1.05, 0.05, 0.05], [1.25, 0.15, 0.05]], np.float32)
    labels = np.array([0, 1, 0, 1])
    np.testing.assert_array_equal(boundary_targets(xyz, labels, 0.1, 2.0), [1, 1, 0, 0])


def test_boundary_ground_truth_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="grid_m"):
        boundary_targets(np.zeros((3, 3)), np.zeros(3), 0.0)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        boundary_targets(np.zeros((3, 2)), np.zeros(3), 0.1)


# --- focal loss ----------------------------------------------------------------------------------------------

def test_focal_loss_matches_eq_1_by_hand() -> None:
    z = torch.tensor([2.0, -1.0, 0.5, 3.0])
    y = torch.tensor([1, 0, 1, X])
    total, count = focal_loss(z, y, alpha=2.0)
    b = torch.sigmoid(z[:3])
    expected = -((1 - b[0]) ** 2 * torch.log(b[0]) + b[1] ** 2 * torch.log(1 - b[1])
                 + (1 - b[2]) ** 2 * torch.log(b[2]))
    assert int(count) == 3
    assert float(total) == pytest.approx(float(expected), rel=1e-6)
    # alpha = 0 is binary cross-entropy; the focusing exponent only down-weights easy points.
    bce = F.binary_cross_entropy_with_logits(z[:3], y[:3].float(), reduction="sum")
    assert float(focal_loss(z, y, alpha=0.0)[0]) == pytest.approx(float(bce), rel=1e-6)
    assert float(total) < float(bce)


def test_focal_loss_is_finite_for_extreme_logits() -> None:
    z = torch.tensor([80.0, -80.0], requires_grad=True)
    total, _ = focal_loss(z, torch.tensor([0, 1]))
    total.backward()
    assert float(total.detach()) == pytest.approx(160.0, rel=1e-4)  # (1 - 0)^2 x 80 per confidently wrong point
    assert torch.isfinite(z.grad).all()


# --- boundary labels of region pairs (Eq. 2) -----------------------------------------------------------------

def test_boundary_pair_labels_need_both_regions() -> None:
    # three regions in a row: A-B and B-C touch; predicted boundary points lie in A and B only
    region = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, -1])
    boundary = np.array([0, 0, 1, 1, 0, 0, 0, 0, 0, 1], dtype=bool)
    has = region_has_boundary(boundary, region, 3)
    np.testing.assert_array_equal(has, [True, True, False])
    np.testing.assert_array_equal(boundary_pair_labels(has, np.array([[0, 1], [1, 2]])), [1.0, 0.0])


def test_boundary_score() -> None:
    score = score_boundaries(np.array([1, 1, 0, 0, 1], bool), np.array([1, 0, 1, 0, X]))
    assert (score.true_positive, score.predicted, score.actual) == (1, 2, 2)
    assert score.precision == 0.5 and score.recall == 0.5
    assert math.isnan(score_boundaries(np.zeros(2, bool), np.array([0, 0])).precision)


# --- region energy (Eq. 3-5) ---------------------------------------------------------------------------------

def energy_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    prob = torch.tensor([[0.90, 0.10], [0.85, 0.15], [0.95, 0.05], [0.50, 0.50]], requires_grad=True)
    pairs = torch.tensor([[0, 1], [0, 2], [1, 3]])
    w = torch.tensor([0.0, 1.0, 0.0])  # (0, 1) inside an object, (0, 2) across a boundary, (1, 3) H = 0
    return prob, pairs, w


def test_region_energy_value() -> None:
    prob, pairs, w = energy_case()
    terms = region_energy(prob, pairs, w, gamma=0.8, epsilon=0.5)
    d01 = math.hypot(0.05, 0.05)
    d02 = math.hypot(0.05, 0.05)
    assert float(terms.pair_sum.detach()) == pytest.approx(d01**2 + (0.5 - d02) ** 2, rel=1e-5)
    assert float(terms.unary_sum.detach()) == pytest.approx(-(math.log(0.9) + math.log(0.85) + math.log(0.95)
                                                     + math.log(0.5)), rel=1e-6)
    assert (float(terms.pair_count), float(terms.unary_count), float(terms.confident_pairs)) == (3.0, 4.0, 2.0)
    # the push term vanishes beyond the margin
    far = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert float(pairwise_energy(far, torch.tensor([[0, 1]]), torch.ones(1), torch.ones(1), 0.5)[0]) == 0.0


def test_region_energy_gradient_direction() -> None:
    prob, pairs, w = energy_case()
    terms = region_energy(prob, pairs[:1], w[:1])  # the pull pair alone
    terms.pair_sum.backward()
    descent = -prob.grad[0]
    assert float(torch.dot(descent, (prob[1] - prob[0]).detach())) > 0  # p_0 moves towards p_1
    prob.grad = None
    region_energy(prob, pairs[1:2], w[1:2]).pair_sum.backward()
    descent = -prob.grad[0]
    assert float(torch.dot(descent, (prob[2] - prob[0]).detach())) < 0  # p_0 moves away from p_2 (inside the margin)
    prob.grad = None
    region_energy(prob, pairs[2:], w[2:]).pair_sum.backward()
    assert float(prob.grad.abs().sum()) == 0.0  # H = 0: region 3 is not confident
    prob.grad = None
    region_energy(prob, pairs[2:], w[2:], use_confidence=False).pair_sum.backward()
    assert float(prob.grad.abs().sum()) > 0.0  # Tab. 5 No. 4: without H the pair counts


def test_unary_energy_pushes_the_top_class_up() -> None:
    prob = torch.tensor([[0.6, 0.3, 0.1]], requires_grad=True)
    unary_energy(prob).sum().backward()
    assert prob.grad[0, 0] < 0 and prob.grad[0, 1] == 0 and prob.grad[0, 2] == 0
    no_pair = region_energy(prob, torch.zeros((0, 2), dtype=torch.int64), torch.zeros(0), use_pairwise=False)
    assert float(no_pair.pair_sum) == 0.0 and float(no_pair.pair_count) == 0.0


# --- region contrast (Eq. 6) ---------------------------------------------------------------------------------

def test_region_info_nce_hand_made_case() -> None:
    f = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    pseudo = torch.tensor([0, 0, 1, 1])
    confident = torch.tensor([True, True, True, False])  # region 3 is masked out (H = 0)
    e = math.e
    # class positives: anchor 0 has positives {0, 1} (logit 1 each) and negative 2 (logit 0) -> log(2e + 1) - 1
    total, count = region_info_nce(f, f, pseudo, confident, temperature=1.0, positives="class")
    expected = 2 * (math.log(2 * e + 1) - 1) + (math.log(e + 2) - 1)
    assert float(count) == 3.0
    assert float(total) == pytest.approx(expected, rel=1e-6)
    # region positives: anchor 0's positive is region 0 only, region 1 (same class) leaves the denominator
    total, count = region_info_nce(f, f, pseudo, confident, temperature=1.0)
    expected_region = 2 * (math.log(e + 1) - 1) + (math.log(e + 2) - 1)
    assert float(count) == 3.0
    assert float(total) == pytest.approx(expected_region, rel=1e-6)
    # the temperature sharpens: a smaller tau lowers the loss of this well-separated case
    assert float(region_info_nce(f, f, pseudo, confident, temperature=0.1)[0]) < float(total)
    both, both_count = symmetric_info_nce(f, f, pseudo, confident, temperature=1.0)
    assert float(both) == pytest.approx(2 * expected_region, rel=1e-6) and float(both_count) == 6.0
    with pytest.raises(ValueError, match="positives"):
        region_info_nce(f, f, pseudo, confident, positives="scene")


def test_region_info_nce_gradient_is_finite_with_masked_entries() -> None:
    f1 = torch.randn(6, 4, requires_grad=True)
    f2 = torch.randn(6, 4, requires_grad=True)
    pseudo = torch.tensor([0, 0, 0, 1, 1, 2])
    total, _ = symmetric_info_nce(f1, f2, pseudo, torch.ones(6, dtype=torch.bool))
    total.backward()
    assert torch.isfinite(f1.grad).all() and torch.isfinite(f2.grad).all() and float(f1.grad.abs().sum()) > 0


def test_region_info_nce_without_negatives_or_confidence_is_zero() -> None:
    f = torch.randn(4, 3, requires_grad=True)
    total, count = region_info_nce(f, f, torch.zeros(4, dtype=torch.int64), torch.ones(4, dtype=torch.bool))
    assert float(total.detach()) == 0.0 and float(count) == 0.0
    total, count = region_info_nce(f, f, torch.arange(4), torch.zeros(4, dtype=torch.bool))
    assert float(count) == 0.0
    total.backward()  # still a graph (a zero), no NaN
    assert torch.isfinite(f.grad).all()


def test_region_pseudo_classes() -> None:
    p1 = torch.tensor([[0.9, 0.1], [0.85, 0.9], [0.7, 0.2], [0.95, 0.1]])
    p2 = torch.tensor([[0.95, 0.1], [0.9, 0.2], [0.9, 0.1], [0.1, 0.99]])
    pseudo, confident = region_pseudo_classes(p1, p2, gamma=0.8)
    np.testing.assert_array_equal(confident.numpy(), [True, False, False, False])  # agree + both > γ
    assert int(pseudo[0]) == 0
    _, everyone = region_pseudo_classes(p1, p2, gamma=0.8, use_confidence=False)
    assert bool(everyone.all())


def test_contrast_stages_by_profile() -> None:
    tiny = contrast_stages((8, 16, 24))
    assert [(s.part, s.level) for s in tiny] == [("encoder", 0), ("encoder", 1), ("encoder", 2), ("decoder", 1),
                                                ("decoder", 0)]
    cpu = contrast_stages((16, 32, 48, 64))
    assert [(s.part, s.level, s.channels) for s in cpu][:2] == [("encoder", 2, 48), ("encoder", 3, 64)]
    assert [(s.part, s.level) for s in contrast_stages((16, 32, 48, 64), 1)] == [("decoder", 0)]
    with pytest.raises(ValueError, match="stage"):
        contrast_stages((8, 16), 5)


# --- offset head losses (PointGroup) -------------------------------------------------------------------------

def test_instance_centres_and_offset_losses() -> None:
    from wsseg_training.methods.ws3d.instance import instance_centres, offset_losses

    xyz = torch.tensor([[0.0, 0, 0], [2.0, 0, 0], [5.0, 5, 0], [9.0, 9, 9]])
    instance = torch.tensor([3, 3, 8, -1])
    np.testing.assert_allclose(instance_centres(xyz, instance).numpy(),
                               [[1, 0, 0], [1, 0, 0], [5, 5, 0], [9, 9, 9]])
    perfect = torch.tensor([[1.0, 0, 0], [-1.0, 0, 0], [0.0, 0, 0], [7.0, 7, 7]])
    terms = offset_losses(perfect, xyz, instance)
    # three trained points, the third sits at its centre (no direction); the last is not trained
    assert (float(terms.l1_sum), float(terms.count)) == (0.0, 3.0)
    assert (float(terms.direction_sum), float(terms.direction_count)) == (-2.0, 2.0)
    wrong = torch.tensor([[0.0, 1, 0], [1.0, 0, 0], [0.5, 0, 0], [0.0, 0, 0]])
    terms = offset_losses(wrong, xyz, instance)
    assert float(terms.l1_sum) == pytest.approx(2.0 + 2.0 + 0.5)
    assert float(terms.direction_sum) == pytest.approx(0.0 + 1.0)  # orthogonal, then opposite


# --- regions per scene and per step --------------------------------------------------------------------------

def test_scene_regions_adjacency_and_boundaries_on_three_regions() -> None:
    from wsseg_training.methods.ws3d.regions import SceneRegions

    # three 1 m slabs in a row along x (regions 0, 1, 2): 0-1 and 1-2 touch, 0-2 do not
    x = np.repeat(np.arange(0.05, 3.0, 0.1), 25)
    yz = np.tile(np.stack(np.meshgrid(np.arange(5) * 0.1, np.arange(5) * 0.1), -1).reshape(-1, 2), (len(x) // 25, 1))
    xyz = np.column_stack([x, yz]).astype(np.float32)
    region = np.floor(x).astype(np.int64)
    regions = SceneRegions.build(xyz, region, k=10)
    np.testing.assert_array_equal(regions.pairs, [[0, 1], [1, 2]])
    np.testing.assert_array_equal(regions.w, [0.0, 0.0])
    regions.set_boundaries((x > 0.9) & (x < 1.1))  # boundary points in regions 0 and 1 only
    np.testing.assert_array_equal(regions.w, [1.0, 0.0])


def test_view_regions_are_shared_by_the_views_and_batch_local() -> None:
    from wsseg_training.methods.ws3d.regions import SceneRegions, view_regions

    scene_a = SceneRegions(region=np.array([5, 5, 7, 7, 9, -1]), pairs=np.array([[5, 7], [7, 9], [5, 9]]),
                           w=np.array([1.0, 0.0, 1.0], np.float32))
    scene_b = SceneRegions(region=np.array([0, 0, 1]), pairs=np.array([[0, 1]]), w=np.array([0.0], np.float32))
    # batch: group 3 = scene a (points 0, 1, 2, 3, 5: region 9 is not in the crop), group 4 = scene b
    names = ["a", "a", "b", "b"]
    group, member = np.array([3, 3, 4, 4]), np.array([0, 1, 0, 1])
    offsets = np.array([0, 5, 10, 13, 16])
    point_index = np.array([0, 1, 2, 3, 5] * 2 + [0, 1, 2] * 2)
    vr = view_regions(names, group, member, offsets, point_index, {"a": scene_a, "b": scene_b})
    np.testing.assert_array_equal(vr.rows[0], [0, 1, 2, 3, 4, 10, 11, 12])
    np.testing.assert_array_equal(vr.rows[1], [5, 6, 7, 8, 9, 13, 14, 15])
    np.testing.assert_array_equal(vr.node, [0, 0, 1, 1, -1, 2, 2, 3])
    assert vr.num_regions == 4
    np.testing.assert_array_equal(vr.pairs, [[0, 1], [2, 3]])  # (7, 9) and (5, 9) left: 9 not in the crop
    np.testing.assert_array_equal(vr.w, [1.0, 0.0])
    with pytest.raises(ValueError, match="views"):
        view_regions(names[:3], group[:3], member[:3], offsets[:4], point_index, {"a": scene_a, "b": scene_b})


def test_best_f1_threshold() -> None:
    from wsseg_training.methods.ws3d.boundary import best_f1_threshold

    # boundary points score 0.3-0.4, the others 0.1: any threshold in [0.1, 0.3) separates them perfectly
    prob = np.array([0.35, 0.3001, 0.4, 0.1, 0.1, 0.1, 0.9])
    truth = np.array([1, 1, 1, 0, 0, 0, X])
    assert best_f1_threshold(prob, truth) == 0.3  # the highest perfect threshold on the 0.05 grid
    assert best_f1_threshold(prob, np.array([0, 0, 0, 0, 0, 0, X])) == 0.5  # no boundary: the default


def test_interface_rule_needs_the_boundary_along_the_shared_border() -> None:
    from wsseg_training.methods.ws3d.regions import SceneRegions

    x = np.repeat(np.arange(0.05, 3.0, 0.1), 25)
    yz = np.tile(np.stack(np.meshgrid(np.arange(5) * 0.1, np.arange(5) * 0.1), -1).reshape(-1, 2), (len(x) // 25, 1))
    xyz = np.column_stack([x, yz]).astype(np.float32)
    regions = SceneRegions.build(xyz, np.floor(x).astype(np.int64), k=10)
    # a class change between regions 1 and 2 (x = 2) and one at region 0's far end (x = 0)
    boundary = ((x > 1.85) & (x < 2.15)) | (x < 0.15)
    regions.set_boundaries(boundary)  # Eq. 2: every region holds a boundary point -> both pairs
    np.testing.assert_array_equal(regions.w, [1.0, 1.0])
    regions.set_boundaries(boundary, "interface", xyz, k=10)
    np.testing.assert_array_equal(regions.w, [0.0, 1.0])
    with pytest.raises(ValueError, match="xyz"):
        regions.set_boundaries(boundary, "interface")
