"""Densify Your Labels: the benchmark rows and the ablation (``bench/methods.py ablation densify [ARGS]``).

On synthetic indoor rooms (``IndoorConfig()``, S3DIS classes; or ``--data``, which must hold super-voxels), with
scene tags simulated from the train split's ground truth (seed ``--seed``), every run the same length
(``--epochs`` epochs of the training rooms, 12 of the default 15, in batches of 2 = 6 steps per epoch; ``full``
the same number of steps on crops, its usual recipe) and scored on the val rooms (mIoU over all points):

* ``main``: ``full``; Densify (ℓ_cam + ℓ_us + ℓ_match, Hungarian, filtering) with bootstrapping, which gives "Ours"
  (its network before bootstrapping, ``-no-bootstrap``), "Ours*" (the exported network) and the primitive
  propagation inference (``-primitives``) from one run;
* ``ablation`` (DYL Tab. 4): ℓ_cam; ℓ_cam + ℓ_us; ℓ_cam + ℓ_match; ℓ_cam + ℓ_us + naive match (each without
  bootstrapping, compared with "Ours");
* ``k``: the K sweep, K/2 and 2K beside the automatic K (``primitive_count.auto_primitive_count``);
* ``cooccurrence`` (DYL §4.5, Tab. 2): floor, wall and ceiling are in every room; "reduced" tags remove "floor"
  from one random room and "ceiling" from another, ``--draws`` draws (tag seeds 1..draws), ℓ_cam alone and Densify,
  mean ± std, beside the same two with the initial tags.

Orderings checked (DYL §5.9): ℓ_match alone hurts (ℓ_cam + ℓ_match < ℓ_cam), ℓ_us helps, all three best, Hungarian >
naive, bootstrapping > none, Ours > CAM under both tag settings, reduced > initial.  Writes
``bench/results/densify.{json,md}``; last line ``RESULT <json>``.  Not a test: never gates CI.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from harness import add_supervoxels, machine, miou_of, recipe, run_full, synthetic_dataset, write_results
from wsseg_training.checkpoint import load_checkpoint, model_from_checkpoint, preprocess_from_checkpoint
from wsseg_training.data.dataset import Dataset
from wsseg_training.data.subscenes import parse_grid, subscene_dataset
from wsseg_training.data.synth.config import parse_room_types
from wsseg_training.engine.config import config_from_dict
from wsseg_training.engine.inference import infer
from wsseg_training.engine.loop import Trainer
from wsseg_training.evaluation.evaluate import TorchPredictor
from wsseg_training.labels import SceneTags, simulate_scene_tags
from wsseg_training.methods import DensifyMethod
from wsseg_training.methods.densify.losses import match_loss
from wsseg_training.methods.densify.primitive_count import auto_primitive_count
from wsseg_training.methods.densify.primitives import Primitives, supervoxel_nodes

from wsseg.core.scene import Scene, save_scene

RESULTS = Path(__file__).resolve().parent / "results"
PARTS = ("main", "ablation", "k", "cooccurrence")
ABLATION = {
    "cam": {"losses": ["cam"]},
    "cam+us": {"losses": ["cam", "us"]},
    "cam+match": {"losses": ["cam", "match"]},
    "cam+us+naive": {"match": "naive"},
}


def thinned(dataset: Dataset, out: Path, keep_every: int) -> Dataset:
    """A copy of ``dataset`` with every ``keep_every``-th point of each scene (all fields, super-voxels included;
    deterministic), so that a CPU-bounded run sees the same rooms at a lower point density."""
    if keep_every <= 1:
        return dataset
    if not (out / "dataset.yaml").is_file():
        shutil.copytree(dataset.root, out)
        for name in dataset.scene_names():
            scene = dataset.load(name)
            fields = {f.name: getattr(scene, f.name) for f in dataclasses.fields(scene)}
            save_scene(Dataset(out).scene_path(name), Scene(**{k: None if v is None else v[::keep_every]
                                                                for k, v in fields.items()}),
                       num_classes=dataset.classes.num_classes)
    return Dataset(out)


def match_quality(dataset: Dataset, tags: SceneTags, run: Path, options: dict[str, Any]) -> dict[str, float]:
    """How right the last K-means period's matching is on the training scenes (analysis only, reads ground truth).

    With the Densify network (``densify.pt``, else ``model.pt``) and the primitives of ``checkpoints/last.pt``,
    ℓ_match's own matching (:func:`~wsseg_training.methods.densify.losses.match_loss`, the run's mode and filtering
    groups) is run on every training scene; returns ``matched_correct``: the share of the points of matched
    (scene, primitive) nodes whose majority ground-truth class is the matched class, ``matched_points``: the share
    of all points in matched nodes, ``purity``: the share of points carrying their node's majority class.
    """
    checkpoint = load_checkpoint(run / "densify.pt" if (run / "densify.pt").is_file() else run / "model.pt")
    model, preprocess = model_from_checkpoint(checkpoint).eval(), preprocess_from_checkpoint(checkpoint)
    primitives = Primitives.from_state(load_checkpoint(run / "checkpoints" / "last.pt")["training"]["method"]
                                       ["primitives"])
    names, classes = dataset.scene_names("train"), dataset.classes.num_classes
    correct = matched = pure = total = 0
    for i, name in enumerate(names):
        scene = dataset.load(name)
        node, _ = supervoxel_nodes(scene.supervoxel, int(options.get("min_supervoxel_points", 10)))
        primitive = torch.from_numpy(primitives.point_primitives(i, node))
        features = infer([scene], model, preprocess, "cpu", head=lambda v: {"f": v.output.point_features})[0]["f"]
        with torch.no_grad():
            result = match_loss(features, primitive, torch.zeros_like(primitive),
                                torch.from_numpy(tags.multi_hot(name, classes))[None], model.head, primitives.k,
                                options.get("match", "hungarian"), primitives.groups)
        for k, label in zip(result.primitive, result.label, strict=True):
            truth = np.bincount(scene.semantic[primitive.numpy() == k], minlength=classes)
            pure, total = pure + int(truth.max()), total + int(truth.sum())
            if label >= 0:
                matched += int(truth.sum())
                correct += int(truth.sum()) if int(truth.argmax()) == int(label) else 0
        total += int((primitive < 0).sum())
    return {"matched_correct": round(correct / max(1, matched), 4), "matched_points": round(matched / max(1, total), 4),
            "purity": round(pure / max(1, total), 4)}


def train_densify(dataset: Dataset, tags: SceneTags, run: Path, args: argparse.Namespace,
                  options: dict[str, Any]) -> dict[str, Any]:
    """One Densify run and its val mIoU under every inference mode it has."""
    steps = (args.epochs + int(options.get("bootstrap_epochs", 0))) * args.steps_per_epoch  # bootstrapping after
    config = recipe(args.profile, steps, 10_000, args.seed, args.lr, method={
        "kmeans_every_epochs": args.kmeans_every, **options}, features=args.features)
    config["data"]["batch_scenes"] = args.batch_scenes
    started = time.perf_counter()
    Trainer(config_from_dict(config), DensifyMethod(dataset.classes, config["method"], tags), dataset, run,
            progress=False, provenance={"labels": "scene_tags"}).run()
    out: dict[str, Any] = {"train_s": round(time.perf_counter() - started, 1),
                           "exported": miou_of(TorchPredictor.from_checkpoint(run / "model.pt"), dataset)}
    for suffix, predictor in DensifyMethod.offline_predictors(run / "checkpoints" / "last.pt",
                                                              torch.device("cpu")).items():
        out[suffix.lstrip("-")] = miou_of(predictor, dataset)
    out["ours"] = out.get("no-bootstrap", out["exported"])  # the Densify network's classifier
    out["match"] = match_quality(dataset, tags, run, options)
    print(f"  {run.name}: {json.dumps(out)}", flush=True)
    return out


def main_rows(dataset: Dataset, rooms: Dataset, tags: SceneTags, work: Path,
              args: argparse.Namespace) -> dict[str, Any]:
    """``full`` on the rooms (``args.epochs`` epochs of 2 rooms per step) and Densify on ``dataset``."""
    steps = args.epochs * args.room_steps_per_epoch
    full = run_full(rooms, work, recipe(args.profile, steps, 10_000, args.seed, args.lr, features=args.features))
    print(f"  full: {full}", flush=True)
    ours = train_densify(dataset, tags, work / "densify", args, {"bootstrap_epochs": args.bootstrap_epochs})
    return {"full": full, "densify": ours}


def summarise(values: list[float]) -> dict[str, float]:
    return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4),
            "values": [round(v, 4) for v in values]}


def orderings(result: dict[str, Any]) -> dict[str, bool | None]:
    """The DYL orderings (module docstring) on what was measured (None = not measured)."""
    main, abl = result.get("main"), result.get("ablation")
    ours = main["densify"]["ours"] if main else None
    checks: dict[str, bool | None] = {}
    if abl and ours is not None:
        cam = abl["cam"]["ours"]
        checks["l_match alone hurts (cam+match < cam)"] = abl["cam+match"]["ours"] < cam
        checks["l_us helps (cam+us > cam)"] = abl["cam+us"]["ours"] > cam
        checks["all three best"] = ours > max(v["ours"] for v in abl.values())
        checks["Hungarian > naive"] = ours > abl["cam+us+naive"]["ours"]
    if main:
        checks["bootstrapping > none"] = main["densify"]["exported"] > main["densify"]["ours"]
    co = result.get("cooccurrence")
    if co:
        checks["Ours > CAM (initial tags)"] = co["initial"]["densify"] > co["initial"]["cam"]
        checks["Ours > CAM (reduced tags)"] = co["reduced"]["densify"]["mean"] > co["reduced"]["cam"]["mean"]
        checks["reduced > initial (Ours)"] = co["reduced"]["densify"]["mean"] > co["initial"]["densify"]
    return checks


def markdown(result: dict[str, Any]) -> str:
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    lines = ["# Densify Your Labels on synthetic rooms", "", result["note"], ""]
    main = result.get("main")
    if main:
        full, d = main["full"]["miou"], main["densify"]
        lines += ["## Benchmark rows", "", "| run | val mIoU % | of full | paper (ScanNet val, of ≈72 full) |",
                  "|---|---:|---:|---:|", f"| full (dense labels) | {pct(full)} | 1.00 | 1.00 |",
                  f"| Densify (\"Ours\", classifier) | {pct(d['ours'])} | {d['ours'] / full:.2f} | 0.47 (33.7) |",
                  f"| Densify, primitive propagation | {pct(d['primitives'])} | {d['primitives'] / full:.2f} | "
                  "0.45 (32.5) |"]
        if "no-bootstrap" in d:
            lines.append(f"| Densify + bootstrapping (\"Ours*\", exported) | {pct(d['exported'])} | "
                         f"{d['exported'] / full:.2f} | 0.53 (38.1) |")
        lines.append("")
    abl = result.get("ablation")
    if abl:
        ours = main["densify"]["ours"] if main else None
        lines += ["## Loss components (DYL Tab. 4)", "", "| losses | val mIoU % | paper |", "|---|---:|---:|"]
        paper = {"cam": 19.2, "cam+us": 24.9, "cam+match": 16.9, "cam+us+naive": 20.5}
        for name, value in abl.items():
            lines.append(f"| {name} | {pct(value['ours'])} | {paper[name]} |")
        if ours is not None:
            lines.append(f"| cam+us+match (Ours) | {pct(ours)} | 33.7 |")
        lines.append("")
    k = result.get("k")
    if k:
        lines += ["## Number of primitives K (DYL Tab. 5)", "", "| K | val mIoU % |", "|---:|---:|"]
        lines += [f"| {kk}{' (auto)' if kk == result['k_auto'] else ''} | {pct(v)} |" for kk, v in sorted(k.items())]
        lines.append("")
    co = result.get("cooccurrence")
    if co:
        r = co["reduced"]
        lines += ["## Tag co-occurrence (DYL Tab. 2)", "", f"Reduced: {co['protocol']}", "",
                  "| method | initial % | reduced % (mean ± std) | paper initial / reduced (S3DIS) |",
                  "|---|---:|---:|---:|",
                  f"| CAM (ℓ_cam) | {pct(co['initial']['cam'])} | {pct(r['cam']['mean'])} ± {pct(r['cam']['std'])} | "
                  "8.4 / 12.6 ± 0.6 |",
                  f"| Ours | {pct(co['initial']['densify'])} | {pct(r['densify']['mean'])} ± {pct(r['densify']['std'])}"
                  " | 23.6 / 30.5 ± 0.9 |", ""]
    lines += ["## Orderings", ""]
    lines += [f"- {name}: {'yes' if ok else 'no'}" for name, ok in result["orderings"].items() if ok is not None]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="dataset with super-voxels (default: synthetic)")
    parser.add_argument("--scenes", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--bootstrap-epochs", type=int, default=10)
    parser.add_argument("--kmeans-every", type=int, default=2, help="K-means period in epochs")
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--keep-every", type=int, default=1,
                        help="train and score on every N-th point of each room (CPU budget; 1 = all)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated of {PARTS}")
    parser.add_argument("--features", default="offset,rgb", help="network inputs of every run (e.g. offset,rgb,height)")
    parser.add_argument("--subscenes", default="", help="NX,NY,NZ: train on sub-scenes of the rooms "
                                                        "(subscene_dataset; '' = whole rooms)")
    parser.add_argument("--room-types", type=parse_room_types, default="office_only",
                        help="room-type mix of new rooms (IndoorConfig.room_types: a preset or TYPE=SHARE,...)")
    parser.add_argument("--batch-scenes", type=int, default=2, help="Densify scenes per step")
    parser.add_argument("--name", default="densify", help="results file name (bench/results/NAME.{json,md})")
    parser.add_argument("--match-quality", type=Path, default=None, metavar="RUN",
                        help="only print match_quality of an existing Densify run directory on these data and tags")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    parts = [p for p in args.parts.split(",") if p]
    work = args.work or Path(tempfile.mkdtemp(prefix="wsseg_densify_"))
    started, load_start = time.perf_counter(), os.getloadavg()
    dataset = synthetic_dataset(work / "data", "indoor", args.scenes, args.seed, args.data, args.room_types)
    supervoxels = add_supervoxels(dataset)
    rooms = dataset = thinned(dataset, work / f"data_every{args.keep_every}", args.keep_every)
    args.features = [f for f in args.features.split(",") if f]
    args.room_steps_per_epoch = -(-len(rooms.scene_names("train")) // 2)
    if args.subscenes:
        grid = parse_grid(args.subscenes)
        dataset = subscene_dataset(rooms, work / f"data_every{args.keep_every}_sub{''.join(map(str, grid))}", grid)
    train = dataset.scene_names("train")
    args.steps_per_epoch = -(-len(train) // args.batch_scenes)
    tags = simulate_scene_tags(dataset, train, args.seed)
    total_sv = sum(int(np.unique(s[s >= 0]).size) for s in (dataset.load(n).supervoxel for n in train))
    k_auto = auto_primitive_count(total_sv, dataset.classes.num_classes)
    result: dict[str, Any] = {"k_auto": k_auto, "train_supervoxels": total_sv, "supervoxels": supervoxels,
                              "parts": parts}
    print(f"{len(train)} train scenes, {total_sv} super-voxels, K = {k_auto}", flush=True)
    if args.match_quality is not None:
        print("RESULT " + json.dumps(match_quality(dataset, tags, args.match_quality, {})), flush=True)
        return 0
    def checkpoint_results() -> None:
        """Write what has been measured so far (a long run that is stopped keeps its finished parts)."""
        finish(result, args, argv, dataset, train, supervoxels, k_auto, started, load_start)

    if "main" in parts:
        result["main"] = main_rows(dataset, rooms, tags, work, args)
        checkpoint_results()
    if "ablation" in parts:
        result["ablation"] = {}
        for name, options in ABLATION.items():
            result["ablation"][name] = train_densify(dataset, tags, work / name, args, options)
        checkpoint_results()
    if "k" in parts:
        result["k"] = {k: train_densify(dataset, tags, work / f"k{k}", args, {"primitives": k})["ours"]
                       for k in (max(1, k_auto // 2), 2 * k_auto)}
        if "main" in parts:
            result["k"][k_auto] = result["main"]["densify"]["ours"]
        checkpoint_results()
    if "cooccurrence" in parts:
        initial = {"cam": result["ablation"]["cam"]["ours"] if "ablation" in result else
                   train_densify(dataset, tags, work / "cam_initial", args, ABLATION["cam"])["ours"],
                   "densify": result["main"]["densify"]["ours"] if "main" in result else
                   train_densify(dataset, tags, work / "densify_initial", args, {})["ours"]}
        reduced: dict[str, list[float]] = {"cam": [], "densify": []}
        for draw in range(1, args.draws + 1):
            fewer = simulate_scene_tags(dataset, train, draw, drop=[("floor", 1), ("ceiling", 1)])
            for name, options in (("densify", {}), ("cam", ABLATION["cam"])):
                reduced[name].append(train_densify(dataset, fewer, work / f"{name}_reduced{draw}", args,
                                                   options)["ours"])
            result["cooccurrence"] = {"initial": initial, "reduced": {k: summarise(v) for k, v in reduced.items()},
                                      "protocol": "'floor' removed from one random training room and 'ceiling' "
                                                  f"from another, tag seeds 1..{draw}"}
            checkpoint_results()
    checkpoint_results()
    print(markdown(result))
    print("RESULT " + json.dumps({"main": result.get("main"), "orderings": result["orderings"],
                                  "wall_s": result["wall_s"]}), flush=True)
    return 0


def finish(result: dict[str, Any], args: argparse.Namespace, argv: list[str] | None, dataset: Dataset,
           train: list[str], supervoxels: dict[str, float], k_auto: int, started: float,
           load_start: tuple[float, float, float]) -> None:
    """Orderings, machine record and note; writes bench/results/NAME.{json,md} (``--name``)."""
    result["orderings"] = orderings(result)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["machine"] = machine(load_start)
    m = result["machine"]
    if args.subscenes:
        grid = args.subscenes.replace(",", "x")
        protocol = (f"scene tags of {len(train)} sub-scenes (each train room cut into a {grid}"
                    f" grid of its bounding box, `subscene_dataset`; seed {args.seed}); batches of {args.batch_scenes} "
                    "whole sub-scenes")
    else:
        protocol = f"scene tags of the train rooms (seed {args.seed}); batches of {args.batch_scenes} whole rooms"
    protocol += f"; room types {args.room_types}"
    result["note"] = (
        f"Synthetic indoor rooms ({len(dataset.scene_names('val'))} val rooms"
        f"{f', every {args.keep_every}-th point' if args.keep_every > 1 else ''}, "
        f"~{supervoxels['mean_per_scene']:.0f} super-voxels per room, the dataset's default super-voxels), "
        f"{protocol}; network inputs {', '.join(args.features)}; `{args.profile}` profile, "
        f"{args.epochs} epochs ({args.epochs * args.steps_per_epoch} steps; paper proportions: warm-up "
        f"{round(args.epochs * 250 / 400)}, matching from epoch "
        f"{round(args.epochs * 60 / 400)}), K-means every {args.kmeans_every} epochs, K = {k_auto} (auto), "
        f"bootstrapping {args.bootstrap_epochs} more epochs on crops of 10,000 points (\"Ours*\" trains "
        f"{args.epochs + args.bootstrap_epochs} epochs in all); `full` {args.epochs} epochs of the "
        f"{len(dataset.scene_names('train'))} train rooms "
        f"({args.epochs * args.room_steps_per_epoch} steps of 2 crops of 10,000 points, dense labels); AdamW lr "
        f"{args.lr}, cosine.  Machine: {m['device']}, "
        f"{m['cores']} cores shared with other jobs (load {' / '.join(map(str, m['loadavg_1_5_15_start']))} at the "
        f"start, "
        f"{' / '.join(map(str, m['loadavg_1_5_15_end']))} at the end: times are upper bounds), torch "
        f"{m['torch_threads']} thread; wall {result['wall_s'] / 60:.1f} min.  Command: `bench/methods.py ablation "
        f"densify {' '.join(argv or sys.argv[1:])}`.")
    write_results(args.results, args.name, result, markdown(result))


if __name__ == "__main__":
    sys.exit(main())
