"""WS3D's boundary threshold rules against answers worked out by hand: the precision target, the true share of
boundary pairs on labelled scenes, the threshold that matches a boundary-pair share, and the options' checks."""

from __future__ import annotations

import numpy as np
import pytest
from wsseg_training.engine.config import ConfigError
from wsseg_training.methods.ws3d.options import Ws3dOptions
from wsseg_training.methods.ws3d.regions import SceneRegions, pair_class_change
from wsseg_training.methods.ws3d.thresholds import (
    labelled_class_change_share,
    pair_share_threshold,
    precision_threshold,
    region_max,
)

from wsseg.core.classes import IGNORE_INDEX

X = IGNORE_INDEX


def test_precision_threshold_is_the_lowest_reaching_the_target() -> None:
    # boundary points score 0.9, 0.7, 0.3; the others 0.6, 0.2, 0.1, 0.1; the last point has no ground truth.
    # precision by threshold (every distinct probability and 0 tried): [0, 0.1) 3/7, [0.1, 0.2) 3/5,
    # [0.2, 0.3) 3/4, [0.3, 0.6) 2/3, [0.6, 0.9) 1, from 0.9 nothing predicted
    prob = np.array([0.9, 0.7, 0.3, 0.6, 0.2, 0.1, 0.1, 0.99])
    truth = np.array([1, 1, 1, 0, 0, 0, 0, X])
    assert precision_threshold(prob, truth, 0.6) == 0.1
    assert precision_threshold(prob, truth, 0.7) == 0.2  # not the later 2/3 stretch
    assert precision_threshold(prob, truth, 0.8) == 0.6
    assert precision_threshold(prob, truth, 1.0) == 0.6
    assert precision_threshold(prob, truth, 0.4) == 0.0
    # probabilities crowded into a few thousandths are still told apart
    assert precision_threshold(0.4 + prob / 100, truth, 0.7) == pytest.approx(0.402)


def test_precision_threshold_unreachable_or_undefined() -> None:
    # every point scores 0.5, half are boundary points: precision 0.5 below 0.5, nothing predicted from 0.5 on
    prob = np.full(4, 0.5)
    assert precision_threshold(prob, np.array([1, 0, 1, 0]), 0.9) == 0.0  # the highest-precision threshold
    assert precision_threshold(prob, np.array([0, 0, 0, X]), 0.9) == 0.5  # no boundary truth: the default
    with pytest.raises(ValueError, match="target"):
        precision_threshold(prob, np.array([1, 0, 1, 0]), 0.0)


def test_region_max() -> None:
    np.testing.assert_array_equal(region_max(np.array([0.1, 0.7, 0.3, 0.9]), np.array([0, 0, 2, -1]), 3),
                                  [0.7, -np.inf, 0.3])


def labelled_chain() -> tuple[np.ndarray, SceneRegions]:
    """Five regions in a chain, two points each; regions 0, 1 are class 0 (region 1 with a minority point of
    class 1), regions 2, 3 class 1, region 4 unlabelled: pairs 0-1 same, 1-2 change, 2-3 same, 3-4 unknown."""
    regions = SceneRegions(region=np.array([0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4]),
                           pairs=np.array([[0, 1], [1, 2], [2, 3], [3, 4]]), w=np.zeros(4, np.float32))
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, X, X])
    return labels, regions


def test_pair_class_change_and_the_labelled_share() -> None:
    labels, regions = labelled_chain()
    change, known = pair_class_change(regions, labels, 2)
    np.testing.assert_array_equal(change, [False, True, False, False])
    np.testing.assert_array_equal(known, [True, True, True, False])
    assert labelled_class_change_share([labels], [regions], 2) == pytest.approx(1 / 3)


def unlabelled_chain() -> tuple[np.ndarray, np.ndarray, SceneRegions]:
    """Four regions in a chain (pairs 0-1, 1-2, 2-3), two points each, top probabilities 0.9, 0.75, 0.5, 0.2.

    Eq. 2 pairs by threshold: [0, 0.2) all three (share 1), [0.2, 0.5) 0-1 and 1-2 (2/3), [0.5, 0.75) 0-1 only
    (1/3), from 0.75 none (0).
    """
    regions = SceneRegions(region=np.array([0, 0, 1, 1, 2, 2, 3, 3]), pairs=np.array([[0, 1], [1, 2], [2, 3]]),
                           w=np.zeros(3, np.float32))
    prob = np.array([0.9, 0.01, 0.01, 0.75, 0.5, 0.01, 0.2, 0.01])
    return prob, np.full(8, X), regions


def test_pair_share_threshold_matches_the_labelled_share() -> None:
    labels, labelled = labelled_chain()
    prob, unlabelled_labels, unlabelled = unlabelled_chain()
    # the labelled scene's probabilities must not count: all 0.99 would make all its pairs boundary pairs
    probability = [np.full(labels.shape, 0.99), prob]
    scenes = ([labels, unlabelled_labels], [labelled, unlabelled], 2)
    choice = pair_share_threshold(probability, *scenes)
    assert choice.target == pytest.approx(1 / 3)
    assert choice.threshold == 0.5  # share 1/3 on [0.5, 0.75): the lowest value of that stretch
    assert choice.share == pytest.approx(1 / 3)
    explicit = pair_share_threshold(probability, *scenes, target=0.7)
    assert (explicit.threshold, explicit.target, explicit.share) == (0.2, 0.7, pytest.approx(2 / 3))
    assert pair_share_threshold(probability, *scenes, target=1.0).threshold == 0.0
    assert pair_share_threshold(probability, *scenes, target=0.0).threshold == 0.75  # the highest pair value
    # the chosen share is what Eq. 2 then gives the scene
    unlabelled.set_boundaries(prob > choice.threshold)
    assert unlabelled.w.mean() == pytest.approx(choice.share)


def test_pair_share_threshold_without_unlabelled_scenes() -> None:
    labels, labelled = labelled_chain()
    choice = pair_share_threshold([np.full(labels.shape, 0.3)], [labels], [labelled], 2)
    assert choice.threshold == 0.5 and np.isnan(choice.share)


def test_threshold_rule_options() -> None:
    assert Ws3dOptions.build({}).boundary_threshold_rule == "best_f1"  # the shipped behaviour stays the default
    assert Ws3dOptions.build({"boundary_threshold_rule": "pair_share"}).boundary_pair_share is None
    with pytest.raises(ConfigError, match="boundary_threshold_rule"):
        Ws3dOptions.build({"boundary_threshold": 0.4, "boundary_threshold_rule": "precision"})
    with pytest.raises(ConfigError, match="boundary_threshold_rule"):
        Ws3dOptions.build({"boundary_threshold_rule": "pair_share", "boundary_pairs": "interface"})
    with pytest.raises(ConfigError, match="boundary_precision"):
        Ws3dOptions.build({"boundary_precision": 0.0})
