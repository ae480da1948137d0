"""DSP's memory figures (issue item 6), for ``bench/dsp.py``: voxel counts at the reallocation level per
dataset and the peak resident memory of a few training steps per variant, each probe in a fresh process."""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from harness import DATASETS, recipe
from wsseg_training.data.dataset import Dataset
from wsseg_training.engine.config import config_from_dict
from wsseg_training.engine.loop import Trainer
from wsseg_training.labels import simulate_sparse_points
from wsseg_training.methods import DspMethod


def resident_mib(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process (MiB) from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def probe(args: argparse.Namespace, options: dict[str, Any], label_voxel_m: float) -> int:
    """(internal, one fresh process) peak RSS of ``--steps`` training steps of one DSP variant: JSON on stdout.

    The peak is reset (``/proc/self/clear_refs`` = 5, Linux) after the data and the trainer are set up, so
    ``train_peak_mib`` - ``rss_start_mib`` is what the training steps add; ``rss_peak_mib`` is the process's
    lifetime peak (it includes the label simulation and the data loading)."""
    torch.set_num_threads(1)
    bench = DATASETS[args.dataset]
    dataset = Dataset(args.data)
    weak = simulate_sparse_points(dataset, dataset.scene_names("train"), 0, 0.1, voxel_size_m=label_voxel_m)
    options = {**options, "chunk_rows": args.chunk_rows}
    config = recipe(args.profile, args.steps, args.crop_points, 0, 0.01, method=options,
                    features=list(bench.features), device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config_from_dict(config), DspMethod(dataset.classes, options, weak), dataset,
                          Path(tmp) / "run", progress=False)
        Path("/proc/self/clear_refs").write_text("5")
        start = resident_mib("VmRSS")
        started = time.perf_counter()
        trainer.run()
        seconds = time.perf_counter() - started
        train_peak = resident_mib("VmHWM")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rss_start_mib": round(start, 1), "train_peak_mib": round(train_peak, 1),
                      "train_extra_mib": round(train_peak - start, 1), "rss_peak_mib": round(peak, 1),
                      "s_per_step": round(seconds / args.steps, 3)}))
    return 0


def attach_voxels(dataset: Dataset, args: argparse.Namespace, crop_points: int, label_voxel_m: float,
                  steps: int = 20) -> dict[str, Any]:
    """N at the attach level (L-2) of the CSFR pairs of the first ``steps`` steps, and the affinity they need."""
    from wsseg_training.engine.batches import StepBatches
    from wsseg_training.engine.loop import preprocess_for
    from wsseg_training.methods.dsp.method import PAIRS

    bench = DATASETS[args.dataset_name]
    config = config_from_dict(recipe(args.profile, steps, crop_points, 0, 0.01, features=list(bench.features)))
    method = DspMethod(dataset.classes, {}, simulate_sparse_points(dataset, dataset.scene_names("train"), 0, 0.1,
                                                                   voxel_size_m=label_voxel_m))
    scenes = [s for n in dataset.scene_names("train") if (s := method.make_targets(n, dataset.load(n))) is not None]
    preprocess = preprocess_for(config)
    level = preprocess.num_levels - 2
    batches = StepBatches(scenes, preprocess, config.data, 0, steps, sampling=PAIRS,
                          num_classes=dataset.classes.num_classes)
    counts, products = [], []
    for step in range(steps):
        rows = np.bincount(batches[step].net_input.maps.coords[level][:, 0], minlength=2)
        counts += rows.tolist()
        products.append(int(rows[0]) * int(rows[1]))
    return {"crop_points": crop_points, "level": level, "n_median": int(np.median(counts)), "n_max": int(max(counts)),
            "affinity_mib_max": round(max(products) * 4 / 2**20, 2)}


def memory(work: Path, args: argparse.Namespace, label_voxel_m: float, probe_steps: int) -> dict[str, Any]:
    """Attach-level voxel counts per dataset (cached in ``WORK/memory.json``) and the peak-RSS probes (cached in
    ``WORK/memory_probes.json``)."""
    counts_cache, probes_cache = work / "memory.json", work / "memory_probes.json"
    if counts_cache.is_file():
        out: dict[str, Any] = json.loads(counts_cache.read_text())
    elif args.cached_only:
        return {}
    else:
        out = {"datasets": {}, "probe_dataset": args.memory_probe_dataset,
               "loadavg_start": [round(v, 1) for v in os.getloadavg()]}
        for name in args.memory_datasets:
            bench = DATASETS[name]
            if bench.missing():
                out["datasets"][name] = {"skipped": bench.missing()}
                continue
            dataset = bench.make(work / name / "data", args.scenes, 0)
            args.dataset_name = name
            out["datasets"][name] = {"crops": [attach_voxels(dataset, args, c, label_voxel_m)
                                                 for c in (args.crop_points, 50_000)]}
            print(f"  memory {name}: {out['datasets'][name]}", flush=True)
        out["loadavg_end"] = [round(v, 1) for v in os.getloadavg()]
        counts_cache.write_text(json.dumps({k: v for k, v in out.items() if k != "probes"}))
    out["probes"] = json.loads(probes_cache.read_text()) if probes_cache.is_file() else []
    if out["probes"] or args.cached_only:
        return out
    out["probe_loadavg_start"] = [round(v, 1) for v in os.getloadavg()]
    data = work / args.memory_probe_dataset / "data"
    for variant, crop, chunk in [("baseline", args.crop_points, 0), ("csfr", args.crop_points, 0),
                                 ("isfr", args.crop_points, 0), ("joint", args.crop_points, 0),
                                 ("baseline", 50_000, 0), ("joint", 50_000, 0), ("joint", 50_000, 512)]:
        command = [sys.executable, str(Path(__file__).with_name("dsp.py")), "--probe",
                   "--dataset", args.memory_probe_dataset, "--data", str(data),
                   "--variant", variant, "--crop-points", str(crop), "--chunk-rows", str(chunk),
                   "--steps", str(probe_steps), "--profile", args.profile]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        record = {"variant": variant, "crop_points": crop, "chunk_rows": chunk,
                  **json.loads(done.stdout.strip().splitlines()[-1])}
        out["probes"].append(record)
        print(f"  probe {record}", flush=True)
    probes_cache.write_text(json.dumps(out["probes"]))
    return out
