"""Execute the chapter notebooks for a parameter profile and build the book.

    python -m largebatch.reproduce --profile {smoke,quick,paper} [--only NAMES]
        [-p KEY VALUE ...] [--jobs N] [--seeds S ...] [--out DIR]
        [--build] [--no-execute]

Profiles live in ``profiles/<name>.yaml``: keys under ``all`` go to every
notebook that declares that parameter, keys under a notebook's name to that
notebook only; ``-p`` overrides both (values are YAML, ``1e-3`` a float as in
papermill). A section that names no notebook, a key that no notebook (under ``all``)
or not that notebook declares, a repeated seed or an empty ``--only`` name is an
error before anything runs. Executed notebooks go to ``--out``
(default ``_build/executed/<profile>``), beside a ``manifest.json`` that records
per notebook its parameters, status, time, library version, git commit and the
tail of its error. A notebook whose source, parameters, environment and library
are unchanged since its last execution is not executed again, and the runs it
makes are cached by ``largebatch.experiments``, so a rebuild with nothing
changed is quick.

``--jobs N`` executes N notebooks at a time, each in its own worker process and
kernel, those the profile's ``start_order`` lists first (the longest chapters, so that
the jobs finish together), then the others in book order; a notebook whose name
contains ``summary`` starts after all others have finished. ``--seeds`` reruns
chapters over other seeds: a notebook declaring a ``seeds`` parameter gets the list, one
declaring only ``seed`` is executed once per seed (the first seed's run is the book's, the
others go to ``seed-S/``).
The kernels also see ``$LARGEBATCH_PROFILE`` (the profile name),
``$LARGEBATCH_VERDICTS_DIR`` (the folder of their executed notebook), and
``$LARGEBATCH_CACHE_DIR`` and ``$LARGEBATCH_DATA`` as this command resolves them
(absolute, so kernels working in ``notebooks/`` use the same folders). A failed
notebook does not stop the others; the exit status is non-zero and names it.
Ctrl-C stops everything: queued notebooks do not start, running kernels are shut
down, ``manifest.json`` records what finished (the rest as ``interrupted``) and the
exit status is 130.
``--build`` then builds the HTML book from the executed notebooks with
``jupyter-book build -W --keep-going`` into ``_build/html``.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import difflib
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import Future, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

import yaml

from largebatch.process_pool import INTERRUPTED_EXIT, StoppablePool
from largebatch.user_input import ConfigError, check_seeds, folder_environment, folder_option, parse_yaml, \
    read_yaml_file

PROFILES = ("smoke", "quick", "paper")
BOOK_FILES = ("_config.yml", "_toc.yml")
MANIFEST_FILE = "manifest.json"
ERROR_TAIL_CHARS = 3000
ENV_VERDICTS_DIR = "LARGEBATCH_VERDICTS_DIR"
ENV_PROFILE = "LARGEBATCH_PROFILE"


INTERRUPTED = "interrupted"
START_ORDER = "start_order"  # profile key: notebooks started first under --jobs, longest first


@dataclass
class NotebookOutcome:
    name: str
    status: str  # "executed", "cached", "failed" or "interrupted" (Ctrl-C came first)
    seconds: float
    error: str = ""


@dataclass(frozen=True)
class Task:
    """One notebook execution: which notebook, where its output goes, with what."""

    label: str  # the notebook's name, with ``[seed=S]`` for an extra seed
    name: str
    source: Path
    out_dir: Path
    parameters: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def is_summary(self) -> bool:
        return is_summary(self.name)


def is_summary(name: str) -> bool:
    """Whether a notebook is a summary: it reads the other chapters' verdict files, so it
    runs after them and is stale whenever one of them changes."""
    return "summary" in name


def project_root() -> Path:
    """The checkout this module was installed from (holds notebooks/, profiles/, book/)."""
    return Path(__file__).resolve().parents[2]


def chapter_notebooks(root: Path) -> dict[str, Path]:
    """Chapter notebooks by name (file stem), in book order."""
    return {path.stem: path for path in sorted((root / "notebooks").glob("*.ipynb"))}


def load_profile(root: Path, profile: str) -> dict[str, dict[str, Any]]:
    """The sections of ``profiles/<profile>.yaml``: ``all`` and one per notebook.

    Raises :class:`ConfigError` naming the file when it does not parse, when its top level
    or a section is not a mapping, when a section names no notebook, or when a key names a
    parameter that no notebook (for ``all``) or not that notebook declares.
    """
    if profile not in PROFILES:
        raise SystemExit(f"unknown profile {profile!r}; available: {', '.join(PROFILES)}")
    path = root / "profiles" / f"{profile}.yaml"
    data = read_yaml_file(path, "profile")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"profile {path} must map sections (all, or a notebook name) to parameters, "
                          f"got a {type(data).__name__}")
    declared = {name: declared_parameters(source) for name, source in chapter_notebooks(root).items()}
    sections = {"all": set().union(*declared.values()), **declared}
    checked = {}
    for section, values in data.items():
        if section == START_ORDER:
            _check_start_order(path, values, declared)
            continue
        if section not in sections:
            raise ConfigError(f"profile {path}: unknown section {section!r}{_suggestion(section, sections)}; "
                              f"sections are {', '.join(sections)}")
        if not isinstance(values, (dict, type(None))):
            raise ConfigError(f"profile {path}: section {section!r} must map parameter names to values, "
                              f"got {values!r}")
        checked[section] = dict(values or {})
        _check_declared(f"profile {path}, section {section!r}", checked[section], sections[section],
                        "no notebook declares" if section == "all" else "the notebook does not declare")
    return checked


def start_order(root: Path, profile: str) -> list[str]:
    """The profile's ``start_order``: notebooks to start first under ``--jobs``, longest first
    (the rest follow in book order); checked by :func:`load_profile`."""
    data = read_yaml_file(root / "profiles" / f"{profile}.yaml", "profile")
    return list(data.get(START_ORDER) or []) if isinstance(data, dict) else []


def _check_start_order(path: Path, names: Any, notebooks: dict[str, Any]) -> None:
    if not isinstance(names, list) or len(set(map(str, names))) != len(names):
        raise ConfigError(f"profile {path}: {START_ORDER} must be a list of distinct notebook names, got {names!r}")
    for name in names:
        if name not in notebooks:
            raise ConfigError(f"profile {path}: {START_ORDER} names {name!r}{_suggestion(name, notebooks)}, "
                              f"which is not a notebook; notebooks are {', '.join(notebooks)}")


def in_start_order(tasks: Sequence[Task], order: Sequence[str]) -> list[Task]:
    """``tasks`` with those of the notebooks in ``order`` first, in that order; the others keep theirs."""
    rank = {name: index for index, name in enumerate(order)}
    return sorted(tasks, key=lambda task: rank.get(task.name, len(rank)))


def _suggestion(name: str, allowed: Any) -> str:
    close = difflib.get_close_matches(str(name), [str(a) for a in allowed], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_declared(where: str, values: dict[str, Any], declared: set[str], verb: str) -> None:
    """Fail (:class:`ConfigError`) when ``values`` set a parameter outside ``declared``."""
    unknown = sorted(set(values) - declared)
    if unknown:
        raise ConfigError(f"{where} sets {unknown}{_suggestion(unknown[0], declared)}, which {verb}; "
                          f"declared: {', '.join(sorted(declared))}")


def declared_parameters(path: Path) -> set[str]:
    """Names in the notebook's ``parameters`` cell."""
    return set(_inspect(str(path), path.stat().st_mtime_ns))


def default_seeds(path: Path) -> list[int] | None:
    """The default of the notebook's ``seeds`` (or ``[seed]``) parameter; None if it declares
    neither or its default is not a literal."""
    defaults = _inspect(str(path), path.stat().st_mtime_ns)
    try:
        if "seeds" in defaults:
            return list(ast.literal_eval(defaults["seeds"]))
        return [ast.literal_eval(defaults["seed"])] if "seed" in defaults else None
    except (ValueError, SyntaxError, TypeError):
        return None


@functools.lru_cache(maxsize=64)
def _inspect(path: str, mtime_ns: int) -> dict[str, str]:
    """Parameter name -> its default as written in the ``parameters`` cell."""
    import papermill

    return {name: spec["default"] for name, spec in papermill.inspect_notebook(path).items()}


def parameters_for(name: str, declared: set[str], profile: dict[str, dict[str, Any]],
                   overrides: dict[str, Any]) -> dict[str, Any]:
    """Profile ``all`` keys the notebook declares, then its own section, then overrides."""
    own = profile.get(name, {})
    _check_declared(f"profile section {name!r}", own, declared, "the notebook does not declare")
    merged = {k: v for k, v in profile.get("all", {}).items() if k in declared}
    merged.update(own)
    merged.update({k: v for k, v in overrides.items() if k in declared})
    return merged


def _library_fingerprint() -> str:
    """A hash of the library's sources, subpackages (``studies``) included."""
    library = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(library.rglob("*.py")):
        digest.update(str(path.relative_to(library)).encode() + path.read_bytes())
    return digest.hexdigest()


def _stamp(source: Path, parameters: dict[str, Any], out_dir: Path, env: dict[str, str] | None = None) -> str:
    digest = hashlib.sha256(source.read_bytes())
    if is_summary(source.stem):
        for path in sorted(out_dir.glob("*.verdicts.json")):
            digest.update(path.read_bytes())
    digest.update(json.dumps(parameters, sort_keys=True, default=str).encode())
    digest.update(json.dumps(env or {}, sort_keys=True).encode())
    digest.update(_library_fingerprint().encode())
    return digest.hexdigest()


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """Set environment variables (inherited by the kernel papermill starts), then restore them."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def execute(name: str, source: Path, out_dir: Path, parameters: dict[str, Any],
            env: dict[str, str] | None = None) -> NotebookOutcome:
    """Run one notebook with papermill (working directory: the notebooks folder),
    its kernel seeing ``env`` on top of this process's environment."""
    import papermill

    env = env or {}
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / source.name
    stamp_file = out_dir / f"{source.stem}.stamp"
    stamp = _stamp(source, parameters, out_dir, env)
    if target.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
        return NotebookOutcome(name, "cached", 0.0)
    started = time.perf_counter()
    stamp_file.unlink(missing_ok=True)
    (out_dir / f"{source.stem}.verdicts.json").unlink(missing_ok=True)  # rewritten by the chapter
    try:
        with _environment(env):
            papermill.execute_notebook(str(source), str(target), parameters=parameters,
                                       cwd=str(source.parent), kernel_name="python3",
                                       progress_bar=False)
    except Exception as error:  # papermill raises PapermillExecutionError with the cell's traceback
        return NotebookOutcome(name, "failed", time.perf_counter() - started, str(error).strip())
    fold_injected_parameters(target)
    stamp_file.write_text(stamp)
    return NotebookOutcome(name, "executed", time.perf_counter() - started)


def _execute_task(task: Task) -> NotebookOutcome:
    return execute(task.label, task.source, task.out_dir, task.parameters, task.env)


def plan(notebooks: dict[str, Path], declared: dict[str, set[str]], profile: dict[str, dict[str, Any]],
         overrides: dict[str, Any], out_dir: Path, env: dict[str, str],
         seeds: Sequence[int] | None = None) -> list[Task]:
    """The executions: one per notebook, or one per seed for a notebook declaring only ``seed``.

    ``env`` goes to every kernel, with ``$LARGEBATCH_VERDICTS_DIR`` set to the
    folder of that kernel's executed notebook. A ``seeds`` parameter (from the profile,
    an override or ``seeds``) must list distinct integers >= 0 (:class:`ConfigError`).
    """
    tasks = []
    for name, source in notebooks.items():
        parameters = parameters_for(name, declared[name], profile, overrides)
        if "seeds" in parameters:
            check_seeds(f"parameter seeds of {name}", parameters["seeds"])
        runs: list[tuple[str, dict[str, Any], Path]] = [(name, parameters, out_dir)]
        if seeds and "seeds" in declared[name]:
            runs = [(name, {**parameters, "seeds": list(seeds)}, out_dir)]
        elif seeds and "seed" in declared[name]:
            runs = [(name if index == 0 else f"{name}[seed={seed}]", {**parameters, "seed": seed},
                     out_dir if index == 0 else out_dir / f"seed-{seed}")
                    for index, seed in enumerate(seeds)]
        for label, values, folder in runs:
            tasks.append(Task(label, name, source, folder, values,
                              {**env, ENV_VERDICTS_DIR: str(folder.resolve())}))
    return tasks


def run_tasks(tasks: Sequence[Task], jobs: int = 1) -> dict[str, NotebookOutcome]:
    """Execute tasks, ``jobs`` at a time; summary notebooks start after all others finished.

    Each task runs in a worker process (papermill changes the working directory, and
    each kernel gets its own environment). Ctrl-C stops the execution: queued tasks do
    not start, running ones are stopped (papermill shuts their kernels down), and every
    task that did not finish gets the status ``"interrupted"``.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    waves = [[t for t in tasks if not t.is_summary], [t for t in tasks if t.is_summary]]
    outcomes: dict[str, NotebookOutcome] = {}

    def report(task: Task, outcome: NotebookOutcome) -> None:
        outcomes[task.label] = outcome
        print(f"[{len(outcomes)}/{len(tasks)}] {task.label}: {outcome.status} in {outcome.seconds:.1f} s", flush=True)
        if outcome.status == "failed":
            print(outcome.error[-ERROR_TAIL_CHARS:], file=sys.stderr, flush=True)

    try:
        with StoppablePool(jobs) as pool:
            for wave in waves:
                futures: dict[Future, Task] = {}
                for task in wave:
                    print(f"{task.label} ...", flush=True)
                    futures[pool.submit(_execute_task, task)] = task
                for future in as_completed(futures):
                    task = futures[future]
                    try:
                        outcome = future.result()
                    except Exception as error:  # a worker that died: the others go on
                        outcome = NotebookOutcome(task.label, "failed", 0.0, f"{type(error).__name__}: {error}")
                    report(task, outcome)
    except KeyboardInterrupt:
        for task in tasks:
            outcomes.setdefault(task.label, NotebookOutcome(task.label, INTERRUPTED, 0.0,
                                                            "stopped by Ctrl-C before it finished"))
    return {t.label: outcomes[t.label] for t in tasks}


def write_manifest(out_dir: Path, tasks: Sequence[Task], outcomes: dict[str, NotebookOutcome],
                   profile: str, jobs: int) -> Path:
    """``manifest.json`` beside the executed notebooks; a cached notebook keeps its last execution's
    time, versions and machine (:func:`largebatch.provenance.environment`)."""
    from largebatch import __version__, provenance
    from largebatch.experiments import _git_commit

    path = out_dir / MANIFEST_FILE
    previous = json.loads(path.read_text()).get("notebooks", {}) if path.exists() else {}
    commit = _git_commit()
    machine = provenance.environment()
    entries = {}
    for task in tasks:
        outcome = outcomes[task.label]
        last = previous.get(task.label, {})
        executed = outcome.seconds if outcome.status != "cached" else last.get("last_execution_seconds")
        entries[task.label] = {
            "notebook": str(task.out_dir.relative_to(out_dir) / task.source.name),
            "parameters": task.parameters, "env": task.env, "status": outcome.status,
            "seconds": round(outcome.seconds, 2),
            "last_execution_seconds": None if executed is None else round(executed, 2),
            "library_version": __version__ if outcome.status != "cached" else last.get("library_version", __version__),
            "git_commit": commit if outcome.status != "cached" else last.get("git_commit", commit),
            "seeds": task.parameters.get("seeds", [task.parameters["seed"]] if "seed" in task.parameters
                                         else default_seeds(task.source)),
            "provenance": machine if outcome.status != "cached" else last.get("provenance", machine),
            "error_tail": outcome.error[-ERROR_TAIL_CHARS:],
        }
    manifest = {"profile": profile, "jobs": jobs, "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "provenance": machine, "notebooks": {**previous, **entries}}
    path.write_text(json.dumps(manifest, indent=1, default=str))
    return path


def time_table(tasks: Sequence[Task], outcomes: dict[str, NotebookOutcome], wall_seconds: float) -> str:
    """Per-chapter status and execution time, and the wall time of the whole execution."""
    width = max([len(t.label) for t in tasks] + [len("notebook")])
    lines = [f"{'notebook':<{width}}  {'status':<8}  {'seconds':>8}"]
    lines += [f"{t.label:<{width}}  {outcomes[t.label].status:<8}  {outcomes[t.label].seconds:>8.1f}" for t in tasks]
    lines.append(f"{'wall time':<{width}}  {'':<8}  {wall_seconds:>8.1f}")
    return "\n".join(lines)


def fold_injected_parameters(notebook: Path) -> None:
    """Tag the cell papermill injected (``injected-parameters``) ``hide-input``, so the book
    shows it collapsed, like the parameters cell it overrides; the file is replaced whole."""
    content = json.loads(notebook.read_text())
    for cell in content["cells"]:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags and "hide-input" not in tags:
            tags.append("hide-input")
    partial = notebook.with_name(notebook.name + ".part")
    partial.write_text(json.dumps(content, indent=1, ensure_ascii=False) + "\n")
    os.replace(partial, notebook)


def build_book(executed_dir: Path, root: Path, output: Path) -> int:
    """Stage the book (config, prose, executed notebooks) and run ``jupyter-book build -W``."""
    stage = output / "_build" / "stage"
    stage.mkdir(parents=True, exist_ok=True)
    for name in BOOK_FILES:
        shutil.copy2(root / name, stage / name)
    _sync_tree(root / "book", stage / "book", ignore=("notebooks",))
    _sync_tree(executed_dir, stage / "notebooks", pattern="*.ipynb")
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


def _overrides(parameters: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """``-p KEY VALUE`` pairs, each value read as YAML (``1e-3`` a float, as papermill reads it)."""
    overrides = {}
    for key, value in parameters:
        try:
            overrides[key] = parse_yaml(value)
        except yaml.YAMLError as error:
            raise ConfigError(f"-p {key} {value!r} is not a YAML value: {' '.join(str(error).split())}") from None
    return overrides


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def _seed(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"--seeds takes integers >= 0, got {text!r}")
    return int(text)


def _select(notebooks: dict[str, Path], only: Sequence[str]) -> dict[str, Path]:
    """The notebooks ``--only`` names (exactly or by prefix); :class:`ConfigError` for an empty
    name or one that matches nothing."""
    names = ", ".join(notebooks)
    for name in only:
        if not name.strip():
            raise ConfigError(f"--only got an empty name (an unset shell variable?); available: {names}")
        if not any(n == name or n.startswith(name) for n in notebooks):
            raise ConfigError(f"--only {name!r} matched no notebook; available: {names}")
    return {n: p for n, p in notebooks.items() if any(n == o or n.startswith(o) for o in only)}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (1: a notebook failed, 130: Ctrl-C)."""
    parser = argparse.ArgumentParser(prog="python -m largebatch.reproduce", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="quick", choices=PROFILES)
    parser.add_argument("--only", nargs="+", metavar="NAME", help="notebook names (or name prefixes) to run")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        help="override a notebook parameter (value parsed as YAML)")
    parser.add_argument("--jobs", type=_positive, default=1, help="notebooks executed at a time (default 1)")
    parser.add_argument("--seeds", type=_seed, nargs="+", help="rerun over these seeds (see above)")
    parser.add_argument("--out", type=folder_option, help="folder for executed notebooks")
    parser.add_argument("--build", action="store_true", help="build the HTML book afterwards")
    parser.add_argument("--no-execute", action="store_true", help="build from already executed notebooks")
    parser.add_argument("--book-output", type=folder_option,
                        help="folder that receives _build/html (default: the project root)")
    parser.add_argument("--root", type=Path, default=None, help=argparse.SUPPRESS)  # tests: another project folder
    args = parser.parse_args(argv)
    root = args.root or project_root()
    try:
        tasks, out_dir = _prepare(args, root)
    except ConfigError as error:
        parser.error(str(error))

    failed: list[str] = []
    if not args.no_execute:
        started = time.perf_counter()
        outcomes = run_tasks(in_start_order(tasks, start_order(root, args.profile)), args.jobs)
        manifest = write_manifest(out_dir, tasks, outcomes, args.profile, args.jobs)
        print(time_table(tasks, outcomes, time.perf_counter() - started), flush=True)
        print(f"executed notebooks and {manifest.name} -> {out_dir}", flush=True)
        interrupted = [label for label, outcome in outcomes.items() if outcome.status == INTERRUPTED]
        if interrupted:
            print(f"interrupted: {', '.join(interrupted)} did not finish; {manifest} records what did",
                  file=sys.stderr, flush=True)
            return INTERRUPTED_EXIT
        failed = [label for label, outcome in outcomes.items() if outcome.status == "failed"]
    if args.build:
        status = build_book(out_dir, root, args.book_output or root)
        if status != 0:
            return status
        print(f"book: {(args.book_output or root) / '_build' / 'html' / 'index.html'}")
    if failed:
        print(f"failed notebooks ({len(failed)}): {', '.join(failed)}; see {out_dir / MANIFEST_FILE}",
              file=sys.stderr, flush=True)
        return 1
    return 0


def _prepare(args: argparse.Namespace, root: Path) -> tuple[list[Task], Path]:
    """Every check of the command line, then the tasks and the output folder (created).

    The kernels get the cache and data folders resolved here, as absolute paths, so
    they use the folders this command (and ``python -m largebatch.experiments``) would.
    """
    notebooks = chapter_notebooks(root)
    if args.only:
        notebooks = _select(notebooks, args.only)
    if args.seeds:
        check_seeds("--seeds", args.seeds)
    profile = load_profile(root, args.profile)
    overrides = _overrides(args.parameter)
    if args.seeds and {"seed", "seeds"} & set(overrides):
        raise ConfigError("give seeds either with --seeds or with -p seed/seeds, not both")
    declared = {name: declared_parameters(path) for name, path in notebooks.items()}
    unused = set(overrides) - set().union(*declared.values())
    if unused:
        raise ConfigError(f"no selected notebook declares {sorted(unused)}")
    out_dir = args.out or root / "_build" / "executed" / args.profile
    env = {ENV_PROFILE: args.profile, **folder_environment()}
    tasks = plan(notebooks, declared, profile, overrides, out_dir, env, args.seeds)
    out_dir.mkdir(parents=True, exist_ok=True)
    return tasks, out_dir


if __name__ == "__main__":
    sys.exit(main())
