"""Benchmark largebatch.hessian against PyHessian, curvlinops and hessian-eigenthings.

Side by side in one run, on the same trained MNIST-1D MLP and the same batch:

* top-1 and top-10 eigenvalues and the trace: wall time, number of Hessian-vector
  products (HVPs) and accuracy -- against a dense float64 Hessian for a small MLP, and
  against a tight float64 Lanczos run for the larger MLP (too big for a dense matrix);
* the cost of one HVP relative to one gradient on the same batch.

The other libraries are optional: a missing one is reported, not fatal. Install them
without touching torch, e.g. ``.venv/bin/pip install --no-deps pyhessian``.

    PYTHONPATH=lib .venv/bin/python benchmarks/bench_hessian.py          # ~1-2 min on 2 cores
    PYTHONPATH=lib .venv/bin/python benchmarks/bench_hessian.py --quick  # smoke run

Prints a markdown table and writes JSON to ``benchmarks/results/hessian.json``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import platform
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from largebatch.hessian import exact_hessian, top_eigenvalues, trace
from largebatch.hessian_diagnostics import product_timings

RESULTS = Path(__file__).resolve().parent / "results" / "hessian.json"


# --------------------------------------------------------------------------- problem


def mnist1d(num_samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST-1D training split (40 features, 10 classes), or Gaussian blobs without the package."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        g = torch.Generator().manual_seed(seed)
        y = torch.randint(0, 10, (num_samples,), generator=g)
        centers = torch.randn(10, 40, generator=g)
        return centers[y] + 1.5 * torch.randn(num_samples, 40, generator=g), y
    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = int(num_samples / 0.8), 0.8, seed
    data = make_dataset(args)
    x = torch.as_tensor(data["x"], dtype=torch.float32)[:num_samples]
    return (x - x.mean(0)) / x.std(0), torch.as_tensor(data["y"], dtype=torch.int64)[:num_samples]


def trained_mlp(x: torch.Tensor, y: torch.Tensor, width: int, epochs: int, seed: int) -> nn.Module:
    """A two-hidden-layer tanh MLP trained briefly with SGD (so the spectrum has outliers)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(40, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
                          nn.Linear(width, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(128):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


# --------------------------------------------------------------------------- runners


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


class Counter:
    """Counts calls of a wrapped product function."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn, self.calls = fn, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.fn(*args, **kwargs)


def ours(model: nn.Module, batch: tuple, task: str, k: int, cfg: argparse.Namespace) -> dict:
    out: dict[str, dict] = {}
    if task == "trace":
        for method in ("hutchinson", "hutch++"):
            n = cfg.trace_matvecs - (cfg.trace_matvecs % 3 if method == "hutch++" else 0)
            res, t = timed(lambda: trace(model, batch, method=method, num_matvecs=n, seed=cfg.seed))
            out[f"ours {method}"] = dict(values=[res.estimate], std_error=res.std_error,
                                         hvps=res.num_matvecs, seconds=t)
        return out
    for method, tol in (("lanczos", cfg.tol), ("power", cfg.power_tol)):
        res, t = timed(lambda: top_eigenvalues(model, batch, k=k, method=method, tol=tol, seed=cfg.seed,
                                               max_iter=None if method == "lanczos" else cfg.power_iters))
        out[f"ours {method}"] = dict(values=res.eigenvalues, hvps=res.num_matvecs, seconds=t,
                                     converged=res.converged, tol=tol)
    return out


def pyhessian(model: nn.Module, batch: tuple, task: str, k: int, cfg: argparse.Namespace) -> dict:
    ph = importlib.import_module("pyhessian.hessian")  # the package shadows it with a class

    counter = Counter(ph.hessian_vector_product)
    ph.hessian_vector_product = counter
    out: dict[str, dict] = {}
    try:
        for tol in (1e-3, cfg.power_tol):  # its default, and ours for equal accuracy
            if task == "trace" and tol != 1e-3:
                continue
            counter.calls = 0
            torch.manual_seed(cfg.seed)

            def run() -> Any:
                comp = ph.hessian(model, F.cross_entropy, data=batch, cuda=False)
                if task == "trace":
                    return comp.trace(maxIter=cfg.trace_matvecs, tol=tol)
                return comp.eigenvalues(maxIter=cfg.power_iters, tol=tol, top_n=k)[0]

            values, t = timed(run)
            model.zero_grad(set_to_none=True)  # it leaves a graph in .grad
            if task == "trace":
                samples = np.asarray(values)
                out[f"pyhessian trace (tol {tol:g})"] = dict(
                    values=[float(samples.mean())], hvps=counter.calls, seconds=t,
                    std_error=float(samples.std(ddof=1) / np.sqrt(len(samples))) if len(samples) > 1 else None)
            else:
                out[f"pyhessian power (tol {tol:g})"] = dict(values=sorted(values, reverse=True),
                                                             hvps=counter.calls, seconds=t, tol=tol)
    finally:
        ph.hessian_vector_product = counter.fn
    return out


def eigenthings(model: nn.Module, batch: tuple, task: str, k: int, cfg: argparse.Namespace) -> dict:
    import hessian_eigenthings as he

    def operator() -> Any:
        op = he.HessianOperator(model, [batch], he.supervised_loss(F.cross_entropy))
        op.matvec = Counter(op.matvec)
        return op

    out: dict[str, dict] = {}
    if task == "trace":
        for method in ("hutchinson", "hutch++"):
            op = operator()
            n = cfg.trace_matvecs - (cfg.trace_matvecs % 3 if method == "hutch++" else 0)
            res, t = timed(lambda: he.trace(op, num_matvecs=n, method=method, seed=cfg.seed))
            out[f"eigenthings {method}"] = dict(values=[res.estimate], std_error=res.stderr,
                                                hvps=op.matvec.calls, seconds=t)
        return out
    dim = sum(p.numel() for p in model.parameters())
    for steps in (None, min(dim - 1, cfg.eigenthings_steps)):
        op = operator()
        res, t = timed(lambda: he.lanczos(op, k=k, max_iter=steps, which="LA", tol=cfg.tol, seed=cfg.seed))
        label = "default 2k" if steps is None else steps
        out[f"eigenthings lanczos ({label} steps)"] = dict(values=res.eigenvalues.tolist(), hvps=op.matvec.calls,
                                                          seconds=t, converged=bool(res.converged.all()))
    op = operator()
    res, t = timed(lambda: he.deflated_power_iteration(op, k=k, tol=cfg.power_tol, max_iter=cfg.power_iters,
                                                       seed=cfg.seed))
    out["eigenthings power"] = dict(values=sorted(res.eigenvalues.tolist(), reverse=True),
                                    hvps=op.matvec.calls, seconds=t, converged=bool(res.converged.all()))
    return out


def curvlinops(model: nn.Module, batch: tuple, task: str, k: int, cfg: argparse.Namespace) -> dict:
    import curvlinops as cl
    from scipy.sparse.linalg import LinearOperator, eigsh

    def operator() -> Any:
        params = [p for p in model.parameters() if p.requires_grad]
        return cl.HessianLinearOperator(model, nn.CrossEntropyLoss(), params, [batch],
                                        check_deterministic=False)

    out: dict[str, dict] = {}
    if task == "trace":
        for name, fn in (("hutchinson", cl.hutchinson_trace), ("hutch++", cl.hutchpp_trace)):
            n = cfg.trace_matvecs - (cfg.trace_matvecs % 3 if name == "hutch++" else 0)
            torch.manual_seed(cfg.seed)
            value, t = timed(lambda: float(fn(operator(), n)))
            out[f"curvlinops {name} (batched)"] = dict(values=[value], hvps=n, seconds=t)
        return out

    def run() -> tuple[np.ndarray, int]:
        scipy_op = operator().to_scipy()
        counted = Counter(scipy_op.matvec)
        wrapped = LinearOperator(scipy_op.shape, matvec=counted, dtype=scipy_op.dtype)
        values = eigsh(wrapped, k=k, which="LA", tol=cfg.tol, v0=np.random.default_rng(cfg.seed).standard_normal(
            scipy_op.shape[0]).astype(scipy_op.dtype), return_eigenvectors=False)
        return values, counted.calls

    (values, calls), t = timed(run)
    out["curvlinops + scipy eigsh"] = dict(values=sorted(values.tolist(), reverse=True), hvps=calls, seconds=t)
    return out


LIBRARIES = {"ours": (ours, "largebatch"), "pyhessian": (pyhessian, "pyhessian"),
             "curvlinops": (curvlinops, "curvlinops-for-pytorch"),
             "hessian-eigenthings": (eigenthings, "hessian-eigenthings")}


def version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


# --------------------------------------------------------------------------- costs


def product_costs(model: nn.Module, batch: tuple, repeats: int) -> dict:
    """Median seconds of one gradient and of one HVP (cached graph, recomputed, PyHessian)."""
    extra: dict[str, Callable[[], Any]] = {}
    if version("pyhessian"):
        ph = importlib.import_module("pyhessian.hessian")
        comp = ph.hessian(model, F.cross_entropy, data=batch, cuda=False)
        params = [p for p in model.parameters() if p.requires_grad]
        v = torch.randn(sum(p.numel() for p in params))
        vs = [c.view_as(p) for c, p in zip(torch.split(v, [p.numel() for p in params]), params)]
        extra["hvp pyhessian (cached graph)"] = lambda: ph.hessian_vector_product(comp.gradsH, comp.params, vs)
    timings = product_timings(model, batch, repeats, extra=extra)
    model.zero_grad(set_to_none=True)
    return {("hvp ours" + name[3:] if name.startswith("hvp (") else name): t for name, t in timings.items()}


# --------------------------------------------------------------------------- main


def accuracy(row: dict, reference: list[float]) -> float:
    got = row["values"]
    return max(abs(a - b) / abs(b) for a, b in zip(got, reference[: len(got)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000, help="size of the batch the Hessian is taken on")
    parser.add_argument("--width", type=int, default=64, help="hidden width of the speed model")
    parser.add_argument("--small-width", type=int, default=16, help="hidden width of the dense-reference model")
    parser.add_argument("--k", type=int, default=10, help="the 'top-k' task")
    parser.add_argument("--tol", type=float, default=1e-6, help="Lanczos residual tolerance (ours, eigsh)")
    parser.add_argument("--power-tol", type=float, default=1e-6, help="power iteration relative-change tolerance")
    parser.add_argument("--power-iters", type=int, default=1000, help="power iterations per eigenvalue, at most")
    parser.add_argument("--eigenthings-steps", type=int, default=60, help="a longer hessian-eigenthings Lanczos")
    parser.add_argument("--trace-matvecs", type=int, default=100, help="HVP budget of the trace estimators")
    parser.add_argument("--repeats", type=int, default=20, help="repetitions for the HVP/gradient timing")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch.set_num_threads (1: tiny kernels gain nothing from threads, and on a "
                             "shared 2-core machine OpenMP oversubscription makes timings erratic)")
    parser.add_argument("--libraries", nargs="+", default=list(LIBRARIES), choices=list(LIBRARIES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    cfg = parser.parse_args()
    if cfg.quick:
        cfg.samples, cfg.width, cfg.small_width, cfg.k = 300, 16, 8, 3
        cfg.power_iters, cfg.trace_matvecs, cfg.repeats = 200, 30, 3
    torch.set_num_threads(cfg.threads)

    x, y = mnist1d(cfg.samples, cfg.seed)
    batch = (x, y)
    models = {"small": trained_mlp(x, y, cfg.small_width, 5, cfg.seed),
              "mlp": trained_mlp(x, y, cfg.width, 5, cfg.seed)}
    references: dict[str, dict[str, Any]] = {}
    dense, t = timed(lambda: exact_hessian(models["small"], batch))
    eig = torch.linalg.eigvalsh(dense).flip(0)
    references["small"] = dict(eigenvalues=eig[: cfg.k].tolist(), trace=float(dense.trace()),
                               how=f"dense float64 Hessian from exact_hessian ({t:.1f} s)")
    ref, t = timed(lambda: top_eigenvalues(models["mlp"], batch, k=cfg.k, tol=1e-10, dtype=torch.float64))
    references["mlp"] = dict(eigenvalues=ref.eigenvalues, trace=None,
                             how=f"float64 Lanczos, tol 1e-10 ({ref.num_matvecs} HVPs, {t:.1f} s)")
    del dense, eig

    rows: list[dict] = []
    errors: dict[str, str] = {}
    for model_name, model in models.items():
        dim = sum(p.numel() for p in model.parameters())
        ref = references[model_name]
        for task, k in (("top-1", 1), (f"top-{cfg.k}", cfg.k), ("trace", 0)):
            for lib in cfg.libraries:
                runner, dist = LIBRARIES[lib]
                if lib != "ours" and version(dist) is None:
                    errors[lib] = "not installed"
                    continue
                try:
                    results = runner(model, batch, "trace" if task == "trace" else "eig", k, cfg)
                except Exception as exc:  # report what breaks and go on
                    errors[f"{lib} {task} {model_name}"] = f"{type(exc).__name__}: {exc}"
                    traceback.print_exc()
                    continue
                for method, res in results.items():
                    if task == "trace":
                        err = None if ref["trace"] is None else abs(res["values"][0] - ref["trace"]) / abs(ref["trace"])
                    else:
                        err = accuracy(res, ref["eigenvalues"])
                    rows.append(dict(model=model_name, params=dim, task=task, method=method, error=err, **res))
                    print(f"  {model_name:5s} {task:6s} {method:38s} {res['hvps']:6d} HVPs "
                          f"{res['seconds']:7.2f} s  err={err if err is None else f'{err:.1e}'}", flush=True)

    if version("pyhessian"):  # PyHessian's density calls torch.eig, removed in torch 1.13 (2022)
        ph = importlib.import_module("pyhessian.hessian")
        try:
            ph.hessian(models["small"], F.cross_entropy, data=batch, cuda=False).density(iter=5, n_v=1)
        except Exception as exc:
            errors["pyhessian density"] = f"{type(exc).__name__}: {exc}"
        models["small"].zero_grad(set_to_none=True)

    costs = {name: product_costs(model, batch, cfg.repeats) for name, model in models.items()}

    print(f"\nBatch of {cfg.samples} MNIST-1D samples; {cfg.threads} threads; torch {torch.__version__}.")
    for name, ref in references.items():
        print(f"Reference for {name}: {ref['how']}.")
    print("\n| model (params) | task | method | HVPs | time (s) | max rel. error | value(s) |")
    print("|---|---|---|---:|---:|---:|---|")
    for r in rows:
        err = "n/a" if r["error"] is None else f"{r['error']:.1e}"
        shown = f"{r['values'][0]:.6g}" + (f" ± {r['std_error']:.2g}" if r.get("std_error") else "")
        if len(r["values"]) > 1:
            shown += f" … {r['values'][-1]:.6g}"
        print(f"| {r['model']} ({r['params']}) | {r['task']} | {r['method']} | {r['hvps']} | "
              f"{r['seconds']:.2f} | {err} | {shown} |")
    print("\n| model | one gradient (ms) | " + " | ".join(k for k in costs["mlp"] if k != "gradient") + " |")
    print("|---|---:|" + "---:|" * (len(costs["mlp"]) - 1))
    for name, c in costs.items():
        cells = " | ".join(f"{1e3 * s:.2f} ms ({s / c['gradient']:.1f}x)" for k, s in c.items() if k != "gradient")
        print(f"| {name} | {1e3 * c['gradient']:.2f} | {cells} |")
    for key, msg in errors.items():
        print(f"- {key}: {msg}")

    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    record = dict(config={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(cfg).items()},
                  environment=dict(python=platform.python_version(), machine=platform.machine(),
                                   torch=torch.__version__, threads=cfg.threads,
                                   versions={d: version(d) for _, d in LIBRARIES.values()}),
                  references=references, rows=rows, costs_seconds=costs, errors=errors)
    cfg.out.write_text(json.dumps(record, indent=2))
    print(f"\nwrote {cfg.out}")


if __name__ == "__main__":
    main()
