"""Frames to replay, read from files without ROS: dataset scenes, synthetic RGB-D frames, cloud files.

``load_frames(path)`` accepts

* a dataset directory (``dataset.yaml`` + ``scenes/*.npz``): one cloud per scene, organized again when
  the scene has a ``pixel`` field and its metadata ``width``/``height``;
* synthetic RGB-D frame files (``.npz`` with ``depth`` uint16 mm, ``colour``, ``intrinsics``; what
  ``wsseg data synth --keep-frames`` writes), alone or in a folder (searched recursively);
* cloud files: ``.pcd`` / ``.ply`` / scene ``.npz`` (:func:`wsseg.core.cloud_io.read_cloud`) and
  SemanticKITTI ``.bin`` scans (float32 x, y, z, remission), alone or in a folder.

A :class:`ReplayFrame` converts between the two sensor forms: an RGB-D frame gives its organized
cloud (back-projected, optical frame); an organized cloud in an optical frame gives depth, colour and
fitted intrinsics.  ROS 2 bags are replayed message by message by the replay node instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from wsseg.core.cloud_io import read_cloud
from wsseg.core.scene import load_scene
from wsseg.core.transforms import transform_points
from wsseg.ros.rgbd import backproject_depth, depth_from_organized, fit_intrinsics

CLOUD_SUFFIXES = (".pcd", ".ply", ".npz", ".bin")


@dataclass(frozen=True)
class ReplayFrame:
    """One frame: a cloud (``xyz`` (N, 3) float32 m, NaN invalid; ``rgb`` (N, 3) uint8; ``intensity`` (N,)
    float32; ``width`` x ``height`` row-major) or an RGB-D image pair (``depth_m`` (H, W) float32 m, NaN = none;
    ``colour`` (H, W, 3) uint8; ``intrinsics`` (3, 3) float64).  ``semantic`` (N,) int ground truth when known.
    ``pose``: (4, 4) float64 sensor (optical frame) -> scene frame, metres, when the source records it."""

    name: str
    xyz: np.ndarray | None = None
    rgb: np.ndarray | None = None
    intensity: np.ndarray | None = None
    width: int = 0
    height: int = 1
    depth_m: np.ndarray | None = None
    colour: np.ndarray | None = None
    intrinsics: np.ndarray | None = None
    semantic: np.ndarray | None = None
    pose: np.ndarray | None = None

    @property
    def is_rgbd(self) -> bool:
        return self.depth_m is not None

    def as_cloud(self) -> ReplayFrame:
        """The frame as a cloud (RGB-D: the organized back-projection in the optical frame)."""
        if not self.is_rgbd:
            return self
        if self.colour is None or self.intrinsics is None:
            raise ValueError(f"{self.name}: RGB-D frame without colour or intrinsics")
        h, w = self.depth_m.shape
        return ReplayFrame(self.name, xyz=backproject_depth(self.depth_m, self.intrinsics),
                           rgb=self.colour.reshape(-1, 3), width=w, height=h, semantic=self.semantic, pose=self.pose)

    def in_scene_frame(self) -> ReplayFrame:
        """The frame as an organized cloud in the scene frame (``pose`` applied; NaN rows stay NaN).

        For models trained on gravity-aligned (z-up) scenes: what a robot publishes after transforming
        the camera's cloud into its base or map frame.  Raises ``ValueError`` without a pose.
        """
        if self.pose is None:
            raise ValueError(f"{self.name}: no sensor pose recorded, cannot move it into the scene frame")
        cloud = self.as_cloud()
        return ReplayFrame(self.name, xyz=transform_points(cloud.xyz, self.pose), rgb=cloud.rgb,
                           intensity=cloud.intensity, width=cloud.width, height=cloud.height, semantic=self.semantic)

    def as_rgbd(self) -> ReplayFrame:
        """The frame as depth + colour + intrinsics; a cloud must be organized, coloured, in an optical frame."""
        if self.is_rgbd:
            return self
        if self.xyz is None or self.height <= 1 or self.rgb is None:
            raise ValueError(f"{self.name}: only organized coloured clouds can be replayed as RGB-D "
                             f"(this one is {self.width}x{self.height}, colour: {self.rgb is not None})")
        return ReplayFrame(self.name, depth_m=depth_from_organized(self.xyz, self.width, self.height),
                           colour=self.rgb.reshape(self.height, self.width, 3),
                           intrinsics=fit_intrinsics(self.xyz, self.width, self.height), width=self.width,
                           height=self.height, semantic=self.semantic)


def read_rgbd_frame(path: Path) -> ReplayFrame:
    """A synthetic RGB-D ``.npz`` frame (depth uint16 mm, colour uint8 RGB, intrinsics, semantic)."""
    with np.load(path, allow_pickle=False) as data:
        for key in ("depth", "colour", "intrinsics"):
            if key not in data.files:
                raise ValueError(f"{path}: missing field '{key}'")
        depth, colour, k = data["depth"], data["colour"], data["intrinsics"]
        semantic = data["semantic"].reshape(-1) if "semantic" in data.files else None
        pose = data["pose"].astype(np.float64) if "pose" in data.files else None
        scale = float(data["depth_scale"]) if "depth_scale" in data.files else 0.001
    if depth.ndim != 2 or colour.shape != (*depth.shape, 3) or k.shape != (3, 3):
        raise ValueError(f"{path}: depth {depth.shape}, colour {colour.shape}, intrinsics {k.shape} do not fit")
    if pose is not None and pose.shape != (4, 4):
        raise ValueError(f"{path}: field 'pose' has shape {pose.shape}, expected (4, 4)")
    depth_m = depth.astype(np.float32) * np.float32(scale) if depth.dtype != np.float32 else depth.copy()
    depth_m[~(depth_m > 0)] = np.nan
    h, w = depth.shape
    return ReplayFrame(path.stem, depth_m=depth_m, colour=colour.astype(np.uint8), intrinsics=k.astype(np.float64),
                       width=w, height=h, semantic=semantic, pose=pose)


def read_cloud_frame(path: Path) -> ReplayFrame:
    """A ``.pcd`` / ``.ply`` / ``.npz`` cloud file, a synthetic RGB-D ``.npz`` frame or a KITTI ``.bin`` scan."""
    if path.suffix == ".bin":
        raw = np.fromfile(path, dtype=np.float32)
        if raw.size % 4:
            raise ValueError(f"{path}: {raw.size} float32 values, not a multiple of 4 (x, y, z, remission)")
        raw = raw.reshape(-1, 4)
        return ReplayFrame(path.stem, xyz=raw[:, :3].copy(), intensity=raw[:, 3].copy(), width=raw.shape[0])
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            is_frame = "depth" in data.files
        if is_frame:
            return read_rgbd_frame(path)
    cloud = read_cloud(path)
    semantic = cloud.label.astype(np.int64) if cloud.label is not None else None
    return ReplayFrame(path.stem, xyz=cloud.xyz, rgb=cloud.rgb, intensity=cloud.intensity, width=cloud.width,
                       height=cloud.height, semantic=semantic)


def read_dataset_frames(root: Path) -> list[ReplayFrame]:
    """Every scene of a dataset directory, in ``dataset.yaml`` order."""
    info = yaml.safe_load((root / "dataset.yaml").read_text()) or {}
    scenes = info.get("scenes") or {}
    if not isinstance(scenes, dict):
        raise ValueError(f"{root / 'dataset.yaml'}: field 'scenes' must be a mapping")
    frames = []
    for name, entry in scenes.items():
        scene = load_scene(root / entry["file"])
        xyz, rgb, intensity, width, height = scene.xyz, scene.rgb, scene.intensity, scene.num_points, 1
        w, h = int(entry.get("width", 0) or 0), int(entry.get("height", 0) or 0)
        if scene.pixel is not None and w * h > 0:
            full = np.full((w * h, 3), np.nan, dtype=np.float32)
            full[scene.pixel] = xyz
            xyz, width, height = full, w, h
            if rgb is not None:
                full_rgb = np.zeros((w * h, 3), dtype=np.uint8)
                full_rgb[scene.pixel] = rgb
                rgb = full_rgb
            if intensity is not None:
                full_i = np.zeros(w * h, dtype=np.float32)
                full_i[scene.pixel] = intensity
                intensity = full_i
        frames.append(ReplayFrame(str(name), xyz=xyz, rgb=rgb, intensity=intensity, width=width, height=height))
    return frames


def load_frames(path: str | Path, limit: int = 0) -> list[ReplayFrame]:
    """The frames under ``path`` (see the module docstring), sorted by file name; ``limit`` > 0 keeps the first."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file or directory")
    if path.is_dir() and (path / "dataset.yaml").is_file():
        frames = read_dataset_frames(path)
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in CLOUD_SUFFIXES and p.is_file())
        if limit:
            files = files[:limit]
        if not files:
            raise ValueError(f"{path}: no dataset.yaml and no {list(CLOUD_SUFFIXES)} files")
        frames = [read_cloud_frame(p) for p in files]
    else:
        frames = [read_cloud_frame(path)]
    return frames[:limit] if limit else frames
