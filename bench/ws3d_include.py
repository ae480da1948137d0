"""``bench/ws3d.py --include EARLIER.json ...``: join the runs of earlier invocations to this one.

An earlier results file may itself have included others, so two ``--include`` files can hold the same run; a run
counts once per (dataset, key, seed) and an invocation's record once per command.  The first file that holds a run
gives it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def include_runs(args: argparse.Namespace) -> None:
    """Set ``args.included_runs`` {dataset: {key: runs}}, ``included_cases`` {dataset: [case]},
    ``included_seeds``, ``included_commands`` and ``included_records`` from the ``--include`` files (and
    ``args.data_seed`` when unset); ``SystemExit`` naming the file when one was measured on another schedule or
    data."""
    args.included_runs, args.included_seeds, args.included_commands, args.included_records = {}, [], [], []
    args.included_cases = {}
    earlier = [json.loads(path.read_text()) for path in args.include]
    if args.data_seed is None:  # the data of the included runs, else the first seed's
        first = earlier[0]["schedule"] if earlier else {"seeds": args.seeds}
        args.data_seed = first.get("data_seed", first["seeds"][0])
    mine = {"profile": args.profile, "steps": args.steps,
            "boundary_steps": args.boundary_steps or max(1, args.steps // 4), "crop_points": args.crop_points,
            "lr": args.lr, "scenes": args.scenes, "data_seed": args.data_seed}
    for path, result in zip(args.include, earlier, strict=True):
        schedule = result["schedule"]
        theirs = {k: schedule.get(k, schedule["seeds"][0] if k == "data_seed" else None) for k in mine}
        if theirs != mine:
            raise SystemExit(f"bench/ws3d.py: --include {path}: schedule {theirs} is not this run's {mine}")
        for name, data in result["datasets"].items():
            cases = args.included_cases.setdefault(name, [])
            cases += [c for c in data["cases"] if c not in cases]
            for key, runs in data["runs"].items():
                _add_new_seeds(args.included_runs.setdefault(name, {}).setdefault(key, []), runs)
        args.included_seeds += [s for s in schedule["seeds"] if s not in args.included_seeds]
        args.included_commands.append(result.get("command", str(path)))
        own = {"command": args.included_commands[-1], "wall_s": result.get("wall_s"),
               "machine": result.get("machine"), "seeds": schedule["seeds"]}
        known = {r["command"] for r in args.included_records}
        for record in [*result.get("included", []), own]:  # what that file included, then the file itself
            if record["command"] not in known:
                args.included_records.append(record)
                known.add(record["command"])


def _add_new_seeds(kept: list[dict[str, Any]], runs: list[dict[str, Any]]) -> None:
    """Append to ``kept`` the ``runs`` (each a dict with ``seed``) whose seed it does not hold yet."""
    seen = {r["seed"] for r in kept}
    for run in runs:
        if run["seed"] not in seen:
            kept.append(run)
            seen.add(run["seed"])
