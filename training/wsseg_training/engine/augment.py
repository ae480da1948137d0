"""The one point-cloud augmentation of training and of test-time augmentation.

Training draws it per sample (:mod:`wsseg_training.engine.sampling`); test-time augmentation
(:func:`wsseg_training.engine.inference.infer`) draws rotation and flip only.
"""

from __future__ import annotations

import numpy as np

from wsseg_training.engine.config import AugmentConfig

#: test-time augmentation: rotation about z and an x flip, nothing that changes the geometry's scale or noise
TTA_AUGMENT = AugmentConfig(rotate_z=True, flip_x=True, flip_y=False, scale_range=(1.0, 1.0), jitter_std_m=0.0,
                            colour_jitter_std=0.0, colour_shift_std=0.0)


def augment(xyz: np.ndarray, rgb: np.ndarray | None, config: AugmentConfig,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """Rotate about z, flip, scale (about the x-y centre at z = 0), jitter; jitter and shift colours.

    xyz: (N, 3) float32 metres.  rgb: (N, 3) uint8 or None.  Returns new arrays of the same shapes and dtypes;
    the points keep their order (row i of the output is row i of the input), which is what makes the
    point correspondence between augmented views exact.
    """
    points = xyz.astype(np.float64)
    centre = np.array([*points[:, :2].mean(axis=0), 0.0])
    points = points - centre
    if config.rotate_z:
        angle = rng.uniform(0.0, 2.0 * np.pi)
        c, s = np.cos(angle), np.sin(angle)
        points = points @ np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
    if config.flip_x and rng.random() < 0.5:
        points[:, 0] = -points[:, 0]
    if config.flip_y and rng.random() < 0.5:
        points[:, 1] = -points[:, 1]
    low, high = config.scale_range
    if high > low or low != 1.0:
        points = points * rng.uniform(low, high)
    if config.jitter_std_m > 0:
        points = points + rng.normal(0.0, config.jitter_std_m, points.shape)
    points = points + centre
    if rgb is not None and (config.colour_jitter_std > 0 or config.colour_shift_std > 0):
        colour = rgb.astype(np.float64)
        if config.colour_shift_std > 0:
            colour = colour + rng.normal(0.0, config.colour_shift_std, (1, 3))
        if config.colour_jitter_std > 0:
            colour = colour + rng.normal(0.0, config.colour_jitter_std, colour.shape)
        rgb = np.clip(np.round(colour), 0, 255).astype(np.uint8)
    return points.astype(np.float32), rgb
