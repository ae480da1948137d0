"""Synthetic-to-real LiDAR transfer: train on synthetic outdoor scans, test on the 4 real SemanticKITTI scans.

Training data: ``--scans`` synthetic streets (``OutdoorConfig()``, ray-cast 64-beam LiDAR, the 10
``synthetic_outdoor`` classes, seed 0; 80 % train / 20 % val).  Test data: every scan in
``../shared/data/semantickitti`` (4 scans, HDL-64E), its 19 classes mapped by name onto the 10 synthetic
ones (the 9 others -- bicycle, motorcycle, truck, other-vehicle, bicyclist, motorcyclist, parking,
other-ground, traffic-sign -- are ignored).  Rows: ``full`` (dense synthetic labels) with each feature set
of ``--feature-sets``, reported on the synthetic val scans (in domain) and on the real scans (transfer),
IoU per class; plus ground / non-ground IoU (road, sidewalk, terrain vs the rest) beside a non-learned
RANSAC ground plane (0.1 m grid, 0.15 m threshold).  Writes ``bench/results/real_sensors_kitti.{json,md}``;
the last line printed is ``RESULT <json>``.  Not a test: never gates CI.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from wsseg_training.data.dataset import Dataset
from wsseg_training.engine.config import config_from_dict
from wsseg_training.engine.loop import Trainer
from wsseg_training.evaluation.evaluate import TorchPredictor
from wsseg_training.evaluation.metrics import ConfusionMatrix
from wsseg_training.methods import FullMethod

from wsseg.core import geometry
from wsseg.core.classes import IGNORE_INDEX, SEMANTIC_KITTI19, SYNTHETIC_OUTDOOR
from wsseg.core.scene import Scene
from wsseg.core.voxelize import voxelize

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
KITTI = REPO.parent / "shared" / "data" / "semantickitti"
GROUND = ("road", "sidewalk", "terrain")


def kitti_to_synthetic(semantic: np.ndarray) -> np.ndarray:
    """(N,) SemanticKITTI-19 ids -> synthetic_outdoor ids by class name, IGNORE_INDEX for the rest."""
    table = np.full(SEMANTIC_KITTI19.num_classes + 1, IGNORE_INDEX, dtype=np.int64)
    for k, name in enumerate(SEMANTIC_KITTI19.names):
        if name in SYNTHETIC_OUTDOOR.names:
            table[k] = SYNTHETIC_OUTDOOR.names.index(name)
    ids = np.asarray(semantic, dtype=np.int64)
    return np.where(ids >= 0, table[np.clip(ids, 0, SEMANTIC_KITTI19.num_classes)], IGNORE_INDEX)


def real_scans() -> list[Scene]:
    from wsseg_training.data.readers.semantickitti import SemanticKITTIReader

    out = []
    for item in SemanticKITTIReader(KITTI):
        scene = item.scene
        out.append(Scene(xyz=scene.xyz, intensity=scene.intensity,
                         semantic=kitti_to_synthetic(scene.semantic).astype(np.int16)))  # type: ignore[arg-type]
    return out


def ground_of(labels: np.ndarray) -> np.ndarray:
    """(N,) 1 where a synthetic_outdoor label is a ground class, 0 elsewhere, -1 where ignored."""
    ground = np.isin(labels, [SYNTHETIC_OUTDOOR.names.index(n) for n in GROUND]).astype(np.int64)
    return np.where(np.asarray(labels) >= 0, ground, -1)


def ransac_ground(scene: Scene, voxel_m: float = 0.1, threshold_m: float = 0.15) -> np.ndarray:
    grid = voxelize(scene.xyz, voxel_m)
    plane = geometry.fit_support_plane(geometry.voxel_centroids(grid, scene.xyz),
                                       geometry.PlaneParams(threshold_m=threshold_m))
    return (np.abs(plane.signed_distance(scene.xyz)) <= threshold_m).astype(np.int64)


def score(predict: Any, scenes: list[Scene]) -> dict[str, Any]:
    """mIoU and IoU per class over the 10 classes, and the ground / non-ground IoU."""
    full, ground = ConfusionMatrix(SYNTHETIC_OUTDOOR.num_classes), ConfusionMatrix(2)
    for scene in scenes:
        labels = np.asarray(predict(scene))
        full.add(scene.semantic, labels)  # type: ignore[arg-type]
        ground.add(ground_of(scene.semantic), ground_of(labels))  # type: ignore[arg-type]
    present = full.matrix.sum(axis=1) > 0 if hasattr(full, "matrix") else None
    iou = full.iou()
    out = {"miou": round(full.miou(), 4), "iou": {n: round(float(v), 4) for n, v in
                                                   zip(SYNTHETIC_OUTDOOR.names, iou, strict=True)},
           "ground_iou": round(float(ground.iou()[1]), 4), "nonground_iou": round(float(ground.iou()[0]), 4)}
    if present is not None:
        out["classes_present"] = [n for n, p in zip(SYNTHETIC_OUTDOOR.names, present, strict=True) if p]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scans", type=int, default=10, help="synthetic training streets")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--profile", default="lidar_small")
    parser.add_argument("--voxel", type=float, default=0.10)
    parser.add_argument("--feature-sets", default="offset+intensity;offset+normal+support_height+support_cos",
                        help="';'-separated feature sets, '+'-joined names")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    if not KITTI.is_dir():
        raise SystemExit(f"needs the SemanticKITTI scans in {KITTI}")
    from wsseg_training.data.synth.config import OutdoorConfig
    from wsseg_training.data.synth.generate import write_synthetic_dataset

    work = args.work or Path(tempfile.mkdtemp(prefix="wsseg_kitti_"))
    started, load_start = time.perf_counter(), os.getloadavg()
    if not (work / "synthetic" / "dataset.yaml").is_file():
        write_synthetic_dataset(work / "synthetic", OutdoorConfig(), scenes=args.scans, seed=args.seed)
    synthetic = Dataset(work / "synthetic")
    synthetic_val = [synthetic.load(n) for n in synthetic.scene_names("val")]
    real = real_scans()
    rows: dict[str, Any] = {"ransac_ground": {
        "synthetic_val": score(lambda s: np.where(ransac_ground(s) == 1, SYNTHETIC_OUTDOOR.names.index("road"),
                                                  SYNTHETIC_OUTDOOR.names.index("building")), synthetic_val),
        "real": score(lambda s: np.where(ransac_ground(s) == 1, SYNTHETIC_OUTDOOR.names.index("road"),
                                         SYNTHETIC_OUTDOOR.names.index("building")), real)}}
    for features in args.feature_sets.split(";"):
        names = features.split("+")
        config = {"seed": args.seed, "profile": args.profile, "device": "cpu",
                  "data": {"voxel_size_m": args.voxel, "features": names, "crop_max_points": 250_000,
                           "batch_scenes": 2},
                  "optim": {"lr": 0.004, "warmup_steps": max(1, args.steps // 20)},
                  "train": {"steps": args.steps, "checkpoint_every_steps": 0, "log_every_steps": 50, "amp": False}}
        run = work / f"full_{'_'.join(names)}"
        start = time.perf_counter()
        Trainer(config_from_dict(config), FullMethod(synthetic.classes), synthetic, run, progress=False).run()
        predictor = TorchPredictor.from_checkpoint(run / "model.pt")
        rows[f"full[{features}]"] = {"train_s": round(time.perf_counter() - start),
                                     "synthetic_val": score(predictor.predict, synthetic_val),
                                     "real": score(predictor.predict, real)}
        print(f"{features}: {rows[f'full[{features}]']}", flush=True)
    load_end = os.getloadavg()
    result = {"rows": rows, "wall_s": round(time.perf_counter() - started), "settings": {
        "scans": args.scans, "steps": args.steps, "profile": args.profile, "voxel_size_m": args.voxel,
        "synthetic_split": {"train": len(synthetic.scene_names("train")), "val": len(synthetic_val)},
        "real_scans": len(real)},
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "loadavg_start": [round(v, 2) for v in load_start], "loadavg_end": [round(v, 2) for v in load_end]}}
    lines = ["# Synthetic outdoor -> real SemanticKITTI (transfer, reported as measured)", "",
             f"{args.scans} synthetic streets ({result['settings']['synthetic_split']}), `{args.profile}` at "
             f"{args.voxel:g} m, {args.steps} steps of 2 scans, 1 thread; real: {len(real)} SemanticKITTI scans, 19 "
             f"classes mapped by name onto the 10 synthetic ones.  Machine: {result['machine']['cpu']}, "
             f"{os.cpu_count()} shared cores (load {load_start[0]:.1f} -> {load_end[0]:.1f}); wall "
             f"{result['wall_s'] / 60:.0f} min.  Command: `python bench/real_sensors_kitti.py "
             f"{' '.join(sys.argv[1:])}`.", "",
             "| row | synthetic val mIoU % | real mIoU % | real ground IoU % | real non-ground IoU % |",
             "|---|---:|---:|---:|---:|"]
    for key, row in rows.items():
        syn = "n/a (2 classes)" if key == "ransac_ground" else f"{100 * row['synthetic_val']['miou']:.1f}"
        real_miou = "n/a" if key == "ransac_ground" else f"{100 * row['real']['miou']:.1f}"
        lines.append(f"| {key} | {syn} | {real_miou} | {100 * row['real']['ground_iou']:.1f} | "
                     f"{100 * row['real']['nonground_iou']:.1f} |")
    lines += ["", "Real IoU per class:", ""]
    for key, row in rows.items():
        if key != "ransac_ground":
            lines.append(f"- {key}: {row['real']['iou']}")
    table = "\n".join(lines) + "\n"
    print(table)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "real_sensors_kitti.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.results / "real_sensors_kitti.md").write_text(table)
    print("RESULT " + json.dumps({k: {"real_miou": v["real"]["miou"], "real_ground_iou": v["real"]["ground_iou"]}
                                  for k, v in rows.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
