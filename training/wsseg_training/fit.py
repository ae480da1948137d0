"""A small, explicit training loop over prepared scenes (CPU-sized runs, demos, tests).

The full engine (batching, crops, augmentation, checkpoint/resume, DDP) is
``wsseg train`` (:mod:`wsseg_training.engine`); this loop is the smallest
useful one, for the issue-2 demo and tests: per-point cross-entropy through
the point->voxel map, Adam, a fixed number of steps, one scene per step.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from wsseg.core.classes import IGNORE_INDEX
from wsseg.core.preprocess import NetworkInput
from wsseg_training.model.inputs import to_torch
from wsseg_training.model.unet import SparseUNet


@dataclass(frozen=True)
class LabelledInput:
    """One prepared scene and its per-point training labels.

    net_input: from :func:`wsseg.core.preprocess.prepare_cloud`.
    point_labels: (N,) int64 class id per point, ``IGNORE_INDEX`` where unlabelled.
    """

    net_input: NetworkInput
    point_labels: np.ndarray


def point_loss(logits: torch.Tensor, inverse: torch.Tensor, point_labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the labelled points: voxel logits (M, C) gathered to points via ``inverse`` (N,)."""
    labelled = point_labels != IGNORE_INDEX
    return F.cross_entropy(logits[inverse[labelled]], point_labels[labelled])


def fit(model: SparseUNet, scenes: Sequence[LabelledInput], steps: int, lr: float = 1e-2, seed: int = 0,
        device: str = "cpu", progress: bool = True) -> list[float]:
    """Train ``model`` for ``steps`` Adam steps, one random scene per step; returns the loss of every step."""
    if not scenes:
        raise ValueError("fit needs at least one scene")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model.to(device).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(steps, 1))
    tensors = []
    for scene in scenes:
        features, maps = to_torch(scene.net_input, device)
        inverse = torch.from_numpy(scene.net_input.grid.inverse).to(device)
        labels = torch.from_numpy(np.asarray(scene.point_labels, dtype=np.int64)).to(device)
        if not (labels != IGNORE_INDEX).any():
            raise ValueError("a training scene has no labelled point")
        tensors.append((features, maps, inverse, labels))
    losses: list[float] = []
    bar = tqdm(range(steps), desc="train", unit="step", disable=not progress)
    for _ in bar:
        features, maps, inverse, labels = tensors[rng.randrange(len(tensors))]
        logits = model.forward_features(features, maps, compact=True).logits  # pair-wise path: faster to train
        loss = point_loss(logits, inverse, labels)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    return losses


@torch.no_grad()
def predict_points(model: SparseUNet, net_input: NetworkInput, device: str = "cpu") -> np.ndarray:
    """Eval-mode prediction per point: (N,) int64 class ids."""
    model.to(device).eval()
    features, maps = to_torch(net_input, device)
    logits = model(features, *maps)
    return logits.argmax(1).cpu().numpy()[net_input.grid.inverse]


@torch.no_grad()
def recalibrate_batchnorm(model: SparseUNet, inputs: Sequence[NetworkInput], device: str = "cpu") -> None:
    """Re-estimate every BatchNorm's running statistics as the plain average over ``inputs`` ("precise BN").

    With few, large scenes per step and a fast-moving schedule, the exponential running
    averages lag behind the weights and eval-mode predictions suffer; one pass over the
    training scenes with the final weights fixes that.  Leaves the model in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative moving average = plain mean over the passes
    model.to(device).train()
    for net_input in inputs:
        features, maps = to_torch(net_input, device)
        model.forward_features(features, maps, compact=True)
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    model.eval()
