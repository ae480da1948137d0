"""Confusion matrix, IoU, mIoU and accuracy against a matrix computed by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from wsseg_training.evaluation.metrics import ConfusionMatrix

from wsseg.core.classes import IGNORE_INDEX, UNLABELLED_ID

#                  ignored --v     v-- invalid prediction (robot's "unlabelled")
TRUTH = np.array([0, 0, 1, 1, 2, IGNORE_INDEX, 2, 0])
PRED = np.array([0, 1, 1, 1, 0, 2, UNLABELLED_ID, 0])
# By hand (rows = truth, columns = prediction; class 3 never occurs):
#   truth 0: predicted 0, 1, 0       -> row [2, 1, 0, 0]
#   truth 1: predicted 1, 1          -> row [0, 2, 0, 0]
#   truth 2: predicted 0, (invalid)  -> row [1, 0, 0, 0], missed 1
# TP = [2, 2, 0]; FP = [1, 1, 0]; FN = [1, 0, 2]
# IoU = [2/4, 2/3, 0/2, nan]; mIoU = (1/2 + 2/3 + 0) / 3; OA = 4/7 (7 labelled points)


def test_matches_hand_computed_matrix() -> None:
    matrix = ConfusionMatrix(4).add(TRUTH, PRED)
    assert matrix.matrix.tolist() == [[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    assert matrix.missed.tolist() == [0, 0, 1, 0]
    assert matrix.total == 7
    iou = matrix.iou()
    assert iou[:3] == pytest.approx([0.5, 2 / 3, 0.0])
    assert math.isnan(iou[3])  # absent from truth and prediction: not averaged
    assert matrix.miou() == pytest.approx((0.5 + 2 / 3 + 0.0) / 3)
    assert matrix.overall_accuracy() == pytest.approx(4 / 7)
    assert matrix.class_accuracy()[:3] == pytest.approx([2 / 3, 1.0, 0.0])


def test_accumulates_over_scenes_not_per_scene_average() -> None:
    whole = ConfusionMatrix(4).add(TRUTH, PRED)
    split = ConfusionMatrix(4).add(TRUTH[:3], PRED[:3]).merge(ConfusionMatrix(4).add(TRUTH[3:], PRED[3:]))
    assert np.array_equal(whole.matrix, split.matrix) and np.array_equal(whole.missed, split.missed)
    perfect = ConfusionMatrix(2).add(np.array([0, 0, 1]), np.array([0, 0, 1]))
    assert perfect.miou() == 1.0 and perfect.overall_accuracy() == 1.0
    # a class predicted but never true still counts (IoU 0) once it has a union
    extra = ConfusionMatrix(3).add(np.array([0, 0]), np.array([0, 2]))
    assert extra.iou()[2] == 0.0 and extra.miou() == pytest.approx((0.5 + 0.0) / 2)


def test_json_summary_and_bad_input() -> None:
    data = ConfusionMatrix(4).add(TRUTH, PRED).to_dict(("a", "b", "c", "d"))
    json.dumps(data, allow_nan=False)  # NaN became null
    assert data["per_class_iou"]["d"] is None and data["per_class_iou"]["b"] == pytest.approx(2 / 3, abs=1e-6)
    assert data["support"] == {"a": 3, "b": 2, "c": 2, "d": 0}
    with pytest.raises(ValueError, match="ground truth label 7 outside the class table"):
        ConfusionMatrix(4).add(np.array([7]), np.array([0]))
    with pytest.raises(ValueError, match="truth has 2 points, prediction 1"):
        ConfusionMatrix(4).add(np.array([0, 1]), np.array([0]))
    empty = ConfusionMatrix(2)
    assert math.isnan(empty.miou()) and math.isnan(empty.overall_accuracy())
