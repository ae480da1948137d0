"""1T1C ("One Thing One Click") ablation benchmark (Table 3): synthetic indoor rooms with one click per object, plus
mOSD frames.  It is 1T1C's ablation sub-command of the method benchmark, ``bench/methods.py ablation otoc [ARGS]``
(the same as ``bench/otoc.py [ARGS]``), and shares its runner (``bench/harness.py``: datasets, recipe, ``full``
run, evaluation); ``bench/methods.py`` is the cross-method label-efficiency table.

Synthetic part (``IndoorConfig()`` rooms, S3DIS classes, the generator's train/val split):

1. super-voxels for every room (``compute_supervoxels``, the ``wsseg data supervoxels`` defaults);
2. ``clicks`` = one uniformly random click per object (``simulate_clicks``, seed 0), train split;
3. runs, all with the same recipe and the same total number of optimiser steps (``rounds x steps``):
   ``full`` (dense labels), ``1T1C*`` (``star``: trained on Y_0 only), and self-training with
   ``--rounds`` rounds for the three Table 3 variants (``unet`` = 3D U-Net, ``gp`` = +GP, ``rel_gp`` =
   +Rel+GP = 1T1C) and ``rel_gp`` without memory bank;
4. after every round: val mIoU of Θ alone ("†", what is exported) and of the full inference (Θ + R + graph
   propagation over super-voxels), and the coverage / quality of the pseudo labels that round trained on.

mOSD part (when ``../shared/data/mosd/learn`` exists): the 45 table-top RGB-D frames (35 train / 10 val),
one click per object instance, ``full`` vs 1T1C (``rel_gp``) with 1T1C† and full inference, twice: Θ's
cross-entropy weighted by ``--mosd-class-weighting`` (default ``inverse``: the clicked super-voxels hold 19
background points per object point, and unweighted Θ predicts background everywhere) and with the synthetic
runs' rule.

Bounded time on a CPU: ``tiny`` profile (``--profile``), crops of 10,000 points (``--crop-points``), one torch
thread (``--threads``).  Default schedule: 15 rooms (12 train / 3 val), 5 rounds x 400 steps, mOSD 5 x 100 --
about 30 min on a shared 2-core VM (5 x 200 took 17 min).  ``--quick``: 10 rooms, 5 rounds x 40 steps, mOSD
5 x 20 -- about 6 min; it keeps the 5 rounds because the paper's orderings are about iteration 5.  The
pseudo-label rule is OtocConfig's default unless ``--selection`` / ``--fusion`` / ``--pairwise-weight`` /
``--anchor`` / ``--click-radius`` / ``--otoc '{"field": value}'`` (any other OtocConfig field) say otherwise
(``--selection marginal --fusion product --click-radius 0`` is the paper's rule).  Writes
``bench/results/otoc.json`` and ``.md`` (machine, threads, load average, wall time, ordering margins, ``--notes``);
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
from typing import Any

import harness
import numpy as np
import torch
from harness import add_supervoxels, miou_of, recipe, run_full
from wsseg_training.data.dataset import Dataset
from wsseg_training.engine.config import ConfigError, config_from_dict
from wsseg_training.engine.loop import Trainer
from wsseg_training.evaluation.evaluate import TorchPredictor
from wsseg_training.labels import Clicks, compute_stats, simulate_clicks
from wsseg_training.methods import OtocMethod
from wsseg_training.methods.otoc import initial_pseudo_labels
from wsseg_training.methods.otoc.config import ANCHORS, CLASS_WEIGHTINGS, FUSION_EXPONENTS, SELECTIONS, OtocConfig
from wsseg_training.methods.otoc.inference import OtocFullPredictor
from wsseg_training.methods.otoc.method import ROUNDS_FILE, otoc_config_from_options

RESULTS = Path(__file__).resolve().parent / "results"
MOSD = harness.MOSD
VARIANT_LABELS = {"unet": "3D U-Net", "gp": "3D U-Net+GP", "rel_gp": "3D U-Net+Rel+GP", "rel_gp_nomb": "+Rel+GP w/o MB"}


def recipe_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :func:`recipe` arguments every run of this benchmark shares."""
    return {"profile": args.profile, "crop_points": args.crop_points, "seed": args.seed, "lr": args.lr,
            "workers": args.workers, "amp": args.amp}


#: rule fields the results note always names (``rule_of``); any other one came from ``--otoc``
NAMED_RULE_FIELDS = ("selection", "fusion", "pairwise_weight", "anchor", "click_radius_m", "class_weighting")


def rule_of(args: argparse.Namespace) -> dict[str, Any]:
    """The pseudo-label rule in force: the command line's fields over OtocConfig's defaults."""
    defaults = OtocConfig()
    return {**{name: getattr(defaults, name) for name in NAMED_RULE_FIELDS}, **rule_options(args)}


def rule_options(args: argparse.Namespace) -> dict[str, Any]:
    """OtocConfig fields of the pseudo-label rule given on the command line (absent: the config defaults)."""
    given = {"selection": args.selection, "fusion": args.fusion, "pairwise_weight": args.pairwise_weight,
             "anchor": args.anchor, "click_radius_m": args.click_radius, "class_weighting": args.class_weighting}
    chosen = {k: v for k, v in given.items() if v is not None}  # flags not given keep the config's default
    if args.click_radius is not None and args.click_radius <= 0:
        chosen["click_radius_m"] = None  # --click-radius 0: whole super-voxels (the paper)
    extra = parse_otoc_fields(args.otoc)
    clashes = sorted(set(extra) & set(chosen))
    if clashes:
        raise SystemExit(f"--otoc sets {clashes}, which a flag of their own also sets; give each once")
    return {**chosen, **extra}


def parse_otoc_fields(text: str | None) -> dict[str, Any]:
    """``--otoc`` JSON -> OtocConfig fields, checked against OtocConfig (SystemExit naming the bad field)."""
    if not text:
        return {}
    try:
        fields = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--otoc is not JSON ({exc}): {text!r}") from None
    if not isinstance(fields, dict):
        raise SystemExit(f"--otoc must be a JSON object of OtocConfig fields, got {text!r}")
    try:  # the check of the training YAML's ``method: {otoc: {...}}`` (variant etc. have options of their own)
        otoc_config_from_options({"otoc": fields})
    except ConfigError as exc:
        raise SystemExit(f"--otoc: {exc}") from None
    return fields


def label_fractions(dataset: Dataset, clicks: Clicks, rule: dict[str, Any]) -> dict[str, float]:
    """Clicked points and Y_0 (clicks expanded to super-voxels under ``rule``, OtocConfig fields) as fractions
    of the train points, and Y_0's point accuracy (analysis only)."""
    config = OtocConfig(**rule)
    total = clicked = expanded = correct = 0
    for name in clicks.scenes:
        scene = dataset.load(name)
        point = clicks.point_labels(name, scene.num_points)
        y0 = initial_pseudo_labels(point, scene.supervoxel, scene.xyz, dataset.classes, config)  # type: ignore[arg-type]
        total += scene.num_points
        clicked += int((point >= 0).sum())
        expanded += int((y0 >= 0).sum())
        correct += int(((y0 >= 0) & (y0 == scene.semantic)).sum())
    return {"clicked_fraction": clicked / total, "y0_fraction": expanded / total,
            "y0_accuracy": correct / max(1, expanded), "clicks": clicked}


def run_otoc(name: str, dataset: Dataset, clicks: Clicks, work: Path, config: dict, rounds: int, steps: int,
             per_round_eval: bool = True) -> dict:
    """One otoc run; evaluates Θ (†) and the full inference after every round (or only the last)."""
    run = work / name
    method = OtocMethod(dataset.classes, config["method"], clicks)
    method.attach_analysis_truth(lambda scene: dataset.load(scene).semantic)  # logging only
    start = time.perf_counter()
    Trainer(config_from_dict(config), method, dataset, run, progress=False,
            provenance={"labels": "clicks"}).run()
    train_s = time.perf_counter() - start
    history = json.loads((run / ROUNDS_FILE).read_text())["rounds"]
    table = []
    start = time.perf_counter()
    for t in range(1, rounds + 1):
        if not per_round_eval and t < rounds:
            continue
        path = run / "checkpoints" / f"step_{t * steps:08d}.pt"
        row = {"iteration": t, "dagger_miou": miou_of(TorchPredictor.from_checkpoint(path), dataset),
               "full_miou": miou_of(OtocFullPredictor.from_checkpoint(path), dataset)}
        trained_on = next((h for h in history if h["round"] == t), None)
        if trained_on is not None:
            row.update({"pseudo_coverage": round(trained_on["coverage"], 4),
                        "pseudo_miou": round(trained_on.get("analysis_miou", float("nan")), 4)})
        table.append(row)
        print(f"  {name} iteration {t}: 1T1C† {100 * row['dagger_miou']:.1f}  full {100 * row['full_miou']:.1f}  "
              f"(trained on Y_{t - 1}: coverage {100 * row.get('pseudo_coverage', float('nan')):.1f}%)", flush=True)
    return {"iterations": table, "train_s": round(train_s, 1), "eval_s": round(time.perf_counter() - start, 1),
            "rounds": history}


def synthetic_dataset(args: argparse.Namespace, work: Path) -> Dataset:
    """``--data`` when given (a dataset from ``wsseg data synth --kind indoor``), else ``--scenes`` new rooms."""
    return harness.synthetic_dataset(work / "data", "indoor", args.scenes, args.seed, data=args.data)


def synthetic(args: argparse.Namespace, work: Path) -> dict:
    rounds, steps = args.rounds, args.steps
    dataset = synthetic_dataset(args, work)
    sv = add_supervoxels(dataset)
    split = {s: len(dataset.scene_names(s)) for s in ("train", "val")}
    points_per_scene = float(np.mean([dataset.load(n).num_points for n in dataset.scene_names()]))
    clicks = simulate_clicks(dataset, dataset.scene_names("train"), seed=args.seed)
    fractions = label_fractions(dataset, clicks, rule_options(args))
    stats = compute_stats(clicks, dataset)
    print(f"synthetic: {split['train']} train / {split['val']} val rooms, {points_per_scene:,.0f} points/room, "
          f"{sv['mean_per_scene']:.0f} super-voxels/room; {fractions['clicks']} clicks = "
          f"{100 * fractions['clicked_fraction']:.4f}% of points, Y_0 = {100 * fractions['y0_fraction']:.2f}% "
          f"({100 * fractions['y0_accuracy']:.1f}% accurate)",
          flush=True)
    total = rounds * steps
    base = recipe_options(args)
    out: dict[str, Any] = {"scenes": {**split, "points_per_scene": round(points_per_scene)},
                           "supervoxels": sv, "labels": fractions, "clicks_labelled_points": stats.labelled_points}
    out["full"] = run_full(dataset, work, recipe(steps=total, **base))
    print(f"  full (dense labels): {100 * out['full']['miou']:.1f}", flush=True)
    # 1T1C*: trained once on Y_0 with one round's schedule, as iteration 1 of Algorithm 1 (no R, no propagation),
    # with the same rule (click radius, class weighting) as the self-training runs
    star = run_otoc("star", dataset, clicks, work,
                    recipe(steps=steps, method={"star": True, "steps_per_iteration": steps,
                                                "otoc": rule_options(args)},
                           checkpoint_every=steps, keep=2, **base), 1, steps)
    out["star"] = star
    variants = {"rel_gp": {"variant": "rel_gp"}, "gp": {"variant": "gp"}, "unet": {"variant": "unet"},
                "rel_gp_nomb": {"variant": "rel_gp", "memory_bank": False}}
    out["variants"] = {}
    for key, options in variants.items():
        method = {**options, "iterations": rounds, "steps_per_iteration": steps, "threshold": args.threshold,
                  "otoc": rule_options(args)}
        config = recipe(steps=total, method=method, checkpoint_every=steps, keep=rounds + 1, **base)
        out["variants"][key] = run_otoc(key, dataset, clicks, work, config, rounds, steps,
                                        per_round_eval=key != "rel_gp_nomb" or not args.quick)
    return out


def mosd(args: argparse.Namespace, work: Path) -> dict | None:
    if not args.mosd.is_dir():
        return None
    dataset = harness.mosd_dataset(work / "mosd", args.mosd)
    sv = add_supervoxels(dataset)
    clicks = simulate_clicks(dataset, dataset.scene_names("train"), seed=args.seed)
    fractions = label_fractions(dataset, clicks, rule_options(args))
    rounds, steps = args.mosd_rounds, args.mosd_steps
    total = rounds * steps
    base = recipe_options(args)
    print(f"mOSD: {len(dataset.scene_names('train'))} train / {len(dataset.scene_names('val'))} val frames, "
          f"{fractions['clicks']} clicks = {100 * fractions['clicked_fraction']:.4f}% of points", flush=True)
    frames = {"train": len(dataset.scene_names("train")), "val": len(dataset.scene_names("val"))}
    out: dict[str, Any] = {"frames": frames, "supervoxels": sv, "labels": fractions}
    out["full"] = run_full(dataset, work / "mosd_runs", recipe(steps=total, **base))
    print(f"  mOSD full: {100 * out['full']['miou']:.1f}", flush=True)
    # "otoc": Θ's cross-entropy weighted by --mosd-class-weighting; "otoc_plain": the rule of the synthetic runs
    weightings = {"otoc": args.mosd_class_weighting}
    if rule_of(args)["class_weighting"] != args.mosd_class_weighting:
        weightings["otoc_plain"] = rule_of(args)["class_weighting"]
    for key, weighting in weightings.items():
        method = {"variant": "rel_gp", "iterations": rounds, "steps_per_iteration": steps,
                  "threshold": args.threshold, "otoc": {**rule_options(args), "class_weighting": weighting}}
        out[key] = run_otoc(key, dataset, clicks, work / "mosd_runs",
                            recipe(steps=total, method=method, checkpoint_every=steps, keep=rounds + 1, **base),
                            rounds, steps)
        out[key]["class_weighting"] = weighting
    return out


def ordering_checks(syn: dict) -> list[dict[str, Any]]:
    """The paper's orderings with both sides' val mIoU; 1T1C† (Θ alone) at the last iteration unless named."""
    last = {k: v["iterations"][-1] for k, v in syn["variants"].items()}
    rel = syn["variants"]["rel_gp"]["iterations"]
    star = syn["star"]["iterations"][-1]
    rows = [  # (name, left, left value, relation, right, right value)
        ("iteration_last_gt_1 (rel_gp, †)", f"+Rel+GP iteration {rel[-1]['iteration']}", rel[-1]["dagger_miou"], ">",
         "+Rel+GP iteration 1", rel[0]["dagger_miou"]),
        ("gp_gt_unet (†)", "+GP", last["gp"]["dagger_miou"], ">", "3D U-Net", last["unet"]["dagger_miou"]),
        ("rel_gp_gt_gp (†)", "+Rel+GP", last["rel_gp"]["dagger_miou"], ">", "+GP", last["gp"]["dagger_miou"]),
        ("otoc_gt_star (full inference)", "1T1C", last["rel_gp"]["full_miou"], ">", "1T1C*", star["full_miou"]),
        ("otoc_dagger_gt_star_dagger", "1T1C†", last["rel_gp"]["dagger_miou"], ">", "1T1C* (Θ)",
         star["dagger_miou"]),
        ("no_memory_bank_le_with (†)", "+Rel+GP w/o MB", last["rel_gp_nomb"]["dagger_miou"], "<=", "+Rel+GP",
         last["rel_gp"]["dagger_miou"]),
        # Table 3 may report each variant with its own inference (its +Rel+GP iteration 5 is the paper's 1T1C
        # figure): the same orderings on the full inference, reported beside the † ones
        ("gp_gt_unet (full inference)", "+GP (full)", last["gp"]["full_miou"], ">", "3D U-Net (full)",
         last["unet"]["full_miou"]),
        ("rel_gp_gt_gp (full inference)", "+Rel+GP (full)", last["rel_gp"]["full_miou"], ">", "+GP (full)",
         last["gp"]["full_miou"]),
        ("no_memory_bank_le_with (full inference)", "+Rel+GP w/o MB (full)", last["rel_gp_nomb"]["full_miou"], "<=",
         "+Rel+GP (full)", last["rel_gp"]["full_miou"]),
    ]
    return [{"name": name, "left": left, "left_miou": a, "relation": rel_, "right": right, "right_miou": b,
             "held": bool(a > b if rel_ == ">" else a <= b)} for name, left, a, rel_, right, b in rows]


def orderings(syn: dict) -> dict[str, bool]:
    """{ordering: held} (see :func:`ordering_checks`)."""
    return {row["name"]: row["held"] for row in ordering_checks(syn)}


def other_fields(rule: dict[str, Any]) -> str:
    """``, momentum 0.99`` for the ``--otoc`` fields of ``rule`` (empty when there are none)."""
    extra = {k: v for k, v in rule.items() if k not in NAMED_RULE_FIELDS}
    return "".join(f", {k} {v}" for k, v in sorted(extra.items()))


def markdown(result: dict) -> str:
    syn = result["synthetic"]
    pct = lambda v: "n/a" if v is None or v != v else f"{100 * v:.1f}"  # noqa: E731
    lines = [f"# 1T1C benchmark{' (--quick)' if result['quick'] else ''}", "", result["note"], "",
             "| run | mIoU % | vs full |", "|---|---:|---:|"]
    for label, key in (("full (dense labels)", "full_miou"), ("1T1C* (Y_0 only, Θ)", "otoc_star_miou"),
                       ("1T1C† (Θ only, exported)", "otoc_dagger_miou"), ("1T1C (full inference)", "otoc_miou")):
        lines.append(f"| {label} | {pct(result[key])} | {100 * result[key] / result['full_miou']:.0f}% |")
    lines += ["", f"Labelled points: clicks {100 * syn['labels']['clicked_fraction']:.4f}% of the train points; "
              f"Y_0 (clicks expanded to super-voxels) {100 * syn['labels']['y0_fraction']:.2f}%"
              + (f", {100 * syn['labels']['y0_accuracy']:.1f}% point accuracy (analysis only)."
                 if "y0_accuracy" in syn["labels"] else "."), "",
              "Per iteration (Table 3), val mIoU % of Θ alone (†) / full inference; pseudo labels each round trained "
              "on: coverage % and mIoU % against ground truth (analysis only):", "",
              "| iter | " + " | ".join(VARIANT_LABELS[k] for k in syn["variants"]) + " |",
              "|---:|" + "---|" * len(syn["variants"])]
    rounds = max(len(v["iterations"]) for v in syn["variants"].values())
    for t in range(1, rounds + 1):
        cells = []
        for v in syn["variants"].values():
            row = next((r for r in v["iterations"] if r["iteration"] == t), None)
            cells.append("–" if row is None else f"{pct(row['dagger_miou'])} / {pct(row['full_miou'])} "
                         f"(Y: {pct(row.get('pseudo_coverage'))}% cov, {pct(row.get('pseudo_miou'))})")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    lines += ["", "Orderings of the paper (val mIoU %, last iteration):", "", "| ordering | left | right | held |",
              "|---|---:|---:|---|"]
    for row in result["ordering_checks"]:
        lines.append(f"| {row['left']} {row['relation']} {row['right']} | {pct(row['left_miou'])} | "
                     f"{pct(row['right_miou'])} | {'yes' if row['held'] else '**NO**'} |")
    if result.get("mosd"):
        m = result["mosd"]
        lines += ["", f"mOSD frames ({m['frames']['train']} train / {m['frames']['val']} val, one click per object "
                  f"instance = {100 * m['labels']['clicked_fraction']:.4f}% of points):", "",
                  "| run | mIoU % |", "|---|---:|", f"| full (dense labels) | {pct(m['full']['miou'])} |"]
        for key in ("otoc", "otoc_plain"):
            if key in m:
                last = m[key]["iterations"][-1]
                weighting = f" (Θ class weighting `{m[key].get('class_weighting', 'none')}`)"
                lines += [f"| 1T1C†{weighting} | {pct(last['dagger_miou'])} |",
                          f"| 1T1C (full inference){weighting} | {pct(last['full_miou'])} |"]
        rounds = m["otoc"]["iterations"]
        if len(rounds) > 1:
            per_round = "; ".join(f"{r['iteration']}: {pct(r['dagger_miou'])} / {pct(r['full_miou'])} (Y: "
                                  f"{pct(r.get('pseudo_coverage'))}% cov, {pct(r.get('pseudo_miou'))})" for r in rounds)
            lines += ["", f"mOSD per iteration, † / full inference (Θ class weighting "
                          f"`{m['otoc'].get('class_weighting', 'none')}`): {per_round}"]
    if result.get("notes"):
        lines += ["", "## Notes", "", result["notes"].strip()]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rooms and steps, still 5 rounds (~10 min)")
    parser.add_argument("--scenes", type=int, default=None, help="synthetic rooms (default 15, quick 10)")
    parser.add_argument("--rounds", type=int, default=None, help="self-training rounds (default 5, quick 5)")
    parser.add_argument("--steps", type=int, default=None, help="steps per round (default 400, quick 40)")
    parser.add_argument("--mosd-rounds", type=int, default=None, help="mOSD rounds (default 5, quick 5)")
    parser.add_argument("--mosd-steps", type=int, default=None, help="mOSD steps per round (default 100, quick 20)")
    parser.add_argument("--profile", default="tiny", help="model profile (tiny, cpu, default)")
    parser.add_argument("--crop-points", type=int, default=None, help="points per training crop (default 10000)")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--threshold", type=float, default=0.9, help="T of Eq. 8 (probability)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1: on a shared 2-core CPU two threads contend and run the small "
                             "sparse convolutions several times slower)")
    parser.add_argument("--selection", choices=SELECTIONS, default=None,
                        help="pseudo-label selection rule (default: OtocConfig's; 'marginal' = the paper's Eq. 8)")
    parser.add_argument("--fusion", choices=tuple(FUSION_EXPONENTS), default=None,
                        help="Θ x R fusion (default: OtocConfig's; 'product' = the paper's)")
    parser.add_argument("--anchor", choices=ANCHORS, default=None,
                        help="labels kept on top every round (default: config; 'supervoxel' = the paper's)")
    parser.add_argument("--click-radius", type=float, default=None,
                        help="object clicks label their super-voxel within this many metres (default: config; "
                             "0 = the whole super-voxel, the paper)")
    parser.add_argument("--class-weighting", choices=tuple(CLASS_WEIGHTINGS), default=None,
                        help="weights of Θ's cross-entropy (default: config; 'none' = the paper)")
    parser.add_argument("--mosd-class-weighting", choices=tuple(CLASS_WEIGHTINGS), default="inverse",
                        help="Θ's class weighting on mOSD (default inverse: objects are 5 %% of Y_0 there); the "
                             "synthetic rule runs beside it")
    parser.add_argument("--pairwise-weight", type=float, default=None, help="CRF pairwise weight (default: config)")
    parser.add_argument("--otoc", default=None,
                        help="other OtocConfig fields as JSON, e.g. '{\"momentum\": 0.99, \"samples_per_class\": 60}' "
                             "(synthetic and mOSD runs)")
    parser.add_argument("--notes", type=Path, default=None, help="text file appended to the results as '## Notes'")
    parser.add_argument("--rerender", action="store_true",
                        help="run nothing: re-write bench/results/otoc.md from otoc.json (with --notes, if given)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-mosd", action="store_true")
    parser.add_argument("--work", type=Path, default=None, help="where to put data and runs (default: a temp dir)")
    parser.add_argument("--no-write", action="store_true", help="do not write the results files")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="folder for otoc.json / otoc.md (default bench/results)")
    parser.add_argument("--data", type=Path, default=None,
                        help="a prepared synthetic indoor dataset (`wsseg data synth --kind indoor`, super-voxels are "
                             "added when missing) instead of generating --scenes rooms (the GPU machine has no Open3D)")
    parser.add_argument("--mosd", type=Path, default=MOSD, help="mOSD 'learn' folder of PCD frames")
    parser.add_argument("--workers", type=int, default=0, help="data-loader worker processes per run")
    parser.add_argument("--amp", action="store_true", help="float16 autocast (CUDA only)")
    args = parser.parse_args()
    if args.rerender:
        saved = json.loads((args.results / "otoc.json").read_text())
        if args.notes:
            saved["notes"] = args.notes.read_text()
        (args.results / "otoc.json").write_text(json.dumps(saved, indent=1) + "\n")
        (args.results / "otoc.md").write_text(markdown(saved))
        return 0
    quick = args.quick
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    args.scenes = args.scenes or (10 if quick else 15)
    args.rounds = args.rounds or 5
    args.steps = args.steps or (40 if quick else 400)
    args.mosd_rounds = args.mosd_rounds or 5
    args.mosd_steps = args.mosd_steps or (20 if quick else 100)
    args.crop_points = args.crop_points or 10_000
    work = args.work or Path(tempfile.mkdtemp(prefix="wsseg_otoc_"))
    started = time.perf_counter()
    load_start = os.getloadavg()

    syn = synthetic(args, work)
    rel = syn["variants"]["rel_gp"]["iterations"][-1]
    result: dict[str, Any] = {
        "full_miou": syn["full"]["miou"], "otoc_star_miou": syn["star"]["iterations"][-1]["dagger_miou"],
        "otoc_star_full_miou": syn["star"]["iterations"][-1]["full_miou"],
        "otoc_dagger_miou": rel["dagger_miou"], "otoc_miou": rel["full_miou"],
        "labelled_point_fraction": syn["labels"]["clicked_fraction"], "y0_fraction": syn["labels"]["y0_fraction"],
        "per_iteration": {k: v["iterations"] for k, v in syn["variants"].items()},
        "synthetic": syn, "orderings": orderings(syn), "ordering_checks": ordering_checks(syn), "quick": quick,
        "schedule": {"profile": args.profile, "rounds": args.rounds, "steps_per_round": args.steps,
                     "total_steps": args.rounds * args.steps, "crop_points": args.crop_points, "batch_scenes": 2,
                     "lr": args.lr, "threshold": args.threshold, "rule": rule_of(args), "workers": args.workers,
                     "amp": args.amp},
    }
    result["otoc_vs_full"] = round(result["otoc_miou"] / max(result["full_miou"], 1e-9), 3)
    result["mosd"] = None if args.skip_mosd else mosd(args, work)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else (platform.processor() or
                                                                                platform.machine())
    load_end = os.getloadavg()
    result["machine"] = {"device": device, "cores": os.cpu_count(), "torch": torch.__version__,
                         "torch_threads": torch.get_num_threads(), "python": sys.version.split()[0],
                         "loadavg_1_5_15_start": [round(v, 2) for v in load_start],
                         "loadavg_1_5_15_end": [round(v, 2) for v in load_end]}
    result["notes"] = args.notes.read_text() if args.notes else ""
    rule = result["schedule"]["rule"]
    result["note"] = (
        f"Synthetic indoor rooms ({syn['scenes']['train']} train / {syn['scenes']['val']} val, "
        f"{syn['scenes']['points_per_scene']:,} points/room, ~{syn['supervoxels']['mean_per_scene']:.0f} super-voxels/"
        f"room), one click per object; `{args.profile}` profile, crops of {args.crop_points:,} points, batches of 2, "
        f"{args.rounds} rounds x {args.steps} steps (`full` gets the same {args.rounds * args.steps} steps; 1T1C* one "
        f"round of {args.steps}, as iteration 1), T = {args.threshold}, pseudo-label rule: selection "
        f"`{rule['selection']}`, fusion `{rule['fusion']}`, pairwise weight {rule['pairwise_weight']}, anchor "
        f"`{rule.get('anchor', 'supervoxel')}`, object clicks limited to "
        f"{str(rule['click_radius_m']) + ' m' if rule.get('click_radius_m') else 'none (whole super-voxels)'}, "
        f"Θ's class weighting "
        f"`{rule.get('class_weighting', 'none')}`{other_fields(rule)}.  "
        f"Machine: {device}, {os.cpu_count()} cores shared with other jobs (load average 1/5/15 min "
        f"{' / '.join(f'{v:.2f}' for v in load_start)} at the start, {' / '.join(f'{v:.2f}' for v in load_end)} at "
        f"the end), torch {torch.__version__} with {torch.get_num_threads()} thread(s); wall "
        f"{result['wall_s'] / 60:.1f} min.")
    table = markdown(result)
    print(table)
    if not args.no_write:
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / "otoc.json").write_text(json.dumps(result, indent=1) + "\n")
        (args.results / "otoc.md").write_text(table)
    keys = ("full_miou", "otoc_star_miou", "otoc_dagger_miou", "otoc_miou", "otoc_vs_full", "labelled_point_fraction",
            "per_iteration", "orderings", "wall_s", "quick")
    summary = {k: result[k] for k in keys}
    if result["mosd"]:
        summary["mosd"] = {"full_miou": result["mosd"]["full"]["miou"],
                           "otoc_dagger_miou": result["mosd"]["otoc"]["iterations"][-1]["dagger_miou"],
                           "otoc_miou": result["mosd"]["otoc"]["iterations"][-1]["full_miou"]}
    print("RESULT " + json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
