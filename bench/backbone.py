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
from harness import register_layout
from wsseg_export.onnx_export import export_bundle
from wsseg_training.checkpoint import make_checkpoint, save_checkpoint
from wsseg_training.model.fuse import fold_batchnorm
from wsseg_training.model.inputs import coords_to_torch, to_torch
from wsseg_training.model.profiles import get_profile, unet_config_for
from wsseg_training.model.sparse_conv import DownConv3d, PointwiseLinear, SubmanifoldConv3d, UpConv3d
from wsseg_training.model.unet import SparseUNet

from wsseg.core import backend
from wsseg.core.classes import SEMANTIC_KITTI19, ClassTable
from wsseg.core.conv_tables import GraphSpec, graph_inputs
from wsseg.core.features import FeatureConfig
from wsseg.core.preprocess import NetworkInput, PreprocessConfig, prepare_cloud
from wsseg.runtime.engines import OnnxRuntimeEngine
from wsseg.runtime.segmenter import Segmenter

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
RESULTS = REPO / "bench" / "results"
DEFAULT_CASES = ["rgbd640:cpu:0.02", "rgbd640:rgbd_rt:0.02", "lidar64:lidar_rt:0.10", "lidar64:lidar_rt_lite:0.10",
                 "lidar64:lidar_rt_xlite:0.10",
                 "lidar64:cpu:0.10", "lidar64:cpu:0.05"]


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
    """Multiply-add GFLOPs (x2) of one forward: ``gemm`` = what the gather-GEMM executes (missing
    neighbours multiply a zero row), ``useful`` = products with present neighbours only."""
    per_conv = conv_gflops(model, net_input)
    return {"gemm": sum(g for g, _ in per_conv.values()), "useful": sum(u for _, u in per_conv.values())}


def cpu_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median process CPU time of ``fn`` (all threads), ms: less sensitive to other jobs than wall time."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append((time.process_time() - start) * 1e3)
    return statistics.median(times)


def executed_gflops(model: SparseUNet, net_input: NetworkInput, graph: GraphSpec) -> float:
    """Multiply-add GFLOPs (x2) the exported graph of ``graph`` executes: gather levels as in
    :func:`count_gflops`, chunked levels their padded pair chunks plus the dense centre tap."""
    tables = graph_inputs(net_input.maps, graph)
    total = 0.0
    for (kind, level, cin, cout), (gemm, _) in conv_gflops(model, net_input).items():
        chunked = graph.chunked(level if kind == "subm" else level + 1) if kind != "linear" else False
        if not chunked:
            total += gemm
        elif kind == "subm":
            m = net_input.maps.neighbours[level].shape[0]
            total += 2.0 * (tables[f"subm{level}_pairs"].size + m) * cin * cout / 1e9
        elif kind == "down":
            total += 2.0 * tables[f"down{level}_pairs"].size * cin * cout / 1e9
        else:  # up
            total += 2.0 * tables[f"up{level}_pairs"].size * cin * cout / 1e9
    return total


def conv_gflops(model: SparseUNet, net_input: NetworkInput) -> dict[tuple[str, int, int, int], tuple[float, float]]:
    """(gather-GEMM, useful) GFLOPs per (kind, level, C_in, C_out) convolution, summed over identical ones."""
    features, maps = to_torch(net_input)
    neighbours = net_input.maps.neighbours
    sizes = [n.shape[0] for n in neighbours]
    out: dict[tuple[str, int, int, int], tuple[float, float]] = {}

    def hook(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
        x, cin, cout = args[0], module.in_channels, module.out_channels
        if isinstance(module, SubmanifoldConv3d):
            level = sizes.index(x.shape[0])
            table = neighbours[level]
            key, gemm, useful = ("subm", level, cin, cout), table.size, np.count_nonzero(table < table.shape[0])
        elif isinstance(module, DownConv3d):
            level = sizes.index(x.shape[0])
            table = net_input.maps.down[level]
            key, gemm, useful = ("down", level, cin, cout), table.size, np.count_nonzero(table < x.shape[0])
        elif isinstance(module, UpConv3d):
            key, gemm, useful = ("up", sizes.index(output.shape[0]), cin, cout), x.shape[0] * 8, output.shape[0]
        else:
            key, gemm, useful = ("linear", 0, cin, cout), x.shape[0], x.shape[0]
        old = out.get(key, (0.0, 0.0))
        out[key] = (old[0] + 2.0 * gemm * cin * cout / 1e9, old[1] + 2.0 * useful * cin * cout / 1e9)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, SubmanifoldConv3d | DownConv3d | UpConv3d | PointwiseLinear)]
    with torch.no_grad():
        model(features, *maps)
    for handle in handles:
        handle.remove()
    return out


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
    ckpt = save_checkpoint(workdir / f"{profile}_{voxel_size_m}.pt", checkpoint)
    bundle = export_bundle(ckpt, workdir / f"bundle_{profile}_{voxel_size_m}", graph="auto")
    gather_bundle = export_bundle(ckpt, workdir / f"bundle_{profile}_{voxel_size_m}_gather", graph="gather")
    folded = fold_batchnorm(model)
    feats, maps = to_torch(net_input)
    row: dict[str, float] = {"points": int(frame["xyz"].shape[0]), "voxels": int(net_input.features.shape[0]),
                             "voxel_size_m": voxel_size_m, "table_backend": backend.name()}
    row["pre_ms"] = median_ms(pre, repeats)
    row["pre_cpu_ms"] = cpu_ms(pre, repeats)
    row["tables_ms"] = median_ms(lambda: bundle.model_inputs(net_input), repeats)
    with backend.numpy_only():
        row["pre_numpy_ms"] = median_ms(pre, max(2, repeats // 2))
        row["pre_numpy_cpu_ms"] = cpu_ms(pre, max(2, repeats // 2))
        row["tables_numpy_ms"] = median_ms(lambda: bundle.model_inputs(net_input), max(2, repeats // 2))
    row["pre_speedup_cpu"] = row["pre_numpy_cpu_ms"] / row["pre_cpu_ms"]

    def torch_forward() -> torch.Tensor:
        with torch.no_grad():
            return folded(feats, *maps)

    row["torch_ms"] = median_ms(torch_forward, repeats)
    torch_logits = torch_forward().numpy()
    gather_segmenter = Segmenter(gather_bundle, engine="onnxruntime-cpu")
    gather_inputs = gather_bundle.model_inputs(net_input)
    row["ort_gather_ms"] = median_ms(lambda: gather_segmenter.engine.run(gather_inputs), repeats)
    segmenter = Segmenter(bundle, engine="onnxruntime-cpu")
    inputs = bundle.model_inputs(net_input)
    row["ort_ms"] = median_ms(lambda: segmenter.engine.run(inputs), repeats)
    row["ort_cpu_ms"] = cpu_ms(lambda: segmenter.engine.run(inputs), repeats)
    row["ort_spinning"] = segmenter.engine.spinning
    # A/B: the same graph with ONNX Runtime's own default, intra-op threads spin-waiting
    spinning = OnnxRuntimeEngine(bundle, engine="onnxruntime-cpu", spin=True)
    row["ort_spin_ms"] = median_ms(lambda: spinning.run(inputs), repeats)
    row["ort_spin_cpu_ms"] = cpu_ms(lambda: spinning.run(inputs), repeats)
    row["graph"] = json.dumps(bundle.meta.graph.to_dict()["chunked_levels"])
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
    flops = count_gflops(folded, net_input)
    row["gflops_gemm"] = flops["gemm"]
    row["gflops_useful"] = flops["useful"]
    row["gflops_executed_auto"] = executed_gflops(folded, net_input, bundle.meta.graph)
    row["pre_share"] = (row["pre_ms"] + row["tables_ms"]) / (row["pre_ms"] + row["tables_ms"] + row["ort_ms"])
    if "spconv_1t_ms" in row:
        row["ort_over_spconv_1t"] = row["spconv_1t_ms"] / row["ort_ms"]
    row["torch_gflops_per_s"] = flops["gemm"] / (row["torch_ms"] / 1e3)
    row["ort_gflops_per_s"] = flops["gemm"] / (row["ort_ms"] / 1e3)
    row["torch_over_ort"] = row["torch_ms"] / row["ort_ms"]
    return row


def markdown(results: dict) -> str:
    lines = [
        f"# Backbone benchmark ({results['machine']})", "",
        f"torch {results['torch_version']}, {results['threads']} threads; median of {results['repeats']} runs"
        f"{' (--quick)' if results.get('quick') else ''}; random weights, BatchNorm folded. Load average "
        f"{results['load_average'][0]:.1f} -> {results['load_average'][1]:.1f} on a shared 2-core VM: wall times "
        "are upper bounds (CPU-time columns are less affected).", "",
        "| frame | profile | voxel | points | voxels | pre ms (numpy -> compiled) | pre CPU ms (numpy -> compiled) | "
        "graph tables ms | torch ms | spconv 1t ms | ORT gather ms | ORT auto ms (CPU ms) | ORT spin ms (CPU ms) | "
        "ORT/spconv-1t | GFLOP gather / auto / useful | pre share | ORT label agreement |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in results["cases"]:
        r = case["row"]
        lines.append(
            f"| {case['frame']} | {case['profile']} | {r['voxel_size_m']} | {r['points']} | {r['voxels']} | "
            f"{r['pre_numpy_ms']:.0f} -> {r['pre_ms']:.1f} | {r['pre_numpy_cpu_ms']:.0f} -> {r['pre_cpu_ms']:.1f} "
            f"({r['pre_speedup_cpu']:.1f}x) | {r['tables_numpy_ms']:.1f} -> {r['tables_ms']:.1f} | "
            f"{r['torch_ms']:.0f} | {r.get('spconv_1t_ms', float('nan')):.0f} | {r['ort_gather_ms']:.0f} | "
            f"{r['ort_ms']:.0f} ({r['ort_cpu_ms']:.0f}) | {r.get('ort_spin_ms', float('nan')):.0f} "
            f"({r.get('ort_spin_cpu_ms', float('nan')):.0f}) | {r.get('ort_over_spconv_1t', float('nan')):.2f}x | "
            f"{r['gflops_gemm']:.1f} / {r['gflops_executed_auto']:.1f} / {r['gflops_useful']:.1f} | "
            f"{r['pre_share'] * 100:.0f} % | {r['ort_label_agreement'] * 100:.3f}% |"
        )
    lines += ["", "Frames: " + "; ".join(f"{k}: {v}" for k, v in results["frames"].items()),
              f"Command: `{results['command']}`. ORT auto = the exported default graph (chunked at levels with >= 32 "
              "channels); ORT/spconv-1t = spconv one-thread time over ORT auto time (2 threads). ORT auto runs with "
              "the engine's default (intra-op threads do not spin-wait; `WSSEG_ORT_SPIN`); ORT spin = the same graph "
              "and threads with ONNX Runtime's own default (spinning). CPU ms = process CPU time, all threads."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a few minutes)")
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES, help="frame:profile:voxel_m cases")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="backbone", help="results file stem (OUT/NAME.json, .md)")
    parser.add_argument("--layout", type=register_layout, action="append", default=[],
                        metavar="NAME=BASE:CHANNELS/BLOCKS[/DECODER_BLOCKS]",
                        help="a bench-only profile to time (repeatable); use NAME in --cases")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    lidar_name, lidar = lidar_frame()
    rgbd_name, rgbd = rgbd_frame()
    frames = {
        "lidar64": (lidar, FeatureConfig(names=("offset", "intensity")), SEMANTIC_KITTI19),
        "rgbd640": (rgbd, FeatureConfig(names=("offset", "rgb")),
                    ClassTable("mosd", ("support", "object"), ((160, 160, 160), (230, 60, 40)))),
    }
    results: dict = {
        "machine": f"{platform.node() or 'host'}: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "torch_version": str(torch.__version__), "threads": torch.get_num_threads(), "repeats": repeats,
        "frames": {"lidar64": lidar_name, "rgbd640": rgbd_name}, "cases": [],
        "command": f"nice -n {os.nice(0)} .venv/bin/python bench/backbone.py" + (" --quick" if args.quick else "")
                   + (f" --cases {' '.join(args.cases)}" if args.cases != DEFAULT_CASES else "")
                   + (f" --name {args.name}" if args.name != "backbone" else "")
                   + "".join(f" --layout {layout}" for layout in args.layout),
        "load_average": [os.getloadavg()[0]],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            frame_name, profile, voxel = case.split(":")
            frame, features, classes = frames[frame_name]
            print(f"[bench] {frame_name} / {profile} / {voxel} m ...", file=sys.stderr, flush=True)
            row = bench_case(frame, features, float(voxel), profile, classes, repeats, Path(tmp))
            results["cases"].append({"frame": frame_name, "profile": profile, "row": row})
            print(f"[bench]   {json.dumps(row)}", file=sys.stderr, flush=True)
    results["load_average"].append(os.getloadavg()[0])
    summary: dict[str, float] = {
        "ort_label_agreement": min(c["row"]["ort_label_agreement"] for c in results["cases"]),
    }
    for case in results["cases"]:
        for stage in ("pre", "pre_numpy", "torch", "spconv_1t", "ort_gather", "ort"):
            if f"{stage}_ms" in case["row"]:
                key = f"{case['frame']}_{case['profile']}_{case['row']['voxel_size_m']}_{stage}_ms"
                summary[key] = round(case["row"][f"{stage}_ms"], 2)
    # headline stages of the LiDAR frame with the cpu profile (first case)
    first = results["cases"][0]["row"]
    for stage in ("pre", "torch", "spconv_1t", "spconv_mt", "ort"):
        if f"{stage}_ms" in first:
            summary[f"{stage}_ms"] = round(first[f"{stage}_ms"], 2)
    results["summary"] = summary
    args.out.mkdir(parents=True, exist_ok=True)
    results["quick"] = args.quick
    name = args.name
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (args.out / f"{name}.md").write_text(table)
    print(table)
    print("RESULT " + json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
