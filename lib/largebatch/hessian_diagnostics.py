"""How the Hessian estimators behave: cost of a product, convergence, sampling noise.

The measurements behind the chapter "Computing the Hessian" and the Hessian benchmark,
kept here so that notebooks and ``benchmarks/bench_hessian.py`` share one implementation:

* :func:`product_timings`, :func:`hvp_cost_ratio` -- seconds of one gradient and of one
  Hessian-vector product on the same batch (Pearlmutter: a small constant factor).
* :func:`eigen_convergence`, :func:`trace_convergence` -- error against a known answer as
  a function of the products spent (Lanczos vs power iteration; Hutchinson vs Hutch++).
* :func:`batch_eigenvalue_spread` -- the top eigenvalue estimated on random batches of
  several sizes (how noisy a small-batch sharpness estimate is).
* :func:`estimator_costs` -- products, seconds and accuracy of the usual estimates.
* :func:`matvecs_to_reach`, :func:`broadened_density`, :func:`mean_loss`, :func:`random_batch`,
  :func:`chunks` -- small helpers for the analyses above.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any, Callable, Mapping, Sequence

import pandas as pd
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from largebatch import hessian
from largebatch.hessian import LossFn, _forward, _prepare, _select_parameters, _training_flags

__all__ = [
    "batch_eigenvalue_spread",
    "broadened_density",
    "chunks",
    "eigen_convergence",
    "estimator_costs",
    "hvp_cost_ratio",
    "matvecs_to_reach",
    "mean_loss",
    "product_timings",
    "random_batch",
    "trace_convergence",
]


def _check_batch(data: Any) -> tuple[Tensor, Tensor]:
    if not hessian._is_batch(data):
        raise TypeError("data must be one batch: a pair (inputs, targets) of tensors, "
                        f"got {type(data).__name__}")
    return data[0], data[1]


def _seconds(fn: Callable[[], Any]) -> float:
    """Wall time of ``fn()``, GPU work included (CUDA runs asynchronously)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


# --------------------------------------------------------------------------- cost of a product


def product_timings(model: nn.Module, data: tuple[Tensor, Tensor], repeats: int = 10, *,
                    loss_fn: LossFn = F.cross_entropy, eval_mode: bool = True,
                    extra: Mapping[str, Callable[[], Any]] | None = None) -> dict[str, float]:
    """Median seconds of one gradient and of one Hessian-vector product on the batch ``data``.

    Keys: ``"gradient"`` (forward pass and gradient of the mean loss), ``"hvp (cached
    graph)"`` (a backward pass through a stored gradient graph, what repeated products on
    one batch cost) and ``"hvp (recomputed graph)"`` (forward, gradient with its graph and
    the product: the cost from scratch), plus one key for each callable in ``extra``
    (e.g. another library's product). Everything runs in the same mode (``eval_mode``),
    once to warm up, then ``repeats`` interleaved rounds so load changes hit every entry
    alike. BatchNorm statistics and the model's modes are left untouched.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    inputs, targets = _check_batch(data)
    params = [p for _, p in _select_parameters(model, None)]
    device = params[0].device
    inputs, targets, _ = _prepare((inputs, targets), device, None)

    def gradient() -> None:
        with _training_flags(model, eval_mode):
            loss = loss_fn(_forward(model, inputs, eval_mode), targets)
        torch.autograd.grad(loss, params, allow_unused=True)

    cached = hessian.HessianOperator(model, (inputs, targets), loss_fn=loss_fn, eval_mode=eval_mode,
                                     cache_graph=True)
    fresh = hessian.HessianOperator(model, (inputs, targets), loss_fn=loss_fn, eval_mode=eval_mode,
                                    cache_graph=False)
    v = torch.randn(cached.dim, generator=torch.Generator().manual_seed(0)).to(device)
    runs: dict[str, Callable[[], Any]] = {"gradient": gradient,
                                          "hvp (cached graph)": lambda: cached.matvec(v),
                                          "hvp (recomputed graph)": lambda: fresh.matvec(v),
                                          **dict(extra or {})}
    for fn in runs.values():
        fn()  # warm up (and build the cached graph)
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            seconds[name].append(_seconds(fn))
    return {name: statistics.median(s) for name, s in seconds.items()}


def hvp_cost_ratio(model: nn.Module, data: tuple[Tensor, Tensor], repeats: int = 10, *,
                   cache_graph: bool = False, **kwargs: Any) -> float:
    """Seconds of one Hessian-vector product over seconds of one gradient, same batch.

    ``cache_graph=False`` (default) times the product from scratch (forward, gradient with
    its graph, backward through it); ``True`` the product through a stored gradient graph.
    Other keyword arguments go to :func:`product_timings`.
    """
    timings = product_timings(model, data, repeats, **kwargs)
    key = "hvp (cached graph)" if cache_graph else "hvp (recomputed graph)"
    return timings[key] / timings["gradient"]


def mean_loss(model: nn.Module, data: Any, *, loss_fn: LossFn = F.cross_entropy,
              eval_mode: bool = True) -> float:
    """Sample-weighted mean loss over a batch or an iterable of batches, in eval or train mode.

    Train mode (``eval_mode=False``) normalizes with each batch's statistics, as the
    Hessian operator does; BatchNorm running statistics and module modes are untouched.
    """
    batches, _ = hessian._batch_source(data)
    params = [p for _, p in _select_parameters(model, None)]
    total, count = 0.0, 0
    with torch.no_grad(), _training_flags(model, eval_mode):
        for batch in batches:
            inputs, targets, n = _prepare(batch, params[0].device, None)
            total += n * float(loss_fn(_forward(model, inputs, eval_mode), targets))
            count += n
    if count == 0:
        raise ValueError("data is empty: no samples were found in the batches")
    return total / count


# --------------------------------------------------------------------------- data helpers


def random_batch(dataset: TensorDataset, size: int, seed: int) -> tuple[Tensor, Tensor]:
    """``size`` samples drawn without replacement from ``dataset`` (reproducible from ``seed``)."""
    n = len(dataset)
    if not 1 <= size <= n:
        raise ValueError(f"size must be between 1 and the number of samples {n}, got {size}")
    index = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size]
    inputs, targets = dataset.tensors[:2]
    return inputs[index], targets[index]


def chunks(batch: tuple[Tensor, Tensor], size: int | None) -> Any:
    """The batch itself if it has at most ``size`` samples (or ``size`` is None), else a list of chunks.

    A single batch keeps its gradient graph between products (fast, memory-hungry);
    chunks recompute it, so memory stays bounded for large data.
    """
    inputs, targets = _check_batch(batch)
    if size is not None and size < 1:
        raise ValueError(f"size must be a positive integer or None, got {size}")
    if size is None or len(inputs) <= size:
        return inputs, targets
    return list(zip(inputs.split(size), targets.split(size)))


# --------------------------------------------------------------------------- convergence


def _relative_errors(estimates: Sequence[float], reference: Sequence[float]) -> float:
    k = len(reference)
    if len(estimates) < k:
        return math.nan
    return max(abs(e - r) / abs(r) for e, r in zip(estimates[:k], reference))


def eigen_convergence(operator: Any, reference: Sequence[float], *, method: str = "lanczos",
                      seeds: Sequence[int] = (0,), **kwargs: Any) -> pd.DataFrame:
    """Error of the top-``k`` estimates against ``reference`` after every product.

    Runs :func:`hessian.top_eigenvalues` with ``k = len(reference)`` once per seed (random
    start vector) and records, through its ``callback``, the largest relative error over
    the ``k`` eigenvalues after each product (NaN while fewer than ``k`` estimates exist:
    power iteration finds them one after the other). ``kwargs`` go to ``top_eigenvalues``
    (``tol``, ``max_iter``, ``which``, ...). Columns: ``seed``, ``matvecs``, ``error``.
    """
    if not reference:
        raise ValueError("reference must hold at least one eigenvalue")
    if any(r == 0 for r in reference):
        raise ValueError("reference eigenvalues must be non-zero (the error is relative)")
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        def record(matvecs: int, estimates: list[float], seed: int = seed) -> None:
            rows.append({"seed": seed, "matvecs": matvecs, "error": _relative_errors(estimates, reference)})

        hessian.top_eigenvalues(operator, k=len(reference), method=method, seed=seed, callback=record,
                                **kwargs)
    return pd.DataFrame(rows, columns=["seed", "matvecs", "error"])


def matvecs_to_reach(frame: pd.DataFrame, threshold: float, *, x: str = "matvecs", y: str = "error",
                     group: str = "seed") -> pd.Series:
    """For each ``group`` (seed), the first ``x`` (products) at which ``y`` (error) is at most ``threshold``.

    NaN for a group that never gets there. Works on the frames of :func:`eigen_convergence`
    and :func:`trace_convergence` (there with ``x="budget"``).
    """
    def first(part: pd.DataFrame) -> float:
        hits = part.loc[part[y] <= threshold, x]
        return float(hits.min()) if len(hits) else math.nan

    return pd.Series({key: first(part) for key, part in frame.groupby(group)}, name=x, dtype=float)


def trace_convergence(operator: Any, reference: float, budgets: Sequence[int], *,
                      methods: Sequence[str] = ("hutchinson", "hutch++"),
                      seeds: Sequence[int] = (0,)) -> pd.DataFrame:
    """Trace estimates for every method, budget of products and seed, with the relative error.

    Columns: ``method``, ``seed``, ``budget``, ``matvecs`` (spent), ``estimate``,
    ``std_error``, ``error`` (``|estimate - reference| / |reference|``).
    """
    if reference == 0:
        raise ValueError("reference must be non-zero (the error is relative)")
    rows = []
    for method in methods:
        for budget in budgets:
            for seed in seeds:
                res = hessian.trace(operator, method=method, num_matvecs=budget, seed=seed)
                rows.append({"method": method, "seed": seed, "budget": budget, "matvecs": res.num_matvecs,
                             "estimate": res.estimate, "std_error": res.std_error,
                             "error": abs(res.estimate - reference) / abs(reference)})
    return pd.DataFrame(rows)


def broadened_density(eigenvalues: Tensor, grid: Tensor, sigma: float) -> Tensor:
    """Eigenvalue density smoothed like SLQ's: mean of Gaussians of width ``sigma`` at each eigenvalue."""
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    eig = eigenvalues.to(torch.float64).reshape(1, -1)
    points = grid.to(torch.float64).reshape(-1, 1)
    kernel = torch.exp(-0.5 * ((points - eig) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    return kernel.mean(dim=1)


# --------------------------------------------------------------------------- sampling noise


def batch_eigenvalue_spread(model: nn.Module, dataset: TensorDataset, batch_sizes: Sequence[int],
                            seeds: Sequence[int], *, tol: float = 1e-3, chunk_size: int | None = None,
                            **operator_kwargs: Any) -> pd.DataFrame:
    """Top Hessian eigenvalue on random batches: one estimate per batch size and seed.

    For each ``(batch_size, seed)`` the batch is :func:`random_batch` ``(dataset, batch_size,
    seed)`` and the eigenvalue comes from Lanczos (``tol``, start vector from ``seed``).
    ``chunk_size`` bounds the samples per forward pass (see :func:`chunks`); other keyword
    arguments build the :class:`hessian.HessianOperator` (``eval_mode``, ``dtype``...).
    Columns: ``batch_size``, ``seed``, ``eigenvalue``, ``matvecs``, ``seconds``.
    """
    rows = []
    for size in batch_sizes:
        for seed in seeds:
            data = chunks(random_batch(dataset, size, seed), chunk_size)
            start = time.perf_counter()
            res = hessian.top_eigenvalues(model, data, k=1, tol=tol, seed=seed, **operator_kwargs)
            rows.append({"batch_size": size, "seed": seed, "eigenvalue": res.eigenvalues[0],
                         "matvecs": res.num_matvecs, "seconds": time.perf_counter() - start})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- cost table


def estimator_costs(model: nn.Module, data: Any, *, k: int = 10, tol: float = 1e-3,
                    power_max_iter: int = 100, trace_matvecs: int = 30, seed: int = 0,
                    reference: Sequence[float] | None = None, **operator_kwargs: Any) -> pd.DataFrame:
    """Products, seconds and accuracy of top-1 and top-``k`` (Lanczos, power) and the trace.

    Every estimate builds a fresh operator (so building a cached graph is counted).
    ``tol`` is each eigenvalue method's own stopping rule (Lanczos: residual; power: relative
    change of the Rayleigh quotient, at most ``power_max_iter`` products per eigenvalue);
    the trace uses ``trace_matvecs`` products (Hutch++: rounded down to a multiple of 3).
    With ``reference`` (the top eigenvalues, largest first, at least ``k``), the column
    ``error`` is the largest relative error over the eigenvalues an estimate returns.
    Columns: ``task``, ``method``, ``matvecs``, ``seconds``, ``value`` (the top eigenvalue or
    the trace), ``last_value`` (the k-th eigenvalue), ``std_error`` (the trace's),
    ``converged``, ``error``.
    """
    rows = []
    for task, kk in (("top-1", 1), (f"top-{k}", k)):
        for method in ("lanczos", "power"):
            extra = {"max_iter": power_max_iter} if method == "power" else {}
            start = time.perf_counter()
            res = hessian.top_eigenvalues(model, data, k=kk, method=method, tol=tol, seed=seed,
                                          **extra, **operator_kwargs)
            seconds = time.perf_counter() - start
            error = math.nan if reference is None else _relative_errors(res.eigenvalues, list(reference)[:kk])
            rows.append({"task": task, "method": method, "matvecs": res.num_matvecs, "seconds": seconds,
                         "value": res.eigenvalues[0], "last_value": res.eigenvalues[-1],
                         "std_error": math.nan, "converged": res.converged, "error": error})
    for method in ("hutchinson", "hutch++"):
        budget = trace_matvecs - (trace_matvecs % 3 if method == "hutch++" else 0)
        start = time.perf_counter()
        res = hessian.trace(model, data, method=method, num_matvecs=budget, seed=seed, **operator_kwargs)
        rows.append({"task": "trace", "method": method, "matvecs": res.num_matvecs,
                     "seconds": time.perf_counter() - start, "value": res.estimate,
                     "last_value": math.nan, "std_error": res.std_error, "converged": True,
                     "error": math.nan})
    return pd.DataFrame(rows)
