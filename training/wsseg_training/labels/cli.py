"""``wsseg labels simulate | stats | validate``: make, inspect and check weak-label files."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from wsseg_training.data.dataset import Dataset
from wsseg_training.labels.schema import default_suffix, load_weak_labels, save_weak_labels
from wsseg_training.labels.simulate import (
    SUBCLOUD_GRIDS,
    simulate_clicks,
    simulate_labelled_scenes,
    simulate_scene_tags,
    simulate_sparse_points,
    simulate_subcloud_tags,
)
from wsseg_training.labels.stats import compute_stats
from wsseg_training.labels.types import KINDS, WeakLabels

WEAK_LABELS_DIR = "weak_labels"


def register(subparsers: argparse._SubParsersAction) -> None:
    sim = subparsers.add_parser(
        "simulate", help="make a weak-label file from a dataset's full ground truth",
        description="Simulate weak labels from ground truth with a seed, as the papers do for benchmarks. "
                    "Examples: 1T1C '--kind clicks'; 1T3C '--kind clicks --clicks-per-object 3'; "
                    "two things one click '--kind clicks --object-fraction 0.5'; 20 points per scene "
                    "'--kind clicks --points-per-scene 20'; DSP '--kind sparse_points --fraction 0.1'; "
                    "DYL reduced tags '--kind scene_tags --drop-tag floor:1 --drop-tag ceiling:1'; "
                    "MPRM '--kind subcloud_tags --radius-m 2'; WS3D '--kind labelled_scenes --fraction 0.05'.",
    )
    sim.add_argument("--kind", required=True, choices=KINDS)
    sim.add_argument("--data", required=True, type=Path, help="dataset directory")
    sim.add_argument("--out", type=Path, default=None,
                     help=f"output file (default DATA/{WEAK_LABELS_DIR}/<kind>-seed<S>.json|.npz)")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--split", default=None, help="scenes of this split (default: 'train' if present, else all)")
    sim.add_argument("--clicks-per-object", type=int, default=1, help="clicks: k clicks per object")
    sim.add_argument("--object-fraction", type=float, default=1.0, help="clicks: share of objects clicked")
    sim.add_argument("--points-per-scene", type=int, default=None, help="clicks: N random points per scene instead")
    sim.add_argument("--fraction", type=float, default=None,
                     help="sparse_points: share of points per class (default 0.1); "
                          "labelled_scenes: share of points/scenes labelled (default 0.1)")
    sim.add_argument("--voxel-size-m", type=_voxel_size, default=0.0,
                     help="sparse_points: sample from one random point per voxel of this size, as DSP labels its "
                          "sub-sampled network input (0 = all points; 'auto' = the grid `wsseg train` picks with "
                          "profile auto)")
    sim.add_argument("--at-least-one", action=argparse.BooleanOptionalAction, default=True,
                     help="sparse_points: every class present keeps >= 1 labelled point even when share x count "
                          "rounds to 0 (default; --no-at-least-one: such a class gets none)")
    sim.add_argument("--drop-tag", action="append", default=[], metavar="CLASS:COUNT",
                     help="scene_tags: remove CLASS from COUNT random scenes (repeatable)")
    sim.add_argument("--min-points", type=int, default=1,
                     help="scene_tags/subcloud_tags: points a class (subcloud) needs to count")
    sim.add_argument("--radius-m", type=float, default=2.0, help="subcloud_tags: subcloud radius, metres")
    sim.add_argument("--grid", choices=SUBCLOUD_GRIDS, default="paper",
                     help="subcloud_tags: seeds per axis ceil(l/r) at cell centres (paper) or floor(l/r)+1 (code)")
    sim.add_argument("--by", choices=("points", "scenes"), default="points", help="labelled_scenes: fraction of")
    sim.add_argument("--no-cut", action="store_true", help="labelled_scenes: do not split a scene for an exact share")
    sim.set_defaults(handler=run_simulate)

    for name, handler, text in (("stats", run_stats, "print the labelled-point share and per-class counts"),
                                ("validate", run_validate, "check a weak-label file against a dataset")):
        parser = subparsers.add_parser(name, help=text, description=text)
        parser.add_argument("file", type=Path, help="weak-label file (.json or .npz)")
        parser.add_argument("--data", required=True, type=Path, help="dataset directory the file was made for")
        if name == "stats":
            parser.add_argument("--propagate", action="store_true",
                                help="clicks: also count the points of clicked super-voxels")
        parser.set_defaults(handler=handler)


def _voxel_size(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size in metres or 'auto'") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0 (metres) or 'auto'")
    return value


def auto_voxel_size(dataset: Dataset) -> float:
    """The voxel size (metres) ``wsseg train`` chooses with ``profile: auto`` (measured on the train split)."""
    from wsseg_training.data.sensor_defaults import choose_defaults, measure_scale

    return choose_defaults(dataset.info.sensor, measure_scale(dataset, "train")).voxel_size_m


def _parse_drop(items: list[str]) -> list[tuple[str, int]]:
    out = []
    for item in items:
        cls, sep, count = item.rpartition(":")
        if not sep or not cls or not count.isdigit():
            raise ValueError(f"--drop-tag {item!r}: expected CLASS:COUNT, e.g. floor:1")
        out.append((cls, int(count)))
    return out


def simulate_from_args(args: argparse.Namespace, dataset: Dataset, names: list[str]) -> WeakLabels:
    progress = lambda items: tqdm(items, desc=f"simulate {args.kind}", unit="scene")  # noqa: E731
    if args.kind == "clicks":
        return simulate_clicks(dataset, names, args.seed, args.clicks_per_object, args.object_fraction,
                               args.points_per_scene, progress)
    if args.kind == "sparse_points":
        voxel = args.voxel_size_m if args.voxel_size_m != "auto" else auto_voxel_size(dataset)
        return simulate_sparse_points(dataset, names, args.seed, args.fraction or 0.1, args.at_least_one,
                                      voxel_size_m=voxel, progress=progress)
    if args.kind == "scene_tags":
        return simulate_scene_tags(dataset, names, args.seed, _parse_drop(args.drop_tag), args.min_points, progress)
    if args.kind == "subcloud_tags":
        return simulate_subcloud_tags(dataset, names, args.seed, args.radius_m, args.grid, args.min_points, progress)
    return simulate_labelled_scenes(dataset, names, args.seed, args.fraction or 0.1, args.by, not args.no_cut)


def run_simulate(args: argparse.Namespace) -> int:
    dataset = Dataset(args.data)
    split = args.split if args.split is not None else ("train" if "train" in dataset.info.splits else None)
    names = dataset.scene_names(split)
    if not names:
        raise ValueError(f"{args.data}: no scenes in split {split!r}")
    labels = simulate_from_args(args, dataset, names)
    out = args.out or dataset.root / WEAK_LABELS_DIR / f"{args.kind}-seed{args.seed}{default_suffix(args.kind)}"
    save_weak_labels(labels, out)
    stats = compute_stats(labels, dataset)
    print("\n".join(stats.lines()))
    print(f"wrote {out} ({args.kind}, {len(names)} scene(s) of split {split or 'all'}, "
          f"{stats.labelled_percent:.4f} % of points labelled)")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    dataset = Dataset(args.data)
    labels = load_weak_labels(args.file, dataset)
    stats = compute_stats(labels, dataset, propagate=args.propagate)
    print("\n".join(stats.lines()))
    return 0


def run_validate(args: argparse.Namespace) -> int:
    dataset = Dataset(args.data)
    labels = load_weak_labels(args.file, dataset)
    print(f"{args.file}: valid {labels.kind} file (schema_version {labels.header.schema_version}) for dataset "
          f"{dataset.info.name!r}, {len(labels.header.scene_points)} scene(s)")
    return 0
