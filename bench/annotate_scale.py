"""`wsseg annotate` at a million points: server-side costs and the browser's, measured.

A synthetic scene of ``--points`` points (a 20 x 20 m floor, walls and boxes, random RGB, super-voxels =
0.5 m grid cells) in a one-scene dataset; the real server (``annotate.server``) on a loopback port; a real
headless Chromium (Debian's package through Playwright, software WebGL: no GPU) loads the page.

Server side, per request kind (median of ``--repeats``): scene load (npz), display copy (points + colours
payload), a pick on all N points, the 1T1C click-expansion preview, an edit with its atomic save.  Browser
side: page load to first picture, a click to updated labels (one round trip: pick + edit + labels).  Writes
``bench/results/annotate_scale.json`` and ``.md``; the last line printed is ``RESULT <json>``.  Timings on
a shared 2-core VM are upper bounds.  Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from wsseg_training.annotate.browser import headless_chromium
from wsseg_training.annotate.server import App, make_server
from wsseg_training.annotate.session import Session
from wsseg_training.data.dataset import Dataset, DatasetWriter

from wsseg.core.classes import S3DIS
from wsseg.core.scene import Scene

RESULTS = Path(__file__).resolve().parent / "results"


def big_scene(n: int, seed: int = 0) -> Scene:
    """``n`` points: 60 % floor, 25 % four walls, 15 % in 30 boxes; super-voxel = 0.5 m cell."""
    rng = np.random.default_rng(seed)
    n_floor, n_wall = int(0.6 * n), int(0.25 * n)
    n_box = n - n_floor - n_wall
    floor = np.column_stack([rng.uniform(0, 20, n_floor), rng.uniform(0, 20, n_floor), np.zeros(n_floor)])
    side = rng.integers(0, 4, n_wall)
    u, z = rng.uniform(0, 20, n_wall), rng.uniform(0, 3, n_wall)
    wall = np.column_stack([np.where(side < 2, u, np.where(side == 2, 0.0, 20.0)),
                            np.where(side >= 2, u, np.where(side == 0, 0.0, 20.0)), z])
    centres = rng.uniform([1, 1, 0], [19, 19, 0], size=(30, 3))
    which = rng.integers(0, 30, n_box)
    box = centres[which] + rng.uniform([-0.4, -0.4, 0.0], [0.4, 0.4, 0.8], size=(n_box, 3))
    xyz = np.concatenate([floor, wall, box]).astype(np.float32)
    semantic = np.concatenate([np.full(n_floor, 1), np.full(n_wall, 2), np.full(n_box, 7)]).astype(np.int16)
    cells = np.floor(xyz / 0.5).astype(np.int64)
    _, supervoxel = np.unique(cells, axis=0, return_inverse=True)
    rgb = rng.integers(60, 200, size=(n, 3)).astype(np.uint8)
    return Scene(xyz=xyz, rgb=rgb, semantic=semantic, supervoxel=supervoxel.reshape(-1).astype(np.int32))


def timed(fn: Any, repeats: int) -> tuple[float, Any]:
    """Median wall time in ms of ``repeats`` calls and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), result


def fetch(url: str, body: dict | None = None) -> bytes:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return response.read()


def server_side(url: str, repeats: int, target: list[float], offset: np.ndarray) -> dict[str, Any]:
    """Times of the HTTP routes the page uses (the scene is already loaded and cached)."""
    out: dict[str, Any] = {}
    out["points_ms"], points = timed(lambda: fetch(f"{url}/api/scene/big/points"), repeats)
    out["colours_ms"], _ = timed(lambda: fetch(f"{url}/api/scene/big/colours?mode=rgb"), repeats)
    out["payload_mb"] = round(len(points) * 2 / 1e6, 2)  # positions (12 B) + colours (3 B) + labels (2 B) ~ 2x
    origin = (np.asarray(target) - offset + np.array([-8.0, -8.0, 8.0])).tolist()
    direction = (np.asarray(target) - offset - np.asarray(origin)).tolist()
    ray = {"origin": origin, "direction": direction, "pixel_angle_rad": 0.0015, "radius_px": 4}
    out["pick_ms"], picked = timed(lambda: fetch(f"{url}/api/scene/big/pick", ray), repeats)
    out["picked"] = json.loads(picked)["point"]
    point = int(out["picked"])
    edits = iter(range(repeats * 2))
    out["edit_and_save_ms"], _ = timed(
        lambda: fetch(f"{url}/api/scene/big/edit", {"op": "add_click", "point": point + next(edits), "class": 7}),
        repeats)
    out["labels_preview_ms"], _ = timed(lambda: fetch(f"{url}/api/scene/big/labels"), repeats)
    return out


def browser_side(url: str, repeats: int, target: list[float], offset: np.ndarray) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with headless_chromium(1280, 800) as context:
        page = context.new_page()
        start = time.perf_counter()
        page.goto(url)
        page.wait_for_function("window.wsseg && window.wsseg.ready", timeout=600_000)
        out["page_ready_ms"] = round((time.perf_counter() - start) * 1e3)
        times = []
        for i in range(repeats):
            before = page.evaluate("document.body.dataset.revision")
            x, y = page.evaluate("(p) => window.wsseg.view.project(p)",
                                 (np.asarray(target) - offset + [0.3 * i, 0.0, 0.0]).tolist())
            start = time.perf_counter()
            page.mouse.click(round(x), round(y))
            page.wait_for_function(f"document.body.dataset.revision !== '{before}'", timeout=120_000)
            page.wait_for_function("window.wsseg.app.busy === 0", timeout=120_000)
            times.append((time.perf_counter() - start) * 1e3)
        out["click_to_labels_ms"] = round(statistics.median(times))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--max-display-points", type=int, default=400_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-browser", action="store_true")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wsseg_annotate_scale_"))
    load_start, started = os.getloadavg(), time.perf_counter()
    scene = big_scene(args.points)
    with DatasetWriter(work / "data", "big", S3DIS) as writer:
        writer.add("big", scene, split="train")
    dataset = Dataset(work / "data")
    session = Session(dataset, "clicks", work / "clicks.json", ["big"])
    load_ms, _ = timed(lambda: dataset.load("big"), 1)
    app = App(session=session, max_display_points=args.max_display_points)
    server = make_server(app, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        first_ms, _ = timed(lambda: fetch(f"{url}/api/scene/big"), 1)
        offset = app.offset("big")
        target = [10.0, 10.0, 0.0]
        result: dict[str, Any] = {"points": args.points, "display_points": int(app.display("big").size),
                                  "supervoxels": int(scene.supervoxel.max()) + 1,  # type: ignore[union-attr]
                                  "scene_load_ms": round(load_ms), "first_scene_request_ms": round(first_ms)}
        result["server"] = {k: (round(v, 1) if isinstance(v, float) else v)
                            for k, v in server_side(url, args.repeats, target, offset).items()}
        if not args.skip_browser:
            result["browser"] = browser_side(url, args.repeats, target, offset)
    finally:
        server.shutdown()
        session.close()
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["machine"] = {"device": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                         "loadavg_start": " / ".join(f"{v:.2f}" for v in load_start),
                         "loadavg_end": " / ".join(f"{v:.2f}" for v in os.getloadavg()),
                         "browser": "Debian chromium, headless, --disable-gpu (SwiftShader software WebGL)"}
    s, b = result["server"], result.get("browser", {})
    table = "\n".join([
        "# `wsseg annotate` at scale", "",
        f"One scene of {result['points']:,} points ({result['supervoxels']:,} super-voxels), "
        f"{result['display_points']:,} drawn; {result['machine']['device']}, {result['machine']['cores']} cores "
        f"shared with other jobs (load {result['machine']['loadavg_start']} -> {result['machine']['loadavg_end']}): "
        "upper bounds. Median of "
        f"{args.repeats}.", "",
        "| step | ms |", "|---|---:|",
        f"| scene record load (npz) | {result['scene_load_ms']} |",
        f"| first scene request (load + display sample + bounds) | {result['first_scene_request_ms']} |",
        f"| display positions ({s['payload_mb'] / 2:.1f} MB) | {s['points_ms']} |",
        f"| display colours | {s['colours_ms']} |",
        f"| pick on all {result['points']:,} points | {s['pick_ms']} |",
        f"| click edit + atomic save | {s['edit_and_save_ms']} |",
        f"| 1T1C expansion preview (labels of the drawn points) | {s['labels_preview_ms']} |",
        *([f"| browser: page load to first picture ({result['machine']['browser']}) | {b['page_ready_ms']} |",
           f"| browser: click to updated colours (pick + edit + labels + redraw) | {b['click_to_labels_ms']} |"]
          if b else []),
    ]) + "\n"
    print(table)
    if not args.no_write:
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / "annotate_scale.json").write_text(json.dumps(result, indent=1) + "\n")
        (args.results / "annotate_scale.md").write_text(table)
    print("RESULT " + json.dumps({"server": s, "browser": b}))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
