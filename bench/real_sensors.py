"""Real-sensor benchmark: the RANSAC plane baseline beside full, 1T1C† and 1T1C on the real mOSD Kinect frames.

Data: the 45 mOSD ``learn`` frames (``../shared/data/mosd/learn``), split by frame into 35 train / 10 val;
``--folds 0,1`` runs two disjoint val sets (fold 0 = the reader's evenly spaced frames, fold 1 = the
frames two places further), never training on a fold's val frames.  Classes ``support`` / ``object``.

Rows, each evaluated on the val frames of every fold (IoU per class, mIoU over the accumulated confusion,
object recall = the share of object instances with >= 50 % of their points labelled ``object``):

* ``ransac``: no learning -- the dominant plane of the 1 cm voxel centroids by RANSAC
  (:func:`wsseg.core.geometry.fit_support_plane`, 1 cm threshold) is ``support``, every other point ``object``;
* ``full``: dense labels; ``1T1C†``: one simulated click per object instance (and per support surface), the
  exported backbone Θ alone; ``1T1C``: Θ + relation network + graph propagation over super-voxels.
  Same profile, grid, features and number of optimiser steps for all; the per-round pseudo-label table
  (coverage and mIoU against ground truth, analysis only) is recorded.

Speed: every learned model is exported (``wsseg export``) and timed on the val frames through ONNX Runtime
(``Segmenter``, 1 thread) and, with ``--node``, as a real ``segment_node`` process fed a 640x480 RGB-D
frame (depth + colour + camera_info) closed-loop and open-loop (sustained Hz).

Writes ``bench/results/real_sensors.json`` and ``.md`` (machine, load average, wall time, commands);
the last line printed is ``RESULT <json>``.  Not a test: never gates CI.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm import tqdm
from wsseg_training.data.dataset import Dataset, DatasetWriter
from wsseg_training.engine.config import config_from_dict
from wsseg_training.engine.loop import Trainer
from wsseg_training.evaluation.evaluate import BundlePredictor, TorchPredictor
from wsseg_training.evaluation.metrics import ConfusionMatrix
from wsseg_training.labels import Clicks, simulate_clicks

from wsseg.core import geometry
from wsseg.core.refine import SupportRefine
from wsseg.core.scene import Scene
from wsseg.core.voxelize import voxelize

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
MOSD = REPO.parent / "shared" / "data" / "mosd" / "learn"
PARAMS = REPO / "config" / "segment.yaml"
GEOMETRY = ("normal", "support_height", "support_cos")


# ----------------------------------------------------------------------------------------------- data


def write_mosd(root: Path, frames: Path) -> Dataset:
    """Convert the mOSD frames once (the reader's split is replaced per fold)."""
    from wsseg_training.data.readers.mosd import MOSDReader

    if not (root / "dataset.yaml").is_file():
        reader = MOSDReader(frames)
        with DatasetWriter(root, reader.name, reader.classes, sensor=reader.sensor) as writer:
            for item in tqdm(reader, desc="mOSD frames", unit="frame"):
                writer.add(item.name, item.scene, split=item.split, **item.metadata)
    return Dataset(root)


def set_fold(dataset: Dataset, fold: int, val_frames: int = 10) -> Dataset:
    """Rewrite the splits: val = ``val_frames`` evenly spaced frames shifted by ``2 * fold`` places."""
    names = sorted(dataset.info.scenes, key=lambda n: int("".join(c for c in n if c.isdigit()) or -1))
    count = len(names)
    val = {names[(int((k + 0.5) * count / val_frames) + 2 * fold) % count] for k in range(val_frames)}
    path = dataset.root / "dataset.yaml"
    data = yaml.safe_load(path.read_text())
    data["splits"] = {"train": [n for n in names if n not in val], "val": [n for n in names if n in val]}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return Dataset(dataset.root)


def add_supervoxels(dataset: Dataset, method: str) -> float:
    """Super-voxels for every frame (kept in the scene records); returns the mean count per frame."""
    import dataclasses

    from wsseg_training.data.supervoxels import SupervoxelParams, compute_supervoxels

    from wsseg.core.scene import save_scene

    counts = []
    for name in tqdm(dataset.scene_names(), desc=f"super-voxels ({method})", unit="frame"):
        scene = dataset.load(name)
        if scene.supervoxel is None:
            labels = compute_supervoxels(scene.xyz, scene.rgb, SupervoxelParams(method=method))
            save_scene(dataset.scene_path(name), dataclasses.replace(scene, supervoxel=labels),
                       num_classes=dataset.classes.num_classes)
            scene = dataset.load(name)
        counts.append(int(scene.supervoxel.max()) + 1)  # type: ignore[union-attr]
    return float(np.mean(counts))


# ------------------------------------------------------------------------------------------ metrics


def object_instances(scene: Scene, object_id: int) -> list[np.ndarray]:
    """Point indices of every object instance of the scene (instance id of points labelled ``object_id``)."""
    assert scene.instance is not None and scene.semantic is not None
    ids = np.unique(scene.instance[scene.semantic == object_id])
    return [np.flatnonzero((scene.instance == i) & (scene.semantic == object_id)) for i in ids if i >= 0]


def evaluate(predict: Any, dataset: Dataset, split: str = "val") -> dict[str, Any]:
    """IoU per class, mIoU, object recall and predict ms per frame of ``predict(scene) -> (N,) labels``."""
    classes = dataset.classes
    object_id = classes.names.index("object")
    confusion = ConfusionMatrix(classes.num_classes)
    found = total = 0
    times = []
    for name in dataset.scene_names(split):
        scene = dataset.load(name)
        start = time.perf_counter()
        labels = np.asarray(predict(scene))
        times.append(time.perf_counter() - start)
        confusion.add(scene.semantic, labels)  # type: ignore[arg-type]
        for points in object_instances(scene, object_id):
            total += 1
            found += int(np.mean(labels[points] == object_id) >= 0.5)
    iou = confusion.iou()
    return {"miou": round(confusion.miou(), 4), "iou": {c: round(float(v), 4) for c, v in zip(classes.names, iou,
                                                                                          strict=True)},
            "object_recall": round(found / max(1, total), 4), "objects_found": found, "objects": total,
            "ms_per_frame": round(1e3 * float(np.median(times)), 1)}


def ransac_predict(threshold_m: float = 0.01, voxel_m: float = 0.01) -> Any:
    """The non-learned baseline: points within ``threshold_m`` of the dominant plane are support (id 0)."""
    params = geometry.PlaneParams(threshold_m=threshold_m)

    def predict(scene: Scene) -> np.ndarray:
        grid = voxelize(scene.xyz, voxel_m)
        plane = geometry.fit_support_plane(geometry.voxel_centroids(grid, scene.xyz), params)
        return np.where(np.abs(plane.signed_distance(scene.xyz)) <= threshold_m, 0, 1)

    return predict


# -------------------------------------------------------------------------------------------- runs


def recipe(args: argparse.Namespace, steps: int, method: dict | None = None, checkpoint_every: int = 0,
           keep: int = 0) -> dict:
    """The training config every learned row shares (plain data, as a YAML would hold it)."""
    return {
        "seed": args.seed, "profile": args.profile, "device": "cpu",
        "data": {"voxel_size_m": args.voxel, "features": list(args.features), "crop_max_points": args.crop_points,
                 "batch_scenes": 2, "support_scale_m": args.support_scale, "refine": args.refine},
        "optim": {"optimizer": "adamw", "lr": args.lr, "weight_decay": 1e-4, "schedule": "cosine",
                  "warmup_steps": max(1, steps // 20), "grad_clip_norm": 10.0},
        "train": {"steps": steps, "checkpoint_every_steps": checkpoint_every, "keep_checkpoints": keep,
                  "log_every_steps": 50, "amp": False},
        "method": dict(method or {}),
    }


def torch_rows(checkpoint: Path, dataset: Dataset, predictor: Any = TorchPredictor) -> dict[str, Any]:
    """``predictor.from_checkpoint(checkpoint)`` evaluated as trained and with the support-plane refinement
    toggled (the rule is applied after the network, so one model gives both rows): {"plain", "refined"}."""
    model = predictor.from_checkpoint(checkpoint)
    trained = model.preprocess
    out = {}
    for key, refine in (("plain", None), ("refined", trained.refine or SupportRefine())):
        model.preprocess = dataclasses.replace(trained, refine=refine)
        out[key] = evaluate(model.predict, dataset)
    model.preprocess = trained
    return out


def exported(run: Path) -> Path:
    from wsseg_export.onnx_export import export_bundle

    export_bundle(run / "model.pt", run / "bundle")
    return run / "bundle"


def bundle_rows(bundle: Path, dataset: Dataset) -> dict[str, Any]:
    """The exported bundle through ONNX Runtime (1 thread): accuracy and per-stage ms on the val frames."""
    predictor = BundlePredictor(bundle, engine="onnxruntime-cpu", num_threads=1)
    stages: dict[str, list[float]] = {}

    def predict(scene: Scene) -> np.ndarray:
        result = predictor.segmenter.run(scene.xyz, rgb=scene.rgb)
        for key, value in result.timings_ms.items():
            stages.setdefault(key, []).append(value)
        return result.labels.astype(np.int64)

    out = evaluate(predict, dataset)
    out["segmenter_ms"] = {k: round(float(np.median(v)), 1) for k, v in stages.items()}
    return out


def node_speed(bundle: Path, frame_path: Path, frames: int) -> dict[str, Any]:
    """A real segment_node fed one mOSD frame as 640x480 RGB-D: closed-loop ms and open-loop sustained Hz."""
    from wsseg_export.node_replay import run_replay

    from wsseg.ros.replay_sources import load_frames

    frame = load_frames(frame_path)[0].as_rgbd()
    latency = run_replay(bundle, [frame], PARAMS, mode="rgbd", repeat=frames + 1, collect_labels=False,
                         timeout_s=300.0)
    latency.timings_ms = latency.timings_ms[1:]  # the first frame warms ONNX Runtime up
    summary = latency.summary()
    rate = min(30.0, 3000.0 / max(summary["total_ms_median"], 1.0))
    sustained = run_replay(bundle, [frame], PARAMS, mode="rgbd", rate_hz=rate, repeat=max(3, int(8 * rate)),
                           collect_labels=False, timeout_s=300.0)
    return {"latency_ms": {k: round(v, 1) for k, v in summary.items()}, "published_hz": round(rate, 1),
            "sustained_hz": round(sustained.rate_hz, 2), "frame": frame_path.name}


def run_full(args: argparse.Namespace, dataset: Dataset, work: Path) -> dict[str, Any]:
    from wsseg_training.methods import FullMethod

    steps = args.rounds * args.steps
    start = time.perf_counter()
    if not (args.reuse and (work / "full" / "model.pt").exists()):
        Trainer(config_from_dict(recipe(args, steps)), FullMethod(dataset.classes), dataset, work / "full",
                progress=False, provenance={"labels": None}).run()
    out: dict[str, Any] = {"train_s": round(time.perf_counter() - start, 1), "labels": "dense"}
    out["torch"] = torch_rows(work / "full" / "model.pt", dataset)
    out["bundle"] = exported(work / "full")
    return out


def run_otoc(args: argparse.Namespace, dataset: Dataset, clicks: Clicks, work: Path) -> dict[str, Any]:
    from wsseg_training.methods import OtocMethod
    from wsseg_training.methods.otoc.inference import OtocFullPredictor
    from wsseg_training.methods.otoc.method import ROUNDS_FILE

    method = {"variant": "rel_gp", "iterations": args.rounds, "steps_per_iteration": args.steps,
              "threshold": args.threshold, "otoc": json.loads(args.otoc or "{}")}
    config = recipe(args, args.rounds * args.steps, method, checkpoint_every=args.steps, keep=args.rounds + 1)
    otoc = OtocMethod(dataset.classes, config["method"], clicks)
    otoc.attach_analysis_truth(lambda scene: dataset.load(scene).semantic)  # logging only
    start = time.perf_counter()
    Trainer(config_from_dict(config), otoc, dataset, work / "otoc", progress=False,
            provenance={"labels": "clicks"}).run()
    out: dict[str, Any] = {"train_s": round(time.perf_counter() - start, 1), "labels": "clicks:1/object"}
    history = json.loads((work / "otoc" / ROUNDS_FILE).read_text())["rounds"]
    out["rounds"] = []
    for t in range(1, args.rounds + 1):
        checkpoint = work / "otoc" / "checkpoints" / f"step_{t * args.steps:08d}.pt"
        row: dict[str, Any] = {"round": t}
        trained_on = next((h for h in history if h["round"] == t), {})
        row["pseudo_coverage"] = round(trained_on.get("coverage", float("nan")), 4)
        row["pseudo_miou"] = round(trained_on.get("analysis_miou", float("nan")), 4)
        if t == args.rounds or args.per_round:
            row["dagger_miou"] = evaluate(TorchPredictor.from_checkpoint(checkpoint).predict, dataset)["miou"]
        out["rounds"].append(row)
    last = work / "otoc" / "checkpoints" / f"step_{args.rounds * args.steps:08d}.pt"
    out["torch"] = torch_rows(work / "otoc" / "model.pt", dataset)
    out["full_inference_both"] = torch_rows(last, dataset, OtocFullPredictor)
    out["full_inference"] = out["full_inference_both"]["refined" if args.refine else "plain"]
    out["bundle"] = exported(work / "otoc")
    return out


# ------------------------------------------------------------------------------------------ report


ROWS = (("ransac", "RANSAC plane (1 cm), no learning"), ("full", "full (dense labels), exported"),
        ("otoc_dagger", "1T1C† (one click per object), exported Θ"), ("otoc", "1T1C (Θ + R + propagation)"))


def fold_rows(fold: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The four table rows of one fold: the exported bundles for full / 1T1C† (what the robot runs)."""
    rows = {"ransac": fold["ransac"]}
    if "full" in fold:
        rows["full"] = fold["full"]["onnx"]
    if "otoc" in fold:
        rows["otoc_dagger"] = fold["otoc"]["onnx"]
        rows["otoc"] = fold["otoc"]["full_inference"]
    return rows


def mean_rows(folds: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per row: mean over folds of mIoU, IoU per class, object recall (objects pooled) and ms per frame."""
    out: dict[str, dict[str, float]] = {}
    for key, _ in ROWS:
        rows = [fold_rows(f)[key] for f in folds if key in fold_rows(f)]
        if not rows:
            continue
        out[key] = {"miou": round(float(np.mean([r["miou"] for r in rows])), 4),
                    "object_recall": round(sum(r["objects_found"] for r in rows) / max(1, sum(r["objects"]
                                                                                           for r in rows)), 4),
                    "objects_found": sum(r["objects_found"] for r in rows), "objects": sum(r["objects"] for r in rows),
                    "ms_per_frame": round(float(np.mean([r["ms_per_frame"] for r in rows])), 1),
                    **{f"iou_{c}": round(float(np.mean([r["iou"][c] for r in rows])), 4) for c in rows[0]["iou"]}}
    return out


def markdown(result: dict[str, Any]) -> str:
    pct = lambda v: "n/a" if v is None or v != v else f"{100 * v:.1f}"  # noqa: E731
    s = result["settings"]
    lines = ["# Real sensors: mOSD Kinect frames (support / object)", "", result["note"], "",
             f"Mean over {len(result['folds'])} fold(s) of 35 train / 10 val frames:", "",
             "| row | mIoU % | IoU support % | IoU object % | objects found (>= 50 % of points) | ms / frame |",
             "|---|---:|---:|---:|---:|---:|"]
    for key, label in ROWS:
        r = result["mean"].get(key)
        if r:
            lines.append(f"| {label} | {pct(r['miou'])} | {pct(r['iou_support'])} | {pct(r['iou_object'])} | "
                         f"{r['objects_found']} / {r['objects']} ({pct(r['object_recall'])} %) | "
                         f"{r['ms_per_frame']:.0f} |")
    lines += ["", "ms / frame: RANSAC in numpy; full and 1T1C† = the exported bundle through `Segmenter` (ONNX "
              "Runtime, 1 thread: voxelize + features + kernel maps + network + devoxelize); 1T1C's full inference "
              "in PyTorch (offline only).", ""]
    for k, fold in enumerate(result["folds"]):
        lines += [f"## Fold {fold['fold']} (val: {', '.join(fold['val'])})", ""]
        for key, label in ROWS:
            r = fold_rows(fold).get(key)
            if r:
                lines.append(f"- {label}: mIoU {pct(r['miou'])}, IoU {r['iou']}, objects {r['objects_found']}/"
                             f"{r['objects']}")
        if "otoc" in fold:
            lines += ["", "1T1C per round (Y = the pseudo labels that round trained on; analysis only):", "",
                      "| round | Y coverage % | Y mIoU % | 1T1C† val mIoU % |", "|---:|---:|---:|---:|"]
            for row in fold["otoc"]["rounds"]:
                lines.append(f"| {row['round']} | {pct(row['pseudo_coverage'])} | {pct(row['pseudo_miou'])} | "
                             f"{pct(row.get('dagger_miou'))} |")
            lines += ["", f"Y_0 (clicks expanded to super-voxels): {fold['labels']}"]
        lines.append("")
        del k
    if result.get("node"):
        n = result["node"]
        ms = n["latency_ms"]
        lines += ["## segment_node (real process, 640x480 RGB-D in)", "",
                  f"1T1C† bundle, {n['frame']}: median total {ms['total_ms_median']:.0f} ms "
                  f"(pre {ms['pre_ms_median']:.0f}, inference {ms['inference_ms_median']:.0f}, "
                  f"post {ms['post_ms_median']:.0f}); sustained {n['sustained_hz']:.1f} Hz when fed "
                  f"{n['published_hz']:.0f} Hz.", ""]
    lines += ["## Settings", "", f"`{json.dumps(s)}`", ""]
    if result.get("notes"):
        lines += ["## Notes", "", result["notes"].strip(), ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mosd", type=Path, default=MOSD, help="mOSD 'learn' folder of PCD frames")
    parser.add_argument("--folds", default="0", help="comma-separated folds (0, 1: disjoint val frames)")
    parser.add_argument("--rows", default="ransac,full,otoc", help="which rows to run")
    parser.add_argument("--profile", default="rgbd_small")
    parser.add_argument("--voxel", type=float, default=0.02, help="voxel edge, metres")
    parser.add_argument("--features", default="offset,rgb," + ",".join(GEOMETRY))
    parser.add_argument("--rounds", type=int, default=5, help="1T1C rounds (full gets rounds x steps)")
    parser.add_argument("--steps", type=int, default=200, help="steps per 1T1C round")
    parser.add_argument("--crop-points", type=int, default=250_000,
                        help="training crops: the points nearest (in x, y) to a random point (frames have <= 210k)")
    parser.add_argument("--support-scale", type=float, default=0.25,
                        help="height above the support plane (m) that the support_height feature maps to 1")
    parser.add_argument("--refine", default="off",
                        help="support-plane refinement of point labels: off, default (SupportRefine()) or JSON fields")
    parser.add_argument("--lr", type=float, default=0.004)
    parser.add_argument("--threshold", type=float, default=0.9, help="1T1C's T (Eq. 8)")
    parser.add_argument("--otoc", default=None,
                        help="OtocConfig fields as JSON, e.g. '{\"class_weighting\": \"none\"}'")
    parser.add_argument("--supervoxels", default="felzenszwalb", help="super-voxel method for 1T1C")
    parser.add_argument("--per-round", action="store_true", help="evaluate 1T1C† after every round")
    parser.add_argument("--node", action="store_true", help="time a real segment_node on the 1T1C† bundle")
    parser.add_argument("--node-frames", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None, help="data and runs (default: a temp dir)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--name", default="real_sensors", help="results file stem")
    parser.add_argument("--notes", type=Path, default=None, help="text appended as '## Notes'")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--reuse", action="store_true",
                        help="skip training `full` when WORK/runs_foldK/full/model.pt exists (a resumed benchmark)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args.features = tuple(f for f in args.features.split(",") if f)
    args.refine = (None if args.refine == "off" else SupportRefine().to_dict() if args.refine == "default"
                   else SupportRefine(**json.loads(args.refine)).to_dict())
    torch.set_num_threads(args.threads)
    rows = set(args.rows.split(","))
    work = args.work or Path(tempfile.mkdtemp(prefix="wsseg_real_"))
    started, load_start = time.perf_counter(), os.getloadavg()
    dataset = write_mosd(work / "mosd", args.mosd)
    supervoxels = add_supervoxels(dataset, args.supervoxels) if "otoc" in rows else None
    folds = []
    for fold in (int(f) for f in args.folds.split(",")):
        dataset = set_fold(dataset, fold)
        runs = work / f"runs_fold{fold}"
        out: dict[str, Any] = {"fold": fold, "val": dataset.scene_names("val")}
        print(f"fold {fold}: val {out['val']}", flush=True)
        out["ransac"] = evaluate(ransac_predict(), dataset)
        print(f"  ransac: {out['ransac']}", flush=True)
        if "full" in rows:
            out["full"] = run_full(args, dataset, runs)
            out["full"]["onnx"] = bundle_rows(out["full"].pop("bundle"), dataset)
            print(f"  full: torch {({k: v['miou'] for k, v in out['full']['torch'].items()})}, "
                  f"onnx {out['full']['onnx']}", flush=True)
        if "otoc" in rows:
            from otoc import label_fractions  # bench/otoc.py: Y_0's share of the points and accuracy

            clicks = simulate_clicks(dataset, dataset.scene_names("train"), seed=args.seed)
            y0 = label_fractions(dataset, clicks, json.loads(args.otoc or "{}"))
            out["labels"] = (f"{y0['clicks']} clicks ({100 * y0['clicked_fraction']:.4f} % of the train points) -> "
                             f"{100 * y0['y0_fraction']:.1f} % of the points, {100 * y0['y0_accuracy']:.1f} % accurate")
            out["otoc"] = run_otoc(args, dataset, clicks, runs)
            bundle = out["otoc"].pop("bundle")
            out["otoc"]["onnx"] = bundle_rows(bundle, dataset)
            print(f"  1T1C†: {out['otoc']['onnx']}\n  1T1C: {out['otoc']['full_inference']}", flush=True)
            if args.node and "node" not in locals():
                node = node_speed(bundle, args.mosd / f"{out['val'][0]}.pcd", args.node_frames)
                print(f"  node: {node}", flush=True)
        folds.append(out)
    load_end = os.getloadavg()
    result: dict[str, Any] = {"folds": folds, "mean": mean_rows(folds), "wall_s": round(time.perf_counter() - started),
                              "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()
                                           if k not in ("work", "results", "notes", "mosd")}}
    result["settings"]["supervoxels_per_frame"] = supervoxels
    if "node" in locals():
        result["node"] = node
    result["machine"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                         "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                         "loadavg_start": [round(v, 2) for v in load_start],
                         "loadavg_end": [round(v, 2) for v in load_end]}
    result["note"] = (f"`{args.profile}` profile at {args.voxel:g} m, features {list(args.features)}, "
                      f"{args.rounds} x {args.steps} steps (full: the same {args.rounds * args.steps}), batches of "
                      f"2 crops of <= {args.crop_points:,} points, lr {args.lr}, seed {args.seed}, 1T1C "
                      f"super-voxels `{args.supervoxels}`.  "
                      f"Machine: {result['machine']['cpu']}, {os.cpu_count()} cores shared with other jobs (load "
                      f"average {load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end, so times are upper "
                      f"bounds), torch {torch.__version__} with {args.threads} thread(s); wall "
                      f"{result['wall_s'] / 60:.0f} min.  "
                      f"Command: `python bench/real_sensors.py {' '.join(sys.argv[1:])}`.")
    result["notes"] = args.notes.read_text() if args.notes else ""
    table = markdown(result)
    print(table)
    if not args.no_write:
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
        (args.results / f"{args.name}.md").write_text(table)
    print("RESULT " + json.dumps({"mean": result["mean"], "node": result.get("node"), "wall_s": result["wall_s"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
