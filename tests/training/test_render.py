"""Rendering scenes to pictures: the library functions and ``wsseg data show``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from wsseg_training.data.dataset import Dataset, DatasetWriter
from wsseg_training.data.render import (
    TOP_VIEW,
    Panel,
    class_colours,
    class_legend,
    instance_colours,
    project,
    render_panels,
    render_scene,
    render_weak,
)
from wsseg_training.labels import save_weak_labels, simulate_clicks, simulate_subcloud_tags

from wsseg.cli import main as wsseg_main
from wsseg.core.classes import S3DIS
from wsseg.core.scene import Scene, save_scene


def _cloud(n: int = 3000) -> Scene:
    """A floor (class 1) with a red box (class 8, instance 2) on it."""
    rng = np.random.default_rng(0)
    floor = np.column_stack([rng.uniform(0, 4, n), rng.uniform(0, 3, n), np.zeros(n)])
    chair = rng.uniform((1.5, 1.0, 0.0), (2.0, 1.5, 0.8), size=(n // 4, 3))
    xyz = np.concatenate([floor, chair]).astype(np.float32)
    semantic = np.concatenate([np.full(n, 1), np.full(n // 4, 8)]).astype(np.int16)
    instance = np.concatenate([np.zeros(n), np.full(n // 4, 2)]).astype(np.int32)
    rgb = np.where(semantic[:, None] == 8, [200, 30, 30], [90, 90, 90]).astype(np.uint8)
    return Scene(xyz=xyz, rgb=rgb, semantic=semantic, instance=instance)


def _png(path: Path) -> np.ndarray:
    assert path.is_file() and path.stat().st_size > 1000
    return imread(path)


def test_render_scene_writes_png_of_requested_size(tmp_path: Path) -> None:
    scene = _cloud()
    path = render_scene(scene.xyz, class_colours(scene.semantic, S3DIS), tmp_path / "x.png", title="t",
                        legend=class_legend(scene.semantic, S3DIS), size_px=(640, 480))
    image = _png(path)
    assert image.shape[:2] == (480, 640)
    # The chair's class colour (red, 255/0/0) must be on the picture.
    red = (image[..., 0] > 0.9) & (image[..., 1] < 0.1) & (image[..., 2] < 0.1)
    assert red.sum() > 50


def test_render_panels_side_by_side(tmp_path: Path) -> None:
    scene = _cloud()
    panels = [Panel(scene.xyz, scene.rgb, "rgb"), Panel(scene.xyz, instance_colours(scene.instance), "instances")]
    image = _png(render_panels(panels, tmp_path / "p.png", size_px=(900, 300), view=TOP_VIEW))
    assert image.shape[:2] == (300, 900)
    dark = image[..., :3].mean(axis=-1) < 0.9
    assert dark[:, :450].sum() > 100 and dark[:, 450:].sum() > 100  # both halves drawn


def test_weak_labels_are_highlighted(tmp_path: Path) -> None:
    scene = _cloud()
    indices = np.array([10, 3100])
    path = render_weak(scene.xyz, indices, scene.semantic[indices], S3DIS, tmp_path / "w.png", size_px=(400, 300))
    image = _png(path)
    red = (image[..., 0] > 0.9) & (image[..., 1] < 0.1) & (image[..., 2] < 0.1)
    assert red.sum() > 3  # the one chair click is drawn in the chair colour
    with pytest.raises(ValueError, match="outside the cloud"):
        render_weak(scene.xyz, np.array([10**6]), np.array([1]), S3DIS, tmp_path / "bad.png")


def test_projection_top_view_keeps_xy() -> None:
    xyz = np.array([[1.0, 2.0, 0.0], [1.0, 2.0, 5.0]])
    uv, near = project(xyz, TOP_VIEW)
    assert np.allclose(np.abs(uv[0]), [1.0, 2.0]) or np.allclose(np.abs(uv[0]), [2.0, 1.0])
    assert near[1] > near[0]  # the higher point is nearer to a camera above


def test_show_cli_colourings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with DatasetWriter(tmp_path / "ds", "tiny", S3DIS, sensor="rgbd") as writer:
        writer.add("room", _cloud(), split="train")
    dataset = Dataset(tmp_path / "ds")
    weak = save_weak_labels(simulate_clicks(dataset, ["room"], seed=0), tmp_path / "clicks.json")
    for colour in ("class", "instance", "rgb", "weak"):
        out = tmp_path / f"{colour}.png"
        argv = ["data", "show", f"{tmp_path / 'ds'}:room", "--colour", colour, "--out", str(out),
                "--width", "500", "--height", "400", "--hide", "ceiling"]
        if colour == "weak":
            argv += ["--labels", str(weak)]
        assert wsseg_main(argv) == 0, capsys.readouterr().err
        assert _png(out).shape[:2] == (400, 500)
    assert "coloured by weak" in capsys.readouterr().out
    subclouds = save_weak_labels(simulate_subcloud_tags(dataset, ["room"], seed=0), tmp_path / "sub.json")
    assert wsseg_main(["data", "show", f"{tmp_path / 'ds'}:room", "--colour", "weak", "--labels", str(subclouds),
                       "--out", str(tmp_path / "sub.png")]) == 0
    # A bare scene file outside a dataset needs --classes for class colours.
    save_scene(tmp_path / "bare.npz", _cloud())
    assert wsseg_main(["data", "show", str(tmp_path / "bare.npz"), "--out", str(tmp_path / "b.png")]) == 1
    assert "--classes" in capsys.readouterr().err
    assert wsseg_main(["data", "show", str(tmp_path / "bare.npz"), "--classes", "s3dis",
                       "--out", str(tmp_path / "b.png")]) == 0
    assert wsseg_main(["data", "show", f"{tmp_path / 'ds'}:room", "--colour", "intensity",
                       "--out", str(tmp_path / "i.png")]) == 1
    assert "intensity" in capsys.readouterr().err
