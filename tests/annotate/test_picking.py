"""Picking without a browser: a ray against a known cloud returns the point the click means."""

from __future__ import annotations

import math

import numpy as np
import pytest
from wsseg_training.annotate.picking import Ray, pick_point

PIXEL = math.radians(60) / 700  # a 60 degree view 700 pixels high


def ray_to(target: tuple[float, float, float], origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
           pixel: float = PIXEL) -> Ray:
    d = np.asarray(target, float) - np.asarray(origin, float)
    return Ray.from_lists(list(origin), list(d), pixel)


def wall(x_m: float, spacing_m: float = 0.05, half_m: float = 1.0) -> np.ndarray:
    """A wall of points at x = x_m facing the origin, (K, 3)."""
    u = np.arange(-half_m, half_m + 1e-9, spacing_m)
    yy, zz = np.meshgrid(u, u, indexing="ij")
    return np.column_stack([np.full(yy.size, x_m), yy.ravel(), zz.ravel()])


def test_the_point_on_the_ray_is_picked_among_its_neighbours() -> None:
    xyz = wall(3.0)
    target = int(np.argmin(np.linalg.norm(xyz - [3.0, 0.25, -0.4], axis=1)))
    assert pick_point(xyz, ray_to(tuple(xyz[target]))) == target
    # a ray slightly off the point (1 pixel at 3 m = 4.5 mm) still picks it: it is the nearest to the ray
    off = xyz[target] + [0.0, 3.0 * PIXEL, 0.0]
    assert pick_point(xyz, ray_to(tuple(off))) == target


def test_occluded_points_behind_the_first_surface_are_never_picked() -> None:
    front = wall(2.0)
    back = wall(4.0)
    xyz = np.concatenate([back, front])  # the back wall first: order must not matter
    behind = int(np.argmin(np.linalg.norm(xyz - [4.0, 0.1, 0.1], axis=1)))
    # aim exactly at a back-wall point: the front wall is in the way, so a front point is picked
    picked = pick_point(xyz, ray_to(tuple(xyz[behind])))
    assert picked is not None and picked >= back.shape[0] and xyz[picked][0] == 2.0
    # even a back point exactly on the ray loses to a front point 2 pixels off the ray
    offset = 2.0 * 2.0 * PIXEL
    lone_front = np.array([[2.0, 0.1 * 2.0 / 4.0 + offset, 0.1 * 2.0 / 4.0]])
    exact_back = np.array([[4.0, 0.1, 0.1]])
    assert pick_point(np.concatenate([exact_back, lone_front]), ray_to((4.0, 0.1, 0.1))) == 1


def test_points_the_view_hides_are_not_picked() -> None:
    """A ceiling clipped away by the view's height limit does not hide the floor below it."""
    floor = wall(0.0)[:, [1, 2, 0]]  # the z = 0 plane, x and y in [-1, 1]
    ceiling = floor + np.array([0.0, 0.0, 2.5])
    xyz = np.concatenate([ceiling, floor])
    eye = (0.0, 0.0, 5.0)
    target = (0.1, 0.1, 0.0)
    assert xyz[pick_point(xyz, ray_to(target, eye))][2] == 2.5  # type: ignore[index]
    picked = pick_point(xyz, ray_to(target, eye), mask=xyz[:, 2] <= 1.0)
    assert picked is not None and xyz[picked][2] == 0.0
    with pytest.raises(ValueError, match="mask has shape"):
        pick_point(xyz, ray_to(target, eye), mask=np.ones(3, bool))


def test_nothing_within_the_pixel_radius_picks_nothing() -> None:
    xyz = wall(3.0, spacing_m=0.5)  # points 0.5 m apart: about 110 pixels at 3 m
    between = (3.0, 0.25, 0.25)
    assert pick_point(xyz, ray_to(between), radius_px=4.0) is None
    # the tolerance grows with the pixel radius: at 80 px the neighbours are inside the cone
    assert pick_point(xyz, ray_to(between), radius_px=80.0) is not None


def test_tolerance_is_in_pixels_so_it_widens_with_depth() -> None:
    near = np.array([[1.0, 0.004, 0.0]])   # 4 mm off the ray at 1 m = 2.7 px
    far = np.array([[10.0, 0.004, 0.0]])   # 4 mm at 10 m = 0.27 px
    ray = ray_to((1.0, 0.0, 0.0))
    assert pick_point(near, ray, radius_px=2.0) is None
    assert pick_point(near, ray, radius_px=3.0) == 0
    assert pick_point(far, ray, radius_px=0.5) == 0


def test_points_behind_the_camera_and_an_empty_cloud_are_ignored() -> None:
    assert pick_point(np.array([[-2.0, 0.0, 0.0]]), ray_to((1.0, 0.0, 0.0))) is None
    assert pick_point(np.zeros((0, 3)), ray_to((1.0, 0.0, 0.0))) is None


def test_orthographic_tolerance_in_metres() -> None:
    xyz = np.array([[5.0, 0.02, 0.0], [3.0, 0.2, 0.0]])
    ray = Ray.from_lists([0.0, 0.0, 0.0], [1.0, 0.0, 0.0], 0.0)
    assert pick_point(xyz, ray, radius_px=4.0, radius_m=0.03) == 0
    assert pick_point(xyz, ray, radius_px=4.0, radius_m=0.01) is None


def test_exact_on_a_million_points() -> None:
    rng = np.random.default_rng(0)
    xyz = rng.uniform([2.0, -5.0, -5.0], [30.0, 5.0, 5.0], size=(1_000_000, 3)).astype(np.float32)
    target = 123_456
    xyz[target] = [1.5, 0.3, -0.2]  # nearer than every other point, on the ray
    assert pick_point(xyz, ray_to(tuple(float(v) for v in xyz[target]))) == target


@pytest.mark.parametrize(("origin", "direction", "angle", "match"), [
    ([0, 0], [1, 0, 0], 0.001, "origin"), ([0, 0, float("nan")], [1, 0, 0], 0.001, "origin"),
    ([0, 0, 0], [0, 0, 0], 0.001, "direction"), ([0, 0, 0], [1, 0, 0], -1.0, "pixel_angle_rad"),
])
def test_bad_rays_name_the_field(origin: list, direction: list, angle: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Ray.from_lists(origin, direction, angle)
