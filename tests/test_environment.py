"""environment.yml (conda users) names the same packages as pyproject.toml (pip users)."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}


def requirement(text):
    name, spec = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", text).groups()
    name = CONDA_NAMES.get(name.lower(), name.lower()).replace("_", "-")
    return name, spec.strip().lstrip("=").replace("==", "").strip() if spec else ""


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_side = dict(requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"])
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    conda_side = {}
    for entry in conda:
        if isinstance(entry, dict):
            conda_side.update(requirement(r) for r in entry["pip"] if not r.startswith("-e"))
        elif not entry.startswith(("python=", "pip")):
            conda_side.update([requirement(entry)])
    assert set(conda_side) == set(pip_side)
    for pinned in ("torch", "torchvision", "jupyter-book"):
        assert conda_side[pinned].replace(" ", "") == pip_side[pinned].replace(" ", ""), pinned
    assert pip_side["torch"] == "2.13.0" and pip_side["torchvision"] == "0.28.0"
