"""Where ONNX Runtime spends the LiDAR frame: per-op-type time of the exported graphs (ORT's own profiler).

Builds the real-time LiDAR network (``--profile``, random weights, BatchNorm folded) on the SemanticKITTI
frame of :mod:`bench.backbone` (synthetic scan without the data), exports it as the ``gather``, ``auto``
and ``chunked`` graphs, runs each with ``enable_profiling`` on one intra-op thread (the profile of one
thread is not blurred by thread hand-offs) and sums every node's kernel time per op type.  Reports the
share of Gather / Gemm+MatMul / ReduceSum / ... and the process CPU time per run.

Writes ``bench/results/ort_profile.json`` and ``.md``; the last line printed is ``RESULT <json>``.
Not a test: never gates CI.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import onnxruntime as ort
import torch
from backbone import RESULTS, lidar_frame
from wsseg_export.onnx_export import export_bundle
from wsseg_training.checkpoint import make_checkpoint, save_checkpoint
from wsseg_training.model.profiles import get_profile, unet_config_for
from wsseg_training.model.unet import SparseUNet

from wsseg.core.classes import SEMANTIC_KITTI19
from wsseg.core.features import FeatureConfig
from wsseg.core.preprocess import PreprocessConfig, prepare_cloud
from wsseg.runtime.engines import SPIN_CONFIG_KEY


def profile_graph(onnx_path: Path, inputs: dict, runs: int, prefix: str) -> dict:
    """{op type: ms per run} summed over the graph's nodes, plus ``cpu_ms`` (median process CPU time per run)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.add_session_config_entry(SPIN_CONFIG_KEY, "0")
    options.enable_profiling = True
    options.profile_file_prefix = prefix
    session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"])
    session.run(["logits"], inputs)
    cpu = []
    for _ in range(runs):
        start = time.process_time()
        session.run(["logits"], inputs)
        cpu.append((time.process_time() - start) * 1e3)
    trace = Path(session.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    per_op: collections.Counter = collections.Counter()
    nodes: collections.Counter = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"] / 1e3 / (runs + 1)
            nodes[event["args"]["op_name"]] += 1
    return {"cpu_ms": sorted(cpu)[len(cpu) // 2], "op_ms": dict(per_op.most_common()),
            "op_nodes": {op: n // (runs + 1) for op, n in nodes.items()}}


def markdown(results: dict) -> str:
    ops = sorted({op for g in results["graphs"].values() for op in g["op_ms"]},
                 key=lambda op: -max(g["op_ms"].get(op, 0.0) for g in results["graphs"].values()))
    ops = ops[:8]
    lines = [f"# ONNX Runtime per-op profile, {results['frame']} / `{results['profile']}` "
             f"({results['voxels']} voxels)", "",
             f"ONNX Runtime {results['ort_version']}, 1 intra-op thread, no spinning, {results['runs']} profiled runs "
             f"(+1 warm-up); node kernel time per run, ms (share of the summed kernel time). Load average "
             f"{results['load_average'][0]:.1f} -> {results['load_average'][1]:.1f} on a shared 2-core VM: times "
             "are upper bounds, compare the shares.", "",
             "| graph | CPU ms / run | " + " | ".join(ops) + " |", "|---|---:|" + "---:|" * len(ops)]
    for name, g in results["graphs"].items():
        total = sum(g["op_ms"].values())
        cells = [f"{g['op_ms'].get(op, 0.0):.0f} ({100 * g['op_ms'].get(op, 0.0) / total:.0f} %)" for op in ops]
        lines.append(f"| {name} | {g['cpu_ms']:.0f} | " + " | ".join(cells) + " |")
    lines += ["", f"Command: `{results['command']}`. FusedGemm/Gemm = the gather-GEMM MatMuls (ORT fuses the "
              "bias add); MatMul = the chunked form's batched per-chunk products and the dense centre taps; "
              "ReduceSum + Gather of the chunked form = the output assembly by count buckets."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="lidar_rt")
    parser.add_argument("--voxel", type=float, default=0.10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    frame_name, frame = lidar_frame()
    features = FeatureConfig(names=("offset", "intensity"))
    spec = get_profile(args.profile)
    config = PreprocessConfig(voxel_size_m=args.voxel, num_levels=spec.num_levels, features=features)
    net_input = prepare_cloud(config, frame["xyz"], intensity=frame["intensity"])
    torch.manual_seed(0)
    model = SparseUNet(unet_config_for(args.profile, features.num_channels, SEMANTIC_KITTI19.num_classes)).eval()
    results: dict = {"frame": frame_name, "profile": args.profile, "voxel_size_m": args.voxel,
                     "voxels": int(net_input.features.shape[0]), "ort_version": ort.__version__, "runs": args.runs,
                     "load_average": [os.getloadavg()[0]], "graphs": {},
                     "command": f"nice -n {os.nice(0)} .venv/bin/python bench/ort_profile.py --profile {args.profile} "
                                f"--voxel {args.voxel} --runs {args.runs}"}
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = make_checkpoint(model, config, SEMANTIC_KITTI19, provenance={"profile": args.profile})
        path = save_checkpoint(Path(tmp) / "model.pt", checkpoint)
        for graph in ("gather", "auto", "chunked"):
            print(f"[bench] {graph} ...", file=sys.stderr, flush=True)
            bundle = export_bundle(path, Path(tmp) / graph, graph=graph)
            results["graphs"][graph] = profile_graph(bundle.onnx_path, bundle.model_inputs(net_input), args.runs,
                                                     str(Path(tmp) / f"ort_{graph}"))
    results["load_average"].append(os.getloadavg()[0])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ort_profile.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (args.out / "ort_profile.md").write_text(table)
    print(table)
    summary = {f"{g}_cpu_ms": round(r["cpu_ms"], 1) for g, r in results["graphs"].items()}
    summary.update({f"{g}_gather_share": round(r["op_ms"].get("Gather", 0.0) / sum(r["op_ms"].values()), 3)
                    for g, r in results["graphs"].items()})
    print("RESULT " + json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
