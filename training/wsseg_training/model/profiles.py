"""Named U-Net sizes ("profiles") and the preprocessing that goes with each.

==============  ======================  ===============  ============  ===================================
profile         channels (per level)    blocks/level     voxel size    meant for
==============  ======================  ===============  ============  ===================================
default         32, 64, 96, 128, 160    2, 2, 2, 2, 2    0.05 m        accuracy; GPU training, GPU robots
cpu             16, 32, 48, 64          1, 1, 1, 1       0.08 m        CPU training and CPU-only robots
tiny            8, 16, 24               1, 1, 1          0.10 m        tests, smoke runs, quick demos
rgbd_small      16, 32, 48, 64          1, 1, 1, 1       0.02 m        RGB-D table tops / close range, CPU
rgbd_base       32, 64, 96, 128, 160    2, 2, 2, 2, 2    0.02 m        RGB-D table tops / close range, GPU
indoor_small    16, 32, 48, 64          1, 1, 1, 1       0.04 m        RGB-D rooms, CPU
indoor_base     32, 64, 96, 128, 160    2, 2, 2, 2, 2    0.04 m        RGB-D rooms, GPU
lidar_small     16, 32, 48, 64          1, 1, 1, 1       0.10 m        LiDAR scans, CPU
lidar_base      32, 64, 96, 128, 160    2, 2, 2, 2, 2    0.08 m        LiDAR scans, GPU
lidar_rt        16, 24, 32, 48          1, 1, 1, 1       0.10 m        real-time LiDAR on a CPU (10 Hz budget)
rgbd_rt         16, 24, 32, 48          1, 1, 1, 1       0.02 m        real-time RGB-D on a CPU
lidar_rt_lite   16, 24, 32, 48          1, 1, 1, 1 [*]_  0.10 m        real-time LiDAR, light finest decoder
lidar_rt_xlite  16, 24, 32, 48          1, 1, 1, 1 [+]_  0.10 m        real-time LiDAR, two light decoders
==============  ======================  ===============  ============  ===================================

.. [*] decoder blocks 0, 1, 1, 1: the finest decoder level is a 1x1 fuse (:class:`UNetConfig`).
.. [+] decoder blocks 0, 0, 1, 1: the two finest decoder levels are 1x1 fuses.

The sensor profiles (``rgbd_*``, ``indoor_*``, ``lidar_*``) are what ``profile: auto`` picks
(:mod:`wsseg_training.data.sensor_defaults`, which also fits the voxel to the data inside the kind's
range); their measured node speed is in ``docs/model_and_bundle.md``.

Every level halves the resolution, so the receptive field grows with
``num_levels = len(channels)``; the preprocessing must build kernel maps for the
same number of levels (:func:`preprocess_config_for` keeps them equal).  The
voxel sizes are recommendations for indoor RGB-D / terrestrial scans; outdoor
LiDAR usually wants 0.1-0.2 m and may override ``voxel_size_m``.
"""

from __future__ import annotations

from dataclasses import dataclass

from wsseg.core.features import FeatureConfig
from wsseg.core.preprocess import PreprocessConfig
from wsseg_training.model.unet import UNetConfig


@dataclass(frozen=True)
class ModelProfile:
    """A named U-Net size.  channels/blocks as in :class:`UNetConfig`; voxel_size_m: recommended voxel edge, metres."""

    name: str
    channels: tuple[int, ...]
    blocks: tuple[int, ...]
    voxel_size_m: float
    description: str
    decoder_blocks: tuple[int, ...] | None = None

    @property
    def num_levels(self) -> int:
        return len(self.channels)


PROFILES: dict[str, ModelProfile] = {
    "default": ModelProfile(
        name="default",
        channels=(32, 64, 96, 128, 160),
        blocks=(2, 2, 2, 2, 2),
        voxel_size_m=0.05,
        description="accuracy: 5 levels, 2 residual blocks per level",
    ),
    "cpu": ModelProfile(
        name="cpu",
        channels=(16, 32, 48, 64),
        blocks=(1, 1, 1, 1),
        voxel_size_m=0.08,
        description="fast on CPU: 4 levels, 1 residual block per level",
    ),
    "tiny": ModelProfile(
        name="tiny",
        channels=(8, 16, 24),
        blocks=(1, 1, 1),
        voxel_size_m=0.1,
        description="tests and smoke runs: 3 levels, 1 residual block per level",
    ),
}


def _sensor_profile(kind: str, size: str, voxel_size_m: float, meant_for: str) -> ModelProfile:
    """A sensor profile: the ``cpu`` network (``small``) or the ``default`` one (``base``) at the kind's grid."""
    like = PROFILES["cpu" if size == "small" else "default"]
    return ModelProfile(name=f"{kind}_{size}", channels=like.channels, blocks=like.blocks, voxel_size_m=voxel_size_m,
                        description=f"{meant_for}: the {like.name} network at {voxel_size_m:g} m")


for _kind, _voxels, _meant_for in (("rgbd", (0.02, 0.02), "RGB-D table tops and close range"),
                                   ("indoor", (0.04, 0.04), "RGB-D rooms"),
                                   ("lidar", (0.10, 0.08), "LiDAR scans")):
    for _size, _voxel in zip(("small", "base"), _voxels, strict=True):
        PROFILES[f"{_kind}_{_size}"] = _sensor_profile(_kind, _size, _voxel, _meant_for)


#: Real-time profiles (#23): narrower coarse levels, so the network fits a 10 Hz budget on a CPU; their
#: speed and accuracy beside ``cpu`` are in ``bench/results/profiles.md`` and ``bench/results/backbone.md``.
PROFILES["lidar_rt"] = ModelProfile(
    name="lidar_rt", channels=(16, 24, 32, 48), blocks=(1, 1, 1, 1), voxel_size_m=0.10,
    description="real-time LiDAR on a CPU: 4 narrow levels at the 10 cm grid Autoware recommends")
PROFILES["rgbd_rt"] = ModelProfile(
    name="rgbd_rt", channels=(16, 24, 32, 48), blocks=(1, 1, 1, 1), voxel_size_m=0.02,
    description="real-time RGB-D on a CPU: 4 narrow levels at 2 cm")
#: ``lidar_rt`` with a light finest decoder level (``decoder_blocks`` 0 at level 0: ``concat(up, skip)`` fused by
#: a 1x1 linear, no 3x3x3 block): the 10 cm level holds most of a LiDAR frame's voxels with the fewest
#: neighbours each, and its decoder block (32 -> 16 channels) is the costliest convolution pair of ``lidar_rt``.
#: Speed and accuracy beside ``lidar_rt`` and the other layouts tried: ``bench/results/profiles_layouts.md``,
#: ``bench/results/backbone_layouts.md``.
PROFILES["lidar_rt_lite"] = ModelProfile(
    name="lidar_rt_lite", channels=(16, 24, 32, 48), blocks=(1, 1, 1, 1), voxel_size_m=0.10,
    decoder_blocks=(0, 1, 1, 1),
    description="real-time LiDAR on a CPU: lidar_rt with a 1x1 decoder fuse at the 10 cm level")
#: ``lidar_rt_lite`` with the 20 cm decoder level light too (its first 3x3x3 convolution reads the 48-channel
#: ``concat(up, skip)``: the costliest convolution left in ``lidar_rt_lite``).  About 20 % less inference than
#: ``lidar_rt_lite`` for ~1.3 mIoU points less on the synthetic streets (inside the seed spread):
#: ``bench/results/profiles_lite_d2.md``, ``bench/results/backbone_xlite.md``.
PROFILES["lidar_rt_xlite"] = ModelProfile(
    name="lidar_rt_xlite", channels=(16, 24, 32, 48), blocks=(1, 1, 1, 1), voxel_size_m=0.10,
    decoder_blocks=(0, 0, 1, 1),
    description="real-time LiDAR on a small CPU: 1x1 decoder fuses at the 10 cm and 20 cm levels")


def get_profile(profile: str) -> ModelProfile:
    """The profile named ``profile``; ``ValueError`` naming the known ones otherwise."""
    try:
        return PROFILES[profile]
    except KeyError:
        raise ValueError(f"unknown model profile {profile!r}; known: {sorted(PROFILES)}") from None


def unet_config_for(profile: str, in_channels: int, num_classes: int) -> UNetConfig:
    """The :class:`UNetConfig` of a named profile for the given input width and class count."""
    spec = get_profile(profile)
    return UNetConfig(in_channels=in_channels, num_classes=num_classes, channels=spec.channels, blocks=spec.blocks,
                      decoder_blocks=spec.decoder_blocks)


def preprocess_config_for(
    profile: str, features: FeatureConfig | None = None, voxel_size_m: float | None = None
) -> PreprocessConfig:
    """The :class:`PreprocessConfig` matching a profile: its level count and (unless given) its voxel size."""
    spec = get_profile(profile)
    return PreprocessConfig(
        voxel_size_m=spec.voxel_size_m if voxel_size_m is None else voxel_size_m,
        num_levels=spec.num_levels,
        features=features if features is not None else FeatureConfig(),
    )
