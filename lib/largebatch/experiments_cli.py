"""Command line of the run cache: ``python -m largebatch.experiments sweep|verify|gc``.

* ``sweep FILE [--shard I/N] [--jobs N]`` runs the configurations a JSON or YAML file
  names (see :func:`load_configs`), this machine's shard only, in N local processes.
  Every configuration is checked (also against its data) before the first run starts.
  Ctrl-C cancels the queued runs, stops the running ones and exits with status 130;
  finished runs stay in the cache, and the same command resumes.
* ``verify [--repair]`` lists bad cache files (exit status 1 when there are any);
  ``--repair`` moves them to the quarantine folder.
* ``gc [--min-age SECONDS]`` removes orphaned temporary files and leftover training
  states of finished runs.

Every command takes ``--cache DIR`` (default: :func:`experiments.default_cache_dir`); a
cache folder that is empty, a file or (for ``verify`` and ``gc``) missing is an error
(status 2), as is any bad option.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from pathlib import Path
from typing import Any, Sequence

from largebatch import experiments, run_cache
from largebatch.config import ConfigError, RunConfig
from largebatch.process_pool import INTERRUPTED_EXIT
from largebatch.user_input import folder_option, read_yaml_file

SWEEP_SUFFIXES = (".json", ".yaml", ".yml")


def load_configs(path: str | Path) -> list[RunConfig]:
    """The configurations a sweep file names (``.json``, ``.yaml`` or ``.yml``).

    The file holds either a list of :class:`RunConfig` field dicts, or a mapping
    ``{"base": {fields}, "grid": {field: [values], ...}}``: ``base`` at every
    combination of the grid's values (the first field outermost).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep file {path} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    suffix = path.suffix.lower()
    if suffix not in SWEEP_SUFFIXES:
        raise ConfigError(f"sweep file {path} must end in {', '.join(SWEEP_SUFFIXES)} (any case), "
                          f"got {path.suffix or 'no suffix'!r}")
    if suffix == ".json":
        try:
            content = json.loads(path.read_text())
        except ValueError as error:  # json.JSONDecodeError, UnicodeDecodeError
            raise ConfigError(f"sweep file {path} is not valid JSON: {error}") from None
    else:
        content = read_yaml_file(path, "sweep file")
    entries = _entries(content, path)
    if not entries:
        raise ConfigError(f"sweep file {path} names no configuration (an empty list or mapping); "
                          "give a list of configuration mappings or a mapping with 'base' and 'grid'")
    configs = []
    for index, entry in enumerate(entries):
        if not entry:
            raise ConfigError(f"sweep file {path}, configuration {index} is empty (it would train the "
                              "default configuration); name its fields")
        try:
            configs.append(RunConfig.from_dict(entry))
        except (ConfigError, TypeError) as error:
            raise ConfigError(f"sweep file {path}, configuration {index}: {error}") from None
    return configs


def _entries(content: Any, path: Path) -> list[dict[str, Any]]:
    """The configuration mappings of a parsed sweep file: a list of them, or base x grid."""
    if isinstance(content, dict) and content and set(content) <= {"base", "grid"}:
        base, grid = content.get("base", {}), content.get("grid", {})
        if not isinstance(base, dict) or not isinstance(grid, dict) or ("grid" in content and not grid) or not all(
                isinstance(values, list) and values for values in grid.values()):
            raise ConfigError(f"sweep file {path}: 'base' must map fields to values and 'grid' "
                              "at least one field to a non-empty list of values")
        return [{**base, **dict(zip(grid, values))} for values in itertools.product(*grid.values())]
    if isinstance(content, list) and all(isinstance(entry, dict) for entry in content):
        return content
    if content == {}:
        return []
    raise ConfigError(f"sweep file {path} must hold a list of configuration mappings or "
                      f"a mapping with 'base' and 'grid', got {_describe(content)}")


def _describe(content: Any) -> str:
    if isinstance(content, dict):
        return f"a mapping with keys {sorted(map(str, content))}"
    return "an empty file" if content is None else f"a {type(content).__name__}"


def _shard(text: str) -> tuple[int, int]:
    try:
        return experiments.parse_shard(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m largebatch.experiments",
                                     description="Run sweeps and look after the run cache.")
    commands = parser.add_subparsers(dest="command", required=True)
    sweep = commands.add_parser("sweep", help="run the configurations of a sweep file")
    sweep.add_argument("file", type=Path, help="JSON or YAML file: a list of configurations or base + grid")
    sweep.add_argument("--shard", type=_shard, default=None, metavar="I/N",
                       help="run only part I of N (0 <= I < N), e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT")
    sweep.add_argument("--jobs", type=_positive, default=1, help="local processes (default 1)")
    verify = commands.add_parser("verify", help="list cache files that fail to parse or verify")
    verify.add_argument("--repair", action="store_true", help="move bad files to the quarantine folder")
    gc = commands.add_parser("gc", help="remove orphaned temporary files")
    gc.add_argument("--min-age", type=_seconds, default=600.0, metavar="SECONDS",
                    help="only temporary files older than this (default 600)")
    for command in (sweep, verify, gc):
        command.add_argument("--cache", type=folder_option, default=None,
                             help="cache folder (default: $LARGEBATCH_CACHE_DIR, else the project's)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (130 after Ctrl-C)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        cache = args.cache or experiments.default_cache_dir()
    except ConfigError as error:  # $LARGEBATCH_CACHE_DIR empty or a file
        parser.error(str(error))
    command = {"sweep": _sweep, "verify": _verify, "gc": _gc}[args.command]
    try:
        return command(args, cache)
    except (ConfigError, FileNotFoundError) as error:  # a bad sweep file, no cache folder there
        parser.error(str(error))


def _verify(args: argparse.Namespace, cache: Path) -> int:
    """``verify``: list bad files (status 1 when there are any), or move them aside (``--repair``)."""
    report = run_cache.verify(cache, repair=args.repair)
    for problem in report.problems:
        print(problem)
    print(f"{report.finished} finished runs ({report.unsealed} without checksums), "
          f"{len(report.problems)} bad files" + (" moved to quarantine" if args.repair and report.problems else ""))
    return 1 if report.problems and not args.repair else 0


def _gc(args: argparse.Namespace, cache: Path) -> int:
    """``gc``: remove orphaned temporary files and leftover training states."""
    removed = run_cache.gc(cache, min_age_s=args.min_age)
    for path in removed:
        print(f"removed {path}")
    print(f"{len(removed)} orphaned files removed from {cache}")
    return 0


def _sweep(args: argparse.Namespace, cache: Path) -> int:
    """``sweep FILE``: every configuration checked, then this shard's runs; Ctrl-C stops them."""
    configs = load_configs(args.file)
    try:
        records = experiments.sweep(configs, cache, shard=args.shard, jobs=args.jobs)  # checks all first
    except KeyboardInterrupt:
        finished = sum(experiments.load_record(config, cache) is not None for config in configs)
        print(f"interrupted: {finished} of {len(configs)} runs of {args.file} are finished in {cache} "
              "(the same command resumes)", file=sys.stderr, flush=True)
        return INTERRUPTED_EXIT
    for record in records:
        print(record["key"], record["status"])
    part = f" (shard {args.shard[0]}/{args.shard[1]} of {len(configs)})" if args.shard else ""
    print(f"{len(records)} runs finished{part} in {cache}")
    return 0
