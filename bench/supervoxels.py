"""Super-voxel benchmark: Felzenszwalb, SLIC/VCCS-style and cut-pursuit on real mOSD frames and synthetic rooms.

For each method (``wsseg data supervoxels`` defaults of :class:`SupervoxelParams`, 2 cm pre-grid) and each
data set: under-segmentation error (USE), achievable segmentation accuracy (ASA), boundary recall and
precision (tolerance = the 2 cm pre-grid), super-voxels per scene and seconds per scene; then 1T1C's Y_0
with one simulated click per object instance (seed 0): the share of points it labels and its accuracy
against ground truth (the click-expansion rule of ``OtocConfig()``: object clicks limited to 0.5 m).

Data: ``--mosd-frames`` of the 45 mOSD ``learn`` frames (evenly spaced) and ``--rooms`` synthetic indoor
rooms (``IndoorConfig()``, seed 0; Open3D ray casting).  Writes ``bench/results/supervoxels.json`` + ``.md``;
the last line printed is ``RESULT <json>``.  Not a test: never gates CI.
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
from typing import Any

import numpy as np
from wsseg_training.data.dataset import Dataset, DatasetWriter
from wsseg_training.data.supervoxel_metrics import evaluate_supervoxels, pool_metrics
from wsseg_training.data.supervoxels import METHODS, SupervoxelParams, compute_supervoxels
from wsseg_training.labels import simulate_clicks
from wsseg_training.methods.otoc import initial_pseudo_labels
from wsseg_training.methods.otoc.config import OtocConfig

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
MOSD = REPO.parent / "shared" / "data" / "mosd" / "learn"


def mosd_dataset(root: Path, frames: int) -> Dataset:
    from wsseg_training.data.readers.mosd import MOSDReader

    reader = MOSDReader(MOSD, val_frames=0)
    keep = {int(i) for i in np.linspace(0, len(reader) - 1, frames).round()}
    with DatasetWriter(root, reader.name, reader.classes, sensor=reader.sensor) as writer:
        for position, item in enumerate(reader):
            if position in keep:
                writer.add(item.name, item.scene, split="train", **item.metadata)
    return Dataset(root)


def rooms_dataset(root: Path, rooms: int) -> Dataset:
    from wsseg_training.data.synth.config import IndoorConfig
    from wsseg_training.data.synth.generate import write_synthetic_dataset

    write_synthetic_dataset(root, IndoorConfig(), scenes=rooms, seed=0)
    return Dataset(root)


def measure(dataset: Dataset, method: str) -> dict[str, Any]:
    """Metrics of one method over every scene of ``dataset`` and Y_0 from one click per object."""
    params = SupervoxelParams(method=method)
    names = dataset.scene_names()
    clicks = simulate_clicks(dataset, names, seed=0)
    per_scene, seconds, counts = [], [], []
    labelled = correct = total = 0
    for name in names:
        scene = dataset.load(name)
        start = time.perf_counter()
        sv = compute_supervoxels(scene.xyz, scene.rgb, params)
        seconds.append(time.perf_counter() - start)
        counts.append(int(sv.max()) + 1)
        per_scene.append(evaluate_supervoxels(scene.xyz, sv, scene.semantic, scene.instance,
                                              tolerance_m=params.voxel_size_m))
        y0 = initial_pseudo_labels(clicks.point_labels(name, scene.num_points), sv, scene.xyz, dataset.classes,
                                   OtocConfig())
        total += scene.num_points
        labelled += int((y0 >= 0).sum())
        correct += int(((y0 >= 0) & (y0 == scene.semantic)).sum())
    pooled = pool_metrics(per_scene).to_dict()
    return {**{k: round(v, 4) if isinstance(v, float) else v for k, v in pooled.items()},
            "supervoxels_per_scene": round(float(np.mean(counts)), 1),
            "seconds_per_scene": round(float(np.mean(seconds)), 2),
            "y0_coverage": round(labelled / max(1, total), 4), "y0_accuracy": round(correct / max(1, labelled), 4),
            "params": params.to_dict()}


def markdown(result: dict[str, Any]) -> str:
    lines = ["# Super-voxels: USE / ASA / boundary recall and 1T1C's Y_0", "", result["note"], ""]
    for data, rows in result["datasets"].items():
        lines += [f"## {data} ({rows['scenes']} scenes)", "",
                  "| method | super-voxels / scene | USE | ASA | boundary recall | boundary precision | "
                  "Y_0 coverage % | Y_0 accuracy % | s / scene |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for method in METHODS:
            r = rows.get(method)
            if r:
                lines.append(f"| {method} | {r['supervoxels_per_scene']:.0f} | {r['undersegmentation_error']:.3f} | "
                             f"{r['achievable_accuracy']:.3f} | {r['boundary_recall']:.3f} | "
                             f"{r['boundary_precision']:.3f} | {100 * r['y0_coverage']:.1f} | "
                             f"{100 * r['y0_accuracy']:.1f} | {r['seconds_per_scene']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mosd-frames", type=int, default=12)
    parser.add_argument("--rooms", type=int, default=4)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="wsseg_sv_"))
    started, load_start = time.perf_counter(), os.getloadavg()
    datasets: dict[str, Dataset] = {}
    if MOSD.is_dir() and args.mosd_frames > 0:
        datasets["mOSD (real Kinect frames)"] = mosd_dataset(work / "mosd", args.mosd_frames)
    if args.rooms > 0:
        datasets["synthetic indoor rooms"] = rooms_dataset(work / "rooms", args.rooms)
    out: dict[str, Any] = {}
    for label, dataset in datasets.items():
        out[label] = {"scenes": len(dataset.scene_names())}
        for method in args.methods.split(","):
            out[label][method] = measure(dataset, method)
            print(f"{label} / {method}: {out[label][method]}", flush=True)
    load_end = os.getloadavg()
    result = {"datasets": out, "wall_s": round(time.perf_counter() - started),
              "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "loadavg_start": [round(v, 2) for v in load_start],
                          "loadavg_end": [round(v, 2) for v in load_end]}}
    result["note"] = (f"Defaults of `SupervoxelParams` per method (2 cm pre-grid), boundary tolerance 2 cm; Y_0 = one "
                      f"simulated click per object instance (seed 0) expanded by `OtocConfig()`'s rule.  Machine: "
                      f"{result['machine']['cpu']}, {os.cpu_count()} cores shared with other jobs (load average "
                      f"{load_start[0]:.1f} -> {load_end[0]:.1f}: seconds are upper bounds); wall "
                      f"{result['wall_s'] / 60:.0f} min.  Command: `python bench/supervoxels.py "
                      f"{' '.join(sys.argv[1:])}`.")
    table = markdown(result)
    print(table)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "supervoxels.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.results / "supervoxels.md").write_text(table)
    print("RESULT " + json.dumps({d: {m: {k: r[k] for k in ("achievable_accuracy", "undersegmentation_error",
                                                            "boundary_recall", "y0_accuracy", "y0_coverage")}
                                      for m, r in rows.items() if m != "scenes"} for d, rows in out.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
