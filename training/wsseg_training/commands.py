"""``wsseg`` subcommands provided by wsseg-training (registered as ``wsseg.commands`` entry points).

``wsseg data <sub>`` and ``wsseg labels <sub>`` group several tools; each tool
module exposes ``register(subparsers)`` and is listed below.
"""

from __future__ import annotations

import argparse
import importlib

DATA_TOOLS = (
    "wsseg_training.data.convert_cli",
    "wsseg_training.data.synth_cli",
    "wsseg_training.data.show_cli",
    "wsseg_training.data.supervoxels_cli",
)
LABEL_TOOLS = ("wsseg_training.labels.cli", "wsseg_training.annotate.interop_cli")


def _register_group(
    subparsers: argparse._SubParsersAction, name: str, help_text: str, modules: tuple[str, ...]
) -> None:
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    tools = parser.add_subparsers(dest=f"{name}_command", metavar="<tool>", required=True)
    for module_name in modules:
        importlib.import_module(module_name).register(tools)


def register_data(subparsers: argparse._SubParsersAction) -> None:
    _register_group(subparsers, "data", "convert, synthesize, render and over-segment datasets", DATA_TOOLS)


def register_labels(subparsers: argparse._SubParsersAction) -> None:
    _register_group(subparsers, "labels", "simulate, inspect, validate, import and export weak-label files",
                    LABEL_TOOLS)
