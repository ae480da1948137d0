"""Whole-scene predictions of DSP's three decoder branches (DSP Tab. 3), for analysis; the exported network is
the basic branch.

* ``basic``: f_dec(F), the U-Net itself (what ``model.pt`` and the bundle hold);
* ``intra``: f_dec(softmax(F W_s F^T) F), the ISFR branch over the whole scene;
* ``cross``: f_dec(softmax(F W_c F_j^T) F_j) with F_j the features of a partner scene: of the given partners
  (e.g. the training scenes with their labelled classes), the one whose classes overlap most with the classes the
  basic branch predicts in the scene (ties: the first) -- the test-time analogue of "pairs share a class", using
  no ground truth of the scene.

One eval-mode pass per scene through :func:`wsseg_training.engine.inference.infer`; the affinity over a whole
scene is computed in exact row chunks (:func:`~wsseg_training.methods.dsp.reallocate.reallocate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wsseg.core.classes import ClassTable
from wsseg.core.preprocess import PreprocessConfig
from wsseg.core.scene import Scene
from wsseg_training.checkpoint import (
    CheckpointError,
    classes_from_checkpoint,
    load_checkpoint,
    model_from_checkpoint,
    preprocess_from_checkpoint,
)
from wsseg_training.engine.inference import Cloud, ForwardView, infer
from wsseg_training.methods.dsp.options import DspOptions
from wsseg_training.methods.dsp.reallocate import logit_scale, reallocate
from wsseg_training.model.unet import SparseUNet

BRANCHES = ("basic", "intra", "cross")
#: query rows per chunk of a whole-scene affinity when the run did not set ``chunk_rows``
EVAL_CHUNK_ROWS = 2048


@dataclass(frozen=True)
class Partner:
    """A scene the cross branch may take features from.  cloud: its points.  classes: its class ids (labelled)."""

    cloud: Cloud
    classes: frozenset[int]


class DspBranchPredictor:
    """(N,) int64 labels of one branch per scene (module docstring); a :class:`Predictor` for ``evaluate_split``."""

    name = "dsp-branch"

    def __init__(self, model: SparseUNet, modules: nn.ModuleDict, preprocess: PreprocessConfig, options: DspOptions,
                 branch: str, device: torch.device | str = "cpu", classes: ClassTable | None = None,
                 partners: Sequence[Partner] = ()) -> None:
        from wsseg_training.methods.dsp.method import attach_level

        if branch not in BRANCHES:
            raise ValueError(f"DSP branch {branch!r} is not one of {BRANCHES}")
        needs = {"intra": "isfr", "cross": "csfr"}.get(branch)
        if needs is not None and needs not in modules:
            raise ValueError(f"the {branch} branch needs the {needs} module; this run trained {sorted(modules)}")
        if branch == "cross" and not partners:
            raise ValueError("the cross branch needs partner scenes to take features from")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.modules = modules.to(self.device).eval()
        self.preprocess = preprocess
        self.options = options
        self.branch = branch
        self.classes = classes  # type: ignore[assignment]
        self.partners = list(partners)
        self.level = attach_level(model, options.attach_level)
        self.chunk_rows = options.chunk_rows or EVAL_CHUNK_ROWS
        self._partner_features: list[torch.Tensor] | None = None

    @classmethod
    def from_checkpoint(cls, path: str | Path, branch: str, device: torch.device | str = "cpu",
                        partners: Sequence[Partner] = ()) -> DspBranchPredictor:
        """From a dsp run's training checkpoint (``checkpoints/last.pt``: it holds W_c / W_s)."""
        from wsseg_training.methods.dsp.method import DspMethod

        checkpoint = load_checkpoint(path)
        training = checkpoint.get("training")
        if checkpoint.get("provenance", {}).get("method") != "dsp" or not training:
            raise CheckpointError(f"{path}: DSP's branches need the training checkpoint of a dsp run "
                                  "(checkpoints/last.pt, with the CSFR / ISFR modules)")
        options = DspOptions.build(training.get("config", {}).get("method", {}), str(path))
        model = model_from_checkpoint(checkpoint)
        classes = classes_from_checkpoint(checkpoint)
        modules = DspMethod(classes, options).build_modules(model)
        modules.load_state_dict(training["modules"])
        return cls(model, modules, preprocess_from_checkpoint(checkpoint), options, branch, device, classes, partners)

    def predict(self, scene: Scene) -> np.ndarray:
        return infer([scene], self.model, self.preprocess, self.device, head=self._head, modules=self.modules,
                     reduce=lambda _, out: out["logits"].argmax(dim=1).cpu().numpy().astype(np.int64))[0]

    def _head(self, view: ForwardView) -> dict[str, torch.Tensor]:
        output = view.output
        if self.branch == "basic":
            return {"logits": output.logits}
        features = output.decoder[self.level]
        if self.branch == "intra":
            affinity = self.modules["isfr"]
            source, weight = features, affinity.weight
        else:
            affinity = self.modules["csfr"]
            predicted = frozenset(torch.unique(output.logits.argmax(dim=1)).tolist())
            source, weight = self._partner_of(predicted), affinity.weight
        scale = logit_scale(self.options.affinity_scale, affinity.channels)
        moved = reallocate(features, source, weight, scale, self.chunk_rows)
        return {"logits": self.model.decode_from(output, self.level, moved).logits}

    def _partner_of(self, predicted: frozenset[int]) -> torch.Tensor:
        """F_j (N_j, K) of the partner sharing most classes with ``predicted``."""
        if self._partner_features is None:
            captured: list[torch.Tensor] = []

            def capture(view: ForwardView) -> dict[str, torch.Tensor]:
                captured.append(view.output.decoder[self.level])
                return {"logits": view.output.logits}

            infer([p.cloud for p in self.partners], self.model, self.preprocess, self.device, head=capture,
                  modules=self.modules)
            self._partner_features = captured
        overlap = [len(predicted & p.classes) for p in self.partners]
        return self._partner_features[int(np.argmax(overlap))]
