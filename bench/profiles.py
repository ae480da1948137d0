"""Profile benchmark: accuracy of the real-time profiles beside ``cpu`` on real and synthetic data.

For each frame kind it trains each profile with full supervision for the same number of steps
(one thread, same seed, :func:`wsseg_training.fit.fit`) and reports validation mIoU and the
network's ONNX Runtime time on one validation frame:

* ``kitti``: the real SemanticKITTI scans (sequence 00 scans train, the 08 scan validates; offset +
  intensity; ``cpu`` at its 8 cm grid, ``lidar_rt`` at 10 cm);
* ``mosd``: the real mOSD Kinect frames (every third frame validates; offset + rgb; 2 cm).

With ``--synthetic-scenes N`` also the synthetic benchmarks of ``bench/harness.py`` (``outdoor``: ``cpu`` /
``lidar_rt``; ``indoor``: ``cpu`` / ``rgbd_rt``; each profile at its own voxel, the trainer's ``full`` recipe
on 10k-point crops).  ``--skip-real`` + ``--include EARLIER.json`` add cases to an earlier run's table.
A short CPU schedule: the numbers rank the profiles, they are not converged.
``--real-cases`` / ``--synthetic-cases`` / ``--seeds`` choose what runs.  Writes
``bench/results/NAME.json`` + ``.md`` (``--name``, default ``profiles``); last line ``RESULT <json>``.  Not a test.
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
from harness import DATASETS, recipe, register_layout, run_full
from wsseg_export.onnx_export import export_bundle
from wsseg_training.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
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
             features: FeatureConfig, voxel: float, steps: int, workdir: Path, seed: int = 0) -> dict:
    spec = get_profile(profile)
    config = PreprocessConfig(voxel_size_m=voxel, num_levels=spec.num_levels, features=features)

    def prepared(scene: Scene) -> LabelledInput:
        return LabelledInput(prepare_cloud(config, scene.xyz, rgb=scene.rgb, intensity=scene.intensity),
                             scene.semantic.astype(np.int64))

    torch.manual_seed(seed)
    model = SparseUNet(unet_config_for(profile, features.num_channels, classes.num_classes))
    start = time.perf_counter()
    fit(model, [prepared(s) for s in train], steps=steps, lr=1e-2, progress=False)
    train_s = time.perf_counter() - start
    model.eval()
    matrix = ConfusionMatrix(classes.num_classes)
    for scene in val:
        net_input = prepare_cloud(config, scene.xyz, rgb=scene.rgb, intensity=scene.intensity)
        matrix.add(scene.semantic.astype(np.int64), predict_points(model, net_input))
    name = f"{kind}_{profile}_s{seed}"
    ckpt = save_checkpoint(workdir / f"{name}.pt", make_checkpoint(model, config, classes,
                                                                  provenance={"profile": profile}))
    bundle = export_bundle(ckpt, workdir / name)
    segmenter = Segmenter(bundle, engine="onnxruntime-cpu")
    scene = val[0]
    times = [segmenter.run(scene.xyz, rgb=scene.rgb, intensity=scene.intensity).timings_ms for _ in range(4)][1:]
    return {"kind": kind, "profile": profile, "seed": seed, "voxel_size_m": voxel, "steps": steps,
            "train_s": round(train_s, 1),
            "val_miou": round(matrix.miou(), 4), "val_accuracy": round(matrix.overall_accuracy(), 4),
            "val_frames": len(val), "train_frames": len(train),
            **{f"{k}_ms": round(statistics.median(t[k] for t in times), 1) for k in ("pre", "inference", "total")}}


def synthetic_case(kind: str, profile: str, scenes: int, steps: int, work: Path, seed: int = 0) -> dict:
    """``full`` with ``profile`` on the synthetic ``indoor`` / ``outdoor`` benchmark of ``bench/harness.py``
    (the profile's own voxel; 10k-point crops, 2 per step): val mIoU, no ORT timing."""
    bench_data = DATASETS[kind]
    dataset = bench_data.make(work / kind, scenes, 0)
    config = recipe(profile, steps, crop_points=10_000, seed=seed, lr=0.01, features=list(bench_data.features),
                    device="cpu")
    run_dir = work / f"{kind}_{profile}_s{seed}"
    run = run_full(dataset, run_dir, config)
    voxel = load_checkpoint(run_dir / "full" / "model.pt")["preprocess"]["voxel_size_m"]
    return {"kind": kind, "profile": profile, "seed": seed, "voxel_size_m": voxel, "steps": steps,
            "train_s": run["train_s"],
            "val_miou": run["miou"], "val_accuracy": None, "val_frames": len(dataset.scene_names("val")),
            "train_frames": len(dataset.scene_names("train")), "pre_ms": None, "inference_ms": None,
            "total_ms": None}


REAL_CASES = [("kitti", "cpu", "0.08"), ("kitti", "lidar_rt", "0.10"), ("mosd", "cpu", "0.02"),
              ("mosd", "rgbd_rt", "0.02")]
SYNTHETIC_CASES = [("outdoor", "cpu"), ("outdoor", "lidar_rt"), ("indoor", "cpu"), ("indoor", "rgbd_rt")]


def case_list(text: str) -> list[tuple[str, ...]]:
    """``"kitti:lidar_rt:0.10,mosd:cpu:0.02"`` -> [("kitti", "lidar_rt", "0.10"), ("mosd", "cpu", "0.02")]."""
    return [tuple(item.split(":")) for item in text.split(",") if item]


def seed_summary(rows: list[dict]) -> list[str]:
    """Markdown lines: val mIoU mean ± std per (data, profile) over its seeds, when any has more than one."""
    groups: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        groups.setdefault((r["kind"], r["profile"]), []).append(r["val_miou"] * 100)
    if all(len(v) < 2 for v in groups.values()):
        return []
    lines = ["", "| data | profile | seeds | val mIoU % (mean ± std) | per seed |", "|---|---|---:|---:|---|"]
    for (kind, profile), values in groups.items():
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        lines.append(f"| {kind} | {profile} | {len(values)} | {statistics.mean(values):.1f} ± {std:.1f} | "
                     + " / ".join(f"{v:.1f}" for v in values) + " |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--mosd-frames", type=int, default=15)
    parser.add_argument("--kitti-range-m", type=float, default=None,
                        help="keep only KITTI points within this ground-plane range (a smaller, faster run)")
    parser.add_argument("--synthetic-scenes", type=int, default=0,
                        help="also the synthetic outdoor (cpu / lidar_rt) and indoor (cpu / rgbd_rt) benchmarks "
                             "with this many generated scenes each (0 = skip)")
    parser.add_argument("--skip-real", action="store_true", help="skip the real KITTI / mOSD cases")
    parser.add_argument("--include", type=Path, default=None,
                        help="an earlier profiles.json whose rows come first (its command, wall, load kept)")
    parser.add_argument("--real-cases", type=case_list, default=REAL_CASES, metavar="KIND:PROFILE:VOXEL,...",
                        help="real-data cases (default %(default)s)")
    parser.add_argument("--synthetic-cases", type=case_list, default=SYNTHETIC_CASES, metavar="KIND:PROFILE,...",
                        help="synthetic cases when --synthetic-scenes > 0 (default %(default)s)")
    parser.add_argument("--seeds", type=lambda text: [int(v) for v in text.split(",")], default=[0],
                        help="training seeds, comma-separated (default 0)")
    parser.add_argument("--name", default="profiles", help="results file name (bench/results/NAME.{json,md})")
    parser.add_argument("--layout", type=register_layout, action="append", default=[],
                        metavar="NAME=BASE:CHANNELS/BLOCKS[/DECODER_BLOCKS]",
                        help="a bench-only profile to compare (repeatable); use NAME in the cases")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not args.skip_real and not ((SHARED / "semantickitti").is_dir() and (SHARED / "mosd").is_dir()):
        raise SystemExit(f"bench/profiles.py needs the real samples in {SHARED}")
    started = time.perf_counter()
    included = json.loads(args.include.read_text()) if args.include else None
    kitti_train, kitti_val = kitti_scenes(args.kitti_range_m) if not args.skip_real else ([], [])
    mosd_train, mosd_val = mosd_scenes(args.mosd_frames) if not args.skip_real else ([], [])
    cases = [] if args.skip_real else [(kind, profile, float(voxel)) for kind, profile, voxel in args.real_cases]
    data = {"kitti": (kitti_train, kitti_val, SEMANTIC_KITTI19, FeatureConfig(names=("offset", "intensity"))),
            "mosd": (mosd_train, mosd_val, MOSD, FeatureConfig(names=("offset", "rgb")))}
    load = [os.getloadavg()[0]]
    rows = list(included["rows"]) if included else []
    with tempfile.TemporaryDirectory() as tmp:
        for (kind, profile, voxel), seed in ((case, seed) for case in cases for seed in args.seeds):
            print(f"[bench] {kind} / {profile} / seed {seed} ...", file=sys.stderr, flush=True)
            train, val, classes, features = data[kind]
            rows.append(run_case(kind, profile, train, val, classes, features, voxel, args.steps, Path(tmp), seed))
            print(f"[bench]   {rows[-1]}", file=sys.stderr, flush=True)
        synthetic = args.synthetic_cases if args.synthetic_scenes > 0 else []
        for (kind, profile), seed in ((case, seed) for case in synthetic for seed in args.seeds):
            print(f"[bench] synthetic {kind} / {profile} / seed {seed} ...", file=sys.stderr, flush=True)
            rows.append(synthetic_case(kind, profile, args.synthetic_scenes, args.steps, Path(tmp), seed))
            print(f"[bench]   {rows[-1]}", file=sys.stderr, flush=True)
    load.append(os.getloadavg()[0])
    command = f"nice -n 5 .venv/bin/python bench/profiles.py --steps {args.steps}"
    command += f" --mosd-frames {args.mosd_frames}" if not args.skip_real else ""
    command += f" --kitti-range-m {args.kitti_range_m:g}" if args.kitti_range_m is not None else ""
    command += f" --synthetic-scenes {args.synthetic_scenes}" if args.synthetic_scenes else ""
    command += " --skip-real" if args.skip_real else ""
    command += "" if args.real_cases == REAL_CASES or args.skip_real else \
        " --real-cases " + ",".join(":".join(c) for c in args.real_cases)
    command += "" if args.synthetic_cases == SYNTHETIC_CASES or not args.synthetic_scenes else \
        " --synthetic-cases " + ",".join(":".join(c) for c in args.synthetic_cases)
    command += "" if args.seeds == [0] else " --seeds " + ",".join(map(str, args.seeds))
    command += "" if args.name == "profiles" else f" --name {args.name}"
    command += "".join(f" --layout {layout}" for layout in args.layout)
    command += f" --include {args.include}" if args.include else ""
    wall_s = time.perf_counter() - started
    machine = f"{platform.node()}: {platform.machine()}, {os.cpu_count()} CPUs"
    runs = ([{k: included[k] for k in ("command", "wall_s", "load_average_start_end", "machine")}]
            if included else []) + [{"command": command, "wall_s": round(wall_s, 1), "load_average_start_end": load,
                                     "machine": machine}]
    kitti_points = [s.num_points for s in kitti_train + kitti_val] or (included or {}).get("kitti_points", [])
    kitti_range = args.kitti_range_m if not args.skip_real else (included or {}).get("kitti_range_m")
    results = {"machine": machine, "load_average_start_end": load, "wall_s": round(wall_s, 1), "rows": rows,
               "command": command, "kitti_range_m": kitti_range, "kitti_points": kitti_points, "runs": runs}

    def cell(value: float | None, percent: bool = False) -> str:
        return "—" if value is None else f"{value * 100:.1f} %" if percent else f"{value}"

    lines = ["# Profiles: accuracy and speed of the real-time profiles beside `cpu`", "",
             f"Full supervision, 1 torch thread, seeds {', '.join(map(str, args.seeds))}, "
             "a short CPU schedule (steps column; ranks the profiles, "
             "not converged). Real data (kitti, mosd): `wsseg_training.fit`, one whole frame per Adam step, ORT "
             "times on one validation frame; synthetic data (outdoor, indoor; `bench/harness.py`): the trainer's "
             "`full` recipe, two 10k-point crops per step, the profile's own voxel, no ORT timing. Shared 2-core "
             "VM: every time is an upper bound.", ""]
    if kitti_points:
        lines += [f"KITTI: {'all points' if kitti_range is None else f'points within {kitti_range:g} m'} "
                  f"({min(kitti_points)}-{max(kitti_points)} points per scan); one validation scan (08/000000), so "
                  "the KITTI mIoU is over the classes present in it or predicted, and noisy.", ""]
    lines += ["| data | profile | seed | voxel | train / val frames | steps | val mIoU | val accuracy | pre ms | "
              "inference ms | total ms | train s |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['kind']} | {r['profile']} | {r.get('seed', 0)} | {r['voxel_size_m']} | "
                     f"{r['train_frames']} / "
                     f"{r['val_frames']} | {r['steps']} | {cell(r['val_miou'], True)} | "
                     f"{cell(r['val_accuracy'], True)} | {cell(r['pre_ms'])} | {cell(r['inference_ms'])} | "
                     f"{cell(r['total_ms'])} | {r['train_s']} |")
    lines += seed_summary(rows)
    lines += ["", "Runs:"] + [f"* `{run['command']}` -- {run['machine']}, wall {run['wall_s'] / 60:.1f} min, load "
                               f"average {run['load_average_start_end'][0]:.1f} -> "
                               f"{run['load_average_start_end'][1]:.1f}" for run in runs]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print("RESULT " + json.dumps({f"{r['kind']}_{r['profile']}_s{r.get('seed', 0)}_miou": r["val_miou"] for r in rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
