"""MPRM: the ablation table (``bench/methods.py ablation mprm [ARGS]``).

On synthetic indoor rooms (``IndoorConfig()``, S3DIS classes; or ``--data``) and the real mOSD frames, with weak labels
simulated from the train split's ground truth (sub-cloud tags: r = 2 m balls on the ⌈l/r⌉ seeding grid; scene tags),
every run the same length (``--steps``; MPRM: half classification, half retraining) on the shared recipe
(``harness.recipe``: ``tiny`` profile, crops of 10,000 points, batches of 2), and for every seed:

* ``full`` (dense labels, the same steps);
* MPRM with sub-cloud tags and with scene tags (all four paths trained jointly, max fusion, dense CRF, retrained);
* the PCAM baseline trained alone (``paths: [pcam]``) with sub-cloud tags;

and, from each trained classifier (``RUN/mprm.pt``), the pseudo labels of every variant -- each single path, max
and sum of the four; PCAM and max also after the CRF -- scored (analysis only) on the train scenes (passes masked by the
run's annotations, exactly what retraining learns from), on the val scenes with val tags simulated the same way (as
if they were annotated; MPRM Tab. 3's "validation"), and on the val scenes without tags (what ``wsseg eval``'s
``-pcam`` / ``-mprm`` / ``-mprm-crf`` report; MPRM Tab. 4's "no retraining").  Orderings checked (METHOD_NOTES
§3.8, §6.4): sub-cloud >> scene, MPRM > PCAM, max > sum, PCAM < MPRM < MPRM+CRF < retrained on val; the goal:
retrained / full >= 0.60 with sub-cloud tags, >= 0.35 with scene tags.

mOSD: every frame holds both classes (support, object) and is ~1 m across, so one r = 2 m ball covers it: scene tags
and r = 2 m sub-cloud tags are the same all-ones vector on every frame and carry no information; ``--mosd-radius``
(default 0.25 m) adds sub-clouds at a table-top scale (our extension, stated as such).

``--try NAME=JSON`` (sub-cloud options) and ``--subscenes NX,NY,NZ`` (scene tags on sub-scenes of the rooms, whose
whole-room tags carry almost no information) add runs to the saved section: ``bench/mprm_tries.py``.

Writes ``bench/results/mprm.{json,md}``; last line ``RESULT <json>``.  Not a test: never gates CI.
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
from harness import MOSD, machine, miou_of, mosd_dataset, recipe, run_full, synthetic_dataset, write_results
from method_entries import FULL, entries
from methods import aggregate, dense_fraction
from mprm_tries import add_tries, grid_arg, parse_try, tries_markdown
from wsseg_training.data.dataset import Dataset
from wsseg_training.data.synth.config import parse_room_types
from wsseg_training.engine.config import config_from_dict
from wsseg_training.engine.loop import Trainer
from wsseg_training.evaluation.evaluate import TorchPredictor
from wsseg_training.evaluation.metrics import ConfusionMatrix
from wsseg_training.labels import SceneTags, SubcloudTags, simulate_scene_tags, simulate_subcloud_tags
from wsseg_training.methods import MprmMethod
from wsseg_training.methods.mprm.cams import SCORES, grid_passes, subcloud_passes
from wsseg_training.methods.mprm.method import CLASSIFIER_FILE, RECORD_FILE
from wsseg_training.methods.mprm.predictor import MprmClassifier

RESULTS = Path(__file__).resolve().parent / "results"
#: the variants also scored after the dense CRF (each CRF costs about one inference pass over the scene)
CRF_VARIANTS = ("pcam", "max")
#: MPRM Tab. 2-4 (ScanNet; pseudo labels on train / val, segmentation on val)
PAPER = {"train": {"scene": {"pcam": 22.1, "max": 24.4}, "subcloud": {"pcam": 43.1, "max": 46.6, "max+crf": 47.4}},
         "tab3": {"pcam": (44.3, 39.3), "sa": (44.8, 39.4), "ca": (44.3, 39.3), "psa": (44.7, 39.5),
                  "max": (46.6, 41.0), "sum": (45.9, 39.7)},
         "val": {"pcam": 38.1, "max": 41.0, "max+crf": 41.4, "retrained": 43.2, "full": 72.0}}


def weak_labels(kind: str, dataset: Dataset, split: str, seed: int, radius_m: float) -> SceneTags | SubcloudTags:
    names = dataset.scene_names(split)
    if kind == "scene":
        return simulate_scene_tags(dataset, names, seed)
    return simulate_subcloud_tags(dataset, names, seed, radius_m=radius_m)


def passes_of(weak: SceneTags | SubcloudTags | None, name: str, xyz: np.ndarray, radius_m: float) -> list:
    """The pseudo-label passes of one scene: masked by its annotations (as the retrain stage), or unmasked."""
    if isinstance(weak, SubcloudTags):
        return subcloud_passes(weak.scenes.get(name, ()))
    tags = tuple(weak.tags[name]) if isinstance(weak, SceneTags) else None
    return grid_passes(xyz, radius_m, None, tags)


def score_variants(classifier: MprmClassifier, dataset: Dataset, split: str, weak: Any, radius_m: float,
                   untagged: bool = False) -> dict[str, dict[str, float]]:
    """mIoU of every pseudo-label variant (single paths, max, sum; PCAM and max ± CRF) over the scenes of ``split``,
    with the passes masked by ``weak``: {"tagged": {variant: mIoU}}; with ``untagged`` also {"untagged": ...}, the
    same votes unmasked (the same balls: sub-clouds and the scene-tag grid share the seeding grid, so one
    inference pass serves both)."""
    parts = ("tagged", "untagged") if untagged else ("tagged",)
    matrices: dict[str, dict[str, ConfusionMatrix]] = {part: {} for part in parts}
    for name in dataset.scene_names(split):
        scene = dataset.load(name)
        votes = classifier.variant_votes(scene, passes_of(weak, name, scene.xyz, radius_m), SCORES)
        for part in parts:
            if part == "untagged":
                votes.allowed[:] = True
            for key, value in classifier.variant_labels(scene, votes, CRF_VARIANTS).items():
                matrices[part].setdefault(key, ConfusionMatrix(dataset.classes.num_classes)).add(scene.semantic, value)
    return {part: {k: round(m.miou(), 4) for k, m in found.items()} for part, found in matrices.items()}


def run_mprm(dataset: Dataset, kind: str, seed: int, work: Path, args: argparse.Namespace, options: dict[str, Any],
             key: str, radius_m: float = 2.0, analyse: bool = True) -> dict[str, Any]:
    """One MPRM run: retrained val mIoU, its train pseudo-label record and (``analyse``) every variant's scores.

    ``radius_m``: ball radius of the simulated tags and of the method, metres; an ``options["radius_m"]`` (a
    ``--try``) overrides it for both, so the labels and the method never disagree."""
    radius_m = float(options.get("radius_m", radius_m))
    weak = weak_labels(kind, dataset, "train", seed, radius_m)
    config = recipe(args.profile, args.steps, 10_000, seed, args.lr, method={**options, "radius_m": radius_m},
                    features=["offset", "rgb"])
    run = work / f"mprm_{key}"
    method = MprmMethod(dataset.classes, config["method"], weak)
    method.attach_analysis_truth(lambda name: dataset.load(name).semantic)  # the record's train mIoU only
    started = time.perf_counter()
    Trainer(config_from_dict(config), method, dataset, run, progress=False, provenance={"labels": kind}).run()
    out: dict[str, Any] = {"train_s": round(time.perf_counter() - started, 1),
                           "retrained": miou_of(TorchPredictor.from_checkpoint(run / "model.pt"), dataset),
                           "record": json.loads((run / RECORD_FILE).read_text())}
    if kind == "subcloud":
        out["subclouds_per_scene"] = round(float(np.mean([len(v) for v in weak.scenes.values()])), 2)  # type: ignore[union-attr]
    if analyse:
        classifier = MprmClassifier(run / CLASSIFIER_FILE, "cpu")
        out["train"] = score_variants(classifier, dataset, "train", weak, radius_m)["tagged"]
        val = score_variants(classifier, dataset, "val", weak_labels(kind, dataset, "val", seed, radius_m), radius_m,
                             untagged=True)
        out["val_tagged"], out["val"] = val["tagged"], val["untagged"]
    print(f"  mprm {kind} {options or ''} r={radius_m}: retrained {100 * out['retrained']:.1f}"
          + (f", train max+crf {100 * out['train']['max+crf']:.1f}, val max+crf {100 * out['val']['max+crf']:.1f}"
             if analyse else "") + f" ({out['train_s']:.0f} s)", flush=True)
    return out


def full_run(dataset: Dataset, seed: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``full`` (dense labels) on ``dataset`` into ``work/full``, the same steps as an MPRM run: {"miou", "train_s"}."""
    return run_full(dataset, work, recipe(args.profile, args.steps, 10_000, seed, args.lr, features=["offset", "rgb"]))


def seed_runs(dataset: Dataset, seed: int, work: Path, args: argparse.Namespace, mosd: bool) -> dict[str, Any]:
    """Every run of one dataset and seed (module docstring)."""
    full = full_run(dataset, seed, work, args)
    print(f"  full: {100 * full['miou']:.1f} ({full['train_s']:.0f} s)", flush=True)
    out: dict[str, Any] = {"full": full}
    for kind in ("subcloud", "scene"):
        if kind in args.kinds:
            out[kind] = run_mprm(dataset, kind, seed, work, args, {}, kind)
    if mosd:
        if args.mosd_radius:
            out["subcloud_small"] = run_mprm(dataset, "subcloud", seed, work, args, {}, "subcloud_small",
                                             radius_m=args.mosd_radius)
    elif not args.quick and "subcloud" in args.kinds:
        out["pcam_alone"] = run_mprm(dataset, "subcloud", seed, work, args, {"paths": ["pcam"]}, "pcam_alone")
    return out


def mean_of(runs: list[dict[str, Any]], *keys: str) -> float | None:
    values = []
    for r in runs:
        value: Any = r
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            values.append(float(value))
    return round(float(np.mean(values)), 4) if values else None


def std_of(runs: list[dict[str, Any]], *keys: str) -> float:
    values = [mean_of([r], *keys) for r in runs]
    present = [v for v in values if v is not None]
    return round(float(np.std(present)), 4) if len(present) > 1 else 0.0


def orderings(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The paper's orderings on the seed means: (claim, left, right, holds, and per seed)."""
    sub, scene = "subcloud", "scene"
    checks = [("sub-cloud >> scene (train pseudo labels, MPRM)", (sub, "train", "max"), (scene, "train", "max")),
              ("sub-cloud > scene (retrained, val)", (sub, "retrained"), (scene, "retrained")),
              ("MPRM > PCAM (train, sub-cloud)", (sub, "train", "max"), (sub, "train", "pcam")),
              ("MPRM > PCAM (train, scene)", (scene, "train", "max"), (scene, "train", "pcam")),
              ("max > sum (train, sub-cloud)", (sub, "train", "max"), (sub, "train", "sum")),
              ("max > sum (val tagged, sub-cloud)", (sub, "val_tagged", "max"), (sub, "val_tagged", "sum")),
              ("MPRM+CRF > MPRM (train, sub-cloud)", (sub, "train", "max+crf"), (sub, "train", "max")),
              ("MPRM > PCAM (val, sub-cloud)", (sub, "val", "max"), (sub, "val", "pcam")),
              ("MPRM+CRF > MPRM (val, sub-cloud)", (sub, "val", "max+crf"), (sub, "val", "max")),
              ("retrained > MPRM+CRF (val, sub-cloud)", (sub, "retrained"), (sub, "val", "max+crf")),
              ("PCAM path of MPRM >= PCAM alone (train)", (sub, "train", "pcam"), ("pcam_alone", "train", "pcam"))]
    out = []
    for claim, left, right in checks:
        both = [r for r in runs if mean_of([r], *left) is not None and mean_of([r], *right) is not None]
        if not both:
            continue
        a, b = mean_of(both, *left), mean_of(both, *right)
        strict = ">=" not in claim
        per_seed = [(x > y) if strict else (x >= y) for x, y in ((mean_of([r], *left), mean_of([r], *right))
                                                                for r in both)]
        out.append({"claim": claim, "left": a, "right": b, "holds": a > b if strict else a >= b,  # type: ignore[operator]
                    "seeds_holding": f"{sum(per_seed)}/{len(per_seed)}", "seeds": [r["seed"] for r in both]})
    return out


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    full = mean_of(runs, "full", "miou")
    out: dict[str, Any] = {"full": full, "full_std": std_of(runs, "full", "miou")}
    for kind in ("subcloud", "scene", "pcam_alone", "subcloud_small"):
        if not any(kind in r for r in runs):
            continue
        retrained = mean_of(runs, kind, "retrained")
        entry: dict[str, Any] = {"retrained": retrained, "retrained_std": std_of(runs, kind, "retrained"),
                                 "ratio": None if not full or retrained is None else round(retrained / full, 3)}
        for part in ("train", "val_tagged", "val"):
            keys = sorted({k for r in runs for k in r.get(kind, {}).get(part, {})})
            entry[part] = {k: mean_of(runs, kind, part, k) for k in keys}
            entry[f"{part}_std"] = {k: std_of(runs, kind, part, k) for k in keys}
        out[kind] = entry
    out["orderings"] = orderings(runs)
    return out


def markdown(result: dict[str, Any]) -> str:
    pct = lambda v: "–" if v is None else f"{100 * v:.1f}"  # noqa: E731
    pm = lambda v, s: pct(v) + (f" ± {100 * s:.1f}" if s else "")  # noqa: E731
    lines = ["# MPRM (multi-path region mining) ablation", "", result["note"], ""]
    for name, data in result["datasets"].items():
        s = data["summary"]
        lines += [f"## {name}: {data['describe']}", "", data["note"], ""]
        if data.get("caveat"):
            lines += [data["caveat"], ""]
        lines += ["### Segmentation on val (MPRM Tab. 4)", "",
                  "| labels | PCAM (no retrain) | MPRM | MPRM+CRF | retrained | full | retrained / full | goal |",
                  "|---|---:|---:|---:|---:|---:|---:|---|"]
        for kind, goal in (("subcloud", 0.60), ("scene", 0.35), ("subcloud_small", None), ("pcam_alone", None)):
            e = s.get(kind)
            if e is None:
                continue
            v, vs = e["val"], e["val_std"]
            if data.get("caveat") and goal is not None:  # tags without information: no goal to meet
                meets = "n/a (no information)"
            else:
                meets = "–" if goal is None or e["ratio"] is None else (
                    f"≥ {goal:.2f}: " + ("met" if e["ratio"] >= goal else "**not met**"))
            cells = " | ".join(pm(v.get(k), vs.get(k)) for k in ("pcam", "max", "max+crf"))
            lines.append(f"| {data['labels'][kind]} | {cells} | {pm(e['retrained'], e['retrained_std'])} "
                         f"| {pm(s['full'], s['full_std'])} | {e['ratio']} | {meets} |")
        lines += ["", f"Paper (ScanNet val, sub-cloud tags): PCAM {PAPER['val']['pcam']}, MPRM {PAPER['val']['max']}, "
                  f"MPRM+CRF {PAPER['val']['max+crf']}, retrained {PAPER['val']['retrained']} vs ≈ 72 fully supervised "
                  "(0.60).", ""]
        if data.get("majority_miou") is not None:
            lines += [f"One class everywhere (the train split's most frequent, {data['majority_class']}): "
                      f"{pct(data['majority_miou'])} val mIoU.", ""]
        lines += ["### Pseudo labels by path and fusion (MPRM Tab. 2-3; analysis only)", "",
                  "| labels | part | " + " | ".join((*SCORES, *(f"{v}+crf" for v in CRF_VARIANTS))) + " |",
                  "|---|---|" + "---:|" * (len(SCORES) + len(CRF_VARIANTS))]
        for kind in ("subcloud", "scene", "pcam_alone", "subcloud_small"):
            e = s.get(kind)
            if e is None:
                continue
            for part, label in (("train", "train (masked)"), ("val_tagged", "val (val tags simulated)"),
                                ("val", "val (no tags)")):
                cells = [pm(e[part].get(v), e[f"{part}_std"].get(v)) if v in e[part] else "–"
                         for v in (*SCORES, *(f"{v}+crf" for v in CRF_VARIANTS))]
                lines.append(f"| {data['labels'][kind]} | {label} | " + " | ".join(cells) + " |")
        lines += ["", "Paper (ScanNet, train / val pseudo labels): "
                  + ", ".join(f"{k} {a} / {b}" for k, (a, b) in PAPER["tab3"].items())
                  + f"; train, scene tags: PCAM {PAPER['train']['scene']['pcam']}, "
                  f"MPRM {PAPER['train']['scene']['max']}; sub-cloud + CRF {PAPER['train']['subcloud']['max+crf']}.",
                  "", "### Orderings", "",
                  "| claim | left | right | holds (means) | seeds holding |", "|---|---:|---:|---|---|"]
        for o in s["orderings"]:
            lines.append(f"| {o['claim']} | {pct(o['left'])} | {pct(o['right'])} | {'yes' if o['holds'] else '**no**'} "
                         f"| {o['seeds_holding']} |")
        lines.append("")
        lines += tries_markdown(data)
        if data.get("methods_rows"):
            lines += ["### The MPRM rows of the cross-method table (`bench/methods.py` format)", "",
                      "This section's `full`, sub-cloud and scene-tag runs are the runs `bench/methods.py --methods "
                      "mprm` trains on this schedule (same recipe, labels, dataset, seeds); rows built by its "
                      "`aggregate`.  Tags label no point (0 %).", "",
                      "| method | labels | labelled points % | mIoU % | full % | ratio | paper ratio | seeds |",
                      "|---|---|---:|---:|---:|---:|---:|---|"]
            for r in data["methods_rows"]:
                paper = "–" if r["paper_ratio"] is None else f"{r['paper_ratio']:.3f}"
                lines.append(f"| {r['method']} | `{r['labels']}` | {r['labelled_points_pct']:.4g} | "
                             f"{pm(r['miou'], r['miou_std'])} | {pct(r['full_miou'])} | {r['ratio']:.3f} | {paper} | "
                             f"{','.join(map(str, r['seeds']))} |")
            lines.append("")
    if result.get("notes"):
        lines += ["## Notes", "", result["notes"].strip(), ""]
    return "\n".join(lines)


def majority(dataset: Dataset) -> tuple[str, float]:
    """(name, val mIoU) of predicting the train split's most frequent class at every point: the floor a collapsed
    network reaches."""
    counts = np.zeros(dataset.classes.num_classes, np.int64)
    for name in dataset.scene_names("train"):
        semantic = dataset.load(name).semantic
        counts += np.bincount(semantic[semantic >= 0], minlength=counts.size)
    top = int(counts.argmax())
    matrix = ConfusionMatrix(dataset.classes.num_classes)
    for name in dataset.scene_names("val"):
        scene = dataset.load(name)
        matrix.add(scene.semantic, np.full(scene.num_points, top, np.int64))
    return dataset.classes.names[top], round(matrix.miou(), 4)


def method_rows(part: dict[str, Any], name: str, dense: float) -> list[dict[str, Any]]:
    """The rows of ``bench/methods.py``'s table (its ``aggregate``; entries ``full``, ``mprm-subcloud``,
    ``mprm-scene``) from this dataset's runs; ``dense``: the labelled share of the train points under dense labels."""
    def runs_of(kind: str, key: str, fraction: float) -> list[dict[str, Any]]:
        return [{"seed": r["seed"], "miou": r[kind][key], "backbone_miou": r[kind][key], "train_s": r[kind]["train_s"],
                 "labelled_points_fraction": fraction} for r in part["runs"] if kind in r]

    full = runs_of("full", "miou", dense)
    rows = [aggregate(FULL, name, full, full)]
    for entry in entries("mprm"):
        mine = runs_of({"mprm-subcloud": "subcloud", "mprm-scene": "scene"}[entry.id], "retrained", 0.0)
        if mine:
            rows.append(aggregate(entry, name, mine, full))
    return rows


def dataset_part(name: str, dataset: Dataset, args: argparse.Namespace, work: Path, mosd: bool) -> dict[str, Any]:
    runs = []
    for seed in args.seeds:
        print(f"{name} seed {seed}", flush=True)
        runs.append({"seed": seed, **seed_runs(dataset, seed, work / f"seed{seed}", args, mosd)})
    labels = {"subcloud": "sub-cloud tags (r = 2 m)", "scene": "scene tags", "pcam_alone": "sub-cloud, PCAM alone",
              "subcloud_small": f"sub-cloud tags (r = {args.mosd_radius} m, ours)"}
    part = {"describe": f"{len(dataset.scene_names('train'))} train / {len(dataset.scene_names('val'))} val",
            "labels": labels, "runs": runs, "summary": summary(runs)}
    if mosd:
        part["caveat"] = ("Every mOSD frame holds both classes and fits in one 2 m ball: scene tags and r = 2 m "
                          "sub-cloud tags are [1, 1] on every frame and carry **no information**; their rows show what "
                          f"MPRM makes of no information. The r = {args.mosd_radius:.2f} m sub-cloud row is our "
                          "table-top-scale extension.")
    return part


NOTE = ("Each section states its schedule, machine, load, wall time and command.  mIoU in %, mean ± std over seeds; "
        "pseudo-label mIoU is analysis only (scored against ground truth training never sees).")


def part_note(args: argparse.Namespace, part: dict[str, Any]) -> str:
    """The schedule / machine / load / wall / command line of one dataset's section."""
    m = part["machine"]
    return (f"`{args.profile}` profile, {args.steps} steps per run (MPRM: {args.steps // 2} classification on whole "
            f"2 m balls + {args.steps - args.steps // 2} retraining on crops of 10,000 points), batches of 2, lr "
            f"{args.lr}, seeds {args.seeds}.  Machine: {m['device']}, {m['cores']} cores shared with other jobs (load "
            f"average {' / '.join(map(str, m['loadavg_1_5_15_start']))} at the start, "
            f"{' / '.join(map(str, m['loadavg_1_5_15_end']))} at the end: times are upper bounds), torch "
            f"{m['torch']}, {m['torch_threads']} thread(s); wall {part['wall_s'] / 60:.1f} min.  Command: "
            f"`bench/methods.py ablation mprm {' '.join(sys.argv[1:])}`.")


def load_parts(path: Path) -> dict[str, Any]:
    """The dataset sections of a saved ``mprm.json``; a file with one note for all (older) gives it to each."""
    saved = json.loads(path.read_text())
    for part in saved["datasets"].values():
        for key in ("note", "steps", "seeds", "profile", "wall_s", "machine"):
            if key not in part and key in saved:
                part[key] = saved[key]
        part["summary"] = summary(part["runs"])
    return saved["datasets"]


def add_earlier_seeds(part: dict[str, Any], old: dict[str, Any] | None) -> None:
    """With ``--merge``: the runs of other seeds in ``old`` (the same dataset, steps and profile) join ``part``'s
    (summary recomputed over all; the note keeps the earlier run's schedule, machine, load and command)."""
    if not old or old.get("steps") != part["steps"] or old.get("profile") != part["profile"]:
        return
    kept = [r for r in old["runs"] if r["seed"] not in part["seeds"]]
    if not kept:
        return
    part["runs"] = sorted(kept + part["runs"], key=lambda r: r["seed"])
    part["seeds"] = [r["seed"] for r in part["runs"]]
    part["summary"] = summary(part["runs"])
    part["note"] += f"  Seeds {[r['seed'] for r in kept]} from an earlier run: {old['note']}"


def saved_notes(args: argparse.Namespace, saved: Path) -> str:
    """``--notes`` when given, else (with ``--merge``) the saved file's notes."""
    if args.notes:
        return args.notes.read_text()
    return json.loads(saved.read_text()).get("notes", "") if args.merge and saved.is_file() else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 rooms, 200 steps, no PCAM-alone run")
    parser.add_argument("--data", type=Path, default=None, help="an indoor dataset (else --scenes new rooms)")
    parser.add_argument("--scenes", type=int, default=None, help="synthetic rooms (default 15, quick 10)")
    parser.add_argument("--steps", type=int, default=None, help="steps per run (default 2000, quick 200)")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--mosd", type=Path, default=MOSD)
    parser.add_argument("--skip-mosd", action="store_true")
    parser.add_argument("--skip-indoor", action="store_true")
    parser.add_argument("--mosd-radius", type=float, default=0.25, help="extra sub-cloud radius on mOSD (0 = none)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--notes", type=Path, default=None)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--rerender", action="store_true",
                        help="run nothing: add the methods rows (datasets from --work) and re-write mprm.md")
    parser.add_argument("--merge", action="store_true",
                        help="keep the datasets of the existing mprm.json that this run does not run")
    parser.add_argument("--try", dest="tries", action="append", type=parse_try, default=[], metavar="NAME=JSON",
                        help="run only this sub-cloud MPRM variant (MprmOptions as JSON) on --seeds and add it to the "
                             "saved dataset sections' tries (bench/mprm_tries.py); repeatable")
    parser.add_argument("--try-kind", choices=("subcloud", "scene"), default="subcloud",
                        help="the weak labels of the --try runs on the rooms (scene: kept in the section's "
                             "scene_tries, against the main table's scene-tag row)")
    parser.add_argument("--subscenes", type=grid_arg, default=None, metavar="NX,NY,NZ",
                        help="run only MPRM with scene tags on sub-scenes (each train room cut into this grid, every "
                             "cell tagged on its own; the paper's options, or each --try) on --seeds, added to the "
                             "saved indoor section (bench/mprm_tries.py; needs --skip-mosd)")
    parser.add_argument("--room-types", type=parse_room_types, default="office_only",
                        help="indoor room-type mix of new rooms (IndoorConfig.room_types: a preset or TYPE=SHARE,...)")
    parser.add_argument("--kinds", default="subcloud,scene", help="MPRM label kinds to run (comma-separated)")
    parser.add_argument("--name", default="mprm", help="results file name (bench/results/NAME.{json,md})")
    args = parser.parse_args()
    args.kinds = [k for k in args.kinds.split(",") if k]
    if args.subscenes and not args.skip_mosd:
        parser.error("--subscenes cuts rooms: the mOSD frames are not cut (add --skip-mosd)")
    torch.set_num_threads(args.threads)
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.steps = args.steps or (200 if args.quick else 2000)
    args.scenes = args.scenes or (10 if args.quick else 15)
    work = args.work or Path(tempfile.mkdtemp(prefix="wsseg_mprm_"))
    saved = args.results / f"{args.name}.json"
    if args.rerender:  # rows from an older run's json (its datasets from --work), tables re-written
        result = {"datasets": load_parts(saved), "note": NOTE}
        for name, part in result["datasets"].items():
            data = work / name / "data"
            part["methods_rows"] = method_rows(part, name, dense_fraction(Dataset(data)))
            part["majority_class"], part["majority_miou"] = majority(Dataset(data))
        result["notes"] = args.notes.read_text() if args.notes else result.get("notes", "")
        write_results(args.results, args.name, result, markdown(result))
        print(markdown(result))
        return 0
    datasets: dict[str, Any] = load_parts(saved) if args.merge and saved.is_file() else {}
    result: dict[str, Any] = {}
    makers = {"indoor": lambda: synthetic_dataset(work / "indoor" / "data", "indoor", args.scenes, 0, data=args.data,
                                                room_types=args.room_types),
              "mosd": lambda: mosd_dataset(work / "mosd" / "data", args.mosd)}
    wanted = [n for n, skip in (("indoor", args.skip_indoor), ("mosd", args.skip_mosd or not args.mosd.is_dir()))
              if not skip]
    for name in wanted:
        started, load_start = time.perf_counter(), os.getloadavg()
        dataset = makers[name]()
        if args.tries or args.subscenes:  # only these, added to the saved section (its `full` runs give the ratios)
            if name not in datasets:
                parser.error(f"--try / --subscenes need a saved '{name}' section in {saved} (and --merge)")
            add_tries(datasets[name], dataset, args, work / name, run_mprm, full_run,
                      f"bench/methods.py ablation mprm {' '.join(sys.argv[1:])}")
            result = {"datasets": datasets, "note": NOTE, "notes": saved_notes(args, saved)}
            if not args.no_write:
                write_results(args.results, args.name, result, markdown(result))
            continue
        part = dataset_part(name, dataset, args, work / name, mosd=name == "mosd")
        kind = "synthetic RGB-D rooms" if name == "indoor" else "real mOSD RGB-D frames"
        part["describe"] = f"{kind}, {part['describe']}"
        part.update(steps=args.steps, seeds=args.seeds, profile=args.profile,
                    wall_s=round(time.perf_counter() - started, 1), machine=machine(load_start))
        part["note"] = part_note(args, part)
        add_earlier_seeds(part, datasets.get(name))
        for key in ("tries", "scene_tries"):
            if datasets.get(name, {}).get(key):
                part[key] = datasets[name][key]
        part["majority_class"], part["majority_miou"] = majority(dataset)
        part["methods_rows"] = method_rows(part, name, dense_fraction(dataset))
        datasets[name] = part
        result = {"datasets": datasets, "note": NOTE, "notes": saved_notes(args, saved)}
        if not args.no_write:  # after every dataset: a later failure keeps what finished
            write_results(args.results, args.name, result, markdown(result))
    print(markdown(result))
    brief = {name: {k: v for k, v in d["summary"].items() if k != "orderings"} for name, d in datasets.items()}
    print("RESULT " + json.dumps({"summary": brief, "wall_s": {n: d["wall_s"] for n, d in datasets.items()}}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
