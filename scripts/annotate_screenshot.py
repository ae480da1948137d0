"""Make docs/images/annotate.png: `wsseg annotate` on a synthetic room, used the way a person uses it.

Starts the real server on DATA (a `wsseg data synth --kind indoor` dataset with super-voxels), optionally
with a model for suggestions, opens Debian's chromium headless through Playwright, clicks a few objects of
different classes through the page (class key, then a click where the object is drawn), focuses the first
suggestion, and saves a screenshot of the whole page.

    .venv/bin/python scripts/annotate_screenshot.py --data DATA [--model RUN/model.pt] [--out docs/images/annotate.png]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from wsseg_training.annotate.browser import headless_chromium
from wsseg_training.annotate.server import App, make_server
from wsseg_training.annotate.session import Session
from wsseg_training.annotate.suggest import load_model
from wsseg_training.data.dataset import Dataset

from wsseg.core.scene import Scene


def objects(scene: Scene, below_z: float, count: int = 6) -> list[tuple[int, np.ndarray]]:
    """(class, member points under the height clip) of up to ``count`` large objects of different classes."""
    out, seen = [], set()
    for obj in np.unique(scene.instance[scene.instance >= 0]):  # type: ignore[index]
        members = np.flatnonzero((scene.instance == obj) & (scene.xyz[:, 2] <= below_z))
        if members.size < 300:
            continue
        cls = int(scene.semantic[members[0]])  # type: ignore[index]
        if cls not in seen:
            out.append((cls, members))
            seen.add(cls)
        if len(out) == count:
            break
    return out


def visible_pixel(page: Any, base: str, scene: Scene, members: np.ndarray, offset: np.ndarray,
                  clip_z: float) -> list[float] | None:
    """A pixel where a click picks one of ``members`` (the object is in front there), asked of the server."""
    rng = np.random.default_rng(0)
    for point in rng.choice(members, size=min(40, members.size), replace=False):
        pixel = page.evaluate("(p) => window.wsseg.view.project(p)", (scene.xyz[point] - offset).tolist())
        if pixel is None:
            continue
        ray = page.evaluate("([x, y]) => { const r = document.getElementById('canvas').getBoundingClientRect();"
                            " return window.wsseg.view.rayAt(x - r.left, y - r.top); }", [round(v) for v in pixel])
        body = json.dumps({**ray, "max_z": clip_z}).encode()
        request = urllib.request.Request(f"{base}/api/scene/{scene_name_of(page)}/pick", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            picked = json.loads(response.read())["point"]
        if picked is not None and scene.instance[picked] == scene.instance[point]:  # type: ignore[index]
            return [round(v) for v in pixel]
    return None


def scene_name_of(page: Any) -> str:
    return str(page.evaluate("window.wsseg.app.scene"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--scene", default=None, help="scene to show (default: the first)")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--hide-top-m", type=float, default=0.5, help="height slider: hide this much of the top")
    parser.add_argument("--out", type=Path, default=Path("docs/images/annotate.png"))
    args = parser.parse_args()
    dataset = Dataset(args.data)
    scene_name = args.scene or dataset.scene_names()[0]
    work = Path(tempfile.mkdtemp(prefix="wsseg_annotate_shot_"))
    session = Session(dataset, "clicks", work / "clicks.json", [scene_name])
    model = load_model(args.model) if args.model else None
    server = make_server(App(session=session, model=model, model_name=args.model.name if args.model else None),
                         "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with headless_chromium(1400, 860) as context:
            page = context.new_page()
            base = f"http://127.0.0.1:{server.server_address[1]}"
            page.goto(f"{base}/")
            page.wait_for_function("window.wsseg && window.wsseg.ready", timeout=300_000)
            offset = np.asarray(page.evaluate("window.wsseg.app.info.offset"))
            # hide the ceiling with the height slider, as one does indoors
            page.evaluate(f"""() => {{ const s = document.getElementById('clip-z');
                              s.value = String(Number(s.max) - {args.hide_top_m});
                              s.dispatchEvent(new Event('input')); }}""")
            scene = dataset.load(scene_name)
            clip_z = page.evaluate("window.wsseg.app.clipZ")
            for cls, members in objects(scene, clip_z + offset[2]):
                pixel = visible_pixel(page, base, scene, members, offset, clip_z)
                if pixel is None:
                    continue
                page.evaluate(f"window.wsseg.setClass({cls})")
                before = page.evaluate("document.body.dataset.revision")
                page.mouse.click(round(pixel[0]), round(pixel[1]))
                page.wait_for_function(f"document.body.dataset.revision !== '{before}'", timeout=120_000)
                page.wait_for_function("window.wsseg.app.busy === 0", timeout=120_000)
            if model is not None:
                page.wait_for_function("window.wsseg.app.suggestions.length > 0", timeout=300_000)
            page.wait_for_timeout(500)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out))
    finally:
        server.shutdown()
        session.close()
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
