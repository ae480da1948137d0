"""Click suggestions: uncertain, large super-voxels far from the clicks first; both model paths agree."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from wsseg_training.annotate.server import App
from wsseg_training.annotate.session import Session
from wsseg_training.annotate.suggest import (
    BundleProbabilities,
    CheckpointProbabilities,
    SuggestionWeights,
    load_model,
    point_uncertainty,
    rank_suggestions,
)
from wsseg_training.data.dataset import Dataset, DatasetWriter

from tests.annotate.conftest import running_server
from tests.conftest import make_box_scene
from wsseg.core.scene import Scene


def four_segments() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four super-voxels on a line, 10 m apart: sizes 100, 100, 400, 100; probabilities chosen per segment."""
    sizes = [100, 100, 400, 100]
    supervoxel = np.repeat(np.arange(4), sizes)
    xyz = np.zeros((supervoxel.size, 3))
    xyz[:, 0] = supervoxel * 10.0 + np.random.default_rng(0).uniform(0, 0.5, supervoxel.size)
    confident, unsure = [0.98, 0.01, 0.01], [0.4, 0.35, 0.25]
    prob = np.array([confident, unsure, unsure, unsure])[supervoxel]
    return xyz, supervoxel, prob


def test_uncertainty_measures() -> None:
    prob = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0]])
    assert np.allclose(point_uncertainty(prob, "entropy"), [0.0, 1.0, np.log(2) / np.log(3)], atol=1e-6)
    assert np.allclose(point_uncertainty(prob, "margin"), [0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="measure"):
        point_uncertainty(prob, "variance")


def test_uncertain_large_segments_first_confident_last() -> None:
    xyz, supervoxel, prob = four_segments()
    ranked = rank_suggestions(xyz, supervoxel, prob, np.zeros(0, np.int64), 4)
    assert [s.supervoxel for s in ranked][:1] == [2]  # uncertain and the largest
    assert ranked[-1].supervoxel == 0  # confident: last
    assert all(supervoxel[s.point] == s.supervoxel for s in ranked)  # the point to click is in its segment
    no_size = rank_suggestions(xyz, supervoxel, prob, np.zeros(0, np.int64), 4, SuggestionWeights(size_exponent=0))
    assert {s.supervoxel for s in no_size[:3]} == {1, 2, 3}  # equally uncertain: size made the difference


def test_clicked_segments_are_never_suggested_and_nearby_ones_wait() -> None:
    xyz, supervoxel, prob = four_segments()
    click_in_3 = np.array([int(np.flatnonzero(supervoxel == 3)[0])])
    weights = SuggestionWeights(size_exponent=0, distance_scale_m=15.0)
    ranked = rank_suggestions(xyz, supervoxel, prob, click_in_3, 3, weights)
    assert 3 not in [s.supervoxel for s in ranked]
    assert [s.supervoxel for s in ranked] == [1, 2, 0]  # 1 is 20 m from the click, 2 only 10 m; 0 is confident


def test_suggestions_spread_out_greedily() -> None:
    """Two equally unsure segments 1 m apart and a slightly surer one 30 m away: after the first, its
    neighbour waits for the far one."""
    supervoxel = np.repeat(np.arange(3), 50)
    xyz = np.zeros((150, 3))
    xyz[:, 0] = np.array([0.0, 1.0, 30.0])[supervoxel]
    prob = np.array([[0.34, 0.33, 0.33], [0.34, 0.33, 0.33], [0.5, 0.3, 0.2]])[supervoxel]
    ranked = rank_suggestions(xyz, supervoxel, prob, np.zeros(0, np.int64), 3, SuggestionWeights(size_exponent=0))
    assert ranked[0].supervoxel in (0, 1) and ranked[1].supervoxel == 2
    no_spread = rank_suggestions(xyz, supervoxel, prob, np.zeros(0, np.int64), 3,
                                 SuggestionWeights(size_exponent=0, distance_scale_m=0))
    assert [s.supervoxel for s in no_spread][2] == 2  # without the distance term: by uncertainty only


def test_bad_shapes_are_refused() -> None:
    xyz, supervoxel, prob = four_segments()
    with pytest.raises(ValueError, match="same N points"):
        rank_suggestions(xyz[:10], supervoxel, prob, np.zeros(0, np.int64), 1)


def test_bundle_and_checkpoint_give_the_same_probabilities(tiny_checkpoint: Path, tiny_bundle: Path) -> None:
    xyz, rgb, _ = make_box_scene(seed=3)
    scene = Scene(xyz=xyz, rgb=rgb)
    torch_prob = load_model(tiny_checkpoint).probabilities(scene)
    ort_prob = load_model(tiny_bundle).probabilities(scene)
    assert isinstance(load_model(tiny_checkpoint), CheckpointProbabilities)
    assert isinstance(load_model(tiny_bundle), BundleProbabilities)
    assert torch_prob.shape == (xyz.shape[0], 3) and np.allclose(torch_prob.sum(1), 1.0, atol=1e-5)
    assert np.abs(torch_prob - ort_prob).max() < 1e-3
    with pytest.raises(ValueError, match="neither a model bundle"):
        load_model(tiny_bundle / "missing")


def test_the_server_suggests_from_a_model(tiny_bundle: Path, tmp_path: Path) -> None:
    xyz, rgb, semantic = make_box_scene(seed=1)
    supervoxel = (np.floor(xyz[:, 0] / 0.5) + 10 * np.floor(xyz[:, 1] / 0.5)).astype(np.int32)
    model = load_model(tiny_bundle)
    with DatasetWriter(tmp_path / "boxes", "boxes", model.classes) as writer:
        writer.add("box_0", Scene(xyz=xyz, rgb=rgb, semantic=semantic.astype(np.int16), supervoxel=supervoxel))
    dataset = Dataset(tmp_path / "boxes")
    session = Session(dataset, "clicks", tmp_path / "clicks.json", dataset.scene_names())
    with running_server(App(session=session, model=model, model_name="tiny")) as url:
        with urllib.request.urlopen(f"{url}/api/scene/box_0/suggestions?count=3", timeout=60) as response:
            items = json.loads(response.read())["suggestions"]
        with urllib.request.urlopen(f"{url}/api/scene/box_0/prediction", timeout=60) as response:
            prediction = np.frombuffer(response.read(), dtype="<i2")
    assert len(items) == 3 and len({s["supervoxel"] for s in items}) == 3
    assert all(supervoxel[s["point"]] == s["supervoxel"] for s in items)
    assert items[0]["score"] >= items[1]["score"] >= items[2]["score"]
    assert prediction.shape == (xyz.shape[0],) and set(np.unique(prediction)) <= {0, 1, 2}
