"""Weak labels: typed objects per kind, the versioned file schema, simulation from ground truth, stats.

Public API::

    load_weak_labels(path, dataset) -> Clicks | SparsePoints | SceneTags | SubcloudTags | LabelledScenes
    save_weak_labels(labels, path)
    simulate_clicks / simulate_sparse_points / simulate_scene_tags / simulate_subcloud_tags /
        simulate_labelled_scenes(dataset, scene_names, seed, ...)
    compute_stats(labels, dataset) -> WeakLabelStats
"""

from wsseg_training.labels.schema import load_weak_labels, save_weak_labels
from wsseg_training.labels.simulate import (
    simulate_clicks,
    simulate_labelled_scenes,
    simulate_scene_tags,
    simulate_sparse_points,
    simulate_subcloud_tags,
)
from wsseg_training.labels.stats import WeakLabelStats, compute_stats
from wsseg_training.labels.types import (
    KINDS,
    SCHEMA_VERSIONS,
    Clicks,
    Cut,
    Header,
    LabelledScenes,
    PointLabels,
    SceneTags,
    SparsePoints,
    Subcloud,
    SubcloudTags,
    WeakLabelError,
    WeakLabels,
)

__all__ = [
    "KINDS", "SCHEMA_VERSIONS", "Clicks", "Cut", "Header", "LabelledScenes", "PointLabels", "SceneTags",
    "SparsePoints", "Subcloud", "SubcloudTags", "WeakLabelError", "WeakLabelStats", "WeakLabels",
    "compute_stats", "load_weak_labels", "save_weak_labels", "simulate_clicks", "simulate_labelled_scenes",
    "simulate_scene_tags", "simulate_sparse_points", "simulate_subcloud_tags",
]
