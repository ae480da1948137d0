"""Data-parallel training over processes launched by ``torchrun`` (gloo on CPU, nccl on CUDA).

How the engine makes W processes compute what one process with the same global
batch computes (tested in ``tests/training/test_ddp.py``):

* every rank builds the same model from the same seed, then rank 0's parameters are broadcast;
* each rank takes its share of the same global batch (:mod:`wsseg_training.engine.batches`);
* BatchNorm normalises over the voxels of the *global* batch: :class:`GlobalBatchNorm1d` all-reduces
  the per-channel sums (an autograd-aware all-reduce, so gradients flow across ranks).  Plain per-rank
  BatchNorm would see only its own scenes and drift from the single-process result;
* losses are averages over the global batch (:func:`global_mean`), and gradients are summed and divided by
  W with one all-reduce over a flat buffer after ``backward``.

Gradients are averaged explicitly rather than by wrapping the model in ``DistributedDataParallel``:
methods call ``forward_features``, the spconv backend and their own heads, which DDP's forward wrapper would
not see; one flat all-reduce per step is what DDP's bucketed reducer does for models this size.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from torch import nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """rank / world_size / local_rank of this process; ``world_size == 1`` when not distributed."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (no-op without it).

    Backend: nccl on CUDA, gloo on CPU.  Returns this process's :class:`DistInfo`.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
        log.info("joined %s process group: rank %d of %d", backend, rank, world)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank)


def shutdown_distributed(info: DistInfo) -> None:
    if info.active and dist.is_initialized():
        dist.destroy_process_group()


def _dist_active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    """Sum over ranks of a tensor without gradient (identity when not distributed)."""
    if not _dist_active():
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value


def all_gather_objects(value: Any) -> list[Any]:
    """Every rank's picklable ``value``, in rank order (``[value]`` when not distributed).  CPU objects only."""
    if not _dist_active():
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def global_mean(values_sum: torch.Tensor, count: torch.Tensor | float) -> torch.Tensor:
    """An average over the global batch, as this rank's share.

    values_sum: this rank's sum (with gradient).  count: this rank's number of items (or weight sum).
    Returns ``W * values_sum / global_count``: averaging it over W ranks (what gradient averaging does) gives
    the global-batch mean, and with one process it is ``values_sum / count``.  A zero global count gives 0.
    """
    count_t = torch.as_tensor(count, dtype=torch.float32, device=values_sum.device).detach()
    total = all_reduce_sum(count_t.reshape(1)).reshape(())
    world = dist.get_world_size() if _dist_active() else 1
    return values_sum * world / total.clamp_min(1e-12) if float(total) > 0 else values_sum * 0.0


def broadcast_parameters(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if not _dist_active():
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


def average_gradients(parameters: list[nn.Parameter]) -> None:
    """Replace every gradient by its mean over ranks (one all-reduce over a flat buffer; None counts as 0)."""
    if not _dist_active():
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    flat = torch.cat([g.reshape(-1).float() for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for p in parameters:
        n = p.numel()
        chunk = flat[offset:offset + n].view_as(p).to(p.dtype)
        if p.grad is None:
            p.grad = chunk.clone()
        else:
            p.grad.copy_(chunk)
        offset += n


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d over (M, C) whose training statistics cover every rank's rows.

    Same parameters, buffers and eval behaviour as ``nn.BatchNorm1d`` (so checkpoints, BatchNorm folding and
    export do not change); in training mode under an active process group the mean and biased variance are
    computed from all-reduced per-channel sums in float32, and running statistics use the unbiased variance
    of all ranks' rows, as a single process would.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and _dist_active()):
            return super().forward(x)
        channels = x.shape[1]
        x32 = x.float()
        local = torch.cat([x32.sum(0), (x32 * x32).sum(0), x32.new_tensor([float(x.shape[0])])])
        total = dist_nn.all_reduce(local)
        count = total[-1]
        mean = total[:channels] / count
        var = (total[channels:2 * channels] / count - mean * mean).clamp_min(0.0)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                momentum = 0.1 if self.momentum is None else self.momentum
                unbiased = var * count / (count - 1).clamp_min(1.0)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased.detach())
                if self.num_batches_tracked is not None:
                    self.num_batches_tracked.add_(1)
        out = (x32 - mean) * torch.rsqrt(var + self.eps)
        if self.affine:
            out = out * self.weight + self.bias
        return out.to(x.dtype)


def use_global_batchnorm(module: nn.Module) -> nn.Module:
    """Turn every ``nn.BatchNorm1d`` under ``module`` into a :class:`GlobalBatchNorm1d` (in place, same tensors)."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm1d:
            replacement = GlobalBatchNorm1d(child.num_features, eps=child.eps, momentum=child.momentum,
                                            affine=child.affine, track_running_stats=child.track_running_stats)
            replacement.load_state_dict(child.state_dict())
            replacement.to(next(iter(child.state_dict().values())).device)
            replacement.train(child.training)
            setattr(module, name, replacement)
        else:
            use_global_batchnorm(child)
    return module
