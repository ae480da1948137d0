"""Per-voxel network input features and their normalisation (one definition).

Feature names and the channels they add, in this fixed order:

* ``offset``: 3 channels, mean point position inside the voxel relative to the
  voxel centre, in voxel units, in [-0.5, 0.5];
* ``rgb``: 3 channels, mean colour mapped from 0..255 to [-1, 1];
* ``intensity``: 1 channel, mean ``intensity / intensity_scale`` clipped to [0, 1];
* ``height``: 1 channel, mean ``z`` in metres divided by ``height_scale_m``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from wsseg.core.voxelize import VoxelGrid, voxel_centroid_offset, voxel_mean

FEATURE_CHANNELS: dict[str, int] = {"offset": 3, "rgb": 3, "intensity": 1, "height": 1}


@dataclass(frozen=True)
class FeatureConfig:
    """Which input features a network takes and how they are scaled.

    names: subset of ``FEATURE_CHANNELS``, in any order (channels follow the
    canonical order).  intensity_scale: raw intensity that maps to 1.0
    (1.0 for SemanticKITTI remission, 255.0 for 8-bit sensors).
    height_scale_m: z (metres) that maps to 1.0.
    """

    names: tuple[str, ...] = ("offset", "rgb")
    intensity_scale: float = 1.0
    height_scale_m: float = 3.0

    def __post_init__(self) -> None:
        unknown = [n for n in self.names if n not in FEATURE_CHANNELS]
        if unknown:
            raise ValueError(f"unknown input feature(s) {unknown}; known: {list(FEATURE_CHANNELS)}")
        if not self.names:
            raise ValueError("at least one input feature is needed")
        if not self.intensity_scale > 0 or not self.height_scale_m > 0:
            raise ValueError("intensity_scale and height_scale_m must be > 0")

    @property
    def ordered_names(self) -> tuple[str, ...]:
        return tuple(n for n in FEATURE_CHANNELS if n in self.names)

    @property
    def num_channels(self) -> int:
        return sum(FEATURE_CHANNELS[n] for n in self.ordered_names)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["names"] = list(self.ordered_names)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> FeatureConfig:
        return cls(
            names=tuple(data.get("names", ("offset", "rgb"))),
            intensity_scale=float(data.get("intensity_scale", 1.0)),
            height_scale_m=float(data.get("height_scale_m", 3.0)),
        )


def voxel_features(
    grid: VoxelGrid,
    config: FeatureConfig,
    xyz: np.ndarray,
    rgb: np.ndarray | None = None,
    intensity: np.ndarray | None = None,
) -> np.ndarray:
    """Aggregate point attributes into the network's per-voxel input.

    xyz: (N, 3) float32, metres.  rgb: (N, 3) uint8 or None.  intensity: (N,)
    float or None.  Returns (M, config.num_channels) float32.  A feature the
    config asks for but the cloud lacks raises ``ValueError``.
    """
    parts = []
    for name in config.ordered_names:
        if name == "offset":
            parts.append(voxel_centroid_offset(xyz, grid))
        elif name == "rgb":
            if rgb is None:
                raise ValueError("the model needs 'rgb' but the cloud has no colour")
            parts.append(voxel_mean(np.asarray(rgb, dtype=np.float32) / 127.5 - 1.0, grid))
        elif name == "intensity":
            if intensity is None:
                raise ValueError("the model needs 'intensity' but the cloud has none")
            scaled = np.clip(np.asarray(intensity, dtype=np.float32).reshape(-1) / config.intensity_scale, 0.0, 1.0)
            parts.append(voxel_mean(scaled, grid))
        elif name == "height":
            parts.append(voxel_mean(np.asarray(xyz, dtype=np.float32)[:, 2] / config.height_scale_m, grid))
    return np.concatenate(parts, axis=1).astype(np.float32)
