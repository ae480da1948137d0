"""``wsseg data show``: render a scene to a PNG (headless) by class, instance, RGB, intensity or weak labels."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from wsseg.core.classes import CLASS_TABLES, ClassTable
from wsseg.core.scene import Scene, load_scene
from wsseg_training.data.dataset import DATASET_YAML, Dataset
from wsseg_training.data.render import (
    TOP_VIEW,
    Panel,
    View,
    class_colours,
    class_legend,
    instance_colours,
    render_panels,
    scalar_colours,
    visible_mask,
    weak_panel,
)
from wsseg_training.labels import Clicks, LabelledScenes, SceneTags, SparsePoints, load_weak_labels

COLOURINGS = ("class", "instance", "rgb", "intensity", "weak")


def resolve_scene(spec: str) -> tuple[Scene, str, ClassTable | None, Dataset | None]:
    """``path/to/scene.npz`` or ``DATASET_DIR:scene_name`` -> (scene, scene name, class table if known, dataset)."""
    if ":" in spec and not spec.endswith(".npz"):
        root, name = spec.rsplit(":", 1)
        dataset = Dataset(root)
        return dataset.load(name), name, dataset.classes, dataset
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"{spec}: no such scene file (give a .npz scene or DATASET_DIR:scene_name)")
    for candidate in (path.parent, path.parent.parent):  # <dataset>/scenes/<scene>.npz
        if (candidate / DATASET_YAML).is_file():
            dataset = Dataset(candidate)
            return load_scene(path, num_classes=dataset.classes.num_classes), path.stem, dataset.classes, dataset
    return load_scene(path), path.stem, None, None


def weak_label_panel(path: Path, scene: Scene, name: str, classes: ClassTable, dataset: Dataset | None) -> Panel:
    """A panel of the weak labels that a ``wsseg labels`` file holds for scene ``name``.

    clicks / sparse_points: the labelled points in their class colour; labelled_scenes: the points whose ground
    truth may be used; scene_tags: a grey cloud with the tags as legend; subcloud_tags: the points of each subcloud.
    """
    labels = load_weak_labels(path, dataset)
    where = f"{path}: scene {name!r}"
    if isinstance(labels, (Clicks, SparsePoints)):
        if name not in labels.scenes:
            raise ValueError(f"{where} has no {labels.header.kind} labels")
        entry = labels.scenes[name]
        return weak_panel(scene.xyz, entry.point, entry.cls, classes, f"{name} ({labels.header.kind})")
    if isinstance(labels, LabelledScenes):
        if scene.semantic is None:
            raise ValueError(f"{where}: scene has no field 'semantic' to show labelled_scenes")
        indices = np.flatnonzero(labels.labelled_mask(name, scene.xyz) & (scene.semantic >= 0))
        return weak_panel(scene.xyz, indices, scene.semantic[indices], classes, f"{name} (labelled_scenes)")
    if isinstance(labels, SceneTags):
        if name not in labels.tags:
            raise ValueError(f"{where} has no scene tags")
        panel = weak_panel(scene.xyz, np.zeros(0, np.int64), np.zeros(0, np.int64), classes, name)
        legend = [(classes.names[c], classes.palette[c]) for c in labels.tags[name]]
        return Panel(panel.xyz, panel.colours, f"{name} (scene tags)", legend)
    subclouds = labels.scenes.get(name)
    if subclouds is None:
        raise ValueError(f"{where} has no subcloud tags")
    owner = np.full(scene.num_points, -1, dtype=np.int64)
    for k, subcloud in enumerate(subclouds):
        owner[(owner < 0) & subcloud.mask(scene.xyz)] = k
    legend = [(f"#{k}: " + ", ".join(classes.names[c] for c in sc.classes), tuple(int(v) for v in colour))
              for k, (sc, colour) in enumerate(zip(subclouds, instance_colours(np.arange(len(subclouds))),
                                                   strict=True))][:20]
    return Panel(scene.xyz, instance_colours(owner), f"{name} ({len(subclouds)} subclouds)", legend)


def run(args: argparse.Namespace) -> int:
    scene, name, classes, dataset = resolve_scene(args.scene)
    if args.classes:
        if args.classes not in CLASS_TABLES:
            raise ValueError(f"--classes: unknown table {args.classes!r}; built-in: {sorted(CLASS_TABLES)}")
        classes = CLASS_TABLES[args.classes]
    needs = {"class": "semantic", "instance": "instance", "rgb": "rgb", "intensity": "intensity"}
    if args.colour in needs and getattr(scene, needs[args.colour]) is None:
        raise ValueError(f"{args.scene}: scene has no field '{needs[args.colour]}' for --colour {args.colour}")
    if args.colour in ("class", "weak") and classes is None:
        raise ValueError(f"{args.scene}: class table unknown; pass --classes (one of {sorted(CLASS_TABLES)})")

    xyz = scene.xyz
    keep = np.ones(scene.num_points, dtype=bool)
    hidden = visible_mask(scene.semantic, classes, [h for h in args.hide.split(",") if h]) if args.hide else None
    if hidden is not None:
        keep &= hidden
    if args.max_range_m is not None:
        keep &= np.hypot(xyz[:, 0], xyz[:, 1]) <= args.max_range_m
    if args.cut_above_m is not None:
        keep &= xyz[:, 2] <= xyz[:, 2].min() + args.cut_above_m
    if args.colour == "weak":
        if args.labels is None:
            raise ValueError("--colour weak needs --labels WEAKFILE")
        # Weak labels index the whole cloud: build the panel first, then drop the hidden points.
        panel = weak_label_panel(args.labels, scene, name, classes, dataset)
        highlight = None if panel.highlight is None else panel.highlight[keep]
        panel = Panel(xyz[keep], panel.colours[keep], panel.title, panel.legend, highlight)
    elif args.colour == "class":
        panel = Panel(xyz[keep], class_colours(scene.semantic[keep], classes), name,
                      class_legend(scene.semantic[keep], classes))
    elif args.colour == "instance":
        panel = Panel(xyz[keep], instance_colours(scene.instance[keep]), f"{name} (instances)")
    elif args.colour == "rgb":
        panel = Panel(xyz[keep], scene.rgb[keep], f"{name} (rgb)")
    else:
        panel = Panel(xyz[keep], scalar_colours(scene.intensity[keep]), f"{name} (intensity)")
    view = TOP_VIEW if args.view == "top" else View(args.azimuth_deg, args.elevation_deg)
    path = render_panels([panel], args.out, size_px=(args.width, args.height), view=view)
    print(f"wrote {path} ({args.width}x{args.height} px, {int(keep.sum()):,} of {scene.num_points:,} points, "
          f"coloured by {args.colour})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "show", help="render a scene to a PNG (headless)",
        description="Render a scene as an oblique or top-down point picture coloured by class, instance, RGB, "
                    "intensity or weak labels.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("scene", help="scene .npz, or DATASET_DIR:scene_name")
    parser.add_argument("--colour", choices=COLOURINGS, default="class")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--labels", type=Path, default=None,
                        help="weak-label file of `wsseg labels simulate` (for --colour weak)")
    parser.add_argument("--classes", default=None, help="built-in class table when the scene has no dataset.yaml")
    parser.add_argument("--view", choices=("oblique", "top"), default="oblique")
    parser.add_argument("--azimuth-deg", type=float, default=-60.0, help="oblique view: camera azimuth")
    parser.add_argument("--elevation-deg", type=float, default=40.0, help="oblique view: camera elevation")
    parser.add_argument("--hide", default="", help="comma-separated classes not to draw, e.g. ceiling")
    parser.add_argument("--cut-above-m", type=float, default=None,
                        help="draw only points up to this height above the lowest point (see into rooms)")
    parser.add_argument("--max-range-m", type=float, default=None,
                        help="draw only points within this horizontal distance of the origin (LiDAR scans)")
    parser.add_argument("--width", type=int, default=1200, help="picture width, pixels")
    parser.add_argument("--height", type=int, default=800, help="picture height, pixels")
    parser.set_defaults(handler=run)
