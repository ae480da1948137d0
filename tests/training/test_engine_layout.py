"""The engine and the methods: methods see the engine's pieces, never the training loop (no import cycle), and
there is one whole-scene inference pass."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO_ROOT

TRAINING = REPO_ROOT / "training" / "wsseg_training"


def test_methods_never_import_the_training_loop() -> None:
    offenders = [str(path.relative_to(REPO_ROOT)) for path in (TRAINING / "methods").rglob("*.py")
                 if re.search(r"^\s*(from wsseg_training\.engine\.loop import|import wsseg_training\.engine\.loop"
                              r"|from wsseg_training\.engine import loop)", path.read_text(), re.MULTILINE)]
    assert offenders == []
    code = ("import sys, wsseg_training.methods, wsseg_training.methods.base\n"
            "print('wsseg_training.engine.loop' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"


def test_one_whole_scene_inference_pass() -> None:
    """Only engine/inference.py runs a network over prepared whole scenes in eval mode."""
    callers = []
    for path in TRAINING.rglob("*.py"):
        text = path.read_text()
        if path.name != "inference.py" and "prepare_cloud(" in text and "forward_features(" in text:
            callers.append(str(path.relative_to(REPO_ROOT)))
    assert callers == []
