"""Node benchmark: per-frame latency and sustained rate of the real ``segment_node`` process.

Frames: a 64-beam LiDAR scan (SemanticKITTI 00/000000.bin, x, y, z, remission; features offset +
intensity, 0.05 m voxels) published as PointCloud2, and a 640x480 RGB-D frame (mOSD Kinect frame;
features offset + rgb, 0.02 m voxels) published as depth (16UC1) + colour + camera_info.  Model
profiles ``cpu`` and ``default`` (random weights, exported bundles; timing does not depend on weights).

For each case :func:`wsseg_export.node_replay.run_replay` starts the node with ``config/segment.yaml``
and (1) replays closed-loop (next frame once answered): median and p95 of the node's ``pre``
(message decode, back-projection, voxelize, features, kernel maps), ``inference`` (ONNX Runtime),
``post`` (softmax, devoxelize, output encoding + publish) and ``total`` ms, from ``~/output/timing``;
(2) publishes open-loop at ``--input-hz`` (10 Hz, a typical sensor) and reports the sustained output rate, the
frames sent and answered and the node's own drop count (its keep-latest slot drops what it cannot follow).

Writes ``bench/results/node.json`` and ``.md``; the last line printed is ``RESULT <json>``.  ``--quick``
uses fewer frames.  Not a test: never gates CI.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from wsseg_export.node_replay import run_replay
from wsseg_export.onnx_export import export_bundle
from wsseg_training.checkpoint import make_checkpoint, save_checkpoint
from wsseg_training.model.profiles import get_profile, unet_config_for
from wsseg_training.model.unet import SparseUNet

from wsseg.core.classes import MOSD, SEMANTIC_KITTI19, ClassTable
from wsseg.core.features import FeatureConfig
from wsseg.core.preprocess import PreprocessConfig
from wsseg.ros.replay_sources import ReplayFrame, load_frames
from wsseg.runtime.engines import SPIN_ENV

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
RESULTS = REPO / "bench" / "results"
PARAMS = REPO / "config" / "segment.yaml"


def frames() -> dict[str, tuple[str, ReplayFrame, str, FeatureConfig, float, ClassTable]]:
    scan = SHARED / "semantickitti" / "sequences" / "00" / "velodyne" / "000000.bin"
    pcds = sorted((SHARED / "mosd" / "learn").glob("*.pcd"))
    if not scan.is_file() or not pcds:
        raise SystemExit(f"bench/node.py needs {scan} and {SHARED / 'mosd' / 'learn'}/*.pcd")
    lidar = load_frames(scan)[0]
    rgbd = load_frames(pcds[0])[0].as_rgbd()
    return {
        "lidar64": (f"SemanticKITTI {scan.name} ({lidar.width} points) as PointCloud2", lidar, "points",
                    FeatureConfig(names=("offset", "intensity")), 0.05, SEMANTIC_KITTI19),
        "rgbd640": (f"mOSD {pcds[0].name} as 640x480 depth 16UC1 + rgb8 + camera_info", rgbd, "rgbd",
                    FeatureConfig(names=("offset", "rgb")), 0.02, MOSD),
    }


def make_bundle(profile: str, features: FeatureConfig, voxel_size_m: float, classes: ClassTable,
                workdir: Path) -> Path:
    spec = get_profile(profile)
    config = PreprocessConfig(voxel_size_m=voxel_size_m, num_levels=spec.num_levels, features=features)
    torch.manual_seed(0)
    model = SparseUNet(unet_config_for(profile, features.num_channels, classes.num_classes)).eval()
    checkpoint = make_checkpoint(model, config, classes, provenance={"profile": profile, "weights": "random"})
    name = f"{profile}_{'_'.join(features.ordered_names)}"
    return export_bundle(save_checkpoint(workdir / f"{name}.pt", checkpoint), workdir / f"bundle_{name}").path


def markdown(results: dict) -> str:
    lines = [f"# segment_node benchmark ({results['machine']})", "",
             "Real node process, Fast DDS shared memory, ONNX Runtime CPU; closed-loop latency from "
             "`~/output/timing`, sustained rate open-loop. Random-weight bundles.", "",
             "| frame | profile | voxel | points | pre threads | pre ms (p50/p95) | inference ms | post ms | "
             "total ms | pre share | sustained Hz at 10 Hz input | sent / answered / dropped by node |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for case in results["cases"]:
        s = case["latency"]
        cells = [f"{s[f'{st}_ms_median']:.0f} / {s[f'{st}_ms_p95']:.0f}"
                 for st in ("pre", "inference", "post", "total")]
        windows = case.get("sustained_hz_windows", [])
        spread = f" ({' / '.join(f'{r:.2f}' for r in windows)})" if len(windows) > 1 else ""
        share = s["pre_ms_median"] / s["total_ms_median"] if s["total_ms_median"] else float("nan")
        threads = case.get("preprocess_threads") or "YAML"
        lines.append(f"| {case['frame']} | {case['profile']} | {case.get('voxel_size_m', '')} | {case['points']} | "
                     f"{threads} | {' | '.join(cells)} | {share:.0%} | {case['sustained_hz']:.2f}{spread} | "
                     f"{case['sent']} / "
                     f"{case['answered']} / {case['dropped_by_node']} |")
    lines += ["", *(f"- {k}: {v}" for k, v in results["frames"].items())]
    if "load_average" in results:
        lines += [f"- machine load average (1 min) at start / end: {results['load_average']['start']:.1f} / "
                  f"{results['load_average']['end']:.1f}; {'quick run' if results.get('quick') else 'full run'}"]
    if "ort_spin" in results:
        spin = "spin-wait (ORT's default, --ort-spin)" if results["ort_spin"] else "do not spin (the engine default)"
        lines += [f"- ONNX Runtime intra-op threads {spin}"]
    threads = {case.get("num_threads") for case in results["cases"]}
    if threads - {None}:
        lines += [f"- node parameter num_threads: {', '.join(str(t) for t in sorted(threads - {None}))}"]
    if "command" in results:
        lines += [f"- command: `{results['command']}`"]
    if any(len(case.get("sustained_hz_windows", [])) > 1 for case in results["cases"]):
        lines += ["- sustained Hz: the median of the open-loop windows (each a fresh node), every window in brackets"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer frames (about two minutes)")
    parser.add_argument("--cases", nargs="+", default=["rgbd640:cpu:0.02", "rgbd640:rgbd_rt:0.02",
                                                       "lidar64:lidar_rt:0.10", "lidar64:lidar_rt_lite:0.10",
                                                       "lidar64:lidar_rt_xlite:0.10",
                                                       "lidar64:cpu:0.05"],
                        help="frame:profile:voxel_m cases")
    parser.add_argument("--input-hz", type=float, default=10.0, help="open-loop publishing rate")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="node", help="results file stem (OUT/NAME.json, .md)")
    parser.add_argument("--ort-spin", action="store_true",
                        help=f"run the node with ONNX Runtime's intra-op threads spin-waiting ({SPIN_ENV}=1)")
    parser.add_argument("--num-threads", type=int, default=None,
                        help="the node's num_threads parameter (ONNX Runtime intra-op threads; default: the YAML's)")
    parser.add_argument("--preprocess-threads", type=int, nargs="+", default=[None],
                        help="the node's preprocess_threads parameter; several values run every case with each "
                             "(default: the YAML's)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="open-loop rate windows per case (a fresh node each); the table gives their median")
    args = parser.parse_args()
    base_overrides = {} if args.num_threads is None else {"num_threads": args.num_threads}
    os.environ[SPIN_ENV] = "1" if args.ort_spin else "0"  # the node process inherits this environment
    latency_frames, rate_s = (4, 4.0) if args.quick else (12, 10.0)
    cases = frames()
    results: dict = {
        "machine": f"{platform.node() or 'host'}: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "frames": {k: v[0] for k, v in cases.items()}, "latency_frames": latency_frames, "rate_window_s": rate_s,
        "cases": [], "quick": args.quick, "load_average": {"start": os.getloadavg()[0]}, "ort_spin": args.ort_spin,
        "command": " ".join(["bench/node.py", *sys.argv[1:]]),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for spec, pre_threads in itertools.product(args.cases, args.preprocess_threads):
            name, profile, voxel_text = spec.split(":")
            _, frame, mode, features, _, classes = cases[name]
            voxel = float(voxel_text)
            overrides = base_overrides | ({} if pre_threads is None else {"preprocess_threads": pre_threads})
            print(f"[bench] {name} / {profile} / {voxel} m / preprocess threads {pre_threads or 'YAML'} ...",
                  file=sys.stderr, flush=True)
            bundle = make_bundle(profile, features, voxel, classes, Path(tmp))
            latency = run_replay(bundle, [frame], PARAMS, mode=mode, repeat=latency_frames + 1,
                                 extra_params=overrides, collect_labels=False, timeout_s=300.0)
            latency.timings_ms = latency.timings_ms[1:]  # the first frame warms ONNX Runtime up
            windows = [run_replay(bundle, [frame], PARAMS, mode=mode, rate_hz=args.input_hz,
                                  repeat=max(3, int(rate_s * args.input_hz)), extra_params=overrides,
                                  collect_labels=False, timeout_s=300.0) for _ in range(max(1, args.repeats))]
            rates = [round(w.rate_hz, 3) for w in windows]
            sustained = windows[int(np.argsort(rates)[len(rates) // 2])]  # the median window (upper one of two)
            results["cases"].append({
                "frame": name, "profile": profile, "voxel_size_m": voxel, "points": frame.width * frame.height,
                "latency": latency.summary(), "sustained_hz": round(sustained.rate_hz, 3),
                "sustained_hz_windows": rates, "num_threads": args.num_threads, "preprocess_threads": pre_threads,
                "published_hz": args.input_hz, "sent": sustained.frames_sent, "answered": sustained.frames_received,
                "dropped_by_node": int(sustained.diagnostics.get("frames_dropped", "0")),
            })
            print(f"[bench]   {results['cases'][-1]}", file=sys.stderr, flush=True)
    results["load_average"]["end"] = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (args.out / f"{args.name}.md").write_text(table)
    print(table)
    summary = {f"{c['frame']}_{c['profile']}_{c['voxel_size_m']}_{k}": c["latency"][f"{k}_ms_median"]
               for c in results["cases"] for k in ("pre", "inference", "post", "total")}
    summary.update({f"{c['frame']}_{c['profile']}_{c['voxel_size_m']}_sustained_hz": c["sustained_hz"]
                    for c in results["cases"]})
    print(f"wrote {args.out / args.name}.json and .md")
    print("RESULT " + json.dumps(summary))
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
