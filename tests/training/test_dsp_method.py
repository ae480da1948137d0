"""The ``dsp`` plugin on tiny box scenes built here: pairs only of samples sharing a labelled class, CSFR then ISFR
as two engine stages (stage 2 from stage 1's weights, each module trained only in its own stage), the loss terms of
every stage kind, the baseline kind = ``full`` on the same labels, branch passes leave BatchNorm statistics alone,
resume inside either stage bit-identical, the exported graph the baseline's, the branch predictors, bad options
named by YAML file and field."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import onnx
import pytest
import torch
import yaml
from wsseg_training.checkpoint import load_checkpoint
from wsseg_training.data.dataset import Dataset
from wsseg_training.engine.batches import StepBatches
from wsseg_training.engine.config import ConfigError, config_from_dict
from wsseg_training.engine.loop import Trainer, preprocess_for
from wsseg_training.engine.sampling import CROP
from wsseg_training.engine.scenes import TrainScene
from wsseg_training.evaluation.evaluate import TorchPredictor
from wsseg_training.labels import SparsePoints, load_weak_labels, save_weak_labels, simulate_sparse_points
from wsseg_training.methods import DspMethod, FullMethod
from wsseg_training.methods.base import StepContext
from wsseg_training.methods.dsp.branches import DspBranchPredictor, Partner
from wsseg_training.methods.dsp.method import PAIRS

from tests.conftest import make_box_dataset, make_box_scene
from wsseg.cli import main as wsseg_main
from wsseg.core.classes import IGNORE_INDEX

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def boxes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, SparsePoints, Path]:
    """4 train + 1 val box scenes; 10 % of the 0.1 m voxels of each class labelled (file saved too)."""
    root = tmp_path_factory.mktemp("dsp")
    dataset = make_box_dataset(root / "data", train=4, val=1, points=2400)
    weak = simulate_sparse_points(dataset, dataset.scene_names("train"), seed=0, fraction=0.1, voxel_size_m=0.1)
    path = save_weak_labels(weak, root / "sparse.npz")
    return dataset, weak, path


def dsp_config(steps: int = 6, checkpoint_every: int = 1, **method: Any) -> dict:
    return {"seed": 3, "profile": "tiny", "device": "cpu",
            "data": {"batch_scenes": 2, "crop_max_points": 1200, "features": ["offset", "rgb"]},
            "optim": {"optimizer": "adamw", "lr": 0.01, "schedule": "cosine", "warmup_steps": 1},
            "train": {"steps": steps, "checkpoint_every_steps": checkpoint_every, "keep_checkpoints": 20},
            "method": method}


class Recording(DspMethod):
    """DSP that records, per step, its stage, loss terms, both affinity matrices and (at each stage's first step)
    the backbone parameters it starts from (the buffers already hold this step's BatchNorm update)."""

    seen: ClassVar[list[dict[str, Any]]] = []

    def losses(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        terms = super().losses(ctx)
        start = ctx.schedule.start_of(ctx.stage_index)
        Recording.seen.append({
            "step": ctx.step, "stage": ctx.stage_index, "kind": self.kind_of(ctx.stage_index),
            "terms": sorted(terms), "group": ctx.batch.host.sampling.group,
            "weights": {k: m.weight.detach().clone() for k, m in ctx.modules.items()},
            "start": ({k: v.detach().clone() for k, v in ctx.backbone.named_parameters()} if ctx.step == start
                      else None)})
        return terms


def train(dataset: Dataset, weak: SparsePoints | None, out: Path, config: dict, resume: bool = False,
          method_class: type[DspMethod] = DspMethod) -> Trainer:
    trainer = Trainer(config_from_dict(config), method_class(dataset.classes, config["method"], weak), dataset, out,
                      resume=resume, progress=False, provenance={"labels": "sparse"})
    trainer.run()
    return trainer


@pytest.fixture(scope="module")
def dsp_run(boxes: tuple[Dataset, SparsePoints, Path], tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[Path, Trainer, list[dict[str, Any]]]:
    dataset, weak, _ = boxes
    out = tmp_path_factory.mktemp("dsp_run") / "run"
    Recording.seen = []
    trainer = train(dataset, weak, out, dsp_config(), method_class=Recording)
    return out, trainer, list(Recording.seen)


# ---------------------------------------------------------------------------------------------- pairs


def class_scene(name: str, keep: tuple[int, ...], seed: int) -> TrainScene:
    """A box scene with only the classes ``keep``; every 5th point labelled."""
    xyz, rgb, semantic = make_box_scene(seed=seed, n=3000)
    mask = np.isin(semantic, keep)
    labels = np.where(np.arange(mask.sum()) % 5 == 0, semantic[mask], IGNORE_INDEX).astype(np.int64)
    return TrainScene(name=name, xyz=xyz[mask], rgb=rgb[mask], point_targets={"labels": labels})


def test_pairs_only_pair_samples_sharing_a_labelled_class(tmp_path: Path) -> None:
    scenes = [class_scene("a", (0, 1), 0), class_scene("b", (2,), 1), class_scene("c", (1, 2), 2),
              class_scene("d", (0,), 3)]
    config = config_from_dict(dsp_config(method={}) | {"data": {"batch_scenes": 4, "crop_max_points": 300}})
    preprocess = preprocess_for(config.replace(profile="tiny"))
    shared_single = []
    for sampling in (PAIRS, CROP):
        batches = StepBatches(scenes, preprocess, config.data, seed=0, total_steps=40, sampling=sampling,
                              num_classes=3)
        for step in range(40):
            batch = batches[step]
            for first in (0, 2):
                crops = [set(np.unique(batch.point_targets["labels"][batch.points_of(b)]).tolist()) - {IGNORE_INDEX}
                         for b in (first, first + 1)]
                shares = bool(crops[0] & crops[1])
                if sampling is PAIRS:
                    assert shares, (step, first, crops)  # a labelled class in both crops
                    assert batch.partner[first] == first + 1 and batch.partner[first + 1] == first
                    assert DspMethod.sharing_pairs(SimpleNamespace(batch=SimpleNamespace(host=batch))) == [True] * 4
                else:
                    shared_single.append(shares)
    assert not all(shared_single)  # without the pair sampler neighbours often share nothing: the check can fail
    lonely = SimpleNamespace(tags=np.array([[1.0, 0, 0], [0, 1.0, 0]]), partner=np.array([1, 0]))
    assert DspMethod.sharing_pairs(SimpleNamespace(batch=SimpleNamespace(host=lonely))) == [False, False]


# ---------------------------------------------------------------------------------------------- stages


def test_csfr_then_isfr_each_training_its_own_module_from_the_previous_stage(
        dsp_run: tuple[Path, Trainer, list[dict[str, Any]]]) -> None:
    run, trainer, seen = dsp_run
    expected = [(0, "csfr", "pairs")] * 3 + [(1, "isfr", "single")] * 3
    assert [(s["stage"], s["kind"], s["group"]) for s in seen] == expected
    assert {tuple(s["terms"]) for s in seen if s["stage"] == 0} == {("ce", "cr")}
    assert {tuple(s["terms"]) for s in seen if s["stage"] == 1} == {("ce", "ce_intra", "sr")}
    eye = torch.eye(trainer.model.config.channels[1])
    # W_s untouched (identity) during CSFR, W_c frozen during ISFR
    assert all(torch.equal(s["weights"]["isfr"], eye) for s in seen if s["stage"] == 0)
    assert not torch.equal(seen[3]["weights"]["csfr"], eye)
    assert all(torch.equal(s["weights"]["csfr"], seen[3]["weights"]["csfr"]) for s in seen[3:])
    assert not torch.equal(trainer.modules["isfr"].weight.detach(), eye)
    # stage 2 starts from the weights stage 1 ended with (the step-3 checkpoint), not from a fresh network
    after_stage1 = load_checkpoint(run / "checkpoints" / "step_00000003.pt")["model"]
    for key, value in seen[3]["start"].items():
        assert torch.equal(value, after_stage1[key]), key
    initial = seen[0]["start"]
    assert not all(torch.equal(initial[k], after_stage1[k]) for k in initial)
    # the final model holds the backbone only (the training-only modules live in the training checkpoint)
    final = load_checkpoint(run / "model.pt")
    assert not any(k.startswith(("csfr", "isfr")) for k in final["model"]) and "training" not in final
    assert set(load_checkpoint(run / "checkpoints" / "last.pt")["training"]["modules"]) == {"csfr.weight",
                                                                                          "isfr.weight"}


@pytest.mark.parametrize(("options", "terms"), [
    ({"stages": ["joint"]}, ("ce", "ce_intra", "cr", "sr")),
    ({"stages": ["joint"], "branch_gradient": "features"}, ("ce", "ce_intra", "cr", "sr")),
    ({"stages": ["csfr"], "cross_segmentation": True}, ("ce", "ce_cross", "cr")),
    ({"stages": ["isfr"], "intra_segmentation": False}, ("ce", "sr")),
    ({"stages": ["isfr", "csfr"], "stage_shares": [1, 2]}, ("ce", "ce_intra", "sr", "ce", "cr", "cr")),
])
def test_every_variant_trains_its_loss_terms(boxes: tuple[Dataset, SparsePoints, Path], tmp_path: Path,
                                            options: dict, terms: tuple[str, ...]) -> None:
    dataset, weak, _ = boxes
    Recording.seen = []
    train(dataset, weak, tmp_path / "run", dsp_config(steps=3, checkpoint_every=0, **options), method_class=Recording)
    got = [s["terms"] for s in Recording.seen]
    if len(set(map(tuple, got))) == 1:
        assert tuple(got[0]) == terms
    else:  # isfr for 1 step, then csfr for 2
        assert [t for s in got for t in s if t != "ce" or s == got[0]][:3] == list(terms[:3])
        assert [s["kind"] for s in Recording.seen] == ["isfr", "csfr", "csfr"]
        assert [s["group"] for s in Recording.seen] == ["single", "pairs", "pairs"]


def test_the_basic_kind_is_the_baseline(boxes: tuple[Dataset, SparsePoints, Path], tmp_path: Path) -> None:
    """stages [basic] trains exactly what ``full`` trains on the same sparse labels (the baseline row)."""
    dataset, weak, _ = boxes
    config = dsp_config(steps=3, checkpoint_every=0, stages=["basic"])
    basic = train(dataset, weak, tmp_path / "basic", config)
    full_config = dsp_config(steps=3, checkpoint_every=0)
    full = Trainer(config_from_dict(full_config), FullMethod(dataset.classes, {}, weak), dataset, tmp_path / "full",
                   progress=False)
    full.run()
    assert len(basic.modules) == 0
    for (name, a), b in zip(basic.model.state_dict().items(), full.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_branch_passes_leave_the_batchnorm_statistics_to_the_basic_branch(
        boxes: tuple[Dataset, SparsePoints, Path], tmp_path: Path) -> None:
    """After one CSFR step every BatchNorm has seen one batch (the basic pass), the decoder's two when the branch
    may update them (the basic pass and the cross branch's)."""
    dataset, weak, _ = boxes
    counts, means = {}, {}
    for statistics in ("frozen", "update"):
        trainer = train(dataset, weak, tmp_path / statistics, dsp_config(steps=1, checkpoint_every=0, stages=["csfr"],
                                                                         branch_bn_statistics=statistics))
        state = trainer.model.state_dict()
        counts[statistics] = {k: int(v) for k, v in state.items() if k.endswith("num_batches_tracked")}
        means[statistics] = {k: v for k, v in state.items() if k.endswith("running_mean")}
    decoder = {k for k in counts["frozen"] if k.startswith(("decoders.0.", "ups.0."))}  # below level 1
    assert decoder and set(counts["frozen"].values()) == {1}
    assert {counts["update"][k] for k in decoder} == {2}
    assert {v for k, v in counts["update"].items() if k not in decoder} == {1}  # the encoder runs once either way
    assert all(torch.equal(means["frozen"][k], means["update"][k]) for k in means["frozen"] if k.startswith("stem"))
    assert not all(torch.equal(means["frozen"][k], means["update"][k]) for k in means["frozen"]
                   if k.startswith("decoders.0."))


@pytest.mark.parametrize("resume_at", [1, 4])
def test_resume_inside_either_stage_is_bit_identical(boxes: tuple[Dataset, SparsePoints, Path],
                                                     dsp_run: tuple[Path, Trainer, list[dict[str, Any]]],
                                                     tmp_path: Path, resume_at: int) -> None:
    dataset, weak, _ = boxes
    run, whole, _ = dsp_run
    part = tmp_path / "part"
    shutil.copytree(run, part)
    (part / "model.pt").unlink()
    shutil.copy(part / "checkpoints" / f"step_{resume_at:08d}.pt", part / "checkpoints" / "last.pt")
    resumed = train(dataset, weak, part, dsp_config(), resume=True)
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    for (name, a), b in zip(whole.modules.state_dict().items(), resumed.modules.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_chunked_affinity_trains_the_same(boxes: tuple[Dataset, SparsePoints, Path], tmp_path: Path) -> None:
    dataset, weak, _ = boxes
    def config(chunk: int) -> dict:
        # plain SGD: an update is lr x gradient, so float rounding stays rounding; Adam divides a near-zero gradient
        # by its own magnitude and turns rounding noise into steps of up to lr (this test failed once that way)
        cfg = dsp_config(steps=2, checkpoint_every=0, stages=["joint"], chunk_rows=chunk)
        cfg["optim"]["optimizer"] = "sgd"
        return cfg

    runs = [train(dataset, weak, tmp_path / f"c{chunk}", config(chunk)) for chunk in (0, 7)]
    for (name, a), b in zip(runs[0].model.state_dict().items(), runs[1].model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)


# ---------------------------------------------------------------------------------------------- outputs


def test_the_exported_graph_is_the_baselines(boxes: tuple[Dataset, SparsePoints, Path],
                                             dsp_run: tuple[Path, Trainer, list[dict[str, Any]]],
                                             tmp_path: Path) -> None:
    from wsseg_export.onnx_export import export_bundle

    dataset, weak, _ = boxes
    run, _, _ = dsp_run
    train(dataset, weak, tmp_path / "baseline", dsp_config(steps=1, checkpoint_every=0, stages=["basic"]))
    graphs = []
    for source, name in ((run, "dsp"), (tmp_path / "baseline", "baseline")):
        export_bundle(source / "model.pt", tmp_path / f"bundle_{name}")
        graphs.append(onnx.load(str(tmp_path / f"bundle_{name}" / "model.onnx")).graph)
    dsp, baseline = graphs
    assert [n.op_type for n in dsp.node] == [n.op_type for n in baseline.node]
    assert [i.name for i in dsp.input] == [i.name for i in baseline.input]
    assert [o.name for o in dsp.output] == [o.name for o in baseline.output] == ["logits"]
    assert sorted((t.name, tuple(t.dims)) for t in dsp.initializer) == sorted(
        (t.name, tuple(t.dims)) for t in baseline.initializer)


def test_branch_predictors(boxes: tuple[Dataset, SparsePoints, Path],
                           dsp_run: tuple[Path, Trainer, list[dict[str, Any]]]) -> None:
    dataset, _, _ = boxes
    run, trainer, _ = dsp_run
    scene = dataset.load(dataset.scene_names("val")[0])
    last = run / "checkpoints" / "last.pt"
    basic = DspBranchPredictor.from_checkpoint(last, "basic").predict(scene)
    np.testing.assert_array_equal(basic, TorchPredictor.from_checkpoint(run / "model.pt").predict(scene))
    partners = [Partner(s, frozenset(np.unique(s.point_targets["labels"][s.point_targets["labels"] >= 0]).tolist()))
                for s in trainer.scenes]
    for branch in ("intra", "cross"):
        labels = DspBranchPredictor.from_checkpoint(last, branch, partners=partners).predict(scene)
        assert labels.shape == (scene.num_points,) and labels.min() >= 0 and labels.max() < 3
    with pytest.raises(ValueError, match="partner"):
        DspBranchPredictor.from_checkpoint(last, "cross")
    with pytest.raises(ValueError, match="needs the isfr module"):
        DspBranchPredictor(trainer.model, torch.nn.ModuleDict(), trainer.preprocess, trainer.method.options, "intra")


# ---------------------------------------------------------------------------------------------- options


@pytest.mark.parametrize(("method", "message"), [
    ({"stages": ["csfr", "crossfire"]}, r"x\.yaml: field 'method\.stages' is \['csfr', 'crossfire'\]"),
    ({"stages": []}, r"field 'method\.stages'"),
    ({"stage_shares": [1.0]}, r"field 'method\.stage_shares' is \[1\.0\], expected 2 positive numbers"),
    ({"cr_weight": -1}, r"field 'method\.cr_weight' is -1(\.0)?, expected a number >= 0"),
    ({"affinity_scale": "cosine"}, r"field 'method\.affinity_scale'"),
    ({"chunk_rows": -5}, r"field 'method\.chunk_rows'"),
    ({"branch_gradient": "decoder"}, r"field 'method\.branch_gradient'"),
    ({"stages": ["isfr"], "cross_segmentation": True}, r"field 'method\.cross_segmentation'"),
    ({"stage1_epochs": 600}, r"stage1_epochs"),
])
def test_bad_options_name_the_yaml_field(method: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DspMethod.parse_options(method, where="configs/x.yaml")


def test_trains_through_the_cli(boxes: tuple[Dataset, SparsePoints, Path], tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    dataset, _, labels = boxes
    config = dsp_config(steps=2, checkpoint_every=0)
    (tmp_path / "dsp.yaml").write_text(yaml.safe_dump(config))
    code = wsseg_main(["train", "--method", "dsp", "--data", str(dataset.root), "--labels", str(labels), "--config",
                       str(tmp_path / "dsp.yaml"), "--out", str(tmp_path / "run"), "--no-progress"])
    assert code == 0 and (tmp_path / "run" / "model.pt").is_file()
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(dsp_config(attach_level=-3)))
    code = wsseg_main(["train", "--method", "dsp", "--data", str(dataset.root), "--labels", str(labels), "--config",
                       str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "bad"), "--no-progress"])
    assert code != 0 and "method.attach_level -3 is outside" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(dsp_config(stages=["isfr", "csfr", "crossfire"])))
    code = wsseg_main(["train", "--method", "dsp", "--data", str(dataset.root), "--labels", str(labels), "--config",
                       str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "bad"), "--no-progress"])
    assert code != 0 and "bad.yaml: field 'method.stages'" in capsys.readouterr().err
    clicks = tmp_path / "clicks.json"
    wsseg_main(["labels", "simulate", "--kind", "clicks", "--data", str(dataset.root), "--out", str(clicks)])
    with pytest.raises(ValueError, match="does not use weak labels of kind 'clicks'"):
        DspMethod(dataset.classes, {}, load_weak_labels(clicks, dataset))


def test_shipped_config_builds() -> None:
    from wsseg_training.engine.config import load_config

    from tests.conftest import REPO_ROOT

    config = load_config(REPO_ROOT / "configs" / "dsp_cpu.yaml")
    options = DspMethod.parse_options(config.method, "configs/dsp_cpu.yaml")
    assert options.stages == ("csfr", "isfr") and options.shares() == [0.5, 0.5]
