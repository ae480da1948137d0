"""The MPRM classifier's own predictions on unannotated scenes (``wsseg eval --run`` suffixes ``-pcam``, ``-mprm``,
``-mprm-crf``; MPRM Tab. 4 "no retraining").

A val scene has no tags, so its passes (balls of ``radius_m`` on the seeding grid, :func:`~.cams.grid_passes`) are
unmasked: every class may win.  One scene's votes give all three label sets (PCAM; the fused paths; fused + CRF);
they are computed once per scene and shared by the three predictors, as ``wsseg eval`` runs them one after another.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsseg.core.classes import ClassTable
from wsseg.core.scene import Scene
from wsseg_training.checkpoint import (
    CheckpointError,
    classes_from_checkpoint,
    load_checkpoint,
    model_from_checkpoint,
    preprocess_from_checkpoint,
)
from wsseg_training.engine.inference import Cloud, infer
from wsseg_training.methods.mprm.cams import FeatureTap, Pass, SceneVotes, grid_passes
from wsseg_training.methods.mprm.options import MprmOptions
from wsseg_training.methods.mprm.paths import MultiPathModule
from wsseg_training.methods.mprm.pseudo_labels import PseudoLabeller

#: scenes whose three label sets are kept (int16, 6 bytes a point)
CACHE_SCENES = 256


class MprmClassifier:
    """A trained MPRM classification network (``RUN/mprm.pt``) and its labeller; ``labels(scene)`` ->
    {"pcam", "mprm", "mprm_crf"} (N,) int64 each, cached per scene."""

    def __init__(self, path: str | Path, device: torch.device | str = "cpu") -> None:
        checkpoint = load_checkpoint(path)
        extra = checkpoint.get("mprm")
        if not isinstance(extra, dict) or "options" not in extra or "paths" not in extra:
            raise CheckpointError(f"{path}: not an MPRM classifier (field 'mprm' with 'options' and 'paths' missing)")
        self.device = torch.device(device)
        self.options = MprmOptions.build(extra["options"], where=str(path))
        self.model = model_from_checkpoint(checkpoint).to(self.device)
        self.classes: ClassTable = classes_from_checkpoint(checkpoint)
        self.preprocess = preprocess_from_checkpoint(checkpoint)
        channels = self.model.config.channels[self.options.feature_level]
        self.module = MultiPathModule(channels, self.classes.num_classes, self.options.paths,
                                      self.options.path_channels, self.options.qk_channels, self.options.dropout)
        self.module.load_state_dict(extra["paths"])
        self.module.to(self.device).eval()
        self.tap = FeatureTap(self.options.feature_source, self.options.feature_level)
        self.labeller = PseudoLabeller(self.module, self.tap, self.options, self.classes.num_classes,
                                       self.preprocess.voxel_size_m)
        self._cache: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()

    def infer(self, clouds: Any, **options: Any) -> list[Any]:
        """:func:`~wsseg_training.engine.inference.infer` with the classifier (the labeller's ``infer``)."""
        return infer(clouds, self.model, self.preprocess, self.device, modules=self.module, **options)

    def labels(self, scene: Scene) -> dict[str, np.ndarray]:
        key = hashlib.sha1(np.ascontiguousarray(scene.xyz).tobytes()).hexdigest()
        if key not in self._cache:
            passes = grid_passes(scene.xyz, self.options.radius_m, self.options.pass_spacing_m, None)
            result = self.labeller.label_scene(self.infer, scene, passes)
            if result.crf is None:  # a run trained without the CRF: the CRF predictor still refines
                votes = self.labeller.votes(self.infer, scene, passes, [self.options.fusion])
                result.crf = self.labeller.labels(votes, self.options.fusion, scene, crf=True)
            self._cache[key] = {k: v.astype(np.int16) for k, v in result.variants().items()}
            while len(self._cache) > CACHE_SCENES:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        return {k: v.astype(np.int64) for k, v in self._cache[key].items()}

    def variant_votes(self, scene: Cloud, passes: Sequence[Pass], variants: Sequence[str]) -> SceneVotes:
        """Voted scores of every score variant of ``variants`` (:data:`~.cams.SCORES`) the classifier has, over
        ``passes`` (the ablation: masked passes on annotated scenes, unmasked on others)."""
        return self.labeller.votes(self.infer, scene, passes, self.labeller.available(variants))

    def variant_labels(self, scene: Cloud, votes: SceneVotes, crf_variants: Sequence[str] = ("max",)
                       ) -> dict[str, np.ndarray]:
        """(N,) int64 labels of every voted variant (masked argmax), and ``VARIANT+crf`` for those of
        ``crf_variants`` that were voted (the dense CRF, as the retrain stage applies it)."""
        out = {v: self.labeller.labels(votes, v, scene, crf=False) for v in votes.sums}
        for variant in crf_variants:
            if variant in votes.sums:
                out[f"{variant}+crf"] = self.labeller.labels(votes, variant, scene, crf=True)
        return out


class MprmPredictor:
    """One of the classifier's label sets as a :class:`~wsseg_training.evaluation.evaluate.Predictor`."""

    def __init__(self, classifier: MprmClassifier, variant: str) -> None:
        self.classifier = classifier
        self.variant = variant
        self.name = f"mprm classifier ({variant})"
        self.classes = classifier.classes

    def predict(self, scene: Scene) -> np.ndarray:
        return self.classifier.labels(scene)[self.variant]


def classifier_predictors(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """{"-pcam", "-mprm", "-mprm-crf"} predictors of the classifier in ``path`` (``-pcam`` only when PCAM was a
    trained path)."""
    classifier = MprmClassifier(path, device)
    out: dict[str, Any] = {}
    if "pcam" in classifier.module.paths:
        out["-pcam"] = MprmPredictor(classifier, "pcam")
    out["-mprm"] = MprmPredictor(classifier, "mprm")
    out["-mprm-crf"] = MprmPredictor(classifier, "mprm_crf")
    return out
