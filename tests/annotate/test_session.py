"""The session without a browser: edits, undo / redo, the saved file, bad inputs, concurrent writers."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from wsseg_training.annotate.server import App
from wsseg_training.annotate.session import Session, SessionError
from wsseg_training.annotate.state import EditError
from wsseg_training.data.dataset import Dataset
from wsseg_training.labels import load_weak_labels, save_weak_labels, simulate_scene_tags
from wsseg_training.methods.otoc.config import OtocConfig
from wsseg_training.methods.otoc.pseudo_labels import initial_pseudo_labels

from tests.annotate.conftest import running_server
from tests.annotate.scenes import write_dataset
from wsseg.cli import main as wsseg_main

WSSEG = str(Path(sys.executable).parent / "wsseg")


def session(dataset: Dataset, path: Path, kind: str = "clicks") -> Session:
    return Session(dataset, kind, path, dataset.scene_names())


def test_clicks_undo_redo_and_the_file_after_every_edit(dataset: Dataset, tmp_path: Path) -> None:
    path = tmp_path / "clicks.json"
    s = session(dataset, path)
    s.edit("room_a", {"op": "add_click", "point": 10, "class": 0})
    assert load_weak_labels(path, dataset).scenes["room_a"].point.tolist() == [10]  # saved at once
    s.edit("room_a", {"op": "add_click", "point": 5000, "class": 1})
    s.edit("room_a", {"op": "add_click", "point": 10, "class": 2})  # same point: the class changes
    assert [(c.point, c.cls, c.instance) for c in s.history("room_a").state.clicks] == [(10, 2, 0), (5000, 1, 1)]
    assert s.undo("room_a") and s.undo("room_a")
    assert [(c.point, c.cls) for c in s.history("room_a").state.clicks] == [(10, 0)]
    assert s.redo("room_a")
    s.edit("room_a", {"op": "delete_click", "point": 10})
    assert not s.redo("room_a")  # a new edit clears the redo stack
    labels = load_weak_labels(path, dataset)
    assert labels.scenes["room_a"].point.tolist() == [5000] and labels.scenes["room_a"].cls.tolist() == [1]
    assert labels.header.options["tool"] == "wsseg annotate"
    s.close()
    reopened = session(dataset, path)  # the file is read back on start
    assert [(c.point, c.cls, c.instance) for c in reopened.history("room_a").state.clicks] == [(5000, 1, 1)]
    reopened.close()


def test_scenes_without_labels_are_not_in_the_file(dataset: Dataset, tmp_path: Path) -> None:
    s = session(dataset, tmp_path / "tags.json", "scene_tags")
    s.edit("room_b", {"op": "set_tag", "class": 3, "on": True})
    s.edit("room_b", {"op": "set_tag", "class": 0, "on": True})
    s.edit("room_b", {"op": "set_tag", "class": 3, "on": False})
    tags = load_weak_labels(tmp_path / "tags.json", dataset)
    assert tags.tags == {"room_b": (0,)} and list(tags.header.scene_points) == ["room_b"]
    assert s.progress()["done"] == 1 and s.progress()["classes_seen"] == [0]
    s.close()


def test_the_preview_is_exactly_what_1t1c_labels(dataset: Dataset, tmp_path: Path) -> None:
    """On the whole cloud, with votes: two clicks of different classes in the floor (a tie: unlabelled),
    two agreeing wall clicks, a table click (an object class: within click_radius_m), a click without a
    super-voxel."""
    from dataclasses import replace

    from wsseg.core.scene import save_scene

    scene = dataset.load("room_a")
    supervoxel = scene.supervoxel.copy()  # type: ignore[union-attr]
    supervoxel[:40] = -1  # floor points without a super-voxel
    save_scene(dataset.scene_path("room_a"), replace(scene, supervoxel=supervoxel))
    s = session(dataset, tmp_path / "clicks.json")
    rng = np.random.default_rng(0)
    pick = lambda cls, n: rng.choice(np.flatnonzero((scene.semantic == cls) & (supervoxel >= 0)), n, replace=False)  # noqa: E731
    clicks = np.full(scene.num_points, -1)
    for point, cls in [*zip(pick(0, 2), (0, 2), strict=True), *((p, 1) for p in pick(1, 2)), (pick(2, 1)[0], 2),
                       (5, 3)]:
        s.edit("room_a", {"op": "add_click", "point": int(point), "class": cls})
        clicks[point] = cls
    rule = OtocConfig(structure_classes=("floor", "wall"))
    s.expansion = rule
    expected = initial_pseudo_labels(clicks, supervoxel, scene.xyz, dataset.classes, rule)
    assert np.array_equal(s.expanded_labels("room_a"), expected)
    assert (expected == 1).sum() > 100 and 0 < (expected == 2).sum() < (scene.semantic == 2).sum()
    s.close()


@pytest.mark.parametrize(("op", "match"), [
    ({"op": "add_click", "point": 10**9, "class": 0}, "outside the cloud"),
    ({"op": "add_click", "point": 1, "class": 9}, "outside the class table"),
    ({"op": "add_click", "point": "1", "class": 0}, "must be an integer"),
    ({"op": "delete_click", "point": 3}, "no click on point 3"),
    ({"op": "set_tag", "class": 0, "on": True}, "does not apply to a clicks file"),
    ({"point": 1}, "field 'op'"),
])
def test_bad_edits_are_refused_and_change_nothing(dataset: Dataset, tmp_path: Path, op: dict, match: str) -> None:
    s = session(dataset, tmp_path / "clicks.json")
    with pytest.raises(EditError, match=match):
        s.edit("room_a", op)
    assert s.history("room_a").state.clicks == [] and not (tmp_path / "clicks.json").exists()
    s.close()


def test_a_file_of_another_kind_or_dataset_is_refused(dataset: Dataset, tmp_path: Path) -> None:
    tags_file = save_weak_labels(simulate_scene_tags(dataset, dataset.scene_names(), 0), tmp_path / "tags.json")
    with pytest.raises(SessionError, match="is a scene_tags file, not clicks"):
        session(dataset, tags_file)
    other = Dataset(write_dataset(tmp_path / "other", name="another_dataset"))
    other_file = save_weak_labels(simulate_scene_tags(other, other.scene_names(), 0), tmp_path / "other.json")
    with pytest.raises(ValueError, match="file is for dataset 'another_dataset', not 'annotate_test'"):
        session(dataset, other_file, "scene_tags")
    session(dataset, tags_file, "scene_tags").close()  # the refused starts left no lock behind


def test_a_second_server_on_the_same_file_is_refused(dataset: Dataset, tmp_path: Path) -> None:
    first = session(dataset, tmp_path / "clicks.json")
    with pytest.raises(SessionError, match="already open in another wsseg annotate"):
        session(dataset, tmp_path / "clicks.json")
    first.close()
    session(dataset, tmp_path / "clicks.json").close()  # free again once the first one closed


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_two_tabs_writing_at_once_never_corrupt_the_file(dataset: Dataset, tmp_path: Path) -> None:
    """Rule: the server is the only writer; edits from any tab are applied in arrival order and each save
    replaces the file atomically, so a reader always sees a whole valid file and no edit is lost."""
    path = tmp_path / "clicks.json"
    per_tab, bad_reads, reads = 40, [], []
    stop = threading.Event()
    with running_server(App(session=session(dataset, path))) as url:
        def tab(first_point: int) -> None:
            for i in range(per_tab):
                _post(f"{url}/api/scene/room_a/edit", {"op": "add_click", "point": first_point + i, "class": i % 4})

        def reader() -> None:
            while not stop.is_set():
                if path.exists():
                    try:
                        reads.append(len(json.loads(path.read_text())["scenes"].get("room_a", {}).get("clicks", [])))
                    except (json.JSONDecodeError, KeyError) as exc:
                        bad_reads.append(repr(exc))

        threads = [threading.Thread(target=tab, args=(p,)) for p in (0, 1000)]
        watcher = threading.Thread(target=reader)
        watcher.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop.set()
        watcher.join()
    assert bad_reads == [] and reads, "a reader saw a torn file"
    labels = load_weak_labels(path, dataset)
    assert sorted(labels.scenes["room_a"].point.tolist()) == list(range(per_tab)) + list(range(1000, 1000 + per_tab))
    assert sorted(labels.scenes["room_a"].instance.tolist()) == list(range(2 * per_tab))
    assert not list(tmp_path.glob(".clicks.json.*.tmp")), "a temporary file was left behind"


# ------------------------------------------------------------------------------------------- the command


def test_a_folder_without_dataset_yaml_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert wsseg_main(["annotate", "--data", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a wsseg dataset (no dataset.yaml)" in err and str(tmp_path) in err


def test_a_labels_file_of_another_kind_is_a_one_line_error(dataset: Dataset, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    tags_file = save_weak_labels(simulate_scene_tags(dataset, dataset.scene_names(), 0), tmp_path / "tags.json")
    code = wsseg_main(["annotate", "--data", str(dataset.root), "--labels", str(tags_file), "--kind", "clicks"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.count("\n") == 0 and "is a scene_tags file, not clicks" in err


def test_a_port_in_use_is_a_one_line_error(dataset: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = wsseg_main(["annotate", "--data", str(dataset.root), "--labels", str(tmp_path / "c.json"),
                           "--port", str(port)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.count("\n") == 0 and f"port {port} on 127.0.0.1 is in use" in err
    session(dataset, tmp_path / "c.json").close()  # the failed start released its lock


def _start_server(dataset: Dataset, labels: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([WSSEG, "annotate", "--data", str(dataset.root), "--labels", str(labels),
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api/session", timeout=5).close()
            return server, url
        except OSError:
            assert server.poll() is None, server.stdout.read()  # type: ignore[union-attr]
            time.sleep(0.1)
    server.kill()
    raise AssertionError("wsseg annotate did not start")


@pytest.mark.slow  # two starts of the real `wsseg annotate` process (~10 s): its only test as a process
def test_a_killed_server_keeps_every_answered_edit_and_sigterm_stops_cleanly(dataset: Dataset,
                                                                             tmp_path: Path) -> None:
    labels = tmp_path / "clicks.json"
    server, url = _start_server(dataset, labels)
    _post(f"{url}/api/scene/room_a/edit", {"op": "add_click", "point": 7, "class": 1})
    server.kill()  # SIGKILL: no chance to save anything more
    server.wait(timeout=30)
    assert load_weak_labels(labels, dataset).scenes["room_a"].point.tolist() == [7]
    server, url = _start_server(dataset, labels)  # the dead server's lock went with it; the click is back
    state = json.loads(urllib.request.urlopen(f"{url}/api/scene/room_a", timeout=30).read())["state"]
    assert [c["point"] for c in state["clicks"]] == [7]
    _post(f"{url}/api/scene/room_a/edit", {"op": "add_click", "point": 8, "class": 2})
    server.send_signal(signal.SIGTERM)
    out, _ = server.communicate(timeout=30)
    assert server.returncode == 0 and "stopped" in out, out
    assert load_weak_labels(labels, dataset).scenes["room_a"].point.tolist() == [7, 8]
    session(dataset, labels).close()  # lock released
