"""The annotation tool in a real headless Chromium: clicks, undo, reload, scene tags, a screenshot."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from wsseg_training.data.dataset import Dataset
from wsseg_training.labels import load_weak_labels

from tests.annotate.scenes import CLASSES
from wsseg.cli import main as wsseg_main

READY = "window.wsseg && window.wsseg.ready"
#: points the test clicks (scene frame, metres): on the table top, the chair seat, the wall
TARGETS = {"table": (1.0, 1.2, 0.75), "chair": (2.15, 0.85, 0.45), "wall": (1.5, 3.0, 1.5)}


def point_index(dataset: Dataset, xyz: tuple[float, float, float]) -> int:
    scene = dataset.load("room_a")
    distance = np.linalg.norm(scene.xyz - np.asarray(xyz, np.float32), axis=1)
    assert distance.min() < 1e-4, f"no grid point at {xyz}"
    return int(distance.argmin())


def open_page(browser, url: str):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_function(READY, timeout=20_000)
    return page, errors


def click_point(page, xyz: tuple[float, float, float], offset: list[float]) -> None:
    """Click the pixel where scene point ``xyz`` is drawn and wait until the server answered."""
    before = page.evaluate("document.body.dataset.revision")
    display = [xyz[k] - offset[k] for k in range(3)]
    x, y = page.evaluate("(p) => window.wsseg.view.project(p)", display)
    page.mouse.click(round(x), round(y))
    page.wait_for_function(f"document.body.dataset.revision !== '{before}'", timeout=10_000)


def colour_pixels(png: bytes, colour: tuple[int, int, int], tolerance: int = 40) -> int:
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int64)
    return int((np.abs(image - np.asarray(colour)).max(axis=2) <= tolerance).sum())


def test_click_three_objects_undo_one_reload_and_the_file_has_two(browser, serve, dataset: Dataset,
                                                                   tmp_path: Path) -> None:
    labels = tmp_path / "clicks.json"
    url = serve("clicks", labels)
    page, errors = open_page(browser, url)
    offset = page.evaluate("window.wsseg.app.info.offset")
    for key, target in (("3", "table"), ("4", "chair"), ("2", "wall")):
        page.keyboard.press(key)
        click_point(page, TARGETS[target], offset)
    assert len(page.locator("#click-list li").all()) == 3
    page.keyboard.press("Control+z")  # the wall click
    page.wait_for_function("document.querySelectorAll('#click-list li').length === 2", timeout=10_000)
    page.wait_for_function("window.wsseg.app.labels !== null")
    shot = page.locator("#canvas").screenshot(path=str(tmp_path / "shot.png"))
    page.reload()
    page.wait_for_function(READY, timeout=20_000)
    assert page.locator("#click-list li").count() == 2  # the state came back from the server
    assert errors == []
    page.close()

    document = json.loads(labels.read_text())
    rows = document["scenes"]["room_a"]["clicks"]
    expected = [[point_index(dataset, TARGETS["table"]), 2, 0], [point_index(dataset, TARGETS["chair"]), 3, 1]]
    assert sorted(rows) == sorted(expected)
    assert list(document["scenes"]) == ["room_a"]
    loaded = load_weak_labels(labels, dataset)  # what `wsseg labels validate` runs: fingerprint, classes
    assert loaded.header.fingerprint == document["dataset"]["fingerprint"]
    assert wsseg_main(["labels", "validate", str(labels), "--data", str(dataset.root)]) == 0

    image = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"))
    assert image.std() > 10, "blank screenshot"
    table, chair, wall = (CLASSES.palette[c] for c in (2, 3, 1))
    # the clicked objects' super-voxels are drawn in their class colours; the undone wall click is gone
    assert colour_pixels(shot, table) > 300 and colour_pixels(shot, chair) > 100
    assert colour_pixels(shot, wall) < 20


def test_scene_tags_are_ticked_and_saved(browser, serve, dataset: Dataset, tmp_path: Path) -> None:
    labels = tmp_path / "tags.json"
    url = serve("scene_tags", labels)
    page, errors = open_page(browser, url)
    for cls in (0, 2):
        before = page.evaluate("document.body.dataset.revision")
        page.check(f"#tag-{cls}")
        page.wait_for_function(f"document.body.dataset.revision !== '{before}'", timeout=10_000)
    page.reload()
    page.wait_for_function(READY, timeout=20_000)
    assert page.is_checked("#tag-0") and page.is_checked("#tag-2") and not page.is_checked("#tag-1")
    assert errors == []
    page.close()
    tags = load_weak_labels(labels, dataset)
    assert tags.kind == "scene_tags" and tags.tags == {"room_a": (0, 2)}


@pytest.mark.parametrize("kind", ["subcloud_tags"])
def test_subcloud_ball_is_selected_by_a_click_and_tagged(browser, serve, dataset: Dataset, tmp_path: Path,
                                                         kind: str) -> None:
    labels = tmp_path / "subclouds.json"
    url = serve(kind, labels)
    page, errors = open_page(browser, url)
    balls = page.evaluate("window.wsseg.app.info.balls")
    offset = page.evaluate("window.wsseg.app.info.offset")
    x, y = page.evaluate("(p) => window.wsseg.view.project(p)", [TARGETS["table"][k] - offset[k] for k in range(3)])
    page.mouse.click(round(x), round(y))
    page.wait_for_function("window.wsseg.app.selectedBall !== null", timeout=10_000)
    selected = page.evaluate("window.wsseg.app.selectedBall")
    centre = np.asarray(balls[selected]["centre"]) + offset
    nearest = min(range(len(balls)), key=lambda b: np.linalg.norm(np.asarray(balls[b]["centre"]) + offset
                                                                  - np.asarray(TARGETS["table"])))
    assert selected == nearest
    before = page.evaluate("document.body.dataset.revision")
    page.check("#ball-tag-2")
    page.wait_for_function(f"document.body.dataset.revision !== '{before}'", timeout=10_000)
    assert errors == []
    page.close()
    subclouds = load_weak_labels(labels, dataset).scenes["room_a"]  # type: ignore[union-attr]
    assert len(subclouds) == 1 and subclouds[0].classes == (2,)
    assert np.allclose(subclouds[0].centre, centre, atol=1e-6)
