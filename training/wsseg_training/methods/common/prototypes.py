"""Class prototypes of an embedding space: a momentum memory bank, running class means, and the prototype
contrastive loss with class-balanced sampling (1T1C §3.3, Eq. 6-7; the same pieces serve region-level
contrast, WS3D §3.4, and primitive centroids, Densify Eq. 5).

Embeddings and prototypes are L2-normalised, so ``f . k / τ`` is a cosine similarity over a temperature τ.
The loss is the C-way softmax cross-entropy of each sample against every class prototype (1T1C prints Eq. 6
without the exponentials; the text says "equivalent to a c-way softmax classification").  Shapes: K samples,
D embedding channels, C classes; labels are int64 in ``0..C-1`` (``IGNORE_INDEX`` < 0 = unlabelled where
allowed).  Sums and counts (rather than means) can be all-reduced across processes before an update.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def class_sums(embeddings: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class sums and counts of sample embeddings.

    embeddings: (K, D).  labels: (K,) int64 in ``0..C-1``.  Returns (sums (C, D), counts (C,) int64).
    Sums and counts (rather than means) can be all-reduced across processes before an update.
    """
    sums = embeddings.new_zeros((num_classes, embeddings.shape[1])).index_add(0, labels, embeddings)
    return sums, torch.bincount(labels, minlength=num_classes)


class PrototypeBank(nn.Module):
    """Memory bank K = {k_c}: one L2-normalised prototype per class (a buffer, so checkpoints carry it).

    Initialised with random unit vectors [§3.3]; updated by momentum (Eq. 7) towards the mean of the
    class's samples in the current pass, then re-normalised.  A class without samples keeps its prototype
    (the authors' code instead decays it towards zero -- a known pitfall).
    """

    prototypes: torch.Tensor

    def __init__(self, num_classes: int, embed_dim: int, momentum: float = 0.9,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"PrototypeBank: momentum {momentum} is not in [0, 1)")
        self.momentum = momentum
        init = torch.randn(num_classes, embed_dim, generator=generator)
        self.register_buffer("prototypes", F.normalize(init, dim=1))

    @property
    def num_classes(self) -> int:
        return int(self.prototypes.shape[0])

    @torch.no_grad()
    def update_from_sums(self, sums: torch.Tensor, counts: torch.Tensor) -> None:
        """Eq. 7 with the class means ``sums / counts``: k_c <- normalise(m k_c + (1 - m) mean_c) where count > 0."""
        present = counts > 0
        means = sums / counts.clamp(min=1).to(sums.dtype)[:, None]
        moved = F.normalize(self.momentum * self.prototypes + (1.0 - self.momentum) * means.to(self.prototypes), dim=1)
        self.prototypes.copy_(torch.where(present[:, None], moved, self.prototypes))

    @torch.no_grad()
    def update(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """Momentum update from sample embeddings (K, D) (normalised, detached) with labels (K,) int64."""
        self.update_from_sums(*class_sums(embeddings.detach(), labels, self.num_classes))


def batch_prototypes(embeddings: torch.Tensor, labels: torch.Tensor,
                     num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The "w/o MB" prototypes [Supp. C]: normalised class means of the current samples (with gradients).

    Returns (prototypes (C, D), present (C,) bool); absent classes get a zero row and ``present = False``.
    """
    sums, counts = class_sums(embeddings, labels, num_classes)
    present = counts > 0
    return F.normalize(sums, dim=1) * present[:, None].to(sums.dtype), present


def prototypes_from_sums(sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """(C, D) normalised class means from accumulated :func:`class_sums`; zero rows for classes never seen.

    For "w/o MB" at propagation time there is no bank: accumulate the sums of the labelled super-voxels'
    normalised embeddings over the training scenes and use these as prototypes.
    """
    return F.normalize(sums, dim=1) * (counts > 0)[:, None].to(sums.dtype)


def prototype_logits(embeddings: torch.Tensor, prototypes: torch.Tensor, temperature: float) -> torch.Tensor:
    """(K, D) normalised embeddings x (C, D) prototypes -> (K, C) logits ``f . k_c / τ``."""
    return embeddings @ prototypes.t() / temperature


def contrastive_loss(embeddings: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor,
                     temperature: float, present: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 6: mean over samples of -log softmax_c(f_j . k_c / τ)[label_j].

    embeddings: (K, D) L2-normalised sample embeddings.  labels: (K,) int64.  prototypes: (C, D).
    present: (C,) bool, classes that take part in the softmax (None = all; "w/o MB" passes the classes of
    the batch).  Returns a scalar; 0 (with a graph) when there is no sample.
    """
    if embeddings.shape[0] == 0:
        return embeddings.sum() * 0.0
    logits = prototype_logits(embeddings, prototypes, temperature)
    if present is not None:
        logits = logits.masked_fill(~present[None, :], float("-inf"))
    return F.cross_entropy(logits, labels)


def sample_balanced(labels: torch.Tensor, num_classes: int, per_class: int,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Class-balanced sample of labelled super-voxels [§3.3 "randomly sampling ... s per category"].

    labels: (S,) int64 super-voxel labels, ``IGNORE_INDEX`` (< 0) = unlabelled.  Every class with at least one
    labelled super-voxel contributes exactly ``per_class`` indices: without replacement when it has that
    many, with replacement otherwise [Supp. C].  Returns (K,) int64 indices into ``labels`` (K = per_class
    x classes present), grouped by class.  ``generator`` lives on the CPU.
    """
    labels_cpu = labels.detach().to("cpu", torch.int64)
    picks = []
    for c in range(num_classes):
        members = torch.nonzero(labels_cpu == c).flatten()
        n = int(members.shape[0])
        if n == 0:
            continue
        if n >= per_class:
            chosen = torch.randperm(n, generator=generator)[:per_class]
        else:
            chosen = torch.randint(n, (per_class,), generator=generator)
        picks.append(members[chosen])
    out = torch.cat(picks) if picks else torch.zeros(0, dtype=torch.int64)
    return out.to(labels.device)


def prototype_probabilities(embeddings: torch.Tensor, prototypes: torch.Tensor, temperature: float) -> torch.Tensor:
    """Class probabilities of (S, D) embeddings (normalised here): softmax over c of cos(f_j, k_c) / τ."""
    return torch.softmax(prototype_logits(F.normalize(embeddings, dim=1), prototypes, temperature), dim=1)


class PrototypeSums(nn.Module):
    """Prototypes without a memory bank: running class sums of normalised sample embeddings (1T1C "w/o MB":
    over the current round, for propagation and inference, where there is no bank to read them from).

    Buffers (saved in checkpoints with the other modules): ``sums`` (C, D) float32, ``counts`` (C,) float32.
    """

    sums: torch.Tensor
    counts: torch.Tensor

    def __init__(self, num_classes: int, embed_dim: int) -> None:
        super().__init__()
        self.register_buffer("sums", torch.zeros(num_classes, embed_dim))
        self.register_buffer("counts", torch.zeros(num_classes))

    @torch.no_grad()
    def add(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """embeddings: (K, D) normalised, labels: (K,) int64 in 0..C-1."""
        sums, counts = class_sums(embeddings.detach().float(), labels, int(self.sums.shape[0]))
        self.sums += sums.to(self.sums)
        self.counts += counts.to(self.counts)

    @torch.no_grad()
    def reset(self) -> None:
        self.sums.zero_()
        self.counts.zero_()

    def prototypes(self) -> torch.Tensor:
        """(C, D) normalised class means; zero rows for classes never seen."""
        return prototypes_from_sums(self.sums, self.counts)
