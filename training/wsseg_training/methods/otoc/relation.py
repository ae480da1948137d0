"""The relation network R of 1T1C (§3.3, Eq. 6-7); its prototypes, memory bank, contrastive loss and balanced
sampling are shared method tools (:mod:`wsseg_training.methods.common.prototypes`).

R is "the same backbone as Θ without the last category-wise prediction layer" [§3.3].  It is built
here as a separate :class:`SparseUNet` whose per-voxel head outputs D = 32 channels instead of C
logits (:func:`build_relation_net`): its own weights (R complements Θ as a second learner, co-training
style, and the authors train it as a separate network), and a signed linear output -- the backbone's
``point_features`` end in ReLU, so they are non-negative and a poor basis for cosine similarities.

Embeddings are pooled per super-voxel (Eq. 2 on R's output) and L2-normalised, prototypes too, so
``f . k / τ`` is a cosine similarity over τ.  Eq. 6 is printed without the exponentials; it is the
C-way softmax cross-entropy the text describes ("equivalent to a c-way softmax classification").
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F

from wsseg_training.methods.common.prototypes import (
    PrototypeBank,
    batch_prototypes,
    class_sums,
    contrastive_loss,
    prototype_logits,
    prototype_probabilities,
    prototypes_from_sums,
    sample_balanced,
)
from wsseg_training.model.unet import SparseUNet, UNetConfig

#: R's class probabilities of pooled super-voxel embeddings: the shared prototype softmax
relation_probabilities = prototype_probabilities

__all__ = ["PrototypeBank", "batch_prototypes", "build_relation_net", "class_sums", "combine_probabilities",
           "contrastive_loss", "prototype_logits", "prototypes_from_sums", "relation_loss", "relation_probabilities",
           "sample_balanced"]


def build_relation_net(unet: UNetConfig, embed_dim: int = 32) -> SparseUNet:
    """R: the backbone of ``unet`` whose head outputs ``embed_dim`` channels (its ``logits`` are the embeddings)."""
    return SparseUNet(replace(unet, num_classes=embed_dim))


def combine_probabilities(theta: torch.Tensor, relation: torch.Tensor, eps: float = 1e-6,
                          exponent: float = 1.0) -> torch.Tensor:
    """Θ's and R's (S, C) probabilities multiplied per class and renormalised [§3.3].

    ``exponent`` e gives (p_Θ p_R)^e renormalised: 1 is the paper's product, 0.5 the normalised geometric
    mean (same argmax, the log-odds halved: two networks trained on the same labels are not independent
    witnesses, and their plain product counts the shared evidence twice).
    """
    if not exponent > 0:
        raise ValueError(f"combine_probabilities: exponent {exponent} is not > 0")
    log_product = torch.log(theta.clamp(min=eps)) + torch.log(relation.clamp(min=eps))
    return torch.softmax(exponent * log_product, dim=1)


def relation_loss(pooled: torch.Tensor, node_labels: torch.Tensor, bank: PrototypeBank | None, num_classes: int,
                  per_class: int, temperature: float,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """One training pass of R on a batch's super-voxels; updates ``bank`` when given.

    pooled: (S, D) pooled R embeddings of the batch's super-voxels.  node_labels: (S,) int64 pseudo label per
    super-voxel (``IGNORE_INDEX`` = not sampled).  bank: the memory bank, or None for "w/o MB" (prototypes =
    the normalised class means of this pass's samples).  With a bank the loss uses the prototypes as they were
    before this pass (detached) and the bank moves afterwards, as MoCo-style key updates do.
    Returns (scalar loss, {"samples": K, "classes": classes present}).
    """
    index = sample_balanced(node_labels, num_classes, per_class, generator)
    labels = node_labels[index]
    samples = F.normalize(pooled[index], dim=1)
    if bank is None:
        prototypes, present = batch_prototypes(samples, labels, num_classes)
        loss = contrastive_loss(samples, labels, prototypes, temperature, present)
    else:
        loss = contrastive_loss(samples, labels, bank.prototypes.detach().clone(), temperature)
        bank.update(samples, labels)
    classes = int(torch.unique(labels).numel())
    return loss, {"samples": float(index.shape[0]), "classes": float(classes)}
