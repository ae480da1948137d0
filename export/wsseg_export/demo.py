"""``wsseg demo`` (``make demo``): one click per object -> a 1T1C model -> the real ROS 2 node, on a CPU.

Every step is the command a user would type (printed as it runs and saved to ``OUT/commands.sh``)::

    wsseg data synth --kind indoor --keep-frames ...      small indoor set, rooms + RGB-D frames
    wsseg data supervoxels --data DATA                    super-voxels (1T1C expands clicks over them)
    wsseg labels simulate --kind clicks ...               one click per object (the annotator's work)
    wsseg train --method otoc ...  |  wsseg train --method full ...   side by side, one thread each
    wsseg eval --run ... ; wsseg eval --bundle ...        val rooms: full, 1T1C† (exported), 1T1C full inference
    wsseg export ... ; wsseg export --check ...           model bundle + ONNX Runtime parity

then replays the validation rooms' RGB-D frames (as organized clouds in the room frame) through a real
``segment_node`` process (``--ros-args --params-file config/segment.yaml``, as the launch file passes it),
checks its labels against the offline ``Segmenter``, and writes ``OUT/report.md`` with the tables, pictures
(input / prediction / ground truth) and the node's per-stage timings.  The schedule is CPU-sized
(``configs/demo_otoc.yaml``, ``configs/demo_full.yaml``): the numbers show the pipeline, not a full run.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
NODE_PARAMS = REPO / "config" / "segment.yaml"
RUN_NAMES = ("otoc", "full")  # trained side by side


class DemoError(RuntimeError):
    """A demo step failed; the message names the step, the command and the end of its log."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="end-to-end demo: clicks -> 1T1C -> export -> ROS 2 node",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output directory")
    parser.add_argument("--scenes", type=int, default=8, help="synthetic rooms (a quarter are validation)")
    parser.add_argument("--otoc-config", type=Path, default=CONFIGS / "demo_otoc.yaml")
    parser.add_argument("--full-config", type=Path, default=CONFIGS / "demo_full.yaml")
    parser.add_argument("--replay-frames", type=int, default=24, help="val RGB-D frames sent through the node")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    try:
        return run_demo(args)
    except DemoError as exc:
        print(f"wsseg demo: error: {exc}", file=sys.stderr)
        return 1


# ------------------------------------------------------------------------------------------ running commands


@dataclass
class CommandLog:
    """The commands run so far (for the report and ``commands.sh``) and their wall times."""

    out: Path
    entries: list[tuple[str, float]] = field(default_factory=list)

    def display(self, argv: list[str]) -> str:
        """``wsseg ...`` with paths relative to the working directory where possible."""
        return "wsseg " + " ".join(shlex.quote(_short(a)) for a in argv)

    def add(self, argv: list[str], seconds: float) -> None:
        self.entries.append((self.display(argv), seconds))
        script = ["#!/usr/bin/env bash", "# what `wsseg demo` ran, in order", "set -euo pipefail"]
        (self.out / "commands.sh").write_text("\n".join(script + [c for c, _ in self.entries]) + "\n")


def _short(arg: str) -> str:
    path = Path(arg)
    if path.is_absolute():
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return arg
    return arg


def _wsseg(argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "wsseg.cli", *argv]


def run_command(log: CommandLog, argv: list[str]) -> str:
    """Run ``wsseg ARGV`` in the foreground (its progress bars on this terminal); returns its stdout."""
    print(f"$ {log.display(argv)}", flush=True)
    start = time.perf_counter()
    done = subprocess.run(_wsseg(argv), stdout=subprocess.PIPE, text=True)
    sys.stdout.write(done.stdout)
    log.add(argv, time.perf_counter() - start)
    if done.returncode != 0:
        raise DemoError(f"`{log.display(argv)}` failed with exit code {done.returncode}:\n{done.stdout[-2000:]}")
    return done.stdout


def _last_step(log_txt: Path) -> int:
    """The last ``step N/M`` the engine logged in RUN/log.txt (0 before the first)."""
    if not log_txt.is_file():
        return 0
    for line in reversed(log_txt.read_text(errors="replace").splitlines()):
        if " step " in line and "/" in line:
            token = line.split(" step ", 1)[1].split()[0]
            if "/" in token and token.split("/")[0].isdigit():
                return int(token.split("/")[0])
    return 0


def train_side_by_side(log: CommandLog, jobs: dict[str, tuple[list[str], Path, int]]) -> dict[str, float]:
    """Start every ``wsseg train`` of ``jobs`` (name -> (argv, run dir, total steps)) at once, with one progress
    bar per run (from the steps in RUN/log.txt); raises :class:`DemoError` (stopping the others) when one fails."""
    from tqdm import tqdm

    processes, bars, logs, started, seconds = {}, {}, {}, {}, {}
    for index, (name, (argv, run_dir, total)) in enumerate(jobs.items()):
        print(f"$ {log.display(argv)}   (log: {_short(str(run_dir))}.log)", flush=True)
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        logs[name] = open(f"{run_dir}.log", "w")  # noqa: SIM115 - closed below
        started[name] = time.perf_counter()
        processes[name] = subprocess.Popen(_wsseg([*argv, "--no-progress"]), stdout=logs[name],
                                           stderr=subprocess.STDOUT)
        bars[name] = tqdm(total=total, desc=f"train {name}", unit="step", position=index, leave=True)
    try:
        while processes:
            time.sleep(1.0)
            for name in list(processes):
                argv, run_dir, total = jobs[name]
                step = min(total, _last_step(run_dir / "log.txt"))
                if step != bars[name].n:
                    bars[name].update(step - bars[name].n)
                code = processes[name].poll()
                if code is None:
                    continue
                seconds[name] = time.perf_counter() - started[name]
                del processes[name]
                logs[name].close()
                if code != 0:
                    text = Path(f"{run_dir}.log").read_text(errors="replace")
                    raise DemoError(f"`{log.display(argv)}` failed with exit code {code}:\n{text[-3000:]}")
                bars[name].update(total - bars[name].n)
                log.add(argv, seconds[name])
    finally:
        for process in processes.values():
            process.terminate()
        for bar in bars.values():
            bar.close()
    return seconds


# ------------------------------------------------------------------------------------------ the demo


def run_demo(args: argparse.Namespace) -> int:
    from wsseg_export.demo_report import (
        DemoResults,
        read_metrics,
        read_rounds,
        replay_val_frames,
        write_pictures,
        write_report,
    )

    out: Path = args.out.resolve()
    prepare_output(out)
    started = time.perf_counter()
    log = CommandLog(out)
    data, frames, clicks = out / "data", out / "data" / "frames", out / "clicks.json"
    runs = {name: out / "runs" / name for name in RUN_NAMES}
    bundle = out / "bundle"
    steps = {name: _configured_steps(path) for name, path in (("otoc", args.otoc_config),
                                                                ("full", args.full_config))}

    print(f"[1/7] synthesizing {args.scenes} indoor rooms with their RGB-D frames", flush=True)
    run_command(log, ["data", "synth", "--kind", "indoor", "--scenes", str(args.scenes), "--seed", str(args.seed),
                      "--val-fraction", "0.25", "--out", str(data), "--frames-out", str(frames)])
    print("[2/7] super-voxels (1T1C spreads every click over its super-voxel)", flush=True)
    run_command(log, ["data", "supervoxels", "--data", str(data)])
    print("[3/7] simulating the annotator: one click per object on the training rooms", flush=True)
    run_command(log, ["labels", "simulate", "--kind", "clicks", "--data", str(data), "--out", str(clicks),
                      "--seed", str(args.seed)])
    label_stats = run_command(log, ["labels", "stats", str(clicks), "--data", str(data), "--propagate"])

    print(f"[4/7] training 1T1C ({steps['otoc']} steps) and the fully supervised reference ({steps['full']} "
          "steps) side by side, one thread each", flush=True)
    train_s = train_side_by_side(log, {
        "otoc": (["train", "--method", "otoc", "--data", str(data), "--labels", str(clicks), "--config",
                  str(args.otoc_config), "--out", str(runs["otoc"]), "--threads", "1"], runs["otoc"], steps["otoc"]),
        "full": (["train", "--method", "full", "--data", str(data), "--config", str(args.full_config), "--out",
                  str(runs["full"]), "--threads", "1"], runs["full"], steps["full"]),
    })

    print("[5/7] exporting the 1T1C backbone (1T1C†) for the robot", flush=True)
    run_command(log, ["export", "--checkpoint", str(runs["otoc"] / "model.pt"), "--out", str(bundle)])
    parity = run_command(log, ["export", "--check", str(bundle), "--data", str(data), "--max-scenes", "2"])

    print("[6/7] evaluating on the validation rooms (every original point)", flush=True)
    for name in RUN_NAMES:
        run_command(log, ["eval", "--run", str(runs[name]), "--data", str(data), "--out",
                          str(out / "eval" / name), "--render", "1", "--no-progress"])
    run_command(log, ["eval", "--run", str(runs["otoc"]), "--bundle", str(bundle), "--data", str(data), "--out",
                      str(out / "eval" / "otoc-onnx"), "--render", "0", "--no-progress"])

    print(f"[7/7] replaying {args.replay_frames} validation RGB-D frames through the real segment_node", flush=True)
    replay = replay_val_frames(bundle, data, frames, NODE_PARAMS, args.replay_frames, out / "node.log")
    pictures = write_pictures(out, data, clicks, runs, bundle, replay)
    results = DemoResults(
        metrics=read_metrics(out / "eval"), rounds=read_rounds(runs["otoc"]), label_stats=label_stats.rstrip(),
        parity=parity.rstrip(), replay=replay, commands=log.entries, train_s=train_s, steps=steps,
        wall_s=time.perf_counter() - started)
    report = write_report(out, results, pictures, bundle, NODE_PARAMS)
    (out / "summary.json").write_text(json.dumps(results.summary(), indent=1) + "\n")
    print(f"\ndone in {results.wall_s / 60:.1f} min")
    print(f"  report:  {_short(str(report))}")
    print(f"  bundle:  {_short(str(bundle))}")
    print("  on a robot (ROS 2 Humble/Jazzy/Kilted, after `colcon build` of ros2_ws):")
    print(f"    ros2 launch wsseg segment.launch.py model:={bundle} input_mode:=points "
          "points_topic:=/camera/depth/points")
    print("    (the model was trained on z-up rooms: for clouds in a camera's optical frame set the node parameter "
          "model_frame_transform to the camera's pose, see config/segment_rgbd.yaml)")
    return 0


def prepare_output(out: Path) -> None:
    """Create ``out``; a previous demo's output there (it has ``commands.sh``) is replaced, anything else refused."""
    if out.is_dir() and any(out.iterdir()):
        if not (out / "commands.sh").is_file():
            raise DemoError(f"{out} is not empty and holds no previous demo output; choose another --out")
        print(f"replacing the previous demo output in {_short(str(out))}", flush=True)
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def _configured_steps(path: Path) -> int:
    """Total optimiser steps of a training YAML (otoc: iterations x steps_per_iteration)."""
    import yaml

    config: dict[str, Any] = yaml.safe_load(Path(path).read_text()) or {}
    method = config.get("method") or {}
    if method.get("steps_per_iteration"):
        return int(method["steps_per_iteration"]) * int(method.get("iterations", 5))
    return int((config.get("train") or {}).get("steps", 0))

