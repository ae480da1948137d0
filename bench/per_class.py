#!/usr/bin/env python3
"""Per-class IoU of trained runs on the splits of one dataset, as one markdown table.

``bench/per_class.py --data DATA --runs NAME=RUN_DIR ... [--splits val,train] [--out FILE.md]``

Each run's ``model.pt`` is scored with the evaluation of ``wsseg eval`` (one confusion matrix over every point of the
split); a row per run and split: mIoU, overall accuracy and the IoU of each class, in %.  Used to see *which*
classes a weakly supervised run misses (e.g. MPRM's retrained network, ``bench/results/mprm_retrain_plateau.md``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from harness import emit
from wsseg_training.data.dataset import Dataset
from wsseg_training.evaluation.evaluate import TorchPredictor, evaluate_split


def run_arg(text: str) -> tuple[str, Path]:
    """``NAME=RUN_DIR`` -> (name, run directory holding model.pt)."""
    name, sep, path = text.partition("=")
    if not sep or not name or not (Path(path) / "model.pt").is_file():
        raise argparse.ArgumentTypeError(f"--runs {text!r}: expected NAME=RUN_DIR with RUN_DIR/model.pt")
    return name, Path(path)


def table(dataset: Dataset, runs: list[tuple[str, Path]], splits: list[str]) -> list[str]:
    """The markdown lines: header, then one row per (run, split)."""
    names = dataset.classes.names
    lines = ["| run | split | mIoU | acc | " + " | ".join(names) + " |",
             "|---|---|---:|---:|" + "---:|" * len(names)]
    for name, run in runs:
        predictor = TorchPredictor.from_checkpoint(run / "model.pt")
        for split in splits:
            confusion = evaluate_split(predictor, dataset, split, progress=False).confusion
            lines.append(f"| {name} | {split} | {100 * confusion.miou():.1f} | "
                         f"{100 * confusion.overall_accuracy():.1f} | "
                         + " | ".join(f"{100 * v:.0f}" for v in confusion.iou()) + " |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="dataset directory (dataset.yaml)")
    parser.add_argument("--runs", type=run_arg, nargs="+", required=True, metavar="NAME=RUN_DIR")
    parser.add_argument("--splits", default="val,train", help="comma-separated splits")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this markdown file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lines = table(Dataset(args.data), args.runs, [s for s in args.splits.split(",") if s])
    return emit("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    sys.exit(main())
