"""Shared method tools (``wsseg_training.methods.common``): tiny inputs whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from wsseg_training.methods.common.adjacency import knn_pairs, region_adjacency
from wsseg_training.methods.common.class_weights import (
    CLASS_WEIGHTINGS,
    canonical_weighting,
    class_weights,
    label_counts,
)
from wsseg_training.methods.common.losses import point_cross_entropy
from wsseg_training.methods.common.prototypes import PrototypeBank, PrototypeSums, contrastive_loss
from wsseg_training.methods.common.segments import Segments, segment_max, segment_mean

from wsseg.core.classes import IGNORE_INDEX

X = IGNORE_INDEX


# --- segment pooling --------------------------------------------------------------------------------------


def test_segment_max_and_mean_by_hand_with_empty_and_skipped_rows() -> None:
    values = torch.tensor([[0.1, 0.9], [0.7, 0.2], [0.4, 0.4], [5.0, 5.0], [0.3, 0.6]])
    index = torch.tensor([0, 0, 2, -1, 2])  # segment 1 is empty; row 3 belongs to none
    maxima, counts = segment_max(values, index, 3, fill=-1.0)
    np.testing.assert_allclose(maxima.numpy(), [[0.7, 0.9], [-1.0, -1.0], [0.4, 0.6]])
    np.testing.assert_array_equal(counts.numpy(), [2, 0, 2])
    means, _ = segment_mean(values, index, 3)
    np.testing.assert_allclose(means.numpy(), [[0.4, 0.55], [0.0, 0.0], [0.35, 0.5]], rtol=1e-6)
    one_d, _ = segment_max(values[:, 0], index, 3)
    np.testing.assert_allclose(one_d.numpy(), [0.7, 0.0, 0.4])


def test_segment_max_gradient_reaches_only_the_maximum() -> None:
    values = torch.tensor([[1.0], [3.0], [2.0]], requires_grad=True)
    maxima, _ = segment_max(values, torch.tensor([0, 0, 0]), 1)
    maxima.sum().backward()
    np.testing.assert_array_equal(values.grad.numpy().ravel(), [0.0, 1.0, 0.0])  # type: ignore[union-attr]


def test_segments_max_over_renumbered_ids() -> None:
    segments = Segments.from_ids(torch.tensor([7, 3, 7, -1, 3]))  # ids 3 -> node 0, 7 -> node 1
    np.testing.assert_allclose(segments.max(torch.tensor([1.0, 4.0, 2.0, 9.0, 0.5])).numpy(), [4.0, 2.0])
    with pytest.raises(ValueError, match="segment index has 2 rows, values have 5"):
        segment_max(torch.zeros(5), torch.zeros(2, dtype=torch.int64), 1)
    with pytest.raises(ValueError, match=r"segment index 4 outside 0..1"):
        segment_max(torch.zeros(2), torch.tensor([0, 4]), 2)


# --- region adjacency ---------------------------------------------------------------------------------------


def _three_regions() -> tuple[np.ndarray, np.ndarray]:
    """Three 1 m x 1 m patches in a row along x (0-1, 1-2 and 2-3 m), a 5 cm grid; only neighbours touch."""
    grid = np.stack(np.meshgrid(np.arange(0, 3.0, 0.05), np.arange(0, 1.0, 0.05), indexing="ij"), -1).reshape(-1, 2)
    xyz = np.concatenate([grid, np.zeros((len(grid), 1))], axis=1)
    region = np.floor(xyz[:, 0] + 1e-9).astype(np.int64)
    return xyz, region


def test_region_adjacency_on_three_regions_in_a_row() -> None:
    xyz, region = _three_regions()
    pairs, links = region_adjacency(xyz, region, k=8)
    np.testing.assert_array_equal(pairs, [[0, 1], [1, 2]])  # 0 and 2 are 1 m apart: never neighbours
    assert (links > 0).all()
    # region ids need not be contiguous, and -1 points (here: the whole middle patch) touch nothing
    renamed = np.array([10, -1, 42])[region]
    pairs, _ = region_adjacency(xyz, renamed, k=8)
    assert pairs.shape == (0, 2)
    # a distance cap below the grid step cuts every link
    assert region_adjacency(xyz, region, k=8, max_distance_m=0.01)[0].shape == (0, 2)


def test_knn_pairs_excludes_self_and_caps_k() -> None:
    rows, cols = knn_pairs(np.array([[0.0, 0, 0], [1.0, 0, 0], [3.0, 0, 0]]), k=5)
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    with pytest.raises(ValueError, match="k is 0"):
        knn_pairs(np.zeros((3, 3)), k=0)


# --- prototypes / memory bank -------------------------------------------------------------------------------


def test_memory_bank_update_by_hand() -> None:
    bank = PrototypeBank(num_classes=3, embed_dim=2, momentum=0.5)
    bank.prototypes.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]))
    samples = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    bank.update(samples, torch.tensor([0, 0, 1]))
    # class 0: normalise(0.5 (1, 0) + 0.5 (0, 1)); class 1: normalise(0.5 (0, 1) + 0.5 (1, 0)); class 2 unchanged
    half = 2 ** -0.5
    np.testing.assert_allclose(bank.prototypes.numpy(), [[half, half], [half, half], [1.0, 0.0]], rtol=1e-6)
    # the loss against the bank is the C-way softmax cross-entropy over cos / τ
    loss = contrastive_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([2]), bank.prototypes, temperature=1.0)
    logits = torch.tensor([[half, half, 1.0]])
    assert float(loss) == pytest.approx(float(F.cross_entropy(logits, torch.tensor([2]))), rel=1e-6)


def test_prototype_sums_mean_per_class_and_reset() -> None:
    sums = PrototypeSums(num_classes=2, embed_dim=2)
    sums.add(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
    np.testing.assert_allclose(sums.prototypes().numpy(), [[2 ** -0.5, 2 ** -0.5], [0.0, 0.0]], rtol=1e-6)
    sums.reset()
    assert float(sums.counts.sum()) == 0.0


# --- class weights, one vocabulary ----------------------------------------------------------------------------


def test_class_weighting_vocabulary_and_aliases() -> None:
    assert CLASS_WEIGHTINGS[:3] == ("none", "inverse_sqrt_frequency", "inverse_frequency")
    assert canonical_weighting("inverse") == "inverse_frequency"
    assert canonical_weighting("inverse_sqrt") == "inverse_sqrt_frequency"
    with pytest.raises(ValueError, match="'sometimes' is not one of"):
        canonical_weighting("sometimes")
    counts = label_counts([np.array([0] * 9 + [1, X]), np.array([], dtype=np.int64)], 3)
    np.testing.assert_array_equal(counts, [9, 1, 0])
    weights = class_weights(counts, "inverse_frequency")  # ``classes``: mean 1 over present classes, 0 absent
    np.testing.assert_allclose(weights, [0.2, 1.8, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(class_weights(counts, "none"), [1, 1, 1])
    with pytest.raises(ValueError, match="normalisation 'rows'"):
        class_weights(counts, "none", "rows")


# --- weighted point cross-entropy ---------------------------------------------------------------------------


def test_point_cross_entropy_by_hand() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    labels = torch.tensor([0, 1, X])
    ce = -torch.log_softmax(logits, dim=1)
    total, count = point_cross_entropy(logits, labels)
    assert float(total) == pytest.approx(float(ce[0, 0] + ce[1, 1])) and float(count) == 2.0
    total, count = point_cross_entropy(logits, labels, class_weights=torch.tensor([1.0, 3.0]))
    assert float(total) == pytest.approx(float(ce[0, 0] + 3 * ce[1, 1])) and float(count) == 4.0
    total, count = point_cross_entropy(logits, labels, class_weights=torch.tensor([1.0, 3.0]),
                                       point_weights=torch.tensor([0.5, 1.0, 100.0]))
    assert float(total) == pytest.approx(float(0.5 * ce[0, 0] + 3 * ce[1, 1])) and float(count) == 3.5
    total, count = point_cross_entropy(logits, torch.full((3,), X))
    assert float(total) == 0.0 and float(count) == 0.0
    with pytest.raises(ValueError, match="point_weights have 2 rows"):
        point_cross_entropy(logits, labels, point_weights=torch.ones(2))


# --- dense point CRF ------------------------------------------------------------------------------------------


def _brute_force_mean_field(unary: np.ndarray, xyz: np.ndarray, rgb: np.ndarray, kernels: tuple,
                            iterations: int, symmetric: bool) -> np.ndarray:
    """Textbook mean field, written out pair by pair in the Potts form Σ_j w k (1 - Q_j(l)) (no shortcut)."""
    n, c = unary.shape
    weights = np.zeros((n, n))
    for kernel in kernels:
        k = np.zeros((n, n))
        for i in range(n):
            for j in range(n):
                if i != j:
                    e = np.sum((xyz[i] - xyz[j]) ** 2) / kernel.theta_xyz_m ** 2
                    if kernel.theta_rgb is not None:
                        e += np.sum((rgb[i] - rgb[j]) ** 2) / kernel.theta_rgb ** 2
                    k[i, j] = np.exp(-0.5 * e)
        if symmetric:
            d = 1.0 + k.sum(axis=1)
            k = k / np.sqrt(d[:, None] * d[None, :])
        weights += kernel.weight * k
    q = np.exp(-unary) / np.exp(-unary).sum(axis=1, keepdims=True)
    for _ in range(iterations):
        energy = unary.copy()
        for i in range(n):
            for label in range(c):
                energy[i, label] += np.sum(weights[i] * (1.0 - q[:, label]))
        q = np.exp(-(energy - energy.min(axis=1, keepdims=True)))
        q /= q.sum(axis=1, keepdims=True)
    return q


@pytest.mark.parametrize("normalisation", ["symmetric", "none"])
def test_dense_crf_equals_brute_force_mean_field(normalisation: str) -> None:
    from wsseg_training.methods.common.dense_crf import MPRM_KERNELS, dense_crf

    rng = np.random.default_rng(0)
    n, c = 120, 4
    xyz = rng.uniform(0, 0.8, (n, 3))
    rgb = rng.integers(0, 256, (n, 3)).astype(np.uint8)
    unary = -np.log(rng.dirichlet(np.ones(c), n))
    expected = _brute_force_mean_field(unary, xyz, rgb / 255.0, MPRM_KERNELS, 5, normalisation == "symmetric")
    q = dense_crf(torch.from_numpy(unary).float(), xyz, rgb, cutoff_sigmas=None, normalisation=normalisation)
    # float32 against a float64 oracle: unnormalised energies reach hundreds of nats, where float32 rounding
    # alone moves q by ~1e-5 (1.2e-5 seen on an AVX-512 Xeon); the normalised field stays within 1e-5
    np.testing.assert_allclose(q.numpy(), expected, atol=1e-5 if normalisation == "symmetric" else 5e-5)
    if normalisation == "none":  # unnormalised, 120 close points pull with hundreds of nats: no tail test
        return
    # the 3σ neighbourhood (0.6 m here) drops only pairs whose kernel is below exp(-4.5)
    near = dense_crf(torch.from_numpy(unary).float(), xyz, rgb, cutoff_sigmas=3.0, normalisation=normalisation)
    assert float((near - q).abs().max()) < 0.02
    assert (near.argmax(1) == q.argmax(1)).float().mean() >= 0.97


def test_dense_crf_relabels_an_outlier_and_respects_colour_edges() -> None:
    """Two touching 1 m patches, red and blue, each predicted as its own class, with one red point mislabelled
    (weakly) blue: the bilateral kernel pulls it back; the colour edge keeps the patches apart."""
    from wsseg_training.methods.common.dense_crf import MPRM_KERNELS, PointKernelGraph, dense_crf

    grid = np.stack(np.meshgrid(np.arange(0, 2.0, 0.1), np.arange(0, 1.0, 0.1), indexing="ij"), -1).reshape(-1, 2)
    xyz = np.concatenate([grid, np.zeros((len(grid), 1))], axis=1)
    blue = xyz[:, 0] >= 1.0
    rgb = np.where(blue[:, None], [0, 0, 255], [255, 0, 0]).astype(np.uint8)
    prob = np.where(blue[:, None], [0.1, 0.9], [0.9, 0.1])
    outlier = 22  # a red point in the middle of the red patch
    prob[outlier] = [0.4, 0.6]
    unary = torch.from_numpy(-np.log(prob)).float()
    labels = dense_crf(unary, xyz, rgb).argmax(1).numpy()
    np.testing.assert_array_equal(labels, blue.astype(np.int64))
    graph = PointKernelGraph(xyz, rgb, MPRM_KERNELS, max_cached_pairs=0)  # chunked path == cached path
    cached = PointKernelGraph(xyz, rgb, MPRM_KERNELS)
    assert cached.cached and not graph.cached
    q = torch.softmax(-unary, dim=1)
    np.testing.assert_allclose(graph.message(q).numpy(), cached.message(q).numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="bilateral kernel"):
        PointKernelGraph(xyz, None, MPRM_KERNELS)
    with pytest.raises(ValueError, match="unary has shape"):
        dense_crf(unary[:3], xyz, rgb)
