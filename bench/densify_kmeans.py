"""Time of one Densify K-means round at ScanNet scale: ~1M super-voxels x 128 features, K = 300.

DYL runs K-means over every training super-voxel every 10 epochs (40 rounds in 400 epochs).  This times the
project's wrapper (:func:`wsseg_training.methods.densify.kmeans.kmeans`, faiss-cpu, k-means++ seeding,
``--iterations`` Lloyd iterations, all rows used) on synthetic unit rows drawn around ``--k`` random centres,
and, when scikit-learn is importable (it is not a dependency), ``sklearn.cluster.KMeans`` (Lloyd, same
iterations, k-means++ and random init) on the same rows and thread count, for the choice of library.
Writes ``bench/results/densify_kmeans.{json,md}``; last line ``RESULT <json>``.  Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from wsseg_training.methods.densify.kmeans import kmeans

RESULTS = Path(__file__).resolve().parent / "results"


def rows_of(n: int, dim: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)).astype(np.float32)
    rows = centres[rng.integers(k, size=n)] + 0.5 * rng.normal(size=(n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def time_sklearn(rows: np.ndarray, k: int, iterations: int, threads: int) -> dict[str, float] | None:
    try:
        from sklearn.cluster import KMeans
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    out = {}
    with threadpool_limits(threads):
        for init in ("k-means++", "random"):
            start = time.perf_counter()
            KMeans(n_clusters=k, n_init=1, max_iter=iterations, tol=0.0, init=init, random_state=0).fit(rows)
            out[init] = round(time.perf_counter() - start, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=300)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rows = rows_of(args.rows, args.dim, args.k, 0)
    load_start = os.getloadavg()
    start = time.perf_counter()
    result = kmeans(rows, args.k, seed=0, iterations=args.iterations, threads=args.threads)
    faiss_s = time.perf_counter() - start
    sklearn_s = time_sklearn(rows, args.k, args.iterations, args.threads)
    load_end = os.getloadavg()
    out = {"rows": args.rows, "dim": args.dim, "k": args.k, "iterations": args.iterations, "threads": args.threads,
           "faiss_s": round(faiss_s, 1), "faiss_clusters_used": int(np.unique(result.assignment).size),
           "sklearn_s": sklearn_s,
           "machine": {"device": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                       "loadavg_start": [round(v, 2) for v in load_start],
                       "loadavg_end": [round(v, 2) for v in load_end]}}
    lines = ["# Densify K-means round at ScanNet scale", "",
             f"{args.rows:,} rows x {args.dim} features, K = {args.k}, {args.iterations} Lloyd iterations, "
             f"{args.threads} thread; {out['machine']['device']}, {os.cpu_count()} cores shared with other jobs "
             f"(load {load_start[0]:.1f} -> {load_end[0]:.1f}: upper bounds).", "",
             "| library | init | wall s |", "|---|---|---|",
             f"| faiss-cpu (the wrapper) | k-means++ | {out['faiss_s']} |"]
    for init, seconds in (sklearn_s or {}).items():
        lines.append(f"| scikit-learn | {init} | {seconds} |")
    if sklearn_s is None:
        lines.append("| scikit-learn | — | not installed here |")
    table = "\n".join(lines) + "\n"
    print(table)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "densify_kmeans.json").write_text(json.dumps(out, indent=1) + "\n")
    (args.results / "densify_kmeans.md").write_text(table)
    print("RESULT " + json.dumps({k: out[k] for k in ("rows", "k", "faiss_s", "sklearn_s")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
