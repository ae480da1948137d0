"""The super-voxel graph of 1T1C: node features and pairwise weights of Eq. 5 (the kernels, the graph and
the mean-field solver are shared: :mod:`wsseg_training.methods.common.segment_crf`).

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

import torch
import torch.nn.functional as F

from wsseg_training.methods.common.segment_crf import SegmentGraph, dense_kernel, normalise_graph, topk_kernel
from wsseg_training.methods.otoc.config import OtocConfig
from wsseg_training.methods.otoc.pooling import SupervoxelNodes

#: the 1T1C name of the shared segment graph (kept for callers of the first version)
SupervoxelGraph = SegmentGraph


def kernel_features(nodes: SupervoxelNodes, groups: tuple[str, ...], scales: dict[str, float]) -> torch.Tensor:
    """(S, F) concatenation of the normalised feature ``groups`` of ``nodes``, each times ``scales[group]``.

    Squared distances in this space are Eq. 5's exponent times -2.  ``colour`` is left out for nodes without
    colour (LiDAR scans); any other group whose attribute the nodes lack raises ``ValueError`` naming it.
    """
    parts = []
    for group in groups:
        if group == "colour":
            if nodes.rgb is None:  # a cloud without colour (LiDAR): Eq. 5 without its colour term
                continue
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


def build_graph(features: torch.Tensor, config: OtocConfig) -> SegmentGraph:
    """The Potts weights of Eq. 5 from (S, F) scaled kernel features (:func:`kernel_features`).

    ``dense`` (Eq. 3's all-pairs graph) up to ``config.max_dense_nodes`` nodes, ``topk`` above it or when
    ``config.neighbourhood == "topk"``; then normalised and scaled (module docstring).
    """
    s = features.shape[0]
    if config.neighbourhood == "dense" and s <= config.max_dense_nodes:
        kernel = dense_kernel(features)
    else:
        kernel = topk_kernel(features, config.topk_neighbours)
    return normalise_graph(kernel, config.pairwise_normalisation, config.pairwise_weight)


def graph_for_nodes(nodes: SupervoxelNodes, config: OtocConfig) -> SegmentGraph:
    """The graph of ``config``'s variant over ``nodes`` (``kernel_features`` + ``build_graph``)."""
    return build_graph(kernel_features(nodes, config.pairwise_groups, config.group_scales()), config)
