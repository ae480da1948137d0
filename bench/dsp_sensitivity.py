"""How much each trained network's logits depend on the features DSP reallocates (decoder level L-2).

    bench/dsp_sensitivity.py --work WORK [--runs seed0/0.01/baseline,...] [--level -2] [--no-write]

For every run folder under ``WORK/indoor`` (``bench/dsp.py``'s cache; default: every run of seed 0) and every val
scene: the exported network's labels against the labels it gives when the level-L-2 features (or ``--level``'s) of
the whole scene are replaced by their per-scene mean (one vector) or by zeros (``backbone.decode_from``: the rest of
the decoder, skips and head unchanged), and the val mIoU with the mean.  A network whose labels barely change has
learnt to ignore that level -- then any reallocation of it changes little, and L_CR / L_SR can be driven to zero that
way.  Writes
``bench/results/dsp_sensitivity.{json,md}``; last line ``RESULT <json>``.  Not a test: never gates CI.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from harness import machine, write_results
from wsseg_training.checkpoint import load_checkpoint, model_from_checkpoint, preprocess_from_checkpoint
from wsseg_training.data.dataset import Dataset
from wsseg_training.engine.inference import ForwardView, infer
from wsseg_training.evaluation.metrics import ConfusionMatrix

RESULTS = Path(__file__).resolve().parent / "results"
REPLACEMENTS = ("mean", "zero")


def sensitivity(run: Path, dataset: Dataset, from_bottom: int = -2) -> dict[str, Any]:
    """{"level", "from_bottom", "unchanged": {replacement: share of val points}, "miou": {"model", "mean"}} of one
    run, at decoder level ``num_levels + from_bottom`` (-2 = L-2, DSP's default attach level; -1 = the bottleneck)."""
    checkpoint = load_checkpoint(run / "model.pt")
    model, preprocess = model_from_checkpoint(checkpoint), preprocess_from_checkpoint(checkpoint)
    level = model.num_levels + from_bottom

    def head(view: ForwardView) -> dict[str, torch.Tensor]:
        features = view.output.decoder[level]
        out = {"model": view.output.logits}
        for name, replaced in (("mean", features.mean(0, keepdim=True).expand_as(features)),
                               ("zero", torch.zeros_like(features))):
            out[name] = model.decode_from(view.output, level, replaced).logits
        return out

    scenes = [dataset.load(n) for n in dataset.scene_names("val")]
    with torch.no_grad():
        outputs = infer(scenes, model, preprocess, "cpu", head=head,
                        reduce=lambda _, o: {k: v.argmax(dim=1).cpu().numpy() for k, v in o.items()})
    same = {r: 0 for r in REPLACEMENTS}
    total = 0
    matrices = {k: ConfusionMatrix(dataset.classes.num_classes) for k in ("model", "mean")}
    for scene, labels in zip(scenes, outputs, strict=True):
        total += len(labels["model"])
        for r in REPLACEMENTS:
            same[r] += int((labels[r] == labels["model"]).sum())
        for key, matrix in matrices.items():
            matrix.add(scene.semantic, labels[key])
    return {"level": level, "from_bottom": from_bottom,
            "unchanged": {r: round(same[r] / total, 4) for r in REPLACEMENTS},
            "miou": {k: round(float(m.miou()), 4) for k, m in matrices.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="bench/dsp.py's --work folder")
    parser.add_argument("--dataset", default="indoor")
    parser.add_argument("--runs", default="", help="comma-separated run folders under WORK/DATASET (default: seed0's)")
    parser.add_argument("--level", type=int, default=-2, choices=(-1, -2, -3),
                        help="decoder level replaced, from the bottom (-2 = L-2, DSP's default attach level)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    root = args.work / args.dataset
    runs = ([r for r in args.runs.split(",") if r] or
            sorted(str(p.parent.relative_to(root)) for p in root.glob("seed0/*/*/model.pt")))
    dataset = Dataset(root / "data")
    started, load_start = time.perf_counter(), os.getloadavg()
    rows = {run: sensitivity(root / run, dataset, args.level) for run in runs}
    result = {"rows": rows, "wall_s": round(time.perf_counter() - started, 1), "machine": machine(load_start),
              "command": "bench/dsp_sensitivity.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    lines = ["# DSP: how much the logits depend on the level-L-2 features", "", __doc__.split("\n\n")[1].strip()
             .replace("\n", " "), "", f"Command: `{result['command']}`; wall {result['wall_s']} s.", "",
             "| run | val labels unchanged, level features -> scene mean | -> zeros | mIoU % | mIoU % with the mean |",
             "|---|---:|---:|---:|---:|"]
    for run, row in rows.items():
        lines.append(f"| {run} | {100 * row['unchanged']['mean']:.1f} % | {100 * row['unchanged']['zero']:.1f} % | "
                     f"{100 * row['miou']['model']:.1f} | {100 * row['miou']['mean']:.1f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    if not args.no_write:
        write_results(args.results, "dsp_sensitivity", result, table)
    print("RESULT " + json.dumps({run: row["unchanged"]["mean"] for run, row in rows.items()}), flush=True)
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    sys.exit(main())
