"""ROS 2 bags (sqlite3 or MCAP storage, via ``rosbags``) -> scenes, one per PointCloud2 message.

Every ``sensor_msgs/msg/PointCloud2`` message on the chosen topics (default: all PointCloud2
topics) becomes a scene, optionally only every ``every``-th message per topic.  The payload is
decoded by ``wsseg.core.pointcloud2_fields`` (the same code the ROS node uses).  Scene metadata
keeps the topic, ``frame_id``, the header stamp (``stamp_ns``) and the bag time (``bag_time_ns``);
organized clouds keep their layout through the ``pixel`` field.  A ``label`` field, if any, is
mapped like the plain-file reader does (``--classes``; default: unlabelled scenes).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from wsseg.core.classes import UNLABELLED_ID, ClassTable
from wsseg.core.cloud_io import CloudFileError
from wsseg.core.pointcloud2_fields import pointcloud2_to_cloud
from wsseg_training.data.readers.base import ReaderError, ReadScene
from wsseg_training.data.readers.common import UNSPECIFIED, LabelMap, cloud_to_scene

log = logging.getLogger(__name__)

POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"


def _open(path: Path):  # type: ignore[no-untyped-def]
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    return AnyReader([path], default_typestore=get_typestore(Stores.ROS2_HUMBLE))


class RosbagReader:
    """PointCloud2 messages of the bag folder ``path`` (holding ``metadata.yaml``) or bag file."""

    sensor = "unknown"

    def __init__(self, path: str | Path, topics: list[str] | None = None, every: int = 1,
                 classes: ClassTable | None = None, label_map: dict[int, int] | None = None,
                 split: str = "train", ignore_values: tuple[int, ...] = (UNLABELLED_ID,)) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise ReaderError(f"{self.path}: no such bag")
        if every < 1:
            raise ReaderError(f"--every must be >= 1, got {every}")
        self.every = every
        self.split = split
        self.name = self.path.stem
        self.classes = classes or UNSPECIFIED
        self.labels = LabelMap(self.classes, label_map, ignore_values) if self.classes.num_classes else None
        try:
            with _open(self.path) as reader:
                clouds = {c.topic: c.msgcount for c in reader.connections if c.msgtype == POINTCLOUD2}
                all_topics = sorted({c.topic for c in reader.connections})
        except Exception as exc:  # rosbags raises several error types for unreadable bags
            raise ReaderError(f"{self.path}: not a readable ROS 2 bag ({exc})") from None
        if topics:
            missing = [t for t in topics if t not in clouds]
            if missing:
                raise ReaderError(f"{self.path}: topic(s) {missing} carry no {POINTCLOUD2} "
                                  f"(PointCloud2 topics: {sorted(clouds)}, all topics: {all_topics})")
            self.topics = list(topics)
        else:
            self.topics = sorted(clouds)
        if not self.topics:
            raise ReaderError(f"{self.path}: no {POINTCLOUD2} topics (topics: {all_topics})")
        self.counts = {t: clouds[t] for t in self.topics}

    def __len__(self) -> int:
        return sum((count + self.every - 1) // self.every for count in self.counts.values())

    def __iter__(self) -> Iterator[ReadScene]:
        seen = dict.fromkeys(self.topics, 0)
        with _open(self.path) as reader:
            connections = [c for c in reader.connections if c.topic in self.counts and c.msgtype == POINTCLOUD2]
            for connection, bag_time_ns, raw in reader.messages(connections=connections):
                topic = connection.topic
                index = seen[topic]
                seen[topic] += 1
                if index % self.every:
                    continue
                where = f"{self.path}: topic {topic} message {index}"
                try:
                    msg = reader.deserialize(raw, connection.msgtype)
                except Exception as exc:  # a corrupt CDR payload
                    raise ReaderError(f"{where}: cannot deserialize ({exc})") from None
                fields = [(f.name, int(f.offset), int(f.datatype), int(f.count)) for f in msg.fields]
                try:
                    cloud = pointcloud2_to_cloud(fields, np.asarray(msg.data, dtype=np.uint8),
                                                 point_step=int(msg.point_step), row_step=int(msg.row_step),
                                                 width=int(msg.width), height=int(msg.height),
                                                 is_bigendian=bool(msg.is_bigendian), where=where)
                except (CloudFileError, ValueError) as exc:
                    raise ReaderError(str(exc)) from None
                if not cloud.valid_mask().any():
                    log.warning("%s: no valid points, skipped", where)
                    continue
                scene, layout = cloud_to_scene(cloud, self.labels, where)
                stamp_ns = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
                name = f"{_slug(topic)}_{index:06d}"
                yield ReadScene(name, scene, self.split, {
                    "bag": self.path.name, "topic": topic, "frame_id": str(msg.header.frame_id),
                    "stamp_ns": stamp_ns, "bag_time_ns": int(bag_time_ns), **layout})


def _slug(topic: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", topic).strip("_") or "points"
