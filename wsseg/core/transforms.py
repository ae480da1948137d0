"""Rigid transforms of point clouds: poses from [x, y, z, roll, pitch, yaw] and applying a pose to points."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pose_matrix(xyz_rpy: Sequence[float]) -> np.ndarray | None:
    """[x, y, z, roll, pitch, yaw] (metres, radians; fixed axes: R = Rz(yaw) Ry(pitch) Rx(roll), as URDF)
    -> (4, 4) float64 pose, or None for all zeros (no transform)."""
    x, y, z, roll, pitch, yaw = (float(v) for v in xyz_rpy)
    if not any((x, y, z, roll, pitch, yaw)):
        return None
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    pose = np.eye(4)
    pose[:3, :3] = [[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                    [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                    [-sp, cp * sr, cp * cr]]
    pose[:3, 3] = (x, y, z)
    return pose


def transform_points(xyz: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """xyz: (N, 3) float, metres, in the pose's source frame; pose: (4, 4) source -> target.

    Returns (N, 3) float32 in the target frame (computed in float64; NaN rows stay NaN).
    """
    pose = np.asarray(pose, dtype=np.float64)
    if pose.shape != (4, 4):
        raise ValueError(f"pose has shape {pose.shape}, expected (4, 4)")
    return (np.asarray(xyz, dtype=np.float64) @ pose[:3, :3].T + pose[:3, 3]).astype(np.float32)
