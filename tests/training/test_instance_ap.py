"""AP@50 / AP@25 the ScanNet way, on hand-made predictions whose answers are worked out in the comments."""

from __future__ import annotations

import math

import numpy as np
import pytest
from wsseg_training.evaluation.instance_ap import InstanceEvaluator, average_precision

from wsseg.core.classes import IGNORE_INDEX
from wsseg.core.instances import Proposals

# points: A = 0..149 (class 1), B = 150..299 (class 1), C = 300..499 (class 2), wall = 500..599 (class 0,
# stuff), D = 600..649 (class 1, only 50 points: below ScanNet's 100, not counted), 650..659 unlabelled
A, B, C = np.arange(0, 150), np.arange(150, 300), np.arange(300, 500)
WALL, D = np.arange(500, 600), np.arange(600, 650)


def ground_truth() -> tuple[np.ndarray, np.ndarray]:
    semantic = np.full(660, IGNORE_INDEX, dtype=np.int64)
    instance = np.full(660, -1, dtype=np.int64)
    for ids, cls, inst in ((A, 1, 0), (B, 1, 1), (C, 2, 2), (WALL, 0, 3), (D, 1, 4)):
        semantic[ids], instance[ids] = cls, inst
    return semantic, instance


def proposals(*items: tuple[np.ndarray, int, float]) -> Proposals:
    return Proposals(members=[m for m, _, _ in items], cls=np.array([c for _, c, _ in items], np.int64),
                     score=np.array([s for _, _, s in items], np.float32))


def evaluate(*items: tuple[np.ndarray, int, float]) -> InstanceEvaluator:
    semantic, instance = ground_truth()
    return InstanceEvaluator(classes=(1, 2)).add(semantic, instance, proposals(*items))


def test_perfect_predictions() -> None:
    ev = evaluate((A, 1, 0.9), (B, 1, 0.8), (C, 2, 0.7))
    assert ev.ap(0.5) == 1.0 and ev.ap(0.25) == 1.0
    assert ev.per_class(0.5) == {1: 1.0, 2: 1.0}


def test_one_false_positive() -> None:
    # a confident class-1 prediction on C (class 2 points, not void): class 1 has TP 0.9, TP 0.8, FP 0.95.
    # thresholds 0.8 / 0.9 / 0.95 -> (P, R) = (2/3, 1), (1/2, 1/2), (0, 0), then (1, 0);
    # widths (1 - 1/2)/2, (1 - 0)/2, (1/2 - 0)/2, 0 -> AP = 2/3 x 1/4 + 1/2 x 1/2 = 5/12
    ev = evaluate((A, 1, 0.9), (B, 1, 0.8), (C, 2, 0.7), (C, 1, 0.95))
    assert ev.per_class(0.5)[1] == pytest.approx(5 / 12)
    assert ev.ap(0.5) == pytest.approx((5 / 12 + 1.0) / 2)
    # the same false positive scored below every true one costs nothing in ScanNet's curve
    assert evaluate((A, 1, 0.9), (B, 1, 0.8), (C, 2, 0.7), (C, 1, 0.1)).ap(0.5) == 1.0


def test_one_split_instance() -> None:
    # C cut in two halves: IoU 0.5 each, not > 0.5 -> at AP@50 C is missed and both halves are false positives;
    # at AP@25 the better half is a true positive and the other a duplicate (a lower-scored false positive).
    halves = ((C[:100], 2, 0.7), (C[100:], 2, 0.6))
    ev = evaluate((A, 1, 0.9), (B, 1, 0.8), *halves)
    assert ev.per_class(0.5) == {1: 1.0, 2: 0.0}
    assert ev.ap(0.5) == 0.5
    assert ev.per_class(0.25) == {1: 1.0, 2: 1.0}


def test_void_and_small_instances_are_ignored() -> None:
    # predictions mostly on the wall (stuff = void), on unlabelled points or on the too-small instance D
    extra = ((WALL, 1, 0.99), (np.arange(650, 660), 2, 0.99), (D, 1, 0.99))
    ev = evaluate((A, 1, 0.9), (B, 1, 0.8), (C, 2, 0.7), *extra)
    assert ev.ap(0.5) == 1.0
    assert ev.to_dict(("wall", "chair", "table"))["num_instances"] == {"chair": 2, "table": 1}


def test_missing_predictions_and_absent_classes() -> None:
    ev = evaluate((A, 1, 0.9))  # B and C missed: class 1 recall 1/2, class 2 nothing
    # class 1: (P, R) = (1, 1/2), (1, 0) -> widths (1/2 - 0)/2, (1/2 - 0)/2 -> AP 1/2
    assert ev.per_class(0.5) == {1: 0.5, 2: 0.0}
    semantic, instance = ground_truth()
    three = InstanceEvaluator(classes=(1, 2, 5)).add(semantic, instance, proposals((A, 1, 0.9), (B, 1, 0.8),
                                                                                    (C, 2, 0.7)))
    assert math.isnan(three.per_class(0.5)[5]) and three.ap(0.5) == 1.0  # class 5 has no ground truth
    assert math.isnan(average_precision(np.zeros(0), np.zeros(0, bool), 0))


def test_scenes_accumulate_into_one_curve() -> None:
    semantic, instance = ground_truth()
    ev = InstanceEvaluator(classes=(1, 2))
    ev.add(semantic, instance, proposals((A, 1, 0.9), (B, 1, 0.8), (C, 2, 0.7)))
    ev.add(semantic, instance, proposals((C, 1, 0.95)))  # second scene: a false positive, everything missed
    # class 1 over both scenes: TP 0.9, TP 0.8, FP 0.95, 4 instances -> (2/3, 1/2), (1/2, 1/4), (0, 0), (1, 0)
    # widths (1/2 - 1/4)/2, (1/2 - 0)/2, (1/4 - 0)/2, 0 -> AP = 2/3 x 1/8 + 1/2 x 1/4 = 5/24
    assert ev.per_class(0.5)[1] == pytest.approx(5 / 24)


def test_bad_input_is_refused() -> None:
    semantic, instance = ground_truth()
    with pytest.raises(ValueError, match="outside"):
        InstanceEvaluator(classes=(1,)).add(semantic, instance, proposals((np.array([700]), 1, 0.5)))
    with pytest.raises(ValueError, match="semantic"):
        InstanceEvaluator(classes=(1,)).add(semantic[:5], instance, proposals())
    with pytest.raises(ValueError, match="no evaluated class"):
        InstanceEvaluator(classes=())
