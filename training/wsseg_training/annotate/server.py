"""The local web server of ``wsseg annotate``: static pages, three.js, and a small JSON / binary API.

Routes (``<s>`` = a scene name; binary answers are little-endian, one row per displayed point, in the
order of :func:`display.display_indices`):

* ``GET /`` the app; ``GET /static/<file>`` its files; ``GET /vendor/three/...`` three.js from the
  ``npm ci`` install (``build/`` and ``examples/jsm/`` only);
* ``GET /api/session`` dataset, kind, class table, scenes, model, file;  ``GET /api/progress``;
* ``GET /api/scene/<s>`` the scene's metadata, its state and revision;
* ``GET /api/scene/<s>/points`` float32 (M, 3), metres, minus the scene's ``offset`` (float32 precision);
* ``GET /api/scene/<s>/colours?mode=M`` uint8 (M, 3);  ``GET /api/scene/<s>/labels`` int16 (M,): the
  click expansion of 1T1C (``-1`` unlabelled);  ``GET /api/scene/<s>/prediction`` int16 (M,);
* ``GET /api/scene/<s>/suggestions?count=K`` the next K click suggestions (with ``--model``);
* ``POST /api/scene/<s>/pick`` ``{origin, direction, pixel_angle_rad, radius_px, max_z}`` (display frame;
  ``max_z``: the view's height clip, points above it are not pickable) ->
  ``{point, xyz}`` (``point`` null when nothing is under the cursor);
* ``POST /api/scene/<s>/click`` the same plus ``class``: pick, then add the click (one round trip);
* ``POST /api/scene/<s>/edit`` an edit operation (:mod:`wsseg_training.annotate.state`);
  ``POST /api/scene/<s>/undo`` / ``redo``.

Errors answer ``{"error": "..."}`` with status 400 (bad request) or 404 (unknown scene or route) and are
shown by the page; the server keeps running.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np

from wsseg_training.annotate.display import available_modes, default_mode, display_indices, mode_colours
from wsseg_training.annotate.picking import Ray, pick_point
from wsseg_training.annotate.session import Session
from wsseg_training.annotate.suggest import ProbabilityModel, SuggestionWeights, rank_suggestions

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"
THREE_DIR = WEB_DIR / "node_modules" / "three"
THREE_PARTS = ("build", "examples/jsm")
MAX_BODY_BYTES = 1 << 16
STATIC_FILES = ("index.html", "app.js", "view.js", "panels.js", "style.css")


class ApiError(Exception):
    """An error the page shows; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class App:
    """What the handlers share: the session, the optional model, display settings and caches."""

    session: Session
    model: ProbabilityModel | None = None
    model_name: str | None = None
    max_display_points: int = 400_000
    pick_radius_px: float = 4.0
    weights: SuggestionWeights = field(default_factory=SuggestionWeights)
    _display: dict[str, np.ndarray] = field(default_factory=dict)
    _offset: dict[str, np.ndarray] = field(default_factory=dict)
    _prob: dict[str, np.ndarray] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def display(self, name: str) -> np.ndarray:
        if name not in self._display:
            self._display[name] = display_indices(self.session.scene(name).num_points, self.max_display_points, name)
        return self._display[name]

    def offset(self, name: str) -> np.ndarray:
        """(3,) float64: the centre of the scene's bounding box; the display frame is the scene frame minus it."""
        if name not in self._offset:
            xyz = self.session.scene(name).xyz
            self._offset[name] = (xyz.min(axis=0).astype(np.float64) + xyz.max(axis=0).astype(np.float64)) / 2.0
        return self._offset[name]

    def probabilities(self, name: str) -> np.ndarray:
        if self.model is None:
            raise ApiError("no model: start with --model BUNDLE_OR_CHECKPOINT for predictions and suggestions")
        with self._lock:  # one inference at a time; a scene's probabilities are computed once
            if name not in self._prob:
                self._prob = {name: self.model.probabilities(self.session.scene(name))}
            return self._prob[name]


# ------------------------------------------------------------------------------------------------ the API


def scene_info(app: App, name: str) -> dict[str, Any]:
    session = app.session
    scene = session.scene(name)
    offset = app.offset(name)
    info: dict[str, Any] = {
        "name": name, "num_points": scene.num_points, "display_points": int(app.display(name).size),
        "offset": offset.tolist(),
        "bounds": [(scene.xyz.min(axis=0) - offset).tolist(), (scene.xyz.max(axis=0) - offset).tolist()],
        "modes": available_modes(scene, app.model is not None), "default_mode": default_mode(scene),
        "has_supervoxels": scene.supervoxel is not None, **edit_answer(app, name),
    }
    if session.kind == "subcloud_tags":
        balls = session.balls(name)
        info["balls"] = [{"centre": (c - offset).tolist(), "points": int(p)} for c, p in zip(balls.centres,
                                                                                            balls.points, strict=True)]
        info["radius_m"] = balls.radius_m
    return info


def session_info(app: App) -> dict[str, Any]:
    session = app.session
    classes = session.dataset.classes
    rule = session.expansion
    return {
        "dataset": session.dataset.info.name, "root": str(session.dataset.root), "kind": session.kind,
        "file": str(session.path), "scenes": session.scenes, "model": app.model_name,
        "classes": [{"id": i, "name": n, "colour": list(c)} for i, (n, c) in enumerate(zip(classes.names,
                                                                                          classes.palette,
                                                                                          strict=True))],
        "expansion": {"click_radius_m": rule.click_radius_m, "structure_classes": rule.structure_classes},
        "pick_radius_px": app.pick_radius_px,
    }


def _ray(body: dict[str, Any], app: App, name: str) -> Ray:
    try:
        ray = Ray.from_lists(body.get("origin"), body.get("direction"), body.get("pixel_angle_rad", 0.0))
    except (TypeError, ValueError) as exc:
        raise ApiError(f"pick: {exc}") from None
    return Ray(origin=ray.origin + app.offset(name), direction=ray.direction, pixel_angle_rad=ray.pixel_angle_rad)


def pick(app: App, name: str, body: dict[str, Any]) -> int | None:
    radius = body.get("radius_px", app.pick_radius_px)
    if isinstance(radius, bool) or not isinstance(radius, int | float) or not 0 <= radius <= 50:
        raise ApiError(f"pick: radius_px must be a number in [0, 50], got {radius!r}")
    xyz = app.session.scene(name).xyz
    mask = None
    max_z = body.get("max_z")
    if max_z is not None:  # the view hides points above this height (display frame, metres)
        if isinstance(max_z, bool) or not isinstance(max_z, int | float):
            raise ApiError(f"pick: max_z must be a number (metres) or null, got {max_z!r}")
        mask = xyz[:, 2] <= float(max_z) + app.offset(name)[2]
    return pick_point(xyz, _ray(body, app, name), radius_px=float(radius), mask=mask)


def edit_answer(app: App, name: str) -> dict[str, Any]:
    """The scene's state (clicks with their display-frame xyz for the markers), revision and undo/redo flags."""
    session = app.session
    with session.lock:
        history = session.history(name)
        state = history.state.to_json()
        answer = {"revision": session.revisions[name], "state": state,
                  "can_undo": bool(history.undo_stack), "can_redo": bool(history.redo_stack)}
    xyz, offset = session.scene(name).xyz, app.offset(name)
    for click in state["clicks"]:
        click["xyz"] = (xyz[click["point"]] - offset).tolist()
    return answer


def suggestions(app: App, name: str, count: int) -> list[dict[str, Any]]:
    scene = app.session.scene(name)
    if scene.supervoxel is None:
        raise ApiError(f"scene {name!r} has no super-voxels; suggestions rank super-voxels: run "
                       f"`wsseg data supervoxels --data {app.session.dataset.root}`")
    clicked = [c.point for c in app.session.history(name).state.clicks]
    offset = app.offset(name)
    ranked = rank_suggestions(scene.xyz, scene.supervoxel, app.probabilities(name), np.asarray(clicked, np.int64),
                              count, app.weights)
    return [{**s.to_json(), "xyz": (scene.xyz[s.point] - offset).tolist()} for s in ranked]


def get(app: App, path: str, query: dict[str, list[str]]) -> Any:
    """Answer a GET under ``/api``: JSON-able data or bytes."""
    parts = [unquote(p) for p in path.strip("/").split("/")]
    if parts == ["session"]:
        return session_info(app)
    if parts == ["progress"]:
        return app.session.progress()
    if len(parts) < 2 or parts[0] != "scene":
        raise ApiError(f"unknown route /api/{path}", HTTPStatus.NOT_FOUND)
    name = _scene_name(app, parts[1])
    what = parts[2] if len(parts) > 2 else ""
    index = app.display(name) if what else None
    if what == "":
        return scene_info(app, name)
    if what == "points":
        xyz = app.session.scene(name).xyz[index].astype(np.float64) - app.offset(name)
        return xyz.astype("<f4").tobytes()
    if what == "colours":
        mode = query.get("mode", ["rgb"])[0]
        prediction = app.probabilities(name).argmax(axis=1) if mode == "prediction" else None
        try:
            colours = mode_colours(app.session.scene(name), mode, index, prediction, app.session.dataset.classes)
        except ValueError as exc:
            raise ApiError(str(exc)) from None
        return np.ascontiguousarray(colours, dtype=np.uint8).tobytes()
    if what == "labels":
        return app.session.expanded_labels(name)[index].astype("<i2").tobytes()
    if what == "prediction":
        return app.probabilities(name).argmax(axis=1)[index].astype("<i2").tobytes()
    if what == "suggestions":
        count = query.get("count", ["5"])[0]
        if not count.isdigit() or not 1 <= int(count) <= 100:
            raise ApiError(f"suggestions: count must be an integer in 1..100, got {count!r}")
        return {"suggestions": suggestions(app, name, int(count))}
    raise ApiError(f"unknown route /api/{path}", HTTPStatus.NOT_FOUND)


def post(app: App, path: str, body: Any) -> Any:
    """Answer a POST under ``/api``."""
    parts = [unquote(p) for p in path.strip("/").split("/")]
    if len(parts) != 3 or parts[0] != "scene":
        raise ApiError(f"unknown route /api/{path}", HTTPStatus.NOT_FOUND)
    name, what = _scene_name(app, parts[1]), parts[2]
    if not isinstance(body, dict):
        raise ApiError(f"/api/{path}: the request body must be a JSON object")
    session = app.session
    if what in ("pick", "click"):
        point = pick(app, name, body)
        answer: dict[str, Any] = {"point": point}
        if point is not None:
            answer["xyz"] = (session.scene(name).xyz[point] - app.offset(name)).tolist()
            if what == "click":
                session.edit(name, {"op": "add_click", "point": point, "class": body.get("class")})
        return {**answer, **edit_answer(app, name)} if what == "click" else answer
    if what == "edit":
        session.edit(name, body)
        return edit_answer(app, name)
    if what in ("undo", "redo"):
        done = session.undo(name) if what == "undo" else session.redo(name)
        return {"done": done, **edit_answer(app, name)}
    raise ApiError(f"unknown route /api/{path}", HTTPStatus.NOT_FOUND)


def _scene_name(app: App, name: str) -> str:
    if name not in app.session.revisions:
        raise ApiError(f"no scene {name!r} in this session", HTTPStatus.NOT_FOUND)
    return name


# ------------------------------------------------------------------------------------------------ HTTP


class Handler(BaseHTTPRequestHandler):
    """Routes requests to :func:`get` / :func:`post` and serves the static files."""

    app: App
    server_version = "wsseg-annotate"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            log.debug("%s: the client went away", self.path)  # a closed tab; nothing to answer

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _answer(self, produce: Any) -> None:
        try:
            data = produce()
        except ApiError as exc:
            self._json(exc.status, {"error": str(exc)})
            return
        except (ValueError, KeyError, OSError) as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc).strip("'\"")})
            return
        if isinstance(data, bytes):
            self._send(HTTPStatus.OK, data, "application/octet-stream")
        else:
            self._json(HTTPStatus.OK, data)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path.startswith("/api/"):
            self._answer(lambda: get(self.app, url.path[len("/api/"):], parse_qs(url.query)))
            return
        if url.path == "/favicon.ico":
            self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
            return
        file = static_file(url.path)
        if file is None:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page {url.path}"})
            return
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if file.suffix == ".js":
            kind = "text/javascript"
        self._send(HTTPStatus.OK, file.read_bytes(), kind)

    def do_POST(self) -> None:
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if not url.path.startswith("/api/") or length > MAX_BODY_BYTES:
            self._json(HTTPStatus.BAD_REQUEST, {"error": f"bad request {url.path} ({length} bytes)"})
            return
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": f"request body is not JSON ({exc.msg})"})
            return
        self._answer(lambda: post(self.app, url.path[len("/api/"):], body))


def static_file(url_path: str) -> Path | None:
    """The file a static URL names, or None (never a path outside the web folder or three's public parts)."""
    if url_path in ("/", "/index.html"):
        return WEB_DIR / "index.html"
    if url_path.startswith("/static/"):
        name = url_path[len("/static/"):]
        return WEB_DIR / name if name in STATIC_FILES else None
    if url_path.startswith("/vendor/three/"):
        relative = url_path[len("/vendor/three/"):]
        if ".." in relative.split("/") or not any(relative.startswith(p + "/") for p in THREE_PARTS):
            return None
        file = THREE_DIR / relative
        return file if file.is_file() else None
    return None


def make_server(app: App, host: str, port: int) -> ThreadingHTTPServer:
    """Bind ``host:port`` (``OSError`` when taken); serve with ``serve_forever()``."""
    handler = type("BoundHandler", (Handler,), {"app": app})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
