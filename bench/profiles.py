"""Profile benchmark: accuracy of the real-time profiles beside ``cpu`` on real sensor data.

For each frame kind it trains each profile with full supervision for the same number of steps
(one thread, same seed, :func:`wsseg_training.fit.fit`) and reports validation mIoU and the
network's ONNX Runtime time on one validation frame:

* ``kitti``: the real SemanticKITTI scans (sequence 00 scans train, the 08 scan validates; offset +
  intensity; ``cpu`` at its 8 cm grid, ``lidar_rt`` at 10 cm);
* ``mosd``: the real mOSD Kinect frames (every third frame validates; offset + rgb; 2 cm).

Real data only (``../shared/data``); the synthetic outdoor / indoor scenes are not run here (time on the
shared 2-core machine).  A short CPU schedule: the numbers rank the profiles, they are not converged.
Writes ``bench/results/profiles.json`` + ``.md``; last line ``RESULT <json>``.  Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from wsseg_export.onnx_export import export_bundle
from wsseg_training.checkpoint import make_checkpoint, save_checkpoint
from wsseg_training.data.readers.mosd import read_frame
from wsseg_training.data.readers.semantickitti import read_scan
from wsseg_training.evaluation.metrics import ConfusionMatrix
from wsseg_training.fit import LabelledInput, fit, predict_points
from wsseg_training.model.profiles import get_profile, unet_config_for
from wsseg_training.model.unet import SparseUNet

from wsseg.core.classes import MOSD, SEMANTIC_KITTI19, ClassTable
from wsseg.core.features import FeatureConfig
from wsseg.core.preprocess import PreprocessConfig, prepare_cloud
from wsseg.core.scene import Scene
from wsseg.runtime.segmenter import Segmenter

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
RESULTS = REPO / "bench" / "results"


def within_range(scene: Scene, range_m: float | None) -> Scene:
    """The points of ``scene`` within ``range_m`` metres of the sensor in the ground plane (all if None)."""
    if range_m is None:
        return scene
    keep = np.hypot(scene.xyz[:, 0], scene.xyz[:, 1]) <= range_m
    return Scene(**{name: values[keep] for name, values in scene.arrays().items()})


def kitti_scenes(range_m: float | None = None) -> tuple[list[Scene], list[Scene]]:
    root = SHARED / "semantickitti" / "sequences"
    def scans(sequence: str) -> list[Scene]:
        return [within_range(read_scan(p, root / sequence / "labels" / f"{p.stem}.label"), range_m)
                for p in sorted((root / sequence / "velodyne").glob("*.bin"))]

    return scans("00"), scans("08")


def mosd_scenes(limit: int) -> tuple[list[Scene], list[Scene]]:
    frames = sorted((SHARED / "mosd" / "learn").glob("*.pcd"))[:limit]
    scenes = [read_frame(p)[0] for p in frames]
    return [s for i, s in enumerate(scenes) if i % 3], [s for i, s in enumerate(scenes) if i % 3 == 0]


def run_case(kind: str, profile: str, train: list[Scene], val: list[Scene], classes: ClassTable,
             features: FeatureConfig, voxel: float, steps: int, workdir: Path) -> dict:
    spec = get_profile(profile)
    config = PreprocessConfig(voxel_size_m=voxel, num_levels=spec.num_levels, features=features)

    def prepared(scene: Scene) -> LabelledInput:
        return LabelledInput(prepare_cloud(config, scene.xyz, rgb=scene.rgb, intensity=scene.intensity),
                             scene.semantic.astype(np.int64))

    torch.manual_seed(0)
    model = SparseUNet(unet_config_for(profile, features.num_channels, classes.num_classes))
    start = time.perf_counter()
    fit(model, [prepared(s) for s in train], steps=steps, lr=1e-2, progress=False)
    train_s = time.perf_counter() - start
    model.eval()
    matrix = ConfusionMatrix(classes.num_classes)
    for scene in val:
        net_input = prepare_cloud(config, scene.xyz, rgb=scene.rgb, intensity=scene.intensity)
        matrix.add(scene.semantic.astype(np.int64), predict_points(model, net_input))
    ckpt = save_checkpoint(workdir / f"{kind}_{profile}.pt", make_checkpoint(model, config, classes,
                                                                            provenance={"profile": profile}))
    bundle = export_bundle(ckpt, workdir / f"{kind}_{profile}")
    segmenter = Segmenter(bundle, engine="onnxruntime-cpu")
    scene = val[0]
    times = [segmenter.run(scene.xyz, rgb=scene.rgb, intensity=scene.intensity).timings_ms for _ in range(4)][1:]
    return {"kind": kind, "profile": profile, "voxel_size_m": voxel, "steps": steps, "train_s": round(train_s, 1),
            "val_miou": round(matrix.miou(), 4), "val_accuracy": round(matrix.overall_accuracy(), 4),
            "val_frames": len(val), "train_frames": len(train),
            **{f"{k}_ms": round(statistics.median(t[k] for t in times), 1) for k in ("pre", "inference", "total")}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--mosd-frames", type=int, default=15)
    parser.add_argument("--kitti-range-m", type=float, default=None,
                        help="keep only KITTI points within this ground-plane range (a smaller, faster run)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not (SHARED / "semantickitti").is_dir() or not (SHARED / "mosd").is_dir():
        raise SystemExit(f"bench/profiles.py needs the real samples in {SHARED}")
    started = time.perf_counter()
    kitti_train, kitti_val = kitti_scenes(args.kitti_range_m)
    mosd_train, mosd_val = mosd_scenes(args.mosd_frames)
    cases = [("kitti", "cpu", 0.08), ("kitti", "lidar_rt", 0.10), ("mosd", "cpu", 0.02), ("mosd", "rgbd_rt", 0.02)]
    data = {"kitti": (kitti_train, kitti_val, SEMANTIC_KITTI19, FeatureConfig(names=("offset", "intensity"))),
            "mosd": (mosd_train, mosd_val, MOSD, FeatureConfig(names=("offset", "rgb")))}
    load = [os.getloadavg()[0]]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, profile, voxel in cases:
            print(f"[bench] {kind} / {profile} ...", file=sys.stderr, flush=True)
            train, val, classes, features = data[kind]
            rows.append(run_case(kind, profile, train, val, classes, features, voxel, args.steps, Path(tmp)))
            print(f"[bench]   {rows[-1]}", file=sys.stderr, flush=True)
    load.append(os.getloadavg()[0])
    command = f"nice -n 5 .venv/bin/python bench/profiles.py --steps {args.steps} --mosd-frames {args.mosd_frames}"
    command += f" --kitti-range-m {args.kitti_range_m:g}" if args.kitti_range_m is not None else ""
    wall_s = time.perf_counter() - started
    kitti_points = [s.num_points for s in kitti_train + kitti_val]
    results = {"machine": f"{platform.node()}: {platform.machine()}, {os.cpu_count()} CPUs",
               "load_average_start_end": load, "wall_s": round(wall_s, 1), "rows": rows, "command": command,
               "kitti_range_m": args.kitti_range_m, "kitti_points": kitti_points}
    lines = ["# Profiles: accuracy and speed of the real-time profiles beside `cpu` (real data)", "",
             f"Full supervision, {args.steps} Adam steps, 1 torch thread, seed 0 (short CPU schedule: ranks the "
             f"profiles, not converged). Load average {load[0]:.1f} -> {load[1]:.1f} on a shared 2-core VM: the "
             "times are upper bounds.", "",
             f"KITTI: {'all points' if args.kitti_range_m is None else f'points within {args.kitti_range_m:g} m'}"
             f" ({min(kitti_points)}-{max(kitti_points)} points per scan); one validation scan (08/000000), so "
             "the KITTI mIoU is over the classes present in it or predicted, and noisy. Machine: "
             f"{results['machine']}; wall {wall_s / 60:.1f} min.", "",
             "| data | profile | voxel | train / val frames | val mIoU | val accuracy | pre ms | inference ms "
             "| total ms |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['kind']} | {r['profile']} | {r['voxel_size_m']} | {r['train_frames']} / "
                     f"{r['val_frames']} | {r['val_miou'] * 100:.1f} % | "
                     f"{r['val_accuracy'] * 100:.1f} % | {r['pre_ms']} | {r['inference_ms']} | "
                     f"{r['total_ms']} |")
    lines += ["", f"Command: `{command}`"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "profiles.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "profiles.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print("RESULT " + json.dumps({f"{r['kind']}_{r['profile']}_miou": r["val_miou"] for r in rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
