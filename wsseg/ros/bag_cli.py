"""``wsseg segment-bag``: segment every PointCloud2 of a ROS 2 bag offline into a new bag.

For each PointCloud2 message on the chosen topics (default: all), the output bag gets, on
``<topic>/segmented``, the labelled cloud the node would publish on ``~/output/points`` (same header,
layout; x, y, z, confidence, label) at the same bag time; with ``--copy`` the input topics are copied
too.  The bag is read and written with ``rosbags`` (pure Python; imported only when the command runs),
in the ``ros2 bag`` layout (folder with metadata.yaml; sqlite3 by default, ``--storage mcap`` optional).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from wsseg.core.atomic import atomic_directory
from wsseg.core.classes import UNLABELLED_ID
from wsseg.core.pointcloud2_fields import encode_fields
from wsseg.ros.conversions import CloudArrays, FrameError, cloud_from_msg
from wsseg.ros.pipeline import Limits, output_fields, segment_frame
from wsseg.runtime.engines import ENGINE_NAMES

log = logging.getLogger(__name__)
POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment-bag", help="segment the PointCloud2 messages of a ROS 2 bag into a new bag",
        description="Writes <topic>/segmented (x, y, z, confidence, label uint16; 65535 = invalid) for every "
                    "PointCloud2 message of the input bag.")
    parser.add_argument("--model", required=True, help="model bundle directory (from wsseg export)")
    parser.add_argument("--in", dest="input", required=True, help="input bag (folder with metadata.yaml, or .mcap)")
    parser.add_argument("--out", required=True, help="output bag folder (must not exist)")
    parser.add_argument("--topics", nargs="*", default=None, help="PointCloud2 topics (default: all)")
    parser.add_argument("--engine", default="auto", choices=ENGINE_NAMES)
    parser.add_argument("--storage", default="sqlite3", choices=("sqlite3", "mcap"))
    parser.add_argument("--copy", action="store_true", help="copy the input topics into the output bag too")
    parser.add_argument("--max-range-m", type=float, default=0.0, help="crop (0 = off)")
    parser.set_defaults(handler=run_segment_bag)


def _decode(msg: object, where: str) -> CloudArrays:
    """A rosbags PointCloud2 -> arrays, with the node's input checks (same code path)."""
    return cloud_from_msg(msg, where=where)  # type: ignore[arg-type]  # duck-typed: same field names


def run_segment_bag(args: argparse.Namespace) -> int:
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore
    from tqdm import tqdm

    from wsseg.runtime.segmenter import Segmenter

    source, out = Path(args.input), Path(args.out)
    if not source.exists():
        raise ValueError(f"{source}: no such bag")
    if out.exists():
        raise ValueError(f"{out}: already exists (choose a new output folder)")
    segmenter = Segmenter(args.model, engine=args.engine)
    limits = Limits(max_range_m=args.max_range_m)
    typestore = get_typestore(Stores.ROS2_HUMBLE)
    PointCloud2, PointField = typestore.types[POINTCLOUD2], typestore.types["sensor_msgs/msg/PointField"]
    frames = rejected = points = labelled = 0
    with AnyReader([source], default_typestore=typestore) as reader:
        clouds = sorted({c.topic for c in reader.connections if c.msgtype == POINTCLOUD2})
        topics = list(args.topics) if args.topics else clouds
        missing = [t for t in topics if t not in clouds]
        if missing:
            raise ValueError(f"{source}: topic(s) {missing} carry no {POINTCLOUD2} (PointCloud2 topics: {clouds})")
        wanted = [c for c in reader.connections if c.topic in topics or args.copy]
        storage = StoragePlugin.MCAP if args.storage == "mcap" else StoragePlugin.SQLITE3
        out.parent.mkdir(parents=True, exist_ok=True)
        # the bag is written under a temporary name and renamed when complete: a failure leaves no partial bag
        with atomic_directory(out, create=False) as tmp, Writer(tmp, version=8, storage_plugin=storage) as writer:
            outputs = {t: writer.add_connection(f"{t}/segmented", POINTCLOUD2, typestore=typestore) for t in topics}
            copies = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=typestore)
                      for c in wanted if args.copy}
            total = sum(c.msgcount for c in wanted)
            for connection, bag_time_ns, raw in tqdm(reader.messages(connections=wanted), total=total,
                                                     desc="segment-bag", unit="msg"):
                if args.copy:
                    writer.write(copies[connection.id], bag_time_ns, raw)
                if connection.topic not in outputs or connection.msgtype != POINTCLOUD2:
                    continue
                msg = reader.deserialize(raw, connection.msgtype)
                where = f"{source}: topic {connection.topic} at {bag_time_ns} ns"
                try:
                    cloud = _decode(msg, where)
                    result = segment_frame(segmenter, cloud, limits, where=where)
                except FrameError as exc:
                    log.error("skipped: %s", exc)
                    rejected += 1
                    continue
                specs, data, step = encode_fields(output_fields(cloud.xyz, result.labels, result.confidence,
                                                                     result.instance))
                fields = [PointField(name=s.name, offset=s.offset, datatype=s.datatype, count=s.count) for s in specs]
                labelled_msg = PointCloud2(header=msg.header, height=cloud.height, width=cloud.width, fields=fields,
                                           is_bigendian=False, point_step=step, row_step=step * cloud.width,
                                           data=np.frombuffer(data, dtype=np.uint8), is_dense=False)
                writer.write(outputs[connection.topic], bag_time_ns,
                             typestore.serialize_cdr(labelled_msg, POINTCLOUD2))
                frames += 1
                points += cloud.xyz.shape[0]
                labelled += int(np.count_nonzero(result.labels != UNLABELLED_ID))
    print(f"segment-bag: {frames} cloud(s) segmented ({labelled}/{points} points labelled), {rejected} rejected "
          f"-> {out}")
    return 0 if frames or not rejected else 1
