"""Batching: a step's samples (:mod:`wsseg_training.engine.sampling`) prepared into one network input.

Every step's data is a pure function of ``(seed, step)``: which unit (scene or sub-cloud) each group of
slots sees, its region and its augmentation are drawn as :mod:`~wsseg_training.engine.sampling` describes.
So a resumed run sees exactly the data the uninterrupted run would have, and with ``W`` processes, rank ``r``
takes the groups ``g % W == r`` of the same global batch (with the default sampling: the slots ``j % W == r``).

Batch layout: batch position ``b`` (0..B-1) is this process's b-th sample, in slot order; its points are the
rows ``point_offsets[b]:point_offsets[b + 1]`` of every per-point array, its voxels the rows whose
``coords[:, 0] == b`` at every level (the batch layout of :mod:`wsseg.core.voxelize`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from wsseg.core.preprocess import NetworkInput, PreprocessConfig, prepare_cloud
from wsseg_training.engine.config import DataConfig
from wsseg_training.engine.sampling import CROP, Sample, SampleDrawer, Sampling, units_of_step
from wsseg_training.engine.scenes import TrainScene
from wsseg_training.model.levels import voxel_rows_at_level


@dataclass(frozen=True)
class Batch:
    """The samples of one process for one step, prepared (numpy); see the module docstring for the layout.

    net_input: voxel grid (``coords[:, 0]`` = batch position), features, kernel maps.
    names: scene names, by batch position.  slots: global batch slot of every batch position.
    xyz: (P, 3) float32 metres, the augmented points.  point_batch: (P,) int64 batch position of each point.
    point_index: (P,) int64 index of each point in its scene record (crops keep a subset).
    point_targets: name -> (P, ...) concatenated per-point targets.  scene_targets: name -> (B, ...) stacked.
    supervoxel: (P,) int64, ids made unique across the batch, -1 where none; None when no scene has them.
    sampling: how the samples were drawn.  tags: (B, C) float32 multi-hot classes of each sample (the
    sampling's rule), or None when no class count was given.
    group: (B,) int64 global group index (a pair, a set of views; = the slot for single samples).
    member: (B,) int64 position inside the group: view index for ``views``, 0 / 1 within a pair.
    partner: (B,) int64 batch position of the other sample of a pair, -1 unless ``pairs``.
    subcloud: (B,) int64 sub-cloud index in its scene, -1 unless the region is ``subcloud``.
    point_offsets: (B + 1,) int64, the points of position b are rows ``point_offsets[b]:point_offsets[b + 1]``;
    the views of a group hold the same scene points in the same order (``point_index`` equal).
    extra: the stage's extra batch (``Stage.extra``), a :class:`Batch` of its own, or None.
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
    sampling: Sampling
    tags: np.ndarray | None
    group: np.ndarray
    member: np.ndarray
    partner: np.ndarray
    subcloud: np.ndarray
    point_offsets: np.ndarray
    extra: Batch | None = None

    @property
    def size(self) -> int:
        """B, the number of samples (batch positions)."""
        return len(self.names)

    def points_of(self, position: int) -> slice:
        """The rows of batch position ``position`` in every per-point array."""
        return slice(int(self.point_offsets[position]), int(self.point_offsets[position + 1]))

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
            tags=None if self.tags is None else tensor(self.tags),
            host=self, extra=None if self.extra is None else self.extra.to(device),
        )


@dataclass(frozen=True)
class DeviceBatch:
    """A :class:`Batch` as tensors on the training device.

    features: (M_0, C_in) float32.  maps: kernel maps (``map_input_names`` order), int64.
    coords: (M_0, 4) int32 ``[batch, x, y, z]`` (spconv backend).  inverse: (P,) int64 point -> voxel row.
    point_batch, point_targets, scene_targets, supervoxel, tags: as in :class:`Batch`.  host: the numpy batch
    (``host.group``, ``host.member``, ``host.partner``, ``host.points_of(b)``, ...).  extra: the extra batch on
    the device, or None.
    """

    features: torch.Tensor
    maps: list[torch.Tensor]
    coords: torch.Tensor
    inverse: torch.Tensor
    point_batch: torch.Tensor
    point_targets: dict[str, torch.Tensor]
    scene_targets: dict[str, torch.Tensor]
    supervoxel: torch.Tensor | None
    tags: torch.Tensor | None
    host: Batch
    extra: DeviceBatch | None = None

    def level_rows(self, level: int) -> torch.Tensor:
        """(P,) int64: the voxel row of every point at U-Net level ``level`` (0 = ``inverse``).

        Rows follow the level's reference order (``net_input.maps.coords[level]``), the order of
        ``UNetOutput.encoder[level]`` / ``decoder[level]`` on both backends.
        """
        num_levels = self.host.net_input.maps.num_levels
        return voxel_rows_at_level(self.inverse, self.maps[2 * num_levels - 1:], level)

    def level_batch(self, level: int) -> torch.Tensor:
        """(M_level,) int64 batch position of every voxel row of ``level``."""
        coords = self.host.net_input.maps.coords[level]
        return torch.from_numpy(coords[:, 0].astype(np.int64)).to(self.inverse.device)


def extra_seed(seed: int) -> int:
    """The seed of a stage's extra batch (``Stage.extra``): derived from the run's, independent of it."""
    return int(np.random.SeedSequence([int(seed), 1]).generate_state(1)[0])


def scenes_of_step(seed: int, step: int, num_scenes: int, batch_scenes: int) -> list[int]:
    """Scene indices of the global batch of ``step`` (0-based), one per slot, for the default sampling."""
    return units_of_step(seed, step, num_scenes, batch_scenes)


def collate(scenes: Sequence[TrainScene], samples: Sequence[Sample], preprocess: PreprocessConfig,
            sampling: Sampling = CROP) -> Batch:
    """One :class:`Batch` from the drawn samples; ``scenes`` is the scene list the samples index."""
    chosen = [scenes[s.scene] for s in samples]
    picks = [s.pick for s in samples]
    names = preprocess.features.ordered_names
    point_batch = np.concatenate([np.full(len(p), b, dtype=np.int64) for b, p in enumerate(picks)])
    xyz = np.concatenate([s.xyz for s in samples]).astype(np.float32)
    rgb = intensity = None
    if "rgb" in names:
        missing = [c.name for c, s in zip(chosen, samples, strict=True) if s.rgb is None]
        if missing:
            raise ValueError(f"the model needs input feature 'rgb' but scene(s) {missing} have no field 'rgb'")
        rgb = np.concatenate([s.rgb for s in samples if s.rgb is not None])
    if "intensity" in names:
        missing = [c.name for c in chosen if c.intensity is None]
        if missing:
            raise ValueError(f"the model needs input feature 'intensity' but scene(s) {missing} have none")
        intensity = np.concatenate([c.intensity[p] for c, p in zip(chosen, picks, strict=True)])  # type: ignore[index]
    net_input = prepare_cloud(preprocess, xyz, rgb=rgb, intensity=intensity, batch=point_batch)
    keys = sorted(chosen[0].point_targets)
    for scene in chosen:
        if sorted(scene.point_targets) != keys:
            raise ValueError(f"training scene {scene.name!r} has targets {sorted(scene.point_targets)}, "
                             f"expected {keys}")
    point_targets = {k: np.concatenate([c.point_targets[k][p] for c, p in zip(chosen, picks, strict=True)])
                     for k in keys}
    scene_targets = {k: np.stack([c.scene_targets[k] for c in chosen]) for k in sorted(chosen[0].scene_targets)}
    supervoxel = None
    if any(c.supervoxel is not None for c in chosen):
        parts, offset = [], 0
        for scene, pick in zip(chosen, picks, strict=True):
            ids = np.full(len(pick), -1, np.int64) if scene.supervoxel is None else scene.supervoxel[pick]
            parts.append(np.where(ids >= 0, ids + offset, -1))
            offset += int(ids.max()) + 1 if ids.size and ids.max() >= 0 else 0
        supervoxel = np.concatenate(parts)
    tags = None
    if all(s.tags is not None for s in samples):
        tags = np.stack([s.tags for s in samples]).astype(np.float32)  # type: ignore[misc]
    group = np.array([s.group for s in samples], dtype=np.int64)
    partner = np.full(len(samples), -1, dtype=np.int64)
    if sampling.group == "pairs":
        for b in range(len(samples)):
            partner[b] = b + 1 if samples[b].member == 0 else b - 1
    return Batch(net_input=net_input, names=[c.name for c in chosen], slots=[s.slot for s in samples], xyz=xyz,
                 point_batch=point_batch, point_index=np.concatenate(picks), point_targets=point_targets,
                 scene_targets=scene_targets, supervoxel=supervoxel, sampling=sampling, tags=tags, group=group,
                 member=np.array([s.member for s in samples], dtype=np.int64), partner=partner,
                 subcloud=np.array([s.subcloud for s in samples], dtype=np.int64),
                 point_offsets=np.concatenate([[0], np.cumsum([len(p) for p in picks])]).astype(np.int64))


class StepBatches(torch.utils.data.Dataset):
    """Map-style dataset over step numbers: ``batches[step]`` is this process's :class:`Batch` of that step.

    Usable directly (``num_workers = 0``) or behind a ``DataLoader`` with worker processes.  sampling: the
    stage's (:mod:`wsseg_training.engine.sampling`).  num_classes: C of the per-sample tags (None: no tags).
    extra / extra_samples: the stage's extra batch (``Stage.extra``), attached as ``Batch.extra``.
    """

    def __init__(self, scenes: Sequence[TrainScene], preprocess: PreprocessConfig, data: DataConfig, seed: int,
                 total_steps: int, rank: int = 0, world_size: int = 1, augment_data: bool = True,
                 sampling: Sampling = CROP, num_classes: int | None = None, extra: Sampling | None = None,
                 extra_samples: int = 0) -> None:
        if not scenes:
            raise ValueError("no training scene (check the split and the weak-label file)")
        for what_batch, size, chosen in (("data.batch_scenes", data.batch_scenes, sampling),
                                         ("extra_samples", extra_samples, extra)):
            if chosen is None or size % (chosen.group_size * world_size) == 0:
                continue
            what = f"{chosen.group_size}-sample groups ({chosen.group}) x " if chosen.group_size > 1 else ""
            raise ValueError(f"{what_batch}={size} must be a multiple of {what}the number of processes ({world_size})")
        self.scenes = list(scenes)
        self.preprocess = preprocess
        self.data = data
        self.total_steps = total_steps
        self.rank = rank
        self.world_size = world_size
        self.sampling = sampling
        self.drawer = SampleDrawer(self.scenes, sampling, data, seed, num_classes=num_classes,
                                   augment_data=augment_data)
        self.extra_samples = extra_samples
        self.extra = None if extra is None else SampleDrawer(self.scenes, extra, data, extra_seed(seed),
                                                             num_classes=num_classes, augment_data=augment_data)

    def __len__(self) -> int:
        return self.total_steps

    def steps_per_epoch(self) -> int:
        """Steps that visit every sampling unit once."""
        return self.drawer.steps_per_epoch(self.data.batch_scenes)

    def __getitem__(self, step: int) -> Batch:
        batch = self._draw(self.drawer, step, self.data.batch_scenes)
        if self.extra is None:
            return batch
        return replace(batch, extra=self._draw(self.extra, step, self.extra_samples))

    def _draw(self, drawer: SampleDrawer, step: int, samples_per_step: int) -> Batch:
        groups = drawer.groups_per_step(samples_per_step)
        samples: list[Sample] = []
        for group in range(self.rank, groups, self.world_size):
            samples += drawer.draw_group(step, group, samples_per_step)
        return collate(self.scenes, samples, self.preprocess, drawer.sampling)


def identity(item: Batch) -> Batch:
    """DataLoader ``collate_fn``: batches are already collated (module level so workers can pickle it)."""
    return item
