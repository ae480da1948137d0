"""Mean-field CRF with Potts pairwise terms on a segment graph (1T1C Eq. 3-5), the graph's kernels, and the solver
that the dense point CRF (:mod:`~wsseg_training.methods.common.dense_crf`) shares.

Energy of a labelling Y of S nodes (super-voxels, regions, points)::

    E(Y) = Σ_j ψu(y_j) + Σ_{j<j'} w_jj' [y_j != y_j']      ψu(y_j) = -log P(y_j)   (1T1C Eq. 4)

Mean field (Krähenbühl & Koltun) approximates P(Y) by independent Q_j.  For a Potts term the update is

    Q_j(l) ∝ exp(-ψu_j(l) - Σ_j' w_jj' (1 - Q_j'(l))) ∝ exp(-ψu_j(l) + Σ_j' w_jj' Q_j'(l)),

(the constant Σ_j' w_jj' cancels in the normalisation), so one iteration is a "message" (a product of the
weight matrix with Q) and a softmax.  All nodes update in parallel from Q = softmax(-ψu).  Any object with
``message(q) -> Σ_j' w_jj' q_j'`` is a graph for :func:`mean_field`: :class:`SegmentGraph` here (dense or
sparse weights) and the dense point CRF's kernel.

Kernels: a Gaussian exp(-½ ||f_j - f_j'||²) over scaled node features f (scale each group by sqrt(λ)/σ
first), over all pairs (:func:`dense_kernel`; 4096² float32 = 64 MiB) or each node's k nearest others,
symmetrised (:func:`topk_kernel`, memory O(S k): the entries that carry almost all of a Gaussian's weight).
:func:`normalise_graph` then scales them: ``none`` (Eq. 5 literally) or ``degree`` (symmetric
D^-1/2 K D^-1/2: unnormalised, a node's total pull grows with the number of similar segments around it,
which differs by orders of magnitude between over-segmentations; normalised, it is about
``pairwise_weight`` nats, comparable to the unary's log-probability margins).  Self-loops are excluded (a
Potts term between a node and itself is always 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

#: ``normalise_graph`` choices
GRAPH_NORMALISATIONS = ("degree", "none")


class PairwiseMessages(Protocol):
    """What :func:`mean_field` needs of a graph: its node count and the Potts message."""

    num_nodes: int

    def message(self, q: torch.Tensor) -> torch.Tensor:
        """(S, C) marginals -> (S, C) Σ_j' w_jj' q_j'."""
        ...


@dataclass(frozen=True)
class SegmentGraph:
    """Pairwise Potts weights between the segments of one scene, symmetric, no self-loops.

    Dense form: ``weights`` (S, S) tensor with a zero diagonal, ``index`` None.  Sparse form (``topk``):
    ``index`` (2, E) int64 directed edges, both directions present, and ``weights`` (E,) their weights.
    """

    weights: torch.Tensor
    num_nodes: int
    index: torch.Tensor | None = None

    @property
    def is_sparse(self) -> bool:
        return self.index is not None

    def message(self, q: torch.Tensor) -> torch.Tensor:
        """(S, C) -> (S, C): Σ_j' w_jj' q_j'."""
        if self.index is None:
            return self.weights @ q
        row, col = self.index
        return torch.zeros_like(q).index_add(0, row, self.weights[:, None] * q[col])

    def edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(index (2, E) int64 with index[0] < index[1], weight (E,)): every undirected edge once."""
        if self.index is None:
            index = torch.nonzero(self.weights).t()
            values = self.weights[index[0], index[1]]
        else:
            index, values = self.index, self.weights
        upper = index[0] < index[1]
        return index[:, upper], values[upper]

    def to_dense(self) -> torch.Tensor:
        """(S, S) weight matrix."""
        if self.index is None:
            return self.weights
        dense = self.weights.new_zeros((self.num_nodes, self.num_nodes))
        dense[self.index[0], self.index[1]] = self.weights
        return dense


def normalise_graph(graph: SegmentGraph, normalisation: str, pairwise_weight: float) -> SegmentGraph:
    """``pairwise_weight`` x the kernel, ``degree`` (symmetric D^-1/2 K D^-1/2) or ``none`` normalised.

    Degree normalisation makes a node's total pull about ``pairwise_weight`` nats whatever the segment density
    (see the module docstring); a node without any edge keeps zero weights.
    """
    if normalisation not in GRAPH_NORMALISATIONS:
        raise ValueError(f"unknown graph normalisation {normalisation!r}, expected one of {GRAPH_NORMALISATIONS}")
    if normalisation == "none":
        return SegmentGraph(graph.weights * pairwise_weight, graph.num_nodes, graph.index)
    if graph.index is None:
        degree = graph.weights.sum(dim=1)
    else:
        degree = graph.weights.new_zeros(graph.num_nodes).index_add(0, graph.index[0], graph.weights)
    inv_sqrt = torch.where(degree > 0, degree.clamp(min=1e-12).rsqrt(), torch.zeros_like(degree))
    if graph.index is None:
        weights = graph.weights * inv_sqrt[:, None] * inv_sqrt[None, :]
    else:
        weights = graph.weights * inv_sqrt[graph.index[0]] * inv_sqrt[graph.index[1]]
    return SegmentGraph(weights * pairwise_weight, graph.num_nodes, graph.index)


def dense_kernel(features: torch.Tensor) -> SegmentGraph:
    """(S, F) scaled features -> dense Gaussian kernel exp(-½ d²) over all pairs, zero diagonal."""
    d2 = torch.cdist(features, features).square()
    kernel = torch.exp(-0.5 * d2)
    kernel.fill_diagonal_(0.0)
    return SegmentGraph(kernel, int(features.shape[0]))


def topk_kernel(features: torch.Tensor, k: int, chunk: int = 1024) -> SegmentGraph:
    """(S, F) scaled features -> sparse kernel over each node's ``k`` nearest others, symmetrised.

    Rows are processed in chunks of ``chunk`` so memory stays O(chunk x S + S k).
    """
    s = int(features.shape[0])
    k = min(k, s - 1)
    if k <= 0:
        return SegmentGraph(features.new_zeros(0), s, torch.zeros((2, 0), dtype=torch.int64,
                                                                    device=features.device))
    rows, cols = [], []
    for start in range(0, s, chunk):
        block = features[start : start + chunk]
        d2 = torch.cdist(block, features).square()
        own = torch.arange(start, start + block.shape[0], device=features.device)
        d2[torch.arange(block.shape[0], device=features.device), own] = float("inf")
        nearest = d2.topk(k, dim=1, largest=False).indices
        rows.append(own[:, None].expand(-1, k).reshape(-1))
        cols.append(nearest.reshape(-1))
    row, col = torch.cat(rows), torch.cat(cols)
    # symmetrise: keep an edge if either end chose the other, once per direction
    key = torch.unique(torch.cat([row * s + col, col * s + row]))
    row, col = key // s, key % s
    values = torch.exp(-0.5 * (features[row] - features[col]).square().sum(dim=1))
    return SegmentGraph(values, s, torch.stack([row, col]))


def unary_from_probabilities(prob: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(S, C) probabilities -> (S, C) unary energies -log max(p, eps) (Eq. 4)."""
    return -torch.log(prob.clamp(min=eps))


def mean_field(unary: torch.Tensor, graph: PairwiseMessages, iterations: int = 5) -> torch.Tensor:
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


def crf_energy(labels: torch.Tensor, unary: torch.Tensor, graph: SegmentGraph) -> torch.Tensor:
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
