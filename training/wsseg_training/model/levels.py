"""Points and voxels across U-Net levels.

Row order of level ``l`` (the *reference order*, on both backends): the rows of
``KernelMaps.coords[l]``, i.e. the level's unique ``[batch, x, y, z]`` voxels sorted lexicographically
(:mod:`wsseg.core.kernel_maps`).  ``UNetOutput.encoder[l]`` and ``decoder[l]`` follow it; the spconv
backend maps its own coarse-level order onto it (:mod:`wsseg_training.model.spconv_backend`).

Every level-``l`` voxel has exactly one parent at level ``l + 1``: ``up[l][row] // 8`` (the up map stores
``parent_row * 8 + child offset``), so a point's voxel at any level is its level-0 voxel
(``grid.inverse``) followed up the chain of parents.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch

Rows = TypeVar("Rows", np.ndarray, torch.Tensor)


def voxel_rows_at_level(rows: Rows, ups: Sequence[Rows], level: int) -> Rows:
    """Level-``level`` voxel rows of level-0 voxel rows.

    rows: (P,) int64 level-0 rows (e.g. ``grid.inverse``: point -> voxel).  ups: the up maps
    ``up_0 .. up_{L-2}`` ((M_l,) int64 each, ``KernelMaps.up`` or their tensors).  level: 0..L-1.
    Returns (P,) int64 rows of ``level`` in its reference order; numpy in, numpy out; torch in, torch out.
    """
    if not 0 <= level <= len(ups):
        raise ValueError(f"level {level} is outside 0..{len(ups)} (a {len(ups) + 1}-level U-Net)")
    out = rows
    for fine in range(level):
        out = ups[fine][out] // 8
    return out
