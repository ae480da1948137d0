"""Table-builder benchmark: numpy reference vs compiled (numba) voxelization, features and kernel maps.

On the real SemanticKITTI HDL-64E scan (``../shared/data``; 124,668 points): ``prepare_cloud``
(voxelize + features + every level's kernel maps) and the chunked graph tables, at 5 cm and 10 cm,
4 levels, with each backend; wall and process-CPU medians, and whether the outputs are bit-identical.
Writes ``bench/results/tables.json`` + ``.md``; last line ``RESULT <json>``.  Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from wsseg.core import backend
from wsseg.core.conv_tables import GraphSpec, graph_inputs
from wsseg.core.features import FeatureConfig
from wsseg.core.preprocess import PreprocessConfig, prepare_cloud

REPO = Path(__file__).resolve().parents[1]
SCAN = REPO.parent / "shared" / "data" / "semantickitti" / "sequences" / "00" / "velodyne" / "000000.bin"
RESULTS = REPO / "bench" / "results"


def medians(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - w) * 1e3)
        cpu.append((time.process_time() - c) * 1e3)
    return statistics.median(wall), statistics.median(cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not SCAN.is_file():
        raise SystemExit(f"bench/tables.py needs {SCAN}")
    if backend.name() != "numba":
        raise SystemExit("the compiled backend is not available (install numba; unset WSSEG_NO_COMPILED)")
    raw = np.fromfile(SCAN, dtype=np.float32).reshape(-1, 4)
    xyz, intensity = raw[:, :3].copy(), raw[:, 3].copy()
    load = [os.getloadavg()[0]]
    rows = []
    for voxel in (0.05, 0.10):
        config = PreprocessConfig(voxel_size_m=voxel, num_levels=4, features=FeatureConfig(("offset", "intensity")))
        graph = GraphSpec(num_levels=4, chunked_levels=(False, True, True, True))
        row: dict[str, float] = {"voxel_size_m": voxel}
        for name, context in (("numpy", backend.numpy_only), ("compiled", None)):
            def run(ctx: object = context, cfg: PreprocessConfig = config) -> object:
                if ctx is None:
                    return prepare_cloud(cfg, xyz, intensity=intensity)
                with ctx():  # type: ignore[operator]
                    return prepare_cloud(cfg, xyz, intensity=intensity)

            net = run()
            row[f"prepare_{name}_wall_ms"], row[f"prepare_{name}_cpu_ms"] = medians(run, args.repeats)
            if context is None:
                row[f"graph_{name}_wall_ms"], row[f"graph_{name}_cpu_ms"] = medians(
                    lambda n=net, g=graph: graph_inputs(n.maps, g), args.repeats)
                compiled_net, compiled_tables = net, graph_inputs(net.maps, graph)
            else:
                with context():
                    row[f"graph_{name}_wall_ms"], row[f"graph_{name}_cpu_ms"] = medians(
                        lambda n=net, g=graph: graph_inputs(n.maps, g), args.repeats)
                    numpy_net, numpy_tables = net, graph_inputs(net.maps, graph)
        row["voxels"] = int(compiled_net.features.shape[0])
        same = all(np.array_equal(a, b) for a, b in zip(compiled_net.maps.as_inputs().values(),
                                                        numpy_net.maps.as_inputs().values(), strict=True))
        same &= np.array_equal(compiled_net.features.view(np.uint8), numpy_net.features.view(np.uint8))
        same &= all(np.array_equal(compiled_tables[k], numpy_tables[k]) for k in compiled_tables)
        row["bit_identical"] = bool(same)
        for clock in ("wall", "cpu"):
            row[f"prepare_speedup_{clock}"] = row[f"prepare_numpy_{clock}_ms"] / row[f"prepare_compiled_{clock}_ms"]
        rows.append(row)
    load.append(os.getloadavg()[0])
    lines = ["# Table builders: numpy reference vs compiled (numba), SemanticKITTI 000000.bin (124,668 points), "
             "4 levels", "", f"Median of {args.repeats}; load average {load[0]:.1f} -> {load[1]:.1f} on a shared "
             "2-core VM (wall times are upper bounds; CPU time is the process's own).", "",
             "| voxel | voxels | prepare_cloud wall ms numpy -> compiled | CPU ms numpy -> compiled | speed-up wall / "
             "CPU | chunked graph tables wall ms numpy -> compiled | bit-identical |",
             "|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['voxel_size_m']} | {r['voxels']} | {r['prepare_numpy_wall_ms']:.0f} -> "
                     f"{r['prepare_compiled_wall_ms']:.1f} | {r['prepare_numpy_cpu_ms']:.0f} -> "
                     f"{r['prepare_compiled_cpu_ms']:.1f} | {r['prepare_speedup_wall']:.1f}x / "
                     f"{r['prepare_speedup_cpu']:.1f}x | {r['graph_numpy_wall_ms']:.0f} -> "
                     f"{r['graph_compiled_wall_ms']:.1f} | {r['bit_identical']} |")
    lines += ["", "Command: `nice -n 0 .venv/bin/python bench/tables.py`"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tables.json").write_text(json.dumps({"rows": rows, "load_average": load}, indent=2) + "\n")
    (args.out / "tables.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print("RESULT " + json.dumps({f"speedup_cpu_{r['voxel_size_m']}": round(r["prepare_speedup_cpu"], 2)
                                  for r in rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
