"""Backbone benchmark: preprocessing, torch gather-GEMM, spconv, ONNX Runtime on a LiDAR and an RGB-D frame.

Frames (real sensor data when ``../shared/data`` exists, synthetic otherwise):

* ``lidar64``: a 64-beam spinning-LiDAR frame (~124k points; SemanticKITTI HDL-64E scan or
  the synthetic 64-beam street scan); features offset + intensity, 0.05 m voxels;
* ``rgbd640``: a 640x480 RGB-D frame (~200k valid points; the real Kinect mOSD frame or a
  synthetic RGB-D frame); features offset + rgb, 0.02 m voxels.

For both model profiles (``cpu``, ``default``; random weights, BatchNorm folded, eval) it times,
as the median of several runs: ``pre`` (voxelize + features + kernel maps), ``torch`` (eager
gather-GEMM forward), ``spconv_1t`` / ``spconv_mt`` (spconv CPU build with 1 thread / the
default thread count; parity reference only, see the spconv backend docstring), ``ort`` (ONNX
Runtime CPU on the exported graph).  It also reports ONNX Runtime vs PyTorch label agreement
and GFLOPs: ``gemm`` counts what the gather-GEMM executes (missing neighbours multiply a zero
row), ``useful`` only products with active neighbours.

Writes ``bench/results/backbone.json`` and ``.md``; the last line printed is ``RESULT <json>``.
``--quick`` does fewer repetitions.  Not a test: never gates CI.
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
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from wsseg_export.onnx_export import export_bundle
from wsseg_training.checkpoint import make_checkpoint, save_checkpoint
from wsseg_training.model.fuse import fold_batchnorm
from wsseg_training.model.inputs import coords_to_torch, to_torch
from wsseg_training.model.profiles import get_profile, unet_config_for
from wsseg_training.model.sparse_conv import DownConv3d, PointwiseLinear, SubmanifoldConv3d, UpConv3d
from wsseg_training.model.unet import SparseUNet

from wsseg.core.classes import SEMANTIC_KITTI19, ClassTable
from wsseg.core.features import FeatureConfig
from wsseg.core.preprocess import NetworkInput, PreprocessConfig, prepare_cloud
from wsseg.runtime.segmenter import Segmenter

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
RESULTS = REPO / "bench" / "results"


def lidar_frame() -> tuple[str, dict[str, np.ndarray]]:
    scan = SHARED / "semantickitti" / "sequences" / "00" / "velodyne" / "000000.bin"
    if scan.is_file():
        raw = np.fromfile(scan, dtype=np.float32).reshape(-1, 4)
        return f"SemanticKITTI {scan.name} (real HDL-64E)", {"xyz": raw[:, :3].copy(), "intensity": raw[:, 3].copy()}
    from wsseg_training.data.synth.config import OutdoorConfig
    from wsseg_training.data.synth.outdoor import synthesize_outdoor

    scene = synthesize_outdoor(np.random.default_rng(0), OutdoorConfig()).scene
    return "synthetic 64-beam scan", {"xyz": scene.xyz, "intensity": scene.intensity}


def rgbd_frame() -> tuple[str, dict[str, np.ndarray]]:
    frames = sorted((SHARED / "mosd" / "learn").glob("*.pcd"))
    if frames:
        from wsseg.core.cloud_io import read_cloud

        cloud = read_cloud(frames[0])
        valid = cloud.valid_mask()
        return (f"mOSD {frames[0].name} (real Kinect 640x480, {int(valid.sum())} valid)",
                {"xyz": cloud.xyz[valid], "rgb": cloud.rgb[valid]})
    from wsseg_training.data.synth.config import IndoorConfig, RGBDCameraConfig
    from wsseg_training.data.synth.indoor import synthesize_indoor
    from wsseg_training.data.synth.sensors import backproject

    config = IndoorConfig(views=1, camera=RGBDCameraConfig(width_px=640, height_px=480))
    frame = synthesize_indoor(np.random.default_rng(0), config).frames[0]
    xyz, pixels = backproject(frame.depth, frame.intrinsics, frame.pose)
    rgb = frame.colour.reshape(-1, 3)[pixels]
    return "synthetic 640x480 RGB-D frame", {"xyz": xyz.astype(np.float32), "rgb": rgb}


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def count_gflops(model: SparseUNet, net_input: NetworkInput) -> dict[str, float]:
    """Multiply-add FLOPs (x2) of one forward, from the shapes seen by every convolution."""
    totals = {"gemm": 0.0, "useful": 0.0}
    features, maps = to_torch(net_input)
    neighbours = [m.numpy() for m in maps[: model.num_levels]]
    downs = [m.numpy() for m in maps[model.num_levels: 2 * model.num_levels - 1]]

    def hook(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
        x = args[0]
        cin, cout = module.in_channels, module.out_channels
        if isinstance(module, SubmanifoldConv3d):
            table = next(n for n in neighbours if n.shape[0] == x.shape[0])
            totals["gemm"] += 2.0 * table.size * cin * cout
            totals["useful"] += 2.0 * np.count_nonzero(table < table.shape[0]) * cin * cout
        elif isinstance(module, DownConv3d):
            table = next(d for d in downs if d.shape[0] == output.shape[0])
            totals["gemm"] += 2.0 * table.size * cin * cout
            totals["useful"] += 2.0 * np.count_nonzero(table < x.shape[0]) * cin * cout
        elif isinstance(module, UpConv3d):
            totals["gemm"] += 2.0 * x.shape[0] * 8 * cin * cout
            totals["useful"] += 2.0 * output.shape[0] * cin * cout
        elif isinstance(module, PointwiseLinear):
            totals["gemm"] += 2.0 * x.shape[0] * cin * cout
            totals["useful"] += 2.0 * x.shape[0] * cin * cout

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, SubmanifoldConv3d | DownConv3d | UpConv3d | PointwiseLinear)]
    with torch.no_grad():
        model(features, *maps)
    for handle in handles:
        handle.remove()
    return {k: v / 1e9 for k, v in totals.items()}


def bench_case(frame: dict[str, np.ndarray], features: FeatureConfig, voxel_size_m: float, profile: str,
               classes: ClassTable, repeats: int, workdir: Path) -> dict[str, float]:
    spec = get_profile(profile)
    config = PreprocessConfig(voxel_size_m=voxel_size_m, num_levels=spec.num_levels, features=features)
    kwargs = {k: frame[k] for k in ("rgb", "intensity") if k in frame}

    def pre() -> NetworkInput:
        return prepare_cloud(config, frame["xyz"], **kwargs)

    net_input = pre()
    torch.manual_seed(0)
    model = SparseUNet(unet_config_for(profile, features.num_channels, classes.num_classes)).eval()
    checkpoint = make_checkpoint(model, config, classes, provenance={"profile": profile})
    ckpt = save_checkpoint(workdir / f"{profile}.pt", checkpoint)
    bundle = export_bundle(ckpt, workdir / f"bundle_{profile}")
    folded = fold_batchnorm(model)
    feats, maps = to_torch(net_input)
    row: dict[str, float] = {"points": int(frame["xyz"].shape[0]), "voxels": int(net_input.features.shape[0])}
    row["pre_ms"] = median_ms(pre, repeats)

    def torch_forward() -> torch.Tensor:
        with torch.no_grad():
            return folded(feats, *maps)

    row["torch_ms"] = median_ms(torch_forward, repeats)
    torch_logits = torch_forward().numpy()
    segmenter = Segmenter(bundle, engine="onnxruntime-cpu")
    inputs = net_input.as_inputs()
    row["ort_ms"] = median_ms(lambda: segmenter.engine.run(inputs), repeats)
    ort_logits = segmenter.engine.run(inputs)
    row["ort_label_agreement"] = float((ort_logits.argmax(1) == torch_logits.argmax(1)).mean())
    row["ort_max_logit_diff"] = float(np.abs(ort_logits - torch_logits).max())
    try:
        from wsseg_training.model.spconv_backend import SpconvUNet, spconv_available
    except ImportError:
        spconv_available = None  # type: ignore[assignment]
    if spconv_available is not None and spconv_available():
        runner = SpconvUNet(folded).eval()
        coords = coords_to_torch(net_input)
        default_threads = torch.get_num_threads()

        def spconv_forward() -> torch.Tensor:
            with torch.no_grad():
                return runner(coords, feats)

        try:
            torch.set_num_threads(1)
            row["spconv_1t_ms"] = median_ms(spconv_forward, repeats)
            row["spconv_1t_max_logit_diff"] = float(np.abs(spconv_forward().numpy() - torch_logits).max())
        finally:
            torch.set_num_threads(default_threads)
        row["spconv_mt_ms"] = median_ms(spconv_forward, repeats)
        row["spconv_mt_threads"] = default_threads
    flops = count_gflops(folded, net_input)
    row["gflops_gemm"] = flops["gemm"]
    row["gflops_useful"] = flops["useful"]
    row["torch_gflops_per_s"] = flops["gemm"] / (row["torch_ms"] / 1e3)
    row["ort_gflops_per_s"] = flops["gemm"] / (row["ort_ms"] / 1e3)
    row["torch_over_ort"] = row["torch_ms"] / row["ort_ms"]
    return row


def markdown(results: dict) -> str:
    lines = [
        f"# Backbone benchmark ({results['machine']})", "",
        f"torch {results['torch_version']}, {results['threads']} threads; median of {results['repeats']} runs"
        f"{' (--quick)' if results.get('quick') else ''}; "
        "random weights, BatchNorm folded.", "",
        "| frame | profile | points | voxels | pre ms | torch ms | spconv 1t ms | spconv mt ms | ORT ms | "
        "GFLOP (gemm / useful) | torch GFLOP/s | ORT GFLOP/s | ORT label agreement |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case in results["cases"]:
        r = case["row"]
        lines.append(
            f"| {case['frame']} | {case['profile']} | {r['points']} | {r['voxels']} | {r['pre_ms']:.0f} | "
            f"{r['torch_ms']:.0f} | {r.get('spconv_1t_ms', float('nan')):.0f} | "
            f"{r.get('spconv_mt_ms', float('nan')):.0f} | "
            f"{r['ort_ms']:.0f} | {r['gflops_gemm']:.1f} / {r['gflops_useful']:.1f} | {r['torch_gflops_per_s']:.1f} | "
            f"{r['ort_gflops_per_s']:.1f} | {r['ort_label_agreement'] * 100:.3f}% |"
        )
    lines += ["", "Frames: " + "; ".join(f"{k}: {v}" for k, v in results["frames"].items())]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a few minutes)")
    parser.add_argument("--profiles", nargs="+", default=["cpu", "default"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    lidar_name, lidar = lidar_frame()
    rgbd_name, rgbd = rgbd_frame()
    frames = {
        "lidar64": (lidar, FeatureConfig(names=("offset", "intensity")), 0.05, SEMANTIC_KITTI19),
        "rgbd640": (rgbd, FeatureConfig(names=("offset", "rgb")), 0.02,
                    ClassTable("mosd", ("support", "object"), ((160, 160, 160), (230, 60, 40)))),
    }
    results: dict = {
        "machine": f"{platform.node() or 'host'}: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "torch_version": str(torch.__version__), "threads": torch.get_num_threads(), "repeats": repeats,
        "frames": {"lidar64": lidar_name, "rgbd640": rgbd_name}, "cases": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for frame_name, (frame, features, voxel, classes) in frames.items():
            for profile in args.profiles:
                print(f"[bench] {frame_name} / {profile} ...", file=sys.stderr, flush=True)
                row = bench_case(frame, features, voxel, profile, classes, repeats, Path(tmp))
                results["cases"].append({"frame": frame_name, "profile": profile, "row": row})
    summary: dict[str, float] = {
        "ort_label_agreement": min(c["row"]["ort_label_agreement"] for c in results["cases"]),
    }
    for case in results["cases"]:
        for stage in ("pre", "torch", "spconv_1t", "spconv_mt", "ort"):
            if f"{stage}_ms" in case["row"]:
                summary[f"{case['frame']}_{case['profile']}_{stage}_ms"] = round(case["row"][f"{stage}_ms"], 2)
    # headline stages of the LiDAR frame with the cpu profile (first case)
    first = results["cases"][0]["row"]
    for stage in ("pre", "torch", "spconv_1t", "spconv_mt", "ort"):
        if f"{stage}_ms" in first:
            summary[f"{stage}_ms"] = round(first[f"{stage}_ms"], 2)
    results["summary"] = summary
    args.out.mkdir(parents=True, exist_ok=True)
    results["quick"] = args.quick
    name = "backbone"
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (args.out / f"{name}.md").write_text(table)
    print(table)
    print("RESULT " + json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
