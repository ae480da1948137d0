"""``wsseg train``: train a method on a dataset directory into a run directory."""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path

from wsseg_training.engine.config import TrainConfig, load_config
from wsseg_training.engine.run_dir import RunDir


def config_path(args: argparse.Namespace) -> Path:
    """``--config``, or the run's own config.yaml on ``--resume``."""
    run = RunDir(args.out)
    if args.config is not None:
        return Path(args.config)
    if args.resume and run.config.is_file():
        return run.config
    raise ValueError("--config is required (except with --resume on a run that has a config.yaml)")


def build_config(args: argparse.Namespace) -> TrainConfig:
    """The run's config: ``--config`` (or the run's own config.yaml on ``--resume``) plus command-line overrides."""
    config = load_config(config_path(args))
    changes: dict = {}
    for name in ("profile", "device", "seed"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.steps is not None:
        changes["train"] = dataclasses.replace(config.train, steps=args.steps, epochs=None)
    return config.replace(**changes) if changes else config


def remove_failed_run(out: Path, before: set[str] | None) -> None:
    """Delete what a run that failed before its first checkpoint wrote into ``out`` (config.yaml, log.txt, tb/,
    ...); entries that were there before (``before``; None = ``out`` did not exist) are kept."""
    if not out.is_dir():
        return
    for path in out.iterdir():
        if before is None or path.name not in before:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    if before is None and not any(out.iterdir()):
        out.rmdir()


def run(args: argparse.Namespace) -> int:
    from wsseg_training.data.dataset import Dataset
    from wsseg_training.engine.loop import Trainer
    from wsseg_training.labels import load_weak_labels
    from wsseg_training.methods import get_method

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    config = build_config(args)
    method_class = get_method(args.method)
    options = method_class.parse_options(config.method, where=str(config_path(args)))  # before any data is read
    dataset = Dataset(args.data)
    weak = load_weak_labels(args.labels, dataset) if args.labels is not None else None
    method = method_class(dataset.classes, options, weak)
    if hasattr(method, "attach_analysis_truth"):  # logs pseudo-label quality only; training never sees it
        method.attach_analysis_truth(lambda name: dataset.load(name).semantic)
    provenance = {"labels": str(Path(args.labels).resolve()) if args.labels else None,
                  "data": str(Path(args.data).resolve())}
    trainer = Trainer(config, method, dataset, args.out, split=args.split, resume=args.resume,
                      progress=not args.no_progress, provenance=provenance)
    if trainer.dist.is_main:
        for line in trainer.sensor_defaults.lines:
            print(f"wsseg train: {line}", flush=True)
        if trainer.sensor_defaults.warning:
            print(f"wsseg train: WARNING: {trainer.sensor_defaults.warning}", flush=True)
    out = Path(args.out)
    before = {p.name for p in out.iterdir()} if out.is_dir() else None
    try:
        result = trainer.run()
    except BaseException:
        if not args.resume and trainer.dist.is_main and not RunDir(out).last.is_file():
            remove_failed_run(out, before)
        raise
    if trainer.dist.is_main:
        final = f"{result.losses[-1]:.4f}" if result.losses else "n/a"
        print(f"trained {method.name} ({trainer.config.profile} profile) on {result.num_scenes} scenes: steps "
              f"{result.start_step}->{result.steps} in {result.wall_s / 60:.1f} min, final loss {final} "
              f"-> {RunDir(args.out).model}")
    from wsseg_training.engine.distributed import shutdown_distributed

    shutdown_distributed(trainer.dist)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a segmentation method (full, weakly supervised methods) into a run directory",
        description="Train METHOD on the train split of a dataset directory. Writes RUN/config.yaml, "
                    "RUN/checkpoints/, RUN/model.pt, RUN/tb/ (TensorBoard) and RUN/log.txt. Multi-process: "
                    "torchrun --nproc_per_node N -m wsseg.cli train ...",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--method", required=True, help="method name (see wsseg_training.methods.METHODS)")
    parser.add_argument("--data", required=True, type=Path, help="dataset directory")
    parser.add_argument("--labels", type=Path, default=None, help="weak-label file (default: the ground truth)")
    parser.add_argument("--config", type=Path, default=None, help="training YAML (see configs/)")
    parser.add_argument("--out", required=True, type=Path, help="run directory")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoints/last.pt")
    parser.add_argument("--profile", default=None,
                        help="override the config's model profile (auto = from the data; rgbd_small, indoor_small, "
                             "lidar_small, cpu, default, tiny, ...: wsseg_training.model.profiles)")
    parser.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"), help="override the device")
    parser.add_argument("--steps", type=int, default=None, help="override train.steps")
    parser.add_argument("--seed", type=int, default=None, help="override the seed")
    parser.add_argument("--split", default="train", help="split to train on")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0 = torch's default; 1 is often fastest on a busy machine)")
    parser.set_defaults(handler=run)
