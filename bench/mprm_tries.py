"""MPRM: tries to close the sub-cloud-tag gap (``bench/methods.py ablation mprm --try NAME=JSON ...``).

Each try is one set of MPRM options (``MprmOptions``: e.g. ``{"classify_share": 0.75}`` or ``{"ignore_below":
0.8}``) trained with sub-cloud tags (r = 2 m) on the same dataset, schedule (``--steps`` in all: classification +
retraining, the budget ``full`` gets) and seeds as the main table; only the retrained network's val mIoU and the train
pseudo-label record are measured (no per-path analysis).  Each try's ratio divides by ``full`` of the same seeds from
the main table's runs.  The tries live in the dataset section's ``tries`` ({name: {"options", "runs"}}); a later
``--try`` of the same name replaces its seeds' runs.
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
              run_mprm: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """Every try on every seed of ``args.seeds``: {name: {"options", "runs": [{"seed", "retrained", "train_s",
    "record", "loadavg_start", "loadavg_end", "wall_s"}]}}."""
    out: dict[str, Any] = {}
    for name, options in tries:
        runs = []
        for seed in args.seeds:
            load, started = os.getloadavg(), time.perf_counter()
            result = run_mprm(dataset, "subcloud", seed, work / f"seed{seed}", args, options, f"try_{name}",
                              analyse=False)
            runs.append({"seed": seed, "retrained": result["retrained"], "train_s": result["train_s"],
                         "record": result["record"], "loadavg_start": [round(v, 2) for v in load],
                         "loadavg_end": [round(v, 2) for v in os.getloadavg()],
                         "wall_s": round(time.perf_counter() - started, 1)})
        out[name] = {"options": options, "steps": args.steps, "profile": args.profile, "runs": runs}
    return out


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


def tries_markdown(part: dict[str, Any]) -> list[str]:
    """The markdown lines of a dataset section's tries (none without tries)."""
    tries = part.get("tries") or {}
    if not tries:
        return []
    full = {r["seed"]: r["full"]["miou"] for r in part["runs"] if "full" in r}
    base = [{"seed": r["seed"], "retrained": r["subcloud"]["retrained"], "record": r["subcloud"]["record"]}
            for r in part["runs"] if "subcloud" in r]
    lines = ["### Tries to close the sub-cloud gap (`--try`; same steps, seeds and `full`)", "",
             "Sub-cloud tags (r = 2 m), retrained val mIoU; ratio = mean retrained / mean `full` of the same seeds.  "
             "Pseudo labels: train, after the CRF (if on), every point (analysis only); coverage: the share of train "
             "points the retraining learns from (below 100 % with `ignore_below`).", "",
             "| try | options | retrained | per seed | ratio | `full` | train pseudo mIoU | coverage | wall / run |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    rows = [("(main table)", {}, base)]
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
