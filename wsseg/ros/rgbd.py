"""RGB-D geometry without ROS: depth image <-> organized cloud, and the label image.

Conventions (REP 103 optical frame): x right, y down, z forward; pixel ``(u, v)`` (column, row)
of depth ``z`` back-projects to ``z * ((u - cx) / fx, (v - cy) / fy, 1)``.  Clouds are row-major:
point ``v * width + u`` is pixel ``(u, v)``.
"""

from __future__ import annotations

import numpy as np

from wsseg.core.classes import UNLABELLED_ID


def backproject_depth(depth_m: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """depth_m: (H, W) float32 metres, NaN = no measurement; intrinsics: (3, 3) pinhole matrix.

    Returns the organized cloud (H * W, 3) float32 metres in the depth optical frame, NaN rows where
    the depth is missing.
    """
    h, w = depth_m.shape
    k = np.asarray(intrinsics, dtype=np.float64)
    x_over_z = ((np.arange(w, dtype=np.float64) - k[0, 2]) / k[0, 0]).astype(np.float32)
    y_over_z = ((np.arange(h, dtype=np.float64) - k[1, 2]) / k[1, 1]).astype(np.float32)
    z = np.asarray(depth_m, dtype=np.float32)
    xyz = np.empty((h, w, 3), dtype=np.float32)
    with np.errstate(over="ignore"):  # absurd depths / focal lengths give inf: invalid points, dropped later
        np.multiply(z, x_over_z[None, :], out=xyz[..., 0])
        np.multiply(z, y_over_z[:, None], out=xyz[..., 1])
    xyz[..., 2] = z
    return xyz.reshape(-1, 3)


class Backprojector:
    """:func:`backproject_depth` for a stream: the pixel rays are computed once per camera and the cloud
    is written into one buffer reused frame after frame (the caller must be done with the previous
    frame's cloud before the next call, as the node's single worker is)."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._rays: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.float32), np.zeros(0, np.float32))
        self._out = np.zeros((0, 3), dtype=np.float32)

    def __call__(self, depth_m: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
        """depth_m: (H, W) float32 metres, NaN = none; intrinsics (3, 3).  Returns (H * W, 3) float32 (a view of
        the reused buffer), equal to ``backproject_depth(depth_m, intrinsics)``."""
        h, w = depth_m.shape
        k = np.asarray(intrinsics, dtype=np.float64)
        key = (h, w, k[0, 0], k[0, 2], k[1, 1], k[1, 2])
        if key != self._key:
            self._rays = (((np.arange(w, dtype=np.float64) - k[0, 2]) / k[0, 0]).astype(np.float32),
                          ((np.arange(h, dtype=np.float64) - k[1, 2]) / k[1, 1]).astype(np.float32))
            self._out = np.empty((h, w, 3), dtype=np.float32)
            self._key = key
        x_over_z, y_over_z = self._rays
        z = np.asarray(depth_m, dtype=np.float32)
        out = self._out
        np.multiply(z, x_over_z[None, :], out=out[..., 0])
        np.multiply(z, y_over_z[:, None], out=out[..., 1])
        out[..., 2] = z
        return out.reshape(-1, 3)


def label_image(labels: np.ndarray, width: int, height: int) -> np.ndarray:
    """labels: (H * W,) uint16 of an organized cloud -> (H, W) uint16 image, ``UNLABELLED_ID`` where invalid."""
    labels = np.asarray(labels, dtype=np.uint16)
    if labels.size != width * height:
        raise ValueError(f"label_image: {labels.size} labels for a {width} x {height} image")
    return labels.reshape(height, width)


def fit_intrinsics(xyz: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pinhole matrix of an organized cloud in an optical frame, fitted by least squares.

    xyz: (H * W, 3) float32 metres, NaN rows invalid.  ``u = fx * x / z + cx`` and ``v = fy * y / z + cy``
    are fitted over the valid points (used to replay organized PCD frames as depth + camera_info).
    """
    grid = np.asarray(xyz, dtype=np.float64).reshape(height, width, 3)
    valid = np.isfinite(grid).all(axis=2) & (grid[..., 2] > 0)
    if valid.sum() < 3:
        raise ValueError(f"fit_intrinsics: {int(valid.sum())} valid points, need at least 3")
    v, u = np.nonzero(valid)
    z = grid[..., 2][valid]
    k = np.eye(3)
    for axis, pixel in ((0, u), (1, v)):
        design = np.stack([grid[..., axis][valid] / z, np.ones_like(z)], axis=1)
        (focal, centre), *_ = np.linalg.lstsq(design, pixel.astype(np.float64), rcond=None)
        if not focal > 0:
            raise ValueError(f"fit_intrinsics: fitted focal length {focal} along axis {axis} is not positive; the "
                             "cloud is not in an optical frame (z forward)")
        k[axis, axis], k[axis, 2] = focal, centre
    return k


def depth_from_organized(xyz: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W) float32 depth in metres (the z of each point), NaN where the point is invalid."""
    z = np.asarray(xyz, dtype=np.float32)[:, 2].reshape(height, width).copy()
    z[~np.isfinite(np.asarray(xyz)).all(axis=1).reshape(height, width) | (z <= 0)] = np.nan
    return z


def depth_to_millimetres(depth_m: np.ndarray) -> np.ndarray:
    """(H, W) float metres (NaN = none) -> (H, W) uint16 millimetres (0 = none), for 16UC1 images."""
    mm = np.round(np.nan_to_num(np.asarray(depth_m, dtype=np.float64), nan=0.0) * 1000.0)
    return np.clip(mm, 0, np.iinfo(np.uint16).max).astype(np.uint16)


def unlabelled_image(width: int, height: int) -> np.ndarray:
    """(H, W) uint16 image of ``UNLABELLED_ID``."""
    return np.full((height, width), UNLABELLED_ID, dtype=np.uint16)
