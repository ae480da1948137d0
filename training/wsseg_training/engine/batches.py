"""Which scenes each step sees, crops, augmentations and batching.

Every step's data is a pure function of ``(seed, step)``: the scene order is a
concatenation of per-epoch permutations drawn from ``(seed, epoch)``, and crop and
augmentation of global batch slot ``j`` draw from ``(seed, step, j)``.  So a
resumed run sees exactly the data the uninterrupted run would have, and with
``W`` processes, rank ``r`` takes the slots ``j % W == r`` of the same global batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from wsseg.core.preprocess import NetworkInput, PreprocessConfig, prepare_cloud
from wsseg_training.engine.config import AugmentConfig, DataConfig
from wsseg_training.engine.scenes import TrainScene


@dataclass(frozen=True)
class Batch:
    """The scenes of one process for one step, prepared (numpy).

    net_input: voxel grid (``coords[:, 0]`` = position of the scene in this batch), features, kernel maps.
    names: scene names, by batch position.  slots: global batch slot of every batch position.
    xyz: (P, 3) float32 metres, the augmented points.  point_batch: (P,) int64 batch position of each point.
    point_index: (P,) int64 index of each point in its scene record (crops keep a subset).
    point_targets: name -> (P, ...) concatenated per-point targets.  scene_targets: name -> (B, ...) stacked.
    supervoxel: (P,) int64, ids made unique across the batch, -1 where none; None when no scene has them.
    """

    net_input: NetworkInput
    names: list[str]
    slots: list[int]
    xyz: np.ndarray
    point_batch: np.ndarray
    point_index: np.ndarray
    point_targets: dict[str, np.ndarray]
    scene_targets: dict[str, np.ndarray]
    supervoxel: np.ndarray | None

    def to(self, device: torch.device | str) -> DeviceBatch:
        from wsseg_training.model.inputs import coords_to_torch, to_torch

        features, maps = to_torch(self.net_input, device)

        def tensor(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(array)).to(device)

        return DeviceBatch(
            features=features, maps=maps, coords=coords_to_torch(self.net_input, device),
            inverse=tensor(self.net_input.grid.inverse), point_batch=tensor(self.point_batch),
            point_targets={k: tensor(v) for k, v in self.point_targets.items()},
            scene_targets={k: tensor(v) for k, v in self.scene_targets.items()},
            supervoxel=None if self.supervoxel is None else tensor(self.supervoxel),
            host=self,
        )


@dataclass(frozen=True)
class DeviceBatch:
    """A :class:`Batch` as tensors on the training device.

    features: (M_0, C_in) float32.  maps: kernel maps (``map_input_names`` order), int64.
    coords: (M_0, 4) int32 ``[batch, x, y, z]`` (spconv backend).  inverse: (P,) int64 point -> voxel row.
    point_batch, point_targets, scene_targets, supervoxel: as in :class:`Batch`.  host: the numpy batch.
    """

    features: torch.Tensor
    maps: list[torch.Tensor]
    coords: torch.Tensor
    inverse: torch.Tensor
    point_batch: torch.Tensor
    point_targets: dict[str, torch.Tensor]
    scene_targets: dict[str, torch.Tensor]
    supervoxel: torch.Tensor | None
    host: Batch


def steps_per_epoch(num_scenes: int, batch_scenes: int) -> int:
    return max(1, -(-num_scenes // batch_scenes))


def scenes_of_step(seed: int, step: int, num_scenes: int, batch_scenes: int) -> list[int]:
    """Scene indices of the global batch of ``step`` (0-based), one per slot."""
    out = []
    for slot in range(batch_scenes):
        k = step * batch_scenes + slot
        epoch, position = divmod(k, num_scenes)
        order = np.random.default_rng([seed, epoch]).permutation(num_scenes)
        out.append(int(order[position]))
    return out


def crop_indices(xyz: np.ndarray, max_points: int, rng: np.random.Generator) -> np.ndarray:
    """(K,) sorted indices of the ``max_points`` points nearest in x, y to a random point (all if fewer)."""
    n = xyz.shape[0]
    if max_points <= 0 or n <= max_points:
        return np.arange(n, dtype=np.int64)
    centre = xyz[int(rng.integers(n)), :2]
    d2 = ((xyz[:, :2] - centre) ** 2).sum(axis=1)
    return np.sort(np.argpartition(d2, max_points - 1)[:max_points]).astype(np.int64)


def augment(xyz: np.ndarray, rgb: np.ndarray | None, config: AugmentConfig,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """Rotate about z, flip, scale (about the x-y centre at z = 0), jitter; jitter and shift colours.

    xyz: (N, 3) float32 metres.  rgb: (N, 3) uint8 or None.  Returns new arrays of the same shapes and dtypes.
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


def collate(scenes: Sequence[TrainScene], picks: Sequence[np.ndarray], xyzs: Sequence[np.ndarray],
            rgbs: Sequence[np.ndarray | None], preprocess: PreprocessConfig, slots: Sequence[int]) -> Batch:
    """One :class:`Batch` from cropped (``picks``: point indices per scene) and augmented scenes."""
    names = preprocess.features.ordered_names
    point_batch = np.concatenate([np.full(len(p), b, dtype=np.int64) for b, p in enumerate(picks)])
    xyz = np.concatenate(xyzs).astype(np.float32)
    rgb = intensity = None
    if "rgb" in names:
        missing = [s.name for s, c in zip(scenes, rgbs, strict=True) if c is None]
        if missing:
            raise ValueError(f"the model needs input feature 'rgb' but scene(s) {missing} have no field 'rgb'")
        rgb = np.concatenate([c for c in rgbs if c is not None])
    if "intensity" in names:
        missing = [s.name for s in scenes if s.intensity is None]
        if missing:
            raise ValueError(f"the model needs input feature 'intensity' but scene(s) {missing} have none")
        intensity = np.concatenate([s.intensity[p] for s, p in zip(scenes, picks, strict=True)])  # type: ignore[index]
    net_input = prepare_cloud(preprocess, xyz, rgb=rgb, intensity=intensity, batch=point_batch)
    keys = sorted(scenes[0].point_targets)
    for scene in scenes:
        if sorted(scene.point_targets) != keys:
            raise ValueError(f"training scene {scene.name!r} has targets {sorted(scene.point_targets)}, "
                             f"expected {keys}")
    point_targets = {k: np.concatenate([s.point_targets[k][p] for s, p in zip(scenes, picks, strict=True)])
                     for k in keys}
    scene_targets = {k: np.stack([s.scene_targets[k] for s in scenes]) for k in sorted(scenes[0].scene_targets)}
    supervoxel = None
    if any(s.supervoxel is not None for s in scenes):
        parts, offset = [], 0
        for scene, pick in zip(scenes, picks, strict=True):
            ids = np.full(len(pick), -1, np.int64) if scene.supervoxel is None else scene.supervoxel[pick]
            parts.append(np.where(ids >= 0, ids + offset, -1))
            offset += int(ids.max()) + 1 if ids.size and ids.max() >= 0 else 0
        supervoxel = np.concatenate(parts)
    return Batch(net_input=net_input, names=[s.name for s in scenes], slots=list(slots), xyz=xyz,
                 point_batch=point_batch, point_index=np.concatenate(picks), point_targets=point_targets,
                 scene_targets=scene_targets, supervoxel=supervoxel)


class StepBatches(torch.utils.data.Dataset):
    """Map-style dataset over step numbers: ``batches[step]`` is this process's :class:`Batch` of that step.

    Usable directly (``num_workers = 0``) or behind a ``DataLoader`` with worker processes.
    """

    def __init__(self, scenes: Sequence[TrainScene], preprocess: PreprocessConfig, data: DataConfig, seed: int,
                 total_steps: int, rank: int = 0, world_size: int = 1, augment_data: bool = True) -> None:
        if not scenes:
            raise ValueError("no training scene (check the split and the weak-label file)")
        if data.batch_scenes % world_size:
            raise ValueError(f"data.batch_scenes={data.batch_scenes} must be a multiple of the number of "
                             f"processes ({world_size})")
        self.scenes = list(scenes)
        self.preprocess = preprocess
        self.data = data
        self.seed = seed
        self.total_steps = total_steps
        self.rank = rank
        self.world_size = world_size
        self.augment_data = augment_data

    def __len__(self) -> int:
        return self.total_steps

    def __getitem__(self, step: int) -> Batch:
        indices = scenes_of_step(self.seed, step, len(self.scenes), self.data.batch_scenes)
        slots = [j for j in range(len(indices)) if j % self.world_size == self.rank]
        chosen, picks, xyzs, rgbs = [], [], [], []
        for slot in slots:
            scene = self.scenes[indices[slot]]
            rng = np.random.default_rng([self.seed, step, slot])
            pick = crop_indices(scene.xyz, self.data.crop_max_points, rng)
            rgb = None if scene.rgb is None else scene.rgb[pick]
            xyz = scene.xyz[pick]
            if self.augment_data:
                xyz, rgb = augment(xyz, rgb, self.data.augment, rng)
            chosen.append(scene)
            picks.append(pick)
            xyzs.append(xyz)
            rgbs.append(rgb)
        return collate(chosen, picks, xyzs, rgbs, self.preprocess, slots)


def identity(item: Batch) -> Batch:
    """DataLoader ``collate_fn``: batches are already collated (module level so workers can pickle it)."""
    return item
