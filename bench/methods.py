"""Label efficiency of every method: each method on each benchmark dataset, with the weak labels its paper uses at
its paper's budget, beside ``full`` (dense labels, same backbone, same schedule length) and the paper's own ratio.

    bench/methods.py [--methods full,otoc] [--datasets indoor,outdoor,mosd,semantickitti] [--quick]
                     [--seeds 0,1,2] [--device cpu|cuda] [--threads 1] [--work DIR] [--no-write]
    bench/methods.py ablation NAME [ARGS...]      # a method's ablation table, e.g. `ablation otoc --quick`
    bench/methods.py --merge A/methods.json B/methods.json   # one table from runs split by dataset
    bench/methods.py --quick --jobs 2                    # runs side by side on an idle 2-core machine

What runs is declared in ``bench/method_entries.py`` (one entry per method: weak-label kind + budget, config
recipe, paper ratio, headline inference mode, ablation script); datasets and the runner are ``bench/harness.py``.
For every dataset and seed: the weak labels are simulated from the ground truth of the train split with that
seed, ``full`` and each method train for the same number of steps (``tiny`` profile, crops of 10,000 points,
batches of 2), and the val split is scored (mIoU over all val points).  Default schedule: 15 scenes, 5 x 400
steps; ``--quick``: 10 scenes (real datasets: all their frames), 5 x 30 steps -- a smoke-sized schedule that
shows every part works on every dataset (30.6 min with ``--jobs 2`` on an idle 2-core VM), not the accuracy of a real
run.

Writes ``bench/results/methods.json`` (``rows``: one per (method, dataset, weak-label setting) with ``method``,
``dataset``, ``labels`` (kind:budget), ``labelled_points_pct`` (a percentage, 0-100) and
``labelled_points_fraction``, ``miou``, ``miou_std``, ``full_miou``, ``ratio`` (= miou / full_miou),
``paper_ratio``, ``seeds``, ``train_s``, per-seed values; mIoU values are fractions in [0, 1]) and
``bench/results/methods.md``; the last line printed is ``RESULT <json>``.  Not a test: never gates CI.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import runpy
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from harness import DATASETS, BenchDataset, add_supervoxels, machine, miou_of, recipe, write_results
from method_entries import ENTRIES, FULL, MethodEntry, Schedule, entries, entry
from wsseg_training.data.dataset import Dataset
from wsseg_training.engine.config import config_from_dict
from wsseg_training.engine.loop import Trainer
from wsseg_training.evaluation.evaluate import TorchPredictor
from wsseg_training.labels import compute_stats
from wsseg_training.methods import get_method

RESULTS = Path(__file__).resolve().parent / "results"
BENCH = Path(__file__).resolve().parent


def dense_fraction(dataset: Dataset) -> float:
    """Labelled share of the train points under dense labels (ground truth != ignore)."""
    labelled = total = 0
    for name in dataset.scene_names("train"):
        scene = dataset.load(name)
        labelled += int((scene.semantic >= 0).sum()) if scene.semantic is not None else 0
        total += scene.num_points
    return labelled / max(1, total)


def run_entry(method: MethodEntry, bench: BenchDataset, dataset: Dataset, schedule: Schedule, seed: int,
              work: Path, device: str) -> dict[str, Any]:
    """Train ``method`` with its weak labels (seed ``seed``) and score the val split: {miou, backbone_miou,
    labelled_points_fraction, train_s}."""
    weak = None
    if method.labels.simulate is not None:
        weak = method.labels.simulate(dataset, dataset.scene_names("train"), seed)
        fraction = compute_stats(weak, dataset).labelled_percent / 100.0
    else:
        fraction = dense_fraction(dataset)
    every = schedule.steps_per_round if method.checkpoint_rounds else 0
    config = recipe(schedule.profile, schedule.steps, schedule.crop_points, seed, schedule.lr,
                    method=method.options(schedule), checkpoint_every=every, keep=1 if every else 0,
                    features=list(bench.features), device=device)
    method_class = get_method(method.name)
    run = work / method.id
    started = time.perf_counter()
    Trainer(config_from_dict(config), method_class(dataset.classes, config["method"], weak), dataset, run,
            progress=False, provenance={"labels": method.labels.label}).run()
    train_s = time.perf_counter() - started
    torch_device = torch.device("cuda" if device == "cuda" else "cpu")
    backbone = miou_of(TorchPredictor.from_checkpoint(run / "model.pt", torch_device), dataset)
    miou = backbone
    if method.headline:
        predictor = method_class.offline_predictors(run / "checkpoints" / "last.pt", torch_device)[method.headline]
        miou = miou_of(predictor, dataset)
    return {"miou": miou, "backbone_miou": backbone, "labelled_points_fraction": fraction,
            "train_s": round(train_s, 1)}


def run_task(method_id: str, name: str, root: Path, schedule: Schedule, seed: int, work: Path, device: str,
             threads: int) -> dict[str, Any]:
    """One (method, seed) run on the dataset at ``root``, in this or a worker process; failures become
    ``{"error": ...}`` so one method's crash does not stop the table."""
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        result = run_entry(entry(method_id), DATASETS[name], Dataset(root), schedule, seed, work, device)
    except Exception as exc:
        result = {"error": f"{type(exc).__name__}: {exc}"}
    return {**result, "seed": seed}


def run_tasks(tasks: list[tuple], jobs: int) -> Iterator[dict[str, Any]]:
    """``run_task`` over ``tasks``, results in task order, with ``jobs`` worker processes (spawned: no forked
    torch state); ``jobs`` 1 runs them here, one after the other."""
    if jobs <= 1:
        yield from (run_task(*task) for task in tasks)
        return
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_task, *task) for task in tasks]
        yield from (future.result() for future in futures)


def aggregate(method: MethodEntry, dataset: str, runs: list[dict], full: list[dict]) -> dict[str, Any]:
    """One table row from the per-seed runs of a method and of ``full``."""
    good = [r for r in runs if "error" not in r]
    full_good = [r for r in full if "error" not in r]
    mean = lambda key, rows: float(np.mean([r[key] for r in rows])) if rows else None  # noqa: E731
    std = lambda key, rows: float(np.std([r[key] for r in rows])) if len(rows) > 1 else 0.0  # noqa: E731
    miou, full_miou = mean("miou", good), mean("miou", full_good)
    fraction = mean("labelled_points_fraction", good)
    row: dict[str, Any] = {
        "method": method.name, "dataset": dataset, "labels": method.labels.label,
        "labelled_points_pct": None if fraction is None else round(100 * fraction, 5),
        "labelled_points_fraction": None if fraction is None else round(fraction, 7),
        "miou": None if miou is None else round(miou, 4), "miou_std": round(std("miou", good), 4),
        "backbone_miou": None if not good else round(mean("backbone_miou", good), 4),  # type: ignore[arg-type]
        "full_miou": None if full_miou is None else round(full_miou, 4),
        "ratio": None if miou is None or not full_miou else round(miou / full_miou, 3),
        "paper_ratio": method.paper_ratio, "paper_source": method.paper_source,
        "headline": "exported backbone" if not method.headline else f"offline inference {method.headline}",
        "seeds": [r["seed"] for r in good], "train_s": None if not good else round(mean("train_s", good), 1),
        "per_seed": [{k: r.get(k) for k in ("seed", "miou", "backbone_miou", "train_s", "error")} for r in runs],
    }
    errors = [r["error"] for r in runs if "error" in r]
    if errors:
        row["error"] = errors[0]
    return row


def run_dataset(name: str, methods: list[MethodEntry], args: argparse.Namespace, work: Path) -> tuple[list, dict]:
    """Every method (and the ``full`` reference) on dataset ``name`` for every seed: (rows, dataset summary)."""
    bench = DATASETS[name]
    schedule = args.schedule
    dataset = bench.make(work / name / "data", schedule.scenes, args.seeds[0])
    summary: dict[str, Any] = {"describe": bench.describe, "train": len(dataset.scene_names("train")),
                               "val": len(dataset.scene_names("val")), "classes": dataset.classes.num_classes}
    if any(m.needs_supervoxels for m in methods):
        summary["supervoxels"] = add_supervoxels(dataset)
    print(f"{name}: {summary['train']} train / {summary['val']} val scenes ({bench.describe})", flush=True)
    per_method: dict[str, list[dict]] = {m.id: [] for m in [FULL, *methods]}
    tasks = [(method.id, name, dataset.root, schedule, seed, work / name / f"seed{seed}", args.device, args.threads)
             for seed in args.seeds for method in [FULL, *[m for m in methods if m.name != FULL.name]]
             if method.datasets is None or name in method.datasets]
    for task, result in zip(tasks, run_tasks(tasks, getattr(args, "jobs", 1)), strict=True):
        per_method[task[0]].append(result)
        shown = "FAILED " + result["error"] if "error" in result else f"mIoU {100 * result['miou']:.1f}"
        print(f"  {task[0]} seed {task[4]}: {shown}", flush=True)
    rows = [aggregate(m, name, per_method[m.id], per_method[FULL.id]) for m in methods if per_method[m.id]]
    return rows, summary


def markdown(result: dict[str, Any]) -> str:
    pct = lambda v: "–" if v is None else f"{100 * v:.1f}"  # noqa: E731
    lines = [f"# Label efficiency of every method{' (--quick)' if result['quick'] else ''}", "", result["note"], "",
             "| method | dataset | labels | labelled points % | mIoU % | full % | ratio | paper ratio | seeds "
             "| train s |",
             "|---|---|---|---:|---:|---:|---:|---:|---|---:|"]
    for r in result["rows"]:
        miou = "failed" if r["miou"] is None else pct(r["miou"]) + (f" ± {100 * r['miou_std']:.1f}"
                                                                      if len(r["seeds"]) > 1 else "")
        paper = "–" if r["paper_ratio"] is None else f"{r['paper_ratio']:.3f}"
        ratio = "–" if r["ratio"] is None else f"{r['ratio']:.3f}"
        share = "–" if r["labelled_points_pct"] is None else f"{r['labelled_points_pct']:.4g}"
        lines.append(f"| {r['method']} | {r['dataset']} | `{r['labels']}` | {share} | {miou} | {pct(r['full_miou'])} "
                     f"| {ratio} | {paper} | {','.join(map(str, r['seeds'])) or '–'} | {r['train_s'] or '–'} |")
    lines += ["", "mIoU is the method's headline inference mode (1T1C: Θ + relation net + graph propagation over "
              "super-voxels; its exported backbone alone, 1T1C†, is `backbone_miou` in the JSON). Paper ratios:"]
    sources = (f"- {r['method']}: {r['paper_source']}" for r in result["rows"] if r["method"] != "full")
    lines += list(dict.fromkeys(sources))
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"- **{r['method']} on {r['dataset']} failed**: {r['error']}")
    for name, reason in result["skipped"].items():
        lines.append(f"- dataset `{name}` skipped: {reason}")
    if result.get("notes"):
        lines += ["", "## Notes", "", result["notes"].strip()]
    return "\n".join(lines) + "\n"


def merge(parts: list[Path]) -> dict[str, Any]:
    """One result from ``methods.json`` files of runs split by dataset (same schedule and seeds, no dataset twice).

    Rows, dataset summaries and skips are joined in the order given; ``note`` keeps every part's own note (its
    command, load and wall) and ``wall_s`` is the parts' sum (their wall when run one after the other).
    """
    saved = [(path, json.loads(path.read_text())) for path in parts]
    first_path, first = saved[0]
    merged: dict[str, Any] = {**first, "rows": [], "datasets": {}, "skipped": {}, "wall_s": 0.0, "parts": []}
    for path, part in saved:
        for key in ("schedule", "seeds", "quick"):
            if part[key] != first[key]:
                raise SystemExit(f"bench/methods.py --merge: {path} has {key} {part[key]!r}, {first_path} has "
                                 f"{first[key]!r}; merge only runs of one schedule")
        twice = sorted(set(part["datasets"]) & set(merged["datasets"]))
        if twice:
            raise SystemExit(f"bench/methods.py --merge: dataset(s) {twice} of {path} are already in an earlier part")
        merged["rows"] += part["rows"]
        merged["datasets"].update(part["datasets"])
        merged["skipped"].update(part["skipped"])
        merged["wall_s"] = round(merged["wall_s"] + part["wall_s"], 1)
        merged["parts"].append({"datasets": list(part["datasets"]), "note": part["note"], "wall_s": part["wall_s"],
                                "machine": part["machine"]})
    for name in merged["datasets"]:
        merged["skipped"].pop(name, None)
    merged["note"] = "Merged from runs split by dataset (one after the other or side by side):\n\n" + "\n".join(
        f"- {', '.join(p['datasets'])}: {p['note']}" for p in merged["parts"])
    return merged


def ablation(argv: list[str]) -> int:
    """``ablation NAME [ARGS...]``: run the method's ablation script (e.g. bench/otoc.py) with ARGS."""
    if not argv or argv[0] in ("-h", "--help"):
        scripts = {e.name: e.ablation for e in ENTRIES if e.ablation}
        print(f"usage: bench/methods.py ablation NAME [ARGS...]; NAME in {scripts}")
        return 0 if argv else 2
    script = entry(argv[0]).ablation
    if script is None:
        raise SystemExit(f"bench/methods.py: method {argv[0]!r} has no ablation table yet")
    sys.argv = [str(BENCH / script), *argv[1:]]
    runpy.run_path(str(BENCH / script), run_name="__main__")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ablation"]:
        return ablation(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join(dict.fromkeys(e.name for e in ENTRIES)),
                        help="comma-separated entries (a method name selects all its budgets: dsp = dsp-1%%,dsp-10%%)")
    parser.add_argument("--datasets", default=",".join(DATASETS), help=f"comma-separated, of {list(DATASETS)}")
    parser.add_argument("--quick", action="store_true", help="10 scenes, 5 x 30 steps (smoke-sized)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (mean ± std over them)")
    parser.add_argument("--steps", type=int, default=None, help="total steps per run (default 2000, quick 150)")
    parser.add_argument("--scenes", type=int, default=None, help="synthetic scenes (default 15, quick 10)")
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 on a shared CPU)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs side by side in worker processes (each with --threads threads); 2 on an idle "
                             "2-core machine halves the wall time")
    parser.add_argument("--work", type=Path, default=None, help="data and runs (default: a temporary folder)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--notes", type=Path, default=None, help="text file appended to the results as '## Notes'")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, metavar="METHODS_JSON",
                        help="run nothing: join the methods.json of runs split by dataset into --results")
    parser.add_argument("--rerender", action="store_true",
                        help="run nothing: re-write methods.md from methods.json (with --notes, if given)")
    args = parser.parse_args(argv)
    if args.merge:
        merged = merge(args.merge)
        merged["notes"] = args.notes.read_text() if args.notes else merged.get("notes", "")
        write_results(args.results, "methods", merged, markdown(merged))
        return 0
    if args.rerender:
        saved = json.loads((args.results / "methods.json").read_text())
        if args.notes:
            saved["notes"] = args.notes.read_text()
        write_results(args.results, "methods", saved, markdown(saved))
        return 0
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    methods = list(dict.fromkeys(e for n in args.methods.split(",") if n for e in entries(n)))
    names = [n for n in args.datasets.split(",") if n]
    unknown = sorted(set(names) - set(DATASETS))
    if unknown:
        raise SystemExit(f"bench/methods.py: unknown dataset(s) {unknown}; known: {list(DATASETS)}")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.schedule = Schedule(steps=args.steps or (150 if args.quick else 2000), rounds=5, profile=args.profile,
                             crop_points=10_000, lr=0.01, scenes=args.scenes or (10 if args.quick else 15))
    work = args.work or Path(tempfile.mkdtemp(prefix="wsseg_methods_"))
    started, load_start = time.perf_counter(), os.getloadavg()
    rows, datasets, skipped = [], {}, {}
    for name in names:
        reason = DATASETS[name].missing()
        if reason:
            skipped[name] = reason
            continue
        dataset_rows, datasets[name] = run_dataset(name, methods, args, work)
        rows += dataset_rows
    s = args.schedule
    result: dict[str, Any] = {
        "rows": rows, "datasets": datasets, "skipped": skipped, "quick": args.quick, "seeds": args.seeds,
        "schedule": {"steps": s.steps, "rounds": s.rounds, "profile": s.profile, "crop_points": s.crop_points,
                     "batch_scenes": 2, "lr": s.lr, "synthetic_scenes": s.scenes, "device": args.device},
        "wall_s": round(time.perf_counter() - started, 1), "machine": machine(load_start),
    }
    m = result["machine"]
    result["note"] = (
        f"`{s.profile}` profile, crops of {s.crop_points:,} points, batches of 2, {s.steps} steps per run (methods "
        f"with rounds: {s.rounds} x {s.steps_per_round}), lr {s.lr}, seeds {args.seeds}; synthetic datasets "
        f"{s.scenes} scenes.  Machine: {m['device']}, {m['cores']} cores shared with other jobs (load average "
        f"{' / '.join(map(str, m['loadavg_1_5_15_start']))} at the start, "
        f"{' / '.join(map(str, m['loadavg_1_5_15_end']))} at the end: times are upper bounds), torch {m['torch']} "
        f"with {m['torch_threads']} thread(s); wall {result['wall_s'] / 60:.1f} min.  Command: `bench/methods.py "
        f"{' '.join(argv)}`.")
    result["notes"] = args.notes.read_text() if args.notes else ""
    table = markdown(result)
    print(table)
    if not args.no_write:
        write_results(args.results, "methods", result, table)
    summary = [{k: r[k] for k in ("method", "dataset", "labels", "labelled_points_pct", "miou", "full_miou", "ratio",
                                  "paper_ratio", "seeds", "train_s")} for r in rows]
    print("RESULT " + json.dumps({"rows": summary, "skipped": skipped, "wall_s": result["wall_s"],
                                  "quick": args.quick}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
