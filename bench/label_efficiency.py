"""Label-efficiency calibration: fully supervised ``full`` vs the same recipe on raw clicks.

Synthesizes the indoor benchmark with the synth generator's defaults (``IndoorConfig()``,
S3DIS classes, train/val split of the generator), simulates one click per object on the
train split (``simulate_clicks``, seed 0), then trains ``full`` twice with the same config:

* ``full``: every labelled point of the train scenes;
* ``raw_clicks``: only the clicked points (``wsseg train --method full --labels clicks.json``),
  the "train on raw clicks" baseline the weakly supervised papers report as failing;

and evaluates both on the val split (per point, one confusion matrix).  The benchmark can
tell methods apart only if ``full`` does not saturate (mIoU <= 0.90) and raw clicks stay
more than 5 points below it; the script says so when that fails.

Bounded time on a CPU: batches of 2 crops of ``--crop-points`` points, ``--steps`` steps (cpu
profile; about 0.75 s/step on an idle 2-core CPU); the ``default`` profile (``--profiles cpu,default``)
is ~5x slower per step and gets ``--default-steps`` on smaller crops.  ``--quick`` runs fewer scenes
and steps.  Writes ``bench/results/label_efficiency.json`` and ``.md``;
the last line printed is ``RESULT <json>``.  Not a test: never gates CI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from wsseg_training.checkpoint import load_checkpoint
from wsseg_training.data.dataset import Dataset
from wsseg_training.data.synth.config import IndoorConfig, config_to_dict
from wsseg_training.data.synth.generate import SynthSummary, write_synthetic_dataset
from wsseg_training.engine.config import config_from_dict
from wsseg_training.engine.loop import Trainer
from wsseg_training.evaluation.evaluate import TorchPredictor, evaluate_split
from wsseg_training.labels import compute_stats, save_weak_labels, simulate_clicks
from wsseg_training.methods import FullMethod

RESULTS = Path(__file__).resolve().parent / "results"


def recipe(profile: str, steps: int, crop_points: int, seed: int) -> dict:
    """The training config shared by both runs (plain data, as a YAML would hold it)."""
    return {
        "seed": seed, "profile": profile, "device": "cpu",
        "data": {"features": ["offset", "rgb"], "crop_max_points": crop_points, "batch_scenes": 2},
        "optim": {"optimizer": "adamw", "lr": 0.004, "weight_decay": 1e-4, "schedule": "cosine",
                  "warmup_steps": max(1, steps // 20), "grad_clip_norm": 10.0},
        # checkpoints let an interrupted benchmark continue (run it again with the same --work)
        "train": {"steps": steps, "checkpoint_every_steps": 50, "keep_checkpoints": 0, "log_every_steps": 10},
    }


def train_and_eval(name: str, config: dict, dataset: Dataset, work: Path, clicks=None) -> dict:
    """Train (or reuse ``work/name/model.pt``, or resume ``work/name`` from its last checkpoint) and evaluate."""
    run = work / name
    steps = config["train"]["steps"]
    train_s = None
    if (run / "model.pt").is_file() and load_checkpoint(run / "model.pt")["provenance"].get("steps") == steps:
        print(f"{name}: reusing {run / 'model.pt'}", flush=True)
        train_s = load_checkpoint(run / "model.pt")["provenance"].get("train_wall_s")
    else:
        resume = (run / "checkpoints" / "last.pt").is_file()
        trainer = Trainer(config_from_dict(config), FullMethod(dataset.classes, weak=clicks), dataset, run,
                          resume=resume, provenance={"labels": "clicks" if clicks is not None else None})
        train_s = trainer.run().wall_s
    provenance = load_checkpoint(run / "model.pt")["provenance"]
    start = time.perf_counter()
    evaluation = evaluate_split(TorchPredictor.from_checkpoint(run / "model.pt"), dataset, "val")
    eval_s = time.perf_counter() - start
    matrix = evaluation.confusion
    return {"miou": round(matrix.miou(), 4), "overall_accuracy": round(matrix.overall_accuracy(), 4),
            "per_class_iou": {n: (None if v != v else round(float(v), 4))
                              for n, v in zip(dataset.classes.names, matrix.iou(), strict=True)},
            "train_s": None if train_s is None else round(train_s, 1), "eval_s": round(eval_s, 1),
            "steps": steps, "final_loss": provenance.get("final_loss"), "train_scenes": provenance.get("train_scenes")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer scenes and steps")
    parser.add_argument("--scenes", type=int, default=None, help="synthetic rooms (default 15, quick 10)")
    parser.add_argument("--steps", type=int, default=None, help="cpu-profile steps per run (default 600, quick 60)")
    parser.add_argument("--crop-points", type=int, default=60_000, help="cpu profile: points per training crop")
    parser.add_argument("--profiles", default="cpu", help="comma-separated model profiles (cpu, default)")
    parser.add_argument("--default-steps", type=int, default=None,
                        help="default-profile steps per run (default: a quarter of --steps; ~5x slower per step)")
    parser.add_argument("--default-crop-points", type=int, default=30_000, help="default profile: points per crop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="where to put data and runs (default: a temp dir)")
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results/")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    scenes = args.scenes or (10 if args.quick else 15)
    steps = args.steps or (60 if args.quick else 600)
    budgets = {"cpu": (steps, args.crop_points), "default": (args.default_steps or max(1, steps // 4),
                                                               args.default_crop_points)}
    work = args.work or Path(tempfile.mkdtemp(prefix="wsseg_label_eff_"))
    started = time.perf_counter()

    synth = IndoorConfig()
    if (work / "data" / "dataset.yaml").is_file():  # a continued benchmark: same seed, same scenes
        dataset = Dataset(work / "data")
        points = [int(e["points"]) for e in dataset.info.scenes.values()]
        summary = SynthSummary(root=dataset.root, scenes=len(points), train=len(dataset.scene_names("train")),
                               val=len(dataset.scene_names("val")), points_per_scene=sum(points) / len(points),
                               seconds_per_scene=0.0, frames=0)
    else:
        summary = write_synthetic_dataset(work / "data", synth, scenes=scenes, seed=args.seed)
        dataset = Dataset(work / "data")
    clicks = simulate_clicks(dataset, dataset.scene_names("train"), seed=args.seed)
    save_weak_labels(clicks, work / "clicks.json")
    stats = compute_stats(clicks, dataset)
    print(f"data: {summary.train} train / {summary.val} val rooms, {summary.points_per_scene:,.0f} points/room; "
          f"clicks: {clicks.num_labelled()} labelled points", flush=True)

    runs: dict[str, dict] = {}
    for profile in [p.strip() for p in args.profiles.split(",") if p.strip()]:
        profile_steps, crop = budgets.get(profile, (steps, args.crop_points))
        config = recipe(profile, profile_steps, crop, args.seed)
        runs[f"{profile}/full"] = train_and_eval(f"{profile}_full", config, dataset, work)
        runs[f"{profile}/raw_clicks"] = train_and_eval(f"{profile}_raw_clicks", config, dataset, work, clicks)
        runs[f"{profile}/full"]["crop_max_points"] = runs[f"{profile}/raw_clicks"]["crop_max_points"] = crop
        report(args, runs, summary, stats, clicks, synth, started)  # after every profile: a partial run keeps results
    return 0


def report(args: argparse.Namespace, runs: dict[str, dict], summary, stats, clicks, synth,
           started: float) -> None:
    """Print the table, write bench/results/label_efficiency.{json,md}, print the RESULT line."""
    first = next(iter(runs)).split("/")[0]
    full, raw = runs[f"{first}/full"]["miou"], runs[f"{first}/raw_clicks"]["miou"]
    steps = runs[f"{first}/full"]["steps"]
    warnings = []
    if full > 0.90:
        warnings.append(f"full mIoU {full:.3f} > 0.90: the benchmark saturates; raise the synthetic difficulty")
    if full - raw < 0.05:
        warnings.append(f"raw clicks ({raw:.3f}) within 5 points of full ({full:.3f}): raise the difficulty")
    result = {
        "full_miou": full, "raw_clicks_miou": raw, "profile": first, "steps": steps, "batch_scenes": 2,
        "epochs": round(steps * 2 / max(1, summary.train), 1),
        "scenes": {"train": summary.train, "val": summary.val, "points_per_scene": round(summary.points_per_scene)},
        "labelled_fraction_raw_clicks": round(stats.labelled_points / max(1, stats.total_points), 6),
        "clicks": clicks.num_labelled(), "runs": runs, "synth_config": config_to_dict(synth),
        "quick": args.quick, "wall_s": round(time.perf_counter() - started, 1), "warnings": warnings,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                    "python": sys.version.split()[0]},
    }
    lines = ["| profile | labels | mIoU % | OA % | steps | epochs | crop points | train s | eval s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key, run in runs.items():
        profile, labels = key.split("/")
        epochs = run["steps"] * 2 / max(1, summary.train)
        train_s = "–" if run["train_s"] is None else f"{run['train_s']:.0f}"
        lines.append(f"| {profile} | {labels} | {100 * run['miou']:.1f} | {100 * run['overall_accuracy']:.1f} | "
                     f"{run['steps']} | {epochs:.0f} | {run['crop_max_points']:,} | {train_s} | {run['eval_s']:.0f} |")
    table = "\n".join(lines)
    note = (f"Synthetic indoor rooms (generator defaults, {summary.points_per_scene:,.0f} points/room), "
            f"{summary.train} train / {summary.val} val rooms; batches of 2 crops; raw clicks = one click per "
            f"object ({clicks.num_labelled()} points, {100 * result['labelled_fraction_raw_clicks']:.3f}% of the "
            f"train points); {os.cpu_count()}-core CPU, {torch.get_num_threads()} torch threads, load average "
            f"{os.getloadavg()[1]:.1f} over the last 5 min at the end, torch {torch.__version__}; "
            f"total wall {result['wall_s'] / 60:.1f} min{' (--quick)' if args.quick else ''}.")
    print(table)
    print(note)
    for warning in warnings:
        print(f"WARNING: {warning}")
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "label_efficiency.json").write_text(json.dumps(result, indent=1) + "\n")
        text = ["# Label efficiency: full vs raw clicks", "", note, "", table, ""]
        text += [f"**Warning:** {w}" for w in warnings]
        (RESULTS / "label_efficiency.md").write_text("\n".join(text) + "\n")
    print("RESULT " + json.dumps({k: result[k] for k in ("full_miou", "raw_clicks_miou", "profile", "steps",
                                                         "epochs", "wall_s", "quick", "warnings")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
