"""Room types of the synthetic indoor generator: each type's furniture, the mix's shares, determinism, validation,
and the default rooms unchanged."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from wsseg_training.data.synth.config import (
    ROOM_TYPE_NAMES,
    ROOM_TYPE_PRESETS,
    IndoorConfig,
    parse_room_types,
    room_type_shares,
)
from wsseg_training.data.synth.generate import room_statistics, scene_rng
from wsseg_training.data.synth.indoor import build_room
from wsseg_training.data.synth.rooms import ROOM_TYPES, build_typed_room, draw_room_type

from wsseg.cli import main as wsseg_main
from wsseg.core.classes import S3DIS

FURNITURE = {"table", "chair", "sofa", "bookcase", "board"}


def _classes(mesh) -> set[str]:
    return {S3DIS.names[i] for i in np.unique(mesh.semantic)}


def test_default_rooms_are_the_rooms_before_room_types() -> None:
    """The meshes of three default rooms hash as the generator before room types built them (commit 95f89da)."""
    digest = hashlib.sha256()
    for index in range(3):
        mesh, size = build_room(scene_rng(0, index), IndoorConfig())
        digest.update(np.round(np.asarray(mesh.vertices, np.float64), 4).tobytes())
        for array in (mesh.triangles, mesh.semantic, mesh.instance):
            digest.update(np.asarray(array, np.int64).tobytes())
        digest.update(np.round(np.asarray(size, np.float64), 6).tobytes())
    assert digest.hexdigest() == "e3e0138993ff26d98dd9cd300f032fcaadc92bb55e9c9183491b919e2aa27ff6"


def test_single_type_mixes_draw_nothing_and_equal_the_default() -> None:
    for room_types in ("office_only", {"office": 2.0}):
        a, b = build_room(scene_rng(5, 1), IndoorConfig()), build_room(scene_rng(5, 1), IndoorConfig(
            room_types=room_types))
        assert np.array_equal(a[0].vertices, b[0].vertices) and np.array_equal(a[0].semantic, b[0].semantic)


@pytest.mark.parametrize("seed", range(12))
def test_hallways_are_long_and_narrow_without_furniture(seed: int) -> None:
    built = build_typed_room(scene_rng(seed, 0), IndoorConfig(room_types={"hallway": 1.0}))
    classes = _classes(built.mesh)
    assert built.room_type == "hallway"
    assert not classes & FURNITURE, f"a hallway holds {classes & FURNITURE}"
    assert {"floor", "wall", "ceiling", "door"} <= classes
    short, long = sorted(built.size_m[:2])
    assert 1.8 <= short <= 2.8 and 6.0 <= long <= 14.0


def test_storage_rooms_hold_bookcases_and_clutter_only() -> None:
    seen: set[str] = set()
    for seed in range(10):
        built = build_typed_room(scene_rng(seed, 0), IndoorConfig(room_types={"storage": 1.0}))
        classes = _classes(built.mesh)
        assert not classes & {"table", "chair", "sofa", "board"}
        assert "clutter" in classes
        seen |= classes
    assert "bookcase" in seen


def test_lounges_have_sofas_and_no_board_conference_rooms_have_boards() -> None:
    lounge = [_classes(build_typed_room(scene_rng(s, 0), IndoorConfig(room_types={"lounge": 1})).mesh)
              for s in range(8)]
    conference = [_classes(build_typed_room(scene_rng(s, 0), IndoorConfig(room_types={"conference": 1})).mesh)
                  for s in range(8)]
    assert all("board" not in c for c in lounge) and sum("sofa" in c for c in lounge) >= 6
    assert sum("board" in c for c in conference) >= 6 and all("sofa" not in c for c in conference)
    assert sum({"table", "chair"} <= c for c in conference) >= 6


def test_the_mix_draws_its_types_at_their_shares() -> None:
    config = IndoorConfig(room_types="s3dis_mix")
    draws = [draw_room_type(scene_rng(7, i), config) for i in range(4000)]
    for name, share in ROOM_TYPE_PRESETS["s3dis_mix"].items():
        assert abs(draws.count(name) / len(draws) - share) < 0.025, name
    stats = room_statistics(config, 60, 0)  # the built rooms take the drawn types
    assert set(stats["types"]) == set(ROOM_TYPE_PRESETS["s3dis_mix"])
    assert stats["presence"]["floor"] == 1.0 and stats["presence"]["table"] < 0.9
    office = room_statistics(IndoorConfig(), 20, 0)
    assert office["types"] == {"office": 1.0} and office["classes_per_room"] > stats["classes_per_room"]


def test_mixed_rooms_are_seed_deterministic(tmp_path: Path) -> None:
    config = IndoorConfig(room_types="s3dis_mix")
    for index in range(6):
        a, b = build_typed_room(scene_rng(2, index), config), build_typed_room(scene_rng(2, index), config)
        assert a.room_type == b.room_type and np.array_equal(a.mesh.vertices, b.mesh.vertices)
    types = {build_typed_room(scene_rng(2, i), config).room_type for i in range(12)}
    assert len(types) >= 2


@pytest.mark.parametrize(("room_types", "match"), [
    ("all_rooms", "preset"), ({"kitchen": 1.0}, "unknown room type 'kitchen'"), ({"office": -1.0}, ">= 0"),
    ({"office": 0.0}, "sum to 0"), ({}, "non-empty"), ({"office": float("nan")}, "finite")])
def test_bad_room_types_name_the_field(room_types: object, match: str) -> None:
    with pytest.raises(ValueError, match="room_types") as error:
        IndoorConfig(room_types=room_types)  # type: ignore[arg-type]
    assert match in str(error.value)


def test_room_type_shares_and_parsing() -> None:
    assert room_type_shares({"office": 3, "hallway": 1}) == {"office": 0.75, "hallway": 0.25}
    assert abs(sum(room_type_shares("s3dis_mix").values()) - 1.0) < 1e-9
    assert parse_room_types("s3dis_mix") == "s3dis_mix"
    assert parse_room_types("office=3,hallway=1") == {"office": 3.0, "hallway": 1.0}
    with pytest.raises(ValueError, match="TYPE=SHARE"):
        parse_room_types("office=lots")
    assert tuple(ROOM_TYPES) == ROOM_TYPE_NAMES


def test_cli_room_types_recorded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rooms"
    rc = wsseg_main(["data", "synth", "--kind", "indoor", "--scenes", "2", "--seed", "1", "--out", str(out),
                     "--views", "2", "--image-width", "32", "--image-height", "24", "--room-types", "hallway=1"])
    assert rc == 0, capsys.readouterr().err
    data = yaml.safe_load((out / "dataset.yaml").read_text())
    assert data["extra"]["synth"]["config"]["room_types"] == {"hallway": 1.0}
    assert {meta["room_type"] for meta in data["scenes"].values()} == {"hallway"}
    rc = wsseg_main(["data", "synth", "--kind", "outdoor", "--out", str(tmp_path / "x"), "--room-types", "s3dis_mix"])
    assert rc == 1 and "room_types" in capsys.readouterr().err
    rc = wsseg_main(["data", "synth", "--kind", "indoor", "--out", str(tmp_path / "y"), "--room-types", "kitchen=1"])
    assert rc == 1 and "kitchen" in capsys.readouterr().err
