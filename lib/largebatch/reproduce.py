"""Execute the chapter notebooks for a parameter profile and build the book.

    python -m largebatch.reproduce --profile {smoke,quick,paper} [--only NAMES]
        [-p KEY VALUE ...] [--out DIR] [--build] [--no-execute]

Profiles live in ``profiles/<name>.yaml``: keys under ``all`` go to every
notebook that declares that parameter, keys under a notebook's name to that
notebook only; ``-p`` overrides both. Executed notebooks go to ``--out``
(default ``_build/executed/<profile>``). A notebook whose source, parameters and
library are unchanged since its last execution is not executed again, and the
runs it makes are cached by ``largebatch.experiments``, so a rebuild with
nothing changed is quick. ``--build`` then builds the HTML book from those
executed notebooks with ``jupyter-book build -W --keep-going`` into ``_build/html``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

PROFILES = ("smoke", "quick", "paper")
BOOK_FILES = ("_config.yml", "_toc.yml")


@dataclass
class NotebookOutcome:
    name: str
    status: str  # "executed", "cached" or "failed"
    seconds: float
    error: str = ""


def project_root() -> Path:
    """The checkout this module was installed from (holds notebooks/, profiles/, book/)."""
    return Path(__file__).resolve().parents[2]


def chapter_notebooks(root: Path) -> dict[str, Path]:
    """Chapter notebooks by name (file stem), in book order."""
    return {path.stem: path for path in sorted((root / "notebooks").glob("*.ipynb"))}


def load_profile(root: Path, profile: str) -> dict[str, dict[str, Any]]:
    if profile not in PROFILES:
        raise SystemExit(f"unknown profile {profile!r}; available: {', '.join(PROFILES)}")
    data = yaml.safe_load((root / "profiles" / f"{profile}.yaml").read_text()) or {}
    return {section: dict(values or {}) for section, values in data.items()}


def declared_parameters(path: Path) -> set[str]:
    import papermill

    return set(papermill.inspect_notebook(str(path)))


def parameters_for(name: str, declared: set[str], profile: dict[str, dict[str, Any]],
                   overrides: dict[str, Any]) -> dict[str, Any]:
    """Profile ``all`` keys the notebook declares, then its own section, then overrides."""
    own = profile.get(name, {})
    unknown = set(own) - declared
    if unknown:
        raise SystemExit(f"profile section {name!r} sets parameters the notebook does not declare: "
                         f"{sorted(unknown)}; it declares {sorted(declared)}")
    merged = {k: v for k, v in profile.get("all", {}).items() if k in declared}
    merged.update(own)
    merged.update({k: v for k, v in overrides.items() if k in declared})
    return merged


def _library_fingerprint() -> str:
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _stamp(source: Path, parameters: dict[str, Any], out_dir: Path) -> str:
    digest = hashlib.sha256(source.read_bytes())
    if b"claims.summary_table" in source.read_bytes():  # the summary is stale when a verdict changes
        for path in sorted(out_dir.glob("*.verdicts.json")):
            digest.update(path.read_bytes())
    digest.update(json.dumps(parameters, sort_keys=True, default=str).encode())
    digest.update(_library_fingerprint().encode())
    return digest.hexdigest()


def execute(name: str, source: Path, out_dir: Path, parameters: dict[str, Any]) -> NotebookOutcome:
    """Run one notebook with papermill (working directory: the notebooks folder)."""
    import papermill

    target = out_dir / source.name
    stamp_file = out_dir / f"{source.stem}.stamp"
    stamp = _stamp(source, parameters, out_dir)
    if target.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
        return NotebookOutcome(name, "cached", 0.0)
    started = time.perf_counter()
    stamp_file.unlink(missing_ok=True)
    (out_dir / f"{source.stem}.verdicts.json").unlink(missing_ok=True)  # rewritten by the chapter
    try:
        papermill.execute_notebook(str(source), str(target), parameters=parameters,
                                   cwd=str(source.parent), kernel_name="python3",
                                   progress_bar=False)
    except Exception as error:  # papermill raises PapermillExecutionError with the cell's traceback
        return NotebookOutcome(name, "failed", time.perf_counter() - started, str(error).strip())
    stamp_file.write_text(stamp)
    return NotebookOutcome(name, "executed", time.perf_counter() - started)


def build_book(executed_dir: Path, root: Path, output: Path) -> int:
    """Stage the book (config, prose, executed notebooks) and run ``jupyter-book build -W``."""
    stage = output / "_build" / "stage"
    stage.mkdir(parents=True, exist_ok=True)
    for name in BOOK_FILES:
        shutil.copy2(root / name, stage / name)
    _sync_tree(root / "book", stage / "book", ignore=("notebooks",))
    _sync_tree(executed_dir, stage / "book" / "notebooks", pattern="*.ipynb")
    command = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(stage), "--path-output",
               str(output), "-W", "--keep-going"]
    print("building the book:", " ".join(command), flush=True)
    return subprocess.run(command).returncode


def _sync_tree(source: Path, target: Path, ignore: Sequence[str] = (), pattern: str = "**/*") -> None:
    """Copy changed files only (keeping times), so Sphinx rebuilds only what changed."""
    for path in source.glob(pattern):
        relative = path.relative_to(source)
        if path.is_dir() or relative.parts[0] in ignore:
            continue
        destination = target / relative
        if destination.exists() and destination.read_bytes() == path.read_bytes():
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination)


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m largebatch.reproduce", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="quick", choices=PROFILES)
    parser.add_argument("--only", nargs="+", metavar="NAME", help="notebook names (or name prefixes) to run")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        help="override a notebook parameter (value parsed as YAML)")
    parser.add_argument("--out", type=Path, help="folder for executed notebooks")
    parser.add_argument("--build", action="store_true", help="build the HTML book afterwards")
    parser.add_argument("--no-execute", action="store_true", help="build from already executed notebooks")
    parser.add_argument("--book-output", type=Path, help="folder that receives _build/html (default: the project root)")
    args = parser.parse_args(argv)

    root = project_root()
    notebooks = chapter_notebooks(root)
    if args.only:
        selected = {n: p for n, p in notebooks.items() if any(n == o or n.startswith(o) for o in args.only)}
        if not selected:
            parser.error(f"--only matched no notebook; available: {', '.join(notebooks)}")
        notebooks = selected
    profile = load_profile(root, args.profile)
    overrides = {key: _parse_value(value) for key, value in args.parameter}
    declared = {name: declared_parameters(path) for name, path in notebooks.items()}
    unused = set(overrides) - set().union(*declared.values())
    if unused:
        parser.error(f"no selected notebook declares {sorted(unused)}")
    out_dir = args.out or root / "_build" / "executed" / args.profile
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ["LARGEBATCH_VERDICTS_DIR"] = str(out_dir.resolve())  # read by the kernels
    os.environ["LARGEBATCH_PROFILE"] = args.profile

    failures = 0
    if not args.no_execute:
        total_started = time.perf_counter()
        for index, (name, path) in enumerate(notebooks.items(), start=1):
            parameters = parameters_for(name, declared[name], profile, overrides)
            print(f"[{index}/{len(notebooks)}] {name} ({args.profile}) ...", flush=True)
            outcome = execute(name, path, out_dir, parameters)
            print(f"[{index}/{len(notebooks)}] {name}: {outcome.status} in {outcome.seconds:.1f} s", flush=True)
            if outcome.status == "failed":
                failures += 1
                print(outcome.error[-3000:], file=sys.stderr, flush=True)
        print(f"executed {len(notebooks)} notebooks in {time.perf_counter() - total_started:.1f} s "
              f"({failures} failed) -> {out_dir}", flush=True)
    if args.build:
        status = build_book(out_dir, root, args.book_output or root)
        if status != 0:
            return status
        print(f"book: {(args.book_output or root) / '_build' / 'html' / 'index.html'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
