"""Command line of the run cache: ``python -m largebatch.experiments sweep|verify|gc``.

* ``sweep FILE [--shard I/N] [--jobs N]`` runs the configurations a JSON or YAML file
  names (see :func:`load_configs`), this machine's shard only, in N local processes.
* ``verify [--repair]`` lists bad cache files (exit status 1 when there are any);
  ``--repair`` moves them to the quarantine folder.
* ``gc [--min-age SECONDS]`` removes orphaned temporary files and leftover training
  states of finished runs.

Every command takes ``--cache DIR`` (default: :func:`experiments.default_cache_dir`).
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Sequence

from largebatch import experiments, run_cache
from largebatch.config import ConfigError, RunConfig


def load_configs(path: str | Path) -> list[RunConfig]:
    """The configurations a sweep file names (``.json``, ``.yaml`` or ``.yml``).

    The file holds either a list of :class:`RunConfig` field dicts, or a mapping
    ``{"base": {fields}, "grid": {field: [values], ...}}``: ``base`` at every
    combination of the grid's values (the first field outermost).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            content = yaml.safe_load(text)
        else:
            content = json.loads(text)
    except ValueError as error:  # json.JSONDecodeError and yaml.YAMLError
        raise ConfigError(f"sweep file {path} does not parse: {error}") from None
    if isinstance(content, dict) and set(content) <= {"base", "grid"}:
        base, grid = content.get("base", {}), content.get("grid", {})
        if not isinstance(base, dict) or not isinstance(grid, dict) or not all(
                isinstance(values, list) and values for values in grid.values()):
            raise ConfigError(f"sweep file {path}: 'base' must map fields to values and 'grid' "
                              "fields to non-empty lists of values")
        entries = [{**base, **dict(zip(grid, values))} for values in itertools.product(*grid.values())]
    elif isinstance(content, list) and all(isinstance(entry, dict) for entry in content):
        entries = content
    else:
        raise ConfigError(f"sweep file {path} must hold a list of configuration mappings or "
                          "a mapping with 'base' and 'grid'")
    configs = []
    for index, entry in enumerate(entries):
        try:
            configs.append(RunConfig.from_dict(entry))
        except (ConfigError, TypeError) as error:
            raise ConfigError(f"sweep file {path}, configuration {index}: {error}") from None
    return configs


def _shard(text: str) -> tuple[int, int]:
    try:
        return experiments.parse_shard(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m largebatch.experiments",
                                     description="Run sweeps and look after the run cache.")
    commands = parser.add_subparsers(dest="command", required=True)
    sweep = commands.add_parser("sweep", help="run the configurations of a sweep file")
    sweep.add_argument("file", type=Path, help="JSON or YAML file: a list of configurations or base + grid")
    sweep.add_argument("--shard", type=_shard, default=None, metavar="I/N",
                       help="run only part I of N (0 <= I < N), e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT")
    sweep.add_argument("--jobs", type=int, default=1, help="local processes (default 1)")
    verify = commands.add_parser("verify", help="list cache files that fail to parse or verify")
    verify.add_argument("--repair", action="store_true", help="move bad files to the quarantine folder")
    gc = commands.add_parser("gc", help="remove orphaned temporary files")
    gc.add_argument("--min-age", type=float, default=600.0, metavar="SECONDS",
                    help="only temporary files older than this (default 600)")
    for command in (sweep, verify, gc):
        command.add_argument("--cache", type=Path, default=None, help="cache folder (default: the project's)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    cache = args.cache or experiments.default_cache_dir()
    if args.command == "sweep":
        if args.jobs < 1:
            parser.error(f"--jobs must be an integer >= 1, got {args.jobs}")
        try:
            configs = load_configs(args.file)
        except (ConfigError, FileNotFoundError) as error:
            parser.error(str(error))
        records = experiments.sweep(configs, cache, shard=args.shard, jobs=args.jobs)
        for record in records:
            print(record["key"], record["status"])
        part = f" (shard {args.shard[0]}/{args.shard[1]} of {len(configs)})" if args.shard else ""
        print(f"{len(records)} runs finished{part} in {cache}")
        return 0
    if args.command == "verify":
        report = run_cache.verify(Path(cache), repair=args.repair)
        for problem in report.problems:
            print(problem)
        print(f"{report.finished} finished runs ({report.unsealed} without checksums), "
              f"{len(report.problems)} bad files" + (" moved to quarantine" if args.repair and report.problems else ""))
        return 1 if report.problems and not args.repair else 0
    removed = run_cache.gc(Path(cache), min_age_s=args.min_age)
    for path in removed:
        print(f"removed {path}")
    print(f"{len(removed)} orphaned files removed from {cache}")
    return 0
