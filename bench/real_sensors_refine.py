"""The support-plane refinement's settings on trained mOSD folds: chosen on TRAIN frames, reported on VAL.

Input: the work folders of earlier ``bench/real_sensors.py`` runs (``--work``), one per fold, each holding
``mosd/`` (the converted frames) and ``runs_fold<K>/{full,otoc}`` (trained checkpoints and exported bundles).
Nothing is retrained: the refinement runs after the network, so one network gives every row.

1. Train frames only: each network's plain point labels (``TorchPredictor``, refinement off) on the fold's 35
   train frames, refined with every setting of ``SETTINGS`` (below / above mm x passes, the same
   :func:`wsseg.core.refine.refine_labels` the node runs); mIoU against the truth.  The setting with the best
   1T1C† train mIoU is the fold's choice; ``SupportRefine()`` (the shipped default) is reported beside it.
2. Val frames: the exported bundles through ``Segmenter`` (ONNX Runtime, 1 thread) with ``SupportRefine()``
   written into a copy of ``model.yaml`` (and the fold's choice where it differs), 1T1C's full inference
   (torch), and three geometry baselines: RANSAC at 1 cm (the issue's), RANSAC with its threshold chosen on
   the train frames, and RANSAC 1 cm + the same refinement.

``--node N``: instead, time a real segment_node on the first work folder's 1T1C† bundle, refinement off and
``SupportRefine()``, N timed frames each (``bench/real_sensors.node_speed``); prints ``RESULT <json>`` only.

Writes ``bench/results/real_sensors_refine.{json,md}``; the last line printed is ``RESULT <json>``.  Not a
test: never gates CI.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from real_sensors import MOSD, Dataset, bundle_rows, evaluate, node_speed, ransac_predict, set_fold
from wsseg_training.evaluation.evaluate import TorchPredictor
from wsseg_training.evaluation.metrics import ConfusionMatrix

from wsseg.core import geometry
from wsseg.core.features import support_planes_of
from wsseg.core.kernel_maps import neighbour_map
from wsseg.core.preprocess import refine_point_labels
from wsseg.core.refine import SupportRefine, refine_labels
from wsseg.core.voxelize import voxelize

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
#: (below_m, above_m, passes) tried on the train frames
SETTINGS = [(b, a, p) for b in (0.003, 0.004, 0.005) for a in (0.005, 0.007) for p in (1, 3, 8)]
RANSAC_THRESHOLDS_M = (0.006, 0.008, 0.01, 0.015)


def key(setting: tuple[float, float, int] | None) -> str:
    return "none" if setting is None else f"{1000 * setting[0]:g}/{1000 * setting[1]:g} mm x{setting[2]}"


def train_sweep(dataset: Dataset, checkpoint: Path) -> dict[str, float]:
    """mIoU over the train frames of the network's plain labels refined with every setting (and unrefined)."""
    model = TorchPredictor.from_checkpoint(checkpoint)
    model.preprocess = dataclasses.replace(model.preprocess, refine=None)
    pre = model.preprocess
    support = dataset.classes.names.index("support")
    matrices = {s: ConfusionMatrix(dataset.classes.num_classes) for s in [None, *SETTINGS]}
    for name in dataset.scene_names("train"):
        scene = dataset.load(name)
        truth = scene.semantic.astype(np.int64)  # type: ignore[union-attr]
        plain = model.predict(scene)
        grid = voxelize(scene.xyz, pre.voxel_size_m)
        neighbours = neighbour_map(grid.coords)
        planes = support_planes_of(grid, geometry.voxel_centroids(grid, scene.xyz), pre.features)
        matrices[None].add(truth, plain)
        for b, a, p in SETTINGS:
            refined, _ = refine_labels(plain, scene.xyz, grid, neighbours, planes,
                                       SupportRefine(below_m=b, above_m=a, passes=p), support,
                                       dataset.classes.num_classes)
            matrices[(b, a, p)].add(truth, refined)
    return {key(s): round(m.miou(), 5) for s, m in matrices.items()}


def refined_bundle(bundle: Path, refine: SupportRefine | None, out: Path) -> Path:
    """A copy of ``bundle`` whose model.yaml carries ``refine`` (None: none, voxel labels; the network file is
    unchanged)."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(bundle, out)
    meta = yaml.safe_load((out / "model.yaml").read_text())
    meta["preprocess"].pop("refine", None)
    if refine is not None:
        meta["preprocess"]["refine"] = refine.to_dict()
    (out / "model.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return out


def run_fold(fold: int, work: Path, scratch: Path) -> dict[str, Any]:
    from wsseg_training.methods.otoc.inference import OtocFullPredictor

    runs = work / f"runs_fold{fold}"
    dataset = set_fold(Dataset(work / "mosd"), fold)
    out: dict[str, Any] = {"fold": fold, "val": dataset.scene_names("val"), "train_sweep": {}}
    for run in ("otoc", "full"):
        out["train_sweep"][run] = train_sweep(dataset, runs / run / "model.pt")
        print(f"fold {fold} {run} train: {out['train_sweep'][run]}", flush=True)
    sweep = out["train_sweep"]["otoc"]
    chosen = max(SETTINGS, key=lambda s: sweep[key(s)])
    out["chosen"] = {"setting": key(chosen), "train_miou": sweep[key(chosen)],
                     "default_train_miou": sweep[key((SupportRefine().below_m, SupportRefine().above_m,
                                                      SupportRefine().passes))]}
    refines = {"default": SupportRefine()}
    if chosen != (SupportRefine().below_m, SupportRefine().above_m, SupportRefine().passes):
        refines["chosen"] = SupportRefine(below_m=chosen[0], above_m=chosen[1], passes=chosen[2])
    val: dict[str, Any] = {}
    for run in ("full", "otoc"):
        plain = refined_bundle(runs / run / "bundle", None, scratch / f"fold{fold}_{run}_plain")
        val[f"{run}_onnx_plain"] = bundle_rows(plain, dataset)  # fold 1 was exported with the old refinement
        for name, refine in refines.items():
            if run == "full" and name != "default":
                continue
            bundle = refined_bundle(runs / run / "bundle", refine, scratch / f"fold{fold}_{run}_{name}")
            val[f"{run}_onnx_{name}"] = bundle_rows(bundle, dataset)
    last = sorted((runs / "otoc" / "checkpoints").glob("step_*.pt"))[-1]
    full_inference = OtocFullPredictor.from_checkpoint(last)
    full_inference.preprocess = dataclasses.replace(full_inference.preprocess, refine=SupportRefine())
    val["otoc_full_inference_default"] = evaluate(full_inference.predict, dataset)
    val["ransac_1cm"] = evaluate(ransac_predict(), dataset)
    ransac_train = {f"{t:g}": evaluate(ransac_predict(threshold_m=t), dataset, "train")["miou"]
                    for t in RANSAC_THRESHOLDS_M}
    best = max(RANSAC_THRESHOLDS_M, key=lambda t: ransac_train[f"{t:g}"])
    out["ransac_train"] = {"miou_by_threshold_m": ransac_train, "chosen_m": best}
    val["ransac_train_chosen"] = evaluate(ransac_predict(threshold_m=best), dataset)
    base = ransac_predict()
    pre = dataclasses.replace(TorchPredictor.from_checkpoint(runs / "full" / "model.pt").preprocess,
                              refine=SupportRefine())
    val["ransac_1cm_refined"] = evaluate(lambda s: refine_point_labels(pre, dataset.classes.names, s.xyz, base(s)),
                                         dataset)
    out["val_rows"] = val
    print(f"fold {fold} val: {({k: v['miou'] for k, v in val.items()})}", flush=True)
    return out


ROW_LABELS = {
    "ransac_1cm": "RANSAC plane (1 cm), no learning (the issue's baseline)",
    "ransac_train_chosen": "RANSAC plane, threshold chosen on the train frames",
    "ransac_1cm_refined": "RANSAC plane (1 cm) + refinement (SupportRefine())",
    "full_onnx_plain": "full, exported, voxel labels",
    "full_onnx_default": "full, exported + refinement (SupportRefine())",
    "otoc_onnx_plain": "1T1C† (one click per object), exported Θ, voxel labels",
    "otoc_onnx_default": "1T1C† (one click per object), exported Θ + refinement (SupportRefine())",
    "otoc_onnx_chosen": "1T1C†, exported Θ + refinement (the fold's train-chosen setting)",
    "otoc_full_inference_default": "1T1C (Θ + R + propagation) + refinement (SupportRefine())",
}


def markdown(result: dict[str, Any]) -> str:
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    d = SupportRefine()
    lines = ["# mOSD: the support-plane refinement chosen on train frames, reported on val", "",
             f"Same trained networks as `bench/results/real_sensors.md` (2 folds, `rgbd_small` at 2 cm, 5 x 120 "
             f"steps), nothing retrained.  `SupportRefine()` = {1000 * d.below_m:g} / {1000 * d.above_m:g} mm, "
             f"{d.passes} passes.  Machine: {result['machine']['cpu']}, {result['machine']['cores']} shared cores, "
             f"1 thread, load {result['machine']['loadavg_start'][0]:.1f} -> {result['machine']['loadavg_end'][0]:.1f}"
             f" (ms are upper bounds); wall {result['wall_s'] / 60:.0f} min.  Command: `python "
             f"bench/real_sensors_refine.py {result['command']}`.", ""]
    folds = result["folds"]
    lines += ["## Val frames (10 per fold)", "",
              "| row | " + " | ".join(f"fold {f['fold']} mIoU % | objects" for f in folds) + " | mean mIoU % | "
              "ms / frame (Segmenter total, median) |", "|---|" + "---:|---:|" * len(folds) + "---:|---:|"]
    for row, label in ROW_LABELS.items():
        cells, values, ms = [], [], []
        for f in folds:
            r = f["val_rows"].get(row)
            if r is None:
                cells.append("- | -")
                continue
            values.append(r["miou"])
            cells.append(f"{pct(r['miou'])} | {r['objects_found']} / {r['objects']}")
            ms.append(r.get("segmenter_ms", {}).get("total", r["ms_per_frame"]))
        if values:
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {pct(float(np.mean(values)))} | "
                         f"{' / '.join(f'{m:.0f}' for m in ms)} |")
    lines += ["", "Refinement cost: Segmenter's `post` stage (devoxelize + refinement), median ms per val frame: "
              + "; ".join(f"fold {f['fold']} {k}: {f['val_rows'][k]['segmenter_ms'].get('post', float('nan')):.0f}"
                          for f in folds for k in ("otoc_onnx_plain", "otoc_onnx_default")), "",
              "## Train frames: the settings (mIoU % of each network's own predictions, refined)", "",
              "| setting | " + " | ".join(f"fold {f['fold']} 1T1C† | fold {f['fold']} full" for f in folds) + " |",
              "|---|" + "---:|---:|" * len(folds)]
    for s in ["none"] + [key(s) for s in SETTINGS]:
        lines.append(f"| {s} | " + " | ".join(f"{pct(f['train_sweep']['otoc'][s])} | {pct(f['train_sweep']['full'][s])}"
                                              for f in folds) + " |")
    lines += ["", "Choice per fold (best 1T1C† train mIoU): " + "; ".join(
        f"fold {f['fold']} {f['chosen']['setting']} ({pct(f['chosen']['train_miou'])} %, default "
        f"{pct(f['chosen']['default_train_miou'])} %)" for f in folds) + ".  RANSAC threshold chosen on train: "
        + "; ".join(f"fold {f['fold']} {f['ransac_train']['chosen_m']:g} m {f['ransac_train']['miou_by_threshold_m']}"
                    for f in folds) + ".", ""]
    return "\n".join(lines)


def node_rows(work: Path, frames: int, scratch: Path) -> dict[str, Any]:
    """segment_node on ``work``'s fold-0 1T1C† bundle, voxel labels vs ``SupportRefine()``: node_speed per row."""
    frame = MOSD / "learn2.pcd"
    rows: dict[str, Any] = {}
    for name, refine in (("plain", None), ("refined", SupportRefine())):
        bundle = refined_bundle(work / "runs_fold0" / "otoc" / "bundle", refine, scratch / f"node_{name}")
        load = os.getloadavg()[0]
        rows[name] = {**node_speed(bundle, frame, frames), "load": [round(load, 2), round(os.getloadavg()[0], 2)]}
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, nargs="+", required=True,
                        help="bench/real_sensors.py work folders, fold 0 first (each: mosd/, runs_fold<K>/)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--node", type=int, default=0, metavar="FRAMES",
                        help="only time segment_node on fold 0's 1T1C† bundle, plain vs refined")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.node:
        scratch = Path(tempfile.mkdtemp(prefix="wsseg_refine_node_"))
        try:
            print("RESULT " + json.dumps(node_rows(args.work[0], args.node, scratch)))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return 0
    started, load_start = time.perf_counter(), os.getloadavg()
    scratch = Path(tempfile.mkdtemp(prefix="wsseg_refine_"))
    try:
        folds = [run_fold(k, work, scratch) for k, work in enumerate(args.work)]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = {"folds": folds, "default": SupportRefine().to_dict(), "wall_s": round(time.perf_counter() - started),
              "command": " ".join(sys.argv[1:]),
              "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "torch": torch.__version__, "loadavg_start": [round(v, 2) for v in load_start],
                          "loadavg_end": [round(v, 2) for v in os.getloadavg()]}}
    table = markdown(result)
    print(table)
    if not args.no_write:
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / "real_sensors_refine.json").write_text(json.dumps(result, indent=1) + "\n")
        (args.results / "real_sensors_refine.md").write_text(table)
    print("RESULT " + json.dumps({f"fold{f['fold']}": {k: v["miou"] for k, v in f["val_rows"].items()}
                                  for f in folds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
