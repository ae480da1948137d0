"""How many primitives K a training set gets (DYL Tab. 5; METHOD_NOTES §6.4).

DYL uses K = 300 on ScanNet's 1201 training scenes, ~1M super-voxels (Tab. 5: 100 is clearly worse, 200-500
about equal), and warns that K-means primitives need rich data (§4.2).  Scaled strictly in proportion to the
super-voxel count, K would drop below the number of classes on a dozen rooms, and Hungarian matching needs at
least as many primitives in a scene as it has tags, so the proportional K has a floor:

    K = max(floor_per_class · C, round(300 · S / 1e6)),  S = super-voxels of the training set,

with ``floor_per_class = 3`` (the paper's K / C is 15 on ScanNet; 3 primitives per class is the smallest that
still over-segments every class); capped at S.  The K sweep of ``bench/methods.py --densify-ablation`` shows
what the choice costs.
"""

from __future__ import annotations

#: the paper's K and the super-voxel count of its training set (ScanNet, order of magnitude)
PAPER_K, PAPER_SUPERVOXELS = 300, 1_000_000
#: primitives per class at least (see the module docstring)
FLOOR_PER_CLASS = 3


def auto_primitive_count(num_supervoxels: int, num_classes: int, floor_per_class: int = FLOOR_PER_CLASS) -> int:
    """K for a training set of ``num_supervoxels`` super-voxels and ``num_classes`` classes (module docstring)."""
    if num_supervoxels < 1 or num_classes < 1:
        raise ValueError(f"primitive count: {num_supervoxels} super-voxels and {num_classes} classes must be >= 1")
    proportional = round(PAPER_K * num_supervoxels / PAPER_SUPERVOXELS)
    return int(min(num_supervoxels, max(floor_per_class * num_classes, proportional)))
