"""What a user types, read one way by every entry point (and without importing torch).

* **YAML values and files.** :func:`parse_yaml` reads a ``-p`` value, a profile or a
  sweep file as papermill reads its ``-p`` values: ``1e-3`` is the float 0.001 (plain
  YAML 1.1 only takes ``1.0e-3`` and reads ``1e-3`` as a string) and ``None`` is None.
  :func:`read_yaml_file` names the file when it does not parse.
* **Folders named by the environment.** :func:`default_cache_dir` (``$LARGEBATCH_CACHE_DIR``)
  and :func:`default_data_dir` (``$LARGEBATCH_DATA``) resolve the variable once, to an
  absolute path, so a kernel working in ``notebooks/`` and a command line working in the
  project root name the same folder; :func:`folder_environment` hands both to
  subprocesses. An empty value, or a path that is a file, is an error, as it is for a
  folder option (:func:`folder_option`) or argument (:func:`checked_folder`).
* **Seeds.** :func:`check_seeds`: a list of distinct integers >= 0 (a repeated seed is the
  same run counted twice, and a verdict over it would report seed noise of zero).
"""

from __future__ import annotations

import argparse
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

CACHE_ENV = "LARGEBATCH_CACHE_DIR"
DATA_ENV = "LARGEBATCH_DATA"


class ConfigError(ValueError):
    """A run configuration (or notebook parameter, profile or sweep entry) with a wrong type or value."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, plus the numbers and ``None`` that papermill's ``-p`` accepts."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)
_Loader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^None$"), ["N"])


def parse_yaml(text: str) -> Any:
    """``text`` as YAML, with ``1e-3`` a float and ``None`` None (as papermill reads ``-p``);
    raises ``yaml.YAMLError`` when it does not parse."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def read_yaml_file(path: Path, what: str = "file") -> Any:
    """The content of a YAML file (see :func:`parse_yaml`); a :class:`ConfigError` naming the
    file when it does not parse, a ``FileNotFoundError`` naming it when it is missing."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        return parse_yaml(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{what} {path} is not valid YAML: {' '.join(str(error).split())}") from None


def checked_folder(path: str | os.PathLike, what: str) -> Path:
    """``path`` as an absolute folder path (resolved against the working directory now);
    a :class:`ConfigError` naming ``what`` when it is empty or names a file."""
    if not str(path).strip():
        raise ConfigError(f"{what} is empty; name a folder")
    folder = Path(os.path.abspath(os.path.expanduser(path)))
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{what} is a file, not a folder: {folder}")
    return folder


def folder_option(text: str) -> Path:
    """An argparse ``type`` for a folder option: :func:`checked_folder`, its error as argparse's."""
    try:
        return checked_folder(text, "the folder")
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def env_folder(name: str, default: Path) -> Path:
    """The folder ``$name`` names (absolute), or ``default`` when it is unset."""
    value = os.environ.get(name)
    if value is None:
        return checked_folder(default, f"the default of ${name}")
    if not value.strip():
        raise ConfigError(f"${name} is set but empty; unset it (default {default}) or name a folder")
    return checked_folder(value, f"${name}")


def project_checkout(start: Path | None = None) -> Path | None:
    """The enclosing project checkout (holds ``lib/largebatch`` and ``pyproject.toml``), or None."""
    start = start or Path.cwd()
    for folder in [start, *start.parents]:
        if (folder / "lib" / "largebatch").is_dir() and (folder / "pyproject.toml").exists():
            return folder
    return None


def default_cache_dir() -> Path:
    """The run cache: ``$LARGEBATCH_CACHE_DIR``, or ``.cache/runs`` in the enclosing checkout,
    or ``~/.cache/largebatch/runs``; always absolute."""
    checkout = project_checkout()
    fallback = checkout / ".cache" / "runs" if checkout else Path.home() / ".cache" / "largebatch" / "runs"
    return env_folder(CACHE_ENV, fallback)


def default_data_dir() -> Path:
    """Where image data sets live: ``$LARGEBATCH_DATA`` or ``~/.cache/largebatch/data``; absolute."""
    return env_folder(DATA_ENV, Path.home() / ".cache" / "largebatch" / "data")


def folder_environment() -> dict[str, str]:
    """``$LARGEBATCH_CACHE_DIR`` and ``$LARGEBATCH_DATA`` as resolved here, for a subprocess
    or kernel that works in another folder."""
    return {CACHE_ENV: str(default_cache_dir()), DATA_ENV: str(default_data_dir())}


def check_seeds(name: str, seeds: Any) -> list[int]:
    """``seeds`` as a list, after checking it is a non-empty list of distinct integers >= 0;
    a :class:`ConfigError` naming ``name`` (and any repeated seed) otherwise."""
    if (not isinstance(seeds, (list, tuple)) or not seeds
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds)):
        raise ConfigError(f"{name} must be a list of distinct integers >= 0 (one seed at least), got {seeds!r}")
    repeated = sorted(seed for seed, count in Counter(seeds).items() if count > 1)
    if repeated:
        raise ConfigError(f"{name} must be distinct (a repeated seed is the same run counted twice), "
                          f"got {list(seeds)!r}: {', '.join(map(str, repeated))} repeated")
    return list(seeds)

