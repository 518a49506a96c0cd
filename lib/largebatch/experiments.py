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

The cache folder is ``$LARGEBATCH_CACHE_DIR`` if set, else ``.cache/runs`` at
the root of the project checkout (found from the working directory), else
``~/.cache/largebatch/runs``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from largebatch import __version__, augmentation, data, distributed, models
from largebatch.callbacks import Callback
from largebatch.config import ConfigError, RunConfig
from largebatch.train import compose_transforms, evaluate, fit

RECORD_FILE = "record.json"
CHECKPOINT_FILE = "model.pt"
TRAIN_STATE_FILE = "train_state.pt"
SINGLE_BATCH_HESSIAN_SAMPLES = 8192  # up to this many training samples, Hessians use one batch

__all__ = ["RunConfig", "ConfigError", "run", "sweep", "results", "load_model", "load_data",
           "build_model", "validate", "default_cache_dir"]


def default_cache_dir() -> Path:
    """``$LARGEBATCH_CACHE_DIR``, or ``.cache/runs`` in the enclosing checkout, or the user cache."""
    if "LARGEBATCH_CACHE_DIR" in os.environ:
        return Path(os.environ["LARGEBATCH_CACHE_DIR"])
    for folder in [Path.cwd(), *Path.cwd().parents]:
        if (folder / "lib" / "largebatch").is_dir() and (folder / "pyproject.toml").exists():
            return folder / ".cache" / "runs"
    return Path.home() / ".cache" / "largebatch" / "runs"


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

    return AdversarialTransform(fraction=config.adversarial_fraction, eps=config.adversarial_eps,
                                method=config.adversarial_method, clip=bundle.value_range)


def _hessian_metrics(config: RunConfig, model: nn.Module, bundle: data.DataBundle) -> dict[str, Any]:
    """Curvature of the final weights: Hessian of the mean loss over the whole training set.

    Top-``k`` and bottom-``k`` eigenvalues (Lanczos, ``which="LA"`` / ``"SA"``, relative
    tolerance ``config.hessian_tol``) and the Hutchinson trace, in eval mode.
    """
    if config.hessian_top_k == 0 and config.hessian_bottom_k == 0 and not config.hessian_trace:
        return {}
    from largebatch import hessian

    # A small training set is one batch whose gradient graph is kept between products
    # (about twice as fast); a large one is cut once into device batches of 1024.
    # Under torchrun each worker takes its contiguous part and products are all-reduced.
    inputs, targets = bundle.train.tensors
    start, stop = distributed.shard_range(len(targets))
    inputs, targets = inputs[start:stop], targets[start:stop]
    if len(bundle.train) <= SINGLE_BATCH_HESSIAN_SAMPLES:
        loader: Any = (inputs, targets)
    else:
        loader = hessian.device_batches((inputs, targets), 1024, next(model.parameters()).device)
    solver: dict[str, Any] = {"sharded": True}
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


def _atomic_save_model(model: nn.Module, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(handle)
    try:
        torch.save(model.state_dict(), temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def run_dir(config: RunConfig, cache_dir: str | os.PathLike | None = None) -> Path:
    return Path(cache_dir or default_cache_dir()) / config.key()


def load_record(config: RunConfig, cache_dir: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The stored record of a finished run, or None."""
    path = run_dir(config, cache_dir) / RECORD_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text())


def default_device() -> torch.device:
    """The GPU when there is one (under torchrun: the local rank's), else the CPU
    (not part of a run's identity or cache key)."""
    return distributed.device()


def run(config: RunConfig, cache_dir: str | os.PathLike | None = None, *, force: bool = False,
        progress: bool = True, device: str | torch.device | None = None) -> dict[str, Any]:
    """Train and evaluate ``config`` on ``device`` (default: :func:`default_device`),
    or return its cached record; an interrupted run continues from its last epoch
    (``force=True`` starts afresh)."""
    if not isinstance(config, RunConfig):
        raise TypeError(f"config must be a RunConfig, got {type(config).__name__}")
    distributed.init_from_env()
    cached = None if force else distributed.broadcast_object(
        load_record(config, cache_dir) if distributed.is_main() else None)
    if cached is not None:
        return cached
    device = torch.device(device) if device is not None else default_device()
    if config.sync_batch_norm and distributed.is_distributed() and device.type == "cpu":
        raise ConfigError("sync_batch_norm needs GPUs (torch's SyncBatchNorm runs on CUDA only); "
                          "leave it False on CPU workers")
    bundle = validate(config)
    started = time.perf_counter()
    folder = run_dir(config, cache_dir)
    resume = None if force else distributed.broadcast_object(
        _load_train_state(folder / TRAIN_STATE_FILE) if distributed.is_main() else None)
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
                      checkpoint=(lambda saved: _save_train_state(saved, folder / TRAIN_STATE_FILE))
                      if distributed.is_main() else None,
                      resume=resume)
    final: dict[str, Any] = {"steps": outcome.steps}
    if outcome.status != "diverged":
        for split, dataset in (("train", bundle.train), ("test", bundle.test)):
            metrics = evaluate(model, dataset)
            final[f"{split}_loss"], final[f"{split}_accuracy"] = metrics["loss"], metrics["accuracy"]
        final.update(_hessian_metrics(config, model, bundle))
    record = {
        "key": config.key(), "config": config.to_dict(), "status": outcome.status,
        "history": outcome.history, "steps": outcome.step_log, "final": final,
        "version": __version__, "git_commit": _git_commit(),
        "epoch_wall_time_s": outcome.epoch_wall_time_s,
        "wall_time_s": time.perf_counter() - started + (resume["counters"]["wall_time_s"] if resume else 0.0),
        "workers": distributed.world_size(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if distributed.is_main():
        _atomic_save_model(model, folder / CHECKPOINT_FILE)
        atomic_write_bytes(folder / RECORD_FILE, json.dumps(record, indent=1, allow_nan=True).encode())
        (folder / TRAIN_STATE_FILE).unlink(missing_ok=True)
    return record


def _controller(config: RunConfig, bundle: data.DataBundle, transform: Any) -> Any:
    if config.batch_size_controller == "none":
        return None
    from largebatch.absa import build_controller

    return build_controller(config, bundle.train, transform)


def _save_train_state(saved: dict[str, Any], path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _load_train_state(path: Path) -> dict[str, Any] | None:
    """The end-of-epoch state of an interrupted run, or None."""
    return torch.load(path, weights_only=True, map_location="cpu") if path.exists() else None


def sweep(configs: Sequence[RunConfig], cache_dir: str | os.PathLike | None = None, *,
          progress: bool = True) -> list[dict[str, Any]]:
    """Run many configurations; finished ones are read from the cache, never recomputed."""
    configs = list(configs)
    for config in configs:  # every configuration is checked before the first run starts
        if not isinstance(config, RunConfig):
            raise TypeError(f"sweep takes RunConfig objects, got {type(config).__name__}")
    records = []
    for config in tqdm(configs, desc="runs", unit="run", disable=not (progress and distributed.is_main())):
        records.append(run(config, cache_dir, progress=progress))
    return records


def load_model(config: RunConfig, cache_dir: str | os.PathLike | None = None,
               device: str | torch.device | None = None) -> nn.Module:
    """The trained model of a finished run, in eval mode on ``device`` (default: the CPU);
    the checkpoint is loaded with ``weights_only=True``."""
    path = run_dir(config, cache_dir) / CHECKPOINT_FILE
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint for this configuration at {path}; call run(config) first")
    model = build_model(config, load_data(config))
    model.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"))
    return model.to(device or "cpu").eval()


def results(records: Iterable[dict[str, Any]] | None = None,
            cache_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per run: its configuration fields, status, final metrics and wall time.

    With no ``records``, every record found in the cache folder is loaded.
    """
    if records is None:
        folder = Path(cache_dir or default_cache_dir())
        records = [json.loads(p.read_text()) for p in sorted(folder.glob(f"*/{RECORD_FILE}"))]
    rows = []
    for record in records:
        row = {"key": record["key"], **record["config"], "status": record["status"],
               **record["final"], "wall_time_s": record["wall_time_s"]}
        rows.append(row)
    return pd.DataFrame(rows)


def history(record: dict[str, Any]) -> pd.DataFrame:
    """The per-epoch history of one run as a DataFrame."""
    return pd.DataFrame(record["history"])
