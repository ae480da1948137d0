"""The written evaluation: ``metrics.json``, ``report.md``, ``confusion.png`` and scene pictures.

Pictures of a few scenes show ground truth, prediction and errors side by side
(:mod:`wsseg_training.data.render`, matplotlib Agg, headless).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from wsseg.core.atomic import atomic_path, write_text_atomic
from wsseg.core.classes import IGNORE_INDEX, ClassTable
from wsseg_training.data.dataset import Dataset
from wsseg_training.data.render import GREY, Panel, class_colours, class_legend, render_panels
from wsseg_training.evaluation.evaluate import EvalResult
from wsseg_training.evaluation.metrics import ConfusionMatrix

CORRECT_RGB = (60, 170, 60)
WRONG_RGB = (220, 40, 40)


def _percent(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{100.0 * value:.1f}"


def metrics_dict(result: EvalResult, classes: ClassTable, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """JSON-ready metrics of ``result`` (fractions in [0, 1]; NaN -> null)."""
    data = {"split": result.split, "predictor": result.predictor, "num_scenes": len(result.scenes),
            "classes": list(classes.names), **result.confusion.to_dict(classes.names)}
    data["scenes"] = {s.name: {"miou": None if not math.isfinite(s.miou) else round(s.miou, 6),
                               "overall_accuracy": None if not math.isfinite(s.overall_accuracy)
                               else round(s.overall_accuracy, 6), "points": s.points} for s in result.scenes}
    data.update(extra or {})
    return data


def markdown_table(result: EvalResult, classes: ClassTable) -> str:
    """The per-class IoU table plus mIoU / OA, in Markdown (percent)."""
    matrix = result.confusion
    iou, support = matrix.iou(), matrix.matrix.sum(axis=1) + matrix.missed
    lines = ["| class | IoU % | points |", "|---|---:|---:|"]
    for name, value, count in zip(classes.names, iou, support, strict=True):
        lines.append(f"| {name} | {_percent(value)} | {int(count):,} |")
    lines.append(f"| **mIoU** | **{_percent(matrix.miou())}** | {matrix.total:,} |")
    lines.append(f"| **overall accuracy** | **{_percent(matrix.overall_accuracy())}** | |")
    return "\n".join(lines)


def plot_confusion(matrix: ConfusionMatrix, classes: ClassTable, path: Path) -> Path:
    """Row-normalised confusion matrix (recall per true class) as a PNG."""
    counts = matrix.matrix.astype(np.float64)
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    size = 2.0 + 0.45 * classes.num_classes
    fig = Figure(figsize=(size + 1.5, size), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(classes.num_classes), classes.names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(classes.num_classes), classes.names, fontsize=8)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title(f"confusion (row-normalised), mIoU {_percent(matrix.miou())}%")
    for i in range(classes.num_classes):
        for j in range(classes.num_classes):
            if counts[i, j] > 0:
                ax.text(j, i, f"{normalised[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if normalised[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def render_prediction(dataset: Dataset, name: str, prediction: np.ndarray, path: Path) -> Path:
    """Ground truth | prediction | errors (green right, red wrong, grey ignored) of one scene, as a PNG."""
    scene = dataset.load(name)
    classes = dataset.classes
    truth = scene.semantic.astype(np.int64) if scene.semantic is not None else np.full(scene.num_points, -1)
    errors = np.tile(np.asarray(GREY, np.uint8), (scene.num_points, 1))
    labelled = truth != IGNORE_INDEX
    errors[labelled & (prediction == truth)] = CORRECT_RGB
    errors[labelled & (prediction != truth)] = WRONG_RGB
    accuracy = float((prediction[labelled] == truth[labelled]).mean()) if labelled.any() else float("nan")
    panels = [
        Panel(scene.xyz, class_colours(truth, classes), "ground truth", class_legend(truth, classes)),
        Panel(scene.xyz, class_colours(prediction, classes), "prediction", class_legend(prediction, classes)),
        Panel(scene.xyz, errors, f"errors ({_percent(accuracy)}% correct)",
              [("correct", CORRECT_RGB), ("wrong", WRONG_RGB), ("ignored", GREY)]),
    ]
    return render_panels(panels, path, size_px=(1800, 650), title=name)


def write_report(result: EvalResult, dataset: Dataset, out_dir: str | Path,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write metrics.json, report.md, confusion.png and ``scenes/<name>.png`` for the kept predictions.

    Returns the metrics dictionary.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    classes = dataset.classes
    metrics = metrics_dict(result, classes, extra)
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    plot_confusion(result.confusion, classes, out / "confusion.png")
    pictures = [render_prediction(dataset, name, labels, out / "scenes" / f"{name}.png")
                for name, labels in result.predictions.items()]
    worst = sorted((s for s in result.scenes if math.isfinite(s.miou)), key=lambda s: s.miou)[:5]
    lines = [f"# Evaluation: {dataset.info.name}, split `{result.split}` ({result.predictor})", ""]
    lines += [f"- {key}: `{value}`" for key, value in (extra or {}).items()]
    lines += [
        "",
        f"{len(result.scenes)} scenes, {result.confusion.total:,} labelled points; metrics over all points of all "
        "scenes (one confusion matrix).", "",
        markdown_table(result, classes), "",
        "![confusion matrix](confusion.png)", "",
    ]
    if worst:
        lines += ["## Hardest scenes", "", "| scene | mIoU % | OA % | points |", "|---|---:|---:|---:|"]
        lines += [f"| {s.name} | {_percent(s.miou)} | {_percent(s.overall_accuracy)} | {s.points:,} |" for s in worst]
        lines.append("")
    if pictures:
        lines += ["## Predictions", ""] + [f"![{p.stem}](scenes/{p.name})" for p in pictures] + [""]
    write_text_atomic(out / "report.md", "\n".join(lines))
    return metrics
