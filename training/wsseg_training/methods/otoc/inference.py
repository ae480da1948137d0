"""1T1C over whole scenes: Θ (and R) forward, super-voxel propagation, and the two inference modes.

Used twice: by the ``otoc`` plugin to make the next round's pseudo labels (Algorithm 1 lines 5-6, on the
training scenes) and by ``wsseg eval`` for the ``full`` inference mode on val/test scenes.

Inference modes [1T1C Tab. 2]:

* ``dagger`` ("1T1C†"): the backbone Θ alone, argmax per point -- what ``wsseg export`` ships to the robot
  (:class:`~wsseg_training.evaluation.evaluate.TorchPredictor` / the ONNX bundle);
* ``full``: Θ, R and graph propagation over the scene's super-voxels (:class:`OtocFullPredictor`), offline
  only, because it needs super-voxels and the relation network.  Points without a super-voxel keep Θ's
  argmax.  Single view (no test-time augmentation), as the paper's ablations.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from wsseg.core.classes import ClassTable
from wsseg.core.preprocess import PreprocessConfig, refine_point_labels
from wsseg.core.scene import Scene
from wsseg_training.checkpoint import (
    CheckpointError,
    classes_from_checkpoint,
    load_checkpoint,
    model_from_checkpoint,
    preprocess_from_checkpoint,
)
from wsseg_training.engine.inference import ForwardView, PointCloud, infer
from wsseg_training.methods.common.prototypes import PrototypeBank, PrototypeSums
from wsseg_training.methods.otoc.config import OtocConfig
from wsseg_training.methods.otoc.propagate import Propagation, propagate_scene
from wsseg_training.methods.otoc.relation import build_relation_net
from wsseg_training.model.unet import SparseUNet, UNetConfig

#: ``wsseg eval --inference`` choices for an otoc run
INFERENCE_MODES = ("dagger", "full")


def build_otoc_modules(unet: UNetConfig, config: OtocConfig, num_classes: int) -> nn.ModuleDict:
    """The training-only modules of a variant: ``relation`` (R) and ``bank`` (memory bank) or ``sums`` ("w/o MB").

    Empty for ``unet`` and ``gp`` (they have no relation network).  Never exported.
    """
    if not config.uses_relation:
        return nn.ModuleDict()
    modules: dict[str, nn.Module] = {"relation": build_relation_net(unet, config.embed_dim)}
    if config.memory_bank:
        modules["bank"] = PrototypeBank(num_classes, config.embed_dim, config.momentum)
    else:
        modules["sums"] = PrototypeSums(num_classes, config.embed_dim)
    return nn.ModuleDict(modules)


def module_or_none(modules: nn.ModuleDict, name: str) -> Any:
    """``modules[name]`` or None (``nn.ModuleDict`` has no ``get``)."""
    return modules[name] if name in modules else None  # noqa: SIM401


def prototypes_of(modules: nn.ModuleDict) -> torch.Tensor | None:
    """(C, D) prototypes of R for propagation: the memory bank's, or the "w/o MB" running means; None without R."""
    if "bank" in modules:
        return modules["bank"].prototypes.detach()  # type: ignore[union-attr]
    if "sums" in modules:
        return modules["sums"].prototypes()  # type: ignore[operator]
    return None


@dataclass(frozen=True)
class SceneOutputs:
    """Network outputs at every point of one scene (eval mode).

    prob: (N, C) float32 Θ's softmax.  unet_feature: (N, F) Θ's last decoder features.
    relation_embedding: (N, D) R's embeddings, or None without R.
    """

    prob: torch.Tensor
    unet_feature: torch.Tensor
    relation_embedding: torch.Tensor | None


def scene_outputs(model: SparseUNet, relation: SparseUNet | None, preprocess: PreprocessConfig, xyz: np.ndarray,
                  rgb: np.ndarray | None, intensity: np.ndarray | None, device: torch.device) -> SceneOutputs:
    """Θ (and R) over a whole scene, through the engine's one inference pass (eval mode, single view).

    xyz: (N, 3) float32 metres; rgb: (N, 3) uint8; intensity: (N,) float32.
    """

    def head(view: ForwardView) -> dict[str, torch.Tensor]:
        out = {"prob": torch.softmax(view.output.logits.float(), dim=1),
               "unet_feature": view.output.point_features.float()}
        if relation is not None:
            out["relation_embedding"] = view.run(relation).logits.float()
        return out

    outputs = infer([PointCloud(xyz, rgb, intensity)], model, preprocess, device, head=head, modules=relation)[0]
    return SceneOutputs(prob=outputs["prob"], unet_feature=outputs["unet_feature"],
                        relation_embedding=outputs.get("relation_embedding"))


@torch.no_grad()
def propagate_outputs(outputs: SceneOutputs, supervoxel: np.ndarray, xyz: np.ndarray, rgb: np.ndarray | None,
                      config: OtocConfig, prototypes: torch.Tensor | None) -> Propagation:
    """Pool ``outputs`` to the scene's super-voxels and run the variant's propagation (Eq. 2-8).

    supervoxel: (N,) int super-voxel id, -1 = none.  xyz: (N, 3) metres.  rgb: (N, 3) uint8 or None (then the
    colour group of the kernel cannot be used).
    """
    device = outputs.prob.device
    return propagate_scene(
        torch.from_numpy(np.asarray(supervoxel, dtype=np.int64)).to(device),
        torch.from_numpy(np.asarray(xyz, dtype=np.float32)).to(device), outputs.prob, config,
        rgb=None if rgb is None else torch.from_numpy(np.asarray(rgb)).to(device),
        unet_feature=outputs.unet_feature, relation_embedding=outputs.relation_embedding,
        prototypes=prototypes)


class OtocFullPredictor:
    """The ``full`` inference mode of a trained otoc run: Θ + R + graph propagation over super-voxels.

    Needs a checkpoint with training state (``checkpoints/last.pt``: R's weights and the prototypes live in the
    training-only modules, which ``model.pt`` and the exported bundle leave out) and scenes with super-voxels.
    """

    name = "otoc-full"

    def __init__(self, model: SparseUNet, modules: nn.ModuleDict, preprocess: PreprocessConfig, config: OtocConfig,
                 classes: ClassTable, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.modules = modules.to(self.device).eval()
        self.preprocess = preprocess
        self.config = config
        self.classes = classes

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: torch.device | str = "cpu") -> OtocFullPredictor:
        from wsseg_training.methods.otoc.method import otoc_config_from_options

        checkpoint = load_checkpoint(path)
        training = checkpoint.get("training")
        if checkpoint.get("provenance", {}).get("method") != "otoc" or not training:
            raise CheckpointError(f"{path}: the full 1T1C inference needs the training checkpoint of an otoc run "
                                  "(checkpoints/last.pt, with R and its prototypes)")
        options = training.get("config", {}).get("method", {})
        config = otoc_config_from_options(options)
        if options.get("star") and config.uses_relation:
            # 1T1C* trains no R: its full inference propagates Θ's unary on the hand-crafted (+GP) graph
            config = replace(config, variant="gp")
        model = model_from_checkpoint(checkpoint)
        classes = classes_from_checkpoint(checkpoint)
        modules = build_otoc_modules(model.config, config, classes.num_classes)
        modules.load_state_dict(training["modules"])
        return cls(model, modules, preprocess_from_checkpoint(checkpoint), config, classes, device)

    def predict(self, scene: Scene) -> np.ndarray:
        """(N,) int64 label per point: the CRF label of its super-voxel, Θ's argmax where it has none."""
        if scene.supervoxel is None:
            raise ValueError("scene has no field 'supervoxel'; the full 1T1C inference propagates over super-voxels "
                             "(run `wsseg data supervoxels` on the dataset)")
        relation = module_or_none(self.modules, "relation")
        outputs = scene_outputs(self.model, relation, self.preprocess, scene.xyz, scene.rgb,  # type: ignore[arg-type]
                                scene.intensity, self.device)
        # the ``unet`` variant has no graph and no R: this is then Θ's unary pooled per super-voxel (Eq. 2)
        prop = propagate_outputs(outputs, scene.supervoxel, scene.xyz, scene.rgb, self.config,
                                 prototypes_of(self.modules))
        labels = prop.point_predictions(outputs.prob.argmax(dim=1)).cpu().numpy().astype(np.int64)
        return refine_point_labels(self.preprocess, self.classes.names, scene.xyz, labels)  # the model's, if any
