"""Instance clustering (numpy, robot side): the radius graph, connected components, dual-set clustering."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as scipy_components
from scipy.spatial import cKDTree

from wsseg.core.instances import (
    InstanceConfig,
    Proposals,
    cluster_instances,
    connected_components,
    instance_ids,
    proposals_to_points,
    radius_edges,
)


@pytest.mark.parametrize("chunk", [7, 2_000_000])
def test_radius_edges_equal_brute_force(chunk: int) -> None:
    rng = np.random.default_rng(0)
    xyz = rng.uniform(-1, 1, (400, 3)) * np.array([1.0, 1.0, 0.3])
    edges = radius_edges(xyz, 0.2, chunk_pairs=chunk)
    expected = cKDTree(xyz).query_pairs(0.2, output_type="ndarray")
    assert sorted(map(tuple, edges.tolist())) == sorted(map(tuple, np.sort(expected, axis=1).tolist()))
    assert radius_edges(xyz[:1], 0.2).shape == (0, 2)


def test_connected_components_equal_scipy() -> None:
    rng = np.random.default_rng(1)
    n = 300
    edges = rng.integers(0, n, (250, 2))
    ours = connected_components(n, edges)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, theirs = scipy_components(graph, directed=False)
    # same partition: the pairing of labels is one-to-one
    pairs = set(zip(ours.tolist(), theirs.tolist(), strict=True))
    assert len(pairs) == len(set(ours.tolist())) == len(set(theirs.tolist()))
    chain = np.stack([np.arange(99), np.arange(1, 100)], axis=1)[::-1]  # a long path, listed backwards
    assert (connected_components(100, chain) == 0).all()


def blobs() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two touching chairs (class 1) and one table (class 2) away from them, 10 cm voxels.

    Returns xyz, true instance (0, 1, 2), labels, exact offsets to the instance centres.
    """
    axis = np.arange(0.0, 0.5, 0.1)
    cube = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    parts = [cube, cube + np.array([0.5, 0.0, 0.0]), cube + np.array([3.0, 0.0, 0.0])]
    xyz = np.concatenate(parts)
    instance = np.repeat([0, 1, 2], len(cube))
    labels = np.array([1, 1, 2])[instance]
    centres = np.stack([p.mean(axis=0) for p in parts])
    return xyz, instance, labels, centres[instance] - xyz


def test_dual_set_clustering_separates_touching_objects() -> None:
    xyz, instance, labels, offsets = blobs()
    confidence = np.full(len(xyz), 0.9)
    config = InstanceConfig(classes=(1, 2), radius_m=0.15, shifted_radius_m=0.15, min_points=10)
    proposals = cluster_instances(xyz, offsets, labels, confidence, config)
    # original positions: the two chairs form one blob; shifted positions: two tight clusters
    sets = sorted((int(c), tuple(np.sort(m))) for m, c in zip(proposals.members, proposals.cls, strict=True))
    expected = sorted((int(labels[instance == i][0]), tuple(np.flatnonzero(instance == i))) for i in range(3))
    merged = (1, tuple(np.flatnonzero(instance < 2)))
    assert set(expected) <= set(sets)
    # the merged chair blob agrees 0.5 with the shifted clusters: score 0.45 < 0.9, and NMS drops it (IoU 0.5)
    assert sets == expected and merged not in sets
    np.testing.assert_allclose(proposals.score, 0.9)
    ids = instance_ids(proposals, len(xyz))
    assert ids.dtype == np.uint32 and (ids > 0).all()
    # each true object gets one id
    for i in range(3):
        assert len(np.unique(ids[instance == i])) == 1


def test_clustering_without_offsets_and_stuff_classes() -> None:
    xyz, instance, labels, _ = blobs()
    labels = labels.copy()
    labels[instance == 2] = 0  # class 0 is stuff: no proposals
    config = InstanceConfig(classes=(1,), radius_m=0.15, shifted_radius_m=0.15, min_points=10, nms_iou=0.3)
    proposals = cluster_instances(xyz, np.zeros_like(xyz), labels, np.full(len(xyz), 0.5), config)
    # zero offsets: both partitions give the merged blob; NMS keeps it once
    assert len(proposals) == 1 and int(proposals.cls[0]) == 1
    assert set(proposals.members[0].tolist()) == set(np.flatnonzero(instance < 2).tolist())
    ids = instance_ids(proposals, len(xyz))
    assert (ids[instance == 2] == 0).all()


def test_min_points_and_scores() -> None:
    xyz, instance, labels, offsets = blobs()
    confidence = np.where(instance == 2, 0.99, 0.6)
    weight = np.where(instance == 2, 1.0, 0.05)  # a chair holds 6.25 points, both together 12.5
    config = InstanceConfig(classes=(1, 2), radius_m=0.15, shifted_radius_m=0.15, min_points=20)
    proposals = cluster_instances(xyz, offsets, labels, confidence, config, weight=weight)
    assert len(proposals) == 1 and int(proposals.cls[0]) == 2
    assert float(proposals.score[0]) == pytest.approx(0.99)


def test_instance_config_round_trip_and_errors() -> None:
    config = InstanceConfig(classes=(3, 5), radius_m=0.12, min_points=8)
    assert InstanceConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown field"):
        InstanceConfig.from_dict({"radius": 0.1}, where="model.yaml: outputs.offsets.clustering")
    with pytest.raises(ValueError, match="radius_m"):
        InstanceConfig(radius_m=0.0)
    with pytest.raises(ValueError, match="shape"):
        cluster_instances(np.zeros((3, 3)), np.zeros((2, 3)), np.zeros(3), np.zeros(3), config)
    assert len(instance_ids(Proposals([], np.zeros(0, np.int64), np.zeros(0, np.float32)), 4)) == 4


def test_proposals_to_points() -> None:
    voxels = Proposals(members=[np.array([0, 2]), np.array([1])], cls=np.array([4, 5]), score=np.array([0.9, 0.5]))
    inverse = np.array([2, 0, 1, 2, 1, 3])
    points = proposals_to_points(voxels, inverse)
    assert [m.tolist() for m in points.members] == [[0, 1, 3], [2, 4]]
    assert points.cls.tolist() == [4, 5]
