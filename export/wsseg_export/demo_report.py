"""The node replay, pictures and ``report.md`` of ``wsseg demo`` (see :mod:`wsseg_export.demo`)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wsseg.core.atomic import atomic_path, write_text_atomic
from wsseg.core.classes import IGNORE_INDEX, ClassTable

#: eval directories of the demo (OUT/eval/<key>) and how the report names them
MODELS = (("full", "full supervision (dense labels, PyTorch)"),
          ("otoc", "1T1C† (backbone only, PyTorch)"),
          ("otoc-onnx", "1T1C† exported bundle (ONNX Runtime, what the robot runs)"),
          ("otoc-full", "1T1C (backbone + relation net + graph propagation, offline)"))
STAGES = ("pre", "inference", "post", "total")


@dataclass
class ReplayResult:
    """What the node replay measured (``frames``: names of the replayed frames, in order)."""

    frames: list[str]
    sent: int
    received: int
    agreement: float                 # node labels == offline Segmenter labels, share of valid points
    miou: float                      # node labels vs ground truth over all replayed frames
    overall_accuracy: float
    timings: dict[str, float]        # <stage>_ms_median / _p95
    rate_hz: float
    engine: str
    width: int
    height: int
    wall_s: float                    # the whole replay: node start, frames, offline comparison
    label_images: list[np.ndarray | None] = field(default_factory=list, repr=False)
    colour_images: list[np.ndarray] = field(default_factory=list, repr=False)
    truth_images: list[np.ndarray] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        return {"frames": len(self.frames), "sent": self.sent, "received": self.received,
                "label_agreement_with_offline": self.agreement, "miou": self.miou,
                "overall_accuracy": self.overall_accuracy, "timings_ms": self.timings, "rate_hz": self.rate_hz,
                "engine": self.engine, "frame_size": [self.width, self.height],
                "wall_s": round(self.wall_s, 1)}


@dataclass
class DemoResults:
    """Everything the report shows."""

    metrics: dict[str, dict[str, Any]]
    rounds: list[dict[str, Any]]
    label_stats: str
    parity: str
    replay: ReplayResult
    commands: list[tuple[str, float]]
    train_s: dict[str, float]
    steps: dict[str, int]
    wall_s: float

    def summary(self) -> dict[str, Any]:
        return {"miou": {k: m.get("miou") for k, m in self.metrics.items()},
                "overall_accuracy": {k: m.get("overall_accuracy") for k, m in self.metrics.items()},
                "rounds": self.rounds, "replay": self.replay.summary(), "train_s": self.train_s,
                "steps": self.steps, "wall_s": round(self.wall_s, 1)}


def read_metrics(eval_root: Path) -> dict[str, dict[str, Any]]:
    """``metrics.json`` of every evaluated model under ``OUT/eval`` (keys of :data:`MODELS`)."""
    out = {}
    for key, _ in MODELS:
        path = eval_root / key / "metrics.json"
        if path.is_file():
            out[key] = json.loads(path.read_text())
    return out


def read_rounds(run_dir: Path) -> list[dict[str, Any]]:
    """The otoc run's per-round pseudo-label log (``otoc_rounds.json``)."""
    from wsseg_training.methods.otoc.method import ROUNDS_FILE

    path = run_dir / ROUNDS_FILE
    return json.loads(path.read_text())["rounds"] if path.is_file() else []


# ------------------------------------------------------------------------------------------ node replay


def val_frames(data: Path, frames_dir: Path, limit: int) -> list[Any]:
    """Up to ``limit`` RGB-D frames (:class:`~wsseg.ros.replay_sources.ReplayFrame`, with their camera poses) of
    the validation rooms, taken in turn from each room."""
    from wsseg_training.data.dataset import Dataset

    from wsseg.ros.replay_sources import load_frames

    rooms = Dataset(data).scene_names("val")
    per_room = [load_frames(frames_dir / room) for room in rooms if (frames_dir / room).is_dir()]
    if not per_room:
        raise ValueError(f"{frames_dir}: no RGB-D frames of the validation rooms {rooms}")
    chosen, index = [], 0
    while len(chosen) < limit and any(index < len(room) for room in per_room):
        chosen += [room[index] for room in per_room if index < len(room)]
        index += 1
    return chosen[:limit]


def replay_val_frames(bundle: Path, data: Path, frames_dir: Path, params_file: Path, limit: int,
                      log_path: Path) -> ReplayResult:
    """Replay val frames through a real ``segment_node`` (closed loop: per-frame latency) and score its labels
    against the offline :class:`~wsseg.runtime.segmenter.Segmenter` and against ground truth."""
    from wsseg_training.evaluation.metrics import ConfusionMatrix

    from wsseg.core.classes import UNLABELLED_ID
    from wsseg.runtime.segmenter import Segmenter
    from wsseg_export.node_replay import run_replay

    started = time.perf_counter()
    rgbd = val_frames(data, frames_dir, limit)
    clouds = [frame.in_scene_frame() for frame in rgbd]
    stats = run_replay(bundle, clouds, params_file, mode="points", log_path=log_path)
    segmenter = Segmenter(bundle, engine="onnxruntime-cpu")
    classes = segmenter.classes
    matrix = ConfusionMatrix(classes.num_classes)
    same = valid = 0
    label_images: list[np.ndarray | None] = []
    for cloud, node_labels in zip(clouds, stats.labels, strict=True):
        if node_labels is None:
            label_images.append(None)
            continue
        offline, _ = segmenter.segment(cloud.xyz, rgb=cloud.rgb)
        ok = offline != UNLABELLED_ID
        same += int((node_labels[ok] == offline[ok]).sum())
        valid += int(ok.sum())
        truth = np.asarray(cloud.semantic).astype(np.int64)
        scored = ok & (truth >= 0)
        matrix.add(truth[scored], node_labels[scored].astype(np.int64))
        label_images.append(node_labels.reshape(cloud.height, cloud.width))
    summary = stats.summary()
    return ReplayResult(
        frames=[f.name for f in rgbd], sent=stats.frames_sent, received=stats.frames_received,
        agreement=same / max(1, valid), miou=matrix.miou(), overall_accuracy=matrix.overall_accuracy(),
        timings={k: float(v) for k, v in summary.items() if k.endswith(("_median", "_p95"))},
        rate_hz=float(summary["rate_hz"]), engine=stats.diagnostics.get("engine_active", "?"),
        width=clouds[0].width, height=clouds[0].height, wall_s=time.perf_counter() - started, label_images=label_images,
        colour_images=[f.colour for f in rgbd],
        truth_images=[_truth_image(f) for f in rgbd])


def _truth_image(frame: Any) -> np.ndarray:
    """(H, W) int64 ground truth of an RGB-D frame, -1 where the camera measured no depth."""
    truth = np.asarray(frame.semantic).astype(np.int64).reshape(frame.height, frame.width)
    return np.where(np.isfinite(frame.depth_m), truth, IGNORE_INDEX)


# ------------------------------------------------------------------------------------------ pictures


def render_frames(replay: ReplayResult, classes: ClassTable, path: Path, count: int = 4) -> Path:
    """Rows of (colour image, node label image, ground truth) for ``count`` replayed frames."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    rows = [i for i, image in enumerate(replay.label_images) if image is not None][:count]
    if not rows:
        raise ValueError("render_frames: the node answered no frame")
    fig = Figure(figsize=(10.5, 2.4 * len(rows) + 0.6), dpi=100)
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for row, i in enumerate(rows):
        panels = (replay.colour_images[i], classes.colourize(replay.label_images[i]),  # type: ignore[arg-type]
                  classes.colourize(replay.truth_images[i]))
        for col, (image, title) in enumerate(zip(panels, ("colour", "segment_node labels", "ground truth"),
                                                 strict=True)):
            ax = axes[row][col]
            ax.imshow(image, interpolation="nearest")
            ax.set_axis_off()
            if row == 0:
                ax.set_title(title, fontsize=10)
        axes[row][0].text(-4, replay.height / 2, replay.frames[i], rotation=90, va="center", ha="right", fontsize=7)
    present = np.unique(np.concatenate([t.ravel() for t in replay.truth_images]))
    handles = [Patch(color=np.asarray(classes.palette[c]) / 255.0, label=classes.names[c])
               for c in present if 0 <= c < classes.num_classes]
    fig.legend(handles=handles, loc="lower center", ncol=min(7, len(handles)), fontsize=8, frameon=False)
    fig.subplots_adjust(left=0.03, right=0.99, top=0.95, bottom=0.6 / fig.get_figheight() + 0.02, wspace=0.03,
                        hspace=0.05)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def write_pictures(out: Path, data: Path, clicks_path: Path, runs: dict[str, Path], bundle: Path,
                   replay: ReplayResult) -> dict[str, Path]:
    """The clicks on a training room, a validation room (input / 1T1C† / full / truth) and replayed frames."""
    from wsseg_training.data.dataset import Dataset
    from wsseg_training.data.render import Panel, class_colours, class_legend, render_panels, visible_mask
    from wsseg_training.evaluation.evaluate import TorchPredictor
    from wsseg_training.labels import load_weak_labels

    from wsseg.runtime.segmenter import Segmenter

    dataset = Dataset(data)
    classes = dataset.classes
    pictures = {}
    clicks = load_weak_labels(clicks_path, dataset)
    room = next(iter(clicks.scenes))
    scene = dataset.load(room)
    hide = ["ceiling"] if "ceiling" in classes.names else []
    shown = _shown(visible_mask(scene.semantic, classes, hide), scene.num_points)
    point = clicks.point_labels(room, scene.num_points)
    clicked = point >= 0
    marks = np.where(clicked[:, None], class_colours(point, classes), np.uint8(200)).astype(np.uint8)
    y0 = _expanded_clicks(point, scene, classes, runs["otoc"])
    pictures["clicks"] = render_panels(
        [Panel(scene.xyz[shown], scene.rgb[shown], f"{room}: input"),
         Panel(scene.xyz[shown], marks[shown], f"{int(clicked.sum())} clicks (one per object)",
               highlight=clicked[shown]),
         Panel(scene.xyz[shown], class_colours(y0[shown], classes), "clicks spread over their super-voxels (Y_0)",
               legend=class_legend(scene.semantic[shown], classes))],
        out / "clicks.png", size_px=(1800, 600), title="what the annotator gave (ceiling hidden)")

    val = dataset.scene_names("val")[0]
    scene = dataset.load(val)
    shown = _shown(visible_mask(scene.semantic, classes, hide), scene.num_points)
    robot, _ = Segmenter(bundle, engine="onnxruntime-cpu").segment(scene.xyz, rgb=scene.rgb)
    robot = np.where(robot < classes.num_classes, robot.astype(np.int64), IGNORE_INDEX)
    full = TorchPredictor.from_checkpoint(runs["full"] / "model.pt").predict(scene)
    pictures["rooms"] = render_panels(
        [Panel(scene.xyz[shown], scene.rgb[shown], f"{val}: input"),
         Panel(scene.xyz[shown], class_colours(robot[shown], classes), "1T1C† bundle (ONNX Runtime)"),
         Panel(scene.xyz[shown], class_colours(full[shown], classes), "full supervision"),
         Panel(scene.xyz[shown], class_colours(scene.semantic[shown], classes), "ground truth",
               legend=class_legend(scene.semantic[shown], classes))],
        out / "rooms.png", size_px=(2200, 600), title="validation room (ceiling hidden)")
    pictures["frames"] = render_frames(replay, classes, out / "frames.png")
    return pictures


def _shown(mask: np.ndarray | None, n: int) -> np.ndarray:
    return np.ones(n, dtype=bool) if mask is None else mask


def _expanded_clicks(point: np.ndarray, scene: Any, classes: ClassTable, otoc_run: Path) -> np.ndarray:
    """Y_0 of one room as the 1T1C run built it (its config's ``method`` options; clicks alone without
    super-voxels): (N,) int64."""
    import yaml
    from wsseg_training.methods.otoc import initial_pseudo_labels
    from wsseg_training.methods.otoc.method import otoc_config_from_options

    if scene.supervoxel is None:
        return point
    options = yaml.safe_load((otoc_run / "config.yaml").read_text()).get("method") or {}
    return initial_pseudo_labels(point, scene.supervoxel, scene.xyz, classes, otoc_config_from_options(options))


# ------------------------------------------------------------------------------------------ report


def _pct(value: float | None) -> str:
    return "–" if value is None or value != value else f"{100 * value:.1f}"


def write_report(out: Path, results: DemoResults, pictures: dict[str, Path], bundle: Path, params: Path) -> Path:
    """``OUT/report.md``: models table, rounds, node replay with per-stage timings, pictures, commands."""
    metrics, replay = results.metrics, results.replay
    full = (metrics.get("full") or {}).get("miou")
    lines = ["# wsseg demo: one click per object -> 1T1C -> the robot's segment_node", "",
             f"Wall time {results.wall_s / 60:.1f} min on this machine. Synthetic indoor rooms (ray-cast RGB-D "
             "scans, S3DIS classes); a CPU-sized schedule "
             f"({results.steps['otoc']} steps of 1T1C, {results.steps['full']} of full supervision, `cpu` profile): "
             "the numbers show that every part works end to end, not the accuracy of a real run.", "",
             "## Labels", "", "```", results.label_stats, "```", "",
             f"![clicks]({pictures['clicks'].name})", "",
             "## Validation rooms (every original point, one confusion matrix)", "",
             "| model | mIoU % | OA % | vs full |", "|---|---:|---:|---:|"]
    for key, label in MODELS:
        m = metrics.get(key)
        if m is None:
            continue
        share = f"{100 * m['miou'] / full:.0f}%" if full and m.get("miou") is not None else "–"
        lines.append(f"| {label} | {_pct(m.get('miou'))} | {_pct(m.get('overall_accuracy'))} | {share} |")
    lines += ["", f"![validation room]({pictures['rooms'].name})", "",
              "Export parity (`wsseg export --check`):", "", "```", results.parity, "```", ""]
    if results.rounds:
        lines += ["### 1T1C self-training rounds", "",
                  "| round | trains on | pseudo-label coverage % | pseudo-label mIoU % (analysis only) |",
                  "|---:|---|---:|---:|"]
        lines += [f"| {r['round']} | Y_{r['pseudo_labels']} | {100 * r['coverage']:.1f} | "
                  f"{_pct(r.get('analysis_miou'))} |" for r in results.rounds]
        lines += ["", "Pseudo-label mIoU is scored against the ground truth for this report only; training never "
                  "reads it.", ""]
    timing_rows = [f"| {stage} | {replay.timings.get(f'{stage}_ms_median', float('nan')):.1f} | "
                   f"{replay.timings.get(f'{stage}_ms_p95', float('nan')):.1f} |" for stage in STAGES]
    lines += ["## The model on the robot: replay through the real `segment_node`", "",
              f"{replay.sent} validation RGB-D frames ({replay.width}x{replay.height}), published as organized "
              "PointCloud2 in the room frame (z up, as after a camera-to-base transform) to a `segment_node` "
              f"process started with `--ros-args --params-file {params.relative_to(params.parents[1])} -p model:=...`"
              f" (rclpy + Fast DDS), one frame at a time; {replay.received} answered; engine `{replay.engine}`.", "",
              f"- node labels equal to the offline `Segmenter` (`wsseg infer`): {100 * replay.agreement:.3f}% of "
              "valid points",
              f"- node labels vs ground truth over the replayed frames: mIoU {_pct(replay.miou)}%, "
              f"OA {_pct(replay.overall_accuracy)}%",
              f"- answered frames per second (closed loop): {replay.rate_hz:.1f}; the whole replay (node start, "
              f"frames, offline comparison) took {replay.wall_s:.0f} s", "",
              "| stage | median ms | p95 ms |", "|---|---:|---:|", *timing_rows, "",
              f"![frames]({pictures['frames'].name})", "",
              "Black: no depth measurement (no point, label 65535).", "",
              "## Use it on a robot", "", "```",
              f"ros2 launch wsseg segment.launch.py model:={bundle} input_mode:=points "
              "points_topic:=/camera/depth/points", "```", "",
              "The model was trained on z-up rooms. For clouds in a camera's optical frame (z forward), set the "
              "node parameter `model_frame_transform` to the camera's pose in a z-up frame, `[x, y, z, roll, pitch, "
              "yaw]` (see `config/segment_rgbd.yaml`).", "",
              "## Commands (also in `commands.sh`)", "", "| command | s |", "|---|---:|"]
    lines += [f"| `{command}` | {seconds:.0f} |" for command, seconds in results.commands]
    report = out / "report.md"
    write_text_atomic(report, "\n".join(lines) + "\n")
    return report
