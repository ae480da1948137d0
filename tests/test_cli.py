"""The ``wsseg`` command: subcommands come from entry points; missing distributions are named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from wsseg.cli import PROVIDED_BY, missing_distribution_message

WSSEG = str(Path(sys.executable).parent / "wsseg")


def test_commands_of_every_installed_distribution_are_registered() -> None:
    out = subprocess.run([WSSEG, "--help"], capture_output=True, text=True, timeout=60, check=True).stdout
    for command in ("infer", "data", "labels", "annotate", "export", "demo"):
        assert command in out


def test_missing_distribution_is_named() -> None:
    assert missing_distribution_message("train", registered={"infer"}) is not None
    message = missing_distribution_message("export", registered={"infer"})
    assert message is not None and "wsseg-export" in message and "pip install -e export" in message
    assert missing_distribution_message("export", registered={"infer", "export"}) is None
    assert missing_distribution_message("frobnicate", registered={"infer"}) is None
    assert set(PROVIDED_BY.values()) == {"wsseg-training", "wsseg-export"}


def test_errors_exit_non_zero_with_a_message(tmp_path: Path) -> None:
    result = subprocess.run([WSSEG, "export", "--check", str(tmp_path / "none"), "--data", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "wsseg export: error:" in result.stderr and "none" in result.stderr
    assert subprocess.run([WSSEG], capture_output=True, text=True, timeout=60).returncode == 2
