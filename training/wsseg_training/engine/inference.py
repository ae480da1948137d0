"""The one whole-scene inference pass: pseudo labels over the training set, evaluation, export checks.

::

    outputs = infer(scenes, network, preprocess, device)                  # [{"logits": (N, C)}, ...]
    labels = infer(scenes, network, preprocess, device,
                   reduce=lambda i, out: out["logits"].argmax(1).cpu().numpy())   # [(N,) int64, ...]
    probs = infer(scenes, network, preprocess, device, head=my_head, tta=TTAConfig(views=3))

Per scene (no crop, no training augmentation) and per view: :func:`wsseg.core.preprocess.prepare_cloud`,
the network's forward pass in eval mode under ``torch.no_grad`` on the chosen backend, the ``head``'s
per-voxel outputs, gathered to the scene's points through ``grid.inverse``; with test-time augmentation
the per-point outputs of the views are **summed** (logits summed, as 1T1C and KPConv voting do; divide by
``views`` for a mean).  ``network`` and ``modules`` are put in eval mode for the pass and restored after.

Heads: ``head(view) -> {name: (M_0, ...) tensor}`` on level-0 voxel rows, where ``view``
(:class:`ForwardView`) holds the network's :class:`~wsseg_training.model.unet.UNetOutput`, the device
inputs and ``view.run(other_network)`` (another network over the same input on the same backend, e.g.
1T1C's relation network).  The default :func:`logits_head` returns ``{"logits": output.logits}``.

Test-time augmentation (:class:`TTAConfig`): view 0 is the cloud as it is, views 1..k-1 rotate
it about z and flip x at random (:data:`~wsseg_training.engine.augment.TTA_AUGMENT`), drawn from
``(tta.seed, scene index, view)``: the same on every process.

Data parallel: with an active process group (``dist``), rank r computes the scenes ``i % W == r`` and the
results (``reduce(i, outputs)`` when given, else the output dict) are gathered so that every rank returns
the whole list, on the CPU; eval mode makes each scene independent of the others, so W processes return
what one returns.  ``reduce`` runs on the rank that computed the scene, on the device: use it to keep what
is gathered small (labels instead of logits).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from wsseg.core.preprocess import NetworkInput, PreprocessConfig, prepare_cloud
from wsseg_training.engine.augment import TTA_AUGMENT, augment
from wsseg_training.engine.distributed import DistInfo, all_gather_objects
from wsseg_training.model.inputs import coords_to_torch, to_torch
from wsseg_training.model.unet import SparseUNet, UNetOutput

BACKENDS = ("maps", "spconv")


class Cloud(Protocol):
    """What :func:`infer` reads of a scene (``Scene`` and ``TrainScene`` both are one).

    xyz: (N, 3) float32 metres.  rgb: (N, 3) uint8 or None.  intensity: (N,) float32 or None.
    """

    xyz: np.ndarray
    rgb: np.ndarray | None
    intensity: np.ndarray | None


@dataclass(frozen=True)
class PointCloud:
    """A :class:`Cloud` from plain arrays (see :class:`Cloud` for shapes and units)."""

    xyz: np.ndarray
    rgb: np.ndarray | None = None
    intensity: np.ndarray | None = None


@dataclass(frozen=True)
class TTAConfig:
    """views: forward passes per scene (1 = none); seed: of the random rotations / flips of views 1..k-1."""

    views: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.views < 1:
            raise ValueError(f"test-time augmentation: views must be >= 1, got {self.views}")


class NetworkRunner:
    """Runs a :class:`SparseUNet` over prepared inputs on one backend: ``maps`` (kernel-map pairs, CPU and
    GPU) or ``spconv`` (GPU training backend).  Keeps one spconv wrapper per network."""

    def __init__(self, backend: str = "maps") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend {backend!r} is not one of {BACKENDS}")
        self.backend = backend
        self._spconv: dict[int, nn.Module] = {}

    def __call__(self, network: SparseUNet, features: torch.Tensor, maps: Sequence[torch.Tensor],
                 coords: torch.Tensor | None) -> UNetOutput:
        """features (M_0, C_in) float32, maps (``map_input_names`` order), coords (M_0, 4) int32 (spconv)."""
        if self.backend == "maps":
            return network.forward_features(features, maps, compact=True)
        if coords is None:
            raise ValueError("the spconv backend needs the level-0 voxel coordinates")
        wrapper = self._spconv.get(id(network))
        if wrapper is None or wrapper.unet is not network:  # type: ignore[union-attr]
            from wsseg_training.model.spconv_backend import SpconvUNet

            wrapper = self._spconv[id(network)] = SpconvUNet(network)
        return wrapper.forward_features(coords, features)  # type: ignore[operator]


@dataclass(frozen=True)
class ForwardView:
    """One view of one scene on the device: what a head sees.

    output: the network's forward pass.  net_input: the prepared (numpy) input of this view.
    features / maps / coords: its tensors.  scene_index / view: which scene of the list and which view.
    run: another network over the same input and backend -> its UNetOutput.
    """

    output: UNetOutput
    net_input: NetworkInput
    features: torch.Tensor
    maps: list[torch.Tensor]
    coords: torch.Tensor | None
    scene_index: int
    view: int
    run: Callable[[SparseUNet], UNetOutput]


Head = Callable[[ForwardView], dict[str, torch.Tensor]]


def logits_head(view: ForwardView) -> dict[str, torch.Tensor]:
    """The default head: ``{"logits": (M_0, C)}``."""
    return {"logits": view.output.logits}


@torch.no_grad()
def infer(scenes: Sequence[Cloud], network: SparseUNet, preprocess: PreprocessConfig, device: torch.device | str,
          *, head: Head = logits_head, backend: str = "maps", tta: TTAConfig | None = None,
          modules: nn.Module | None = None, dist: DistInfo | None = None,
          reduce: Callable[[int, dict[str, torch.Tensor]], Any] | None = None, progress: bool = False,
          desc: str = "infer", runner: NetworkRunner | None = None) -> list[Any]:
    """Whole-scene eval-mode outputs of ``network`` for every scene (see the module docstring).

    Returns one entry per scene, in order: ``reduce(i, outputs)`` or the per-point outputs
    ``{name: (N, ...) tensor}`` of ``head``.  ``modules``: other modules the head uses (eval mode too).
    """
    device = torch.device(device)
    runner = runner or NetworkRunner(backend)
    tta = tta or TTAConfig()
    rank, world = (dist.rank, dist.world_size) if dist is not None and dist.active else (0, 1)
    owned = list(range(rank, len(scenes), world))
    restore = _eval_mode([network] + ([modules] if modules is not None else []))
    results: dict[int, Any] = {}
    try:
        for index in tqdm(owned, desc=desc, unit="scene", leave=False, disable=not (progress and rank == 0)):
            outputs = _scene(scenes[index], index, network, preprocess, device, head, tta, runner)
            results[index] = reduce(index, outputs) if reduce is not None else outputs
    finally:
        restore()
    if world > 1:
        merged: dict[int, Any] = {}
        for part in all_gather_objects({i: _to_cpu(r) for i, r in results.items()}):
            merged.update(part)
        results = merged
    return [results[i] for i in range(len(scenes))]


def _scene(scene: Cloud, index: int, network: SparseUNet, preprocess: PreprocessConfig, device: torch.device,
           head: Head, tta: TTAConfig, runner: NetworkRunner) -> dict[str, torch.Tensor]:
    names = preprocess.features.ordered_names
    total: dict[str, torch.Tensor] | None = None
    for view in range(tta.views):
        xyz, rgb = scene.xyz, scene.rgb
        if view > 0:
            xyz, rgb = augment(xyz, rgb, TTA_AUGMENT, np.random.default_rng([tta.seed, index, view]))
        net_input = prepare_cloud(preprocess, xyz, rgb=rgb if "rgb" in names else None,
                                  intensity=scene.intensity if "intensity" in names else None)
        features, maps = to_torch(net_input, device)
        coords = coords_to_torch(net_input, device) if runner.backend == "spconv" else None

        def run(net: SparseUNet, features=features, maps=maps, coords=coords) -> UNetOutput:
            return runner(net, features, maps, coords)

        output = run(network)
        values = head(ForwardView(output=output, net_input=net_input, features=features, maps=maps, coords=coords,
                                  scene_index=index, view=view, run=run))
        inverse = torch.from_numpy(net_input.grid.inverse).to(device)
        points = {name: value[inverse] for name, value in values.items()}
        total = points if total is None else {name: total[name] + value for name, value in points.items()}
    if total is None:
        raise ValueError("infer: no view")
    return total


def _eval_mode(modules: Sequence[nn.Module]) -> Callable[[], None]:
    """Put ``modules`` (and every submodule) in eval mode; returns the function restoring each one's mode."""
    before = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.eval()

    def restore() -> None:
        for m, training in before:
            m.training = training

    return restore


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value
