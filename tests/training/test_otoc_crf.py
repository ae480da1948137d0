"""1T1C graph propagation (Eq. 3-5) against answers worked out by hand: the mean-field CRF on the super-voxel
graph, its energy, and the dense / top-k kernels."""

from __future__ import annotations

import pytest
import torch
from wsseg_training.methods.otoc import (
    OtocConfig,
    SupervoxelGraph,
    build_graph,
    crf_energy,
    mean_field,
    unary_from_probabilities,
)
from wsseg_training.methods.otoc.graph import dense_kernel, topk_kernel

# --- graph propagation (Eq. 3-5) ----------------------------------------------------------------------------

def _random_problem(seed: int, nodes: int = 40, classes: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(nodes, 3, generator=generator)
    gamma = -torch.log(torch.rand(nodes, classes, generator=generator))   # Dirichlet(1) via Gamma(1)
    return features, gamma / gamma.sum(dim=1, keepdim=True)


@pytest.mark.parametrize("normalisation", ["degree", "none"])
def test_mean_field_lowers_crf_energy_on_random_graphs(normalisation: str) -> None:
    weight = 5.0 if normalisation == "degree" else 1.0   # "none" with weight 1 is Eq. 5 literally
    config = OtocConfig(pairwise_normalisation=normalisation, pairwise_weight=weight)
    for seed in range(5):
        features, prob = _random_problem(seed)
        graph = build_graph(features, config)
        unary = unary_from_probabilities(prob)
        q = mean_field(unary, graph, config.mean_field_iterations)
        torch.testing.assert_close(q.sum(dim=1), torch.ones(40))
        before = crf_energy(prob.argmax(dim=1), unary, graph)
        after = crf_energy(q.argmax(dim=1), unary, graph)
        assert float(after) < float(before), f"seed {seed}: energy {float(after)} !< {float(before)}"


def test_mean_field_fixes_a_wrong_node_in_a_two_cluster_graph() -> None:
    # two clusters of 10 similar nodes, far apart in feature space; cluster A is class 0, B is class 1
    generator = torch.Generator().manual_seed(0)
    features = torch.cat([torch.zeros(10, 3), torch.full((10, 3), 6.0)]) + 0.1 * torch.randn(20, 3, generator=generator)
    prob = torch.cat([torch.tensor([[0.8, 0.2]]).repeat(10, 1), torch.tensor([[0.1, 0.9]]).repeat(10, 1)])
    prob[3] = torch.tensor([0.4, 0.6])    # one node of A predicted wrongly
    graph = build_graph(features, OtocConfig())
    unary = unary_from_probabilities(prob)
    q = mean_field(unary, graph, iterations=5)
    truth = torch.tensor([0] * 10 + [1] * 10)
    assert int(prob.argmax(dim=1)[3]) == 1
    assert q.argmax(dim=1).tolist() == truth.tolist()
    assert float(crf_energy(truth, unary, graph)) < float(crf_energy(prob.argmax(dim=1), unary, graph))
    # without pairwise terms nothing changes
    no_pairs = mean_field(unary, build_graph(features, OtocConfig(pairwise_weight=0.0)), iterations=5)
    assert int(no_pairs.argmax(dim=1)[3]) == 1


def test_crf_energy_by_hand_and_graph_structure() -> None:
    weights = torch.tensor([[0.0, 0.5, 0.0], [0.5, 0.0, 2.0], [0.0, 2.0, 0.0]])
    graph = SupervoxelGraph(weights, num_nodes=3)
    unary = torch.tensor([[0.1, 1.0], [0.3, 0.2], [2.0, 0.0]])
    # labels (0, 1, 1): unary 0.1 + 0.2 + 0.0, one cut edge (0-1) of weight 0.5
    assert float(crf_energy(torch.tensor([0, 1, 1]), unary, graph)) == pytest.approx(0.8)
    assert float(crf_energy(torch.tensor([0, 0, 1]), unary, graph)) == pytest.approx(0.1 + 0.3 + 0.0 + 2.0)
    features = torch.randn(7, 4, generator=torch.Generator().manual_seed(2))
    dense = dense_kernel(features).to_dense()
    assert torch.equal(dense, dense.t()) and bool((dense.diagonal() == 0).all())
    torch.testing.assert_close(dense[0, 1], torch.exp(-0.5 * (features[0] - features[1]).square().sum()))
    # top-k with k = S - 1 keeps every pair: the same kernel as dense, and the same messages and energies
    full = topk_kernel(features, k=6, chunk=3)
    torch.testing.assert_close(full.to_dense(), dense)
    q = torch.softmax(torch.randn(7, 3, generator=torch.Generator().manual_seed(4)), dim=1)
    torch.testing.assert_close(full.message(q), dense @ q)
    labels, unary7 = q.argmax(dim=1), torch.rand(7, 3, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(crf_energy(labels, unary7, full), crf_energy(labels, unary7, dense_kernel(features)))
    sparse = topk_kernel(features, k=2).to_dense()
    assert torch.equal(sparse, sparse.t())
    assert bool(((sparse > 0).sum(dim=1) >= 2).all()) and int((sparse > 0).sum()) < 42


def test_topk_graph_above_dense_limit_gives_the_same_fix() -> None:
    features = torch.cat([torch.zeros(10, 3), torch.full((10, 3), 6.0)])
    prob = torch.cat([torch.tensor([[0.8, 0.2]]).repeat(10, 1), torch.tensor([[0.1, 0.9]]).repeat(10, 1)])
    prob[3] = torch.tensor([0.4, 0.6])
    graph = build_graph(features, OtocConfig(max_dense_nodes=8, topk_neighbours=5))
    assert graph.is_sparse
    q = mean_field(unary_from_probabilities(prob), graph, iterations=5)
    assert q.argmax(dim=1).tolist() == [0] * 10 + [1] * 10
