"""Per-class appearance distributions with a knob for how much they overlap.

An object's colour (indoor) or reflectivity (outdoor) is drawn per instance: with
probability ``1 - colour_overlap`` from its own class's prototypes, otherwise from the
prototypes of any class, then jittered.  At ``colour_overlap = 1`` appearance says
nothing about the class; at 0 classes only overlap where their prototypes do.
"""

from __future__ import annotations

import numpy as np

from wsseg_training.data.synth.meshes import stripe_texture

#: S3DIS class -> colour prototypes (r, g, b in [0, 1]).
INDOOR_COLOURS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "ceiling": ((0.86, 0.86, 0.84), (0.80, 0.80, 0.78), (0.90, 0.88, 0.82)),
    "floor": ((0.45, 0.45, 0.48), (0.55, 0.40, 0.26), (0.35, 0.33, 0.30), (0.62, 0.60, 0.55)),
    "wall": ((0.85, 0.84, 0.80), (0.78, 0.76, 0.70), (0.70, 0.72, 0.74), (0.88, 0.82, 0.70)),
    "beam": ((0.84, 0.84, 0.82), (0.74, 0.74, 0.72)),
    "column": ((0.82, 0.81, 0.78), (0.68, 0.68, 0.66)),
    "window": ((0.62, 0.70, 0.78), (0.80, 0.82, 0.84), (0.45, 0.50, 0.55)),
    "door": ((0.55, 0.38, 0.22), (0.80, 0.78, 0.74), (0.50, 0.52, 0.55)),
    "table": ((0.60, 0.45, 0.30), (0.85, 0.85, 0.83), (0.40, 0.40, 0.42)),
    "chair": ((0.15, 0.15, 0.17), (0.20, 0.28, 0.55), (0.55, 0.18, 0.15), (0.50, 0.50, 0.50)),
    "sofa": ((0.35, 0.30, 0.45), (0.50, 0.25, 0.20), (0.30, 0.40, 0.35), (0.60, 0.55, 0.45)),
    "bookcase": ((0.50, 0.36, 0.22), (0.62, 0.62, 0.60), (0.75, 0.70, 0.60)),
    "board": ((0.93, 0.93, 0.92), (0.85, 0.86, 0.84), (0.25, 0.35, 0.28), (0.70, 0.55, 0.38)),
    "clutter": ((0.80, 0.20, 0.20), (0.20, 0.60, 0.30), (0.90, 0.80, 0.30), (0.10, 0.10, 0.10),
                (0.60, 0.60, 0.65), (0.30, 0.30, 0.70)),
}

#: Synthetic outdoor class -> LiDAR reflectivity prototypes in [0, 1].
OUTDOOR_REFLECTIVITY: dict[str, tuple[float, ...]] = {
    "road": (0.12, 0.18), "sidewalk": (0.25, 0.32), "building": (0.30, 0.45, 0.55),
    "vegetation": (0.40, 0.50), "trunk": (0.28, 0.35), "pole": (0.45, 0.70), "car": (0.20, 0.60, 0.85),
    "person": (0.25, 0.35), "fence": (0.30, 0.55), "terrain": (0.38, 0.45),
}


def instance_colour(rng: np.random.Generator, class_name: str, overlap: float) -> np.ndarray:
    """(3,) float64 albedo of one object of ``class_name``."""
    source = class_name if rng.random() >= overlap else str(rng.choice(sorted(INDOOR_COLOURS)))
    prototypes = INDOOR_COLOURS[source]
    base = np.asarray(prototypes[int(rng.integers(len(prototypes)))])
    return np.clip(base * rng.uniform(0.85, 1.15) + rng.normal(0.0, 0.04, size=3), 0.02, 1.0)


def instance_reflectivity(rng: np.random.Generator, class_name: str, overlap: float) -> float:
    """LiDAR reflectivity in [0.02, 1] of one object of ``class_name``."""
    source = class_name if rng.random() >= overlap else str(rng.choice(sorted(OUTDOOR_REFLECTIVITY)))
    prototypes = OUTDOOR_REFLECTIVITY[source]
    return float(np.clip(prototypes[int(rng.integers(len(prototypes)))] + rng.normal(0.0, 0.05), 0.02, 1.0))


def instance_texture(rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """(4,) stripe texture of one object (wood grain, fabric, posters), see :func:`stripe_texture`."""
    return stripe_texture(rng, amplitude=rng.uniform(0.0, 0.15) * strength, wavelength_m=(0.04, 0.6))
