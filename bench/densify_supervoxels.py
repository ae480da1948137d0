"""Super-voxels for Densify: our default over-segmentation vs GrowSP-style VCCS + region growing.

DYL clusters super-voxels, not points (Supp. A.1), so the super-voxels bound what its primitives can
express: a super-voxel that straddles two objects gives all its points one primitive.  This measures, on
synthetic indoor rooms (or ``--data``), for

* ``default``: :func:`compute_supervoxels` with its defaults (what ``wsseg data supervoxels`` writes:
  Felzenszwalb on a 2 cm grid),
* ``growsp``: :func:`growsp_supervoxels` (VCCS at 5 cm, 0.5 m seeds, region growing at 5°, small ones dropped),

under-segmentation error (USE), achievable segmentation accuracy (ASA), boundary recall/precision, super-voxels
per room, mean size, points left without a super-voxel, and time per room; against ground-truth objects
(``(semantic, instance)`` pairs; :mod:`wsseg_training.data.supervoxel_metrics`).  Writes
``bench/results/densify_supervoxels.{json,md}``, last line ``RESULT <json>``.  Not a test.
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

import numpy as np
import torch
from tqdm import tqdm
from wsseg_training.data.dataset import Dataset
from wsseg_training.data.supervoxel_metrics import evaluate_supervoxels, pool_metrics
from wsseg_training.data.supervoxels import SupervoxelParams, compute_supervoxels
from wsseg_training.methods.densify.growsp_supervoxels import GrowspParams, growsp_supervoxels

RESULTS = Path(__file__).resolve().parent / "results"


def methods(smoothness_deg: tuple[float, ...]) -> dict:
    out = {"default": lambda xyz, rgb: compute_supervoxels(xyz, rgb, SupervoxelParams())}
    for angle in smoothness_deg:
        out[f"growsp {angle:g}°"] = (lambda a: lambda xyz, rgb: growsp_supervoxels(
            xyz, rgb, GrowspParams(smoothness_deg=a)))(angle)
    return out


def measure(dataset: Dataset, smoothness_deg: tuple[float, ...]) -> dict:
    out = {}
    for name, build in methods(smoothness_deg).items():
        per_scene, seconds, unassigned, counts = [], 0.0, 0, []
        total = 0
        for scene_name in tqdm(dataset.scene_names(), desc=name, unit="scene"):
            scene = dataset.load(scene_name)
            start = time.perf_counter()
            sv = build(scene.xyz, scene.rgb)
            seconds += time.perf_counter() - start
            unassigned += int((sv < 0).sum())
            total += sv.size
            counts.append(int(np.unique(sv[sv >= 0]).size))
            per_scene.append(evaluate_supervoxels(scene.xyz, sv, scene.semantic, scene.instance, tolerance_m=0.05))
        pooled = pool_metrics(per_scene).to_dict()
        pooled.pop("mean_size")  # counts every point without a super-voxel as a super-voxel of its own
        out[name] = {**{k: round(v, 4) if isinstance(v, float) else v for k, v in pooled.items()},
                     "supervoxels_per_scene": round(float(np.mean(counts)), 1),
                     "points_per_supervoxel": round((total - unassigned) / max(sum(counts), 1), 1),
                     "unassigned_fraction": round(unassigned / max(total, 1), 4),
                     "seconds_per_scene": round(seconds / len(counts), 2)}
    return out


def markdown(result: dict) -> str:
    lines = ["# Densify super-voxels: default vs GrowSP-style", "", result["note"], "",
             "| super-voxels | USE ↓ | ASA ↑ | boundary recall (5 cm) | boundary precision | per room | points per "
             "super-voxel | points without one | s / room |", "|---|---|---|---|---|---|---|---|---|"]
    for name, m in result["methods"].items():
        lines.append(f"| {name} | {m['undersegmentation_error']:.4f} | {m['achievable_accuracy']:.4f} | "
                     f"{m['boundary_recall']:.3f} | {m['boundary_precision']:.3f} | {m['supervoxels_per_scene']:.0f} | "
                     f"{m['points_per_supervoxel']:.0f} | {100 * m['unassigned_fraction']:.2f} % | "
                     f"{m['seconds_per_scene']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="dataset directory (default: synthetic rooms)")
    parser.add_argument("--scenes", type=int, default=15, help="synthetic rooms to generate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoothness-deg", type=float, nargs="+", default=[5.0, 3.0],
                        help="region growing angles to measure (GrowSP: ScanNet 5, S3DIS 3)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    started = time.perf_counter()
    root = args.data
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="wsseg_densify_sv_")) / "indoor"
        from wsseg_training.data.synth.config import IndoorConfig  # Open3D: import on use
        from wsseg_training.data.synth.generate import write_synthetic_dataset

        write_synthetic_dataset(root, IndoorConfig(), scenes=args.scenes, seed=args.seed)
    dataset = Dataset(root)
    result = {"dataset": str(args.data or f"synthetic indoor, {args.scenes} rooms, seed {args.seed}"),
              "methods": measure(dataset, tuple(args.smoothness_deg)), "smoothness_deg": args.smoothness_deg}
    result["wall_s"] = round(time.perf_counter() - started, 1)
    load_end = os.getloadavg()
    result["machine"] = {"device": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                         "loadavg_start": [round(v, 2) for v in load_start],
                         "loadavg_end": [round(v, 2) for v in load_end]}
    result["note"] = (f"{result['dataset']}: {len(dataset.scene_names())} scenes, ground truth = objects "
                      f"(semantic, instance).  GrowSP-style: VCCS at 5 cm / 0.5 m seeds merged with region growing at "
                      f"the angle shown, super-voxels < 10 points dropped.  Machine: "
                      f"{result['machine']['device']}, {os.cpu_count()} cores shared with other jobs (load "
                      f"{load_start[0]:.1f} -> {load_end[0]:.1f}), {args.threads} thread; wall "
                      f"{result['wall_s'] / 60:.1f} min.")
    table = markdown(result)
    print(table)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "densify_supervoxels.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.results / "densify_supervoxels.md").write_text(table)
    print("RESULT " + json.dumps({k: {m: v[m] for m in ("undersegmentation_error", "achievable_accuracy",
                                                         "supervoxels_per_scene")}
                                  for k, v in result["methods"].items()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
