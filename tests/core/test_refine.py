"""The support-plane refinement of point labels (wsseg.core.refine): a hand-built table with an object whose
answer is known point by point."""

from __future__ import annotations

import numpy as np
import pytest

from wsseg.core.features import FeatureConfig
from wsseg.core.kernel_maps import neighbour_map
from wsseg.core.preprocess import PreprocessConfig, prepare_cloud, refine_point_labels
from wsseg.core.refine import SupportRefine, neighbour_label, refine_labels, voxel_majority
from wsseg.core.voxelize import voxelize

VOXEL = 0.02
TABLE_Z = -1.01  # the middle of a voxel layer; the sensor (origin) looks down on the table
NAMES = ("support", "object")


def table_with_an_object() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A 1 m table (support) with an object voxel column at x, y in [0.40, 0.42).

    Returns xyz (N, 3) float32, truth (N,) int64, voxel-level labels the network would give (N,) int64 (each
    voxel's majority), and a (N,) int8 role: 1 = table point inside an object-majority voxel (refined to
    support), 2 = object point inside a support voxel next to the object (refined to object), 3 = a table
    point 7 mm high far from any object (stays support), 0 = anything else.
    """
    rng = np.random.default_rng(0)
    steps = (np.arange(200) + 0.5) * 0.005  # 5 mm table points, none on a voxel boundary (float32-safe)
    grid = np.stack(np.meshgrid(steps, steps), -1).reshape(-1, 2)
    in_object = (grid >= 0.40).all(1) & (grid < 0.42).all(1)
    in_rim = (grid[:, 0] >= 0.42) & (grid[:, 0] < 0.44) & (grid[:, 1] >= 0.40) & (grid[:, 1] < 0.42)
    table = grid[~in_object & ~in_rim]
    parts = [np.column_stack([table, np.full(len(table), TABLE_Z)]), ]
    truth, role = [np.zeros(len(table), np.int64)], [np.zeros(len(table), np.int8)]

    def block(x0: float, y0: float, heights: list[float], label: int, kind: int, count: int) -> None:
        xy = rng.uniform([x0 + 0.001, y0 + 0.001], [x0 + 0.019, y0 + 0.019], size=(count, 2))
        h = rng.choice(heights, size=count)
        parts.append(np.column_stack([xy, TABLE_Z + h]))
        truth.append(np.full(count, label, np.int64))
        role.append(np.full(count, kind, np.int8))

    block(0.40, 0.40, [0.006, 0.008], 1, 0, 12)   # object bottom rim (majority of its voxel) ...
    block(0.40, 0.40, [0.0], 0, 1, 4)             # ... over a few table points
    for z in (0.03, 0.05, 0.07):                   # the object's body, one voxel column
        block(0.40, 0.40, [z], 1, 0, 10)
    block(0.42, 0.40, [0.0], 0, 0, 12)            # the table voxel beside it ...
    block(0.42, 0.40, [0.007, 0.009], 1, 2, 4)    # ... holds the object's rim
    noise = np.array([[0.801, 0.801, TABLE_Z + 0.007]])  # table noise far from the object
    parts.append(noise)
    truth.append(np.zeros(1, np.int64))
    role.append(np.full(1, 3, np.int8))
    xyz = np.concatenate(parts).astype(np.float32)
    truth_all = np.concatenate(truth)
    voxels = voxelize(xyz, VOXEL)
    voxel_labels = voxel_majority(voxels, truth_all, 2)[voxels.inverse]
    return xyz, truth_all, voxel_labels, np.concatenate(role)


def test_points_near_the_plane_take_the_label_their_height_says() -> None:
    xyz, truth, voxel_labels, role = table_with_an_object()
    config = PreprocessConfig(voxel_size_m=VOXEL, num_levels=2,
                              features=FeatureConfig(names=("offset", "support_height")), refine=SupportRefine())
    net_input = prepare_cloud(config, xyz)
    assert (voxel_labels[role == 1] == 1).all() and (voxel_labels[role == 2] == 0).all()  # what a voxel gets wrong
    refined, changed = refine_labels(voxel_labels, xyz, net_input.grid, net_input.maps.neighbours[0],
                                     net_input.planes, config.refine, support_id=0, num_classes=2)
    np.testing.assert_array_equal(refined, truth)
    np.testing.assert_array_equal(changed, np.isin(role, (1, 2)))
    assert refined[role == 3] == 0  # 7 mm of table noise with no object voxel around stays support
    # the offline path rebuilds grid, neighbour map and plane with the same functions: the same answer
    np.testing.assert_array_equal(refine_point_labels(config, NAMES, xyz, voxel_labels), truth)
    np.testing.assert_array_equal(refine_point_labels(config, NAMES, xyz, voxel_labels, net_input), truth)
    off = PreprocessConfig(voxel_size_m=VOXEL, num_levels=2)
    assert refine_point_labels(off, NAMES, xyz, voxel_labels) is voxel_labels  # no refinement configured


def test_thresholds_decide_which_points_move() -> None:
    xyz, _, voxel_labels, role = table_with_an_object()
    config = PreprocessConfig(voxel_size_m=VOXEL, num_levels=2, refine=SupportRefine(below_m=0.003, above_m=0.0095))
    refined = refine_point_labels(config, NAMES, xyz, voxel_labels)
    assert (refined[role == 2] == 0).all()  # rims at 7-9 mm are below a 9.5 mm threshold: they stay support
    assert (refined[role == 1] == 0).all()


def test_the_support_class_need_not_be_class_zero_and_invalid_labels_stay() -> None:
    xyz, truth, voxel_labels, _ = table_with_an_object()
    swapped = 1 - voxel_labels
    swapped[:5] = 65535  # an invalid label is left alone
    config = PreprocessConfig(voxel_size_m=VOXEL, num_levels=2, refine=SupportRefine(support_class="table"))
    refined = refine_point_labels(config, ("thing", "table"), xyz, swapped)
    expected = 1 - truth
    expected[:5] = 65535
    np.testing.assert_array_equal(refined, expected)


def test_neighbour_label_is_the_most_frequent_other_class_around() -> None:
    coords = np.array([[0, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 1, 1, 0], [0, 5, 5, 5]], dtype=np.int32)
    neighbours = neighbour_map(coords)
    labels = np.array([0, 2, 2, 1, 3])  # 0 = support; voxel 0 touches two 2s and one 1; voxel 4 is alone
    near = neighbour_label(labels, neighbours, support_id=0, num_classes=4)
    assert near[0] == 2 and near[4] == 3
    assert (neighbour_label(np.zeros(5, np.int64), neighbours, 0, 4) == -1).all()


def test_settings_are_checked_and_travel_with_the_preprocessing() -> None:
    with pytest.raises(ValueError, match="above_m"):
        SupportRefine(below_m=0.01, above_m=0.005)
    with pytest.raises(ValueError, match="below_m"):
        SupportRefine(below_m=float("nan"))
    with pytest.raises(ValueError, match=r"unknown field.*above"):
        SupportRefine.from_dict({"abov_m": 0.01})
    with pytest.raises(ValueError, match=r"'table' is not a class of the model; classes: \['support', 'object'\]"):
        SupportRefine(support_class="table").support_id(NAMES)
    config = PreprocessConfig(voxel_size_m=VOXEL, num_levels=2, refine=SupportRefine(above_m=0.006))
    assert PreprocessConfig.from_dict(config.to_dict()) == config
    assert "refine" not in PreprocessConfig(voxel_size_m=VOXEL, num_levels=2).to_dict()  # old bundles read the same
    assert PreprocessConfig.from_dict(PreprocessConfig(num_levels=2).to_dict()).refine is None


def test_passes_grow_a_missed_low_object_from_the_found_part() -> None:
    """A 15 mm high flat object (its top one voxel layer above the table) three voxels long lies on the table;
    the network found only its first voxel.  One pass reaches the voxel beside it, three passes the whole object;
    the table never changes."""
    rng = np.random.default_rng(1)
    steps = (np.arange(100) + 0.5) * 0.005
    table = np.stack(np.meshgrid(steps, steps), -1).reshape(-1, 2)
    table_xyz = np.column_stack([table, np.full(len(table), TABLE_Z)])
    columns = [rng.uniform([x0 + 0.001, 0.201], [x0 + 0.019, 0.219], size=(6, 2)) for x0 in (0.20, 0.22, 0.24)]
    top = [np.column_stack([c, np.full(len(c), TABLE_Z + 0.015)]) for c in columns]
    xyz = np.concatenate([table_xyz, *top]).astype(np.float32)
    truth = np.concatenate([np.zeros(len(table_xyz), np.int64), np.ones(18, np.int64)])
    found = truth.copy()
    found[len(table_xyz) + 6:] = 0  # the network labelled the 2nd and 3rd voxels support
    for passes, expected in ((1, 12), (3, 18), (5, 18)):
        config = PreprocessConfig(voxel_size_m=VOXEL, num_levels=2, refine=SupportRefine(passes=passes))
        refined = refine_point_labels(config, NAMES, xyz, found)
        assert int(refined.sum()) == expected, passes
        assert (refined[: len(table_xyz)] == 0).all()
    with pytest.raises(ValueError, match="passes"):
        SupportRefine(passes=0)
    assert SupportRefine.from_dict({"below_m": 0.003, "above_m": 0.005}).passes == 1  # bundles from before: once


def test_passes_equal_the_single_pass_rule_applied_again_and_again() -> None:
    """The multi-pass implementation (incremental voxel counts) gives what re-running one pass on its own output
    gives, on a noisy random scene with three classes and ignored points."""
    rng = np.random.default_rng(3)
    xyz = np.column_stack([rng.uniform(0, 0.4, 6000), rng.uniform(0, 0.4, 6000),
                           TABLE_Z + np.abs(rng.normal(0, 0.01, 6000)) * (rng.random(6000) < 0.5)]).astype(np.float32)
    labels = rng.choice([-1, 0, 1, 2], size=6000, p=[0.05, 0.6, 0.2, 0.15])
    names = ("support", "a", "b")
    grid = voxelize(xyz, VOXEL)
    neighbours = neighbour_map(grid.coords)
    net_input = prepare_cloud(PreprocessConfig(voxel_size_m=VOXEL, num_levels=2,
                                               features=FeatureConfig(names=("offset", "support_height"))), xyz)
    for passes in (1, 2, 4, 8):
        config = SupportRefine(passes=passes)
        fast, changed = refine_labels(labels, xyz, grid, neighbours, net_input.planes, config, 0, len(names))
        slow = labels
        for _ in range(passes):
            slow, _ = refine_labels(slow, xyz, grid, neighbours, net_input.planes, SupportRefine(passes=1), 0, 3)
        np.testing.assert_array_equal(fast, slow)
        np.testing.assert_array_equal(changed, fast != labels)
