"""``wsseg demo``: the end-to-end job of ``make demo`` on a CPU in a few minutes.

synthesize a small indoor set (ray-cast RGB-D scans) -> train the backbone (``cpu``
profile, a short schedule) -> export the model bundle -> check ONNX Runtime against
PyTorch -> segment the validation room with the robot-side ``Segmenter`` -> write a
labelled PLY, a picture and ``report.md``.  It lives in wsseg-export because it
needs every side (data, training, export, runtime).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="end-to-end demo: synthesize, train, export, segment",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/demo", help="output directory")
    parser.add_argument("--scenes", type=int, default=10, help="synthetic rooms (every 5th is validation)")
    parser.add_argument("--steps", type=int, default=200, help="training steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(handler=run_demo)


def _miou(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> tuple[float, float]:
    """(mIoU over classes present in gt or pred, overall accuracy) on points with a label."""
    keep = gt >= 0
    pred, gt = pred[keep], gt[keep]
    conf = np.bincount(gt * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    present = union > 0
    return float((tp[present] / union[present]).mean()), float(tp.sum() / max(conf.sum(), 1))


def run_demo(args: argparse.Namespace) -> int:
    from tqdm import tqdm
    from wsseg_training.checkpoint import make_checkpoint, save_checkpoint
    from wsseg_training.data.dataset import Dataset
    from wsseg_training.data.render import Panel, class_colours, class_legend, render_panels, visible_mask
    from wsseg_training.data.synth.config import IndoorConfig
    from wsseg_training.data.synth.generate import write_synthetic_dataset
    from wsseg_training.fit import LabelledInput, fit, predict_points, recalibrate_batchnorm
    from wsseg_training.model.profiles import preprocess_config_for, unet_config_for
    from wsseg_training.model.unet import SparseUNet, count_parameters

    from wsseg.core.cloud_io import PointCloudFile, write_cloud
    from wsseg.core.preprocess import prepare_cloud
    from wsseg.runtime.segmenter import Segmenter
    from wsseg_export.check import check_parity
    from wsseg_export.onnx_export import export_bundle

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data_dir = out / "data"
    print(f"[1/5] synthesizing {args.scenes} indoor rooms (ray-cast RGB-D scans) -> {data_dir}")
    with tqdm(total=args.scenes, unit="room") as bar:
        write_synthetic_dataset(data_dir, IndoorConfig(), scenes=args.scenes, seed=args.seed,
                                val_fraction=0.2, progress=bar.update)
    dataset = Dataset(data_dir)
    classes = dataset.classes
    train_names, val_names = dataset.scene_names("train"), dataset.scene_names("val")
    config = preprocess_config_for("cpu")
    train = []
    for name in train_names:
        scene = dataset.load(name)
        train.append(LabelledInput(prepare_cloud(config, scene.xyz, rgb=scene.rgb), scene.semantic.astype(np.int64)))
    model = SparseUNet(unet_config_for("cpu", config.features.num_channels, classes.num_classes))
    print(f"[2/5] training the 'cpu' profile ({count_parameters(model)} parameters) for {args.steps} steps "
          f"on {len(train)} rooms")
    losses = fit(model, train, steps=args.steps, lr=1e-2, seed=args.seed)
    recalibrate_batchnorm(model, [scene.net_input for scene in train])
    checkpoint_path = save_checkpoint(out / "model.pt", make_checkpoint(
        model.eval(), config, classes, sensor="rgbd",
        provenance={"method": "full", "profile": "cpu", "dataset": dataset.info.name, "steps": args.steps},
    ))
    print(f"[3/5] exporting the model bundle -> {out / 'bundle'}")
    bundle = export_bundle(checkpoint_path, out / "bundle")
    val = dataset.load(val_names[0])
    parity = check_parity(bundle, model, [(val_names[0], val)])
    print(f"      label agreement: {parity.label_agreement * 100:.3f}%, max |logit diff|: {parity.max_logit_diff:.2e}")
    print(f"[4/5] segmenting {val_names[0]} with ONNX Runtime (robot-side Segmenter)")
    segmenter = Segmenter(bundle, engine="auto")
    result = segmenter.run(val.xyz, rgb=val.rgb)
    torch_pred = predict_points(model, prepare_cloud(config, val.xyz, rgb=val.rgb))
    gt = val.semantic.astype(np.int64)
    miou, accuracy = _miou(result.labels.astype(np.int64), gt, classes.num_classes)
    labelled = write_cloud(out / f"{val_names[0]}_labelled.ply", PointCloudFile(
        xyz=val.xyz, rgb=val.rgb, label=result.labels, fields={"confidence": result.confidence}))
    print("[5/5] writing the picture and the report")
    shown = visible_mask(gt, classes, ["ceiling"] if "ceiling" in classes.names else [])
    shown = np.ones(val.num_points, dtype=bool) if shown is None else shown  # the ceiling hides the room
    pred = result.labels.astype(np.int64)
    picture = render_panels(
        [Panel(val.xyz[shown], val.rgb[shown], "input (RGB)"),
         Panel(val.xyz[shown], class_colours(pred[shown], classes), "prediction (ONNX Runtime)"),
         Panel(val.xyz[shown], class_colours(gt[shown], classes), "ground truth",
               legend=class_legend(gt[shown], classes))],
        out / "prediction.png", size_px=(1800, 600), title="ceiling hidden")
    summary = {
        "val_scene": val_names[0], "points": int(val.num_points), "miou": miou, "overall_accuracy": accuracy,
        "ort_vs_torch_point_agreement": float((result.labels.astype(np.int64) == torch_pred).mean()),
        "first_loss": losses[0], "last_loss": losses[-1], "segment_ms": result.timings_ms,
        "engine": segmenter.engine.name, "wall_s": time.perf_counter() - started,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    report = out / "report.md"
    report.write_text(
        "# wsseg demo\n\n"
        f"Trained the `cpu` profile for {args.steps} steps on {len(train)} synthetic rooms "
        f"(loss {losses[0]:.2f} -> {losses[-1]:.2f}); evaluated on `{val_names[0]}` ({val.num_points} points).\n\n"
        f"| metric | value |\n|---|---|\n| mIoU (classes present) | {miou * 100:.1f}% |\n"
        f"| overall accuracy | {accuracy * 100:.1f}% |\n"
        f"| ONNX Runtime vs PyTorch labels | {summary['ort_vs_torch_point_agreement'] * 100:.3f}% |\n"
        f"| segment time ({segmenter.engine.name}) | {result.timings_ms['total']:.0f} ms |\n\n"
        "A short CPU schedule: the numbers show the pipeline works end to end, not the accuracy a full run "
        "reaches.\n\n![input, prediction, ground truth](prediction.png)\n"
    )
    print(f"\ndone in {summary['wall_s']:.0f} s: mIoU {miou * 100:.1f}%, accuracy {accuracy * 100:.1f}%")
    print(f"  report:        {report}")
    print(f"  picture:       {picture}")
    print(f"  model bundle:  {out / 'bundle'}  (wsseg infer --model {out / 'bundle'} --in CLOUD --out OUT)")
    print(f"  labelled PLY:  {labelled}")
    print(f"  checkpoint:    {checkpoint_path}")
    return 0
