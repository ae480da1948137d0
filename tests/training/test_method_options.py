"""Per-method options: frozen dataclasses built by the config loader; a bad option names the YAML file and field."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass
from pathlib import Path

import pytest
import yaml
from wsseg_training.engine.config import ConfigError, FieldError, load_config
from wsseg_training.methods import FullMethod, OtocMethod
from wsseg_training.methods.common.options import MethodOptions, option
from wsseg_training.methods.otoc.method import OtocOptions

from wsseg.cli import main as wsseg_main


@dataclass(frozen=True, kw_only=True)
class ToyOptions(MethodOptions):
    stage1_epochs: int = option(600, ge=1, doc="first stage")
    ratio: float = option(0.5, gt=0.0, le=1.0)
    mode: str = option("a", choices=("a", "b"))
    radius_m: float | None = option(None, gt=0)
    views: tuple[int, ...] = (1, 2)

    def validate(self) -> None:
        if self.mode == "b" and self.radius_m is None:
            raise FieldError("radius_m", self.radius_m, "a radius when mode is 'b'")


def _yaml(tmp_path: Path, method: dict) -> Path:
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump({"train": {"steps": 10}, "method": method}))
    return path


@pytest.mark.parametrize(("method", "message"), [
    ({"stage1_epochs": -3}, r"x\.yaml: field 'method\.stage1_epochs' is -3, expected an integer >= 1"),
    ({"stage1_epochs": 2.5}, r"x\.yaml: field 'method\.stage1_epochs' is 2\.5, expected an integer"),
    ({"ratio": 0}, r"field 'method\.ratio' is 0\.0, expected a number in \(0\.0, 1\.0\]"),
    ({"mode": "c"}, r"field 'method\.mode' is 'c', expected one of \('a', 'b'\)"),
    ({"mode": "b"}, r"field 'method\.radius_m' is None, expected a radius when mode is 'b'"),
    ({"views": 3}, r"field 'method\.views' is 3, expected a list"),
    ({"epochs": 1}, r"x\.yaml: field 'method': unknown field\(s\) \['epochs'\]"),
])
def test_bad_options_name_the_file_and_the_dotted_field(tmp_path: Path, method: dict, message: str) -> None:
    path = _yaml(tmp_path, method)
    with pytest.raises(ConfigError, match=message):
        ToyOptions.build(load_config(path).method, where=str(path))


def test_options_are_frozen_typed_and_default() -> None:
    options = ToyOptions.build({"views": [3, 4], "ratio": 1, "radius_m": 2})
    assert options == ToyOptions(views=(3, 4), ratio=1.0, radius_m=2.0) and isinstance(options.ratio, float)
    assert ToyOptions.build(None) == ToyOptions()
    with pytest.raises(FrozenInstanceError):
        options.ratio = 0.1  # type: ignore[misc]
    assert ToyOptions.table()[0] == ("stage1_epochs", "600", "first stage (an integer >= 1)")


def test_method_options_of_full_and_otoc(tmp_path: Path) -> None:
    from wsseg.core.classes import S3DIS

    assert FullMethod(S3DIS, {"class_weighting": "inverse"}).options.class_weighting == "inverse"
    path = _yaml(tmp_path, {"iterations": 2, "otoc": {"momentum": 1.5}})
    with pytest.raises(ConfigError, match=r"x\.yaml: field 'method\.otoc\.momentum' is 1\.5, expected a number in "
                                          r"\[0\.0, 1\.0\)"):
        OtocMethod.parse_options(load_config(path).method, where=str(path))
    with pytest.raises(ConfigError, match=r"field 'method\.otoc': set \['variant'\] through the plain options"):
        OtocOptions.build({"otoc": {"variant": "gp"}})
    options = OtocOptions.build({"variant": "gp", "iterations": 3, "otoc": None})
    config = options.config()
    assert (config.variant, config.self_training_iterations, config.class_weighting) == ("gp", 3,
                                                                                        "inverse_sqrt_frequency")
    with pytest.raises(ConfigError, match="takes OtocOptions, not ToyOptions"):
        OtocMethod.parse_options(ToyOptions())


def test_train_cli_error_names_the_yaml_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The options are checked before any data is read (here: there is no dataset at all)."""
    path = _yaml(tmp_path, {"class_weighting": "sometimes"})
    code = wsseg_main(["train", "--method", "full", "--data", str(tmp_path / "data"), "--config", str(path),
                       "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and f"{path}: field 'method.class_weighting' is 'sometimes', expected one of" in err
    assert not (tmp_path / "run" / "checkpoints").exists()
