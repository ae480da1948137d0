"""MPRM's parts against answers worked out by hand: the sub-cloud seeding grid and membership on a box, -inf masking
vs the official x0 rule, per-sample attention at the attention layer's resolution, alpha = beta = 0 at init, and the
CRF step against a brute-force mean field."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from wsseg_training.engine.sampling import ball_indices
from wsseg_training.labels.simulate import scene_subclouds, subcloud_centres
from wsseg_training.methods.mprm.cams import SceneVotes, fuse, mask_scores, standardize_scores
from wsseg_training.methods.mprm.crf import mixed_unary, refine_with_crf
from wsseg_training.methods.mprm.paths import MultiPathModule, sample_rows
from wsseg_training.methods.mprm.pseudo_labels import SceneLabels
from wsseg_training.model.inputs import to_torch
from wsseg_training.model.profiles import preprocess_config_for, unet_config_for
from wsseg_training.model.unet import SparseUNet

from wsseg.core.features import FeatureConfig
from wsseg.core.preprocess import prepare_cloud

# ------------------------------------------------------------------------------------------ sub-cloud seeding


def box_points() -> tuple[np.ndarray, np.ndarray]:
    """The 8 corners of a 4 x 6 x 2 m box (class 0), a point exactly 2 m from three seeds (class 2) and one 1.999 m
    from a seed (class 1)."""
    corners = np.array([[x, y, z] for x in (0, 4) for y in (0, 6) for z in (0, 2)], dtype=np.float64)
    on_sphere = np.array([[1.0, 3.0, 1.0]])        # the seed (1, 3, 1); 2 m from (1, 1, 1), (1, 5, 1), (3, 3, 1)
    inside = np.array([[1.0, 2.999, 1.0]])        # 1.999 m from (1, 1, 1)
    xyz = np.concatenate([corners, on_sphere, inside])
    return xyz, np.array([0] * 8 + [2, 1])


def test_subcloud_seeding_count_and_positions_follow_the_paper_on_a_box() -> None:
    xyz, _ = box_points()
    centres = subcloud_centres(xyz, 2.0)  # ⌈4/2⌉ x ⌈6/2⌉ x ⌈2/2⌉ = 2 x 3 x 1 seeds at the cell centres
    expected = np.array([[x, y, 1.0] for x in (1.0, 3.0) for y in (1.0, 3.0, 5.0)])
    np.testing.assert_allclose(centres, expected)
    assert len(subcloud_centres(xyz, 2.0, grid="code")) == 3 * 4 * 2  # the official code: floor(l / r) + 1
    # the paper's average ScanNet room, 5.5 x 5.1 x 2.4 m: 3 x 3 x 2 = 18 sub-clouds (it reports 18.4 per scene)
    room = np.array([[0.0, 0.0, 0.0], [5.5, 5.1, 2.4]])
    assert len(subcloud_centres(room, 2.0)) == 18


def test_subcloud_membership_is_strictly_inside_the_ball() -> None:
    xyz, semantic = box_points()
    subclouds = {tuple(np.round(s.centre, 6)): s for s in scene_subclouds(xyz, semantic, 2.0)}
    assert len(subclouds) == 5  # (3, 3, 1) holds no point (the class-2 point is exactly 2 m away): no tag, dropped
    assert (3.0, 3.0, 1.0) not in subclouds
    # Eq. 1: ||p - q|| < r: the point 2 m away is outside, the one 1.999 m away inside
    assert subclouds[(1.0, 1.0, 1.0)].classes == (0, 1)
    assert subclouds[(1.0, 3.0, 1.0)].classes == (1, 2)
    assert subclouds[(1.0, 5.0, 1.0)].classes == (0,)
    for subcloud in subclouds.values():
        inside = np.flatnonzero(np.linalg.norm(xyz - subcloud.centre, axis=1) < 2.0 - 1e-9)
        np.testing.assert_array_equal(np.flatnonzero(subcloud.mask(xyz)), inside)
        # the training sampler draws exactly the annotated sub-cloud
        np.testing.assert_array_equal(ball_indices(xyz, subcloud.centre, subcloud.radius_m, 0), inside)
        assert subcloud.num_points == inside.size


# ------------------------------------------------------------------------------------------ masking and votes


def test_neg_inf_mask_picks_a_present_class_where_the_zero_rule_picks_an_absent_one() -> None:
    scores = torch.tensor([[-1.0, -2.0, -0.5], [2.0, 1.0, 3.0]])  # point 0: every present class scores < 0
    allowed = torch.tensor([[True, True, False], [True, True, False]])
    assert mask_scores(scores, allowed, "neg_inf").argmax(1).tolist() == [0, 0]
    assert mask_scores(scores, allowed, "zero").argmax(1).tolist() == [2, 0]  # the absent class 2 wins at point 0


def test_votes_average_passes_and_intersect_their_tags() -> None:
    votes = SceneVotes(num_points=3, num_classes=3)
    votes.add(np.array([0, 1]), {"max": np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 5.0]])}, (0, 1))
    votes.add(np.array([1]), {"max": np.array([[4.0, 2.0, 1.0]])}, (1, 2))
    np.testing.assert_allclose(votes.mean("max"), [[1, 2, 3], [2, 1, 3], [0, 0, 0]])
    # point 1 lies in both passes: only class 1 is in both tag sets; point 2 was never reached
    assert votes.allowed.tolist() == [[True, True, False], [False, True, False], [True, True, True]]
    assert votes.labels("max").tolist() == [1, 1, -1]


def test_standardize_scores_over_the_valid_points() -> None:
    scores = np.array([[1.0, 5.0], [3.0, 5.0], [100.0, -7.0]])
    out = standardize_scores(scores, np.array([True, True, False]))
    # column 0 over points 0, 1: mean 2, std 1; column 1 is constant there -> 0; the invalid point -> 0
    np.testing.assert_allclose(out, [[-1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    assert out.dtype == np.float32
    assert not standardize_scores(scores, np.zeros(3, bool)).any()


def test_z_rescale_lets_a_localizing_small_scale_map_win_its_points() -> None:
    # class 0's map is high everywhere (it wins every point raw); class 1's map is small but peaks on points 2, 3
    scores = np.array([[9.0, 0.0], [9.2, 0.0], [9.1, 0.5], [8.9, 0.6]])
    raw = SceneVotes(num_points=4, num_classes=2)
    raw.add(np.arange(4), {"max": scores}, (0, 1))
    assert raw.labels("max").tolist() == [0, 0, 0, 0]
    z = SceneVotes(num_points=4, num_classes=2, rescale="z")
    z.add(np.arange(4), {"max": scores}, (0, 1))
    assert z.labels("max").tolist() == [0, 0, 1, 1]
    unknown = SceneVotes(num_points=4, num_classes=2, rescale="minmax")
    unknown.add(np.arange(4), {"max": scores}, (0, 1))
    with pytest.raises(ValueError, match="rescale"):
        unknown.mean("max")


def test_confidence_is_the_top_softmax_over_allowed_classes_and_ignore_below_drops_the_rest() -> None:
    votes = SceneVotes(num_points=3, num_classes=3)
    # point 0: allowed {0, 1}, scores (2, 0): 1 / (1 + e^-2) = 0.881 (class 2's score 9 is masked out)
    # point 1: allowed {0, 1}, scores (0.2, 0): 0.550; point 2: never reached
    votes.add(np.array([0, 1]), {"max": np.array([[2.0, 0.0, 9.0], [0.2, 0.0, 9.0]])}, (0, 1))
    np.testing.assert_allclose(votes.confidence("max"), [1 / (1 + np.exp(-2.0)), 1 / (1 + np.exp(-0.2)), 0.0],
                               rtol=1e-6)
    fused = votes.labels("max")
    assert SceneLabels(pcam=None, fused=fused, crf=None).final.tolist() == [0, 0, -1]
    kept = SceneLabels(pcam=None, fused=fused, crf=None, keep=votes.confidence("max") >= 0.6)
    assert kept.final.tolist() == [0, -1, -1]
    assert kept.variants()["mprm"].tolist() == [0, 0, -1]  # the analysis variants keep every point


def test_fusion_max_and_sum_over_paths() -> None:
    cams = {"pcam": torch.tensor([[1.0, -3.0]]), "sa": torch.tensor([[0.5, 2.0]]), "ca": torch.tensor([[2.0, 0.0]])}
    assert fuse(cams, "max").tolist() == [[2.0, 2.0]]
    assert fuse(cams, "sum").tolist() == [[3.5, -1.0]]
    assert fuse(cams, "sa").tolist() == [[0.5, 2.0]]


# ------------------------------------------------------------------------------------------ attention


def _cloud(seed: int, n: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xyz = rng.uniform(0, 2.5, (n, 3)).astype(np.float32)
    xyz[: n // 2, 2] = 0.0  # a floor under a cloud of points
    return xyz, rng.integers(0, 255, (n, 3)).astype(np.uint8)


def _forward(clouds: list[tuple[np.ndarray, np.ndarray]], net: SparseUNet, paths: MultiPathModule, level: int
             ) -> tuple[dict[str, torch.Tensor], torch.Tensor, Any]:
    """CAMs at ``level`` of a batch of clouds, each level row's batch position, and the forward pass."""
    pre = preprocess_config_for("tiny", FeatureConfig(names=("offset", "rgb")))
    batch = np.concatenate([np.full(len(x), b) for b, (x, _) in enumerate(clouds)])
    net_input = prepare_cloud(pre, np.concatenate([x for x, _ in clouds]), rgb=np.concatenate([c for _, c in clouds]),
                              batch=batch)
    features, maps = to_torch(net_input, "cpu")
    output = net.forward_features(features, maps)
    sample = torch.from_numpy(net_input.maps.coords[level][:, 0].astype(np.int64))
    cams = paths(output.encoder[level], output.state.ops, level, sample, len(clouds))  # type: ignore[union-attr]
    return cams, sample, output


@pytest.fixture(scope="module")
def network() -> tuple[SparseUNet, MultiPathModule]:
    torch.manual_seed(0)
    net = SparseUNet(unet_config_for("tiny", 6, 3)).eval()
    paths = MultiPathModule(net.config.channels[2], 3).eval()
    with torch.no_grad():  # non-zero alpha / beta so that attention contributes
        paths.sa.alpha.fill_(1.0)
        paths.ca.beta.fill_(1.0)
    return net, paths


@torch.no_grad()
def test_attention_is_per_sample_at_the_attention_level(network: tuple[SparseUNet, MultiPathModule]) -> None:
    net, paths = network
    first, other, third = _cloud(0), _cloud(1), _cloud(2, n=900)
    alone, _, _ = _forward([first], net, paths, 2)
    together, sample, output = _forward([first, other], net, paths, 2)
    replaced, sample_r, _ = _forward([first, (third[0][::-1].copy(), third[1][::-1].copy())], net, paths, 2)
    for path in ("pcam", "sa", "ca", "psa"):
        mine = together[path][sample == 0]
        torch.testing.assert_close(mine, alone[path], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(replaced[path][sample_r == 0], mine, atol=1e-5, rtol=1e-5)
    # the official code's split, by the input (level-0) point counts: 1500 rows reach past sample 0's level-2 rows
    # into sample 1's, and sample 0's attention output changes
    rows = torch.arange(sample.shape[0])
    wrong = [rows[:len(first[0])], rows[len(first[0]):]]
    assert int((sample[wrong[0]] == 1).sum()) > 0
    cam_wrong = paths.sa(output.encoder[2], output.state.ops, 2, wrong)[0]
    assert not torch.allclose(cam_wrong[sample == 0], alone["sa"], atol=1e-4)


def test_sample_rows_split_by_batch_position() -> None:
    rows = sample_rows(torch.tensor([1, 0, 1, 1, 0]), num_samples=3)
    assert [r.tolist() for r in rows] == [[1, 4], [0, 2, 3], []]


@torch.no_grad()
def test_alpha_and_beta_start_at_zero_so_attention_outputs_equal_the_projection() -> None:
    torch.manual_seed(1)
    net = SparseUNet(unet_config_for("tiny", 6, 3)).eval()
    paths = MultiPathModule(net.config.channels[1], 3).eval()
    assert float(paths.sa.alpha) == 0.0 and float(paths.ca.beta) == 0.0
    pre = preprocess_config_for("tiny", FeatureConfig(names=("offset", "rgb")))
    xyz, rgb = _cloud(3)
    net_input = prepare_cloud(pre, xyz, rgb=rgb)
    features, maps = to_torch(net_input, "cpu")
    output = net.forward_features(features, maps)
    a, ops = output.encoder[1], output.state.ops  # type: ignore[union-attr]
    rows = sample_rows(torch.zeros(a.shape[0], dtype=torch.int64))
    _, g, aggregated = paths.sa(a, ops, 1, rows)
    _, d = paths.ca(a, ops, 1, rows)
    torch.testing.assert_close(g, paths.sa.project(a, ops, 1))
    torch.testing.assert_close(d, paths.ca.project(a, ops, 1))
    assert aggregated.abs().sum() > 0  # attention computed, only weighted by 0
    paths.sa.alpha.fill_(0.5)
    assert not torch.allclose(paths.sa(a, ops, 1, rows)[1], paths.sa.project(a, ops, 1))


# ------------------------------------------------------------------------------------------ CRF


def brute_force_crf(scores: np.ndarray, allowed: np.ndarray, xyz: np.ndarray, rgb: np.ndarray, voxel_m: float,
                    iterations: int = 5) -> np.ndarray:
    """The CRF step written out densely in numpy: voxel means, mixed unary, symmetric-normalised kernels, mean
    field, labels carried back to the points."""
    keys, inverse = np.unique(np.floor(xyz / voxel_m).astype(np.int64), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    m = len(keys)
    count = np.bincount(inverse, minlength=m)[:, None]

    def mean(values: np.ndarray) -> np.ndarray:
        out = np.zeros((m, values.shape[1]))
        np.add.at(out, inverse, values)
        return out / count

    s, centre, colour = mean(scores), mean(xyz.astype(np.float64)), mean(rgb / 255.0)
    ok = np.zeros((m, scores.shape[1]), bool)
    np.logical_or.at(ok, inverse, allowed)
    p = np.where(ok, np.exp(s - np.where(ok, s, -np.inf).max(1, keepdims=True)), 0.0)
    p /= p.sum(1, keepdims=True)
    unary = np.where(ok, -np.log(0.5 * p + 0.5 / ok.sum(1, keepdims=True)), 1e4)
    d_xyz = ((centre[:, None] - centre[None]) ** 2).sum(-1)
    d_rgb = ((colour[:, None] - colour[None]) ** 2).sum(-1)
    weights = np.zeros((m, m))
    for w, kernel in ((3.0, np.exp(-0.5 * d_xyz / 0.04)), (10.0, np.exp(-0.5 * (d_xyz / 0.04 + d_rgb / 0.0016)))):
        np.fill_diagonal(kernel, 0.0)
        norm = 1.0 / np.sqrt(1.0 + kernel.sum(1))
        weights += w * norm[:, None] * kernel * norm[None]
    q = np.exp(-unary - (-unary).max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    for _ in range(iterations):
        logits = -unary + weights @ q
        q = np.exp(logits - logits.max(1, keepdims=True))
        q /= q.sum(1, keepdims=True)
    carried = q.argmax(1)[inverse]
    own = np.where(allowed, scores, -np.inf).argmax(1)
    return np.where(allowed[np.arange(len(xyz)), carried], carried, own)


def test_crf_step_equals_a_brute_force_mean_field() -> None:
    rng = np.random.default_rng(4)
    n = 300
    xyz = rng.uniform(0, 0.33, (n, 3))  # every pair within the tool's 3-sigma cutoff (0.6 m): exact
    rgb = np.where((xyz[:, 0] < 0.16)[:, None], [200, 40, 40], [40, 40, 200]).astype(np.float64)
    rgb = np.clip(rgb + rng.normal(0, 8, (n, 3)), 0, 255).astype(np.uint8)
    scores = rng.normal(0, 1.0, (n, 3)).astype(np.float32)
    scores[:, 0] += np.where(xyz[:, 0] < 0.16, 0.8, -0.8)
    allowed = np.ones((n, 3), bool)
    allowed[: n // 3, 2] = False
    labels = refine_with_crf(scores, allowed, xyz, rgb, voxel_size_m=0.03)
    expected = brute_force_crf(scores.astype(np.float64), allowed, xyz, rgb, 0.03)
    np.testing.assert_array_equal(labels, expected)
    raw = np.where(allowed, scores, -np.inf).argmax(1)
    assert (labels != raw).mean() > 0.05 and len(np.unique(labels)) > 1  # the CRF changed something, not everything
    assert allowed[np.arange(n), labels].all()


def test_mixed_unary_gives_excluded_classes_no_chance() -> None:
    unary = mixed_unary(torch.tensor([[0.0, 0.0, 5.0]]), torch.tensor([[True, True, False]]), 0.5)
    np.testing.assert_allclose(unary[0, :2].numpy(), [-np.log(0.5)] * 2, rtol=1e-6)  # 0.5 * 0.5 + 0.5 / 2
    assert float(unary[0, 2]) >= 1e4
