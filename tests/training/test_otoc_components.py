"""1T1C building blocks against answers worked out by hand: click expansion, pooling, memory bank,
contrastive loss, balanced sampling, confidence filtering (the CRF: test_otoc_crf.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from wsseg_training.methods.common.class_weights import class_weights, label_counts
from wsseg_training.methods.otoc import (
    OtocConfig,
    PrototypeBank,
    Segments,
    batch_prototypes,
    build_relation_net,
    class_sums,
    combine_probabilities,
    contrastive_loss,
    coverage,
    expand_clicks,
    initial_pseudo_labels,
    kernel_features,
    next_pseudo_labels,
    object_classes,
    point_confidence,
    point_pseudo_labels,
    pool_nodes,
    propagate,
    propagate_scene,
    prototypes_from_sums,
    pseudo_label_confusion,
    relation_loss,
    relation_probabilities,
    sample_balanced,
    segment_majority,
    segment_mean,
    select_confident,
    select_nodes,
    supervoxel_confidence,
)
from wsseg_training.model import UNetConfig, to_torch

from wsseg.core.classes import IGNORE_INDEX, S3DIS, ClassTable
from wsseg.core.preprocess import PreprocessConfig, prepare_cloud

X = IGNORE_INDEX


# --- initial pseudo labels (Algorithm 1 line 1) ------------------------------------------------------------

def test_expand_clicks_spreads_votes_and_keeps_clicked_points() -> None:
    # super-voxel ids are arbitrary; -1 = no super-voxel
    supervoxel = np.array([7, 7, 7, 42, 42, 42, 42, 5, 5, 5, -1, -1, 9, 9], dtype=np.int32)
    clicks = np.full(14, X, dtype=np.int64)
    clicks[1] = 2                      # sv 7: one click -> whole super-voxel is class 2
    clicks[[3, 4, 5]] = [1, 1, 0]      # sv 42: majority 1; point 5 keeps its own click 0
    clicks[[7, 8]] = [0, 1]            # sv 5: tie -> unlabelled, the clicked points keep their clicks
    clicks[10] = 2                     # no super-voxel: only the clicked point
    # sv 9: no click
    labels = expand_clicks(clicks, supervoxel, num_classes=3)
    expected = np.array([2, 2, 2, 1, 1, 0, 1, 0, 1, X, 2, X, X, X])
    np.testing.assert_array_equal(labels, expected)
    assert labels.dtype == np.int64
    with pytest.raises(ValueError, match="supervoxel"):
        expand_clicks(clicks, supervoxel[:5], num_classes=3)


def test_expand_clicks_limits_object_clicks_to_a_ball_in_their_supervoxel() -> None:
    # points on the x axis, 1 m apart; sv 0 = x 0..9 (a "floor" segment that swallowed an object), sv 1 = x 10..12
    xyz = np.zeros((13, 3), dtype=np.float32)
    xyz[:, 0] = np.arange(13)
    supervoxel = np.array([0] * 10 + [1] * 3)
    capped = np.array([False, True, True])  # class 0 = structure, classes 1 and 2 = objects
    clicks = np.full(13, X, dtype=np.int64)
    clicks[[2, 5]] = [1, 2]        # two object clicks in sv 0: balls of 1.6 m, x = 4 is 2 m from the first
    clicks[8] = 0                  # a structure click in sv 0: the whole super-voxel, except the balls
    clicks[11] = 2                 # an object click whose ball covers its small super-voxel
    labels = expand_clicks(clicks, supervoxel, 3, xyz=xyz, radius_m=1.6, capped=capped)
    np.testing.assert_array_equal(labels, [0, 1, 1, 1, 2, 2, 2, 0, 0, 0, 2, 2, 2])  # x = 0 is 2 m away
    # overlapping balls: the nearer click wins (x = 3 is 1 m from the first, 2 m from the second)
    two = expand_clicks(clicks, supervoxel, 3, xyz=xyz, radius_m=2.5, capped=capped)
    np.testing.assert_array_equal(two[:8], [1, 1, 1, 1, 2, 2, 2, 2])
    # no radius: Algorithm 1 line 1 (vote over sv 0: one vote each for 1, 2, 0 -> tie -> unlabelled)
    whole = expand_clicks(clicks, supervoxel, 3)
    np.testing.assert_array_equal(whole, [X, X, 1, X, X, 2, X, X, 0, X, 2, 2, 2])
    # only object clicks in a super-voxel: the rest of it stays unlabelled
    lone = np.full(13, X, dtype=np.int64)
    lone[0] = 1
    np.testing.assert_array_equal(expand_clicks(lone, supervoxel, 3, xyz=xyz, radius_m=1.0, capped=capped),
                                  [1, 1] + [X] * 11)
    with pytest.raises(ValueError, match="xyz and capped"):
        expand_clicks(clicks, supervoxel, 3, radius_m=1.0)
    with pytest.raises(ValueError, match="capped"):
        expand_clicks(clicks, supervoxel, 3, xyz=xyz, radius_m=1.0, capped=np.ones(2, dtype=bool))


def test_object_classes_from_the_table_or_the_config() -> None:
    capped = object_classes(S3DIS)
    assert [n for n, c in zip(S3DIS.names, capped, strict=True) if not c] == [
        "ceiling", "floor", "wall", "beam", "column"]
    custom = ClassTable("rooms", ("floor", "wall", "box"), ((1, 1, 1), (2, 2, 2), (3, 3, 3)))
    assert not object_classes(custom).any()  # no built-in entry: every click takes its whole super-voxel
    np.testing.assert_array_equal(object_classes(custom, ("floor", "wall")), [False, False, True])
    with pytest.raises(ValueError, match="'ground'"):
        object_classes(custom, ("ground",))
    xyz = np.zeros((4, 3), dtype=np.float32)
    xyz[:, 0] = [0.0, 0.3, 0.6, 0.9]
    clicks = np.array([2, X, X, X])
    supervoxel = np.zeros(4, dtype=np.int64)
    config = OtocConfig(click_radius_m=0.5, structure_classes=("floor", "wall"))
    np.testing.assert_array_equal(initial_pseudo_labels(clicks, supervoxel, xyz, custom, config), [2, 2, X, X])
    paper = OtocConfig(click_radius_m=None)
    np.testing.assert_array_equal(initial_pseudo_labels(clicks, supervoxel, xyz, custom, paper), [2, 2, 2, 2])


def test_class_weights_balance_the_labelled_points() -> None:
    """1T1C's normalisation (``points``): a labelled point weighs 1 on average; old spellings are aliases."""
    scenes = [np.array([0, 0, X, 1]), np.array([0, X])]  # class 0: 3 points, class 1: 1, class 2: none
    counts = label_counts(scenes, 3)
    np.testing.assert_allclose(class_weights(counts, "none", "points"), [1, 1, 1])
    inverse = class_weights(counts, "inverse", "points")
    np.testing.assert_array_equal(inverse, class_weights(counts, "inverse_frequency", "points"))
    np.testing.assert_allclose(inverse, [2 / 3, 2, 1], rtol=1e-6)  # 1/f = 4/3, 4; mean over points 2 -> / 2
    assert 0.75 * inverse[0] + 0.25 * inverse[1] == pytest.approx(1.0)  # a labelled point weighs 1 on average
    root = class_weights(counts, "inverse_sqrt", "points")
    assert root[1] / root[0] == pytest.approx(3 ** 0.5, rel=1e-6)
    np.testing.assert_allclose(class_weights(label_counts([np.array([X, X])], 3), "inverse", "points"), [1, 1, 1])


# --- super-voxel pooling (Eq. 2) ----------------------------------------------------------------------------

def test_segment_mean_values_gradients_and_empty_segments() -> None:
    values = torch.tensor([[1.0, 2.0], [3.0, 6.0], [10.0, 0.0], [20.0, 4.0], [99.0, 99.0]], requires_grad=True)
    index = torch.tensor([0, 0, 2, 2, -1])
    means, counts = segment_mean(values, index, num_segments=4)
    torch.testing.assert_close(means, torch.tensor([[2.0, 4.0], [0.0, 0.0], [15.0, 2.0], [0.0, 0.0]]))
    assert counts.tolist() == [2, 0, 2, 0]
    weights = torch.tensor([[1.0, -1.0], [5.0, 5.0], [2.0, 3.0], [7.0, 7.0]])
    (means * weights).sum().backward()
    # d mean_s / d v_i = 1 / n_s for the rows of s; the skipped row gets nothing
    expected = torch.tensor([[0.5, -0.5], [0.5, -0.5], [1.0, 1.5], [1.0, 1.5], [0.0, 0.0]])
    torch.testing.assert_close(values.grad, expected)


def test_segments_renumber_ids_and_pool_nodes() -> None:
    supervoxel = torch.tensor([30, -1, 10, 30, 10, 10])
    segments = Segments.from_ids(supervoxel)
    assert segments.ids.tolist() == [10, 30]
    assert segments.node.tolist() == [1, -1, 0, 1, 0, 0]
    assert segments.counts.tolist() == [3, 2]
    xyz = torch.tensor([[0.0, 0, 0], [9, 9, 9], [1, 0, 0], [2, 0, 0], [2, 0, 0], [3, 0, 0]])
    rgb = torch.tensor([[255, 0, 0], [0, 0, 0], [0, 255, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]],
                       dtype=torch.uint8)
    prob = torch.tensor([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6], [0.0, 1.0]])
    nodes = pool_nodes(segments, xyz, prob, rgb=rgb)
    torch.testing.assert_close(nodes.xyz, torch.tensor([[2.0, 0, 0], [1.0, 0, 0]]))
    torch.testing.assert_close(nodes.rgb, torch.tensor([[0.0, 2 / 3, 1 / 3], [1.0, 0.0, 0.0]]))
    torch.testing.assert_close(nodes.prob, torch.tensor([[0.2, 0.8], [0.8, 0.2]]))
    assert nodes.unet_feature is None and nodes.relation_embedding is None
    back = segments.to_points(torch.tensor([4, 5]), fill=X)
    assert back.tolist() == [5, X, 4, 5, 4, 4]
    with pytest.raises(ValueError, match="'rgb' has 2 rows"):
        pool_nodes(segments, xyz, prob, rgb=rgb[:2])


def test_segment_majority_ties_and_unlabelled() -> None:
    labels = torch.tensor([0, 0, 1, 2, 2, X, 1, 0, X])
    index = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 3])
    assert segment_majority(labels, index, 4, num_classes=3).tolist() == [0, 2, X, X]


# --- relation network: memory bank, contrastive loss, sampling (Eq. 6-7) ------------------------------------

def test_memory_bank_momentum_update_exact_and_absent_class_unchanged() -> None:
    bank = PrototypeBank(num_classes=3, embed_dim=2, momentum=0.9, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(bank.prototypes.norm(dim=1), torch.ones(3))   # random unit vectors
    assert "prototypes" in bank.state_dict()                                 # checkpointed with the weights
    bank.prototypes.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]))
    embeddings = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    bank.update(embeddings, torch.tensor([0, 0, 1]))
    # k0 = norm(0.9 (1, 0) + 0.1 (0, 1)); k1 = norm(0.9 (0, 1) + 0.1 (1, 0)); class 2 absent -> unchanged
    r = math.sqrt(0.9**2 + 0.1**2)
    expected = torch.tensor([[0.9 / r, 0.1 / r], [0.1 / r, 0.9 / r], [0.6, 0.8]])
    torch.testing.assert_close(bank.prototypes, expected)
    assert bank.prototypes[2].tolist() == [pytest.approx(0.6), pytest.approx(0.8)]


def test_contrastive_loss_two_classes_by_hand() -> None:
    tau = 0.07
    prototypes = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    embeddings = torch.tensor([[1.0, 0.0], [0.6, 0.8]], requires_grad=True)
    labels = torch.tensor([0, 1])
    loss = contrastive_loss(embeddings, labels, prototypes, tau)
    # sample 1: logits (1/τ, 0), true 0 -> log(1 + e^{-1/τ}); sample 2: logits (0.6/τ, 0.8/τ), true 1
    by_hand = 0.5 * (math.log(1 + math.exp(-1 / tau)) + math.log(1 + math.exp(-0.2 / tau)))
    assert loss.item() == pytest.approx(by_hand, rel=1e-5)
    loss.backward()
    assert embeddings.grad is not None and torch.isfinite(embeddings.grad).all()
    # a masked-out class leaves a one-way softmax: loss 0
    only_zero = contrastive_loss(embeddings[:1], labels[:1], prototypes, tau, present=torch.tensor([True, False]))
    assert only_zero.item() == pytest.approx(0.0, abs=1e-7)


def test_batch_prototypes_without_memory_bank() -> None:
    samples = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    prototypes, present = batch_prototypes(samples, torch.tensor([1, 1, 1]), num_classes=3)
    assert present.tolist() == [False, True, False]
    torch.testing.assert_close(prototypes, torch.tensor([[0.0, 0.0], [1 / math.sqrt(5), 2 / math.sqrt(5)],
                                                         [0.0, 0.0]]))
    # at propagation time "w/o MB" takes the class means accumulated over the training scenes
    sums, counts = class_sums(samples, torch.tensor([1, 1, 1]), 3)
    torch.testing.assert_close(prototypes_from_sums(sums, counts), prototypes)


def test_class_balanced_sampling_counts_with_replacement_for_rare_class() -> None:
    labels = torch.full((80,), X)
    labels[:50] = 0           # plentiful
    labels[50:53] = 1         # rare: 3 super-voxels
    labels[60:70] = 3         # 10 < s
    generator = torch.Generator().manual_seed(3)
    index = sample_balanced(labels, num_classes=4, per_class=20, generator=generator)
    picked = labels[index]
    assert torch.bincount(picked, minlength=4).tolist() == [20, 20, 0, 20]
    zero = index[picked == 0]
    assert zero.unique().numel() == 20 and bool((zero < 50).all())            # without replacement
    rare = index[picked == 1]
    assert set(rare.tolist()) <= {50, 51, 52} and rare.unique().numel() <= 3  # with replacement
    assert sample_balanced(torch.full((5,), X), 4, 20, generator).numel() == 0


def test_relation_loss_updates_bank_and_variant_without_bank() -> None:
    generator = torch.Generator().manual_seed(1)
    pooled = torch.randn(12, 4, generator=generator, requires_grad=True)
    node_labels = torch.tensor([0, 0, 0, 1, 1, X, X, 2, 2, 2, 2, X])
    bank = PrototypeBank(num_classes=4, embed_dim=4, generator=generator)
    before = bank.prototypes.clone()
    loss, info = relation_loss(pooled, node_labels, bank, 4, per_class=5, temperature=0.07, generator=generator)
    loss.backward()
    assert info == {"samples": 15.0, "classes": 3.0}
    assert pooled.grad is not None and pooled.grad[5].abs().sum() == 0   # unlabelled super-voxel never sampled
    moved = (bank.prototypes - before).norm(dim=1) > 1e-6
    assert moved.tolist() == [True, True, True, False]
    loss_no_mb, _ = relation_loss(pooled, node_labels, None, 4, per_class=5, temperature=0.07, generator=generator)
    assert torch.isfinite(loss_no_mb)


def test_relation_net_outputs_32_channel_embeddings() -> None:
    rng = np.random.default_rng(0)
    xyz = rng.uniform(0, 1.0, (300, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (300, 3)).astype(np.uint8)
    pre = PreprocessConfig(voxel_size_m=0.1, num_levels=2)
    net_input = prepare_cloud(pre, xyz, rgb=rgb)
    features, maps = to_torch(net_input, "cpu")
    unet = UNetConfig(in_channels=pre.features.num_channels, num_classes=5, channels=(8, 16), blocks=(1, 1))
    relation = build_relation_net(unet, embed_dim=32).eval()
    with torch.no_grad():
        out = relation.forward_features(features, maps, compact=True)
    assert out.logits.shape == (features.shape[0], 32)
    assert (out.logits < 0).any()   # signed embeddings, unlike the ReLU point features


def test_relation_probabilities_and_fusion() -> None:
    prototypes = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    rel = relation_probabilities(torch.tensor([[2.0, 0.0]]), prototypes, temperature=1.0)
    torch.testing.assert_close(rel, torch.softmax(torch.tensor([[1.0, 0.0]]), dim=1))


def test_fusion_product_and_normalised_geometric_mean() -> None:
    theta = torch.tensor([[0.8, 0.2], [0.5, 0.5]])
    relation = torch.tensor([[0.8, 0.2], [0.9, 0.1]])
    # paper: product renormalised, 0.64 / (0.64 + 0.04) = 16/17
    torch.testing.assert_close(combine_probabilities(theta, relation),
                               torch.tensor([[16 / 17, 1 / 17], [0.9, 0.1]]))
    # geometric mean: two identical opinions are one opinion, not twice the evidence; same argmax
    torch.testing.assert_close(combine_probabilities(theta, relation, exponent=0.5),
                               torch.tensor([[0.8, 0.2], [0.75, 0.25]]))
    with pytest.raises(ValueError, match="exponent"):
        combine_probabilities(theta, relation, exponent=0.0)


# --- confidence filtering (Eq. 8) and the next pseudo labels ------------------------------------------------

def test_confidence_filter_keeps_exactly_the_expected_supervoxels() -> None:
    q = torch.tensor([[0.95, 0.05], [0.85, 0.15], [0.1, 0.9], [0.5, 0.5], [0.01, 0.99], [0.8999, 0.1001]])
    labels = q.argmax(dim=1)
    confidence = supervoxel_confidence(q, labels)
    torch.testing.assert_close(confidence[0], torch.tensor(-math.log(0.95)))
    keep = select_confident(confidence, threshold=0.9)
    assert keep.tolist() == [True, False, True, False, True, False]
    # 6 super-voxels of 2 points each, point 12 has no super-voxel; super-voxel 1 (not confident) was clicked
    point_node = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, -1])
    initial = np.full(13, X)
    initial[[2, 3]] = 1
    initial[12] = 0
    labels_next = next_pseudo_labels(point_node, labels.numpy(), keep.numpy(), initial)
    np.testing.assert_array_equal(labels_next, [0, 0, 1, 1, 1, 1, X, X, 1, 1, X, X, 0])
    assert coverage(labels_next) == pytest.approx(9 / 13)


def test_selection_rules_by_hand() -> None:
    q = torch.tensor([[0.95, 0.05], [0.95, 0.05], [0.3, 0.7], [0.92, 0.08]])     # after the CRF
    theta = torch.tensor([[0.8, 0.2], [0.4, 0.6], [0.2, 0.8], [0.6, 0.4]])
    relation = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.3, 0.7]])
    prob = torch.tensor([[0.97, 0.03], [0.86, 0.14], [0.03, 0.97], [0.39, 0.61]])  # fused, before the CRF
    labels, keep = select_nodes("marginal", 0.9, q, prob, theta, relation)
    assert labels.tolist() == [0, 0, 1, 0] and keep.tolist() == [True, True, False, True]
    # agree: node 1 is overruled against Θ, node 3 against R -> both dropped
    labels, keep = select_nodes("agree", 0.9, q, prob, theta, relation)
    assert labels.tolist() == [0, 0, 1, 0] and keep.tolist() == [True, False, False, False]
    _, keep = select_nodes("agree", 0.9, q, prob, theta, None)                   # +GP: Θ only
    assert keep.tolist() == [True, False, False, True]
    # authors' code: pre-CRF fused argmax, kept iff the larger network peak >= T (0.9 passes exactly)
    labels, keep = select_nodes("code", 0.9, q, prob, theta, relation)
    assert labels.tolist() == [0, 0, 1, 1] and keep.tolist() == [True, True, True, False]
    with pytest.raises(ValueError, match="selection rule"):
        select_nodes("vote", 0.9, q, prob, theta, relation)


def test_point_confidence_is_mean_negative_log_probability() -> None:
    segments = Segments.from_ids(torch.tensor([0, 0, 1]))
    point_prob = torch.tensor([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]])
    conf = point_confidence(point_prob, segments, torch.tensor([0, 1]))
    torch.testing.assert_close(conf, torch.tensor([-(math.log(0.9) + math.log(0.5)) / 2, -math.log(0.8)]))


def test_point_pseudo_labels_unet_variant() -> None:
    prob = np.array([[0.95, 0.05], [0.6, 0.4], [0.05, 0.95], [0.5, 0.5]])
    labels = point_pseudo_labels(prob, 0.9, initial=np.array([X, X, X, 1]))
    np.testing.assert_array_equal(labels, [0, X, 1, 1])


def test_pseudo_label_confusion_scores_only_labelled_points() -> None:
    labels = np.array([0, 0, 1, X, X, 1])
    truth = np.array([0, 1, 1, 0, 1, 1])
    confusion = pseudo_label_confusion(labels, truth, num_classes=2)
    assert confusion.total == 4
    assert confusion.miou() == pytest.approx((1 / 2 + 2 / 3) / 2)


# --- one scene end to end ------------------------------------------------------------------------------------

def test_propagate_scene_rel_gp_relabels_an_uncertain_supervoxel() -> None:
    # three super-voxels of a red object (class 0) next to each other, one green far away (class 1);
    # Θ is unsure about super-voxel 2, R's embedding of it points at class 0
    sv = torch.tensor([0] * 4 + [1] * 4 + [2] * 4 + [3] * 4 + [-1])
    xyz = torch.cat([torch.zeros(4, 3), torch.full((4, 3), 0.1), torch.full((4, 3), 0.2), torch.full((4, 3), 5.0),
                     torch.zeros(1, 3)])
    rgb = torch.tensor([[200, 0, 0]] * 12 + [[0, 200, 0]] * 4 + [[0, 0, 0]], dtype=torch.uint8)
    prob = torch.tensor([[0.97, 0.03]] * 8 + [[0.45, 0.55]] * 4 + [[0.02, 0.98]] * 4 + [[0.5, 0.5]])
    feature = torch.tensor([[1.0, 0.0]] * 12 + [[0.0, 1.0]] * 4 + [[1.0, 1.0]])
    prototypes = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    paper = OtocConfig(fusion="product", selection="marginal")
    result = propagate_scene(sv, xyz, prob, paper, rgb=rgb, unet_feature=feature,
                             relation_embedding=feature, prototypes=prototypes)
    assert result.labels.tolist() == [0, 0, 0, 1]
    assert result.keep.tolist() == [True, True, True, True]
    # default rule (geometric fusion, agreement): same labels, but super-voxel 2 is not a pseudo label while
    # Θ still says 1 -- the graph may fix the prediction, the networks must agree before Θ is taught it
    default = propagate_scene(sv, xyz, prob, OtocConfig(), rgb=rgb, unet_feature=feature,
                              relation_embedding=feature, prototypes=prototypes)
    assert default.labels.tolist() == [0, 0, 0, 1] and default.keep.tolist() == [True, True, False, True]
    initial = np.full(17, X)
    initial[[0, 1, 2, 3]] = 0
    np.testing.assert_array_equal(result.pseudo_labels(initial), [0] * 12 + [1] * 4 + [X])
    fallback = prob.argmax(dim=1)
    assert result.point_predictions(fallback).tolist() == [0] * 12 + [1] * 4 + [0]
    # the unet variant has no graph: super-voxel 2 stays with Θ's (unconfident) prediction and is dropped
    plain = propagate(result.nodes, OtocConfig(variant="unet"))
    assert plain.labels.tolist() == [0, 0, 1, 1] and plain.keep.tolist() == [True, True, False, True]
    with pytest.raises(ValueError, match="rel_gp"):
        propagate(result.nodes, OtocConfig(), prototypes=None)


def test_propagate_scene_without_supervoxels_falls_back_to_theta() -> None:
    prob = torch.tensor([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]])
    result = propagate_scene(torch.full((3,), -1), torch.zeros(3, 3), prob, OtocConfig(variant="gp"),
                             rgb=torch.zeros(3, 3, dtype=torch.uint8))
    assert result.labels.numel() == 0
    np.testing.assert_array_equal(result.pseudo_labels(np.array([X, 1, X])), [X, 1, X])
    assert result.point_predictions(prob.argmax(dim=1)).tolist() == [0, 1, 0]


def test_graph_of_a_cloud_without_colour_uses_the_other_groups() -> None:
    """LiDAR scans have no colour: the +GP kernel is then Eq. 5 on the coordinates alone."""
    segments = Segments.from_ids(torch.tensor([0, 0, 1, 1]))
    xyz = torch.tensor([[0.0, 0, 0], [0.2, 0, 0], [2.0, 0, 0], [2.2, 0, 0]])
    nodes = pool_nodes(segments, xyz, torch.full((4, 2), 0.5))
    scales = OtocConfig(variant="gp").group_scales()
    features = kernel_features(nodes, ("colour", "coords"), scales)
    torch.testing.assert_close(features, kernel_features(nodes, ("coords",), scales))
    assert propagate_scene(torch.tensor([0, 0, 1, 1]), xyz, torch.tensor([[0.99, 0.01]] * 2 + [[0.01, 0.99]] * 2),
                           OtocConfig(variant="gp")).labels.tolist() == [0, 1]
    with pytest.raises(ValueError, match="'unet' needs node attribute"):
        kernel_features(nodes, ("unet",), scales)


def test_config_validation_and_round_trip() -> None:
    config = OtocConfig()
    assert (config.embed_dim, config.temperature, config.momentum, config.samples_per_class) == (32, 0.07, 0.9, 20)
    assert config.confidence_limit == pytest.approx(-math.log(0.9))
    assert OtocConfig.from_dict(config.to_dict()) == config
    assert OtocConfig(variant="gp").pairwise_groups == ("colour", "coords")
    with pytest.raises(ValueError, match="'variant'"):
        OtocConfig(variant="crf")
    with pytest.raises(ValueError, match="'momentum'"):
        OtocConfig(momentum=1.0)
    with pytest.raises(ValueError, match="'confidence_threshold'"):
        OtocConfig(confidence_threshold=1.5)
    with pytest.raises(ValueError, match="unknown field"):
        OtocConfig.from_dict({"tau": 0.1})
    with pytest.raises(ValueError, match="'selection'"):
        OtocConfig(selection="vote")
    with pytest.raises(ValueError, match="'fusion'"):
        OtocConfig(fusion="sum")
    with pytest.raises(ValueError, match="'class_weighting'"):
        OtocConfig(class_weighting="focal")
    with pytest.raises(ValueError, match="'click_radius_m'"):
        OtocConfig(click_radius_m=0.0)
    with pytest.raises(ValueError, match="'structure_classes'"):
        OtocConfig(structure_classes="floor")  # type: ignore[arg-type]
    listed = OtocConfig.from_dict({"structure_classes": ["floor", "wall"]})  # as YAML gives it
    assert listed.structure_classes == ("floor", "wall")
    assert OtocConfig.from_dict(listed.to_dict()) == listed
