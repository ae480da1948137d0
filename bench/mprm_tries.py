"""MPRM: tries to close the sub-cloud-tag gap (``bench/methods.py ablation mprm --try NAME=JSON ...``).

Each try is one set of MPRM options (``MprmOptions``: e.g. ``{"classify_share": 0.75}`` or ``{"ignore_below":
0.8}``) trained with sub-cloud tags (r = 2 m) on the same dataset, schedule (``--steps`` in all: classification +
retraining, the budget ``full`` gets) and seeds as the main table; only the retrained network's val mIoU and the train
pseudo-label record are measured (no per-path analysis).  Each try's ratio divides by ``full`` of the same seeds from
the main table's runs.  The tries live in the dataset section's ``tries`` ({name: {"options", "runs"}}); a later
``--try`` of the same name replaces its seeds' runs.  With ``--try-kind scene`` the tries train with whole-room scene
tags instead and live in ``scene_tries`` (against the main table's scene-tag row).

With ``--subscenes NX,NY,NZ`` the runs are MPRM with **scene tags on sub-scenes** instead (the diverse-tags protocol,
:mod:`wsseg_training.data.subscenes`, as ``bench/densify.py --subscenes``): each train room cut into that grid of
its bounding box, every cell a scene tagged on its own; val rooms whole; ``full`` (from the saved runs; a seed they
lack: trained here, kept in ``extra_full``) trained on the whole rooms.  Each ``--try`` (none: the paper's options,
``paper``) is trained on them; they live in the section's ``subscene_tries``, the protocol's tag statistics in
``subscenes``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from wsseg_training.data.dataset import Dataset
from wsseg_training.data.subscenes import parse_grid, subscene_dataset
from wsseg_training.labels import simulate_scene_tags


def parse_try(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME=JSON`` -> (name, options); a clear error for anything else."""
    name, sep, options = text.partition("=")
    try:
        value = json.loads(options) if sep else None
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"--try {text!r}: the options are not JSON ({error})") from error
    if not name or not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"--try {text!r}: expected NAME=JSON-OBJECT, e.g. share75="
                                         '\'{"classify_share": 0.75}\'')
    return name, value


def run_tries(dataset: Dataset, tries: list[tuple[str, dict[str, Any]]], args: argparse.Namespace, work: Path,
              run_mprm: Callable[..., dict[str, Any]], kind: str = "subcloud") -> dict[str, Any]:
    """Every try (weak labels ``kind``) on every seed of ``args.seeds``: {name: {"options", "runs": [{"seed",
    "retrained", "train_s", "record", "loadavg_start", "loadavg_end", "wall_s"}]}}."""
    out: dict[str, Any] = {}
    for name, options in tries:
        runs = []
        for seed in args.seeds:
            load, started = os.getloadavg(), time.perf_counter()
            result = run_mprm(dataset, kind, seed, work / f"seed{seed}", args, options, f"try_{name}",
                              analyse=False)
            runs.append({"seed": seed, "retrained": result["retrained"], "train_s": result["train_s"],
                         "record": result["record"], "loadavg_start": [round(v, 2) for v in load],
                         "loadavg_end": [round(v, 2) for v in os.getloadavg()],
                         "wall_s": round(time.perf_counter() - started, 1)})
        out[name] = {"options": options, "steps": args.steps, "profile": args.profile, "runs": runs}
    return out


def tag_statistics(dataset: Dataset, seed: int) -> dict[str, Any]:
    """The train split's scene tags: scenes, mean classes per scene, and per class the share of scenes tagged."""
    names = dataset.scene_names("train")
    tags = simulate_scene_tags(dataset, names, seed).tags
    share = {c: sum(i in tags[n] for n in names) / len(names) for i, c in enumerate(dataset.classes.names)}
    return {"scenes": len(names), "classes_per_scene": round(float(np.mean([len(tags[n]) for n in names])), 2),
            "share": {c: round(v, 3) for c, v in share.items()}}


def add_tries(part: dict[str, Any], dataset: Dataset, args: argparse.Namespace, work: Path,
              run_mprm: Callable[..., dict[str, Any]], full_run: Callable[..., dict[str, Any]], command: str) -> None:
    """Run ``args.tries`` (sub-cloud tags on the rooms) or, with ``args.subscenes``, MPRM with scene tags on the
    sub-scenes of ``dataset``'s train rooms (module docstring), and merge them into the saved section ``part``; with
    ``--subscenes``, ``full_run(dataset, seed, work, args)`` trains ``full`` on the whole rooms for a seed the saved
    runs lack (kept in ``extra_full``).  Refuses rooms or steps other than the saved runs' (their ``full`` gives the
    ratios)."""
    if args.steps != part["steps"]:
        raise SystemExit(f"--steps {args.steps}: the saved runs trained {part['steps']} steps, their `full` would not "
                         "compare")
    saved = {r["subcloud"]["record"]["points"] for r in part["runs"] if "subcloud" in r}
    points = sum(int(dataset.info.scenes[n]["points"]) for n in dataset.scene_names("train"))
    if saved and saved != {points}:
        raise SystemExit(f"the train rooms hold {points} points, the saved runs' {sorted(saved)}: not the same rooms, "
                         "their `full` would not compare")
    key, kind = ("scene_tries", "scene") if getattr(args, "try_kind", "subcloud") == "scene" else ("tries", "subcloud")
    if args.subscenes:
        grid = args.subscenes
        tag = "".join(map(str, grid))
        sub = subscene_dataset(dataset, work / f"data_sub{tag}", grid)
        kept = sum(int(sub.info.scenes[n]["points"]) for n in sub.scene_names("train"))
        part.setdefault("subscenes", {})[tag] = {
            "grid": list(grid), "points_kept": round(kept / points, 4), "subscenes": tag_statistics(sub, 0),
            "rooms": tag_statistics(dataset, 0)}
        have = {r["seed"] for r in part["runs"] if "full" in r} | {int(k) for k in part.get("extra_full", {})}
        for seed in (s for s in args.seeds if s not in have):
            load = os.getloadavg()
            part.setdefault("extra_full", {})[str(seed)] = {
                **full_run(dataset, seed, work / f"seed{seed}", args), "loadavg_start": [round(v, 2) for v in load],
                "loadavg_end": [round(v, 2) for v in os.getloadavg()]}
        dataset, work, key, kind = sub, work / f"sub{tag}", "subscene_tries", "scene"
    found = run_tries(dataset, args.tries or [("paper", {})], args, work, run_mprm, kind)
    if args.subscenes:  # one entry per try and grid: NAME_NXNYNZ
        found = {f"{name}_{tag}": {**entry, "grid": list(grid)} for name, entry in found.items()}
    for entry in found.values():
        entry["command"] = command
    part[key] = merge_tries(part.get(key) or {}, found)


def merge_tries(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``old`` tries with ``new`` ones added; a try in both keeps the old seeds that the new one did not run."""
    merged = dict(old)
    for name, entry in new.items():
        seeds = {r["seed"] for r in entry["runs"]}
        kept = [r for r in old.get(name, {}).get("runs", []) if r["seed"] not in seeds]
        merged[name] = {**entry, "runs": sorted(kept + entry["runs"], key=lambda r: r["seed"])}
        if kept and old[name].get("command") and entry.get("command"):  # each invocation's command, in order
            merged[name]["command"] = f"{old[name]['command']}` then `{entry['command']}"
    return merged


def final_pseudo_miou(record: dict[str, Any]) -> float:
    """The train pseudo-label mIoU of what the retraining learns from (after the CRF, or without it the fused)."""
    found = record["train_pseudo_label_miou"]
    return found["mprm_crf"] if "mprm_crf" in found else found["mprm"]


def grid_arg(text: str) -> tuple[int, int, int]:
    """``--subscenes`` as argparse reads it (parse_grid's message on a bad grid)."""
    try:
        return parse_grid(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


TRIES = ("### Tries to close the sub-cloud gap (`--try`; same steps, seeds and `full`)",
         "Sub-cloud tags (r = 2 m unless a try sets `radius_m`), retrained val mIoU; ratio = mean retrained / "
         "mean `full` of the same seeds.")
SCENE_TRIES = ("### Tries on whole-room scene tags (`--try --try-kind scene`; same steps, seeds and `full`)",
               "Scene tags of whole rooms, retrained val mIoU; ratio = mean retrained / mean `full` of the same seeds.")
SUBSCENES = ("### Scene tags on sub-scenes (`--subscenes`; same steps, seeds and `full`)",
             "Scene tags, each train room cut into a grid of its bounding box (try `NAME_NXNYNZ`) and every cell with "
             "at least 200 points tagged as a scene of its own (`wsseg_training.data.subscenes`, the diverse-tags "
             "protocol of `bench/densify.py --subscenes`); val rooms whole; `full` (the main table's runs; other seeds "
             "trained by `--subscenes` with the same recipe: {extra}) trained on whole rooms with dense labels.  "
             "Retrained val mIoU; ratio = mean retrained / mean `full` of the same seeds.")
#: one grid's tag statistics
GRID = ("- {grid} grid: {sub} sub-scenes ({kept:.1f} % of the train points), {sub_classes} classes per scene (whole "
        "rooms: {room_classes}); share of scenes tagged (whole rooms in brackets): {shares}.")


def tries_markdown(part: dict[str, Any]) -> list[str]:
    """The markdown lines of a dataset section's tries and scene-tag sub-scene tries (none without either)."""
    lines = tries_table(part, part.get("tries") or {}, "subcloud", *TRIES)
    lines += tries_table(part, part.get("scene_tries") or {}, "scene", *SCENE_TRIES)
    grids = part.get("subscenes") or {}
    if grids:
        extra = part.get("extra_full") or {}
        about = [SUBSCENES[1].format(extra=", ".join(f"seed {k} {100 * v['miou']:.1f}" for k, v in extra.items())
                                     or "none"), ""]
        for stats in grids.values():
            sub, rooms = stats["subscenes"], stats["rooms"]
            shares = ", ".join(f"{c} {100 * v:.0f} % ({100 * rooms['share'][c]:.0f} %)"
                               for c, v in sub["share"].items())
            about.append(GRID.format(grid="x".join(map(str, stats["grid"])), kept=100 * stats["points_kept"],
                                     sub=sub["scenes"], sub_classes=sub["classes_per_scene"],
                                     room_classes=rooms["classes_per_scene"], shares=shares))
        lines += tries_table(part, part.get("subscene_tries") or {}, "scene", SUBSCENES[0], about[0],
                             "(main table: whole rooms)", about[2:])
    return lines


def tries_table(part: dict[str, Any], tries: dict[str, Any], kind: str, title: str, about: str,
                base_name: str = "(main table)", details: list[str] | None = None) -> list[str]:
    """One tries table: the main table's ``kind`` runs, then each try (none without tries); ``details``: lines
    between the explanation and the table."""
    if not tries:
        return []
    full = {r["seed"]: r["full"]["miou"] for r in part["runs"] if "full" in r}
    full.update({int(seed): r["miou"] for seed, r in (part.get("extra_full") or {}).items()})
    base = [{"seed": r["seed"], "retrained": r[kind]["retrained"], "record": r[kind]["record"]}
            for r in part["runs"] if kind in r]
    lines = [title, "", about + "  Pseudo labels: train, after the CRF (if on), every point (analysis only); "
             "coverage: the share of train points the retraining learns from (below 100 % with `ignore_below`).", "",
             *([*details, ""] if details else []),
             "| try | options | retrained | per seed | ratio | `full` | train pseudo mIoU | coverage | wall / run |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    rows = [(base_name, {}, base)]
    rows += [(name, entry["options"], entry["runs"]) for name, entry in tries.items()]
    for name, options, runs in rows:
        runs = [r for r in runs if r["seed"] in full]
        if not runs:
            continue
        values = np.array([r["retrained"] for r in runs])
        fulls = np.array([full[r["seed"]] for r in runs])
        mean, full_mean = round(float(values.mean()), 4), round(float(fulls.mean()), 4)  # as the main table rounds
        pseudo = [final_pseudo_miou(r["record"]) for r in runs if "record" in r]
        coverage = [r["record"]["coverage"] for r in runs if "record" in r]
        walls = [r["wall_s"] for r in runs if "wall_s" in r]
        spread = f" ± {100 * values.std():.1f}" if len(values) > 1 else ""
        lines.append(
            f"| {name} | `{json.dumps(options)}` | {100 * mean:.1f}{spread} | "
            + " / ".join(f"{100 * v:.1f}" for v in values) + f" (seeds {','.join(str(r['seed']) for r in runs)}) | "
            f"{mean / full_mean:.3f} | {100 * full_mean:.1f} | "
            + (f"{100 * np.mean(pseudo):.1f}" if pseudo else "–") + " | "
            + (f"{100 * np.mean(coverage):.0f} %" if coverage else "–") + " | "
            + (f"{np.mean(walls) / 60:.1f} min" if walls else "–") + " |")
    loads = [r["loadavg_start"][0] for e in tries.values() for r in e["runs"]] + \
        [r["loadavg_end"][0] for e in tries.values() for r in e["runs"]]
    lines += ["", f"Load average (1 min) at the starts / ends of the tries' runs: {min(loads):.1f}-{max(loads):.1f} "
              "(2 shared cores: walls are upper bounds).", ""]
    lines += [f"- {name}: `{entry['command']}`" for name, entry in tries.items() if entry.get("command")] + [""]
    return lines
