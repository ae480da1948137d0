"""Knobs of the synthetic scene generators: frozen dataclasses with defaults, units in the names.

``Difficulty`` holds the knobs that decide how hard the benchmark is; the sensor
and scene dataclasses hold the physical settings.  Every value is recorded in the
dataset's ``dataset.yaml`` (``extra.synth``) so a dataset says how it was made.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


def _check_range(owner: str, name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ValueError(f"{owner}: field '{name}' is {value}, expected a value in [{low}, {high}]")


@dataclass(frozen=True, kw_only=True)
class Difficulty:
    """How hard the synthetic scenes are.

    colour_overlap: 0 = every class has its own colour (indoor) / reflectivity (outdoor) distribution,
        1 = an object's colour says nothing about its class.
    clutter_density: multiplier on the number of clutter objects (indoor) and of cars, persons, poles,
        bushes (outdoor).
    noise_scale: multiplier on every sensor noise (depth / range noise, colour / intensity noise).
    shape_variation: 0 = canonical furniture / object proportions, 1 = widely varied sizes and shapes.
    """

    colour_overlap: float = 0.6
    clutter_density: float = 1.0
    noise_scale: float = 1.0
    shape_variation: float = 0.6

    def __post_init__(self) -> None:
        _check_range("Difficulty", "colour_overlap", self.colour_overlap, 0.0, 1.0)
        _check_range("Difficulty", "clutter_density", self.clutter_density, 0.0, 10.0)
        _check_range("Difficulty", "noise_scale", self.noise_scale, 0.0, 10.0)
        _check_range("Difficulty", "shape_variation", self.shape_variation, 0.0, 1.0)


@dataclass(frozen=True, kw_only=True)
class RGBDCameraConfig:
    """A pinhole RGB-D camera (Kinect / RealSense-like).

    Intrinsics: ``fx = fy = width_px / (2 tan(hfov_deg / 2))``, principal point at the image centre.
    Depth noise is Gaussian along the optical axis with ``sigma = depth_noise_k_per_m * z**2`` (z in metres),
    then quantized to millimetres.  ``dropout_rate`` pixels are lost at random; surfaces seen at more than
    ``grazing_angle_deg`` from their normal are lost with probability ``grazing_dropout``.
    """

    width_px: int = 160
    height_px: int = 120
    hfov_deg: float = 65.0
    min_range_m: float = 0.3
    max_range_m: float = 6.0
    depth_noise_k_per_m: float = 0.0025
    dropout_rate: float = 0.03
    grazing_angle_deg: float = 80.0
    grazing_dropout: float = 0.6
    colour_noise_std: float = 6.0

    def __post_init__(self) -> None:
        if self.width_px < 8 or self.height_px < 8:
            raise ValueError(f"RGBDCameraConfig: image size {self.width_px}x{self.height_px} px is too small (>= 8x8)")
        _check_range("RGBDCameraConfig", "hfov_deg", self.hfov_deg, 10.0, 150.0)
        if not 0 < self.min_range_m < self.max_range_m:
            raise ValueError(f"RGBDCameraConfig: need 0 < min_range_m < max_range_m, got {self.min_range_m}, "
                             f"{self.max_range_m}")
        _check_range("RGBDCameraConfig", "dropout_rate", self.dropout_rate, 0.0, 0.9)
        _check_range("RGBDCameraConfig", "grazing_dropout", self.grazing_dropout, 0.0, 1.0)


@dataclass(frozen=True, kw_only=True)
class LidarConfig:
    """A spinning multi-beam LiDAR (Velodyne HDL-64E-like by default).

    Beams are spread evenly between ``fov_down_deg`` and ``fov_up_deg`` (elevation, 0 = horizontal);
    one revolution has ``360 / horizontal_resolution_deg`` firings per beam.  Range noise is Gaussian
    (``range_noise_std_m``); ``dropout_rate`` returns are lost at random, more at long range and on dark
    surfaces.  Intensity in [0, 1] follows the surface reflectivity, the incidence angle and the range.
    """

    beams: int = 64
    fov_up_deg: float = 2.0
    fov_down_deg: float = -24.8
    horizontal_resolution_deg: float = 0.2
    min_range_m: float = 1.0
    max_range_m: float = 100.0
    range_noise_std_m: float = 0.02
    dropout_rate: float = 0.03
    intensity_noise_std: float = 0.04
    sensor_height_m: float = 1.73

    def __post_init__(self) -> None:
        if not 1 <= self.beams <= 256:
            raise ValueError(f"LidarConfig: field 'beams' is {self.beams}, expected 1..256")
        if not -90.0 <= self.fov_down_deg < self.fov_up_deg <= 90.0:
            raise ValueError(f"LidarConfig: need -90 <= fov_down_deg < fov_up_deg <= 90, got {self.fov_down_deg}, "
                             f"{self.fov_up_deg}")
        _check_range("LidarConfig", "horizontal_resolution_deg", self.horizontal_resolution_deg, 0.01, 10.0)
        if not 0 < self.min_range_m < self.max_range_m:
            raise ValueError(f"LidarConfig: need 0 < min_range_m < max_range_m, got {self.min_range_m}, "
                             f"{self.max_range_m}")
        _check_range("LidarConfig", "dropout_rate", self.dropout_rate, 0.0, 0.9)

    @property
    def columns(self) -> int:
        """Firings per beam and revolution."""
        return max(1, round(360.0 / self.horizontal_resolution_deg))


#: the room types the indoor generator can build (``rooms.ROOM_TYPES`` furnishes each)
ROOM_TYPE_NAMES = ("office", "conference", "hallway", "storage", "lounge")
#: named room-type mixes: type -> share of the rooms.  ``s3dis_mix`` follows S3DIS's 272 rooms (156 offices,
#: 61 hallways, 19 storage rooms, 11 conference rooms, 11 WCs, 10 copy rooms, 3 lobbies, 3 lounges, 3 pantries,
#: 2 auditoriums, 1 open space), the types we do not build folded into the nearest we do: WC and copy room ->
#: storage, auditorium -> conference, lobby, pantry and open space -> lounge.
ROOM_TYPE_PRESETS: dict[str, dict[str, float]] = {
    "office_only": {"office": 1.0},
    "s3dis_mix": {"office": 0.55, "hallway": 0.22, "storage": 0.12, "conference": 0.05, "lounge": 0.06},
}


def room_type_shares(room_types: str | Mapping[str, float]) -> dict[str, float]:
    """The normalised shares {type: share, summing to 1} of a preset name or a {type: weight} mapping.

    Raises ValueError naming the field ``room_types`` for an unknown preset or type, a negative or non-finite weight,
    or weights summing to 0.
    """
    if isinstance(room_types, str):
        if room_types not in ROOM_TYPE_PRESETS:
            raise ValueError(f"IndoorConfig: field 'room_types' is {room_types!r}, expected a preset "
                             f"{sorted(ROOM_TYPE_PRESETS)} or a mapping {{type: share}} of {list(ROOM_TYPE_NAMES)}")
        room_types = ROOM_TYPE_PRESETS[room_types]
    if not isinstance(room_types, Mapping) or not room_types:
        raise ValueError(f"IndoorConfig: field 'room_types' is {room_types!r}, expected a preset name or a non-empty "
                         "mapping {type: share}")
    for name, weight in room_types.items():
        if name not in ROOM_TYPE_NAMES:
            raise ValueError(f"IndoorConfig: field 'room_types' names an unknown room type {name!r}, expected "
                             f"{list(ROOM_TYPE_NAMES)}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"IndoorConfig: field 'room_types' share of {name!r} is {weight!r}, expected a finite "
                             "number >= 0")
    total = float(sum(room_types.values()))
    if total <= 0:
        raise ValueError("IndoorConfig: field 'room_types' shares sum to 0, expected a positive sum")
    return {name: float(weight) / total for name, weight in room_types.items() if weight > 0}


class RoomTypesError(argparse.ArgumentTypeError, ValueError):
    """A bad ``--room-types`` value: a ValueError that argparse prints with its message (as a ``type=``)."""


def parse_room_types(text: str) -> str | dict[str, float]:
    """A ``--room-types`` value: a preset name (``s3dis_mix``) or ``TYPE=SHARE,...`` (``office=3,hallway=1``).

    Raises RoomTypesError (a ValueError) saying what is wrong."""
    shares: dict[str, float] = {}
    try:
        if "=" not in text:
            room_type_shares(text)  # validates the name
            return text
        for item in text.split(","):
            name, _, value = item.partition("=")
            try:
                shares[name.strip()] = float(value)
            except ValueError:
                raise ValueError(f"--room-types: {item!r} is not TYPE=SHARE (a number)") from None
        room_type_shares(shares)
    except ValueError as error:
        raise RoomTypesError(str(error)) from None
    return shares


@dataclass(frozen=True, kw_only=True)
class IndoorConfig:
    """Rooms scanned by an RGB-D camera moving around them; the frames are fused into one cloud.

    Room footprint sides are drawn from ``room_side_m`` and the height from ``room_height_m`` (min, max).
    ``fused_voxel_m`` thins the fused cloud to at most one point per voxel (0 keeps every pixel).
    ``room_types``: which kinds of room are built, a preset of ``ROOM_TYPE_PRESETS`` or a mapping {type: share}
    of ``ROOM_TYPE_NAMES``; the default ``office_only`` builds today's furnished offices, the same rooms as before
    room types existed.  Each room's type is drawn by its seed (nothing is drawn for a single type).
    ``room_side_m`` sizes offices and lounges; conference rooms, hallways and storage rooms have their own footprints
    (``rooms.ROOM_TYPES``).
    """

    room_side_m: tuple[float, float] = (4.0, 9.0)
    room_height_m: tuple[float, float] = (2.6, 3.4)
    views: int = 16
    fused_voxel_m: float = 0.04
    room_types: str | Mapping[str, float] = "office_only"
    camera: RGBDCameraConfig = field(default_factory=RGBDCameraConfig)
    difficulty: Difficulty = field(default_factory=Difficulty)

    def __post_init__(self) -> None:
        for name in ("room_side_m", "room_height_m"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"IndoorConfig: field '{name}' is {(low, high)}, expected 0 < min <= max")
        if self.room_side_m[0] < 3.0:
            raise ValueError(f"IndoorConfig: field 'room_side_m' minimum {self.room_side_m[0]} m is below 3 m")
        if self.views < 1:
            raise ValueError(f"IndoorConfig: field 'views' is {self.views}, expected >= 1")
        if self.fused_voxel_m < 0:
            raise ValueError(f"IndoorConfig: field 'fused_voxel_m' is {self.fused_voxel_m}, expected >= 0")
        room_type_shares(self.room_types)

    @property
    def room_type_shares(self) -> dict[str, float]:
        """{type: share} of the rooms, normalised to sum to 1."""
        return room_type_shares(self.room_types)


@dataclass(frozen=True, kw_only=True)
class OutdoorConfig:
    """A street scanned once by a LiDAR on a car roof; one scan is one scene.

    ``street_half_length_m``: the modelled street runs from -L to +L along x around the sensor.
    """

    street_half_length_m: float = 70.0
    lidar: LidarConfig = field(default_factory=LidarConfig)
    difficulty: Difficulty = field(default_factory=Difficulty)

    def __post_init__(self) -> None:
        _check_range("OutdoorConfig", "street_half_length_m", self.street_half_length_m, 20.0, 500.0)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain-YAML form of a config dataclass (tuples become lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(asdict(config))
