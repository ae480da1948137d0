"""Room types of the synthetic indoor generator: each type sizes its room and builds only its own furniture.

Real indoor datasets are not all offices: S3DIS's rooms are offices, hallways, storage rooms, conference rooms,
WCs, lounges, ...; its hallways and storage rooms hold no table, chair or sofa.  ``IndoorConfig.room_types`` picks
the mix; the default (``office_only``) builds exactly the rooms the generator built before room types existed
(no random number is drawn for the type of a single-type mix, and the office recipe is unchanged).

Every room has the shell (floor, ceiling, four walls).  Beyond it:

* ``office``: beams, columns, doors, windows, boards, bookcases, maybe a sofa, desks with chairs, tables with chairs,
  loose chairs, clutter on tops, floor and walls;
* ``conference``: 5-10 x 4-7 m; beams, columns, doors, windows, 1-2 boards, 1-2 tables with chairs, loose chairs,
  clutter (a little on the floor);
* ``hallway``: 6-14 m long, 1.8-2.8 m wide; beams across it, columns, 2-5 doors, windows, wall and floor clutter;
  no table, chair, sofa, bookcase or board;
* ``storage``: 3-5.5 x 3-5 m; beams, columns, one door, maybe a window, 2-6 bookcases, much floor clutter; no table,
  chair, sofa or board;
* ``lounge``: footprint from ``room_side_m``; beams, columns, doors, windows, sofas (2-4 tries), tables with
  chairs, loose chairs, maybe a bookcase, clutter; no board.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from wsseg_training.data.synth.config import ROOM_TYPE_NAMES, IndoorConfig
from wsseg_training.data.synth.furniture import (
    Room,
    beams_and_columns,
    bookcase,
    chair,
    clutter,
    desk,
    shell,
    sofa,
    table_with_chairs,
    wall_items,
)
from wsseg_training.data.synth.meshes import SceneMesh

Tops = list[tuple[np.ndarray, np.ndarray, float]]


def _loose_chairs(room: Room, count: int) -> None:
    for _ in range(count):
        chair(room, room.rng.uniform((0.5, 0.5), (room.width - 0.5, room.depth - 0.5)),
              float(room.rng.uniform(0, 2 * np.pi)))


def _office(room: Room) -> None:
    rng = room.rng
    beams_and_columns(room)
    wall_items(room)
    for _ in range(int(rng.integers(0, 5))):
        bookcase(room, int(rng.integers(4)))
    if rng.random() < 0.45:
        sofa(room, int(rng.integers(4)))
    tops: Tops = []
    for _ in range(int(rng.integers(0, 2 + room.width * room.depth // 12))):
        tops += desk(room, int(rng.integers(4)))
    for _ in range(int(rng.integers(1, 2 + room.width * room.depth // 15))):
        tops += table_with_chairs(room)
    _loose_chairs(room, int(rng.integers(0, 5)))
    clutter(room, tops)


def _conference(room: Room) -> None:
    rng, density = room.rng, room.difficulty.clutter_density
    beams_and_columns(room)
    wall_items(room, [("door", 1 + int(rng.random() < 0.5)), ("window", int(rng.integers(0, 4))),
                      ("board", int(rng.integers(1, 3))), ("clutter", int(rng.poisson(1.0 * density)))])
    tops: Tops = []
    for _ in range(int(rng.integers(1, 3))):
        tops += table_with_chairs(room)
    _loose_chairs(room, int(rng.integers(0, 6)))
    clutter(room, tops, floor_per_m2=0.04)


def _hallway(room: Room) -> None:
    rng, density = room.rng, room.difficulty.clutter_density
    beams_and_columns(room, beams=(0, 1, 2, 3, 4), columns=(0, 0, 1, 2, 3), along_x=room.width < room.depth)
    wall_items(room, [("door", int(rng.integers(2, 6))), ("window", int(rng.integers(0, 3))),
                      ("clutter", int(rng.poisson(2.0 * density)))])
    clutter(room, [], floor_per_m2=0.08)


def _storage(room: Room) -> None:
    rng, density = room.rng, room.difficulty.clutter_density
    beams_and_columns(room)
    wall_items(room, [("door", 1), ("window", int(rng.integers(0, 2))), ("clutter", int(rng.poisson(1.0 * density)))])
    for _ in range(int(rng.integers(2, 7))):
        bookcase(room, int(rng.integers(4)))
    clutter(room, [], floor_per_m2=0.45)


def _lounge(room: Room) -> None:
    rng, density = room.rng, room.difficulty.clutter_density
    beams_and_columns(room)
    wall_items(room, [("door", 1 + int(rng.random() < 0.4)), ("window", int(rng.integers(1, 5))),
                      ("clutter", int(rng.poisson(1.5 * density)))])
    for _ in range(int(rng.integers(2, 5))):  # tries: a wall taken by a door or window refuses a sofa
        sofa(room, int(rng.integers(4)))
    if rng.random() < 0.3:
        bookcase(room, int(rng.integers(4)))
    tops: Tops = []
    for _ in range(int(rng.integers(1, 3))):
        tops += table_with_chairs(room)
    _loose_chairs(room, int(rng.integers(0, 4)))
    clutter(room, tops)


@dataclass(frozen=True)
class RoomType:
    """How one room type is built.

    sides_m: ((min, max) of the long side, (min, max) of the short side) in metres, the long side along x or y at
        random; None = both sides from ``IndoorConfig.room_side_m`` (x first, as offices always were).
    furnish: places everything inside the shell.
    """

    sides_m: tuple[tuple[float, float], tuple[float, float]] | None
    furnish: Callable[[Room], None]


ROOM_TYPES: dict[str, RoomType] = {
    "office": RoomType(None, _office),
    "conference": RoomType(((5.0, 10.0), (4.0, 7.0)), _conference),
    "hallway": RoomType(((6.0, 14.0), (1.8, 2.8)), _hallway),
    "storage": RoomType(((3.0, 5.5), (3.0, 5.0)), _storage),
    "lounge": RoomType(None, _lounge),
}
assert tuple(ROOM_TYPES) == ROOM_TYPE_NAMES, "config.ROOM_TYPE_NAMES and rooms.ROOM_TYPES must list the same types"


def draw_room_type(rng: np.random.Generator, config: IndoorConfig) -> str:
    """The type of one room: drawn from the config's shares (in ``ROOM_TYPE_NAMES`` order); a single-type mix
    draws nothing from ``rng``."""
    shares = config.room_type_shares
    names = [n for n in ROOM_TYPE_NAMES if n in shares]
    if len(names) == 1:
        return names[0]
    return names[int(rng.choice(len(names), p=np.array([shares[n] for n in names])))]


def _sides(rng: np.random.Generator, room_type: RoomType) -> tuple[float, float] | None:
    if room_type.sides_m is None:
        return None
    (long_low, long_high), (short_low, short_high) = room_type.sides_m
    long, short = float(rng.uniform(long_low, long_high)), float(rng.uniform(short_low, short_high))
    return (long, short) if rng.random() < 0.5 else (short, long)


@dataclass(frozen=True)
class BuiltRoom:
    """A built room: its mesh, its size (width x, depth y, height z; metres) and its type."""

    mesh: SceneMesh
    size_m: tuple[float, float, float]
    room_type: str


def build_typed_room(rng: np.random.Generator, config: IndoorConfig) -> BuiltRoom:
    """Draw the room's type, size it, build the shell and the type's furniture."""
    name = draw_room_type(rng, config)
    room_type = ROOM_TYPES[name]
    room = Room(rng, config, _sides(rng, room_type))
    shell(room)
    room_type.furnish(room)
    return BuiltRoom(room.builder.build(), (room.width, room.depth, room.height), name)


def build_room(rng: np.random.Generator, config: IndoorConfig) -> tuple[SceneMesh, tuple[float, float, float]]:
    """A furnished room of a type drawn from ``config.room_types``; returns its mesh and its size (width x,
    depth y, height z), metres."""
    built = build_typed_room(rng, config)
    return built.mesh, built.size_m
