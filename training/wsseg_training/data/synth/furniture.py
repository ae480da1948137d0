"""Furniture of the synthetic indoor rooms: the room under construction and the primitives that furnish it.

A room is an axis-aligned box (floor at z = 0, walls at x = 0, x = W, y = 0, y = D) furnished from
primitives: tables with legs and chairs around them, sofas and bookcases against walls, doors, windows
and boards on walls, beams under the ceiling, columns against walls, and clutter on the floor, on tables
and on walls.  Which of them a room gets is its room type's choice (``rooms``).
"""

from __future__ import annotations

import itertools

import numpy as np

from wsseg.core.classes import S3DIS
from wsseg_training.data.synth.appearance import instance_colour, instance_texture
from wsseg_training.data.synth.config import IndoorConfig
from wsseg_training.data.synth.meshes import MeshBuilder, blob, box, box_between, cylinder, place

CLASS_ID = {name: i for i, name in enumerate(S3DIS.names)}
WALL_THICKNESS_M = 0.12


class Room:
    """Room under construction: its size, the mesh builder and what is already placed."""

    def __init__(self, rng: np.random.Generator, config: IndoorConfig,
                 sides_m: tuple[float, float] | None = None) -> None:
        """``sides_m``: the footprint (width x, depth y) in metres; None draws both from ``config.room_side_m``."""
        self.rng = rng
        self.difficulty = config.difficulty
        if sides_m is None:
            sides_m = (float(rng.uniform(*config.room_side_m)), float(rng.uniform(*config.room_side_m)))
        self.width, self.depth = float(sides_m[0]), float(sides_m[1])
        self.height = float(rng.uniform(*config.room_height_m))
        self.builder = MeshBuilder()
        self.footprints: list[tuple[float, float, float, float]] = []  # (xmin, ymin, xmax, ymax) on the floor
        self.wall_spans: dict[int, list[tuple[float, float, float, float]]] = {w: [] for w in range(4)}

    def vary(self, low: float, high: float) -> float:
        """A size between ``low`` and ``high``, stretched beyond them by the shape-variation knob."""
        spread = (high - low) / 2 + 0.25 * (high + low) / 2 * self.difficulty.shape_variation
        return float(max(0.02, self.rng.uniform((high + low) / 2 - spread, (high + low) / 2 + spread)))

    def new_object(self, class_name: str) -> tuple[int, np.ndarray, np.ndarray]:
        """(instance id, albedo, texture) of a new object of ``class_name``."""
        return (self.builder.new_instance(), instance_colour(self.rng, class_name, self.difficulty.colour_overlap),
                instance_texture(self.rng))

    def add(self, meshes: list, class_name: str, obj: tuple[int, np.ndarray, np.ndarray],
            albedo: np.ndarray | None = None) -> None:
        instance, colour, texture = obj
        for mesh in meshes:
            self.builder.add(mesh, CLASS_ID[class_name], instance, colour if albedo is None else albedo,
                             texture=texture)

    # ---- placement bookkeeping
    def floor_is_free(self, rect: tuple[float, float, float, float], margin_m: float = 0.05) -> bool:
        x0, y0, x1, y1 = rect
        if x0 < -0.01 or y0 < -0.01 or x1 > self.width + 0.01 or y1 > self.depth + 0.01:
            return False
        return all(x1 + margin_m <= a or b <= x0 - margin_m or y1 + margin_m <= c or d <= y0 - margin_m
                   for a, c, b, d in self.footprints)

    def wall_frame(self, wall: int) -> tuple[np.ndarray, np.ndarray, float, float]:
        """(origin, tangent, yaw, length) of wall ``wall``: local x runs along the wall, local y into the room."""
        w, d = self.width, self.depth
        frames = {0: ((0.0, 0.0), (1.0, 0.0), 0.0, w), 1: ((w, 0.0), (0.0, 1.0), np.pi / 2, d),
                  2: ((w, d), (-1.0, 0.0), np.pi, w), 3: ((0.0, d), (0.0, -1.0), 1.5 * np.pi, d)}
        origin, tangent, yaw, length = frames[wall]
        return np.array([*origin, 0.0]), np.array([*tangent, 0.0]), float(yaw), float(length)

    def claim_wall(self, wall: int, width_m: float, z_range: tuple[float, float], tries: int = 15) -> float | None:
        """A free position (centre along the wall) for something ``width_m`` wide spanning ``z_range``."""
        length = self.wall_frame(wall)[3]
        if width_m > length - 0.3:
            return None
        for _ in range(tries):
            s = float(self.rng.uniform(0.15 + width_m / 2, length - 0.15 - width_m / 2))
            span = (s - width_m / 2, s + width_m / 2, *z_range)
            if all(span[1] + 0.1 <= a or b <= span[0] - 0.1 or span[3] <= c or e <= span[2]
                   for a, b, c, e in self.wall_spans[wall]):
                self.wall_spans[wall].append(span)
                return s
        return None

    def on_wall(self, wall: int, s: float, parts_local: list) -> list:
        """Move meshes built in a wall's local frame (x along the wall from ``s``, y into the room) into place."""
        origin, tangent, yaw, _ = self.wall_frame(wall)
        return [place(m, origin + tangent * s, yaw) for m in parts_local]

    def wall_footprint(self, wall: int, s: float, width_m: float, depth_m: float) -> tuple[float, float, float, float]:
        origin, tangent, _, _ = self.wall_frame(wall)
        normal = np.array([-tangent[1], tangent[0], 0.0])
        corners = [origin + tangent * (s + a) + normal * b for a in (-width_m / 2, width_m / 2) for b in (0, depth_m)]
        xs, ys = [c[0] for c in corners], [c[1] for c in corners]
        return min(xs), min(ys), max(xs), max(ys)


def shell(room: Room) -> None:
    """Floor, ceiling and four walls; the walls share one paint, the shell is only faintly textured."""
    w, d, h, t = room.width, room.depth, room.height, WALL_THICKNESS_M
    rng = room.rng
    for class_name, low, high in (("floor", (-t, -t, -t), (w + t, d + t, 0.0)),
                                  ("ceiling", (-t, -t, h), (w + t, d + t, h + t))):
        instance, colour, _ = room.new_object(class_name)
        room.add([box_between(low, high)], class_name, (instance, colour, instance_texture(rng, 0.4)))
    walls = [((-t, -t, 0), (w + t, 0, h)), ((w, -t, 0), (w + t, d + t, h)),
             ((-t, d, 0), (w + t, d + t, h)), ((-t, -t, 0), (0, d + t, h))]
    paint = instance_colour(rng, "wall", room.difficulty.colour_overlap)
    for low, high in walls:
        colour = np.clip(paint + rng.normal(0.0, 0.015, size=3), 0.0, 1.0)
        room.add([box_between(low, high)], "wall", (room.builder.new_instance(), colour, instance_texture(rng, 0.2)))


def beams_and_columns(room: Room, beams: tuple[int, ...] = (0, 0, 1, 2, 3),
                      columns: tuple[int, ...] = (0, 0, 1, 1, 2), along_x: bool | None = None) -> None:
    """Beams under the ceiling and columns against the walls; their counts drawn from ``beams`` / ``columns``;
    ``along_x``: the beams' direction (None: drawn)."""
    rng = room.rng
    along_x = bool(rng.random() < 0.5) if along_x is None else along_x
    span = room.depth if along_x else room.width
    for _ in range(int(rng.choice(list(beams)))):
        width, drop = room.vary(0.2, 0.4), room.vary(0.2, 0.45)
        pos = float(rng.uniform(0.5, span - 0.5))
        low = (0.0, pos - width / 2, room.height - drop) if along_x else (pos - width / 2, 0.0, room.height - drop)
        high = (room.width, pos + width / 2, room.height) if along_x else (pos + width / 2, room.depth, room.height)
        room.add([box_between(low, high)], "beam", room.new_object("beam"))
    for _ in range(int(rng.choice(list(columns)))):
        wall = int(rng.integers(4))
        side, proud = room.vary(0.3, 0.6), room.vary(0.1, 0.5)
        s = room.claim_wall(wall, side, (0.0, room.height))
        if s is None:
            continue
        parts = room.on_wall(wall, s, [box((side, proud, room.height), (0.0, proud / 2, room.height / 2))])
        room.add(parts, "column", room.new_object("column"))
        room.footprints.append(room.wall_footprint(wall, s, side, proud))


def office_wall_plan(room: Room) -> list[tuple[str, int]]:
    """An office's wall items: [(class, count)] of doors, windows, boards and wall clutter."""
    rng = room.rng
    return [("door", 1 + int(rng.random() < 0.4)), ("window", int(rng.integers(0, 4))),
            ("board", int(rng.integers(0, 3))), ("clutter", int(rng.poisson(1.5 * room.difficulty.clutter_density)))]


def wall_items(room: Room, plans: list[tuple[str, int]] | None = None) -> None:
    """Doors, windows, boards and wall clutter (pictures, radiators), a few cm proud of the walls.

    plans: [(class, count)] with classes among door, window, board, clutter; None = :func:`office_wall_plan`.
    """
    rng = room.rng
    plans = office_wall_plan(room) if plans is None else plans
    for class_name, count in plans:
        for _ in range(count):
            wall = int(rng.integers(4))
            if class_name == "door":
                width, height, bottom = room.vary(0.8, 1.0) * (1 + (rng.random() < 0.2)), room.vary(2.0, 2.2), 0.0
            elif class_name == "window":
                width, height = room.vary(0.8, 2.4), room.vary(1.0, 1.6)
                bottom = min(float(rng.uniform(0.7, 1.2)), room.height - height - 0.2)
            elif class_name == "board":
                width, height, bottom = room.vary(1.2, 3.0), room.vary(0.9, 1.3), float(rng.uniform(0.8, 1.0))
            else:
                width, height, bottom = room.vary(0.3, 1.2), room.vary(0.3, 0.9), float(rng.uniform(0.1, 1.6))
            height = min(height, room.height - bottom - 0.1)
            s = room.claim_wall(wall, width, (bottom, bottom + height))
            if s is None:
                continue
            proud = float(rng.uniform(0.005, 0.04))
            parts = [box((width, proud, height), (0.0, proud / 2, bottom + height / 2))]
            frame = float(rng.uniform(0.03, 0.07))
            if class_name in ("window", "board") and rng.random() < 0.7:  # a frame standing out a little more
                for dz in (bottom + frame / 2, bottom + height - frame / 2):
                    parts.append(box((width, proud + 0.02, frame), (0.0, (proud + 0.02) / 2, dz)))
                if class_name == "window":
                    parts.append(box((frame, proud + 0.02, height), (0.0, (proud + 0.02) / 2, bottom + height / 2)))
            if class_name == "door":
                parts.append(box((0.12, 0.06, 0.03), (0.4 * width - 0.1, proud + 0.03, 1.0)))  # handle
            room.add(room.on_wall(wall, s, parts), class_name, room.new_object(class_name))
            if class_name == "door":
                room.footprints.append(room.wall_footprint(wall, s, width, 0.8))  # keep the doorway clear


def bookcase(room: Room, wall: int) -> None:
    rng = room.rng
    width, depth, height = room.vary(0.6, 1.8), room.vary(0.28, 0.45), room.vary(1.0, 2.2)
    height = min(height, room.height - 0.3)
    s = room.claim_wall(wall, width, (0.0, height))
    if s is None or not room.floor_is_free(room.wall_footprint(wall, s, width, depth)):
        return
    board = 0.02
    parts = [box((board, depth, height), (x, depth / 2, height / 2)) for x in (-width / 2, width / 2)]
    parts.append(box((width, board, height), (0.0, board / 2, height / 2)))
    shelves = int(rng.integers(3, 7))
    levels = np.linspace(0.05, height, shelves + 1)
    parts += [box((width, depth, board), (0.0, depth / 2, z)) for z in levels]
    obj = room.new_object("bookcase")
    books = []
    for z0, z1 in itertools.pairwise(levels):  # books, labelled as part of the bookcase
        x = -width / 2 + board
        while x < width / 2 - 0.05 and rng.random() < 0.92:
            thick, tall = float(rng.uniform(0.02, 0.07)), float(rng.uniform(0.5, 0.95)) * (z1 - z0 - board)
            if rng.random() < 0.75:
                books.append((box((thick, depth * rng.uniform(0.6, 0.95), tall),
                                  (x + thick / 2, depth * 0.5, z0 + board / 2 + tall / 2)),
                              instance_colour(rng, "clutter", 1.0)))
            x += thick + 0.002
    room.add(room.on_wall(wall, s, parts), "bookcase", obj)
    for mesh, colour in books:
        room.add(room.on_wall(wall, s, [mesh]), "bookcase", obj, albedo=colour)
    room.footprints.append(room.wall_footprint(wall, s, width, depth))


def sofa(room: Room, wall: int) -> None:
    length, depth = room.vary(1.5, 2.5), room.vary(0.8, 1.0)
    seat, back, arm = room.vary(0.38, 0.46), room.vary(0.75, 0.95), room.vary(0.15, 0.25)
    s = room.claim_wall(wall, length, (0.0, back))
    gap = 0.05
    if s is None or not room.floor_is_free(room.wall_footprint(wall, s, length, depth + gap)):
        return
    parts = [box((length - 2 * arm, depth - 0.2, seat), (0.0, gap + 0.1 + depth / 2, seat / 2)),  # seat
             box((length, 0.2, back), (0.0, gap + 0.1, back / 2))]  # back rest
    arm_h = seat + room.vary(0.15, 0.25)
    parts += [box((arm, depth, arm_h), (x, gap + depth / 2, arm_h / 2))
              for x in (-(length - arm) / 2, (length - arm) / 2)]
    room.add(room.on_wall(wall, s, parts), "sofa", room.new_object("sofa"))
    room.footprints.append(room.wall_footprint(wall, s, length, depth + gap))


def chair(room: Room, centre: np.ndarray, yaw: float) -> bool:
    """A chair with its seat centred on ``centre`` (x, y), facing local +y turned by ``yaw``."""
    rng = room.rng
    seat_w, seat_h, back_h = room.vary(0.4, 0.55), room.vary(0.42, 0.5), room.vary(0.35, 0.6)
    half = seat_w / 2 + 0.05
    if not room.floor_is_free((centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half), 0.02):
        return False
    t = room.vary(0.04, 0.08)
    parts = [box((seat_w, seat_w, t), (0.0, 0.0, seat_h - t / 2)),
             box((seat_w, 0.05, back_h), (0.0, -seat_w / 2 + 0.025, seat_h + back_h / 2))]
    if rng.random() < 0.5:  # four legs
        leg = room.vary(0.025, 0.045)
        parts += [box((leg, leg, seat_h - t), (x, y, (seat_h - t) / 2))
                  for x in (-seat_w / 2 + leg, seat_w / 2 - leg) for y in (-seat_w / 2 + leg, seat_w / 2 - leg)]
    else:  # office chair: pedestal and a star base
        parts.append(cylinder(0.03, seat_h - t, (0.0, 0.0, 0.0), resolution=8))
        for k in range(5):
            spoke = box((0.3, 0.04, 0.04), (0.15, 0.0, 0.04))
            parts.append(place(spoke, (0.0, 0.0, 0.0), k * 2 * np.pi / 5))
    if rng.random() < 0.35:  # arm rests
        parts += [box((0.05, seat_w * 0.8, 0.04), (x, 0.0, seat_h + 0.22)) for x in (-seat_w / 2, seat_w / 2)]
    room.add([place(p, (centre[0], centre[1], 0.0), yaw) for p in parts], "chair", room.new_object("chair"))
    room.footprints.append((centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half))
    return True


def table_with_chairs(room: Room) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """A table (and chairs around it); returns its top as [(low xy, high xy, z)] for clutter."""
    rng = room.rng
    length, depth, height = room.vary(1.0, 2.2), room.vary(0.6, 1.1), room.vary(0.7, 0.78)
    yaw = float(rng.choice([0.0, np.pi / 2]))
    sx, sy = (length, depth) if yaw == 0.0 else (depth, length)
    for _ in range(20):
        cx = rng.uniform(0.6 + sx / 2, room.width - 0.6 - sx / 2)
        cy = rng.uniform(0.6 + sy / 2, room.depth - 0.6 - sy / 2)
        rect = (cx - sx / 2, cy - sy / 2, cx + sx / 2, cy + sy / 2)
        if room.width - 1.2 > sx and room.depth - 1.2 > sy and room.floor_is_free(rect, 0.3):
            break
    else:
        return []
    top = room.vary(0.03, 0.06)
    parts = [box((sx, sy, top), (cx, cy, height - top / 2))]
    leg = room.vary(0.04, 0.07)
    if rng.random() < 0.7:
        parts += [box((leg, leg, height - top), (x, y, (height - top) / 2))
                  for x in (cx - sx / 2 + leg, cx + sx / 2 - leg) for y in (cy - sy / 2 + leg, cy + sy / 2 - leg)]
    else:  # panel legs at the short ends
        if sx >= sy:
            ends = ((cx - sx / 2 + leg, cy), (cx + sx / 2 - leg, cy))
        else:
            ends = ((cx, cy - sy / 2 + leg), (cx, cy + sy / 2 - leg))
        size = (leg, sy * 0.8, height - top) if sx >= sy else (sx * 0.8, leg, height - top)
        parts += [box(size, (x, y, (height - top) / 2)) for x, y in ends]
    room.add(parts, "table", room.new_object("table"))
    room.footprints.append(rect)
    for _ in range(int(rng.integers(2, 9))):  # chairs around it, facing it (local +y towards the table)
        side = int(rng.integers(4))
        gap = float(rng.uniform(0.2, 0.45))
        if side in (0, 1):
            x, y = rng.uniform(rect[0] + 0.2, rect[2] - 0.2), (rect[1] - gap) if side == 0 else (rect[3] + gap)
            chair_yaw = 0.0 if side == 0 else np.pi
        else:
            x, y = (rect[0] - gap) if side == 2 else (rect[2] + gap), rng.uniform(rect[1] + 0.2, rect[3] - 0.2)
            chair_yaw = -np.pi / 2 if side == 2 else np.pi / 2
        chair(room, np.array([x, y]), chair_yaw + float(rng.normal(0, 0.2)))
    return [(np.array(rect[:2]), np.array(rect[2:]), height)]


def desk(room: Room, wall: int) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """A desk against ``wall`` with a chair in front of it; returns its top for clutter."""
    length, depth, height = room.vary(1.1, 1.8), room.vary(0.6, 0.8), room.vary(0.7, 0.78)
    s = room.claim_wall(wall, length, (0.0, height))
    if s is None:
        return []
    rect = room.wall_footprint(wall, s, length, depth)
    if not room.floor_is_free(rect):
        return []
    top, leg = room.vary(0.03, 0.05), room.vary(0.04, 0.06)
    parts = [box((length, depth, top), (0.0, depth / 2, height - top / 2))]
    if room.rng.random() < 0.5:
        parts += [box((leg, leg, height - top), (x, y, (height - top) / 2))
                  for x in (-length / 2 + leg, length / 2 - leg) for y in (leg, depth - leg)]
    else:  # side panel + a drawer block
        parts += [box((leg, depth, height - top), (-length / 2 + leg / 2, depth / 2, (height - top) / 2)),
                  box((0.4, depth * 0.95, height - top), (length / 2 - 0.2, depth / 2, (height - top) / 2))]
    room.add(room.on_wall(wall, s, parts), "table", room.new_object("table"))
    room.footprints.append(rect)
    origin, tangent, yaw, _ = room.wall_frame(wall)
    normal = np.array([-tangent[1], tangent[0], 0.0])
    if room.rng.random() < 0.85:
        along, out = room.rng.uniform(-0.2, 0.2) * length, depth + room.rng.uniform(0.2, 0.5)
        seat = origin + tangent * (s + along) + normal * out
        chair(room, seat[:2], yaw + np.pi + float(room.rng.normal(0, 0.3)))
    return [(np.array(rect[:2]), np.array(rect[2:]), height)]


def clutter_item(room: Room, x: float, y: float, z: float) -> None:
    """One clutter object of a random shape standing at (x, y, z)."""
    rng = room.rng
    kind = int(rng.integers(6))
    size = room.vary(0.1, 0.5) * (2.0 if z < 0.05 and rng.random() < 0.3 else 1.0)
    if kind == 0:  # box / carton
        parts = [box((size, size * rng.uniform(0.5, 1.5), size * rng.uniform(0.3, 1.2)), (x, y, z + size / 2),
                     yaw_rad=float(rng.uniform(0, np.pi)))]
        parts[0].translate((0, 0, float(np.asarray(parts[0].vertices)[:, 2].min() * -1 + z)))
    elif kind == 1:  # bin / bottle / cup
        parts = [cylinder(size * 0.3, size * rng.uniform(0.6, 1.6), (x, y, z), resolution=10)]
    elif kind == 2:  # bag / plant / pile
        parts = [blob((size / 2, size / 2 * rng.uniform(0.6, 1.3), size / 2 * rng.uniform(0.5, 1.0)),
                      (x, y, z + size / 2 * 0.7), rng, roughness=0.2, resolution=8)]
    elif kind == 3:  # monitor on a stand
        w = size * 1.2
        parts = [box((w, 0.04, w * 0.6), (x, y, z + 0.12 + w * 0.3), yaw_rad=float(rng.uniform(0, np.pi))),
                 box((0.2, 0.15, 0.02), (x, y, z + 0.01)), cylinder(0.02, 0.14, (x, y, z), resolution=6)]
    elif kind == 4:  # plant in a pot
        pot = size * 0.35
        parts = [cylinder(pot, pot * 1.5, (x, y, z), resolution=10),
                 blob((size * 0.6, size * 0.6, size * 0.8), (x, y, z + pot * 1.5 + size * 0.6), rng, 0.35, 8)]
    else:  # flat stack (papers, laptop, tray)
        parts = [box((size, size * 0.7, 0.02 + 0.05 * rng.random()), (x, y, z + 0.03),
                     yaw_rad=float(rng.uniform(0, np.pi)))]
    room.add(parts, "clutter", room.new_object("clutter"))


def clutter(room: Room, table_tops: list[tuple[np.ndarray, np.ndarray, float]], floor_per_m2: float = 0.12) -> None:
    """Clutter on the table tops (2.5 per m² of top) and on the free floor (``floor_per_m2`` per m² of floor), both
    scaled by the clutter-density knob."""
    rng = room.rng
    density = room.difficulty.clutter_density
    for low, high, z in table_tops:
        for _ in range(int(rng.poisson(2.5 * density * float(np.prod(high - low))))):
            x, y = rng.uniform(low + 0.1, np.maximum(high - 0.1, low + 0.11))
            clutter_item(room, float(x), float(y), z)
    for _ in range(int(rng.poisson(floor_per_m2 * density * room.width * room.depth))):
        for _ in range(10):
            x, y = rng.uniform(0.2, room.width - 0.2), rng.uniform(0.2, room.depth - 0.2)
            if room.floor_is_free((x - 0.3, y - 0.3, x + 0.3, y + 0.3), 0.0):
                clutter_item(room, float(x), float(y), 0.0)
                room.footprints.append((x - 0.3, y - 0.3, x + 0.3, y + 0.3))
                break

