"""``wsseg eval``: metrics and a report for a trained run (PyTorch) or a model bundle (ONNX Runtime)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from wsseg_training.data.dataset import Dataset
    from wsseg_training.engine.run_dir import RunDir
    from wsseg_training.evaluation.evaluate import Predictor


def _merge_metrics(path: Path, key: str, metrics: dict) -> None:
    """Store ``metrics`` under ``key`` in the run's metrics.json (other keys kept)."""
    data = json.loads(path.read_text()) if path.is_file() else {}
    summary = {k: v for k, v in metrics.items() if k not in ("confusion", "scenes")}
    data[key] = summary
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def run(args: argparse.Namespace) -> int:
    from wsseg_training.data.dataset import Dataset
    from wsseg_training.engine.loop import resolve_device
    from wsseg_training.engine.run_dir import RunDir
    from wsseg_training.evaluation.evaluate import BundlePredictor, TorchPredictor

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    dataset = Dataset(args.data)
    run_dir = RunDir(args.run) if args.run is not None else None
    jobs = []  # (predictor, source, key suffix)
    if args.bundle is not None:
        predictor = BundlePredictor(args.bundle, engine=args.engine)
        jobs.append((predictor, str(Path(args.bundle).resolve()), "-onnx"))
    else:
        if run_dir is None:
            raise ValueError("give --run RUN (PyTorch model) or --bundle BUNDLE (ONNX Runtime)")
        model_path = run_dir.model if run_dir.model.is_file() else run_dir.last
        device = resolve_device(args.device)
        jobs.append((TorchPredictor.from_checkpoint(model_path, device), str(model_path.resolve()), ""))
        jobs += extra_predictors(run_dir, device)
    for predictor, source, key_suffix in jobs:
        _evaluate(args, dataset, run_dir, predictor, source, key_suffix)
    return 0


def extra_predictors(run_dir: RunDir, device: torch.device) -> list[tuple[Predictor, str, str]]:
    """The further inference modes the run's method declares (``Method.offline_predictors``; 1T1C: ``-full``)."""
    from wsseg_training.checkpoint import load_checkpoint
    from wsseg_training.methods import METHODS

    if not run_dir.last.is_file():
        return []
    method = METHODS.get(str(load_checkpoint(run_dir.last).get("provenance", {}).get("method")))
    if method is None:
        return []
    source = str(run_dir.last.resolve())
    predictors = method.offline_predictors(run_dir.last, device)
    return [(predictor, source, suffix) for suffix, predictor in predictors.items()]


def _evaluate(args: argparse.Namespace, dataset: Dataset, run_dir: RunDir | None, predictor: Predictor, source: str,
              key_suffix: str) -> None:
    """Evaluate one predictor; its report goes to ``--out`` (+ ``key_suffix`` for extra modes) or RUN/eval/."""
    from wsseg_training.evaluation.evaluate import evaluate_split
    from wsseg_training.evaluation.report import write_report

    out = args.out if key_suffix in ("", "-onnx") or args.out is None else Path(f"{args.out}{key_suffix}")
    if out is None:
        if run_dir is None:
            raise ValueError("--out is required when evaluating a bundle without --run")
        out = run_dir.root / "eval" / f"{args.split}{key_suffix}"
    result = evaluate_split(predictor, dataset, args.split, keep=args.render, progress=not args.no_progress)
    metrics = write_report(result, dataset, out, extra={"model": source, "dataset": str(dataset.root.resolve())})
    if run_dir is not None:
        _merge_metrics(run_dir.metrics, f"{args.split}{key_suffix}", metrics)
    print(f"{args.split} ({predictor.name}): mIoU {100 * result.confusion.miou():.1f}%, overall accuracy "
          f"{100 * result.confusion.overall_accuracy():.1f}% over {len(result.scenes)} scenes / "
          f"{result.confusion.total:,} points -> {Path(out) / 'report.md'}")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate a trained run or a model bundle on a dataset split (mIoU, report)",
        description="Per-point predictions on the original points of every scene of SPLIT, one confusion matrix "
                    "over all of them: mIoU, per-class IoU, overall accuracy. Writes metrics.json, report.md, "
                    "confusion.png and pictures of a few scenes to --out (default RUN/eval/SPLIT[-onnx]) and "
                    "adds the figures to RUN/metrics.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--run", type=Path, default=None, help="run directory (model.pt, else checkpoints/last.pt)")
    parser.add_argument("--data", required=True, type=Path, help="dataset directory")
    parser.add_argument("--split", default="val")
    parser.add_argument("--bundle", type=Path, default=None, help="evaluate this model bundle through ONNX Runtime")
    parser.add_argument("--engine", default="auto", help="bundle engine (auto, onnxruntime-cpu, ...)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="PyTorch device")
    parser.add_argument("--out", type=Path, default=None, help="report directory")
    parser.add_argument("--render", type=int, default=3, help="scenes to render (prediction vs ground truth)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.set_defaults(handler=run)
