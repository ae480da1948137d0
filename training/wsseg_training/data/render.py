"""Headless pictures of point clouds (matplotlib, Agg): one view or several panels side by side.

Points are projected orthographically along a viewing direction given by azimuth and
elevation (degrees; elevation 90 = top-down) and drawn far-to-near so that near points
cover far ones.  Colours are (N, 3) uint8; helpers below make them from classes,
instances, RGB, intensity or weak labels.  Used by ``wsseg data show`` and the
evaluation reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from wsseg.core.atomic import atomic_path
from wsseg.core.classes import IGNORE_INDEX, ClassTable

GREY = (175, 175, 175)


@dataclass(frozen=True)
class View:
    """Viewing direction: the camera sits at ``azimuth_deg`` around z (0 = on +x) and ``elevation_deg`` above
    the horizon, looking at the cloud."""

    azimuth_deg: float = -60.0
    elevation_deg: float = 40.0


TOP_VIEW = View(azimuth_deg=-90.0, elevation_deg=90.0)


@dataclass(frozen=True)
class Panel:
    """One picture of a cloud.

    xyz: (N, 3) float, metres.  colours: (N, 3) uint8.  highlight: optional (N,) bool, points drawn larger and
    on top (e.g. labelled points).  legend: optional [(label, (r, g, b))].
    """

    xyz: np.ndarray
    colours: np.ndarray
    title: str = ""
    legend: Sequence[tuple[str, tuple[int, int, int]]] | None = None
    highlight: np.ndarray | None = None


def project(xyz: np.ndarray, view: View) -> tuple[np.ndarray, np.ndarray]:
    """Orthographic projection: (N, 3) -> image-plane coordinates (N, 2) metres and nearness (N,) (larger = nearer)."""
    a, e = np.radians(view.azimuth_deg), np.radians(view.elevation_deg)
    towards_camera = np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])
    right = np.array([-np.sin(a), np.cos(a), 0.0])
    up = np.cross(towards_camera, right)
    xyz = np.asarray(xyz, dtype=np.float64)
    return np.stack([xyz @ right, xyz @ up], axis=1), xyz @ towards_camera


# ------------------------------------------------------------------------------------------------ colours


def class_colours(semantic: np.ndarray, classes: ClassTable) -> np.ndarray:
    """(N,) class ids -> (N, 3) uint8 palette colours (ignored / unknown ids grey)."""
    return classes.colourize(semantic, unknown_rgb=GREY)


def class_legend(semantic: np.ndarray, classes: ClassTable) -> list[tuple[str, tuple[int, int, int]]]:
    """Legend entries of the classes present in ``semantic``, in class order."""
    present = np.unique(np.asarray(semantic)[(semantic >= 0) & (semantic < classes.num_classes)])
    return [(classes.names[int(c)], classes.palette[int(c)]) for c in present]


def instance_colours(instance: np.ndarray) -> np.ndarray:
    """(N,) instance ids -> (N, 3) uint8 colours, distinct and stable per id (id < 0 grey)."""
    instance = np.asarray(instance, dtype=np.int64)
    golden = (instance * 0.618033988749895) % 1.0  # spread consecutive ids around the hue circle
    rgb = colormaps["hsv"](golden)[:, :3]
    shade = 0.55 + 0.45 * ((instance * 7919) % 5) / 4.0
    out = np.round(rgb * shade[:, None] * 255).astype(np.uint8)
    out[instance < 0] = GREY
    return out


def scalar_colours(values: np.ndarray, cmap: str = "viridis") -> np.ndarray:
    """(N,) float values (e.g. LiDAR intensity) -> (N, 3) uint8 via a colour map over the 1..99 percentile range."""
    values = np.asarray(values, dtype=np.float64)
    low, high = np.percentile(values, [1, 99]) if values.size else (0.0, 1.0)
    scaled = np.clip((values - low) / max(high - low, 1e-9), 0, 1)
    return np.round(colormaps[cmap](scaled)[:, :3] * 255).astype(np.uint8)


def weak_panel(xyz: np.ndarray, point_indices: np.ndarray, classes_of_points: np.ndarray, classes: ClassTable,
               title: str = "") -> Panel:
    """A panel showing weak labels: every point grey, the labelled points in their class colour, enlarged.

    point_indices: (K,) int indices into ``xyz``.  classes_of_points: (K,) int class of each labelled point.
    """
    point_indices = np.asarray(point_indices, dtype=np.int64)
    classes_of_points = np.asarray(classes_of_points, dtype=np.int64)
    n = xyz.shape[0]
    if point_indices.shape != classes_of_points.shape:
        raise ValueError(f"weak labels: {point_indices.size} point indices but {classes_of_points.size} classes")
    if point_indices.size and (point_indices.min() < 0 or point_indices.max() >= n):
        bad = int(point_indices[(point_indices < 0) | (point_indices >= n)][0])
        raise ValueError(f"weak labels: point index {bad} outside the cloud (N={n})")
    colours = np.tile(np.asarray(GREY, dtype=np.uint8), (n, 1))
    colours[point_indices] = class_colours(classes_of_points, classes)
    highlight = np.zeros(n, dtype=bool)
    highlight[point_indices] = True
    percent = 100.0 * point_indices.size / max(n, 1)
    full_title = f"{title}  ({point_indices.size} labelled points, {percent:.3g}%)".strip()
    return Panel(xyz, colours, full_title, class_legend(classes_of_points, classes), highlight)


# ------------------------------------------------------------------------------------------------ drawing


def _draw(ax: object, panel: Panel, view: View, max_points: int, axes_px: float, rng: np.random.Generator) -> None:
    xyz, colours = np.asarray(panel.xyz), np.asarray(panel.colours)
    if xyz.shape[0] != colours.shape[0]:
        raise ValueError(f"panel {panel.title!r}: {xyz.shape[0]} points but {colours.shape[0]} colours")
    highlight = np.zeros(xyz.shape[0], dtype=bool) if panel.highlight is None else np.asarray(panel.highlight, bool)
    base = np.flatnonzero(~highlight)
    if base.size > max_points:  # subsample the background; never drop highlighted points
        base = np.sort(rng.choice(base, size=max_points, replace=False))
    uv, near = project(xyz, view)
    ax.set_title(panel.title, fontsize=10)  # type: ignore[attr-defined]
    if xyz.shape[0]:
        low, high = uv.min(axis=0), uv.max(axis=0)
        pad = 0.03 * float((high - low).max()) + 1e-3
        ax.set_xlim(low[0] - pad, high[0] + pad)  # type: ignore[attr-defined]
        ax.set_ylim(low[1] - pad, high[1] + pad)  # type: ignore[attr-defined]
    # Marker size: about the spacing of the drawn points on screen, in points^2 (72 points per inch at 100 dpi).
    dot_px = float(np.clip(1.6 * axes_px / np.sqrt(max(base.size, 1)), 0.6, 6.0))
    for index, size in ((base, dot_px), (np.flatnonzero(highlight), max(4.0 * dot_px, 5.0))):
        if index.size == 0:
            continue
        order = index[np.argsort(near[index], kind="stable")]
        ax.scatter(uv[order, 0], uv[order, 1], c=colours[order] / 255.0, s=(size * 0.72) ** 2,  # type: ignore[attr-defined]
                   marker="s" if index is base else "o", linewidths=0,
                   edgecolors="black" if index is not base else "none", rasterized=True)
    ax.set_aspect("equal")  # type: ignore[attr-defined]
    ax.set_axis_off()  # type: ignore[attr-defined]
    if panel.legend:
        handles = [Patch(facecolor=np.asarray(rgb) / 255.0, label=name) for name, rgb in panel.legend]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8,  # type: ignore[attr-defined]
                  frameon=False)


def render_panels(panels: Sequence[Panel], path: str | Path, size_px: tuple[int, int] = (1200, 800),
                  view: View | None = None, max_points: int = 250_000, dpi: int = 100, title: str = "") -> Path:
    """Draw ``panels`` side by side into a PNG of exactly ``size_px`` (width, height) pixels."""
    if not panels:
        raise ValueError("render_panels: no panels to draw")
    width, height = size_px
    if width < 64 or height < 64:
        raise ValueError(f"render_panels: picture size {width}x{height} px is too small (>= 64x64)")
    view = view or View()
    legend_share = 0.18 if any(p.legend for p in panels) else 0.0
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    if title:
        fig.suptitle(title, fontsize=11)
    top = 0.9 if title else 0.95
    slot = 1.0 / len(panels)
    rng = np.random.default_rng(0)
    for i, panel in enumerate(panels):
        ax = fig.add_axes((i * slot + 0.01, 0.02, slot * (1.0 - legend_share) - 0.02, top - 0.04))
        axes_px = min(width * slot * (1.0 - legend_share), height * (top - 0.04))
        _draw(ax, panel, view, max_points, axes_px, rng)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return path


def render_scene(xyz: np.ndarray, colours: np.ndarray, path: str | Path, title: str = "",
                 legend: Sequence[tuple[str, tuple[int, int, int]]] | None = None,
                 size_px: tuple[int, int] = (1200, 800), view: View | None = None,
                 highlight: np.ndarray | None = None) -> Path:
    """One cloud into a PNG of ``size_px`` pixels; see :class:`Panel` for the arguments."""
    return render_panels([Panel(xyz, colours, title, legend, highlight)], path, size_px=size_px, view=view)


def render_weak(xyz: np.ndarray, point_indices: np.ndarray, classes_of_points: np.ndarray, classes: ClassTable,
                path: str | Path, title: str = "", size_px: tuple[int, int] = (1200, 800),
                view: View | None = None) -> Path:
    """Weak labels over a grey cloud (see :func:`weak_panel`) into a PNG."""
    panel = weak_panel(xyz, point_indices, classes_of_points, classes, title)
    return render_panels([panel], path, size_px=size_px, view=view)


def visible_mask(semantic: np.ndarray | None, classes: ClassTable | None, hide: Sequence[str]) -> np.ndarray | None:
    """(N,) bool of points not in the ``hide`` classes (None when nothing is hidden); unknown names raise."""
    if not hide or semantic is None or classes is None:
        return None
    unknown = [name for name in hide if name not in classes.names]
    if unknown:
        raise ValueError(f"--hide: unknown class(es) {unknown}; classes: {list(classes.names)}")
    ids = [classes.names.index(name) for name in hide]
    return ~np.isin(semantic, ids) | (semantic == IGNORE_INDEX)
