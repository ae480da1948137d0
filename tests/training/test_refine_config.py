"""``data.refine`` in a training config: checked with clear errors, carried into the run's preprocessing (and so
into model.pt / model.yaml), and refused by the Trainer when the dataset has no class of that name."""

from __future__ import annotations

from pathlib import Path

import pytest
from wsseg_training.engine.config import ConfigError, config_from_dict
from wsseg_training.engine.loop import Trainer, preprocess_for
from wsseg_training.methods import FullMethod

from tests.conftest import make_box_dataset
from wsseg.core.refine import SupportRefine


def test_refine_is_checked_and_reaches_the_preprocessing() -> None:
    config = config_from_dict({"profile": "tiny", "data": {"voxel_size_m": 0.1,
                                                           "refine": {"support_class": "floor", "below_m": 0.01,
                                                                      "above_m": 0.02}}})
    assert preprocess_for(config).refine == SupportRefine("floor", 0.01, 0.02)
    assert preprocess_for(config_from_dict({"profile": "tiny"})).refine is None  # off by default
    with pytest.raises(ConfigError, match=r"field 'data\.refine': refine above_m \(0\.001\) must be >= below_m"):
        config_from_dict({"data": {"refine": {"below_m": 0.01, "above_m": 0.001}}})
    with pytest.raises(ConfigError, match=r"data\.refine.*unknown field\(s\) \['abov_m'\]"):
        config_from_dict({"data": {"refine": {"abov_m": 0.01}}})


def test_trainer_refuses_a_support_class_the_dataset_lacks(tmp_path: Path) -> None:
    dataset = make_box_dataset(tmp_path / "data", train=1, val=0, points=500)
    config = config_from_dict({"profile": "tiny", "data": {"voxel_size_m": 0.1, "refine": {"support_class": "table"}}})
    with pytest.raises(ConfigError, match=r"data\.refine: refine support_class 'table' is not a class of the model; "
                                          r"classes: \['floor', 'wall', 'box'\]"):
        Trainer(config, FullMethod(dataset.classes), dataset, tmp_path / "run", progress=False)
