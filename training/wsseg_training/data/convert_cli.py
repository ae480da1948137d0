"""``wsseg data convert``: a source dataset, point-cloud files or a ROS 2 bag -> a wsseg dataset directory."""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

from tqdm import tqdm

from wsseg.core.classes import UNLABELLED_ID
from wsseg_training.data.dataset import DatasetWriter
from wsseg_training.data.readers.base import Reader, ReaderError
from wsseg_training.data.readers.common import load_class_option

FORMATS = ("s3dis", "scannet", "semantickitti", "ply", "pcd", "las", "rosbag", "mosd")


def make_reader(args: argparse.Namespace) -> Reader:
    """The reader for ``args.format`` with its options."""
    source = Path(args.input)
    if args.format == "s3dis":
        from wsseg_training.data.readers.s3dis import S3DISReader

        return S3DISReader(source, val_area=args.val_area)
    if args.format == "scannet":
        from wsseg_training.data.readers.scannet import ScanNetReader

        return ScanNetReader(source, split_dir=args.split_dir)
    if args.format == "semantickitti":
        from wsseg_training.data.readers.semantickitti import SemanticKITTIReader

        return SemanticKITTIReader(source, sequences=args.sequences, val_sequences=tuple(args.val_sequences))
    if args.format == "mosd":
        from wsseg_training.data.readers.mosd import MOSDReader

        return MOSDReader(source, val_frames=args.val_frames)
    classes, label_map = load_class_option(args.classes)
    ignore = tuple(args.ignore_label)
    if args.format == "rosbag":
        from wsseg_training.data.readers.rosbag import RosbagReader

        return RosbagReader(source, topics=args.topics, every=args.every, classes=classes, label_map=label_map,
                            split=args.split, ignore_values=ignore)
    from wsseg_training.data.readers.files import FileReader

    return FileReader(source, args.format, classes=classes, label_map=label_map, split=args.split,
                      ignore_values=ignore)


def run_convert(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    reader = make_reader(args)
    out = Path(args.out)
    if (out / "dataset.yaml").exists() and not args.overwrite:
        raise ReaderError(f"{out}: already holds a dataset (use --overwrite)")
    per_split: dict[str, int] = {}
    points = 0
    with DatasetWriter(out, args.name or reader.name, reader.classes, sensor=args.sensor or reader.sensor,
                       extra={"source_format": args.format, "source": str(Path(args.input).resolve())}) as writer:
        total = len(reader) if args.limit is None else min(len(reader), args.limit)
        with tqdm(total=total, unit="scene", desc=f"convert {args.format}", disable=args.quiet) as bar:
            for item in itertools.islice(reader, args.limit):
                writer.add(item.name, item.scene, split=item.split, **item.metadata)
                per_split[item.split or "none"] = per_split.get(item.split or "none", 0) + 1
                points += item.scene.num_points
                bar.update(1)
                bar.set_postfix(points=f"{points:,}")
    scenes = sum(per_split.values())
    splits = ", ".join(f"{split}: {n}" for split, n in sorted(per_split.items()))
    print(f"wrote {scenes} scenes ({splits}), {points:,} points, classes {reader.classes.name!r} "
          f"({reader.classes.num_classes}) to {out} in {time.perf_counter() - start:.1f} s")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert a dataset, point-cloud files or a ROS 2 bag into a wsseg dataset",
        description="Convert S3DIS, ScanNet v2, SemanticKITTI, mOSD, PLY/PCD/LAS files or a ROS 2 bag "
                    "(sqlite3/MCAP PointCloud2 messages) into a wsseg dataset directory.")
    parser.add_argument("--format", required=True, choices=FORMATS, help="source format")
    parser.add_argument("--in", dest="input", required=True, metavar="PATH",
                        help="source root folder, file(s) folder or bag")
    parser.add_argument("--out", required=True, metavar="DIR", help="dataset directory to write")
    parser.add_argument("--name", help="dataset name (default: from the format)")
    parser.add_argument("--sensor", choices=("rgbd", "lidar", "mixed", "unknown"), help="override the sensor kind")
    parser.add_argument("--limit", type=int, metavar="N", help="convert at most N scenes")
    parser.add_argument("--overwrite", action="store_true", help="write into a folder that holds a dataset")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    group = parser.add_argument_group("format options")
    group.add_argument("--val-area", type=int, default=5, help="s3dis: area used as the val split (default 5)")
    group.add_argument("--split-dir", help="scannet: folder with scannetv2_{train,val,test}.txt (default: --in)")
    group.add_argument("--sequences", nargs="+", help="semantickitti: only these sequences (default: all)")
    group.add_argument("--val-sequences", nargs="+", default=["08"], help="semantickitti: val sequences (08)")
    group.add_argument("--val-frames", type=int, default=10, help="mosd: frames in the val split (default 10)")
    group.add_argument("--topics", nargs="+", help="rosbag: PointCloud2 topics (default: all of them)")
    group.add_argument("--every", type=int, default=1, help="rosbag: keep every k-th message per topic")
    group.add_argument("--classes", metavar="YAML|NAME",
                       help="ply/pcd/las/rosbag: class table YAML {names, palette?, label_map?} or a built-in name")
    group.add_argument("--ignore-label", type=int, nargs="+", default=[UNLABELLED_ID],
                       help=f"ply/pcd/las/rosbag: raw label values meaning unlabelled (default {UNLABELLED_ID})")
    group.add_argument("--split", default="train", help="ply/pcd/las/rosbag: split of every scene (default train)")
    parser.set_defaults(handler=run_convert)
