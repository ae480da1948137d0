"""Figures of a weak-label file: labelled-point share and per-class counts."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wsseg_training.data.dataset import Dataset
from wsseg_training.labels.types import (
    Clicks,
    LabelledScenes,
    SceneTags,
    SparsePoints,
    SubcloudTags,
    WeakLabels,
)


@dataclass(frozen=True)
class WeakLabelStats:
    """labelled_points / total_points over the covered scenes (tags label no point: 0).

    per_class: class name -> clicks / labelled points / tagged scenes / tagged subclouds.
    propagated_points: points inside clicked super-voxels (1T1C spreads a click to its
    super-voxel), when the scenes carry super-voxels; else None.
    """

    kind: str
    scenes: int
    total_points: int
    labelled_points: int
    per_class: dict[str, int]
    per_class_unit: str
    details: dict[str, float] = field(default_factory=dict)
    propagated_points: int | None = None

    @property
    def labelled_percent(self) -> float:
        return 100.0 * self.labelled_points / self.total_points if self.total_points else 0.0

    def lines(self) -> list[str]:
        out = [f"kind {self.kind}: {self.scenes} scene(s), {self.total_points} points",
               f"labelled points: {self.labelled_points} ({self.labelled_percent:.4f} %)"]
        if self.propagated_points is not None and self.total_points:
            out.append(f"after super-voxel propagation: {self.propagated_points} "
                       f"({100.0 * self.propagated_points / self.total_points:.3f} %)")
        out += [f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}"
                for key, value in self.details.items()]
        width = max((len(n) for n in self.per_class), default=0)
        if self.per_class:
            out.append(f"per class ({self.per_class_unit}):")
        out += [f"  {name:<{width}}  {count}" for name, count in self.per_class.items()]
        return out


def _propagated(labels: Clicks, dataset: Dataset) -> int | None:
    total = 0
    for name, entry in labels.scenes.items():
        supervoxel = dataset.load(name).supervoxel
        if supervoxel is None:
            return None
        clicked = np.unique(supervoxel[entry.point])
        total += int(np.isin(supervoxel, clicked[clicked >= 0]).sum() + (supervoxel[entry.point] < 0).sum())
    return total


def compute_stats(labels: WeakLabels, dataset: Dataset | None = None, propagate: bool = False) -> WeakLabelStats:
    """Stats of ``labels``; ``propagate`` (clicks, needs ``dataset``) also counts clicked super-voxels."""
    header = labels.header
    names = header.class_names
    c = len(names)
    counts = np.zeros(c, dtype=np.int64)
    details: dict[str, float] = {}
    labelled = 0
    unit = ""
    propagated = None
    if isinstance(labels, Clicks | SparsePoints):
        counts = labels.class_counts(c)
        labelled = labels.num_labelled()
        unit = "clicks" if isinstance(labels, Clicks) else "labelled points"
        n = max(1, len(labels.scenes))
        details["mean labels per scene"] = float(sum(len(e) for e in labels.scenes.values()) / n)
        if isinstance(labels, Clicks) and propagate and dataset is not None:
            propagated = _propagated(labels, dataset)
    elif isinstance(labels, SceneTags):
        for tags in labels.tags.values():
            counts[list(tags)] += 1
        unit = "scenes tagged"
        details["mean tags per scene"] = float(counts.sum() / max(1, len(labels.tags)))
        details["tags removed"] = len(labels.removed)
    elif isinstance(labels, SubcloudTags):
        num = 0
        for subclouds in labels.scenes.values():
            for sc in subclouds:
                counts[list(sc.classes)] += 1
                num += 1
        unit = "subclouds tagged"
        details["subclouds"] = num
        details["mean subclouds per scene"] = float(num / max(1, len(labels.scenes)))
        details["mean tags per subcloud"] = float(counts.sum() / max(1, num))
    elif isinstance(labels, LabelledScenes):
        labelled = sum(header.scene_points[n] for n in labels.labelled)
        if labels.cuts and dataset is not None:
            for name in labels.cuts:
                labelled += int(labels.labelled_mask(name, dataset.load(name).xyz).sum())
        unit = "labelled scenes"
        details["labelled scenes"] = len(labels.labelled)
        details["unlabelled scenes"] = len(labels.unlabelled)
        details["cut scenes"] = len(labels.cuts)
    return WeakLabelStats(
        kind=labels.kind, scenes=len(header.scene_points), total_points=header.total_points,
        labelled_points=int(labelled),
        per_class={} if isinstance(labels, LabelledScenes) else {names[i]: int(counts[i]) for i in range(c)},
        per_class_unit=unit, details=details, propagated_points=propagated,
    )
