"""``wsseg infer``: label the points of a PLY / PCD / NPZ file with a model bundle."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from wsseg.core.atomic import atomic_path
from wsseg.core.backend import name as table_backend
from wsseg.core.backend import set_threads as set_preprocess_threads
from wsseg.core.classes import UNLABELLED_ID
from wsseg.core.cloud_io import PointCloudFile, read_cloud, write_cloud
from wsseg.runtime.engines import ENGINE_NAMES
from wsseg.runtime.segmenter import Segmenter

CLOUD_SUFFIXES = (".ply", ".pcd", ".npz")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "infer", help="segment a point-cloud file (PLY/PCD/NPZ) with a model bundle",
        description="Segment a cloud file; writes the points with 'label' (uint16, 65535 = invalid) "
                    "and 'confidence' (float32) fields in the output file's format, plus 'instance' (uint32, "
                    "0 = none) when the bundle has an instance_offsets output (WS3D).",
    )
    parser.add_argument("--model", required=True, help="model bundle directory (from wsseg export)")
    parser.add_argument("--in", dest="inputs", required=True, nargs="+", help="input cloud file(s)")
    parser.add_argument("--out", required=True,
                        help="output file (one input) or directory (several inputs); suffix .ply, .pcd or .npz")
    parser.add_argument("--engine", default="auto", choices=ENGINE_NAMES)
    parser.add_argument("--preprocess-threads", type=_positive_int, default=2, metavar="N",
                        help="threads that build each cloud's index tables and features, capped at the CPU count "
                             "(default 2; the labels do not depend on it)")
    parser.set_defaults(handler=run_infer)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _output_path(out: Path, source: Path, several: bool) -> Path:
    if several or out.is_dir():
        return out / f"{source.stem}_labelled{source.suffix}"
    return out


def write_labelled_cloud(path: Path, cloud: PointCloudFile, labels: np.ndarray, confidence: np.ndarray,
                         instance: np.ndarray | None = None) -> Path:
    """Write the cloud with predicted ``label`` (N,) uint16 and ``confidence`` (N,) float32 fields, and
    ``instance`` (N,) uint32 (0 = none) when given.

    .ply / .pcd keep the layout (organized width x height) and colour/intensity;
    .npz holds arrays ``xyz``, ``label``, ``confidence`` (+ ``instance``, ``rgb``, ``intensity``), which
    ``read_cloud`` reads back.  Every format is written to a temporary file and renamed over ``path`` when complete.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".npz":
        arrays = {"xyz": cloud.xyz, "label": labels, "confidence": confidence}
        arrays.update({k: v for k, v in (("instance", instance), ("rgb", cloud.rgb), ("intensity", cloud.intensity))
                       if v is not None})
        with atomic_path(path) as tmp:
            np.savez_compressed(tmp, **arrays)
        return path
    out = PointCloudFile(xyz=cloud.xyz, rgb=cloud.rgb, intensity=cloud.intensity, label=labels, instance=instance,
                         fields={"confidence": confidence}, width=cloud.width, height=cloud.height)
    return write_cloud(path, out)


def run_infer(args: argparse.Namespace) -> int:
    """Segment every input file; prints one line per file (read / segment stages / write ms) and a total."""
    started = time.perf_counter()
    set_preprocess_threads(args.preprocess_threads)
    segmenter = Segmenter(args.model, engine=args.engine)
    load_ms = (time.perf_counter() - started) * 1e3
    inputs = [Path(p) for p in args.inputs]
    out = Path(args.out)
    if len(inputs) > 1:
        out.mkdir(parents=True, exist_ok=True)
    total_points, total_ms = 0, 0.0
    for source in inputs:
        if source.suffix.lower() not in CLOUD_SUFFIXES:
            raise ValueError(f"{source}: unsupported cloud file type (expected one of {CLOUD_SUFFIXES})")
        t0 = time.perf_counter()
        cloud = read_cloud(source)
        t1 = time.perf_counter()
        try:
            result = segmenter.run(cloud.xyz, rgb=cloud.rgb, intensity=cloud.intensity)
        except ValueError as exc:  # e.g. a feature the model needs is missing from this file
            raise ValueError(f"{source}: {exc}") from None
        t2 = time.perf_counter()
        target = _output_path(out, source, len(inputs) > 1)
        write_labelled_cloud(target, cloud, result.labels, result.confidence, result.instance)
        t3 = time.perf_counter()
        total_ms += (t2 - t1) * 1e3
        valid = int(np.count_nonzero(result.labels != UNLABELLED_ID))
        total_points += cloud.xyz.shape[0]
        stages = result.timings_ms
        print(f"{source} -> {target}: {valid}/{cloud.xyz.shape[0]} points labelled; read {(t1 - t0) * 1e3:.1f} ms, "
              f"segment {stages['total']:.1f} ms (pre {stages['pre']:.1f}, inference {stages['inference']:.1f}, "
              f"post {stages['post']:.1f}), write {(t3 - t2) * 1e3:.1f} ms")
    wall_s = time.perf_counter() - started
    print(f"done: {len(inputs)} file(s), {total_points} points in {wall_s:.2f} s "
          f"(model load {load_ms:.0f} ms, segmentation {total_ms:.1f} ms, "
          f"{total_ms / max(len(inputs), 1):.1f} ms per file; engine {segmenter.engine.name}, "
          f"tables {table_backend()})")
    return 0
