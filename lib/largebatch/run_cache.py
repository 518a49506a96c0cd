"""Integrity and exclusivity of the run cache's entries (one folder per configuration).

:mod:`largebatch.experiments` stores each run under ``<cache>/<key>/``; this module
makes those folders trustworthy when files are corrupted, processes are killed and
several processes (or machines sharing the folder) work on one cache:

* **Atomic writes** -- :func:`atomic_write_bytes` writes a temporary file beside the
  target, ``fsync``s it and renames it over the target, so a reader sees the old or
  the whole new content.
* **Checksums** -- a record carries ``checksums``: the SHA-256 of its own content
  (every field but ``checksums``) and of its checkpoint file ``model.pt``
  (:func:`seal`). :func:`read_record` parses and verifies both; a resumable training
  state is written with its SHA-256 in a header line (:func:`write_checked`).
* **Quarantine** -- a file that fails to parse or verify is moved, never deleted, to
  ``<cache>/_quarantine/<key>/<UTC time>-<name>`` with a ``.why`` note beside it
  (:func:`quarantine`), and a :class:`CacheWarning` names it; the caller recomputes.
* **Locks** -- :func:`run_lock` holds an exclusive ``fcntl.flock`` on
  ``<key>/run.lock`` while a run trains; the file records the holder's pid and host.
  The kernel releases the lock when its holder dies (even by SIGKILL), so a lock left
  by a killed process is taken over at once. Needs a file system with working
  ``flock`` (local disks, NFSv4; Lustre mounted with ``-o flock``).
* **Maintenance** -- :func:`verify` lists bad entries (``python -m largebatch.experiments
  verify``), :func:`gc` removes orphaned temporary files and the leftover training
  states of finished runs (``... gc``).

Records written before checksums existed (no ``checksums`` field) are accepted as
they are and reported as ``unsealed`` by :func:`verify`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import socket
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import torch

RECORD_FILE = "record.json"
CHECKPOINT_FILE = "model.pt"
TRAIN_STATE_FILE = "train_state.pt"
LOCK_FILE = "run.lock"
MEASUREMENTS_DIR = "measurements"  # analysis.measure's results, derived from the finished run
QUARANTINE_DIR = "_quarantine"
RECORD_FIELDS = ("key", "config", "status", "history", "final")
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}$")  # tempfile.mkstemp(prefix=".<target>.")
_HEADER = b"sha256:"
_KEY = re.compile(r"[0-9a-f]{16}")  # RunConfig.key()
_log = logging.getLogger(__name__)

__all__ = ["CacheWarning", "CorruptEntryError", "Problem", "VerifyReport", "atomic_write_bytes", "check_record",
           "gc", "quarantine", "quarantine_entry", "read_checked", "read_record", "run_lock", "seal", "sha256_bytes",
           "sha256_file", "torch_bytes", "verify", "write_checked"]


class CacheWarning(UserWarning):
    """A cache file failed to parse or verify and was moved aside."""


@dataclass(frozen=True)
class Problem:
    """A bad cache file: where it is and what is wrong with it."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class CorruptEntryError(RuntimeError):
    """A cache file that cannot be used; the message names the file and what is wrong."""

    def __init__(self, problem: Problem, advice: str = "") -> None:
        super().__init__(f"{problem}{advice}")
        self.problem = problem


# ----------------------------------------------------------------------------- writing


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write a file so that readers see either the old or the whole new content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def sha256_bytes(payload: bytes) -> str:
    """Hex SHA-256 of bytes."""
    return hashlib.sha256(payload).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def torch_bytes(obj: Any) -> bytes:
    """``torch.save`` of ``obj`` into bytes."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _content_digest(record: dict[str, Any]) -> str:
    content = {name: value for name, value in record.items() if name != "checksums"}
    return sha256_bytes(json.dumps(content, sort_keys=True, allow_nan=True).encode())


def seal(record: dict[str, Any], checkpoint_sha256: str) -> dict[str, Any]:
    """``record`` as JSON reads it back (tuples become lists...) with ``checksums``: SHA-256
    of its content and of its checkpoint file."""
    content = json.loads(json.dumps({name: value for name, value in record.items() if name != "checksums"},
                                    allow_nan=True))
    return {**content, "checksums": {"record": _content_digest(content), CHECKPOINT_FILE: checkpoint_sha256}}


def write_checked(path: Path, obj: Any) -> None:
    """Atomically write ``torch.save(obj)`` behind a ``sha256:<hex>`` header line."""
    payload = torch_bytes(obj)
    atomic_write_bytes(path, _HEADER + sha256_bytes(payload).encode() + b"\n" + payload)


def read_checked(path: Path) -> Any:
    """Load a file written by :func:`write_checked`; raises :class:`CorruptEntryError`
    naming the file when it is truncated, altered or not loadable.

    A file without the header (written before checksums existed) is loaded as it is.
    """
    raw = path.read_bytes()
    if raw.startswith(_HEADER):
        header, _, payload = raw.partition(b"\n")
        if sha256_bytes(payload) != header[len(_HEADER):].decode(errors="replace"):
            raise CorruptEntryError(Problem(path, "checksum mismatch (truncated or altered file)"))
    else:
        payload = raw
    try:
        return torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")
    except Exception as error:  # torch raises many types for damaged archives
        first_line = str(error).splitlines()[0] if str(error) else ""
        raise CorruptEntryError(Problem(path, f"not a loadable torch file ({type(error).__name__}: "
                                              f"{first_line})")) from None


# ----------------------------------------------------------------------------- checking


def check_record(folder: Path) -> tuple[dict[str, Any] | None, list[Problem]]:
    """The record in ``folder`` (or None) and the problems of its files.

    Checks that ``record.json`` parses as a JSON object with the fields every record
    has, that its ``key`` is the folder's name, and (for sealed records) that its
    content and ``model.pt`` match their checksums.
    """
    path = folder / RECORD_FILE
    if not path.exists():
        return None, []
    try:
        record = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, [Problem(path, f"not valid JSON ({error})")]
    if not isinstance(record, dict):
        return None, [Problem(path, f"wrong schema: a JSON {type(record).__name__}, not an object")]
    missing = [name for name in RECORD_FIELDS if name not in record]
    if missing:
        return None, [Problem(path, f"wrong schema: missing fields {missing}")]
    if record["key"] != folder.name:
        return None, [Problem(path, f"wrong schema: key {record['key']!r} is not the folder's {folder.name!r}")]
    checksums = record.get("checksums")
    if checksums is None:
        return record, []  # written before checksums existed
    if not isinstance(checksums, dict) or checksums.get("record") != _content_digest(record):
        return None, [Problem(path, "checksum mismatch: the record's content was altered")]
    model = folder / CHECKPOINT_FILE
    if not model.exists():
        return None, [Problem(model, "missing checkpoint of a finished run")]
    if sha256_file(model) != checksums.get(CHECKPOINT_FILE):
        return None, [Problem(model, "checksum mismatch: truncated or altered checkpoint")]
    return record, []


def quarantine(problem: Problem, cache_dir: Path) -> Path:
    """Move a bad file (or folder) under ``cache_dir`` to the same place under
    ``<cache>/_quarantine/``, named with the time, with a ``.why`` note beside it; warn;
    return where it went. Nothing is deleted."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    where = problem.path.parent.relative_to(cache_dir)  # <key> or <key>/measurements
    target = cache_dir / QUARANTINE_DIR / where / f"{stamp}-{problem.path.name}"
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(problem.path, target)
    target.with_name(target.name + ".why").write_text(f"{problem}\n")
    warnings.warn(f"{problem}; moved to {target}", CacheWarning, stacklevel=3)
    return target


def read_record(folder: Path, *, repair: bool = False) -> dict[str, Any] | None:
    """The verified record in ``folder``, or None when there is none or it is bad.

    With ``repair=True`` (the caller holds the run's lock) a bad record and its
    checkpoint are moved to quarantine, so the run is recomputed.
    """
    record, problems = check_record(folder)
    if problems and repair:
        quarantine_entry(folder, problems[0])
    return record


def quarantine_entry(folder: Path, problem: Problem) -> None:
    """Move a finished run's record, checkpoint and measurements (all of it: one is useless
    or stale without the others) to quarantine because of ``problem``."""
    for name in (RECORD_FILE, CHECKPOINT_FILE, MEASUREMENTS_DIR):
        path = folder / name
        if path.exists():
            quarantine(problem if path == problem.path else
                       Problem(path, f"belongs to a bad entry ({problem})"), folder.parent)


# ----------------------------------------------------------------------------- locking


def _holder(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text().strip() or "unknown"
    return "unknown"


def _acquire(folder: Path) -> int | None:
    """The descriptor holding ``folder``'s lock, taken without waiting, or None when held."""
    path = folder / LOCK_FILE
    while True:
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(handle)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise OSError(error.errno, f"cannot lock {path}: this file system does not support "
                          "flock; put the cache (LARGEBATCH_CACHE_DIR) on one that does") from None
        try:  # the previous holder may have removed the file after we opened it
            if os.fstat(handle).st_ino == os.stat(path).st_ino:
                return handle
        except FileNotFoundError:
            pass
        os.close(handle)


def _release(folder: Path, handle: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        (folder / LOCK_FILE).unlink()
    os.close(handle)  # releases the flock


@contextlib.contextmanager
def run_lock(folder: Path, *, poll_s: float = 0.1, timeout_s: float | None = None) -> Iterator[None]:
    """Hold the exclusive lock of one run folder (waits while another process holds it).

    The lock is an ``flock`` on ``<folder>/run.lock``, released by the kernel when the
    holder exits or is killed (a killed holder's lock is taken over at once); the file
    names the holder (pid, host, start time) and is removed on release. Raises
    TimeoutError after ``timeout_s`` (None: wait as long as it takes).
    """
    folder.mkdir(parents=True, exist_ok=True)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    waited = False
    while (handle := _acquire(folder)) is None:
        if not waited:
            _log.info("waiting for %s, held by %s", folder / LOCK_FILE, _holder(folder / LOCK_FILE))
            waited = True
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{folder / LOCK_FILE} is still held by {_holder(folder / LOCK_FILE)} "
                               f"after {timeout_s} s")
        time.sleep(poll_s)
    try:
        os.ftruncate(handle, 0)
        os.write(handle, f"pid {os.getpid()} host {socket.gethostname()} since "
                         f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}\n".encode())
        yield
    finally:
        _release(folder, handle)


@contextlib.contextmanager
def _if_unlocked(folder: Path) -> Iterator[bool]:
    """Hold ``folder``'s lock if nobody does; yields whether it was taken."""
    handle = _acquire(folder)
    try:
        yield handle is not None
    finally:
        if handle is not None:
            _release(folder, handle)


# ----------------------------------------------------------------------------- maintenance


def _entries(cache_dir: Path) -> list[Path]:
    """The run folders of the cache (named by a configuration key; e.g. ``figures/`` is not one);
    a ``FileNotFoundError`` naming ``cache_dir`` when it is not a folder."""
    if not cache_dir.is_dir():
        state = "is a file, not a folder" if cache_dir.exists() else "does not exist"
        raise FileNotFoundError(f"the cache folder {cache_dir} {state}")
    return sorted(p for p in cache_dir.iterdir() if p.is_dir() and _KEY.fullmatch(p.name))


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify` found: bad files, finished entries and unsealed (old) records."""

    problems: list[Problem]
    finished: int
    unsealed: int


def verify(cache_dir: Path, *, repair: bool = False) -> VerifyReport:
    """Check every entry of the cache (records, checkpoints, training states, measurements).

    With ``repair=True`` bad files are moved to quarantine (each under its run's lock;
    entries whose lock is held by a running process are checked but left alone).
    """
    problems: list[Problem] = []
    finished = unsealed = 0
    for folder in _entries(cache_dir):
        record, found = check_record(folder)
        for path in [folder / TRAIN_STATE_FILE, *sorted((folder / MEASUREMENTS_DIR).glob("*.pt"))]:
            if path.exists():
                try:
                    read_checked(path)
                except CorruptEntryError as error:
                    found.append(error.problem)
        finished += record is not None
        unsealed += record is not None and "checksums" not in record
        problems += found
        if repair and found:
            with _if_unlocked(folder) as free:
                if free:
                    read_record(folder, repair=True)
                    for problem in found:
                        if problem.path.exists():
                            quarantine(problem, cache_dir)
    return VerifyReport(problems, finished, unsealed)


def gc(cache_dir: Path, *, min_age_s: float = 600.0) -> list[Path]:
    """Remove orphaned files; returns what was removed.

    Orphans are temporary files of interrupted atomic writes (``.<name>.XXXXXXXX``)
    older than ``min_age_s`` and the training state of a run whose verified record
    exists. Entries whose lock is held (a run in progress) are skipped; quarantined
    files are kept.
    """
    removed: list[Path] = []
    now = time.time()
    for folder in _entries(cache_dir):
        with _if_unlocked(folder) as free:
            if not free:
                continue
            for path in sorted(folder.rglob(".*")):
                if path.is_file() and _TEMPORARY.match(path.name) and now - path.stat().st_mtime >= min_age_s:
                    path.unlink()
                    removed.append(path)
            state = folder / TRAIN_STATE_FILE
            if state.exists() and check_record(folder)[0] is not None:
                state.unlink()
                removed.append(state)
    return removed
