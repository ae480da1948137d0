"""CUDA check and training-step timing for the lent GPU machine (``device`` tool); not a test, never in CI.

1. **Parity**: the sparse U-Net (random weights, eval mode) on one synthetic indoor room, float64 on the CPU
   as reference vs float32 on CUDA and float16 autocast on CUDA: ``|out - ref| / |ref|`` over the logits and
   argmax agreement, for every model profile.
2. **Training steps**: the real ``Trainer`` with the ``full`` method on a few synthetic rooms, timed at two
   step counts; the difference gives seconds per step without the set-up (profile x crop points x AMP x
   data-loader workers).

Run on the GPU machine (see ``scripts/device_run.sh``); prints one table per part and ``RESULT <json>`` last,
and writes the JSON to ``--out`` when given.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from wsseg_training.data.dataset import Dataset
from wsseg_training.engine.config import config_from_dict
from wsseg_training.engine.loop import Trainer
from wsseg_training.methods import FullMethod
from wsseg_training.model.inputs import to_torch
from wsseg_training.model.profiles import get_profile, unet_config_for
from wsseg_training.model.unet import SparseUNet

from wsseg.core.features import FeatureConfig
from wsseg.core.preprocess import PreprocessConfig, prepare_cloud

STEP_CASES = (  # profile, crop points, amp, workers
    ("tiny", 10_000, False, 0), ("tiny", 10_000, False, 4), ("cpu", 60_000, False, 4),
    ("default", 60_000, False, 4), ("default", 60_000, True, 4), ("default", 0, True, 8),
)


def parity(dataset: Dataset, profiles: list[str], device: torch.device) -> list[dict]:
    """Logit error of float32 (and float16 autocast on CUDA) on ``device`` against a CPU float64 forward."""
    scene = dataset.load(dataset.scene_names("val")[0])
    features = FeatureConfig(("offset", "rgb"))
    rows = []
    for profile in profiles:
        spec = get_profile(profile)
        net_input = prepare_cloud(PreprocessConfig(voxel_size_m=spec.voxel_size_m, num_levels=spec.num_levels,
                                                   features=features), scene.xyz, rgb=scene.rgb)
        torch.manual_seed(0)
        model = SparseUNet(unet_config_for(profile, features.num_channels, dataset.classes.num_classes)).eval()
        feats, maps = to_torch(net_input)
        with torch.no_grad():
            ref = model.double()(feats.double(), *maps)
            model = model.float().to(device)
            on_device = [m.to(device) for m in maps]
            outputs = {"fp32": model(feats.to(device), *on_device).double().cpu()}
            if device.type == "cuda":
                with torch.autocast("cuda", dtype=torch.float16):
                    outputs["amp"] = model(feats.to(device), *on_device).double().cpu()
        row = {"profile": profile, "voxels": int(feats.shape[0])}
        for name, out in outputs.items():
            row[f"{name}_rel_err"] = float(torch.linalg.norm(out - ref) / torch.linalg.norm(ref))
            row[f"{name}_agree"] = float((out.argmax(1) == ref.argmax(1)).double().mean())
            row[f"{name}_finite"] = bool(torch.isfinite(out).all())
        rows.append(row)
        print(f"parity {profile}: {row}", flush=True)
    return rows


def train_seconds(dataset: Dataset, work: Path, device: torch.device, profile: str, crop: int, amp: bool,
                  workers: int, steps: int) -> float:
    """Wall seconds of a whole ``full`` training run of ``steps`` steps (set-up included)."""
    config = {"seed": 0, "profile": profile, "device": device.type,
              "data": {"features": ["offset", "rgb"], "crop_max_points": crop, "batch_scenes": 2,
                       "num_workers": workers},
              "optim": {"optimizer": "adamw", "lr": 0.01, "schedule": "cosine", "warmup_steps": 1},
              "train": {"steps": steps, "amp": amp, "checkpoint_every_steps": 0, "log_every_steps": 1000}}
    run = work / f"{profile}_{crop}_{amp}_{workers}_{steps}"
    start = time.perf_counter()
    Trainer(config_from_dict(config), FullMethod(dataset.classes), dataset, run, progress=False).run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def step_times(dataset: Dataset, work: Path, device: torch.device, short: int, long: int,
               cases: tuple = STEP_CASES) -> list[dict]:
    """Seconds per training step: (wall(long) - wall(short)) / (long - short), per case."""
    train_seconds(dataset, work / "warmup", device, "tiny", 10_000, False, 0, 2)  # device init, allocator
    rows = []
    for profile, crop, amp, workers in cases:
        if amp and device.type != "cuda":
            continue
        a = train_seconds(dataset, work, device, profile, crop, amp, workers, short)
        b = train_seconds(dataset, work, device, profile, crop, amp, workers, long)
        per_step = (b - a) / (long - short)
        row = {"profile": profile, "crop_points": crop or "whole room", "amp": amp, "workers": workers,
               "s_per_step": round(per_step, 4), "setup_s": round(a - short * per_step, 2)}
        rows.append(row)
        print(f"steps {row}", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", nargs="+", default=["tiny", "cpu", "default"])
    parser.add_argument("--data", type=Path, required=True,
                        help="a synthetic indoor dataset (`wsseg data synth --kind indoor`); trains on its rooms")
    parser.add_argument("--short", type=int, default=10, help="steps of the short timing run")
    parser.add_argument("--long", type=int, default=40, help="steps of the long timing run")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                        help="cpu = a dry run of this script (tiny profile, few steps)")
    parser.add_argument("--out", type=Path, default=None, help="write the RESULT JSON here too")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench/gpu.py: torch sees no CUDA device (use --device cpu for a dry run)", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    result = {"device": name, "torch": torch.__version__}
    print(f"{result['device']}, torch {result['torch']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="wsseg_cuda_") as tmp:
        work = Path(tmp)
        dataset = Dataset(args.data)
        result["parity"] = parity(dataset, args.profiles, device)
        cases = STEP_CASES if device.type == "cuda" else (("tiny", 10_000, False, 0),)
        result["steps"] = step_times(dataset, work, device, args.short, args.long, cases)
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
