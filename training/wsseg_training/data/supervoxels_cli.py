"""``wsseg data supervoxels``: over-segment every scene of a dataset and record the quality.

Stores an (N,) int32 ``supervoxel`` field into each scene record (rewritten
atomically) and writes ``supervoxels.yaml`` beside ``dataset.yaml`` with the
method, its parameters and the metrics.  Scenes that already carry super-voxels
(e.g. ScanNet mesh segments) are kept unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from wsseg.core.scene import save_scene
from wsseg_training.data.dataset import Dataset
from wsseg_training.data.supervoxel_metrics import SupervoxelMetrics, evaluate_supervoxels, pool_metrics
from wsseg_training.data.supervoxels import METHODS, SupervoxelParams, compute_supervoxels

log = logging.getLogger(__name__)

SUPERVOXELS_YAML = "supervoxels.yaml"
SUPERVOXELS_FORMAT_VERSION = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = SupervoxelParams()
    parser = subparsers.add_parser(
        "supervoxels", help="over-segment every scene into super-voxels (stored in the scene records)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", required=True, type=Path, help="dataset directory")
    parser.add_argument("--method", choices=METHODS, default=defaults.method)
    parser.add_argument("--voxel-size-m", type=float, default=defaults.voxel_size_m,
                        help="pre-grid edge in metres, 0 = raw points (default %(default)s)")
    parser.add_argument("--k-neighbours", type=int, default=defaults.k_neighbours, help="graph degree")
    parser.add_argument("--normal-neighbours", type=int, default=None,
                        help="k of the PCA normals (default: felzenszwalb 64, slic 16)")
    parser.add_argument("--normal-weight", type=float, default=defaults.normal_weight)
    parser.add_argument("--colour-weight", type=float, default=defaults.colour_weight)
    parser.add_argument("--threshold", type=float, default=defaults.threshold,
                        help="felzenszwalb: larger = bigger super-voxels (default %(default)s)")
    parser.add_argument("--min-points", type=int, default=defaults.min_points, help="smallest super-voxel, points")
    parser.add_argument("--max-edge-m", type=float, default=None, help="drop k-NN edges longer than this")
    parser.add_argument("--seed-spacing-m", type=float, default=defaults.seed_spacing_m,
                        help="slic: seed grid spacing = target super-voxel size (default %(default)s)")
    parser.add_argument("--slic-iterations", type=int, default=defaults.slic_iterations)
    parser.add_argument("--spatial-weight", type=float, default=defaults.spatial_weight)
    parser.add_argument("--regularization", type=float, default=defaults.regularization,
                        help="cutpursuit: l0 penalty per cut edge, larger = bigger super-voxels (default %(default)s)")
    parser.add_argument("--split", default=None, help="only this split (default: every scene)")
    parser.add_argument("--boundary-tolerance-m", type=float, default=None,
                        help="boundary-recall tolerance, metres (default: the pre-grid size)")
    parser.add_argument("--overwrite", action="store_true", help="replace super-voxels a scene already has")
    parser.set_defaults(handler=run)


def _params_from_args(args: argparse.Namespace) -> SupervoxelParams:
    names = [f.name for f in dataclasses.fields(SupervoxelParams)]
    return SupervoxelParams(**{name: getattr(args, name) for name in names})


def run(args: argparse.Namespace) -> int:
    dataset = Dataset(args.data)
    params = _params_from_args(args)
    tolerance = params.voxel_size_m if args.boundary_tolerance_m is None else args.boundary_tolerance_m
    names = dataset.scene_names(args.split)
    out_path = dataset.root / SUPERVOXELS_YAML
    previous: dict[str, Any] = {}
    if out_path.is_file():
        previous = (yaml.safe_load(out_path.read_text()) or {}).get("scenes", {}) or {}
    records: dict[str, dict[str, Any]] = {}
    kept = 0
    seconds = 0.0
    wall_start = time.perf_counter()
    for name in tqdm(names, desc="supervoxels", unit="scene"):
        scene = dataset.load(name)
        if scene.supervoxel is not None and not args.overwrite:
            kept += 1
            source = previous.get(name, {}).get("source", "existing")
            records[name] = {"source": source}
            if scene.semantic is not None or scene.instance is not None:
                metrics = evaluate_supervoxels(scene.xyz, scene.supervoxel, scene.semantic, scene.instance,
                                               tolerance_m=tolerance)
                records[name]["metrics"] = metrics.to_dict()
            continue
        start = time.perf_counter()
        labels = compute_supervoxels(scene.xyz, scene.rgb, params)
        elapsed = time.perf_counter() - start
        seconds += elapsed
        save_scene(dataset.scene_path(name), dataclasses.replace(scene, supervoxel=labels),
                   num_classes=dataset.classes.num_classes)
        records[name] = {"source": params.method, "seconds": round(elapsed, 3)}
        if scene.semantic is not None or scene.instance is not None:
            metrics = evaluate_supervoxels(scene.xyz, labels, scene.semantic, scene.instance, tolerance_m=tolerance)
            records[name]["metrics"] = metrics.to_dict()
        else:
            records[name]["num_supervoxels"] = int(labels.max()) + 1
    all_metrics = [SupervoxelMetrics(**r["metrics"]) for r in records.values() if "metrics" in r]
    pooled = pool_metrics(all_metrics) if all_metrics else None
    document = {
        "format_version": SUPERVOXELS_FORMAT_VERSION,
        "method": params.method,
        "params": params.to_dict(),
        "metrics_definition": "wsseg_training.data.supervoxel_metrics (ground truth = (semantic, instance) segments)",
        "boundary_tolerance_m": tolerance,
        "summary": pooled.to_dict() if pooled else None,
        "scenes": {**{k: v for k, v in previous.items() if k not in records}, **records},
    }
    tmp = out_path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(document, sort_keys=False))
    tmp.replace(out_path)
    done = len(names) - kept
    line = (f"supervoxels: {done} scene(s) segmented with {params.method} ({seconds:.1f} s compute, "
            f"{time.perf_counter() - wall_start:.1f} s total), {kept} kept")
    if pooled is not None:
        line += (f"; USE {pooled.undersegmentation_error:.4f}, ASA {pooled.achievable_accuracy:.4f}, "
                 f"boundary recall {pooled.boundary_recall:.3f} (tol {tolerance:g} m), "
                 f"mean size {pooled.mean_size:.0f} pts")
    print(line)
    print(f"wrote {out_path}")
    return 0
