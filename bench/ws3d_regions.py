"""WS3D regions: region growing on normals and curvature (the paper's) against our super-voxels.

WS3D §3.1 over-segments each scene into regions by region growing on normals and curvature (PCL; GrowSP's
parameters, METHOD_NOTES §4.2).  The issue allows our existing super-voxels instead if they are at least as
pure.  This benchmark measures, on the benchmark sets (synthetic indoor RGB-D rooms and outdoor LiDAR scans,
the generators' default configs), for every scene: under-segmentation error (USE, lower = purer),
achievable segmentation accuracy (ASA, higher = purer), boundary recall / precision, regions per scene, mean
size and compute time -- against the ground-truth objects (``wsseg_training.data.supervoxel_metrics``).

Candidates: ``supervoxels`` (``compute_supervoxels`` defaults = ``wsseg data supervoxels``: Felzenszwalb on a
2 cm pre-grid, normals + colour), ``region_growing`` (5 cm grid, 5 degrees, 15 neighbours: GrowSP's ScanNet
setting) and ``region_growing_3deg`` (S3DIS's 3 degrees).  Writes ``bench/results/ws3d_regions.{json,md}``
and prints a last line ``RESULT <json>``.  Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm
from wsseg_training.data.dataset import Dataset
from wsseg_training.data.region_growing import RegionGrowingParams, region_growing
from wsseg_training.data.supervoxel_metrics import evaluate_supervoxels, pool_metrics
from wsseg_training.data.supervoxels import compute_supervoxels

RESULTS = Path(__file__).resolve().parent / "results"
CANDIDATES = {
    "supervoxels": lambda scene: compute_supervoxels(scene.xyz, scene.rgb),
    "region_growing": lambda scene: region_growing(scene.xyz, RegionGrowingParams()),
    "region_growing_3deg": lambda scene: region_growing(scene.xyz, RegionGrowingParams(smoothness_deg=3.0)),
}


def make_dataset(kind: str, scenes: int, seed: int, work: Path) -> Dataset:
    from wsseg_training.data.synth.config import IndoorConfig, OutdoorConfig  # Open3D: import on use
    from wsseg_training.data.synth.generate import write_synthetic_dataset

    root = work / kind
    write_synthetic_dataset(root, IndoorConfig() if kind == "indoor" else OutdoorConfig(), scenes=scenes, seed=seed)
    return Dataset(root)


def measure(dataset: Dataset, tolerance_m: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, build in CANDIDATES.items():
        metrics, seconds = [], []
        for scene_name in tqdm(dataset.scene_names(), desc=f"{dataset.info.name} {name}", unit="scene"):
            scene = dataset.load(scene_name)
            start = time.perf_counter()
            labels = build(scene)
            seconds.append(time.perf_counter() - start)
            metrics.append(evaluate_supervoxels(scene.xyz, labels, scene.semantic, scene.instance,
                                                tolerance_m=tolerance_m))
        pooled = pool_metrics(metrics).to_dict()
        out[name] = {**{k: (round(v, 4) if isinstance(v, float) else v) for k, v in pooled.items()},
                     "regions_per_scene": round(float(np.mean([m.num_supervoxels for m in metrics])), 1),
                     "seconds_per_scene": round(float(np.mean(seconds)), 2)}
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = ["# WS3D regions: region growing vs super-voxels", "",
             f"Machine: {result['machine']}; load average at start {result['loadavg_start']}, end "
             f"{result['loadavg_end']} (times are upper bounds on a shared VM); wall {result['wall_s']:.0f} s.",
             f"Scenes per set: {result['scenes']} (seed {result['seed']}); boundary tolerance "
             f"{result['tolerance_m']} m.", "",
             "| set | regions | USE (lower = purer) | ASA (higher = purer) | boundary recall | boundary precision "
             "| regions / scene | mean size (points) | s / scene |",
             "|---|---|---|---|---|---|---|---|---|"]
    for kind, rows in result["sets"].items():
        for name, m in rows.items():
            lines.append(f"| {kind} | {name} | {m['undersegmentation_error']:.4f} | {m['achievable_accuracy']:.4f} | "
                         f"{m['boundary_recall']:.3f} | {m['boundary_precision']:.3f} | {m['regions_per_scene']:.0f} | "
                         f"{m['mean_size']:.0f} | {m['seconds_per_scene']:.1f} |")
    lines += ["", f"Chosen for WS3D: **{result['chosen']}** ({result['reason']})."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=6, help="scenes per set (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sets", default="indoor,outdoor")
    parser.add_argument("--tolerance-m", type=float, default=0.05)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    started, load_start = time.perf_counter(), os.getloadavg()
    result: dict[str, Any] = {"scenes": args.scenes, "seed": args.seed, "tolerance_m": args.tolerance_m,
                              "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.system()}",
                              "loadavg_start": [round(v, 2) for v in load_start], "sets": {}}
    with tempfile.TemporaryDirectory(prefix="ws3d_regions_") as tmp:
        for kind in args.sets.split(","):
            result["sets"][kind] = measure(make_dataset(kind, args.scenes, args.seed, Path(tmp)), args.tolerance_m)
    sets = result["sets"].values()
    purer = all(s["supervoxels"]["undersegmentation_error"] <= s[rg]["undersegmentation_error"]
                and s["supervoxels"]["achievable_accuracy"] >= s[rg]["achievable_accuracy"]
                for s in sets for rg in CANDIDATES if rg.startswith("region_growing"))
    result["chosen"] = "supervoxels" if purer else "region_growing"
    result["reason"] = ("super-voxels have lower USE and higher ASA than both region-growing settings on every set"
                        if purer else "a region-growing setting is purer on at least one set")
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "ws3d_regions.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (args.results / "ws3d_regions.md").write_text(table)
    print(table)
    summary = {k: {n: {"use": m["undersegmentation_error"], "asa": m["achievable_accuracy"]} for n, m in v.items()}
               for k, v in result["sets"].items()}
    print("RESULT " + json.dumps({"chosen": result["chosen"], "sets": summary}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
