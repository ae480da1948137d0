"""Primitive meshes and the labelled scene mesh that the simulated sensors ray cast.

Every primitive is an Open3D ``TriangleMesh`` (boxes, cylinders, spheres, noisy blobs,
height fields).  A :class:`MeshBuilder` collects them with a class id, an instance id
and surface properties per triangle; :meth:`MeshBuilder.build` returns one
:class:`SceneMesh` whose triangle index (``primitive_ids`` of a ray hit) gives the
labels and the appearance of every hit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d


@dataclass(frozen=True)
class SceneMesh:
    """All surfaces of a synthetic scene.

    vertices: (V, 3) float32, metres.  triangles: (T, 3) uint32.
    semantic: (T,) int16 class id.  instance: (T,) int32 object id.
    albedo: (T, 3) float32 in [0, 1], base colour of the surface.
    reflectivity: (T,) float32 in [0, 1], LiDAR reflectivity of the surface.
    texture: (T, 4) float32, a stripe texture ``amplitude * sin(wave . p)``: columns 0..2 wave vector
        (rad/m), column 3 amplitude (relative change of brightness).
    """

    vertices: np.ndarray
    triangles: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    albedo: np.ndarray
    reflectivity: np.ndarray
    texture: np.ndarray

    @property
    def num_triangles(self) -> int:
        return int(self.triangles.shape[0])

    def raycaster(self) -> o3d.t.geometry.RaycastingScene:
        """An Open3D ray casting scene holding this mesh as geometry 0."""
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(self.vertices), o3d.core.Tensor(self.triangles))
        return scene


class MeshBuilder:
    """Collects labelled primitives; instance ids are handed out by :meth:`new_instance`."""

    def __init__(self) -> None:
        self._vertices: list[np.ndarray] = []
        self._triangles: list[np.ndarray] = []
        self._per_triangle: list[tuple[int, int, np.ndarray, float, np.ndarray]] = []
        self._num_vertices = 0
        self._next_instance = 0

    def new_instance(self) -> int:
        """A fresh object id (0, 1, 2, ... in call order)."""
        self._next_instance += 1
        return self._next_instance - 1

    def add(self, mesh: o3d.geometry.TriangleMesh, semantic: int, instance: int, albedo: np.ndarray,
            reflectivity: float = 0.5, texture: np.ndarray | None = None) -> None:
        """Add ``mesh`` with one class, object, colour (3 floats in [0, 1]) and reflectivity."""
        vertices = np.asarray(mesh.vertices, dtype=np.float64)
        triangles = np.asarray(mesh.triangles, dtype=np.int64)
        if triangles.size == 0:
            return
        self._vertices.append(vertices)
        self._triangles.append(triangles + self._num_vertices)
        self._num_vertices += vertices.shape[0]
        tex = np.zeros(4) if texture is None else np.asarray(texture, dtype=np.float64)
        self._per_triangle.append((semantic, instance, np.clip(albedo, 0, 1), float(reflectivity), tex))

    def build(self) -> SceneMesh:
        if not self._triangles:
            raise ValueError("MeshBuilder.build: no primitives were added")
        counts = [t.shape[0] for t in self._triangles]

        def per_triangle(index: int, dtype: type) -> np.ndarray:
            return np.concatenate([np.repeat(np.asarray([p[index]], dtype=dtype), n, axis=0)
                                   for p, n in zip(self._per_triangle, counts, strict=True)])

        return SceneMesh(
            vertices=np.concatenate(self._vertices).astype(np.float32),
            triangles=np.concatenate(self._triangles).astype(np.uint32),
            semantic=per_triangle(0, np.int16),
            instance=per_triangle(1, np.int32),
            albedo=per_triangle(2, np.float32).reshape(-1, 3),
            reflectivity=per_triangle(3, np.float32),
            texture=per_triangle(4, np.float32).reshape(-1, 4),
        )


def _rotation_z(yaw_rad: float) -> np.ndarray:
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def place(mesh: o3d.geometry.TriangleMesh, centre: np.ndarray | tuple[float, ...], yaw_rad: float = 0.0,
          pivot: np.ndarray | tuple[float, ...] | None = None) -> o3d.geometry.TriangleMesh:
    """Rotate ``mesh`` about z by ``yaw_rad`` around ``pivot`` (default: the origin of its local frame),
    then move its local origin to ``centre``.  Modifies and returns ``mesh``."""
    vertices = np.asarray(mesh.vertices)
    local = vertices - (np.zeros(3) if pivot is None else np.asarray(pivot, dtype=np.float64))
    mesh.vertices = o3d.utility.Vector3dVector(local @ _rotation_z(yaw_rad).T + np.asarray(centre, dtype=np.float64))
    return mesh


def box(size: tuple[float, float, float] | np.ndarray, centre: tuple[float, float, float] | np.ndarray,
        yaw_rad: float = 0.0) -> o3d.geometry.TriangleMesh:
    """Axis-aligned box of ``size`` (x, y, z extents, metres) centred on ``centre``, turned by ``yaw_rad``."""
    sx, sy, sz = (max(float(s), 1e-3) for s in size)
    mesh = o3d.geometry.TriangleMesh.create_box(sx, sy, sz)
    mesh.translate((-sx / 2, -sy / 2, -sz / 2))
    return place(mesh, centre, yaw_rad)


def box_between(low: tuple[float, float, float] | np.ndarray,
                high: tuple[float, float, float] | np.ndarray) -> o3d.geometry.TriangleMesh:
    """Axis-aligned box spanning ``low`` .. ``high`` (metres)."""
    low_a, high_a = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    return box(high_a - low_a, (low_a + high_a) / 2)


def cylinder(radius_m: float, height_m: float, base: tuple[float, float, float] | np.ndarray,
             resolution: int = 12) -> o3d.geometry.TriangleMesh:
    """Upright cylinder standing on ``base`` (centre of its bottom disc)."""
    mesh = o3d.geometry.TriangleMesh.create_cylinder(radius=radius_m, height=height_m, resolution=resolution)
    base_xyz = np.asarray(base, dtype=np.float64)
    return place(mesh, base_xyz + np.array([0.0, 0.0, height_m / 2]))


def horizontal_cylinder(radius_m: float, length_m: float, centre: tuple[float, float, float] | np.ndarray,
                        yaw_rad: float = 0.0, resolution: int = 12) -> o3d.geometry.TriangleMesh:
    """Cylinder lying along the local x axis (turned by ``yaw_rad``), centred on ``centre``."""
    mesh = o3d.geometry.TriangleMesh.create_cylinder(radius=radius_m, height=length_m, resolution=resolution)
    vertices = np.asarray(mesh.vertices)[:, [2, 1, 0]]  # z axis -> x axis (a mirror; fix the winding below)
    mesh.vertices = o3d.utility.Vector3dVector(vertices)
    mesh.triangles = o3d.utility.Vector3iVector(np.asarray(mesh.triangles)[:, [0, 2, 1]])
    return place(mesh, centre, yaw_rad)


def blob(radii_m: tuple[float, float, float] | np.ndarray, centre: tuple[float, float, float] | np.ndarray,
         rng: np.random.Generator, roughness: float = 0.15, resolution: int = 10) -> o3d.geometry.TriangleMesh:
    """Ellipsoid with radially jittered vertices (tree crowns, bushes, bags, plants).

    roughness: relative radial jitter (0 = smooth ellipsoid).
    """
    mesh = o3d.geometry.TriangleMesh.create_sphere(radius=1.0, resolution=resolution)
    unit = np.asarray(mesh.vertices)
    # Smooth bumps: a few random low-frequency waves instead of per-vertex noise.
    bumps = np.zeros(unit.shape[0])
    for _ in range(4):
        wave = rng.normal(size=3) * 2.5
        bumps += np.sin(unit @ wave + rng.uniform(0, 2 * np.pi))
    scale = 1.0 + roughness * (bumps / 2.0 + rng.normal(scale=0.3, size=unit.shape[0]))
    mesh.vertices = o3d.utility.Vector3dVector(unit * scale[:, None] * np.asarray(radii_m, dtype=np.float64))
    return place(mesh, centre)


def height_field(x_range_m: tuple[float, float], y_range_m: tuple[float, float], step_m: float,
                 height: np.ndarray | float) -> o3d.geometry.TriangleMesh:
    """Regular grid surface ``z = height[i, j]`` over the rectangle (terrain, lawns).

    height: scalar or (nx, ny) array of heights (metres) at the grid nodes, nx = number of x nodes.
    """
    nx = max(2, round((x_range_m[1] - x_range_m[0]) / step_m) + 1)
    ny = max(2, round((y_range_m[1] - y_range_m[0]) / step_m) + 1)
    xs = np.linspace(*x_range_m, nx)
    ys = np.linspace(*y_range_m, ny)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    gz = np.broadcast_to(np.asarray(height, dtype=np.float64), (nx, ny)) if np.ndim(height) == 0 else height
    if gz.shape != (nx, ny):
        raise ValueError(f"height_field: height has shape {np.shape(height)}, expected ({nx}, {ny})")
    vertices = np.stack([gx, gy, gz], axis=-1).reshape(-1, 3)
    idx = np.arange(nx * ny).reshape(nx, ny)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    triangles = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    return o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(vertices), o3d.utility.Vector3iVector(triangles))


def height_field_nodes(x_range_m: tuple[float, float], y_range_m: tuple[float, float],
                       step_m: float) -> tuple[int, int]:
    """Number of grid nodes (nx, ny) that :func:`height_field` uses for this rectangle."""
    nx = max(2, round((x_range_m[1] - x_range_m[0]) / step_m) + 1)
    ny = max(2, round((y_range_m[1] - y_range_m[0]) / step_m) + 1)
    return nx, ny


def stripe_texture(rng: np.random.Generator, amplitude: float, wavelength_m: tuple[float, float]) -> np.ndarray:
    """A random stripe texture row for :meth:`MeshBuilder.add`: (4,) wave vector (rad/m) + amplitude."""
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    wavelength = rng.uniform(*wavelength_m)
    return np.concatenate([direction * (2 * np.pi / wavelength), [amplitude]])
