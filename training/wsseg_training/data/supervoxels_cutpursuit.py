"""Cut-pursuit super-voxels: the l0 partition over geometric features that 1T1C's S3DIS partition uses.

The over-segmentation solves, on the k-NN graph of the (pre-gridded) points,

    min_x  sum_v m_v ||x_v - y_v||^2  +  regularization * sum_{uv in E, x_u != x_v} w_uv

where ``y_v`` stacks the point's local geometry -- linearity, planarity, scattering and verticality of
its ``normals_k`` neighbours (``pgeof.compute_features``) -- with its colour (``colour_weight``) and
its position in units of ``seed_spacing_m`` (``spatial_weight``, which keeps components compact), and
``w_uv = 1 / (1 + d_uv / mean d)`` favours cuts along long edges (the data term weighs every
pre-grid vertex once).  The solution is piecewise constant;
its k-NN-connected pieces are the super-voxels (``cut_pursuit_py.perform_cut_pursuit``, the greedy l0
cut pursuit of Landrieu & Obozinski); pieces under ``min_points`` points are merged afterwards as for
the other methods.  Both packages come from PyPI (``pgeof`` and ``cut-pursuit-py``, MIT; ``pycut-pursuit``
0.1.4 was not usable: its wheel is built against numpy 1) and are imported only when this method is
chosen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from wsseg_training.data.supervoxels import SupervoxelParams

#: pgeof.compute_features columns kept: linearity, planarity, scattering, verticality (each in [0, 1])
GEOF_COLUMNS = slice(0, 4)


def _import() -> tuple[object, object]:
    try:
        import cut_pursuit_py
        import pgeof
    except ImportError as exc:
        raise ImportError(f"super-voxel method 'cutpursuit' needs the PyPI packages pgeof and cut-pursuit-py "
                          f"(pip install pgeof cut-pursuit-py): {exc}") from None
    return pgeof, cut_pursuit_py.perform_cut_pursuit


def geometric_features(pos: np.ndarray, k: int) -> np.ndarray:
    """(V, 4) float32 linearity, planarity, scattering, verticality of each point's k nearest neighbours."""
    pgeof, _ = _import()
    points = np.ascontiguousarray(pos, dtype=np.float32)
    k = max(3, min(k, points.shape[0]))
    neighbours, _ = pgeof.knn_search(points, points, k)  # type: ignore[attr-defined]
    pointers = np.arange(0, points.shape[0] * k + 1, k, dtype=np.uint32)
    features = pgeof.compute_features(points, neighbours.reshape(-1).astype(np.uint32), pointers,  # type: ignore[attr-defined]
                                      k_min=3, verbose=False)
    return np.nan_to_num(features[:, GEOF_COLUMNS]).astype(np.float32)


def cut_pursuit_labels(pos: np.ndarray, rgb01: np.ndarray | None, edges: np.ndarray, lengths: np.ndarray,
                       params: SupervoxelParams) -> np.ndarray:
    """(V,) int64 value cluster of every vertex (not yet split into connected pieces; see the module docstring).

    pos: (V, 3) float metres; rgb01: (V, 3) in [0, 1] or None; edges: (E, 2) undirected k-NN edges with
    ``lengths`` (E,) metres.
    """
    _, perform_cut_pursuit = _import()
    v = pos.shape[0]
    if v < 2 or edges.shape[0] == 0:
        return np.arange(v, dtype=np.int64)
    parts = [geometric_features(pos, params.normals_k)]
    if rgb01 is not None and params.colour_weight > 0:
        parts.append(params.colour_weight * rgb01)
    if params.spatial_weight > 0:
        parts.append(params.spatial_weight * (pos - pos.mean(axis=0)) / params.seed_spacing_m)
    observations = np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)  # (V, D)
    # cut-pursuit-py 1.0.12 ignores its reg_strength argument (measured: the same partition from 1e-4 to 10),
    # so the penalty rides on the edge weights
    weight = params.regularization / (1.0 + lengths / max(float(lengths.mean()), 1e-12))
    components = perform_cut_pursuit(  # type: ignore[operator]
        1.0, int(observations.shape[1]), observations, weight.astype(np.float32),
        np.ascontiguousarray(edges[:, 0], dtype=np.uint32), np.ascontiguousarray(edges[:, 1], dtype=np.uint32),
        False)
    return np.asarray(components, dtype=np.int64).reshape(-1)
