"""Synthetic streets with the ``SYNTHETIC_OUTDOOR`` classes, scanned once by a spinning LiDAR.

The street runs along x (road surface at z = 0): road, raised sidewalks, terrain
beyond them, buildings with set-backs and gaps, trees (trunk + crown), bushes and
hedges, fences, street lights and sign posts, parked and moving cars, and people on
the sidewalks.  The LiDAR sits ``sensor_height_m`` above the road in a lane near
x = 0; the scan is returned in the sensor frame (x forward along the street, z up),
as SemanticKITTI scans are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wsseg.core.classes import SYNTHETIC_OUTDOOR
from wsseg.core.scene import Scene
from wsseg_training.data.synth.appearance import instance_reflectivity
from wsseg_training.data.synth.config import OutdoorConfig
from wsseg_training.data.synth.meshes import (
    MeshBuilder,
    SceneMesh,
    blob,
    box,
    box_between,
    cylinder,
    height_field,
    height_field_nodes,
    horizontal_cylinder,
    place,
)
from wsseg_training.data.synth.sensors import LidarScan, scan_lidar

CLASS_ID = {name: i for i, name in enumerate(SYNTHETIC_OUTDOOR.names)}
_NO_COLOUR = np.full(3, 0.5)


class _Street:
    """Street under construction."""

    def __init__(self, rng: np.random.Generator, config: OutdoorConfig) -> None:
        self.rng = rng
        self.difficulty = config.difficulty
        self.half_length = config.street_half_length_m
        self.road_width = float(rng.uniform(6.0, 12.0))
        self.builder = MeshBuilder()
        self.cars: list[tuple[float, float, float, float]] = []  # (xmin, ymin, xmax, ymax)

    def vary(self, low: float, high: float) -> float:
        spread = (high - low) / 2 + 0.25 * (high + low) / 2 * self.difficulty.shape_variation
        return float(max(0.02, self.rng.uniform((high + low) / 2 - spread, (high + low) / 2 + spread)))

    def count(self, mean: float) -> int:
        """A Poisson count scaled by the clutter-density knob."""
        return int(self.rng.poisson(mean * self.difficulty.clutter_density))

    def add(self, meshes: list, class_name: str, instance: int | None = None) -> int:
        """Add meshes as one object (a new instance unless ``instance`` is given); returns the instance id."""
        instance = self.builder.new_instance() if instance is None else instance
        reflectivity = instance_reflectivity(self.rng, class_name, self.difficulty.colour_overlap)
        for mesh in meshes:
            self.builder.add(mesh, CLASS_ID[class_name], instance, _NO_COLOUR, reflectivity)
        return instance


def _tree(street: _Street, x: float, y: float, z: float) -> None:
    radius, height = street.vary(0.1, 0.3), street.vary(1.8, 4.0)
    street.add([cylinder(radius, height + 0.5, (x, y, z), resolution=10)], "trunk")
    crown = np.array([street.vary(1.2, 3.0), street.vary(1.2, 3.0), street.vary(1.2, 3.5)])
    street.add([blob(crown, (x, y, z + height + 0.8 * crown[2]), street.rng, roughness=0.25, resolution=12)],
               "vegetation")


def _bush(street: _Street, x: float, y: float, z: float, length: float | None = None) -> None:
    """A bush, or a hedge ``length`` metres long along x."""
    height = street.vary(0.5, 1.6)
    if length is None:
        radii = (street.vary(0.4, 1.5), street.vary(0.4, 1.5), height / 2)
        street.add([blob(radii, (x, y, z + height * 0.4), street.rng, roughness=0.3, resolution=9)], "vegetation")
    else:
        width = street.vary(0.5, 1.2)
        parts = [blob((1.0, width / 2, height / 2), (x0, y, z + height * 0.45), street.rng, 0.25, 8)
                 for x0 in np.arange(x, x + length, 1.4)]
        street.add(parts, "vegetation")


def _pole(street: _Street, x: float, y: float, z: float, side: float) -> None:
    radius, height = street.vary(0.05, 0.14), street.vary(3.0, 9.0)
    parts = [cylinder(radius, height, (x, y, z), resolution=8)]
    if height > 5.0:  # street light: an arm over the road and a lamp head
        arm = street.vary(0.8, 2.5)
        parts.append(box((0.08, arm, 0.08), (x, y - side * arm / 2, z + height - 0.1)))
        parts.append(box((0.5, 0.25, 0.15), (x, y - side * arm, z + height - 0.2)))
    else:  # sign post
        parts.append(box((0.05, 0.6, 0.6), (x, y, z + height - 0.3), yaw_rad=float(street.rng.uniform(-0.3, 0.3))))
    street.add(parts, "pole")


def _person(street: _Street, x: float, y: float, z: float) -> None:
    s = street.vary(1.55, 1.95) / 1.75
    yaw = float(street.rng.uniform(0, 2 * np.pi))
    stride = float(street.rng.uniform(-0.2, 0.2))
    parts = [box((0.14, 0.13, 0.85), (stride * sign, 0.1 * sign, 0.425)) for sign in (-1, 1)]
    parts += [box((0.24, 0.4, 0.6), (0.0, 0.0, 1.15)), blob((0.1, 0.09, 0.12), (0.0, 0.0, 1.58), street.rng, 0.05, 8)]
    parts += [box((0.1, 0.1, 0.6), (-stride * sign, 0.25 * sign, 1.12)) for sign in (-1, 1)]
    for part in parts:
        part.scale(s, center=(0.0, 0.0, 0.0))
    street.add([place(p, (x, y, z), yaw) for p in parts], "person")


def _car(street: _Street, x: float, y: float, yaw: float) -> bool:
    length, width = street.vary(3.8, 4.9), street.vary(1.65, 1.95)
    half = max(length, width) / 2
    rect = (x - half, y - half, x + half, y + half)
    if any(rect[2] > a and b > rect[0] and rect[3] > c and d > rect[1] for a, c, b, d in street.cars):
        return False
    clearance, body = street.vary(0.18, 0.3), street.vary(0.55, 0.8)
    van = street.rng.random() < 0.2 * (0.5 + street.difficulty.shape_variation)
    cabin_len = length * (0.9 if van else street.vary(0.45, 0.6))
    cabin_h = street.vary(0.45, 0.6) * (1.8 if van else 1.0)
    wheel = street.vary(0.28, 0.36)
    parts = [box((length, width, body), (0.0, 0.0, clearance + body / 2)),
             box((cabin_len, width * 0.88, cabin_h), (-length * 0.05, 0.0, clearance + body + cabin_h / 2))]
    parts += [horizontal_cylinder(wheel, 0.22, (wx, wy, wheel), yaw_rad=np.pi / 2, resolution=10)
              for wx in (-length * 0.33, length * 0.33) for wy in (-width / 2 + 0.1, width / 2 - 0.1)]
    street.add([place(p, (x, y, 0.0), yaw) for p in parts], "car")
    street.cars.append(rect)
    return True


def _fence(street: _Street, x0: float, x1: float, y: float, z: float) -> None:
    height = street.vary(1.0, 1.8)
    parts = [cylinder(0.04, height, (px, y, z), resolution=6) for px in np.arange(x0, x1, 2.5)]
    if street.rng.random() < 0.5:
        parts.append(box_between((x0, y - 0.02, z + 0.1), (x1, y + 0.02, z + height)))
    else:  # boards with gaps: the LiDAR sees through it
        gap = street.vary(0.03, 0.1)
        parts += [box((0.1, 0.03, height - 0.1), (bx, y, z + 0.05 + (height - 0.1) / 2))
                  for bx in np.arange(x0, x1, 0.1 + gap)]
    street.add(parts, "fence")


def _side(street: _Street, side: float, sensor_xy: np.ndarray) -> None:
    """Everything on one side of the road (side = +1 left, -1 right)."""
    rng, L = street.rng, street.half_length
    edge = street.road_width / 2
    curb = float(rng.uniform(0.08, 0.18))
    if rng.random() < 0.85:
        walk = street.vary(1.5, 4.0)
        street.add([box_between((-L, side * edge - (side < 0) * walk, -0.3),
                                (L, side * edge + (side > 0) * walk, curb))], "sidewalk")
        outer = edge + walk
    else:
        outer, curb = edge, 0.02
    # Terrain: a bumpy height field from the sidewalk (or road) edge outwards.
    y_range = (outer, outer + 40.0) if side > 0 else (-outer - 40.0, -outer)
    nx, ny = height_field_nodes((-L, L), y_range, 1.0)
    gx, gy = np.meshgrid(np.linspace(-L, L, nx), np.linspace(*y_range, ny), indexing="ij")
    bumps = sum(rng.uniform(0.02, 0.12) * np.sin(gx * rng.uniform(0.1, 0.6) + gy * rng.uniform(0.1, 0.6)
                                                 + rng.uniform(0, 6.3)) for _ in range(3))
    street.add([height_field((-L, L), y_range, 1.0, curb + 0.05 + bumps)], "terrain")
    ground = curb + 0.05

    x = -L
    while x < L:  # buildings and open lots along the street
        if rng.random() < 0.6:
            length, setback = street.vary(8.0, 35.0), float(rng.choice([0.0, 0.0, rng.uniform(1.0, 6.0)]))
            depth, height = street.vary(8.0, 20.0), street.vary(4.0, 20.0)
            y_near = side * (outer + setback)
            low, high = (x, y_near, -0.5), (x + length, y_near + side * depth, height)
            parts = [box_between(np.minimum(low, high), np.maximum(low, high))]
            for _ in range(int(rng.integers(0, 4))):  # entrances, bay windows, balconies
                bx, bw, bh = rng.uniform(x + 1, x + length - 1), street.vary(1.0, 4.0), street.vary(0.5, 3.0)
                bz = float(rng.choice([0.0, rng.uniform(2.5, max(2.6, height - bh))]))
                bd = street.vary(0.3, 1.5)
                parts.append(box((bw, bd, bh), (bx, y_near - side * bd / 2, ground + bz + bh / 2)))
            street.add(parts, "building")
            if setback > 1.5 and rng.random() < 0.6:
                if rng.random() < 0.5:
                    _bush(street, x + 0.5, side * (outer + setback / 2), ground, length=length - 1.0)
                else:
                    _fence(street, x, x + length, side * (outer + 0.3), ground)
        else:
            length = street.vary(5.0, 25.0)
            for _ in range(int(rng.integers(0, 4))):
                _tree(street, rng.uniform(x, x + length), side * rng.uniform(outer + 2.0, outer + 15.0), ground)
            for _ in range(street.count(2.0)):
                _bush(street, rng.uniform(x, x + length), side * rng.uniform(outer + 0.8, outer + 12.0), ground)
            if rng.random() < 0.5:
                _fence(street, x, x + length, side * (outer + rng.uniform(0.2, 1.0)), ground)
        x += length + float(rng.uniform(0.0, 3.0))

    if rng.random() < 0.6 and outer > edge:  # street trees in the sidewalk
        spacing = street.vary(8.0, 18.0)
        for tx in np.arange(-L + rng.uniform(0, spacing), L, spacing):
            _tree(street, float(tx), side * (edge + 0.8), curb)
    for px in np.arange(-L + rng.uniform(0, 25.0), L, street.vary(18.0, 35.0)):  # street lights
        _pole(street, float(px), side * (edge + 0.35), curb, side)
    for _ in range(street.count(2.0)):  # sign posts
        _pole(street, float(rng.uniform(-L, L)), side * (edge + 0.3), curb, side)
    if outer > edge:
        for _ in range(street.count(3.0)):
            _person(street, float(rng.uniform(-40, 40)), side * rng.uniform(edge + 0.5, outer - 0.3), curb)
    if rng.random() < 0.7:  # parked cars along the curb
        x = -L + float(rng.uniform(0, 6))
        while x < L:
            if abs(x - sensor_xy[0]) > 4.0 or abs(side * (edge - 1.1) - sensor_xy[1]) > 2.0:
                _car(street, x, side * (edge - 1.1), float(rng.normal(0, 0.05)) + (np.pi if side > 0 else 0.0))
            x += street.vary(5.5, 8.0) + float(rng.exponential(4.0 / max(street.difficulty.clutter_density, 0.1)))


def build_street(rng: np.random.Generator, config: OutdoorConfig) -> tuple[SceneMesh, np.ndarray]:
    """A street mesh and the LiDAR position (3,) in its frame, metres."""
    street = _Street(rng, config)
    L, edge = street.half_length, street.road_width / 2
    street.add([box_between((-L, -edge - 0.01, -0.3), (L, edge + 0.01, 0.0))], "road")
    lane = float(rng.uniform(-edge / 2, edge / 2))
    sensor = np.array([0.0, lane, config.lidar.sensor_height_m])
    street.cars.append((-3.0, lane - 1.2, 3.0, lane + 1.2))  # the ego vehicle's own place
    for side in (1.0, -1.0):
        _side(street, side, sensor[:2])
    for _ in range(street.count(2.0)):  # moving traffic in both lanes
        lane_y = float(rng.choice([-edge / 2, edge / 2]))
        _car(street, float(rng.uniform(-40, 40)), lane_y + float(rng.normal(0, 0.3)),
             (0.0 if lane_y < 0 else np.pi) + float(rng.normal(0, 0.03)))
    return street.builder.build(), sensor


@dataclass(frozen=True)
class OutdoorScene:
    """One labelled LiDAR scan (sensor frame) and the raw scan with beam indices."""

    scene: Scene
    scan: LidarScan


def synthesize_outdoor(rng: np.random.Generator, config: OutdoorConfig) -> OutdoorScene:
    """Build a street and take one LiDAR revolution of it."""
    mesh, sensor = build_street(rng, config)
    scan = scan_lidar(mesh, mesh.raycaster(), config.lidar, sensor, rng, config.difficulty.noise_scale)
    scene = Scene(xyz=scan.xyz, intensity=scan.intensity, semantic=scan.semantic, instance=scan.instance)
    return OutdoorScene(scene=scene, scan=scan)
