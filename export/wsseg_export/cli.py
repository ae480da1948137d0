"""``wsseg export``: write a model bundle from a checkpoint, or check a bundle against PyTorch."""

from __future__ import annotations

import argparse
import sys

from wsseg.core.bundle import DEFAULT_OPSET

MIN_AGREEMENT = 0.999


def register_export(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="export a checkpoint to a model bundle (ONNX + model.yaml), or --check a bundle",
        description="Export: wsseg export --checkpoint CKPT --out BUNDLE.  "
                    "Check: wsseg export --check BUNDLE --data SCENE_OR_DATASET.  "
                    "TensorRT: wsseg export --build-engine BUNDLE.",
    )
    parser.add_argument("--checkpoint", help="training checkpoint (.pt)")
    parser.add_argument("--out", help="bundle directory to write")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (>= 17)")
    parser.add_argument("--check", metavar="BUNDLE", help="compare a bundle's ONNX Runtime output with PyTorch")
    parser.add_argument("--data", help="scene .npz or dataset directory for --check")
    parser.add_argument("--max-scenes", type=int, default=4, help="scenes of a dataset to check")
    parser.add_argument("--graph", default="auto", choices=("auto", "gather", "chunked"),
                        help="convolution formulation of the ONNX graph (docs/runtime.md): gather-GEMM, chunked "
                             "pairs, or auto = chunked at levels with >= 32 channels")
    parser.add_argument("--build-engine", metavar="BUNDLE",
                        help="build the bundle's TensorRT engine into BUNDLE/trt_cache and exit (needs ONNX "
                             "Runtime with the TensorRT execution provider)")
    parser.add_argument("--precision", default="fp16", choices=("fp16", "fp32"), help="TensorRT precision")
    parser.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from wsseg_export.check import check_bundle
    from wsseg_export.onnx_export import export_bundle

    if args.build_engine:
        from wsseg.runtime.tensorrt import build_engine

        cache = build_engine(args.build_engine, precision=args.precision)
        print(f"TensorRT engine ({args.precision}) built into {cache}")
        return 0
    if args.check:
        if not args.data:
            raise ValueError("--check needs --data SCENE_OR_DATASET")
        report = check_bundle(args.check, args.data, checkpoint=args.checkpoint, max_scenes=args.max_scenes)
        for name, voxels, agreement, diff in report.per_cloud:
            print(f"  {name}: {voxels} voxels, agreement {agreement * 100:.3f}%, max |logit diff| {diff:.2e}")
        print(f"label agreement: {report.label_agreement * 100:.3f}%")
        print(f"max |logit diff|: {report.max_logit_diff:.3e}")
        if report.label_agreement < MIN_AGREEMENT:
            print(f"FAILED: agreement below {MIN_AGREEMENT * 100:.1f}%", file=sys.stderr)
            return 1
        return 0
    if not args.checkpoint or not args.out:
        raise ValueError("export needs --checkpoint CKPT and --out BUNDLE (or --check BUNDLE --data ...)")
    if args.opset < 17:
        raise ValueError(f"--opset {args.opset}: opset >= 17 is required")
    bundle = export_bundle(args.checkpoint, args.out, opset=args.opset, graph=args.graph)
    print(f"wrote {bundle.onnx_path} and {bundle.path / 'model.yaml'}")
    return 0
