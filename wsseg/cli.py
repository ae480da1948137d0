"""The ``wsseg`` command: subcommands come from the ``wsseg.commands`` entry points.

Each installed distribution registers its own commands (``wsseg`` itself:
``infer``; ``wsseg-training``: ``data``, ``labels``, ``train``, ``eval``, ``annotate``;
``wsseg-export``: ``export``, ``demo``).  An entry point is a callable
``register(subparsers)`` that adds one sub-parser and sets its ``handler``
default to a function ``handler(args) -> int``.
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

log = logging.getLogger("wsseg")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wsseg", description="Weakly supervised 3D semantic segmentation.")
    parser.add_argument("--version", action="version", version=f"wsseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        entry.load()(subparsers)
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
    parser = build_parser()
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
