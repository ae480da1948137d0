"""DSP's feature reallocation with known answers: hand-made F and W against the hand-computed softmax products
(the softmax along the source axis, N_i x K results, W_c transposed for the j -> i direction), exact chunking,
the consistency reduction, frozen BatchNorm statistics, stage lengths."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from wsseg_training.methods.dsp.method import consistency, frozen_running_statistics, split_steps
from wsseg_training.methods.dsp.reallocate import (
    Affinity,
    cross_reallocate,
    intra_reallocate,
    logit_scale,
    reallocate,
    sample_rows,
)

LN2, LN3, LN5 = math.log(2.0), math.log(3.0), math.log(5.0)
F_I = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)  # sample i: 3 voxels, K = 2
F_J = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)  # sample j: 2 voxels
W_C = torch.tensor([[LN2, LN5], [0.0, LN3]], dtype=torch.float64)  # not symmetric: W_c vs W_c^T matters


def test_cross_reallocation_equals_the_hand_computed_product() -> None:
    # A_c = F_i W_c F_j^T = [[2 ln2, ln5], [0, ln3], [0, 0]]; softmax over j per row: [4, 5]/9, [1, 3]/4, [1, 1]/2
    expected_j_on_i = torch.tensor([[8 / 9, 5 / 9], [2 / 4, 3 / 4], [1.0, 1 / 2]], dtype=torch.float64)
    got = reallocate(F_I, F_J, W_C)
    assert got.shape == (3, 2)  # N_i x K
    torch.testing.assert_close(got, expected_j_on_i)
    # softmax over i per column of A_c: [4, 1, 1]/6 and [5, 3, 1]/9, times F_i -> i's features on j's voxels
    expected_i_on_j = torch.tensor([[4 / 6, 1 / 6], [5 / 9, 3 / 9]], dtype=torch.float64)
    torch.testing.assert_close(reallocate(F_J, F_I, W_C.t()), expected_i_on_j)
    # the batch form: i = position 0 (member 0), j = position 1 (member 1); rows of each as the level orders them
    features = torch.cat([F_I, F_J])
    rows = sample_rows(torch.tensor([0, 0, 0, 1, 1]), 2)
    both = cross_reallocate(features, rows, partner=[1, 0], member=[0, 1], weight=W_C)
    torch.testing.assert_close(both, torch.cat([expected_j_on_i, expected_i_on_j]))
    # a sample left out (no shared class) keeps its own features
    kept = cross_reallocate(features, rows, partner=[1, 0], member=[0, 1], weight=W_C, taking=[True, False])
    torch.testing.assert_close(kept, torch.cat([expected_j_on_i, F_J]))


def test_intra_reallocation_and_the_logit_scale() -> None:
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    w = torch.diag(torch.tensor([LN2, LN3], dtype=torch.float64))
    # A_s = F W_s F^T = diag(ln2, ln3): rows [2, 1]/3 and [1, 3]/4; no residual
    expected = torch.tensor([[2 / 3, 1 / 3], [1 / 4, 3 / 4]], dtype=torch.float64)
    torch.testing.assert_close(intra_reallocate(f, sample_rows(torch.tensor([0, 0]), 1), w), expected)
    # scale 1/2 on the logits: rows [sqrt 2, 1] and [1, sqrt 3], normalised
    halved = reallocate(f, f, w, scale=0.5)
    r2, r3 = math.sqrt(2.0), math.sqrt(3.0)
    torch.testing.assert_close(halved, torch.tensor([[r2 / (r2 + 1), 1 / (r2 + 1)], [1 / (1 + r3), r3 / (1 + r3)]],
                                                    dtype=torch.float64))
    assert logit_scale("none", 16) == 1.0 and logit_scale("sqrt_k", 16) == 0.25
    with pytest.raises(ValueError, match="affinity scale"):
        logit_scale("cosine", 16)


def test_chunked_reallocation_is_exact_in_values_and_gradients() -> None:
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(23, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    source = torch.randn(17, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(6, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    target = torch.randn(23, 6, generator=generator, dtype=torch.float64)
    results = []
    for chunk in (0, 5, 1):
        out = reallocate(query, source, weight, scale=0.4, chunk_rows=chunk)
        grads = torch.autograd.grad(((out - target) ** 2).sum(), (query, source, weight))
        results.append((out.detach(), grads))
    for out, grads in results[1:]:
        torch.testing.assert_close(out, results[0][0], rtol=0, atol=1e-12)
        for a, b in zip(grads, results[0][1], strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_reallocation_refuses_bad_shapes() -> None:
    with pytest.raises(ValueError, match="same K"):
        reallocate(F_I, torch.zeros(2, 3, dtype=torch.float64), W_C)
    with pytest.raises(ValueError, match="weight must be"):
        reallocate(F_I, F_J, torch.eye(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="no row"):
        reallocate(F_I, F_J[:0], W_C)
    assert torch.equal(Affinity(4).weight.detach(), torch.eye(4))
    assert not torch.equal(Affinity(4, "xavier").weight.detach(), torch.eye(4))


def test_consistency_is_the_squared_norm_per_voxel() -> None:
    z = torch.tensor([[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]], requires_grad=True)
    branch = torch.tensor([[0.0, 2.0], [3.0, 1.0], [0.0, 0.0]], requires_grad=True)
    total, count = consistency(z, branch, torch.tensor([0, 1]), detach=False)
    assert float(total.detach()) == 10.0 and float(count) == 2.0  # (1 + 0) + (0 + 9); row 2 not taking part
    total.backward()
    assert z.grad is not None and z.grad[0, 0] == 2.0
    detached = torch.tensor([[1.0, 2.0]], requires_grad=True)
    total, _ = consistency(detached, torch.zeros(1, 2, requires_grad=True), torch.tensor([0]), detach=True)
    total.backward()
    assert detached.grad is None  # Z_i as a fixed target


def test_consistency_in_probability_space_compares_the_softmax() -> None:
    z = torch.tensor([[0.0, 0.0]])
    branch = torch.tensor([[float(np.log(3.0)), 0.0]])  # softmax (0.75, 0.25) vs (0.5, 0.5)
    total, count = consistency(z, branch, torch.tensor([0]), detach=False, space="probabilities")
    assert float(total) == pytest.approx(0.125) and float(count) == 1.0
    shifted, _ = consistency(z + 100.0, branch, torch.tensor([0]), detach=False, space="probabilities")
    assert float(shifted) == pytest.approx(0.125)  # a common logit shift changes nothing; in logits it would
    assert float(consistency(z + 100.0, branch, torch.tensor([0]), detach=False)[0]) > 1000


def test_frozen_running_statistics_keep_the_buffers_and_normalise_by_the_batch() -> None:
    norm = nn.BatchNorm1d(3).train()
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(1)) * 4 + 2
    before = {k: v.clone() for k, v in norm.state_dict().items()}
    with frozen_running_statistics(norm):
        y = norm(x)
    assert norm.track_running_stats
    for key, value in norm.state_dict().items():
        assert torch.equal(value, before[key]), key
    torch.testing.assert_close(y.mean(0), torch.zeros(3), atol=1e-5, rtol=0)  # batch statistics, not running ones
    norm(x)  # outside the context the statistics move again
    assert not torch.equal(norm.running_mean, before["running_mean"])
    assert int(norm.num_batches_tracked) == 1


@pytest.mark.parametrize(("total", "shares", "expected"), [
    (10, [0.5, 0.5], [5, 5]), (7, [0.5, 0.5], [4, 3]), (10, [1.0], [10]), (3, [0.9, 0.05, 0.05], [1, 1, 1]),
    (100, [0.25, 0.75], [25, 75])])
def test_stage_lengths_split_the_run(total: int, shares: list[float], expected: list[int]) -> None:
    assert split_steps(total, shares) == expected
