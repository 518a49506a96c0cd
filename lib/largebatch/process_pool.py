"""Worker processes that Ctrl-C stops: queued work cancelled, running work ended.

A plain ``concurrent.futures.ProcessPoolExecutor`` keeps going after Ctrl-C: a worker
takes the ``KeyboardInterrupt`` (or the kernel shutdown papermill's client does on
SIGINT) as one failed call and starts the next queued one, and leaving its ``with``
block waits for every queued call. :class:`StoppablePool` is the same pool (spawn
context) with one difference: when the block it guards raises (``KeyboardInterrupt``
above all), the pool stops before the exception goes on:

1. a shared stop flag is set, so no worker starts another call, and calls not yet handed
   to a worker are cancelled;
2. every worker gets SIGTERM, which unwinds its running call (``finally`` blocks run:
   run locks are released, papermill shuts its kernel down), after which it exits;
3. a worker still alive after ``grace_s`` seconds (or at a second Ctrl-C) is killed.

Workers ignore SIGINT themselves (a terminal sends Ctrl-C to the whole process group):
the parent decides. Finished work is whatever the calls had written (the run cache
writes atomically), so a stopped sweep resumes where it stopped.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from concurrent.futures import Future, ProcessPoolExecutor
from types import TracebackType
from typing import Any, Callable

INTERRUPTED_EXIT = 130  # the shell's status for a command ended by SIGINT (128 + 2)
GRACE_S = 30.0  # seconds a stopped worker gets to unwind before it is killed

_stop_flag: Any = None  # in a worker: the pool's stop flag (a multiprocessing Event)
_busy = False  # in a worker: whether a call is running


def _on_sigterm(signum: int, frame: Any) -> None:
    """In a worker: unwind the running call, or exit at once when idle."""
    if _busy:
        raise KeyboardInterrupt
    os._exit(INTERRUPTED_EXIT)


def _init_worker(stop_flag: Any) -> None:
    global _stop_flag
    _stop_flag = stop_flag
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    signal.signal(signal.SIGTERM, _on_sigterm)


def _call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run one call in a worker, unless the pool is stopping; a stopped call ends the worker."""
    global _busy
    if _stop_flag.is_set():
        os._exit(INTERRUPTED_EXIT)
    _busy = True
    try:
        return function(*args, **kwargs)
    except KeyboardInterrupt:
        os._exit(INTERRUPTED_EXIT)
    finally:
        _busy = False


class StoppablePool:
    """``with StoppablePool(jobs) as pool: pool.submit(fn, *args)``: ``jobs`` spawned worker
    processes, stopped (see the module docstring) when the block raises."""

    def __init__(self, jobs: int, grace_s: float = GRACE_S) -> None:
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
        context = multiprocessing.get_context("spawn")
        self._stop_flag = context.Event()
        self._before = {process.pid for process in multiprocessing.active_children()}
        self._executor = ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker,
                                             initargs=(self._stop_flag,))
        self.grace_s = grace_s

    def submit(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        """Schedule ``function(*args, **kwargs)`` in a worker (``function`` must be picklable)."""
        return self._executor.submit(_call, function, *args, **kwargs)

    def __enter__(self) -> "StoppablePool":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if kind is None:
            self._executor.shutdown(wait=True)
        else:
            self.stop()

    def stop(self) -> None:
        """Cancel queued calls, end running ones (SIGTERM, then SIGKILL after the grace period)."""
        self._stop_flag.set()
        workers = [p for p in multiprocessing.active_children() if p.pid not in self._before]
        self._executor.shutdown(wait=False, cancel_futures=True)
        for worker in workers:
            worker.terminate()
        deadline = time.monotonic() + self.grace_s
        try:
            for worker in workers:
                worker.join(max(0.0, deadline - time.monotonic()))
        except KeyboardInterrupt:  # a second Ctrl-C: no more waiting
            pass
        for worker in workers:
            if worker.is_alive():
                worker.kill()
                worker.join()
        self._executor.shutdown(wait=True)  # its queues and threads, now that no worker is left
