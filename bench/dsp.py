"""DSP's ablation (the paper's Tab. 1-3 on our data) and its memory record (``bench/methods.py ablation dsp [ARGS]``).

On synthetic indoor rooms (``IndoorConfig()``, S3DIS classes; or ``--dataset`` of ``harness.DATASETS``), sparse point
labels simulated from the train split's ground truth with each seed: ``--budgets`` shares (default 1 % and 10 %) of
the 0.1 m voxel-subsampled points of every class (at least one per class present), every run the same length
(``--steps`` optimiser steps, batches of 2 = one CSFR pair, crops of ``--crop-points``), scored on the val rooms
(mIoU over all val points, the exported network = the basic branch):

* ``ablation``: per budget and seed the variants of :data:`VARIANTS` (baseline; CSFR only; ISFR only; one-stage
  CSFR+ISFR; ISFR->CSFR; CSFR->ISFR = DSP; CSFR + L_seg_c; ISFR without L_seg_s), per seed ``full`` (dense labels) and
  "fully supervised DSP" (DSP on dense labels); for the two-stage runs also the three branches (Tab. 3: basic, intra =
  ISFR features, cross = CSFR features from the training scene sharing most predicted classes).  Mean +- std over
  the seeds; the orderings of METHOD_NOTES §2.9 checked on the means and whether each difference exceeds the seed
  spread.
* ``memory``: voxels at the attach level (N_i, N_j) of the training crops of every benchmark dataset, the affinity's
  size, and the peak RSS of training steps (a fresh process per variant) with and without exact chunking.

Every run's result is cached in ``WORK`` (``result.json`` beside the run), so an interrupted benchmark continues
where it stopped.  Writes ``bench/results/dsp.{json,md}``; last line ``RESULT <json>``.  Not a test: never gates CI.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from dsp_memory import memory, probe
from dsp_variants import LABELS, PAPER, PAPER_BRANCHES, TRIES, TRY_LABELS, TWO_STAGE, VARIANTS
from harness import DATASETS, machine, miou_of, recipe, write_results
from wsseg_training.data.dataset import Dataset
from wsseg_training.engine.config import config_from_dict
from wsseg_training.engine.loop import Trainer
from wsseg_training.evaluation.evaluate import TorchPredictor
from wsseg_training.labels import (
    SparsePoints,
    compute_stats,
    load_weak_labels,
    save_weak_labels,
    simulate_sparse_points,
)
from wsseg_training.methods import DspMethod, FullMethod
from wsseg_training.methods.dsp.branches import DspBranchPredictor, Partner
from wsseg_training.model.profiles import get_profile

RESULTS = Path(__file__).resolve().parent / "results"
PARTS = ("ablation", "memory")
#: training steps of each peak-memory probe
PROBE_STEPS = 3
#: the grid whose points the labels are drawn from: the bench's network input (the ``tiny`` profile's voxels)
LABEL_VOXEL_M = get_profile("tiny").voxel_size_m


# ------------------------------------------------------------------------------------------------ runs


def label_tag(label_voxel_m: float) -> str:
    """Suffix of the label files and run folders for a label grid other than the network's (empty for it)."""
    return "" if label_voxel_m == LABEL_VOXEL_M else f"_labelgrid{label_voxel_m:g}"


def weak_labels(dataset: Dataset, work: Path, fraction: float, seed: int,
                label_voxel_m: float = LABEL_VOXEL_M) -> SparsePoints:
    """The sparse labels of (budget, seed) on the ``label_voxel_m`` grid, simulated once and kept in ``work``."""
    path = work / f"sparse_{fraction:g}_seed{seed}{label_tag(label_voxel_m)}.npz"
    if not path.is_file():
        save_weak_labels(simulate_sparse_points(dataset, dataset.scene_names("train"), seed, fraction,
                                                voxel_size_m=label_voxel_m), path)
    return load_weak_labels(path, dataset)  # type: ignore[return-value]


def partners(dataset: Dataset, weak: SparsePoints | None) -> list[Partner]:
    """The training scenes with their labelled classes (the cross branch's partners at test time)."""
    out = []
    for name in dataset.scene_names("train"):
        scene = dataset.load(name)
        labels = scene.semantic if weak is None else weak.point_labels(name, scene.num_points)
        out.append(Partner(scene, frozenset(np.unique(labels[labels >= 0]).tolist())))  # type: ignore[index]
    return out


def run_one(dataset: Dataset, bench: Any, weak: SparsePoints | None, run: Path, variant: str, seed: int,
            args: argparse.Namespace) -> dict[str, Any] | None:
    """Train one variant (``full``: FullMethod on dense labels) and score it; cached in ``run/result.json``
    (``--cached-only``: None when it is not)."""
    cached = run / "result.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    if args.cached_only:
        return None
    options = {} if variant == "full" else {**VARIANTS, **TRIES}.get(variant, VARIANTS["dsp"])
    config = recipe(args.profile, args.steps, args.crop_points, seed, args.lr, method=options,
                    features=list(bench.features), device=args.device)
    method = (FullMethod(dataset.classes) if variant == "full" else
              DspMethod(dataset.classes, config["method"], weak))
    if run.exists():  # an interrupted run: start it again
        import shutil

        shutil.rmtree(run)
    started = time.perf_counter()
    Trainer(config_from_dict(config), method, dataset, run, progress=False,
            provenance={"labels": "dense" if weak is None else "sparse_points"}).run()
    result: dict[str, Any] = {"miou": miou_of(TorchPredictor.from_checkpoint(run / "model.pt"), dataset),
                              "train_s": round(time.perf_counter() - started, 1),
                              "loadavg": [round(v, 1) for v in os.getloadavg()]}
    if variant in TWO_STAGE:
        last = run / "checkpoints" / "last.pt"
        scenes = partners(dataset, weak)
        for branch in ("intra", "cross"):
            predictor = DspBranchPredictor.from_checkpoint(last, branch, partners=scenes)
            result[f"{branch}_miou"] = miou_of(predictor, dataset)
        result["basic_miou"] = result["miou"]
    cached.write_text(json.dumps(result))
    print(f"  {run.relative_to(run.parents[2])}: {json.dumps(result)}", flush=True)
    return result


def ablation(dataset: Dataset, bench: Any, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """{"runs": {budget: {variant: [per seed]}}, "dense": {variant: [per seed]}, "labelled_pct": {budget: [...]}}."""
    out: dict[str, Any] = {"runs": {}, "dense": {v: [] for v in args.dense}, "labelled_pct": {}}
    for seed in args.seeds:
        for fraction in args.budgets:
            weak = weak_labels(dataset, work, fraction, seed, args.label_voxel)
            stats = compute_stats(weak, dataset)
            out["labelled_pct"].setdefault(str(fraction), []).append(round(stats.labelled_percent, 4))
            per = out["runs"].setdefault(str(fraction), {})
            for variant in args.variants:
                budget_dir = f"{fraction:g}{label_tag(args.label_voxel)}"
                result = run_one(dataset, bench, weak, work / f"seed{seed}" / budget_dir / variant, variant, seed, args)
                if result is not None:
                    per.setdefault(variant, []).append({"seed": seed, **result})
        for variant in args.dense:
            result = run_one(dataset, bench, None, work / f"seed{seed}" / "dense" / variant, variant, seed, args)
            if result is not None:
                out["dense"][variant].append({"seed": seed, **result})
    return out


# ------------------------------------------------------------------------------------------------ analysis


def summary(rows: list[dict[str, Any]], key: str = "miou") -> dict[str, Any]:
    values = [r[key] for r in rows if key in r]
    return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4),
            "values": [round(v, 4) for v in values]}


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """a > b?  holds on the means; beyond_spread: the gap exceeds the larger of the two seed stds (None with fewer
    than two seeds)."""
    gap = a["mean"] - b["mean"]
    spread = None if min(len(a["values"]), len(b["values"])) < 2 else bool(abs(gap) > max(a["std"], b["std"]))
    return {"holds": bool(gap > 0), "gap": round(gap, 4), "beyond_spread": spread}


def orderings(table: dict[str, dict[str, Any]], branches: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The DSP orderings (METHOD_NOTES §2.9) at one budget: each 'x > y' with its gap and whether it is beyond the
    seed spread."""
    pairs = [("csfr", "baseline"), ("isfr", "baseline"), ("baseline", "joint"), ("isfr_csfr", "baseline"),
             ("dsp", "isfr_csfr"), ("csfr", "baseline"), ("baseline", "csfr_lseg_c"), ("isfr", "isfr_no_lseg_s"),
             ("isfr_no_lseg_s", "baseline")]
    checks = {f"{a} > {b}": compare(table[a], table[b]) for a, b in pairs if a in table and b in table}
    for variant in TWO_STAGE:
        b = branches.get(variant)
        if b:
            checks[f"{variant}: basic > intra"] = compare(b["basic"], b["intra"])
            checks[f"{variant}: intra > cross"] = compare(b["intra"], b["cross"])
    if all(v in branches for v in TWO_STAGE):
        for name in ("basic", "intra", "cross"):
            checks[f"{name} branch: dsp > isfr_csfr"] = compare(branches["dsp"][name], branches["isfr_csfr"][name])
    return checks


def analyse(raw: dict[str, Any]) -> dict[str, Any]:
    dense = {v: summary(rows) for v, rows in raw["dense"].items() if rows}
    budgets: dict[str, Any] = {}
    for fraction, per in raw["runs"].items():
        table = {v: summary(rows) for v, rows in per.items()}
        branches = {v: {b: summary(per[v], f"{b}_miou") for b in ("basic", "intra", "cross")} for v in TWO_STAGE
                    if v in per}
        entry: dict[str, Any] = {"table": table, "branches": branches, "orderings": orderings(table, branches),
                                 "labelled_pct": raw["labelled_pct"].get(fraction)}
        if "dsp" in table and "baseline" in table:
            base = {r["seed"]: r["miou"] for r in per["baseline"]}
            gains = [d["miou"] - base[d["seed"]] for d in per["dsp"] if d["seed"] in base]
            entry["gain"] = {"mean": round(float(np.mean(gains)), 4), "std": round(float(np.std(gains)), 4),
                             "per_seed": [round(g, 4) for g in gains]}
        if "dsp" in table and "full" in dense:
            ratio = table["dsp"]["mean"] / dense["full"]["mean"]
            entry["goal"] = {"ratio_to_full": round(ratio, 4), "at_least_97pct": bool(ratio >= 0.97),
                             "above_baseline_beyond_std": compare(table["dsp"], table["baseline"])["beyond_spread"]
                             and table["dsp"]["mean"] > table["baseline"]["mean"]}
        budgets[fraction] = entry
    keys = sorted(budgets, key=float)
    across = {}
    if len(keys) >= 2 and all("gain" in budgets[k] for k in keys):
        low, high = budgets[keys[0]]["gain"], budgets[keys[-1]]["gain"]
        across[f"gain at {float(keys[0]):.0%} > gain at {float(keys[-1]):.0%}"] = compare(
            {**low, "values": low["per_seed"]}, {**high, "values": high["per_seed"]})
    return {"dense": dense, "budgets": budgets, "across_budgets": across}


def method_rows(raw: dict[str, Any], name: str, dataset: Dataset) -> list[dict[str, Any]]:
    """The DSP rows of ``bench/methods.py``'s label-efficiency table (its ``aggregate``, its entries ``dsp-1%`` /
    ``dsp-10%`` and ``full``) from this ablation's ``dsp`` and ``full`` runs: the same recipe, labels, dataset and
    seeds as ``bench/methods.py --methods dsp --datasets NAME --steps STEPS --scenes SCENES`` would train."""
    from method_entries import FULL, entries
    from methods import aggregate, dense_fraction

    dense = dense_fraction(dataset)
    full = [{**r, "backbone_miou": r["miou"], "labelled_points_fraction": dense} for r in raw["dense"].get("full", [])]
    rows = [aggregate(FULL, name, full, full)] if full else []
    for entry in entries("dsp"):
        fraction = next((f for f in raw["runs"] if f"{float(f):.0%}" == entry.labels.budget), None)
        runs = raw["runs"].get(fraction, {}).get("dsp", []) if fraction is not None else []
        if not runs:
            continue
        shares = raw["labelled_pct"][fraction]
        rows.append(aggregate(entry, name, [{**r, "backbone_miou": r["miou"], "labelled_points_fraction":
                                                shares[i] / 100.0} for i, r in enumerate(runs)], full))
    return rows


# ------------------------------------------------------------------------------------------------ report


def yes_no(value: bool | None) -> str:
    return "n/a (1 seed)" if value is None else "yes" if value else "no"


def unchanged(sensitivity: dict[str, dict[str, Any]], budget: str, variant: str) -> str:
    """'L-2: 99.1 %; L-1: 95.0 %': the mean share of unchanged val labels of ``variant``'s runs per level measured
    (``sensitivity``: ``bench/dsp_sensitivity.py``'s rows by run folder, each with its level and ``levels``)."""
    by_level: dict[int, list[float]] = {}
    for run, row in sensitivity.items():
        if run.split("@")[0].split("/")[1:] == [budget, variant]:
            by_level.setdefault(row.get("from_bottom", -2), []).append(row["unchanged"]["mean"])
    return "; ".join(f"L{k}: {100 * np.mean(v):.1f} % (n={len(v)})" for k, v in sorted(by_level.items(),
                                                                                      reverse=True)) or "–"


def markdown(result: dict[str, Any]) -> str:
    pct = lambda s: f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"  # noqa: E731
    lines = ["# DSP ablation (Tab. 1-3) and memory", "", result["note"], ""]
    analysis = result.get("analysis")
    if analysis:
        budgets = sorted(analysis["budgets"], key=float)
        head = " | ".join(f"{float(b):.0%} labels" for b in budgets)
        paper = " | ".join(f"paper {float(b):.0%}" for b in budgets)
        lines += ["## Variants (val mIoU %, mean ± std over seeds)", "", f"| variant | {head} | {paper} |",
                  "|---|" + "---:|" * (2 * len(budgets))]
        column = {0.1: 0, 0.01: 1}
        for variant in [*VARIANTS, "full", "dsp_full"]:
            cells = []
            for b in budgets:
                s = analysis["budgets"][b]["table"].get(variant) or analysis["dense"].get(variant)
                cells.append(pct(s) if s else "–")
            refs = [f"{PAPER[variant][column.get(float(b), 0)]:.1f}" for b in budgets]
            lines.append(f"| {LABELS[variant]} | {' | '.join(cells)} | {' | '.join(refs)} |")
        shares = "; ".join(f"{float(b):.0%}: {np.mean(analysis['budgets'][b]['labelled_pct']):.3g} % of the raw train "
                           "points" for b in budgets if analysis["budgets"][b]["labelled_pct"])
        tries = [(v, b) for v in TRIES for b in budgets if v in analysis["budgets"][b]["table"]]
        if tries:
            sens = result.get("sensitivity", {})
            lines += ["", "## Follow-up tries: DSP with one option changed (val mIoU %, mean ± std over seeds)", "",
                      "Same schedule, labels and seeds as the table above; 'beyond spread' = the gap to the baseline "
                      "exceeds the larger seed std; 'unchanged' = the share of val labels that stay the same when "
                      "the decoder level's features are replaced by their scene mean (`bench/dsp_sensitivity.py`, "
                      "mean over the seeds; L-1 = the bottleneck).", "",
                      "| try | labels | mIoU % | minus baseline (mIoU points) | beyond spread | ratio to full | "
                      "unchanged |", "|---|---|---:|---:|---|---:|---|"]
            refs = [(v, b) for b in sorted({b for _, b in tries}, key=float) for v in ("baseline", "dsp")]
            for variant, b in [*refs, *tries]:
                table = analysis["budgets"][b]["table"]
                if variant not in table:
                    continue
                full = analysis["dense"].get("full")
                check = compare(table[variant], table["baseline"]) if "baseline" in table else None
                ratio = f"{table[variant]['mean'] / full['mean']:.3f}" if full else "–"
                gap = f"{100 * check['gap']:+.1f}" if check else "–"
                spread = yes_no(check["beyond_spread"]) if check and variant != "baseline" else "–"
                lines.append(f"| {TRY_LABELS.get(variant, LABELS.get(variant))} | {float(b):.0%} | "
                             f"{pct(table[variant])} | {gap} | {spread} | {ratio} | "
                             f"{unchanged(sens, f'{float(b):g}', variant)} |")
        grid = result["schedule"].get("label_voxel_m", LABEL_VOXEL_M)
        lines += ["", f"Labelled: {shares} (the budget is of the {grid:g} m voxel-subsampled points; full and "
                  "fully supervised DSP use every label, shown in both columns).", "",
                  "## Branches of the two-stage runs (Tab. 3; val mIoU %)", "",
                  "| run | labels | basic | intra | cross | paper (10 %) |", "|---|---|---:|---:|---:|---|"]
        for b in budgets:
            for variant, branches in analysis["budgets"][b]["branches"].items():
                ref = " / ".join(f"{v:.1f}" for v in PAPER_BRANCHES[variant])
                lines.append(f"| {LABELS[variant]} | {float(b):.0%} | {pct(branches['basic'])} | "
                             f"{pct(branches['intra'])} | {pct(branches['cross'])} | {ref} |")
        lines += ["", "## Orderings (on the means; 'beyond spread' = the gap exceeds the larger seed std)", "",
                  "| ordering | labels | holds | gap (mIoU points) | beyond spread |", "|---|---|---|---:|---|"]
        for b in budgets:
            for name, check in analysis["budgets"][b]["orderings"].items():
                lines.append(f"| {name} | {float(b):.0%} | {'yes' if check['holds'] else 'no'} | "
                             f"{100 * check['gap']:+.1f} | {yes_no(check['beyond_spread'])} |")
        for name, check in analysis["across_budgets"].items():
            lines.append(f"| {name} | both | {'yes' if check['holds'] else 'no'} | {100 * check['gap']:+.1f} | "
                         f"{yes_no(check['beyond_spread'])} |")
        lines += ["", "## Goal", ""]
        for b in budgets:
            entry = analysis["budgets"][b]
            if "goal" in entry:
                g, gain = entry["goal"], entry["gain"]
                lines.append(f"- {float(b):.0%}: DSP / full = {g['ratio_to_full']:.3f} (goal >= 0.97 at 1 %: "
                             f"{'met' if g['at_least_97pct'] else 'not met'}); DSP - baseline = "
                             f"{100 * gain['mean']:+.1f} ± {100 * gain['std']:.1f} points (per seed "
                             f"{', '.join(f'{100 * v:+.1f}' for v in gain['per_seed'])}); above the baseline beyond "
                             f"its std: {yes_no(g['above_baseline_beyond_std'])}")
        lines.append("")
    if result.get("methods_rows"):
        lines += ["## The DSP rows of the cross-method table (`bench/methods.py` format)", "",
                  "The ablation's `dsp` and `full` runs are the runs `bench/methods.py --methods dsp` trains on this "
                  "schedule (same recipe, labels, dataset, seeds); rows built by its `aggregate`.", "",
                  "| method | labels | labelled points % | mIoU % | full % | ratio | paper ratio | seeds |",
                  "|---|---|---:|---:|---:|---:|---:|---|"]
        for r in result["methods_rows"]:
            lines.append(f"| {r['method']} | `{r['labels']}` | {r['labelled_points_pct']:.4g} | "
                         f"{100 * r['miou']:.1f} ± {100 * r['miou_std']:.1f} | {100 * r['full_miou']:.1f} | "
                         f"{r['ratio']:.3f} | {r['paper_ratio']:.3f} | {','.join(map(str, r['seeds']))} |")
        lines.append("")
    mem = result.get("memory")
    if mem:
        lines += ["## Memory", "", "| dataset | crop points | attach level | N median | N max | affinity of the "
                  "largest pair (MiB, one direction) |", "|---|---:|---:|---:|---:|---:|"]
        for name, entry in mem["datasets"].items():
            for c in entry.get("crops", []):
                lines.append(f"| {name} | {c['crop_points']:,} | {c['level']} | {c['n_median']:,} | {c['n_max']:,} | "
                             f"{c['affinity_mib_max']} |")
        lines += ["", f"Peak memory of {PROBE_STEPS} training steps on `{mem.get('probe_dataset', 'semantickitti')}` "
                  "(a fresh process each; the peak RSS is reset after the data and trainer are set up, so 'training "
                  "adds' is the steps' own memory; s/step at the load shown above, an upper bound):", "",
                  "| variant | crop points | chunk rows | RSS at start MiB | peak during training MiB | training adds "
                  "MiB | s/step |", "|---|---:|---:|---:|---:|---:|---:|"]
        for p in mem["probes"]:
            lines.append(f"| {p['variant']} | {p['crop_points']:,} | {p['chunk_rows'] or 'none'} | "
                         f"{p.get('rss_start_mib', '–')} | {p.get('train_peak_mib', p['rss_peak_mib'])} | "
                         f"{p.get('train_extra_mib', '–')} | {p['s_per_step']} |")
        lines.append("")
    if result.get("notes"):
        lines += ["## Notes", "", result["notes"].strip(), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="indoor", choices=list(DATASETS))
    parser.add_argument("--scenes", type=int, default=15, help="synthetic scenes (12 train / 3 val)")
    parser.add_argument("--steps", type=int, default=1200, help="optimiser steps of every run")
    parser.add_argument("--crop-points", type=int, default=10_000)
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--budgets", default="0.01,0.1", help="labelled shares of the voxel-subsampled points")
    parser.add_argument("--label-voxel", type=float, default=LABEL_VOXEL_M,
                        help="grid of the labelled share, m (default: the network's voxel; 0.04 = the paper's KPConv "
                             "input grid, about the raw clouds' spacing)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--dense", default="full,dsp_full",
                        help="dense-label runs per seed: full (the reference) and/or dsp_full (fully supervised DSP)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated of {PARTS}")
    parser.add_argument("--memory-datasets", default=",".join(DATASETS))
    parser.add_argument("--memory-probe-dataset", default="semantickitti",
                        help="dataset of the peak-RSS probes (the largest attach-level counts)")
    parser.add_argument("--cached-only", action="store_true",
                        help="train nothing: report the runs already cached in --work (combine earlier passes)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None, help="data, runs and the result cache")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--notes", type=Path, default=None, help="text appended to the results as '## Notes'")
    parser.add_argument("--sensitivity", default="",
                        help="comma-separated dsp_sensitivity.json files whose rows go beside the follow-up tries")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="dsp", help=argparse.SUPPRESS)
    parser.add_argument("--chunk-rows", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        return probe(args, VARIANTS[args.variant], LABEL_VOXEL_M)
    torch.set_num_threads(args.threads)
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.budgets = [float(b) for b in args.budgets.split(",")]
    args.variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(args.variants) - set(VARIANTS) - set(TRIES))
    if unknown:
        raise SystemExit(f"bench/dsp.py: unknown variant(s) {unknown}; known: {[*VARIANTS, *TRIES]}")
    args.dense = [d for d in args.dense.split(",") if d]
    if set(args.dense) - {"full", "dsp_full"}:
        raise SystemExit(f"bench/dsp.py: --dense takes full and/or dsp_full, got {args.dense}")
    args.memory_datasets = [d for d in args.memory_datasets.split(",") if d]
    parts = [p for p in args.parts.split(",") if p]
    work = args.work or Path(tempfile.mkdtemp(prefix="wsseg_dsp_"))
    started, load_start = time.perf_counter(), os.getloadavg()
    result: dict[str, Any] = {"parts": parts, "schedule": {
        "dataset": args.dataset, "scenes": args.scenes, "steps": args.steps, "crop_points": args.crop_points,
        "profile": args.profile, "lr": args.lr, "batch_scenes": 2, "seeds": args.seeds, "budgets": args.budgets,
        "label_voxel_m": args.label_voxel}}
    if "ablation" in parts:
        bench = DATASETS[args.dataset]
        dataset = bench.make(work / args.dataset / "data", args.scenes, 0)
        result["raw"] = ablation(dataset, bench, work / args.dataset, args)
        result["analysis"] = analyse(result["raw"])
        result["methods_rows"] = method_rows(result["raw"], args.dataset, dataset)
    if "memory" in parts:
        result["memory"] = memory(work, args, LABEL_VOXEL_M, PROBE_STEPS)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["machine"] = m = machine(load_start)
    result["note"] = (
        f"`{args.profile}` profile, {args.dataset} ({args.scenes} scenes), crops of {args.crop_points:,} points, "
        f"batches of 2 (one CSFR pair), {args.steps} steps per run (two-stage variants {args.steps // 2} + "
        f"{args.steps - args.steps // 2}), AdamW lr {args.lr} cosine, seeds {args.seeds}.  Machine: {m['device']}, "
        f"{m['cores']} cores shared with other jobs (load average {' / '.join(map(str, m['loadavg_1_5_15_start']))} "
        f"at the start, {' / '.join(map(str, m['loadavg_1_5_15_end']))} at the end: times are upper bounds), torch "
        f"{m['torch']} with {m['torch_threads']} thread(s); wall {result['wall_s'] / 60:.1f} min.  Command: "
        f"`bench/methods.py ablation dsp {' '.join(argv if argv is not None else sys.argv[1:])}`.")
    result["notes"] = args.notes.read_text() if args.notes else ""
    result["sensitivity"] = {}
    for path in filter(None, args.sensitivity.split(",")):
        data = json.loads(Path(path).read_text())
        for run, row in data["rows"].items():  # keyed by run folder and level (-2 = L-2, as --level takes it)
            result["sensitivity"][f"{run}@{row.get('from_bottom', -2)}"] = row
    table = markdown(result)
    print(table)
    if not args.no_write:
        write_results(args.results, "dsp", result, table)
    summary = {"wall_s": result["wall_s"]}
    if "analysis" in result:
        summary["goal"] = {b: e.get("goal") for b, e in result["analysis"]["budgets"].items()}
        summary["means"] = {b: {v: s["mean"] for v, s in e["table"].items()}
                            for b, e in result["analysis"]["budgets"].items()}
    print("RESULT " + json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
