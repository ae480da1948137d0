"""``wsseg annotate``: make weak labels by hand in a browser (clicks, scene tags, sub-cloud tags).

Serves a local web app (127.0.0.1 by default) over a dataset directory; every edit is saved at once to
the weak-label file (atomically), which ``wsseg labels validate`` accepts and ``wsseg train`` reads.
With ``--model`` (a bundle or a checkpoint) the view colours by the model's prediction and suggests the
next clicks (uncertain super-voxels, weighted by size and distance to the clicks made).  See
docs/annotate.md.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import signal
import webbrowser
from pathlib import Path

from wsseg_training.annotate.server import THREE_DIR, App, make_server
from wsseg_training.annotate.session import ANNOTATABLE_KINDS, Session, SubcloudGrid
from wsseg_training.annotate.suggest import MEASURES, SuggestionWeights, load_model
from wsseg_training.data.dataset import Dataset
from wsseg_training.engine.config import load_config
from wsseg_training.labels.cli import WEAK_LABELS_DIR
from wsseg_training.labels.simulate import SUBCLOUD_GRIDS
from wsseg_training.methods.otoc.config import OtocConfig
from wsseg_training.methods.otoc.method import otoc_config_from_options

log = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "annotate", help="label a dataset by hand in the browser (clicks, scene tags, sub-cloud tags)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", required=True, type=Path, help="dataset directory (with dataset.yaml)")
    parser.add_argument("--labels", type=Path, default=None,
                        help=f"weak-label file, read when it exists, written after every edit "
                             f"(default DATA/{WEAK_LABELS_DIR}/<kind>-annotated.json)")
    parser.add_argument("--kind", choices=ANNOTATABLE_KINDS, default=None,
                        help="what to label (default: the kind of an existing --labels file, else clicks)")
    parser.add_argument("--model", type=Path, default=None,
                        help="model bundle directory or checkpoint (.pt): prediction colours and click suggestions")
    parser.add_argument("--port", type=int, default=8765, help="TCP port (default %(default)s)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default %(default)s, this machine only; 0.0.0.0 shares the "
                             "tool with everyone who can reach this machine)")
    parser.add_argument("--split", default=None, help="only the scenes of this split (default: every scene)")
    parser.add_argument("--max-display-points", type=int, default=400_000,
                        help="points drawn per scene (a seeded sample; picking always uses every point)")
    parser.add_argument("--config", type=Path, default=None,
                        help="training YAML whose 1T1C rule (method.otoc.click_radius_m, structure_classes) the "
                             "click-expansion preview follows (default: OtocConfig's defaults)")
    parser.add_argument("--radius-m", type=float, default=2.0, help="subcloud_tags: ball radius, metres")
    parser.add_argument("--grid", choices=SUBCLOUD_GRIDS, default="paper", help="subcloud_tags: seeding grid")
    parser.add_argument("--measure", choices=MEASURES, default="entropy", help="suggestions: uncertainty measure")
    parser.add_argument("--open", action="store_true", help="open the page in the default browser")
    parser.set_defaults(handler=run)


def existing_kind(path: Path) -> str | None:
    """The ``kind`` field of an existing weak-label file (None when absent or unreadable; the session's
    loader reports what is wrong with it)."""
    try:
        return str(json.loads(path.read_text()).get("kind"))
    except (OSError, ValueError, AttributeError):
        return None


def expansion_rule(config: Path | None) -> OtocConfig:
    if config is None:
        return OtocConfig()
    return otoc_config_from_options(load_config(config).method)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def stop_on_signals() -> None:
    """Ctrl+C and SIGTERM stop the server cleanly (the file is already saved; the lock is released), also
    when the shell that started it in the background made it ignore SIGINT."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)


def run(args: argparse.Namespace) -> int:
    dataset = Dataset(args.data)  # DatasetError: "DIR: not a wsseg dataset (no dataset.yaml)"
    if not (THREE_DIR / "build" / "three.module.js").is_file():
        raise ValueError(f"three.js is not installed in {THREE_DIR.parent} (run `make setup`, or "
                         f"`npm ci --prefix {THREE_DIR.parent.parent}`)")
    if args.max_display_points <= 0:
        raise ValueError(f"--max-display-points {args.max_display_points} must be > 0")
    kind = args.kind
    labels = args.labels
    if labels is not None and labels.exists() and kind is None:
        kind = existing_kind(labels)
    kind = kind if kind in ANNOTATABLE_KINDS else (kind or "clicks")
    labels = labels or dataset.root / WEAK_LABELS_DIR / f"{kind}-annotated.json"
    scenes = dataset.scene_names(args.split)
    session = Session(dataset, kind, labels, scenes, expansion=expansion_rule(args.config),
                      grid=SubcloudGrid(radius_m=args.radius_m, grid=args.grid))
    try:
        model = load_model(args.model) if args.model is not None else None
        if model is not None and tuple(model.classes.names) != tuple(dataset.classes.names):
            raise ValueError(f"--model {args.model}: trained for classes {list(model.classes.names)}, the dataset "
                             f"has {list(dataset.classes.names)}")
        app = App(session=session, model=model, model_name=None if args.model is None else str(args.model),
                  max_display_points=args.max_display_points, weights=SuggestionWeights(measure=args.measure))
        try:
            server = make_server(app, args.host, args.port)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ValueError(f"port {args.port} on {args.host} is in use (another wsseg annotate?); "
                                 "choose another with --port N") from None
            raise ValueError(f"cannot listen on {args.host}:{args.port} ({exc.strerror})") from None
        host, port = server.server_address[:2]
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
        if args.host not in LOOPBACK:
            print(f"wsseg annotate: listening on {args.host}: anyone who can reach this machine can edit {labels}")
        print(f"wsseg annotate: {dataset.info.name} ({kind}, {len(scenes)} scene(s)) at {url}  -- every edit is "
              f"saved to {labels}; Ctrl+C stops", flush=True)
        if args.open:
            webbrowser.open(url)
        stop_on_signals()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
        print(f"wsseg annotate: stopped; {labels} holds {len(session.weak_labels().header.scene_points)} "
              "labelled scene(s)")
        return 0
    finally:
        session.close()
