#!/usr/bin/env python3
"""Do a trained MPRM classifier's CAMs localize each class?  Per-class ranking quality and rescaled argmax.

``bench/mprm_cams.py --data DATA --runs NAME=RUN_DIR ... --kind scene|subcloud --seed S [--scenes N] [--out F.md]``

For each classifier (``RUN_DIR/mprm.pt``) the voted, tag-masked scores of ``--variant`` (``max`` = the method's
fusion) over the first ``--scenes`` training scenes, with the passes the retrain stage uses (the sub-clouds; the
scene-tag grid of balls; one whole-scene pass for ``scene_sample: scene``), and with the weak labels of
``bench/mprm.py`` (same simulator and seed).  Reported against the ground truth that training never sees:

* **AUC** per class (mean over scenes): over the points whose tags allow the class, the probability that a point of
  the class scores higher on the class's map than a point of another class (0.5 = no localization, < 0.5 = the map
  is high *off* the class);
* the share of points each class wins in the masked argmax, beside its true share;
* pseudo-label mIoU of the argmax after rescaling each class's map per scene: ``raw`` (the method), ``max`` (divided
  by its largest absolute value), ``z`` (standardised), ``rank`` (quantile) -- whether a per-class scale is what
  keeps a localizing map from winning; with ``--crf`` also ``raw+crf`` and ``z+crf``, the method's dense CRF after
  ``score_rescale: none`` / ``z`` (what the retrain stage would train on).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from harness import emit
from mprm import passes_of, weak_labels
from wsseg_training.data.dataset import Dataset
from wsseg_training.evaluation.metrics import ConfusionMatrix
from wsseg_training.labels import SceneTags
from wsseg_training.methods.mprm.cams import standardize_scores, whole_scene_pass
from wsseg_training.methods.mprm.predictor import MprmClassifier

#: per-class rescalings of one scene's (N, C) scores before the masked argmax
RESCALES = ("raw", "max", "z", "rank")
#: the method's rescalings (``score_rescale``) followed by its dense CRF
CRF_RESCALES = ("raw+crf", "z+crf")


def rescale(scores: np.ndarray, how: str) -> np.ndarray:
    """(N, C) float64 scores rescaled per class (column) over the scene's points."""
    if how == "raw":
        return scores
    if how == "max":
        return scores / (np.abs(scores).max(axis=0, keepdims=True) + 1e-12)
    if how == "z":  # the method's ``score_rescale: z``
        return standardize_scores(scores, np.ones(len(scores), bool)).astype(np.float64)
    if how == "rank":
        return scores.argsort(axis=0).argsort(axis=0) / max(len(scores) - 1, 1)
    raise ValueError(f"rescale {how!r} is not one of {RESCALES}")


def rank_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney AUC of ``scores`` (N,) for the ``positive`` (N,) bool points against the rest (ties by order)."""
    ranks = scores.argsort().argsort().astype(np.float64)
    pos = int(positive.sum())
    neg = positive.size - pos
    return float((ranks[positive].sum() - pos * (pos - 1) / 2) / (pos * neg))


def analyse(classifier: MprmClassifier, dataset: Dataset, kind: str, seed: int, scenes: int,
            variant: str, crf: bool) -> dict:
    """{"auc": [C] mean AUC or None, "won": [C] share, "true": [C] share, "miou": {rescale: mIoU}}."""
    names = dataset.scene_names("train")[:scenes]
    weak = weak_labels(kind, dataset, "train", seed, classifier.options.radius_m)
    num_classes = dataset.classes.num_classes
    aucs: list[list[float]] = [[] for _ in range(num_classes)]
    won, true = np.zeros(num_classes), np.zeros(num_classes)
    matrices = {how: ConfusionMatrix(num_classes) for how in RESCALES + (CRF_RESCALES if crf else ())}
    for name in names:
        scene = dataset.load(name)
        if isinstance(weak, SceneTags) and classifier.options.scene_sample == "scene":
            passes = whole_scene_pass(scene.xyz, tuple(weak.tags[name]))
        else:
            passes = passes_of(weak, name, scene.xyz, classifier.options.radius_m)
        votes = classifier.variant_votes(scene, passes, [variant])
        scores = votes.mean(variant).astype(np.float64)
        allowed = votes.allowed | ~votes.allowed.any(axis=1, keepdims=True)
        labelled = scene.semantic >= 0
        for how in RESCALES:
            labels = np.where(allowed, rescale(scores, how), -np.inf).argmax(axis=1)
            matrices[how].add(scene.semantic, labels)
            if how == "raw":
                won += np.bincount(labels[labelled], minlength=num_classes)
        true += np.bincount(scene.semantic[labelled], minlength=num_classes)
        for how in CRF_RESCALES if crf else ():
            votes.rescale = how.removesuffix("+crf").replace("raw", "none")
            matrices[how].add(scene.semantic, classifier.labeller.labels(votes, variant, scene, crf=True))
        votes.rescale = "none"
        for c in np.flatnonzero(allowed.any(axis=0)):
            where = allowed[:, c] & labelled  # the points whose tags allow the class
            positive = scene.semantic[where] == c
            if 0 < positive.sum() < positive.size:
                aucs[c].append(rank_auc(scores[where, c], positive))
    return {"auc": [float(np.mean(a)) if a else None for a in aucs], "won": (won / won.sum()).tolist(),
            "true": (true / true.sum()).tolist(), "miou": {how: m.miou() for how, m in matrices.items()}}


def markdown(dataset: Dataset, results: dict[str, dict], args: argparse.Namespace) -> str:
    names = dataset.classes.names
    lines = [f"Training scenes: the first {args.scenes}; weak labels `{args.kind}` (seed {args.seed}); variant "
             f"`{args.variant}`.  Command: `bench/mprm_cams.py {' '.join(sys.argv[1:])}`", "",
             "| run | row | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names)]
    for run, found in results.items():
        lines.append(f"| {run} | AUC | " + " | ".join("–" if a is None else f"{a:.2f}" for a in found["auc"]) + " |")
        lines.append(f"| {run} | won % | " + " | ".join(f"{100 * v:.0f}" for v in found["won"]) + " |")
        lines.append(f"| {run} | true % | " + " | ".join(f"{100 * v:.0f}" for v in found["true"]) + " |")
    columns = list(next(iter(results.values()))["miou"])
    lines += ["", "| run | " + " | ".join(f"mIoU {how}" for how in columns) + " |", "|---|" + "---:|" * len(columns)]
    for run, found in results.items():
        lines.append(f"| {run} | " + " | ".join(f"{100 * found['miou'][how]:.1f}" for how in columns) + " |")
    return "\n".join(lines) + "\n"


def run_arg(text: str) -> tuple[str, Path]:
    """``NAME=RUN_DIR`` -> (name, RUN_DIR/mprm.pt)."""
    name, sep, path = text.partition("=")
    if not sep or not name or not (Path(path) / "mprm.pt").is_file():
        raise argparse.ArgumentTypeError(f"--runs {text!r}: expected NAME=RUN_DIR with RUN_DIR/mprm.pt")
    return name, Path(path) / "mprm.pt"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="dataset directory (dataset.yaml)")
    parser.add_argument("--runs", type=run_arg, nargs="+", required=True, metavar="NAME=RUN_DIR")
    parser.add_argument("--kind", choices=("scene", "subcloud"), required=True, help="the runs' weak labels")
    parser.add_argument("--seed", type=int, required=True, help="the runs' seed (the weak labels' draw)")
    parser.add_argument("--scenes", type=int, default=12, help="training scenes to score (the first N)")
    parser.add_argument("--variant", default="max", help="score variant (max, sum, or a path)")
    parser.add_argument("--crf", action="store_true", help="also the mIoU after the dense CRF (raw and z)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="also write the tables to this markdown file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = Dataset(args.data)
    results = {name: analyse(MprmClassifier(path), dataset, args.kind, args.seed, args.scenes, args.variant,
                              args.crf)
               for name, path in args.runs}
    return emit(markdown(dataset, results, args), args.out)


if __name__ == "__main__":
    sys.exit(main())
