"""Do `wsseg annotate`'s click suggestions help?  A simulated annotator, 1T1C mIoU after training.

Synthetic indoor rooms (``IndoorConfig()``, S3DIS classes, super-voxels as ``wsseg data supervoxels``), a
budget of ``k`` clicks per training room, three annotators who spend it (every click labelled with the
ground-truth class and instance of the clicked point, as a careful human would):

* ``random``: ``k`` uniformly random labelled points per room;
* ``suggest``: the first ``k/2`` random clicks of ``random``; a 1T1C model trained on them (the same
  schedule); then ``k - k/2`` clicks where the tool suggests (``annotate.suggest.rank_suggestions`` over
  the model's probabilities through ``CheckpointProbabilities``, the path of ``wsseg annotate --model``);
* ``spread`` (ablation, no model): the same first half, then the suggestion rule with every super-voxel
  equally uncertain (size and distance to the clicks only), to tell the model's share from the rule's.

Each label set trains 1T1C (``rel_gp``, OtocConfig's defaults) from scratch with the same schedule; the
val rooms give 1T1C† (Θ alone, what is exported) and full-inference mIoU.  For scale, one click per object
(the paper's 1T1C setting) trains once per seed.  Seeds change the rooms' clicks and the networks' init,
not the rooms.  CPU-sized: ``tiny`` profile, crops of 10,000 points, one torch thread.

Writes ``bench/results/annotate_suggestions.json`` and ``.md``; the last line printed is ``RESULT <json>``.
Not a test: never gates CI.
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
from typing import Any

import numpy as np
import torch
from wsseg_training.annotate.suggest import CheckpointProbabilities, SuggestionWeights, rank_suggestions
from wsseg_training.data.dataset import Dataset
from wsseg_training.labels import Clicks, PointLabels, simulate_clicks
from wsseg_training.labels.simulate import make_header, scene_rng

sys.path.insert(0, str(Path(__file__).resolve().parent))
from otoc import add_supervoxels, recipe, run_otoc, synthetic_dataset

RESULTS = Path(__file__).resolve().parent / "results"
ARMS = ("random", "suggest", "spread")


def random_order(dataset: Dataset, name: str, seed: int) -> np.ndarray:
    """The labelled points of a room in a seeded random order: the random annotator clicks a prefix of it."""
    semantic = dataset.load(name).semantic
    return scene_rng(seed, name).permutation(np.flatnonzero(semantic >= 0))  # type: ignore[operator]


def clicks_of(dataset: Dataset, points: dict[str, np.ndarray], seed: int, arm: str) -> Clicks:
    """A clicks object whose every click carries the ground truth of its point (the careful annotator)."""
    scenes = {}
    for name, chosen in points.items():
        scene = dataset.load(name)
        chosen = np.asarray(chosen, dtype=np.int64)
        scenes[name] = PointLabels(point=chosen, cls=scene.semantic[chosen].astype(np.int64),  # type: ignore[index]
                                   instance=scene.instance[chosen].astype(np.int64))  # type: ignore[index]
    return Clicks(header=make_header(dataset, "clicks", list(points), seed, {"annotator": arm}), scenes=scenes)


class UniformModel:
    """The ``spread`` ablation: every point equally uncertain (uniform probabilities)."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes

    def probabilities(self, scene: Any) -> np.ndarray:
        return np.full((scene.num_points, self.num_classes), 1.0 / self.num_classes, dtype=np.float32)


def suggested(dataset: Dataset, names: list[str], first: dict[str, np.ndarray], model: Any, extra: int,
              weights: SuggestionWeights) -> dict[str, np.ndarray]:
    """``first`` plus ``extra`` suggested clicks per room; a suggestion on an unlabelled point is skipped
    (a human would click the next one)."""
    out = {}
    for name in names:
        scene = dataset.load(name)
        ranked = rank_suggestions(scene.xyz, scene.supervoxel, model.probabilities(scene), first[name],
                                  extra * 3, weights)
        picks = [s.point for s in ranked if scene.semantic[s.point] >= 0][:extra]  # type: ignore[index]
        out[name] = np.concatenate([first[name], np.asarray(picks, dtype=np.int64)])
    return out


def train_and_score(label: str, dataset: Dataset, clicks: Clicks, work: Path, args: argparse.Namespace,
                    seed: int) -> dict[str, Any]:
    method = {"variant": "rel_gp", "iterations": args.rounds, "steps_per_iteration": args.steps}
    config = recipe(args.profile, args.rounds * args.steps, args.crop_points, seed, args.lr, method=method,
                    checkpoint_every=args.steps, keep=2)
    run = run_otoc(label, dataset, clicks, work, config, args.rounds, args.steps, per_round_eval=False)
    last = run["iterations"][-1]
    return {"dagger_miou": last["dagger_miou"], "full_miou": last["full_miou"], "train_s": run["train_s"],
            "clicks": int(sum(len(e) for e in clicks.scenes.values()))}


def one_seed(dataset: Dataset, seed: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    names = dataset.scene_names("train")
    order = {n: random_order(dataset, n, seed) for n in names}
    weights = SuggestionWeights(measure=args.measure, size_exponent=args.size_exponent,
                                distance_scale_m=args.distance_scale_m)
    out: dict[str, Any] = {"seed": seed, "budgets": {}}
    if not args.skip_reference:
        reference = simulate_clicks(dataset, names, seed)
        out["one_click_per_object"] = train_and_score(f"s{seed}_object", dataset, reference, work, args, seed)
        print(f"seed {seed}: one click per object ({out['one_click_per_object']['clicks']} clicks): 1T1C† "
              f"{100 * out['one_click_per_object']['dagger_miou']:.1f}", flush=True)
    for k in args.budgets:
        half = k // 2
        first = {n: order[n][:half] for n in names}
        row: dict[str, Any] = {}
        row["random"] = train_and_score(f"s{seed}_k{k}_random", dataset,
                                        clicks_of(dataset, {n: order[n][:k] for n in names}, seed, "random"),
                                        work, args, seed)
        seed_run = train_and_score(f"s{seed}_k{k}_first", dataset, clicks_of(dataset, first, seed, "first half"),
                                   work, args, seed)
        row["first_half"] = seed_run
        model = CheckpointProbabilities(work / f"s{seed}_k{k}_first" / "model.pt")
        started = time.perf_counter()
        chosen = suggested(dataset, names, first, model, k - half, weights)
        row["suggest_s"] = round(time.perf_counter() - started, 1)
        row["suggest"] = train_and_score(f"s{seed}_k{k}_suggest", dataset,
                                         clicks_of(dataset, chosen, seed, "suggest"), work, args, seed)
        if not args.skip_spread:
            spread = suggested(dataset, names, first, UniformModel(dataset.classes.num_classes), k - half, weights)
            row["spread"] = train_and_score(f"s{seed}_k{k}_spread", dataset,
                                            clicks_of(dataset, spread, seed, "spread"), work, args, seed)
        out["budgets"][str(k)] = row
        print(f"seed {seed} k={k}: " + ", ".join(f"{arm} {100 * row[arm]['dagger_miou']:.1f}/"
                                                 f"{100 * row[arm]['full_miou']:.1f}"
                                                 for arm in ARMS if arm in row) + " (1T1C† / full)", flush=True)
    return out


def summarise(seeds: list[dict[str, Any]], budgets: list[int]) -> dict[str, Any]:
    """Mean over seeds per budget and arm, and the suggest - random difference per seed."""
    summary: dict[str, Any] = {}
    for k in budgets:
        rows = [s["budgets"][str(k)] for s in seeds]
        entry: dict[str, Any] = {}
        for arm in (*ARMS, "first_half"):
            if all(arm in r for r in rows):
                for metric in ("dagger_miou", "full_miou"):
                    entry[f"{arm}_{metric}"] = round(float(np.mean([r[arm][metric] for r in rows])), 4)
        for metric in ("dagger_miou", "full_miou"):
            diffs = [r["suggest"][metric] - r["random"][metric] for r in rows]
            entry[f"gain_{metric}_per_seed"] = [round(d, 4) for d in diffs]
            entry[f"gain_{metric}_mean"] = round(float(np.mean(diffs)), 4)
            entry[f"suggest_wins_{metric}"] = int(sum(d > 0 for d in diffs))
        summary[str(k)] = entry
    return summary


def markdown(result: dict[str, Any]) -> str:
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    s = result["schedule"]
    lines = ["# Click suggestions vs random clicks (`wsseg annotate --model`)", "",
             f"Synthetic indoor rooms ({result['rooms']['train']} train / {result['rooms']['val']} val, "
             f"{result['rooms']['points_per_room']:,} points and ~{result['rooms']['supervoxels_per_room']:.0f} "
             f"super-voxels per room); a budget of k clicks per train room; every run is 1T1C (`rel_gp`, "
             f"OtocConfig defaults) from scratch, `{s['profile']}` profile, {s['rounds']} rounds x {s['steps']} steps, "
             f"crops of {s['crop_points']:,} points; suggestions: measure `{s['measure']}`, size exponent "
             f"{s['size_exponent']}, distance scale {s['distance_scale_m']} m; seeds {result['seeds']}.", "",
             f"Machine: {result['machine']['device']}, {result['machine']['cores']} cores **shared with other "
             f"helpers' jobs** (load average 1/5/15 min {result['machine']['loadavg_start']} at the start, "
             f"{result['machine']['loadavg_end']} at the end), torch {result['machine']['torch']} with "
             f"{result['machine']['torch_threads']} thread; wall {result['wall_s'] / 60:.1f} min (an upper bound).",
             "", "Val mIoU %, mean over seeds, 1T1C† (Θ alone, exported) / full inference:", "",
             "| k clicks / room | random | suggest (model) | spread (no model) | first k/2 only | suggest - random "
             "(†, per seed) | suggest wins (†) |", "|---:|---:|---:|---:|---:|---|---:|"]

    def cell(e: dict[str, Any], arm: str) -> str:
        return f"{pct(e[f'{arm}_dagger_miou'])} / {pct(e[f'{arm}_full_miou'])}" if f"{arm}_dagger_miou" in e else "–"

    for k, e in result["summary"].items():
        gains = ", ".join(f"{100 * g:+.1f}" for g in e["gain_dagger_miou_per_seed"])
        lines.append(f"| {k} | {cell(e, 'random')} | {cell(e, 'suggest')} | {cell(e, 'spread')} | "
                     f"{cell(e, 'first_half')} | "
                     f"{gains} | {e['suggest_wins_dagger_miou']}/{len(result['seeds'])} |")
    reference = [s["one_click_per_object"] for s in result["per_seed"] if "one_click_per_object" in s]
    if reference:
        per_room = np.mean([r["clicks"] for r in reference]) / result["rooms"]["train"]
        dagger = pct(np.mean([r["dagger_miou"] for r in reference]))
        full = pct(np.mean([r["full_miou"] for r in reference]))
        lines += ["", f"For scale, one click per object ({per_room:.0f} clicks / room on average): 1T1C† {dagger} / "
                      f"full {full} (mean of seeds)."]
    if result.get("notes"):
        lines += ["", "## Notes", "", result["notes"].strip()]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=15, help="synthetic rooms (every fifth is val)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[10], help="clicks per train room")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40, help="steps per 1T1C round")
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--crop-points", type=int, default=10_000)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--measure", choices=("entropy", "margin"), default="entropy")
    parser.add_argument("--size-exponent", type=float, default=SuggestionWeights().size_exponent)
    parser.add_argument("--distance-scale-m", type=float, default=SuggestionWeights().distance_scale_m)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared 2-core machine)")
    parser.add_argument("--skip-spread", action="store_true", help="no model-free ablation arm")
    parser.add_argument("--skip-reference", action="store_true", help="no one-click-per-object run")
    parser.add_argument("--data", type=Path, default=None, help="a prepared `wsseg data synth --kind indoor` dataset")
    parser.add_argument("--work", type=Path, default=None, help="data and runs (default: a temp dir)")
    parser.add_argument("--notes", type=Path, default=None, help="text appended to the results as '## Notes'")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="wsseg_annotate_bench_"))
    started, load_start = time.perf_counter(), os.getloadavg()
    args.seed = args.seeds[0]
    dataset = synthetic_dataset(argparse.Namespace(data=args.data, scenes=args.scenes, seed=0), work)
    sv = add_supervoxels(dataset)
    rooms = {s: len(dataset.scene_names(s)) for s in ("train", "val")}
    points = int(np.mean([dataset.load(n).num_points for n in dataset.scene_names()]))
    per_seed = [one_seed(dataset, seed, args, work) for seed in args.seeds]
    result: dict[str, Any] = {
        "rooms": {**rooms, "points_per_room": points, "supervoxels_per_room": sv["mean_per_scene"]},
        "seeds": args.seeds, "budgets": args.budgets, "per_seed": per_seed,
        "summary": summarise(per_seed, args.budgets),
        "schedule": {"profile": args.profile, "rounds": args.rounds, "steps": args.steps,
                     "crop_points": args.crop_points, "lr": args.lr, "measure": args.measure,
                     "size_exponent": args.size_exponent, "distance_scale_m": args.distance_scale_m},
        "wall_s": round(time.perf_counter() - started, 1),
        "machine": {"device": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                    "loadavg_start": " / ".join(f"{v:.2f}" for v in load_start),
                    "loadavg_end": " / ".join(f"{v:.2f}" for v in os.getloadavg())},
        "notes": args.notes.read_text() if args.notes else None,
    }
    table = markdown(result)
    print(table)
    if not args.no_write:
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / "annotate_suggestions.json").write_text(json.dumps(result, indent=1) + "\n")
        (args.results / "annotate_suggestions.md").write_text(table)
    print("RESULT " + json.dumps({"summary": result["summary"], "wall_s": result["wall_s"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
