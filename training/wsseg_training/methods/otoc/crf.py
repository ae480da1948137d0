"""The CRF of 1T1C Eq. 3 on a super-voxel graph: energy of a labelling and mean-field inference.

E(Y) = Σ_j ψu(y_j) + Σ_{j<j'} w_jj' [y_j != y_j']   with ψu(y_j) = -log P(y_j) (Eq. 4) and the Potts
weights w of :mod:`~wsseg_training.methods.otoc.graph`.

Mean field (Krähenbühl & Koltun) approximates P(Y) by independent Q_j.  For a Potts term the update is

    Q_j(l) ∝ exp(-ψu_j(l) - Σ_j' w_jj' (1 - Q_j'(l))) ∝ exp(-ψu_j(l) + Σ_j' w_jj' Q_j'(l)),

(the constant Σ_j' w_jj' cancels in the normalisation), so one iteration is a matrix product and a
softmax.  All nodes update in parallel from Q = softmax(-ψu).  ASSUMPTION: 5 iterations, the number
the authors' merge code runs; with the degree-normalised weights a node's message is about
``pairwise_weight`` nats at most, and the labels stop changing within a few iterations.
"""

from __future__ import annotations

import torch

from wsseg_training.methods.otoc.graph import SupervoxelGraph


def unary_from_probabilities(prob: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(S, C) probabilities -> (S, C) unary energies -log max(p, eps) (Eq. 4)."""
    return -torch.log(prob.clamp(min=eps))


def mean_field(unary: torch.Tensor, graph: SupervoxelGraph, iterations: int = 5) -> torch.Tensor:
    """Approximate marginals of Eq. 3.

    unary: (S, C) energies ψu (e.g. :func:`unary_from_probabilities`).  graph: S nodes.
    Returns Q: (S, C), rows sum to 1.  ``iterations = 0`` returns softmax(-unary).
    """
    if unary.shape[0] != graph.num_nodes:
        raise ValueError(f"unary has {unary.shape[0]} rows, the graph {graph.num_nodes} nodes")
    q = torch.softmax(-unary, dim=1)
    for _ in range(iterations):
        q = torch.softmax(-unary + graph.message(q), dim=1)
    return q


def crf_energy(labels: torch.Tensor, unary: torch.Tensor, graph: SupervoxelGraph) -> torch.Tensor:
    """E(Y) of Eq. 3 for a labelling.

    labels: (S,) int64 in ``0..C-1``.  unary: (S, C) energies.  Returns a 0-d tensor (unary + Potts cost).
    """
    if labels.shape[0] != unary.shape[0] or unary.shape[0] != graph.num_nodes:
        raise ValueError(f"labels ({labels.shape[0]}), unary ({unary.shape[0]}) and graph ({graph.num_nodes}) "
                         "must have the same number of nodes")
    unary_cost = unary.gather(1, labels[:, None].to(torch.int64)).sum()
    index, weight = graph.edges()
    pairwise_cost = (weight * (labels[index[0]] != labels[index[1]]).to(weight.dtype)).sum()
    return unary_cost + pairwise_cost
