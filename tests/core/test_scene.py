"""Scene records and class tables: validation names the file and the field at fault."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wsseg.core.classes import CLASS_TABLES, S3DIS, ClassTable
from wsseg.core.scene import Scene, SceneError, load_scene, save_scene


def good_scene(n: int = 10) -> Scene:
    rng = np.random.default_rng(0)
    return Scene(
        xyz=rng.normal(size=(n, 3)).astype(np.float32),
        rgb=rng.integers(0, 256, (n, 3), dtype=np.uint8),
        intensity=rng.uniform(size=n).astype(np.float32),
        semantic=rng.integers(-1, 13, n).astype(np.int16),
        instance=rng.integers(-1, 4, n).astype(np.int32),
    )


def test_round_trip(tmp_path: Path) -> None:
    scene = good_scene()
    path = save_scene(tmp_path / "a.npz", scene, num_classes=13)
    loaded = load_scene(path, num_classes=13)
    for name, array in scene.arrays().items():
        np.testing.assert_array_equal(getattr(loaded, name), array)
        assert getattr(loaded, name).dtype == array.dtype
    assert not list(tmp_path.glob("*.tmp*"))  # atomic write leaves no temporary file


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"xyz": np.zeros((10, 3), np.float64)}, "field 'xyz' has dtype float64, expected float32"),
        ({"rgb": np.zeros((10, 4), np.uint8)}, r"field 'rgb' has shape \(10, 4\)"),
        ({"semantic": np.zeros(9, np.int16)}, "field 'semantic' has 9 rows but 'xyz' has 10"),
        ({"semantic": np.full(10, 13, np.int16)}, "label 13 at point 0, outside the class table"),
        ({"intensity": np.zeros(10, np.float64)}, "field 'intensity' has dtype float64"),
    ],
)
def test_invalid_fields_are_named(tmp_path: Path, change: dict, message: str) -> None:
    scene = Scene(**{**good_scene().arrays(), **change})
    with pytest.raises(SceneError, match=message):
        save_scene(tmp_path / "bad.npz", scene, num_classes=13)
    assert not (tmp_path / "bad.npz").exists()


def test_nan_coordinates_and_broken_files(tmp_path: Path) -> None:
    scene = good_scene()
    scene.xyz[3, 1] = np.nan
    with pytest.raises(SceneError, match=r"NaN/inf coordinates \(first at point 3\)"):
        save_scene(tmp_path / "nan.npz", scene)
    np.savez(tmp_path / "raw.npz", xyz=scene.xyz)
    with pytest.raises(SceneError, match=r"raw\.npz: field 'xyz' has NaN"):
        load_scene(tmp_path / "raw.npz")
    np.savez(tmp_path / "extra.npz", xyz=np.zeros((2, 3), np.float32), colour=np.zeros((2, 3), np.uint8))
    with pytest.raises(SceneError, match="unknown field"):
        load_scene(tmp_path / "extra.npz")
    (tmp_path / "trunc.npz").write_bytes(Path(save_scene(tmp_path / "ok.npz", good_scene())).read_bytes()[:50])
    with pytest.raises(SceneError, match=r"trunc\.npz: not a readable"):
        load_scene(tmp_path / "trunc.npz")
    with pytest.raises(SceneError, match="does not exist"):
        load_scene(tmp_path / "missing.npz")


def test_class_tables() -> None:
    assert S3DIS.num_classes == 13 and CLASS_TABLES["scannet20"].num_classes == 20
    assert CLASS_TABLES["semantickitti19"].num_classes == 19
    colours = S3DIS.colourize(np.array([0, 12, -1, 99]))
    assert colours.dtype == np.uint8 and colours[2].tolist() == [0, 0, 0] and colours[3].tolist() == [0, 0, 0]
    assert ClassTable.from_dict(S3DIS.to_dict()) == S3DIS
    with pytest.raises(ValueError, match="2 names but 1 colours"):
        ClassTable("x", ("a", "b"), ((1, 2, 3),))
    with pytest.raises(ValueError, match="duplicate"):
        ClassTable("x", ("a", "a"), ((1, 2, 3), (1, 2, 3)))
    with pytest.raises(ValueError, match="invalid class table"):
        ClassTable.from_dict({"names": ["a"]}, where="model.yaml")
