"""Simulated sensors over a :class:`SceneMesh`: a pinhole RGB-D camera and a spinning LiDAR.

Both cast rays with Open3D's ``RaycastingScene`` (so occlusion is exact), look up the
labels and the surface of the hit triangle, and add the sensor's imperfections
(range-dependent noise, dropouts, colour / intensity noise).

Camera conventions: the optical frame has x right, y down, z forward; ``pose`` is the
(4, 4) camera-to-scene transform; pixel ``(u, v)`` (column, row) looks along
``((u - cx) / fx, (v - cy) / fy, 1)``, so back-projecting depth ``z`` gives
``z * ((u - cx) / fx, (v - cy) / fy, 1)`` in the optical frame.

RGB-D frame files (``.npz``, what ``wsseg data synth --keep-frames`` writes and the ROS
replay publishes as depth + colour + camera_info):

* ``depth``: (H, W) uint16, millimetres along the optical axis, 0 = no return
* ``colour``: (H, W, 3) uint8, RGB
* ``semantic``: (H, W) int16 class id of the surface seen, -1 where the ray hit nothing
* ``instance``: (H, W) int32 object id, -1 where the ray hit nothing
* ``intrinsics``: (3, 3) float64 ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``, pixels
* ``pose``: (4, 4) float64 camera (optical frame) -> scene frame, metres
* ``depth_scale``: () float64, metres per depth unit (0.001)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import open3d as o3d

from wsseg_training.data.synth.config import LidarConfig, RGBDCameraConfig
from wsseg_training.data.synth.meshes import SceneMesh

DEPTH_SCALE_M = 0.001
_INVALID_ID = np.uint32(0xFFFFFFFF)


@dataclass(frozen=True)
class Lighting:
    """Appearance of a scene under its light.

    direction: (3,) unit vector towards the main light.  ambient: share of light that ignores the normal.
    exposure: overall brightness factor.  white_balance: (3,) per-channel gain.
    """

    direction: np.ndarray
    ambient: float = 0.55
    exposure: float = 1.0
    white_balance: np.ndarray = field(default_factory=lambda: np.ones(3))
    lamps: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    lamp_radius_m: float = 2.5

    @staticmethod
    def random(rng: np.random.Generator, variation: float, lamps: np.ndarray | None = None) -> Lighting:
        """A random light; ``variation`` in [0, 1] scales how far exposure and white balance stray.
        lamps: optional (L, 3) lamp positions, metres; surfaces far from every lamp are darker."""
        direction = np.array([rng.normal(0, 0.3), rng.normal(0, 0.3), 1.0])
        return Lighting(
            direction=direction / np.linalg.norm(direction),
            ambient=float(rng.uniform(0.45, 0.65)),
            exposure=float(np.exp(rng.normal(0.0, 0.15 * variation))),
            white_balance=np.exp(rng.normal(0.0, 0.06 * variation, size=3)),
            lamps=np.zeros((0, 3)) if lamps is None else np.asarray(lamps, dtype=np.float64).reshape(-1, 3),
            lamp_radius_m=float(rng.uniform(1.5, 3.5)),
        )


def surface_colour(mesh: SceneMesh, triangle: np.ndarray, points: np.ndarray, normals: np.ndarray,
                   lighting: Lighting) -> np.ndarray:
    """Colour of surface points: albedo x stripe texture x Lambert shading x lamp falloff x exposure.

    triangle: (K,) triangle ids.  points, normals: (K, 3).  Returns (K, 3) float64 in [0, 1].
    """
    texture = mesh.texture[triangle].astype(np.float64)
    stripes = 1.0 + texture[:, 3] * np.sin(np.einsum("ij,ij->i", points, texture[:, :3]))
    lambert = np.abs(normals @ lighting.direction)
    shade = lighting.ambient + (1.0 - lighting.ambient) * lambert
    if lighting.lamps.shape[0]:
        d2 = ((points[:, None, :] - lighting.lamps[None, :, :]) ** 2).sum(axis=-1).min(axis=1)
        shade = shade * (0.7 + 0.3 * np.exp(-d2 / (2.0 * lighting.lamp_radius_m**2)))
    colour = mesh.albedo[triangle] * (stripes * shade * lighting.exposure)[:, None] * lighting.white_balance
    return np.clip(colour, 0.0, 1.0)


def _cast(raycaster: o3d.t.geometry.RaycastingScene, rays: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """rays: (K, 6) float32.  Returns t_hit (K,) float64 (inf = miss), triangle ids (K,) int64 (-1 = miss),
    unit normals (K, 3) float64."""
    result = raycaster.cast_rays(o3d.core.Tensor(np.ascontiguousarray(rays, dtype=np.float32)))
    t_hit = result["t_hit"].numpy().astype(np.float64)
    ids = result["primitive_ids"].numpy()
    hit = (result["geometry_ids"].numpy() != _INVALID_ID) & np.isfinite(t_hit)
    triangle = np.where(hit, ids.astype(np.int64), -1)
    t_hit = np.where(hit, t_hit, np.inf)
    return t_hit, triangle, result["primitive_normals"].numpy().astype(np.float64)


# --------------------------------------------------------------------------------------------- RGB-D camera


@dataclass(frozen=True)
class RGBDFrame:
    """One RGB-D image pair with its ground truth (fields as in the module docstring)."""

    depth: np.ndarray
    colour: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    intrinsics: np.ndarray
    pose: np.ndarray

    def valid(self) -> np.ndarray:
        """(H, W) bool, pixels with a depth value."""
        return self.depth > 0


def intrinsics_matrix(camera: RGBDCameraConfig) -> np.ndarray:
    """(3, 3) float64 pinhole matrix of ``camera``."""
    f = camera.width_px / (2.0 * np.tan(np.radians(camera.hfov_deg) / 2.0))
    return np.array([[f, 0.0, (camera.width_px - 1) / 2.0], [0.0, f, (camera.height_px - 1) / 2.0], [0, 0, 1.0]])


def look_at_pose(position: np.ndarray, target: np.ndarray, up: np.ndarray | None = None) -> np.ndarray:
    """(4, 4) camera-to-scene pose of an optical frame at ``position`` looking at ``target`` (scene z up)."""
    up = np.array([0.0, 0.0, 1.0]) if up is None else np.asarray(up, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - np.asarray(position, dtype=np.float64)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-6:
        raise ValueError(f"look_at_pose: viewing direction {forward} is parallel to up {up}")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, down, forward, position
    return pose


def pixel_rays(intrinsics: np.ndarray, width_px: int, height_px: int) -> np.ndarray:
    """(H, W, 3) float64 ray directions in the optical frame with z = 1."""
    u, v = np.meshgrid(np.arange(width_px, dtype=np.float64), np.arange(height_px, dtype=np.float64))
    return np.stack([(u - intrinsics[0, 2]) / intrinsics[0, 0], (v - intrinsics[1, 2]) / intrinsics[1, 1],
                     np.ones_like(u)], axis=-1)


def render_rgbd(mesh: SceneMesh, raycaster: o3d.t.geometry.RaycastingScene, camera: RGBDCameraConfig,
                pose: np.ndarray, lighting: Lighting, rng: np.random.Generator, noise_scale: float = 1.0) -> RGBDFrame:
    """Take one RGB-D frame of ``mesh`` from ``pose`` (camera-to-scene, optical frame)."""
    K = intrinsics_matrix(camera)
    h, w = camera.height_px, camera.width_px
    directions = pixel_rays(K, w, h).reshape(-1, 3) @ pose[:3, :3].T  # z-component 1 in the optical frame
    rays = np.concatenate([np.broadcast_to(pose[:3, 3], directions.shape), directions], axis=1)
    z, triangle, normals = _cast(raycaster, rays)  # t_hit is the optical-axis depth since direction_z = 1
    hit = triangle >= 0
    safe = np.where(hit, triangle, 0)

    points = pose[:3, 3] + directions * np.where(hit, z, 0.0)[:, None]
    colour = np.zeros((h * w, 3))
    colour[hit] = surface_colour(mesh, safe[hit], points[hit], normals[hit], lighting)
    colour = colour * 255.0 + rng.normal(0.0, camera.colour_noise_std * noise_scale, size=colour.shape)

    unit = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    cos_incidence = np.abs(np.einsum("ij,ij->i", unit, normals))
    grazing = cos_incidence < np.cos(np.radians(camera.grazing_angle_deg))
    lost = (rng.random(h * w) < camera.dropout_rate) | (grazing & (rng.random(h * w) < camera.grazing_dropout))
    sigma = camera.depth_noise_k_per_m * noise_scale * np.where(hit, z, 0.0) ** 2
    noisy = np.where(hit, z, 0.0) + rng.normal(size=h * w) * sigma
    valid = hit & ~lost & (z >= camera.min_range_m) & (z <= camera.max_range_m) & (noisy > 0)
    depth = np.where(valid, np.round(noisy / DEPTH_SCALE_M), 0).clip(0, np.iinfo(np.uint16).max)
    return RGBDFrame(
        depth=depth.astype(np.uint16).reshape(h, w),
        colour=np.clip(np.round(colour), 0, 255).astype(np.uint8).reshape(h, w, 3),
        semantic=np.where(hit, mesh.semantic[safe], -1).astype(np.int16).reshape(h, w),
        instance=np.where(hit, mesh.instance[safe], -1).astype(np.int32).reshape(h, w),
        intrinsics=K,
        pose=pose.copy(),
    )


def backproject(depth: np.ndarray, intrinsics: np.ndarray, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depth image -> points in the scene frame.

    depth: (H, W) uint16 millimetres (0 = none).  Returns xyz (K, 3) float64 metres and the flat pixel
    index (K,) int64 of every point (row-major), for the K pixels with depth.
    """
    h, w = depth.shape
    flat = np.flatnonzero(depth.reshape(-1) > 0)
    rays = pixel_rays(intrinsics, w, h).reshape(-1, 3)[flat]
    xyz_cam = rays * (depth.reshape(-1)[flat].astype(np.float64) * DEPTH_SCALE_M)[:, None]
    return xyz_cam @ pose[:3, :3].T + pose[:3, 3], flat


def save_frame(path: str | Path, frame: RGBDFrame) -> Path:
    """Write ``frame`` as ``.npz`` (layout in the module docstring)."""
    path = Path(path)
    np.savez_compressed(path, depth=frame.depth, colour=frame.colour, semantic=frame.semantic,
                        instance=frame.instance, intrinsics=frame.intrinsics, pose=frame.pose,
                        depth_scale=np.float64(DEPTH_SCALE_M))
    return path


def load_frame(path: str | Path) -> RGBDFrame:
    """Read a frame written by :func:`save_frame`; errors name the file and the field."""
    path = Path(path)
    expected = {"depth": (np.uint16, 2), "colour": (np.uint8, 3), "semantic": (np.int16, 2),
                "instance": (np.int32, 2), "intrinsics": (np.float64, 2), "pose": (np.float64, 2)}
    with np.load(path, allow_pickle=False) as data:
        arrays = {}
        for name, (dtype, ndim) in expected.items():
            if name not in data.files:
                raise ValueError(f"{path}: missing field '{name}'")
            array = data[name]
            if array.dtype != dtype or array.ndim != ndim:
                raise ValueError(f"{path}: field '{name}' has dtype {array.dtype} and {array.ndim} dims, "
                                 f"expected {np.dtype(dtype)} with {ndim}")
            arrays[name] = array
    h, w = arrays["depth"].shape
    for name in ("colour", "semantic", "instance"):
        if arrays[name].shape[:2] != (h, w):
            raise ValueError(f"{path}: field '{name}' is {arrays[name].shape[:2]}, depth is {(h, w)}")
    return RGBDFrame(**arrays)


# --------------------------------------------------------------------------------------------- spinning LiDAR


@dataclass(frozen=True)
class LidarScan:
    """One revolution of a spinning LiDAR, in the sensor frame (x forward, y left, z up, metres).

    xyz: (N, 3) float32.  intensity: (N,) float32 in [0, 1].  semantic: (N,) int16.  instance: (N,) int32.
    ring: (N,) int16 beam index (0 = lowest beam).
    """

    xyz: np.ndarray
    intensity: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    ring: np.ndarray


def beam_elevations_deg(lidar: LidarConfig) -> np.ndarray:
    """(B,) float64 elevation of every beam, lowest first, degrees."""
    if lidar.beams == 1:
        return np.array([(lidar.fov_up_deg + lidar.fov_down_deg) / 2.0])
    return np.linspace(lidar.fov_down_deg, lidar.fov_up_deg, lidar.beams)


def scan_lidar(mesh: SceneMesh, raycaster: o3d.t.geometry.RaycastingScene, lidar: LidarConfig,
               sensor_position: np.ndarray, rng: np.random.Generator, noise_scale: float = 1.0) -> LidarScan:
    """One revolution from ``sensor_position`` (scene frame, metres); points are returned in the sensor frame."""
    elevation = np.radians(beam_elevations_deg(lidar))
    azimuth = np.radians(np.arange(lidar.columns) * (360.0 / lidar.columns))
    el, az = np.meshgrid(elevation, azimuth, indexing="ij")  # (B, C)
    directions = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1).reshape(-1, 3)
    ring = np.repeat(np.arange(lidar.beams, dtype=np.int16), lidar.columns)
    origin = np.broadcast_to(np.asarray(sensor_position, dtype=np.float64), directions.shape)
    distance, triangle, normals = _cast(raycaster, np.concatenate([origin, directions], axis=1))
    hit = (triangle >= 0) & (distance >= lidar.min_range_m) & (distance <= lidar.max_range_m)
    distance, triangle, normals, directions, ring = (a[hit] for a in (distance, triangle, normals, directions, ring))

    reflectivity = mesh.reflectivity[triangle].astype(np.float64)
    cos_incidence = np.abs(np.einsum("ij,ij->i", directions, normals))
    p_lost = (lidar.dropout_rate + 0.3 * (distance / lidar.max_range_m) ** 2
              + 0.15 * np.clip(0.15 - reflectivity, 0, None) / 0.15 + 0.2 * (cos_incidence < 0.1))
    kept = rng.random(distance.shape[0]) >= p_lost
    noisy = distance + rng.normal(0.0, lidar.range_noise_std_m * noise_scale, size=distance.shape[0])
    intensity = reflectivity * (0.35 + 0.65 * cos_incidence) * np.exp(-distance / 150.0)
    intensity = intensity + rng.normal(0.0, lidar.intensity_noise_std * noise_scale, size=intensity.shape[0])
    kept &= noisy > 0
    return LidarScan(
        xyz=(directions * noisy[:, None])[kept].astype(np.float32),
        intensity=np.clip(intensity[kept], 0.0, 1.0).astype(np.float32),
        semantic=mesh.semantic[triangle[kept]].astype(np.int16),
        instance=mesh.instance[triangle[kept]].astype(np.int32),
        ring=ring[kept],
    )
