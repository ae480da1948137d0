"""Write a whole synthetic dataset directory (indoor rooms or outdoor scans), deterministic by seed.

Scene ``i`` of seed ``S`` is drawn from ``SeedSequence([S, i])``, so it is the same whatever
the number of scenes asked for.  Every ``round(1 / val_fraction)``-th scene goes to the
``val`` split, the others to ``train``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsseg.core.classes import S3DIS, SYNTHETIC_OUTDOOR
from wsseg_training.data.dataset import DatasetWriter
from wsseg_training.data.synth.config import IndoorConfig, OutdoorConfig, config_to_dict
from wsseg_training.data.synth.indoor import synthesize_indoor
from wsseg_training.data.synth.outdoor import synthesize_outdoor
from wsseg_training.data.synth.rooms import build_typed_room
from wsseg_training.data.synth.sensors import save_frame

GENERATOR_VERSION = 1
FRAMES_DIR = "frames"


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`write_synthetic_dataset` wrote."""

    root: Path
    scenes: int
    train: int
    val: int
    points_per_scene: float
    seconds_per_scene: float
    frames: int


def scene_rng(seed: int, index: int) -> np.random.Generator:
    """The random generator of scene ``index`` of a dataset made with ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


def room_statistics(config: IndoorConfig, rooms: int, seed: int) -> dict:
    """What the rooms of a dataset made with ``config`` and ``seed`` hold, from their meshes (no scanning; a class
    counts as present when any of its surfaces is built, seen by the camera or not):
    {"rooms", "types": {type: share of the rooms}, "classes_per_room": mean, "classes_per_room_by_type": {type:
    mean}, "presence": {class: share of the rooms holding it}}; room ``i`` is scene ``i``'s room."""
    types: list[str] = []
    present = np.zeros((rooms, S3DIS.num_classes), bool)
    for index in range(rooms):
        built = build_typed_room(scene_rng(seed, index), config)
        types.append(built.room_type)
        present[index, np.unique(built.mesh.semantic)] = True
    per_room = present.sum(axis=1)
    kinds = sorted(set(types))
    return {"rooms": rooms, "types": {t: round(types.count(t) / rooms, 4) for t in kinds},
            "classes_per_room": round(float(per_room.mean()), 2),
            "classes_per_room_by_type": {t: round(float(per_room[[x == t for x in types]].mean()), 2) for t in kinds},
            "presence": {c: round(float(present[:, i].mean()), 3) for i, c in enumerate(S3DIS.names)}}


def split_of(index: int, scenes: int, val_fraction: float) -> str:
    """``train`` or ``val`` for scene ``index`` of ``scenes``."""
    if val_fraction <= 0 or scenes < 2:
        return "train"
    every = max(2, round(1.0 / val_fraction))
    if (index + 1) % every == 0 or (scenes < every and index == scenes - 1):
        return "val"
    return "train"


def write_synthetic_dataset(out: str | Path, config: IndoorConfig | OutdoorConfig, scenes: int, seed: int,
                            val_fraction: float = 0.2, frames_dir: str | Path | None = None, name: str | None = None,
                            progress: Callable[[int], None] | None = None) -> SynthSummary:
    """Synthesize ``scenes`` scenes into the dataset directory ``out``.

    config: an :class:`IndoorConfig` (RGB-D rooms, S3DIS classes) or :class:`OutdoorConfig` (LiDAR scans).
    frames_dir: indoor only; where to save the RGB-D frames (``<frames_dir>/<scene>/frame_NNNN.npz``).
    progress: called with 1 after each scene (e.g. ``tqdm.update``).
    """
    if scenes < 1:
        raise ValueError(f"--scenes must be >= 1, got {scenes}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    indoor = isinstance(config, IndoorConfig)
    if frames_dir is not None and not indoor:
        raise ValueError("RGB-D frames exist only for indoor scenes (--kind indoor)")
    root = Path(out)
    kind = "indoor" if indoor else "outdoor"
    extra = {"synth": {"kind": kind, "seed": seed, "generator_version": GENERATOR_VERSION,
                       "val_fraction": val_fraction, "config": config_to_dict(config)}}
    writer = DatasetWriter(root, name or f"synthetic_{kind}", S3DIS if indoor else SYNTHETIC_OUTDOOR,
                           sensor="rgbd" if indoor else "lidar", extra=extra)
    points, frame_count, splits = 0, 0, {"train": 0, "val": 0}
    start = time.perf_counter()
    try:
        for index in range(scenes):
            rng = scene_rng(seed, index)
            split = split_of(index, scenes, val_fraction)
            if isinstance(config, IndoorConfig):
                result = synthesize_indoor(rng, config)
                scene_name = f"room_{index:04d}"
                metadata: dict = {"room_size_m": [round(float(v), 3) for v in result.room_size_m],
                                  "room_type": result.room_type, "views": len(result.frames)}
                if frames_dir is not None:
                    folder = Path(frames_dir) / scene_name
                    folder.mkdir(parents=True, exist_ok=True)
                    for k, frame in enumerate(result.frames):
                        save_frame(folder / f"frame_{k:04d}.npz", frame)
                    frame_count += len(result.frames)
                    try:
                        metadata["frames"] = folder.resolve().relative_to(root.resolve()).as_posix()
                    except ValueError:
                        metadata["frames"] = str(folder.resolve())
                scene = result.scene
            else:
                scene_name = f"scan_{index:04d}"
                scene = synthesize_outdoor(rng, config).scene
                metadata = {"beams": config.lidar.beams, "frame_id": "lidar"}
            writer.add(scene_name, scene, split=split, **metadata)
            points += scene.num_points
            splits[split] += 1
            if progress is not None:
                progress(1)
    except BaseException:
        writer.abort()  # no partial dataset
        raise
    writer.close()
    elapsed = time.perf_counter() - start
    return SynthSummary(root=root, scenes=scenes, train=splits["train"], val=splits["val"],
                        points_per_scene=points / scenes, seconds_per_scene=elapsed / scenes, frames=frame_count)
