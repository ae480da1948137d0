"""Exact picking on the full cloud: which point does a click on the screen mean?

The browser draws a decimated copy of the cloud, so it cannot know which of the N points lies under the
cursor; it sends the click as a ray (camera origin, unit direction, both in the scene frame, metres) and
the angle one screen pixel spans, and :func:`pick_point` answers on every point of the scene record.

The rule, a cone around the ray: a point at depth ``t`` along the ray (``t = (p - origin) . direction``)
is under the cursor when its distance from the ray is at most ``radius_px`` pixels there, i.e.
``t * tan(radius_px * pixel_angle_rad) + radius_m`` (``radius_m`` is the tolerance of an orthographic
view, or a floor for very near points).  Of those, the first surface wins: the smallest depth ``t0``;
points deeper than ``t0`` plus the cone's width at ``t0`` are behind that surface and never picked,
however close to the ray they are.  Within the surface the point nearest the ray (in pixels) is the
answer, so a click on a flat wall picks the point the cursor is on, not the one that happens to be
nearest the camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Ray:
    """A click as a ray in the scene frame.

    origin: (3,) metres; direction: (3,) (normalised here); pixel_angle_rad: the angle one screen pixel
    spans at the camera (vertical field of view / canvas height in pixels; 0 for an orthographic view).
    """

    origin: np.ndarray
    direction: np.ndarray
    pixel_angle_rad: float

    @classmethod
    def from_lists(cls, origin: list[float], direction: list[float], pixel_angle_rad: float) -> Ray:
        """Checked construction from JSON values; ``ValueError`` names the bad field and value."""
        o = np.asarray(origin, dtype=np.float64)
        d = np.asarray(direction, dtype=np.float64)
        if o.shape != (3,) or not np.isfinite(o).all():
            raise ValueError(f"ray origin must be 3 finite numbers, got {origin!r}")
        if d.shape != (3,) or not np.isfinite(d).all() or float(np.linalg.norm(d)) < 1e-9:
            raise ValueError(f"ray direction must be 3 finite numbers, not all 0, got {direction!r}")
        angle = float(pixel_angle_rad)
        if not math.isfinite(angle) or not 0.0 <= angle < 0.1:
            raise ValueError(f"pixel_angle_rad must be in [0, 0.1) radians, got {pixel_angle_rad!r}")
        return cls(origin=o, direction=d / np.linalg.norm(d), pixel_angle_rad=angle)


def pick_point(xyz: np.ndarray, ray: Ray, radius_px: float = 4.0, radius_m: float = 0.0,
               near_m: float = 0.0, mask: np.ndarray | None = None) -> int | None:
    """Index of the point a click means, or None when no point is within the tolerance.

    xyz: (N, 3) float32/float64, metres, the scene frame (every point of the record, not the display copy).
    radius_px: tolerance in screen pixels (about half the drawn point size plus a little slack).
    radius_m: extra tolerance in metres (the whole tolerance of an orthographic view).
    near_m: points closer than this along the ray (or behind the camera) are ignored.
    mask: (N,) bool, the points the view shows (e.g. not clipped away by a height limit); None = all.
    """
    if radius_px < 0 or radius_m < 0:
        raise ValueError(f"radius_px={radius_px} and radius_m={radius_m} must be >= 0")
    xyz = np.asarray(xyz)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"xyz must have shape (N, 3), got {xyz.shape}")
    if xyz.shape[0] == 0:
        return None
    slope = math.tan(radius_px * ray.pixel_angle_rad)
    candidates = _cone_candidates(xyz, ray, slope, radius_m, near_m, mask)
    # exact, in float64, on the few candidates
    rel = xyz[candidates].astype(np.float64) - ray.origin
    depth = rel @ ray.direction
    perp = np.sqrt(np.maximum((rel * rel).sum(axis=1) - depth * depth, 0.0))
    keep = (depth > near_m) & (perp <= depth * slope + radius_m)
    candidates, depth, perp = candidates[keep], depth[keep], perp[keep]
    if candidates.size == 0:
        return None
    first = float(depth.min())
    surface = np.flatnonzero(depth <= first + first * slope + radius_m)
    # nearest the ray in screen terms: lateral distance over the pixel footprint at that depth
    footprint = depth[surface] * max(slope, 1e-12) + radius_m
    return int(candidates[surface[np.argmin(perp[surface] / footprint)]])


def _cone_candidates(xyz: np.ndarray, ray: Ray, slope: float, radius_m: float, near_m: float,
                     mask: np.ndarray | None) -> np.ndarray:
    """(K,) int64 indices of the points inside a slightly widened cone, in float32 (one pass over N points;
    the widening covers float32 rounding, the caller decides exactly)."""
    origin = ray.origin.astype(np.float32)
    rel = np.asarray(xyz, dtype=np.float32) - origin
    depth = rel @ ray.direction.astype(np.float32)
    width = depth * np.float32(slope * 1.01) + np.float32(radius_m + 1e-3)
    hit = (depth > np.float32(near_m - 1e-3)) & (np.einsum("ij,ij->i", rel, rel) - depth * depth <= width * width)
    if mask is not None:
        if np.asarray(mask).shape != (xyz.shape[0],):
            raise ValueError(f"mask has shape {np.asarray(mask).shape}, expected ({xyz.shape[0]},)")
        hit &= np.asarray(mask, dtype=bool)
    return np.flatnonzero(hit)
