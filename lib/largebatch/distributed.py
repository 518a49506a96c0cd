"""Data parallelism on torch.distributed: a thin layer beside ``train`` and ``hessian``.

Launch any script that calls ``train.fit`` or ``experiments.run`` with
``torchrun --nproc_per_node=N script.py``: :func:`init_from_env` (called by both)
joins the process group that torchrun's environment describes (NCCL on GPUs, gloo
on CPUs), and the helpers below do the rest. Without torchrun's environment every
function here is a no-op for one process (rank 0 of 1), so single-process code
paths are unchanged.

* ranks: :func:`rank`, :func:`world_size`, :func:`is_main`, :func:`is_distributed`,
  :func:`device` (the GPU of this process's local rank, or the CPU);
* sharding: :func:`shard_range` -- a contiguous, balanced part of ``n`` items, so the
  concatenation of all ranks' parts is the unsharded sequence;
* reductions: :func:`all_reduce_sum`, :func:`weighted_mean` (all-reduce of
  size-weighted partial means: the mean over all ranks' samples);
* broadcasts: :func:`broadcast_object` (rank 0's decision to every rank),
  :func:`broadcast_buffers` (rank 0's BatchNorm running statistics);
* :func:`wrap` -- DistributedDataParallel around a model, when distributed.

Timeouts: a collective that waits longer than ``$LARGEBATCH_DIST_TIMEOUT_S``
seconds (default 600) fails instead of hanging, and torchrun ends every worker
when one of them exits with an error.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

DEFAULT_TIMEOUT_S = 600.0

__all__ = ["all_reduce_sum", "broadcast_buffers", "broadcast_object", "device", "init_from_env",
           "is_distributed", "is_main", "rank", "shard_range", "weighted_mean", "world_size", "wrap"]


def _launched_with_several_workers() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _timeout() -> timedelta:
    text = os.environ.get("LARGEBATCH_DIST_TIMEOUT_S", str(DEFAULT_TIMEOUT_S))
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(f"LARGEBATCH_DIST_TIMEOUT_S must be a number of seconds, got {text!r}") from None
    if not seconds > 0:
        raise ValueError(f"LARGEBATCH_DIST_TIMEOUT_S must be positive, got {text!r}")
    return timedelta(seconds=seconds)


def init_from_env(backend: str | None = None) -> bool:
    """Join the process group described by torchrun's environment; return whether distributed.

    Does nothing when the group already exists or when the environment asks for one
    worker (no ``WORLD_SIZE`` > 1). ``backend`` defaults to ``nccl`` when CUDA is
    available and ``gloo`` otherwise; on a GPU the process takes ``cuda:LOCAL_RANK``.
    """
    if not dist.is_available():
        if _launched_with_several_workers():
            raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        return False
    if dist.is_initialized():
        return is_distributed()
    if not _launched_with_several_workers():
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    dist.init_process_group(backend=backend, timeout=_timeout())
    return True


def is_distributed() -> bool:
    """Whether this process is one of several in an initialized process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of workers (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Whether this process writes records, checkpoints and progress bars (rank 0)."""
    return rank() == 0


def device() -> torch.device:
    """``cuda:LOCAL_RANK`` when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def shard_range(n: int, part: int | None = None, parts: int | None = None) -> tuple[int, int]:
    """``[start, stop)`` of part ``part`` (default: this rank) of ``n`` items cut into ``parts``
    contiguous pieces whose sizes differ by at most one (the first ones are larger)."""
    part = rank() if part is None else part
    parts = world_size() if parts is None else parts
    if parts < 1 or not 0 <= part < parts:
        raise ValueError(f"part must be in [0, parts) with parts >= 1, got part={part}, parts={parts}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    base, extra = divmod(n, parts)
    start = part * base + min(part, extra)
    return start, start + base + (part < extra)


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum ``tensor`` over all ranks, in place (unchanged for one process); returns it."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def weighted_mean(partial_mean: Tensor, count: int) -> Tensor:
    """Mean over all ranks' samples from each rank's mean of ``count`` samples.

    Returns ``sum_r count_r * mean_r / sum_r count_r`` (``partial_mean`` itself for one
    process); every rank gets the same tensor.
    """
    if not is_distributed():
        return partial_mean
    packed = torch.cat([partial_mean.reshape(-1) * count,
                        partial_mean.new_tensor([float(count)])])
    all_reduce_sum(packed)
    if packed[-1] == 0:
        raise ValueError("data is empty on every rank: no samples to average")
    return (packed[:-1] / packed[-1]).reshape(partial_mean.shape)


def broadcast_object(value: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``value`` on every rank (picklable objects; ``value`` for one process)."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src, device=device() if dist.get_backend() == "nccl" else None)
    return box[0]


def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (BatchNorm running statistics) to every rank, in place."""
    if not is_distributed():
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=src)


def wrap(model: nn.Module) -> nn.Module | None:
    """``DistributedDataParallel(model)`` when distributed (rank 0's weights are broadcast
    to every rank on construction), else None."""
    if not is_distributed():
        return None
    ids = [model_device.index] if (model_device := next(model.parameters()).device).type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)
