"""``wsseg demo`` end to end at a smoke size: every step runs, the node replay matches the offline Segmenter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from wsseg_export.demo import _configured_steps, _last_step

REPO = Path(__file__).resolve().parents[2]


def small_config(source: str, out: Path, **method: int) -> Path:
    config = yaml.safe_load((REPO / "configs" / source).read_text())
    config["profile"] = "tiny"
    config["data"]["crop_max_points"] = 8000
    if method:
        config["method"].update(method)
        config["train"]["checkpoint_every_steps"] = method["steps_per_iteration"]
    else:
        config["train"]["steps"] = 3
    out.write_text(yaml.safe_dump(config))
    return out


def test_configured_steps_and_log_progress(tmp_path: Path) -> None:
    assert _configured_steps(REPO / "configs" / "demo_otoc.yaml") == 300
    assert _configured_steps(REPO / "configs" / "demo_full.yaml") == 300
    log = tmp_path / "log.txt"
    assert _last_step(log) == 0
    log.write_text("2026-01-01 INFO x: step 10/300 loss 1.0\n2026-01-01 INFO x: step 20/300 loss 0.9\n"
                   "2026-01-01 INFO x: wrote model.pt after 20 steps\n")
    assert _last_step(log) == 20


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    otoc = small_config("demo_otoc.yaml", tmp_path / "otoc.yaml", iterations=2, steps_per_iteration=2)
    full = small_config("demo_full.yaml", tmp_path / "full.yaml")
    out = tmp_path / "demo"
    done = subprocess.run([sys.executable, "-m", "wsseg.cli", "demo", "--out", str(out), "--scenes", "3",
                           "--otoc-config", str(otoc), "--full-config", str(full), "--replay-frames", "3"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "ros2 launch wsseg segment.launch.py model:=" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["miou"]) == {"full", "otoc", "otoc-onnx", "otoc-full"}
    assert all(0.0 <= v <= 1.0 for v in summary["miou"].values())
    assert abs(summary["miou"]["otoc"] - summary["miou"]["otoc-onnx"]) < 0.01  # the bundle is the backbone
    replay = summary["replay"]
    assert replay["sent"] == replay["received"] == 3
    assert replay["label_agreement_with_offline"] == 1.0
    assert replay["timings_ms"]["total_ms_median"] > 0
    assert [r["round"] for r in summary["rounds"]] == [1, 2]
    report = (out / "report.md").read_text()
    for picture in ("clicks.png", "rooms.png", "frames.png"):
        assert (out / picture).stat().st_size > 10_000 and f"]({picture})" in report
    assert "| inference |" in report and "segment.launch.py" in report
    commands = (out / "commands.sh").read_text()
    for step in ("data synth", "data supervoxels", "labels simulate", "train --method otoc", "train --method full",
                 "export --checkpoint", "eval --run"):
        assert f"wsseg {step}" in commands
