"""``wsseg data synth``: write a synthetic indoor (RGB-D) or outdoor (LiDAR) dataset."""

from __future__ import annotations

import argparse
from dataclasses import fields

from tqdm import tqdm

from wsseg_training.data.synth.config import (
    ROOM_TYPE_PRESETS,
    Difficulty,
    IndoorConfig,
    LidarConfig,
    OutdoorConfig,
    RGBDCameraConfig,
    parse_room_types,
)

#: CLI flag -> (config class, field).  Defaults come from the dataclasses, so the help shows them.
_FLAGS: dict[str, tuple[type, str, str]] = {
    "--colour-overlap": (Difficulty, "colour_overlap", "0 = class-specific colours/reflectivities, 1 = random"),
    "--clutter-density": (Difficulty, "clutter_density", "multiplier on the number of clutter objects"),
    "--noise-scale": (Difficulty, "noise_scale", "multiplier on every sensor noise"),
    "--shape-variation": (Difficulty, "shape_variation", "0 = canonical object shapes, 1 = widely varied"),
    "--image-width": (RGBDCameraConfig, "width_px", "RGB-D image width, pixels"),
    "--image-height": (RGBDCameraConfig, "height_px", "RGB-D image height, pixels"),
    "--hfov-deg": (RGBDCameraConfig, "hfov_deg", "RGB-D horizontal field of view, degrees"),
    "--max-depth-m": (RGBDCameraConfig, "max_range_m", "RGB-D maximum depth, metres"),
    "--depth-noise-k": (RGBDCameraConfig, "depth_noise_k_per_m", "depth noise sigma = k * z^2 (1/m)"),
    "--pixel-dropout": (RGBDCameraConfig, "dropout_rate", "fraction of depth pixels lost at random"),
    "--views": (IndoorConfig, "views", "RGB-D frames per room"),
    "--fused-voxel-m": (IndoorConfig, "fused_voxel_m", "keep one fused point per voxel of this size (0 = all)"),
    "--beams": (LidarConfig, "beams", "LiDAR beams (16/32/64/128)"),
    "--fov-up-deg": (LidarConfig, "fov_up_deg", "LiDAR upper elevation, degrees"),
    "--fov-down-deg": (LidarConfig, "fov_down_deg", "LiDAR lower elevation, degrees"),
    "--h-res-deg": (LidarConfig, "horizontal_resolution_deg", "LiDAR horizontal resolution, degrees"),
    "--range-noise-m": (LidarConfig, "range_noise_std_m", "LiDAR range noise sigma, metres"),
    "--lidar-dropout": (LidarConfig, "dropout_rate", "fraction of LiDAR returns lost at random"),
    "--sensor-height-m": (LidarConfig, "sensor_height_m", "LiDAR height above the road, metres"),
}


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _default(cls: type, name: str) -> object:
    return getattr(cls(), name)


def build_config(args: argparse.Namespace) -> IndoorConfig | OutdoorConfig:
    """The scene config from the parsed flags (unset flags keep the dataclass defaults)."""
    given: dict[type, dict[str, object]] = {}
    for flag, (cls, name, _) in _FLAGS.items():
        value = getattr(args, _dest(flag))
        if value is not None:
            given.setdefault(cls, {})[name] = value
    difficulty = Difficulty(**given.get(Difficulty, {}))
    if args.kind == "indoor":
        if LidarConfig in given:
            raise ValueError(f"LiDAR flags {sorted(given[LidarConfig])} do not apply to --kind indoor")
        camera = RGBDCameraConfig(**given.get(RGBDCameraConfig, {}))
        if args.room_types is not None:
            given.setdefault(IndoorConfig, {})["room_types"] = parse_room_types(args.room_types)
        return IndoorConfig(camera=camera, difficulty=difficulty, **given.get(IndoorConfig, {}))
    unused = sorted(set(given.get(RGBDCameraConfig, {})) | set(given.get(IndoorConfig, {}))
                    | ({"room_types"} if args.room_types is not None else set()))
    if unused:
        raise ValueError(f"RGB-D flags {unused} do not apply to --kind outdoor")
    return OutdoorConfig(lidar=LidarConfig(**given.get(LidarConfig, {})), difficulty=difficulty)


def run(args: argparse.Namespace) -> int:
    from wsseg_training.data.synth.generate import FRAMES_DIR, write_synthetic_dataset  # open3d: import on use

    config = build_config(args)
    if args.keep_frames and args.frames_out:
        raise ValueError("give either --keep-frames or --frames-out, not both")
    frames_dir = args.frames_out or (args.out / FRAMES_DIR if args.keep_frames else None)
    with tqdm(total=args.scenes, desc=f"synth {args.kind}", unit="scene") as bar:
        summary = write_synthetic_dataset(args.out, config, args.scenes, args.seed, args.val_fraction,
                                          frames_dir=frames_dir, name=args.name, progress=bar.update)
    frames = f", {summary.frames} RGB-D frames in {frames_dir}" if summary.frames else ""
    print(f"wrote {summary.scenes} {args.kind} scenes (train {summary.train} / val {summary.val}) to {summary.root}: "
          f"{summary.points_per_scene:,.0f} points/scene, {summary.seconds_per_scene:.2f} s/scene{frames}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from pathlib import Path

    parser = subparsers.add_parser(
        "synth", help="synthesize a labelled dataset (RGB-D rooms or LiDAR streets)",
        description="Ray cast procedurally built scenes with a simulated RGB-D camera (indoor, 13 S3DIS classes) "
                    "or a spinning LiDAR (outdoor, synthetic_outdoor classes) into a dataset directory. "
                    "Deterministic by --seed.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--kind", choices=("indoor", "outdoor"), required=True)
    parser.add_argument("--scenes", type=int, default=10, help="number of scenes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="dataset directory to write")
    parser.add_argument("--name", default=None, help="dataset name (default synthetic_<kind>)")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="share of scenes in the val split")
    parser.add_argument("--keep-frames", action="store_true", help="indoor: save RGB-D frames under OUT/frames/")
    parser.add_argument("--frames-out", type=Path, default=None, help="indoor: save RGB-D frames under this folder")
    groups = {Difficulty: parser.add_argument_group("difficulty"),
              RGBDCameraConfig: parser.add_argument_group("RGB-D camera (indoor)"),
              IndoorConfig: parser.add_argument_group("RGB-D camera (indoor)"),
              LidarConfig: parser.add_argument_group("LiDAR (outdoor)")}
    groups[IndoorConfig].add_argument(
        "--room-types", default=None, help=f"indoor: the room-type mix, a preset {sorted(ROOM_TYPE_PRESETS)} or "
        "TYPE=SHARE,... of office, conference, hallway, storage, lounge (default office_only)")
    for flag, (cls, name, help_text) in _FLAGS.items():
        default = _default(cls, name)
        kind = {f.name: f.type for f in fields(cls)}[name]
        groups[cls].add_argument(flag, dest=_dest(flag), type=int if kind in ("int", int) else float, default=None,
                                 help=f"{help_text} (default {default})")
    parser.set_defaults(handler=run)
