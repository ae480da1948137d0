"""Synthetic indoor rooms with the 13 S3DIS classes, scanned by a moving RGB-D camera.

A room (``rooms``: its type, size and furniture, built from the primitives of ``furniture``) is ray cast
from a camera that walks around it looking across it; its frames are fused into one cloud in the room
frame and thinned to one point per ``fused_voxel_m`` voxel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wsseg.core.scene import Scene
from wsseg.core.voxelize import voxelize
from wsseg_training.data.synth.config import IndoorConfig
from wsseg_training.data.synth.rooms import build_room, build_typed_room
from wsseg_training.data.synth.sensors import Lighting, RGBDFrame, backproject, look_at_pose, render_rgbd

__all__ = ["IndoorScene", "build_room", "camera_trajectory", "fuse_frames", "synthesize_indoor"]


def camera_trajectory(rng: np.random.Generator, size: tuple[float, float, float], views: int) -> list[np.ndarray]:
    """``views`` (4, 4) poses of a hand-held scan: even views walk a ring 1 m from the walls looking across the
    room, odd views stand nearer the centre looking out at the walls; the pitch alternates between the floor,
    eye level and the ceiling."""
    width, depth, height = size
    centre = np.array([width / 2, depth / 2])
    radius = np.maximum(np.array([width / 2, depth / 2]) - 1.0, 0.05)
    poses = []
    for i in range(views):
        angle = 2 * np.pi * (i + rng.uniform(-0.3, 0.3)) / views
        outward = np.array([np.cos(angle), np.sin(angle)])
        position_z = rng.uniform(1.25, min(1.7, height - 0.5))
        target_z = (0.2, 1.0, height - 0.3)[i % 3] + rng.normal(0, 0.2)
        if i % 2 == 0:
            xy = centre + radius * rng.uniform(0.6, 1.0) * outward
            target_xy = centre - (xy - centre) * rng.uniform(0.3, 1.2) + rng.normal(0, 0.4, size=2)
        else:
            xy = centre + radius * rng.uniform(0.0, 0.4) * outward
            target_xy = centre + np.array([width / 2, depth / 2]) * outward + rng.normal(0, 0.3, size=2)
        poses.append(look_at_pose(np.array([*xy, position_z]), np.array([*target_xy, target_z])))
    return poses


@dataclass(frozen=True)
class IndoorScene:
    """A fused indoor scene, its frames, the room size (metres) and the room type."""

    scene: Scene
    frames: list[RGBDFrame]
    room_size_m: tuple[float, float, float]
    room_type: str = "office"


def fuse_frames(frames: list[RGBDFrame], voxel_m: float) -> Scene:
    """Back-project every frame into the scene frame and keep the first point of each ``voxel_m`` voxel."""
    xyz, rgb, semantic, instance = [], [], [], []
    for frame in frames:
        points, pixels = backproject(frame.depth, frame.intrinsics, frame.pose)
        xyz.append(points)
        rgb.append(frame.colour.reshape(-1, 3)[pixels])
        semantic.append(frame.semantic.reshape(-1)[pixels])
        instance.append(frame.instance.reshape(-1)[pixels])
    all_xyz = np.concatenate(xyz)
    if all_xyz.shape[0] == 0:
        raise ValueError("fuse_frames: the camera saw nothing (no valid depth in any frame)")
    keep = np.arange(all_xyz.shape[0])
    if voxel_m > 0:
        grid = voxelize(all_xyz, voxel_m)
        keep = np.sort(np.unique(grid.inverse, return_index=True)[1])
    return Scene(xyz=all_xyz[keep].astype(np.float32), rgb=np.concatenate(rgb)[keep],
                 semantic=np.concatenate(semantic)[keep].astype(np.int16),
                 instance=np.concatenate(instance)[keep].astype(np.int32))


def synthesize_indoor(rng: np.random.Generator, config: IndoorConfig) -> IndoorScene:
    """Build a room, scan it with the RGB-D camera along a trajectory and fuse the frames."""
    built = build_typed_room(rng, config)
    mesh, size = built.mesh, built.size_m
    raycaster = mesh.raycaster()
    lamps = [(x, y, size[2] - 0.05) for x in np.arange(1.5, size[0], 3.0) for y in np.arange(1.5, size[1], 3.0)]
    lighting = Lighting.random(rng, variation=config.difficulty.colour_overlap, lamps=np.array(lamps))
    frames = [render_rgbd(mesh, raycaster, config.camera, pose, lighting, rng, config.difficulty.noise_scale)
              for pose in camera_trajectory(rng, size, config.views)]
    return IndoorScene(scene=fuse_frames(frames, config.fused_voxel_m), frames=frames, room_size_m=size,
                       room_type=built.room_type)
