"""What ``ros2 launch wsseg segment.launch.py`` relies on: the colcon install tree and the launch file's names.

``launch`` / ``launch_ros`` are not installable from PyPI here, so the launch file is checked
statically (``ast``) against what setup.py installs and the node declares; where ``launch_ros`` can be
imported, the launch description is also built for real.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wsseg.ros.params import PARAMS_BY_NAME

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "launch" / "segment.launch.py"
NODE_INPUTS = {"~/input/points", "~/input/depth", "~/input/color", "~/input/camera_info"}


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == name]


def _keyword(call: ast.Call, name: str) -> ast.expr:
    return next(k.value for k in call.keywords if k.arg == name)


def test_launch_file_names_match_the_package_and_the_node() -> None:
    tree = ast.parse(LAUNCH.read_text())
    (node,) = _calls(tree, "Node")
    assert ast.literal_eval(_keyword(node, "package")) == "wsseg"
    executable = ast.literal_eval(_keyword(node, "executable"))
    setup = ast.parse((REPO / "setup.py").read_text())
    scripts = [ast.literal_eval(n) for n in ast.walk(setup) if isinstance(n, ast.Constant)
               and isinstance(n.value, str) and " = wsseg.ros." in n.value]
    assert f"{executable} = wsseg.ros.segment_node:main" in scripts
    assert ast.literal_eval(_keyword(node, "name")) == "segment_node"
    parameters = _keyword(node, "parameters")
    assert isinstance(parameters, ast.List)
    overrides = next(p for p in parameters.elts if isinstance(p, ast.Dict))
    keys = {ast.literal_eval(k) for k in overrides.keys if k is not None}
    assert "model" in keys and keys <= set(PARAMS_BY_NAME) | {"use_sim_time"}
    remaps = _keyword(node, "remappings")
    assert isinstance(remaps, ast.List)
    assert {ast.literal_eval(t.elts[0]) for t in remaps.elts if isinstance(t, ast.Tuple)} == NODE_INPUTS
    arguments = {ast.literal_eval(c.args[0]) for c in _calls(tree, "DeclareLaunchArgument")}
    assert {"model", "config", "input_mode", "namespace", "use_sim_time"} <= arguments
    used = {ast.literal_eval(c.args[0]) for c in _calls(tree, "LaunchConfiguration")}
    assert used <= arguments, f"undeclared launch arguments {used - arguments}"
    constants = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    assert "segment.yaml" in constants and (REPO / "config" / "segment.yaml").is_file()
    input_modes = next(c for c in _calls(tree, "DeclareLaunchArgument") if ast.literal_eval(c.args[0]) == "input_mode")
    assert ast.literal_eval(_keyword(input_modes, "choices")) == list(PARAMS_BY_NAME["input_mode"].choices)


@pytest.mark.skipif(importlib.util.find_spec("launch_ros") is None, reason="launch_ros is not installed here")
def test_launch_description_builds() -> None:  # pragma: no cover - runs on a real ROS install
    spec = importlib.util.spec_from_file_location("segment_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    assert module.generate_launch_description().entities


def test_colcon_install_tree(tmp_path: Path) -> None:
    colcon = Path(sys.executable).with_name("colcon")
    if not colcon.is_file() and shutil.which("colcon") is None:
        pytest.skip("colcon is not installed")
    command = [str(colcon) if colcon.is_file() else "colcon", "--log-base", str(tmp_path / "log"), "build",
               "--base-paths", str(REPO / "ros2_ws" / "src"), "--build-base", str(tmp_path / "build"),
               "--install-base", str(tmp_path / "install"), "--packages-select", "wsseg"]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    prefix = tmp_path / "install" / "wsseg"
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "wsseg").is_file()
    assert (prefix / "share" / "wsseg" / "package.xml").is_file()
    assert (prefix / "share" / "wsseg" / "launch" / "segment.launch.py").read_text() == LAUNCH.read_text()
    configs = {p.name for p in (prefix / "share" / "wsseg" / "config").iterdir()}
    assert {"segment.yaml", "segment_rgbd.yaml", "segment_lidar.yaml", "segment.schema.json",
            "fastdds_large_messages.xml"} <= configs
    for executable in ("segment_node", "replay_node"):
        path = prefix / "lib" / "wsseg" / executable
        assert path.is_file() and os.access(path, os.X_OK), executable
    # the installed executable runs: with no model it exits 1 naming the parameter
    run = subprocess.run([str(prefix / "lib" / "wsseg" / "segment_node"), "--ros-args", "--params-file",
                          str(prefix / "share" / "wsseg" / "config" / "segment.yaml")],
                         capture_output=True, text=True, timeout=60, env=dict(env, ROS_DOMAIN_ID="199"))
    assert run.returncode == 1 and "parameter 'model' is empty" in run.stdout + run.stderr
