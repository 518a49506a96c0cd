"""Runs as cached, resumable experiments.

``run(config)`` trains and evaluates one :class:`RunConfig` and stores its
record (json: config, per-epoch history, final metrics, library version, git
commit, wall time) and a checkpoint under ``<cache>/<config.key()>/``. Both files
are written atomically and the record last, so a record on disk always means a
finished run: ``run`` returns it instead of training again, and ``sweep`` over
many configurations resumes after an interruption without recomputing anything
finished. ``results`` turns records into a pandas DataFrame.

While a run trains, the state after every epoch (model, optimizer, data order,
counters, history, controller state) is kept atomically in ``train_state.pt`` in
the same folder; an interrupted run started again continues from it, bit for bit
on CPU, and the file is removed once the record is written.

Under ``torchrun --nproc_per_node=N`` (see :mod:`largebatch.distributed`) every
worker trains its shard of each batch, the Hessian metrics use every worker's
part of the training set, and only rank 0 writes the record (whose ``workers``
field says how many ran it) and the checkpoints.

Every record carries checksums of its content and of its checkpoint; a run folder
is locked while it trains, so concurrent processes (and machines sharing the folder)
never train one configuration twice; a damaged entry is moved to quarantine and
recomputed (see :mod:`largebatch.run_cache`). ``sweep(..., shard=(I, N), jobs=J)``
splits a sweep across machines and local processes; ``python -m
largebatch.experiments sweep|verify|gc`` is the command line
(:mod:`largebatch.experiments_cli`).

The cache folder is ``$LARGEBATCH_CACHE_DIR`` if set, else ``.cache/runs`` at
the root of the project checkout (found from the working directory), else
``~/.cache/largebatch/runs``, always made absolute once
(:func:`largebatch.user_input.default_cache_dir`); an empty value or a file is an error.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from largebatch import __version__, augmentation, data, distributed, models, run_cache
from largebatch.callbacks import Callback
from largebatch.config import ConfigError, RunConfig
from largebatch.run_cache import (CHECKPOINT_FILE, RECORD_FILE, TRAIN_STATE_FILE,  # noqa: F401 (re-exported)
                                  CorruptEntryError, atomic_write_bytes)
from largebatch.train import compose_transforms, evaluate, fit
from largebatch.user_input import checked_folder, default_cache_dir

HESSIAN_CHUNK_SAMPLES = 1024  # samples per forward pass of an end-of-run Hessian product
CACHED_GRAPH_HESSIAN_SAMPLES = 8192  # up to this many training samples, the chunks' gradient graphs are kept

__all__ = ["RunConfig", "ConfigError", "run", "sweep", "results", "load_model", "load_data",
           "build_model", "validate", "validate_all", "cache_folder", "default_cache_dir", "load_record", "run_dir", "parse_shard"]


def cache_folder(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder, absolute: ``cache_dir`` if given, else :func:`default_cache_dir`; a
    :class:`ConfigError` when it is empty or names a file."""
    return default_cache_dir() if cache_dir is None else checked_folder(cache_dir, "the cache folder")


def load_data(config: RunConfig) -> data.DataBundle:
    """The data set a configuration names."""
    return data.load(config.dataset, root=config.data_root, num_samples=config.num_samples)


def validate(config: RunConfig, bundle: data.DataBundle | None = None) -> data.DataBundle:
    """Check a configuration against its data (e.g. batch size vs. training set); returns the data."""
    bundle = bundle or load_data(config)
    if config.batch_size > bundle.num_train:
        raise ConfigError(f"batch_size must be <= the training set size {bundle.num_train} "
                          f"of {config.dataset}, got {config.batch_size}")
    limits = {"max_batch_size": config.max_batch_size if config.batch_size_controller != "none" else None}
    if config.batch_size_controller in ("abs", "absa"):
        limits.update(eigen_samples=config.eigen_samples,
                      eigen_diagnostic_samples=config.eigen_diagnostic_samples)
    for name, value in limits.items():
        if value is not None and value > bundle.num_train:
            raise ConfigError(f"{name} must be <= the training set size {bundle.num_train} "
                              f"of {config.dataset}, got {value}")
    return bundle


def validate_all(configs: Sequence[RunConfig]) -> None:
    """:func:`validate` every configuration (each data set loaded once), before any run starts;
    the error names the configuration's position in ``configs``."""
    bundles: dict[tuple[str, str | None, int], data.DataBundle] = {}
    for index, config in enumerate(configs):
        if not isinstance(config, RunConfig):
            raise TypeError(f"sweep takes RunConfig objects, got {type(config).__name__} at position {index}")
        source = (config.dataset, config.data_root, config.num_samples if config.dataset == "mnist1d" else 0)
        try:
            bundles[source] = validate(config, bundles.get(source))
        except ConfigError as error:
            raise ConfigError(f"configuration {index} ({config.key()}): {error}") from None


def build_model(config: RunConfig, bundle: data.DataBundle) -> nn.Module:
    """The configured network, initialized from ``config.seed``, with ghost BN if asked."""
    torch.manual_seed(config.seed)
    model = models.build(config.model, bundle.input_shape, bundle.num_classes,
                         mean=bundle.mean, std=bundle.std, **config.model_options)
    if config.ghost_batch_size is not None:
        from largebatch.ghost_batch_norm import convert_to_ghost_batch_norm

        model = convert_to_ghost_batch_norm(model, config.ghost_batch_size)
    if config.sync_batch_norm and distributed.is_distributed():
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def _callbacks(config: RunConfig) -> list[Callback]:
    callbacks: list[Callback] = []
    if config.track_distance:
        from largebatch.metrics import DistanceFromInit

        callbacks.append(DistanceFromInit())
    return callbacks


def _input_transform(config: RunConfig, bundle: data.DataBundle):
    if config.adversarial_fraction == 0:
        return None
    from largebatch.attacks import AdversarialTransform

    if config.batch_size_controller == "absa":  # as the reference code (see largebatch.absa.AdaptiveRule)
        return AdversarialTransform(fraction=config.adversarial_fraction, eps=config.adversarial_eps,
                                    method=config.adversarial_method, clip="own", count="floor")
    return AdversarialTransform(fraction=config.adversarial_fraction, eps=config.adversarial_eps,
                                method=config.adversarial_method, clip=bundle.value_range)


def _final_metrics(model: nn.Module, bundle: data.DataBundle, history: list[dict[str, Any]],
                   steps: int) -> dict[str, float]:
    """Training and test loss and accuracy of the final weights: the last evaluation's when
    ``fit`` made it after the last update (it always evaluates after the last epoch), else
    evaluated now."""
    names = [f"{split}_{metric}" for split in ("train", "test") for metric in ("loss", "accuracy")]
    last = history[-1] if history else {}
    if last.get("step") == steps and all(name in last for name in names):
        return {name: last[name] for name in names}
    final = {}
    for split, dataset in (("train", bundle.train), ("test", bundle.test)):
        metrics = evaluate(model, dataset)
        final[f"{split}_loss"], final[f"{split}_accuracy"] = metrics["loss"], metrics["accuracy"]
    return final


def _hessian_metrics(config: RunConfig, model: nn.Module, bundle: data.DataBundle) -> dict[str, Any]:
    """Curvature of the final weights: Hessian of the mean loss over the whole training set.

    Top-``k`` and bottom-``k`` eigenvalues (Lanczos, ``which="LA"`` / ``"SA"``, relative
    tolerance ``config.hessian_tol``) and the Hutchinson trace, in eval mode.
    """
    if config.hessian_top_k == 0 and config.hessian_bottom_k == 0 and not config.hessian_trace:
        return {}
    from largebatch import hessian

    # The training set is cut once into device chunks of 1024 samples. Up to 8192 samples the
    # chunks' gradient graphs are kept between products (about twice as fast as rebuilding
    # them); chunks rather than one batch make a CNN's product 1.1-1.7x faster on a CPU
    # (benchmarks/bench_book.py, "chunks"). Under torchrun each worker takes its
    # contiguous part and products are all-reduced.
    inputs, targets = bundle.train.tensors
    start, stop = distributed.shard_range(len(targets))
    loader = hessian.device_batches((inputs[start:stop], targets[start:stop]), HESSIAN_CHUNK_SAMPLES,
                                    next(model.parameters()).device)
    solver: dict[str, Any] = {"sharded": True, "cache_graph": len(bundle.train) <= CACHED_GRAPH_HESSIAN_SAMPLES}
    if config.hessian_tol is not None:
        solver["tol"] = config.hessian_tol
    metrics: dict[str, Any] = {}
    matvecs = 0
    if config.hessian_top_k > 0:
        top = hessian.top_eigenvalues(model, loader, k=config.hessian_top_k, seed=config.seed, **solver)
        metrics["hessian_top_eigenvalues"] = list(top.eigenvalues)
        metrics["hessian_top_eigenvalue"] = top.eigenvalues[0]
        metrics["hessian_top_converged"] = bool(top.converged)
        matvecs += top.num_matvecs
    if config.hessian_bottom_k > 0:
        bottom = hessian.top_eigenvalues(model, loader, k=config.hessian_bottom_k, which="SA",
                                         seed=config.seed, **solver)
        metrics["hessian_bottom_eigenvalues"] = list(bottom.eigenvalues)
        metrics["hessian_smallest_eigenvalue"] = bottom.eigenvalues[0]
        metrics["hessian_bottom_converged"] = bool(bottom.converged)
        matvecs += bottom.num_matvecs
    if config.hessian_trace:
        probes = {} if config.hessian_trace_probes is None else {"num_matvecs": config.hessian_trace_probes}
        estimate = hessian.trace(model, loader, seed=config.seed, sharded=True, **probes)
        metrics["hessian_trace"] = estimate.estimate
        metrics["hessian_trace_std_error"] = estimate.std_error
        matvecs += estimate.num_matvecs
    metrics["hessian_matvecs"] = matvecs
    return metrics


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Train on one CPU thread: results then do not depend on the machine's core count.

    Multi-threaded CPU kernels sum in an order that depends on the number of
    threads, so the same configuration would give different weights on a laptop
    and on CI. The book's models are small enough that one thread costs little.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def run_dir(config: RunConfig, cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder of one configuration: ``<cache>/<config.key()>``."""
    return cache_folder(cache_dir) / config.key()


def load_record(config: RunConfig, cache_dir: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The stored record of a finished run, or None (also when it fails verification:
    :func:`run` then moves it aside and recomputes it)."""
    return run_cache.read_record(run_dir(config, cache_dir))


def default_device() -> torch.device:
    """The GPU when there is one (under torchrun: the local rank's), else the CPU
    (not part of a run's identity or cache key)."""
    return distributed.device()


def run(config: RunConfig, cache_dir: str | os.PathLike | None = None, *, force: bool = False,
        progress: bool = True, device: str | torch.device | None = None) -> dict[str, Any]:
    """Train and evaluate ``config`` on ``device`` (default: :func:`default_device`),
    or return its cached record; an interrupted run continues from its last epoch
    (``force=True`` starts afresh).

    While training, the run's folder is locked (see :mod:`largebatch.run_cache`): a
    second process asking for the same configuration waits and then returns the
    record the first one wrote. A record or checkpoint that fails verification is
    moved to the cache's quarantine folder (a :class:`run_cache.CacheWarning` names
    it) and the run is recomputed.
    """
    if not isinstance(config, RunConfig):
        raise TypeError(f"config must be a RunConfig, got {type(config).__name__}")
    distributed.init_from_env()
    folder = run_dir(config, cache_dir)
    cached = None if force else distributed.broadcast_object(
        run_cache.read_record(folder) if distributed.is_main() else None)
    if cached is not None:
        return cached
    device = torch.device(device) if device is not None else default_device()
    if config.sync_batch_norm and distributed.is_distributed() and device.type == "cpu":
        raise ConfigError("sync_batch_norm needs GPUs (torch's SyncBatchNorm runs on CUDA only); "
                          "leave it False on CPU workers")
    bundle = validate(config)
    with run_cache.run_lock(folder) if distributed.is_main() else contextlib.nullcontext():
        cached = None if force else distributed.broadcast_object(  # another process may have finished it
            run_cache.read_record(folder, repair=True) if distributed.is_main() else None)
        if cached is not None:
            return cached
        return _train(config, bundle, folder, device, force=force, progress=progress)


def _train(config: RunConfig, bundle: data.DataBundle, folder: Path, device: torch.device, *,
           force: bool, progress: bool) -> dict[str, Any]:
    """Train ``config`` (resuming from its training state), write its checkpoint and record."""
    started = time.perf_counter()
    resume = None if force else distributed.broadcast_object(
        _load_train_state(folder) if distributed.is_main() else None)
    with single_thread() if device.type == "cpu" else contextlib.nullcontext():
        model = build_model(config, bundle).to(device)
        transform = _input_transform(config, bundle)
        controller = _controller(config, bundle, transform)
        callbacks = _callbacks(config) + ([controller] if isinstance(controller, Callback) else [])
        outcome = fit(model, bundle.train, bundle.test, config, callbacks=callbacks,
                      input_transform=compose_transforms(augmentation.build(config.augmentation, config.seed),
                                                         transform),
                      batch_size_schedule=controller,
                      progress=progress and distributed.is_main(),
                      checkpoint=(lambda saved: run_cache.write_checked(folder / TRAIN_STATE_FILE, saved))
                      if distributed.is_main() else None,
                      resume=resume)
    final: dict[str, Any] = {"steps": outcome.steps}
    if outcome.status != "diverged":
        final.update(_final_metrics(model, bundle, outcome.history, outcome.steps))
        final.update(_hessian_metrics(config, model, bundle))
    record = {
        "key": config.key(), "config": config.to_dict(), "status": outcome.status,
        "history": outcome.history, "steps": outcome.step_log, "final": final,
        **({"divergence": outcome.divergence} if outcome.divergence is not None else {}),
        "version": __version__, "git_commit": _git_commit(),
        "epoch_wall_time_s": outcome.epoch_wall_time_s,
        "wall_time_s": time.perf_counter() - started + (resume["counters"]["wall_time_s"] if resume else 0.0),
        "workers": distributed.world_size(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if distributed.is_main():
        checkpoint = run_cache.torch_bytes(model.state_dict())
        run_cache.atomic_write_bytes(folder / CHECKPOINT_FILE, checkpoint)
        record = run_cache.seal(record, run_cache.sha256_bytes(checkpoint))
        run_cache.atomic_write_bytes(folder / RECORD_FILE, json.dumps(record, indent=1, allow_nan=True).encode())
        (folder / TRAIN_STATE_FILE).unlink(missing_ok=True)
    return record


def _controller(config: RunConfig, bundle: data.DataBundle, transform: Any) -> Any:
    if config.batch_size_controller == "none":
        return None
    from largebatch.absa import build_controller

    return build_controller(config, bundle.train, transform)


def _load_train_state(folder: Path) -> dict[str, Any] | None:
    """The end-of-epoch state of an interrupted run, or None (a damaged one is quarantined)."""
    path = folder / TRAIN_STATE_FILE
    if not path.exists():
        return None
    try:
        return run_cache.read_checked(path)
    except CorruptEntryError as error:
        run_cache.quarantine(error.problem, folder.parent)
        return None


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` (as in ``--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT``) as ``(I, N)``,
    with ``0 <= I < N``."""
    index, slash, count = str(text).partition("/")
    if not (slash and index.strip().isdigit() and count.strip().isdigit() and int(index) < int(count)):
        raise ValueError(f"shard must be I/N with integers 0 <= I < N (e.g. 0/4), got {text!r}")
    return int(index), int(count)


def _check_shard(shard: tuple[int, int]) -> None:
    if not (isinstance(shard, tuple) and len(shard) == 2 and all(isinstance(v, int) for v in shard)
            and 0 <= shard[0] < shard[1]):
        raise ValueError(f"shard must be (I, N) with integers 0 <= I < N, got {shard!r}")


def sweep(configs: Sequence[RunConfig], cache_dir: str | os.PathLike | None = None, *,
          progress: bool = True, shard: tuple[int, int] | None = None, jobs: int = 1) -> list[dict[str, Any]]:
    """Run many configurations; finished ones are read from the cache, never recomputed.

    ``shard=(I, N)`` runs only this machine's part: configurations ``I, I+N, I+2N, ...``
    of the list, so N machines sharing the cache folder cover it exactly once (the
    per-run locks also make overlapping sweeps safe). ``jobs`` > 1 runs that many
    local processes at once. Returns the records of the runs made here, in order.
    """
    configs = list(configs)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    if shard is not None:
        _check_shard(shard)
    if jobs > 1 and distributed.is_distributed():
        raise ValueError("jobs > 1 cannot be combined with torchrun (each worker is one process already)")
    validate_all(configs)
    if shard is not None:
        configs = configs[shard[0]::shard[1]]
    bar = tqdm(total=len(configs), desc="runs", unit="run", disable=not (progress and distributed.is_main()))
    with bar:
        if jobs == 1:
            records = []
            for config in configs:
                records.append(run(config, cache_dir, progress=progress))
                bar.update(1)
            return records
        from concurrent.futures import as_completed

        from largebatch.process_pool import StoppablePool

        cache = cache_folder(cache_dir)
        with StoppablePool(jobs) as pool:  # Ctrl-C: queued runs cancelled, running ones stopped
            futures = [pool.submit(run, config, cache, progress=False) for config in configs]
            for _ in as_completed(futures):
                bar.update(1)
            return [future.result() for future in futures]


def load_model(config: RunConfig, cache_dir: str | os.PathLike | None = None,
               device: str | torch.device | None = None) -> nn.Module:
    """The trained model of a finished run, in eval mode on ``device`` (default: the CPU);
    the checkpoint is loaded with ``weights_only=True``.

    A checkpoint that does not match its record's checksum or does not load raises
    :class:`run_cache.CorruptEntryError` naming the file, after moving the entry to
    quarantine (``run(config)`` then recomputes it).
    """
    folder = run_dir(config, cache_dir)
    path = folder / CHECKPOINT_FILE
    for needed in (folder / RECORD_FILE, path):  # a checkpoint without a record is an unfinished run
        if not needed.exists():
            raise FileNotFoundError(f"no finished run for this configuration: {needed} is missing; "
                                    "call run(config) first")
    model = build_model(config, load_data(config))
    try:
        state = _verified_checkpoint(folder)
    except CorruptEntryError:
        with run_cache.run_lock(folder):  # check again: another process may have replaced the entry
            try:
                state = _verified_checkpoint(folder)
            except CorruptEntryError as error:
                run_cache.quarantine_entry(folder, error.problem)
                moved_to = folder.parent / run_cache.QUARANTINE_DIR
                raise CorruptEntryError(error.problem, f"; the entry was moved to {moved_to}; "
                                        "run(config) recomputes it") from None
    model.load_state_dict(state)
    return model.to(device or "cpu").eval()


def _verified_checkpoint(folder: Path) -> dict[str, Any]:
    """The checkpoint's state dict, after checking it against its record's checksum."""
    problems = run_cache.check_record(folder)[1]
    if problems:
        raise CorruptEntryError(problems[0])
    return run_cache.read_checked(folder / CHECKPOINT_FILE)


def results(records: Iterable[dict[str, Any]] | None = None,
            cache_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per run: its configuration fields, status, final metrics and wall time.

    With no ``records``, every record found in the cache folder is loaded (one that fails
    verification is left out with a :class:`run_cache.CacheWarning` naming it).
    """
    if records is None:
        folder = cache_folder(cache_dir)
        records = []
        for path in sorted(folder.glob(f"*/{RECORD_FILE}")):
            record, problems = run_cache.check_record(path.parent)
            for problem in problems:
                warnings.warn(f"{problem}; left out of the table (`python -m largebatch.experiments verify "
                              "--repair` moves it aside)", run_cache.CacheWarning, stacklevel=2)
            if record is not None:
                records.append(record)
    rows = []
    for record in records:
        row = {"key": record["key"], **record["config"], "status": record["status"],
               **record["final"], "wall_time_s": record["wall_time_s"]}
        rows.append(row)
    return pd.DataFrame(rows)


def history(record: dict[str, Any]) -> pd.DataFrame:
    """The per-epoch history of one run as a DataFrame."""
    return pd.DataFrame(record["history"])


if __name__ == "__main__":  # python -m largebatch.experiments sweep|verify|gc ...
    from largebatch.experiments_cli import main

    raise SystemExit(main())
