"""What users type, read one way: YAML 1.1 numbers as papermill reads them, and one cache folder."""

import math
import os
from pathlib import Path

import pytest

from largebatch import data, experiments, experiments_cli, reproduce, user_input
from largebatch.config import ConfigError


@pytest.mark.parametrize("text, value", [
    ("1e-3", 0.001), ("1E5", 100000.0), ("-2.5e+3", -2500.0), ("1e3", 1000.0), (".5e-1", 0.05),
    ("1.0e-3", 0.001), ("0.05", 0.05), ("3", 3), ("None", None), ("null", None), ("abc", "abc"),
    ("[1e-3, 2]", [0.001, 2]), ("{lr: 1e-3}", {"lr": 0.001}), ("e5", "e5"), ("1e", "1e"),
])
def test_yaml_values_read_as_papermill_reads_them(text, value):
    parsed = user_input.parse_yaml(text)
    assert parsed == value and type(parsed) is type(value)


def test_p_values_sweep_files_and_profiles_take_1e_minus_3(tmp_path):
    assert reproduce._overrides([("lr", "1e-3"), ("epochs", "2")]) == {"lr": 0.001, "epochs": 2}
    for name in ("sweep.yaml", "sweep.YML"):
        (tmp_path / name).write_text("- {model: mnist1d_mlp, lr: 1e-3, weight_decay: 5E-4}\n")
        config, = experiments_cli.load_configs(tmp_path / name)
        assert config.lr == 0.001 and config.weight_decay == 0.0005
    (tmp_path / "notebooks").symlink_to(reproduce.project_root() / "notebooks")
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "smoke.yaml").write_text("00_quickstart:\n  lr: 1e-3\n")
    assert reproduce.load_profile(tmp_path, "smoke")["00_quickstart"]["lr"] == 0.001


def test_a_relative_cache_or_data_folder_is_resolved_once_to_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LARGEBATCH_CACHE_DIR", "relcache")
    monkeypatch.setenv("LARGEBATCH_DATA", "reldata")
    environment = user_input.folder_environment()
    assert environment == {"LARGEBATCH_CACHE_DIR": str(tmp_path / "relcache"),
                           "LARGEBATCH_DATA": str(tmp_path / "reldata")}
    assert experiments.default_cache_dir() == tmp_path / "relcache" == experiments.cache_folder()
    assert data.default_root() == tmp_path / "reldata"
    # a kernel in another folder that inherits the resolved values names the same folders
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert experiments.default_cache_dir() == tmp_path / "relcache"
    assert data.default_root() == tmp_path / "reldata"


def test_an_explicit_relative_cache_folder_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert experiments.cache_folder("runs") == tmp_path / "runs"
    assert experiments_cli._parser().parse_args(["verify", "--cache", "runs"]).cache == tmp_path / "runs"


@pytest.mark.parametrize("seeds", [[0, 0], [], [1, -1], [0.5], "0 1", [True]])
def test_check_seeds_rejects_what_is_not_a_list_of_distinct_seeds(seeds):
    with pytest.raises(ConfigError, match="parameter seeds must"):
        user_input.check_seeds("parameter seeds", seeds)


def test_check_seeds_names_the_repeated_seed():
    with pytest.raises(ConfigError, match=r"3, 5 repeated"):
        user_input.check_seeds("seeds", [3, 5, 1, 5, 3])
    assert user_input.check_seeds("seeds", (2, 0, 1)) == [2, 0, 1]


def test_a_yaml_file_that_does_not_parse_is_named(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("a: [1,\n")
    with pytest.raises(ConfigError, match=f"profile {path} is not valid YAML"):
        user_input.read_yaml_file(path, "profile")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        user_input.read_yaml_file(tmp_path / "missing.yaml")
    assert math.isclose(user_input.read_yaml_file(_written(tmp_path / "ok.yaml", "lr: 1e-2\n"))["lr"], 0.01)


def _written(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_home_is_expanded(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("LARGEBATCH_DATA", "~/data")
    assert data.default_root() == tmp_path / "data"
    assert os.path.isabs(user_input.folder_environment()["LARGEBATCH_CACHE_DIR"])
