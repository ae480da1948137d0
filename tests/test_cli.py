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


def test_help_lists_every_command_with_its_own_help_text() -> None:
    """COMMAND_HELP (what `wsseg --help` shows without loading a command) equals each command's own help."""
    import argparse

    from wsseg.cli import COMMAND_HELP, build_parser

    subparsers = next(a for a in build_parser(None)._actions if isinstance(a, argparse._SubParsersAction))
    registered = {action.dest: action.help for action in subparsers._choices_actions}
    assert registered == {name: COMMAND_HELP[name] for name in registered}
    out = subprocess.run([WSSEG, "--help"], capture_output=True, text=True, timeout=60, check=True).stdout
    for name, help_text in registered.items():
        assert name in out and help_text.split()[0] in out


IMPORTS_PROBE = """
import sys, runpy
sys.argv = ["wsseg", *sys.argv[1:]]
try:
    runpy.run_module("wsseg.cli", run_name="__main__")
except SystemExit:
    pass
heavy = sorted(m for m in ("torch", "matplotlib", "open3d", "scipy", "numba") if m in sys.modules)
print("HEAVY", ",".join(heavy))
"""


def _heavy_imports(*args: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", IMPORTS_PROBE, *args], capture_output=True, text=True,
                         timeout=120).stdout
    line = [x for x in out.splitlines() if x.startswith("HEAVY")][-1]
    return [m for m in line.removeprefix("HEAVY ").split(",") if m]


def test_help_and_infer_import_nothing_heavy(tmp_path: Path) -> None:
    """`wsseg --help` loads no command; `wsseg infer` (even failing on a missing bundle) needs no torch/matplotlib."""
    assert _heavy_imports("--help") == []
    assert _heavy_imports("infer", "--help") == []
    heavy = _heavy_imports("infer", "--model", str(tmp_path / "none"), "--in", "x.ply", "--out", str(tmp_path / "o"))
    assert "torch" not in heavy and "matplotlib" not in heavy and "open3d" not in heavy


def test_node_module_imports_neither_torch_nor_matplotlib() -> None:
    probe = ("import sys; import wsseg.ros.segment_node, wsseg.runtime.segmenter; "
             "print(sorted(m for m in ('torch', 'matplotlib', 'open3d') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
