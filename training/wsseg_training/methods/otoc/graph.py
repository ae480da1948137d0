"""The super-voxel graph of 1T1C: node features and pairwise weights of Eq. 5.

Eq. 5 is one exponential of a sum, i.e. a single Gaussian kernel on the concatenation of the
feature groups, each scaled by sqrt(λ)/σ::

    K_jj' = exp(-½ Σ_g (λ_g / σ_g²) ||x_g,j - x_g,j'||²)

Feature groups and their "normalisation" (the paper says "normalized" without details; ASSUMPTION):

* ``colour``: mean RGB in [0, 1] per channel (σ = 1 then spans the whole colour cube);
* ``coords``: mean xyz in metres, centred on the scene mean (σ = 1 m: the kernel fades over ~2 m, a
  distance at which indoor objects stop being "the same thing"; rescaling coordinates per scene would
  make the reach depend on the room size);
* ``unet``: mean Θ decoder feature, L2-normalised (its raw scale is arbitrary);
* ``relation``: mean R embedding, L2-normalised (the space the prototypes live in).

Neighbourhood: Eq. 3 sums over every pair j < j', and the authors' code builds the dense M x M
kernel; that is ``dense``.  Above ``max_dense_nodes`` nodes the dense matrix gets too large
(4096² float32 = 64 MiB), so the graph keeps each node's ``topk_neighbours`` largest kernel entries
(nearest neighbours in the scaled feature space, symmetrised) -- the entries that carry almost all of
the weight of a Gaussian kernel.

Weights: w_jj' = pairwise_weight · K_jj' (``none``, Eq. 5 literally) or, by default, the symmetric
degree normalisation w = pairwise_weight · D^-1/2 K D^-1/2 (``degree``).  Unnormalised, a node's total
pull grows with the number of similar super-voxels around it, which differs by orders of magnitude
between ScanNet mesh segments and coarser over-segmentations; normalised, it is about ``pairwise_weight``
nats, comparable to the unary's log-probability margins.  Self-loops are excluded (a Potts term between
a node and itself is always 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from wsseg_training.methods.otoc.config import OtocConfig
from wsseg_training.methods.otoc.pooling import SupervoxelNodes


@dataclass(frozen=True)
class SupervoxelGraph:
    """Pairwise Potts weights of one scene's super-voxels, symmetric, no self-loops.

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


def kernel_features(nodes: SupervoxelNodes, groups: tuple[str, ...], scales: dict[str, float]) -> torch.Tensor:
    """(S, F) concatenation of the normalised feature ``groups`` of ``nodes``, each times ``scales[group]``.

    Squared distances in this space are Eq. 5's exponent times -2.  Raises ``ValueError`` naming a group
    whose attribute the nodes lack.
    """
    parts = []
    for group in groups:
        if group == "colour":
            value = nodes.rgb
        elif group == "coords":
            value = nodes.xyz - nodes.xyz.mean(dim=0, keepdim=True) if nodes.num_nodes else nodes.xyz
        elif group == "unet":
            value = None if nodes.unet_feature is None else F.normalize(nodes.unet_feature, dim=1)
        elif group == "relation":
            value = None if nodes.relation_embedding is None else F.normalize(nodes.relation_embedding, dim=1)
        else:
            raise ValueError(f"unknown pairwise feature group {group!r}; known: colour, coords, unet, relation")
        if value is None:
            raise ValueError(f"pairwise feature group {group!r} needs node attribute that was not pooled "
                             "(rgb, unet_feature or relation_embedding is None)")
        parts.append(value * scales[group])
    if not parts:
        return nodes.xyz.new_zeros((nodes.num_nodes, 0))
    return torch.cat(parts, dim=1)


def _normalise(graph: SupervoxelGraph, normalisation: str, pairwise_weight: float) -> SupervoxelGraph:
    if normalisation == "none":
        return SupervoxelGraph(graph.weights * pairwise_weight, graph.num_nodes, graph.index)
    if graph.index is None:
        degree = graph.weights.sum(dim=1)
    else:
        degree = graph.weights.new_zeros(graph.num_nodes).index_add(0, graph.index[0], graph.weights)
    inv_sqrt = torch.where(degree > 0, degree.clamp(min=1e-12).rsqrt(), torch.zeros_like(degree))
    if graph.index is None:
        weights = graph.weights * inv_sqrt[:, None] * inv_sqrt[None, :]
    else:
        weights = graph.weights * inv_sqrt[graph.index[0]] * inv_sqrt[graph.index[1]]
    return SupervoxelGraph(weights * pairwise_weight, graph.num_nodes, graph.index)


def dense_kernel(features: torch.Tensor) -> SupervoxelGraph:
    """(S, F) scaled features -> dense Gaussian kernel exp(-½ d²) over all pairs, zero diagonal."""
    d2 = torch.cdist(features, features).square()
    kernel = torch.exp(-0.5 * d2)
    kernel.fill_diagonal_(0.0)
    return SupervoxelGraph(kernel, int(features.shape[0]))


def topk_kernel(features: torch.Tensor, k: int, chunk: int = 1024) -> SupervoxelGraph:
    """(S, F) scaled features -> sparse kernel over each node's ``k`` nearest others, symmetrised.

    Rows are processed in chunks of ``chunk`` so memory stays O(chunk x S + S k).
    """
    s = int(features.shape[0])
    k = min(k, s - 1)
    if k <= 0:
        return SupervoxelGraph(features.new_zeros(0), s, torch.zeros((2, 0), dtype=torch.int64,
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
    return SupervoxelGraph(values, s, torch.stack([row, col]))


def build_graph(features: torch.Tensor, config: OtocConfig) -> SupervoxelGraph:
    """The Potts weights of Eq. 5 from (S, F) scaled kernel features (:func:`kernel_features`).

    ``dense`` (Eq. 3's all-pairs graph) up to ``config.max_dense_nodes`` nodes, ``topk`` above it or when
    ``config.neighbourhood == "topk"``; then normalised and scaled (module docstring).
    """
    s = features.shape[0]
    if config.neighbourhood == "dense" and s <= config.max_dense_nodes:
        kernel = dense_kernel(features)
    else:
        kernel = topk_kernel(features, config.topk_neighbours)
    return _normalise(kernel, config.pairwise_normalisation, config.pairwise_weight)


def graph_for_nodes(nodes: SupervoxelNodes, config: OtocConfig) -> SupervoxelGraph:
    """The graph of ``config``'s variant over ``nodes`` (``kernel_features`` + ``build_graph``)."""
    return build_graph(kernel_features(nodes, config.pairwise_groups, config.group_scales()), config)
