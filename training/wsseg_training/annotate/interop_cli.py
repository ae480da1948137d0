"""``wsseg labels import | export``: bring per-point labels of other tools in, take click labels out.

``import`` reads one SemanticKITTI ``.label`` or Segments.ai label JSON per scene and writes a weak-label
file of the chosen kind; ``export`` writes what a clicks file labels (1T1C's click expansion) in either
layout.  Layouts and the meaning of the ids: :mod:`wsseg_training.annotate.interop`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from wsseg_training.annotate.cli import expansion_rule
from wsseg_training.annotate.interop import FORMATS, SUFFIX, click_instances, read_dense, write_dense
from wsseg_training.annotate.session import ANNOTATABLE_KINDS
from wsseg_training.data.dataset import Dataset
from wsseg_training.labels.schema import load_weak_labels, save_weak_labels
from wsseg_training.labels.simulate import (
    SUBCLOUD_GRIDS,
    make_header,
    sample_object_clicks,
    scene_classes,
    scene_rng,
    scene_subclouds,
)
from wsseg_training.labels.types import Clicks, SceneTags, SubcloudTags, WeakLabels
from wsseg_training.methods.otoc.pseudo_labels import initial_pseudo_labels


def register(subparsers: argparse._SubParsersAction) -> None:
    imp = subparsers.add_parser("import", help="make a weak-label file from another tool's per-point labels",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    imp.add_argument("source", type=Path, help="folder of <scene>.label / <scene>.json files (or a SemanticKITTI "
                                               "tree sequences/NN/labels/XXXXXX.label)")
    imp.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
    imp.add_argument("--data", required=True, type=Path, help="dataset directory the labels belong to")
    imp.add_argument("--kind", choices=ANNOTATABLE_KINDS, default="clicks", help="what to make (default clicks)")
    imp.add_argument("--out", required=True, type=Path, help="weak-label file to write")
    imp.add_argument("--seed", type=int, default=0, help="clicks: which point of each object is clicked")
    imp.add_argument("--clicks-per-object", type=int, default=1)
    imp.add_argument("--radius-m", type=float, default=2.0, help="subcloud_tags: ball radius, metres")
    imp.add_argument("--grid", choices=SUBCLOUD_GRIDS, default="paper")
    imp.add_argument("--min-points", type=int, default=1, help="points a class (ball) needs to count")
    imp.set_defaults(handler=run_import)

    exp = subparsers.add_parser("export", help="write a clicks file's 1T1C labels as per-point label files",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    exp.add_argument("file", type=Path, help="clicks file (wsseg annotate / wsseg labels simulate)")
    exp.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
    exp.add_argument("--data", required=True, type=Path, help="dataset directory the file was made for")
    exp.add_argument("--out", required=True, type=Path, help="folder for one file per scene")
    exp.add_argument("--config", type=Path, default=None,
                     help="training YAML whose 1T1C rule expands the clicks (default: OtocConfig's defaults)")
    exp.set_defaults(handler=run_export)


def _num_points(dataset: Dataset, name: str) -> int:
    points = int(dataset.info.scenes[name].get("points", -1))
    return points if points >= 0 else dataset.load(name).num_points


def import_labels(dataset: Dataset, source: Path, fmt: str, kind: str, seed: int = 0, clicks_per_object: int = 1,
                  radius_m: float = 2.0, grid: str = "paper", min_points: int = 1) -> WeakLabels:
    """A weak-label object of ``kind`` from the dense labels in ``source`` (scenes without a file are left out;
    ``ValueError`` when no scene has one)."""
    if not source.is_dir():
        raise ValueError(f"{source}: not a folder of label files")
    classes = dataset.classes
    dense: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in tqdm(dataset.scene_names(), desc=f"import {fmt}", unit="scene"):
        found = read_dense(source, name, fmt, _num_points(dataset, name), classes)
        if found is not None:
            dense[name] = found
    if not dense:
        example = source / f"{dataset.scene_names()[0]}{SUFFIX[fmt]}"
        raise ValueError(f"{source}: no {fmt} label file for any scene of {dataset.root} (expected e.g. {example})")
    names = list(dense)
    options = {"imported_from": fmt, "source": str(source)}
    if kind == "clicks":
        options.update({"mode": "objects", "clicks_per_object": clicks_per_object, "object_fraction": 1.0})
        scenes = {n: sample_object_clicks(s, i, scene_rng(seed, n), clicks_per_object) for n, (s, i) in dense.items()}
        return Clicks(header=make_header(dataset, kind, names, seed, options), scenes=scenes)
    if kind == "scene_tags":
        options["min_points"] = min_points
        tags = {n: scene_classes(s, min_points) for n, (s, _) in dense.items()}
        return SceneTags(header=make_header(dataset, kind, names, seed, options), tags=tags)
    options.update({"radius_m": radius_m, "grid": grid, "min_points": min_points})
    subclouds = {n: scene_subclouds(dataset.load(n).xyz, s, radius_m, grid, min_points) for n, (s, _) in dense.items()}
    return SubcloudTags(header=make_header(dataset, kind, names, seed, options), scenes=subclouds)


def export_clicks(labels: Clicks, dataset: Dataset, out: Path, fmt: str, config: Path | None = None) -> list[Path]:
    """One file per clicked scene: the clicks expanded as 1T1C's first round trains on them, with instances."""
    rule = expansion_rule(config)
    written = []
    for name, entry in tqdm(labels.scenes.items(), desc=f"export {fmt}", unit="scene"):
        scene = dataset.load(name)
        clicks = labels.point_labels(name, scene.num_points)
        expanded = (clicks if scene.supervoxel is None else
                    initial_pseudo_labels(clicks, scene.supervoxel, scene.xyz, dataset.classes, rule))
        instance = click_instances(expanded, scene.supervoxel, scene.xyz, entry.point, entry.cls,
                                   np.where(entry.instance >= 0, entry.instance, np.arange(len(entry))))
        written.append(write_dense(out, name, fmt, expanded, instance, dataset.classes))
    return written


def run_import(args: argparse.Namespace) -> int:
    dataset = Dataset(args.data)
    labels = import_labels(dataset, args.source, args.fmt, args.kind, args.seed, args.clicks_per_object,
                           args.radius_m, args.grid, args.min_points)
    save_weak_labels(labels, args.out)
    print(f"wrote {args.out} ({args.kind} from {args.fmt}, {len(labels.header.scene_points)} of "
          f"{len(dataset)} scene(s) had a label file)")
    return 0


def run_export(args: argparse.Namespace) -> int:
    dataset = Dataset(args.data)
    labels = load_weak_labels(args.file, dataset)
    if not isinstance(labels, Clicks):
        raise ValueError(f"{args.file}: is a {labels.kind} file; only clicks label points, so only clicks export "
                         "to per-point layouts")
    written = export_clicks(labels, dataset, args.out, args.fmt, args.config)
    print(f"wrote {len(written)} {args.fmt} file(s) to {args.out}")
    return 0
