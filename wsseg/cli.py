"""The ``wsseg`` command: subcommands come from the ``wsseg.commands`` entry points.

Each installed distribution registers its own commands (``wsseg`` itself:
``infer``; ``wsseg-training``: ``data``, ``labels``, ``train``, ``eval``, ``annotate``;
``wsseg-export``: ``export``, ``demo``).  An entry point is a callable
``register(subparsers)`` that adds one sub-parser and sets its ``handler``
default to a function ``handler(args) -> int``.

Start-up stays fast (``wsseg --help`` well under a second) because only the entry point of
the command being run is loaded: the command list of ``wsseg --help`` comes from the entry
points' metadata and :data:`COMMAND_HELP` (a test keeps it equal to each command's own help),
so listing the commands imports neither torch nor matplotlib nor Open3D.
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import entry_points

from wsseg import __version__

ENTRY_POINT_GROUP = "wsseg.commands"

#: Commands provided by distributions that may be missing on a robot install.
PROVIDED_BY = {
    "data": "wsseg-training",
    "labels": "wsseg-training",
    "train": "wsseg-training",
    "eval": "wsseg-training",
    "annotate": "wsseg-training",
    "export": "wsseg-export",
    "demo": "wsseg-export",
}

#: The one-line help ``wsseg --help`` shows for each known command, without loading it
#: (``tests/test_cli.py`` checks that it equals the help each command registers).
COMMAND_HELP = {
    "annotate": "label a dataset by hand in the browser (clicks, scene tags, sub-cloud tags)",
    "data": "convert, synthesize, render and over-segment datasets",
    "demo": "end-to-end demo: clicks -> 1T1C -> export -> ROS 2 node",
    "eval": "evaluate a trained run or a model bundle on a dataset split (mIoU, report)",
    "export": "export a checkpoint to a model bundle (ONNX + model.yaml), or --check a bundle",
    "infer": "segment a point-cloud file (PLY/PCD/NPZ) with a model bundle",
    "labels": "simulate, inspect, validate, import and export weak-label files",
    "segment-bag": "segment the PointCloud2 messages of a ROS 2 bag into a new bag",
    "train": "train a segmentation method (full, weakly supervised methods) into a run directory",
}

log = logging.getLogger("wsseg")


def _command_of(argv: list[str]) -> str | None:
    """The sub-command named on the command line (the first word that is not a global option)."""
    for word in argv:
        if word in ("-v", "--verbose"):
            continue
        return None if word.startswith("-") else word
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``wsseg`` parser; only the entry point of the command in ``argv`` is loaded.

    ``argv=None`` loads every command (for tests and documentation tools).
    """
    parser = argparse.ArgumentParser(prog="wsseg", description="Weakly supervised 3D semantic segmentation.")
    parser.add_argument("--version", action="version", version=f"wsseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    command = _command_of(argv) if argv is not None else None
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if argv is None or entry.name == command:
            entry.load()(subparsers)
        else:  # listed in --help, loaded only when run
            help_text = COMMAND_HELP.get(entry.name, f"(from {entry.dist.name if entry.dist else 'a plug-in'})")
            subparsers.add_parser(entry.name, help=help_text, add_help=False)
    return parser


def missing_distribution_message(command: str, registered: set[str]) -> str | None:
    """The message for a known command whose distribution is not installed (None otherwise)."""
    if command not in PROVIDED_BY or command in registered:
        return None
    distribution = PROVIDED_BY[command]
    return (
        f"wsseg: '{command}' is provided by the {distribution} distribution, which is not installed "
        f"(workstation: `make setup`, or `pip install -e {distribution.removeprefix('wsseg-')}` from the repository)"
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    registered = {e.name for e in entry_points(group=ENTRY_POINT_GROUP)}
    message = missing_distribution_message(argv[0], registered) if argv else None
    if message:
        print(message, file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except (ValueError, OSError) as exc:
        print(f"wsseg {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"wsseg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
