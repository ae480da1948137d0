"""The one whole-scene inference pass: what the raw forward pass gives, test-time augmentation as the sum of
its views, modes restored, and 2 DDP processes (gloo on CPU) returning what 1 process returns."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from wsseg_training.engine.augment import TTA_AUGMENT, augment
from wsseg_training.engine.inference import PointCloud, TTAConfig, infer
from wsseg_training.model.inputs import to_torch
from wsseg_training.model.profiles import preprocess_config_for, unet_config_for
from wsseg_training.model.unet import SparseUNet

from tests.conftest import REPO_ROOT, make_box_scene
from wsseg.core.preprocess import prepare_cloud

PRE = preprocess_config_for("tiny", voxel_size_m=0.1)


def clouds(count: int = 3) -> list[PointCloud]:
    out = []
    for i in range(count):
        xyz, rgb, _ = make_box_scene(seed=40 + i, n=1500 + 200 * i)
        out.append(PointCloud(xyz, rgb))
    return out


def model(seed: int = 0) -> SparseUNet:
    torch.manual_seed(seed)
    net = SparseUNet(unet_config_for("tiny", PRE.features.num_channels, 3))
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval mode matters
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.normal_(0.0, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return net


def forward_points(net: SparseUNet, xyz: np.ndarray, rgb: np.ndarray) -> torch.Tensor:
    net_input = prepare_cloud(PRE, xyz, rgb=rgb)
    features, maps = to_torch(net_input)
    with torch.no_grad():
        return net.eval().forward_features(features, maps, compact=True).logits[net_input.grid.inverse]


def test_infer_is_the_eval_forward_pass_and_tta_sums_its_views() -> None:
    net, scenes = model(), clouds()
    net.train()
    out = infer(scenes, net, PRE, "cpu")
    assert net.training and all(m.training for m in net.modules())  # the mode is restored
    for scene, result in zip(scenes, out, strict=True):
        assert result["logits"].shape == (len(scene.xyz), 3)
        assert torch.equal(result["logits"], forward_points(net, scene.xyz, scene.rgb))
    net.train()
    tta = infer(scenes, net, PRE, "cpu", tta=TTAConfig(views=3, seed=4),
                reduce=lambda i, o: o["logits"])
    for index, (scene, summed) in enumerate(zip(scenes, tta, strict=True)):
        expected = forward_points(net, scene.xyz, scene.rgb)
        for view in (1, 2):
            xyz, rgb = augment(scene.xyz, scene.rgb, TTA_AUGMENT, np.random.default_rng([4, index, view]))
            assert not np.allclose(xyz, scene.xyz)
            expected = expected + forward_points(net, xyz, rgb)
        assert torch.equal(summed, expected)
    with pytest.raises(ValueError, match="views must be >= 1"):
        TTAConfig(views=0)


SCRIPT = r"""
import sys, torch
sys.path.insert(0, sys.argv[2])
from tests.training.test_engine_inference import PRE, clouds, model
from wsseg_training.engine.distributed import init_distributed
from wsseg_training.engine.inference import TTAConfig, infer

torch.set_num_threads(1)
dist = init_distributed("cpu")
mine = []
def reduce(index, outputs):
    mine.append(index)
    return {"logits": outputs["logits"], "label": outputs["logits"].argmax(1)}
out = infer(clouds(), model(), PRE, "cpu", dist=dist, tta=TTAConfig(views=2, seed=1), reduce=reduce)
torch.save({"out": out, "mine": mine}, f"{sys.argv[1]}/rank{dist.rank}.pt")
"""


@pytest.mark.slow
def test_infer_with_two_processes_equals_one_process(tmp_path: Path) -> None:
    script = tmp_path / "infer_ddp.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
               str(tmp_path), str(REPO_ROOT)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    single = infer(clouds(), model(), PRE, "cpu", tta=TTAConfig(views=2, seed=1),
                   reduce=lambda i, o: {"logits": o["logits"], "label": o["logits"].argmax(1)})
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert [r["mine"] for r in ranks] == [[0, 2], [1]]  # each process computed its share only
    for rank in ranks:  # and every process returns every scene
        assert len(rank["out"]) == 3
        for theirs, ours in zip(rank["out"], single, strict=True):
            assert torch.equal(theirs["label"], ours["label"])
            assert torch.allclose(theirs["logits"], ours["logits"], rtol=0, atol=1e-5)
