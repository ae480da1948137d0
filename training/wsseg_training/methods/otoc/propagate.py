"""Algorithm 1 lines 5-6 for one scene: fuse Θ and R, propagate on the super-voxel graph, keep the confident.

Confidence (Eq. 8): C_j = -(1/n_j) Σ_{i in v_j} log P(y_j | p_i) after propagation.  The CRF runs on
super-voxels, so every point of v_j carries the node marginal Q_j and C_j = -log Q_j(y_j) with
y_j = argmax Q_j.  Eq. 8 reads "low = confident" while the paper's T = 0.9 is a probability; the test
is ``C_j <= -ln T`` (0.105 for T = 0.9), i.e. the geometric-mean probability of the assigned label over the
super-voxel's points is at least T.

Default rule (``OtocConfig.fusion = "geometric"``, ``selection = "agree"``), exactly:

1. unary P_j = normalise(sqrt(p_Θ,j * p_R,j)) -- the normalised geometric mean of Θ's pooled probabilities
   and R's prototype probabilities (the paper multiplies them);
2. mean field on the variant's graph -> Q_j; label y_j = argmax Q_j;
3. keep v_j iff Q_j(y_j) >= T (Eq. 8 as above) and argmax p_Θ,j = y_j and argmax p_R,j = y_j.

Why: with the paper's product, R's very peaked softmax (cos / τ, τ = 0.07) makes the fused unary and the CRF
marginals over-confident, T = 0.9 admits many wrong super-voxels, and self-training amplifies them
(8 synthetic train rooms, ``tiny``, 5 rounds x 120 steps: pseudo-label mIoU 73 -> 51 -> 46 -> 33 -> 32 % at
coverage 16 -> 66 %; with the default 73 -> 72 -> 73 -> 73 -> 72 % at 16 -> 28 %, and val mIoU of the full
inference 9.3 -> 16.5-17.0 %).  The agreement clause changed nothing for +Rel+GP there (the geometric mean
already keeps only agreeing nodes) and guards the variants without that calibration.  Limit: with very weak
networks (5 rounds x 40 steps) the default's pseudo-label mIoU still falls (76 -> 40 -> 30 -> 35 -> 42 %).
The authors' rule (``code``) scored best on fixed round-1 outputs but lower after 5 rounds there.
``selection = "marginal", fusion = "product"`` is the paper's rule; ``selection = "code"`` the authors'
release (METHOD_NOTES §1.7).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from wsseg.core.classes import IGNORE_INDEX
from wsseg_training.methods.common.segment_crf import mean_field, unary_from_probabilities
from wsseg_training.methods.common.segments import Segments
from wsseg_training.methods.otoc.config import FUSION_EXPONENTS, SELECTIONS, OtocConfig
from wsseg_training.methods.otoc.graph import graph_for_nodes
from wsseg_training.methods.otoc.pooling import SupervoxelNodes, pool_nodes
from wsseg_training.methods.otoc.pseudo_labels import next_pseudo_labels
from wsseg_training.methods.otoc.relation import combine_probabilities, relation_probabilities


def supervoxel_confidence(q: torch.Tensor, labels: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Eq. 8 when every point of a node shares its marginal: (S,) ``-log q[j, labels_j]``."""
    return -torch.log(q.gather(1, labels[:, None].to(torch.int64)).squeeze(1).clamp(min=eps))


def point_confidence(point_prob: torch.Tensor, segments: Segments, node_labels: torch.Tensor,
                     eps: float = 1e-6) -> torch.Tensor:
    """Eq. 8 from per-point probabilities: (S,) mean over each node's points of ``-log p_i(y_j)``.

    point_prob: (P, C) probabilities after propagation.  node_labels: (S,) int64 label of each node.
    """
    point_label = segments.to_points(node_labels, 0)
    nll = -torch.log(point_prob.gather(1, point_label[:, None]).squeeze(1).clamp(min=eps))
    return segments.mean(nll)


def select_confident(confidence: torch.Tensor, threshold: float) -> torch.Tensor:
    """(S,) bool: Eq. 8 confidence ``C_j <= -ln(threshold)`` (``threshold`` = T as a probability).

    A slack of 1e-6 on the log scale absorbs float32 rounding, so a node at exactly p = T passes.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"confidence threshold {threshold} is not a probability in (0, 1]")
    return confidence <= -math.log(threshold) + 1e-6


@dataclass(frozen=True)
class Propagation:
    """Outcome of graph propagation on one scene.

    nodes: the pooled super-voxels.  prob: (S, C) unary probabilities (Θ, times R for ``rel_gp``).
    q: (S, C) marginals after mean field (= ``prob`` for the ``unet`` variant).  labels: (S,) int64 argmax q.
    confidence: (S,) Eq. 8 (mean -log probability, lower = surer).  keep: (S,) bool, passes the selection
    rule.  pseudo: (S,) int64 pseudo label of each node (None: ``labels``; the ``code`` rule uses the pre-CRF
    argmax).
    """

    nodes: SupervoxelNodes
    prob: torch.Tensor
    q: torch.Tensor
    labels: torch.Tensor
    confidence: torch.Tensor
    keep: torch.Tensor
    pseudo: torch.Tensor | None = None

    def pseudo_labels(self, initial: np.ndarray) -> np.ndarray:
        """Y_{t+1}: (N,) int64 from the kept nodes, clicked super-voxels (``initial`` = Y_0) on top."""
        labels = self.labels if self.pseudo is None else self.pseudo
        return next_pseudo_labels(self.nodes.segments.node.cpu().numpy(), labels.cpu().numpy(),
                                  self.keep.cpu().numpy(), initial)

    def point_predictions(self, fallback: torch.Tensor) -> torch.Tensor:
        """(P,) int64 prediction of the ``full`` inference mode: the node's CRF label, ``fallback`` (P,)
        (e.g. Θ's argmax) where a point has no super-voxel."""
        per_point = self.nodes.segments.to_points(self.labels, IGNORE_INDEX)
        return torch.where(per_point >= 0, per_point, fallback.to(per_point))


def propagate(nodes: SupervoxelNodes, config: OtocConfig, prototypes: torch.Tensor | None = None) -> Propagation:
    """Fuse the unaries, run mean field on the variant's graph, score and select the nodes.

    prototypes: (C, D) R's prototypes (the memory bank's), required for the ``rel_gp`` variant.
    Fusion and selection follow ``config.fusion`` / ``config.selection`` (see :func:`select_nodes`).
    """
    theta = nodes.prob
    rel = None
    prob = theta
    if config.uses_relation:
        if prototypes is None or nodes.relation_embedding is None:
            raise ValueError("variant 'rel_gp' needs pooled relation embeddings and the prototypes")
        rel = relation_probabilities(nodes.relation_embedding, prototypes.to(prob), config.temperature)
        prob = combine_probabilities(theta, rel, config.probability_eps, FUSION_EXPONENTS[config.fusion])
    if config.pairwise_groups and nodes.num_nodes > 1:
        unary = unary_from_probabilities(prob, config.probability_eps)
        q = mean_field(unary, graph_for_nodes(nodes, config), config.mean_field_iterations)
    else:
        q = prob
    labels = q.argmax(dim=1)
    confidence = supervoxel_confidence(q, labels, config.probability_eps)
    pseudo, keep = select_nodes(config.selection, config.confidence_threshold, q, prob, theta, rel,
                                config.probability_eps)
    return Propagation(nodes=nodes, prob=prob, q=q, labels=labels, confidence=confidence, keep=keep,
                       pseudo=pseudo)


def select_nodes(rule: str, threshold: float, q: torch.Tensor, prob: torch.Tensor, theta: torch.Tensor,
                 relation: torch.Tensor | None, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Pseudo label and keep flag of each super-voxel: ((S,) int64, (S,) bool).

    q: (S, C) marginals after propagation.  prob: (S, C) fused pre-CRF unary.  theta: (S, C) Θ's pooled
    probabilities.  relation: (S, C) R's, or None (variants without R).  Rules (T = ``threshold``):

    * ``marginal`` (paper, Eq. 8): label argmax q, keep iff q_j(label) >= T.
    * ``agree``: ``marginal``, and Θ's pooled argmax (and R's, when present) equal the label: the graph may
      only confirm what the networks already say, never overrule them into a pseudo label.
    * ``code`` (authors' ``merge/test_train.py``): label argmax of the pre-CRF fused unary, keep iff
      max(max_c theta_jc, max_c relation_jc) >= T -- the CRF output is not used for selection.
    """
    labels = q.argmax(dim=1)
    if rule == "code":
        peak = theta.max(dim=1).values
        if relation is not None:
            peak = torch.maximum(peak, relation.max(dim=1).values)
        return prob.argmax(dim=1), peak >= threshold - 1e-6
    keep = select_confident(supervoxel_confidence(q, labels, eps), threshold)
    if rule == "agree":
        keep = keep & (theta.argmax(dim=1) == labels)
        if relation is not None:
            keep = keep & (relation.argmax(dim=1) == labels)
    elif rule != "marginal":
        raise ValueError(f"unknown selection rule {rule!r}, expected one of {SELECTIONS}")
    return labels, keep


@torch.no_grad()
def propagate_scene(supervoxel: torch.Tensor, xyz: torch.Tensor, point_prob: torch.Tensor, config: OtocConfig,
                    rgb: torch.Tensor | None = None, unet_feature: torch.Tensor | None = None,
                    relation_embedding: torch.Tensor | None = None,
                    prototypes: torch.Tensor | None = None) -> Propagation:
    """Pool one whole scene's per-point network outputs to super-voxels and :func:`propagate`.

    supervoxel: (P,) int64 id, -1 = none.  xyz: (P, 3) metres.  point_prob: (P, C) Θ's softmax.
    rgb: (P, 3) uint8 or [0, 1].  unet_feature: (P, F) Θ's ``point_features``.  relation_embedding: (P, D) R's
    output.  Voxel outputs reach points through ``grid.inverse``.  Groups the variant does not use may be None.
    """
    segments = Segments.from_ids(supervoxel.to(point_prob.device))
    groups = set(config.pairwise_groups)
    nodes = pool_nodes(segments, xyz.to(point_prob.device), point_prob,
                       rgb=None if rgb is None else rgb.to(point_prob.device),
                       unet_feature=unet_feature if "unet" in groups else None,
                       relation_embedding=relation_embedding if config.uses_relation else None)
    return propagate(nodes, config, prototypes)
