"""Fixtures of the annotation tool's tests: the known dataset, a live server, a real headless Chromium."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from wsseg_training.annotate.browser import CHROMIUM, headless_chromium
from wsseg_training.annotate.server import THREE_DIR, App, make_server
from wsseg_training.annotate.session import Session
from wsseg_training.data.dataset import Dataset

from tests.annotate.scenes import write_dataset


@pytest.fixture
def dataset(tmp_path: Path) -> Dataset:
    return Dataset(write_dataset(tmp_path / "data"))


@contextmanager
def running_server(app: App) -> Iterator[str]:
    """Serve ``app`` on an ephemeral loopback port in a thread; yields the base URL."""
    server = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        app.session.close()


@pytest.fixture
def serve(dataset: Dataset) -> Iterator:
    """``serve(kind, path)`` -> base URL of a live server over the known dataset."""
    stack: list = []

    def start(kind: str, path: Path, **app_options: object) -> str:
        session = Session(dataset, kind, path, dataset.scene_names())
        context = running_server(App(session=session, **app_options))  # type: ignore[arg-type]
        stack.append(context)
        return context.__enter__()

    yield start
    for context in reversed(stack):
        context.__exit__(None, None, None)


@pytest.fixture(scope="session")
def browser() -> Iterator:
    """A real headless Chromium (Debian's package, scripts/setup.sh) driven by Playwright, fresh profile."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is not installed (Debian package 'chromium'; scripts/setup.sh installs it)")
    if not (THREE_DIR / "build" / "three.module.js").is_file():
        pytest.skip(f"three.js is not installed in {THREE_DIR} (run `make setup`)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements.txt)")
    with headless_chromium() as context:
        yield context
