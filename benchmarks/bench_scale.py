"""Speed of training and Hessian products, on one device and on 1 to N data-parallel workers.

Measures, with ResNet-20 on CIFAR-10-sized tensors (the real files if present, else
random tensors of the real shape made in memory -- the timings do not depend on the
pixel values):

* one epoch of ``train.fit`` against a bare PyTorch loop with the data on the device,
  at batch 128, and at batch 2048 in micro-batches of 128 (against the same bare
  accumulation loop and against one bare step on the whole 2048 batch);
* the cost of one Hessian-vector product relative to one gradient at batches 128 and
  1024: double back-prop through a cached or a recomputed graph, forward-over-reverse
  ``jvp``, and ``jvp`` with several vectors per pass (``vmap``), per vector;
* the full-data top eigenvalue (Lanczos, device batches of 1024) with either product;
* samples/s of ``fit`` and HVPs/s over sharded data with 1 to N processes (``torchrun``,
  gloo on CPU, NCCL on GPUs -- one GPU per process, so counts above the number of GPUs
  are skipped).

It prints one markdown table with the H100 numbers quoted in issue 9 (torch 2.11,
landed code before that issue) beside this run's, and writes
``benchmarks/results/scale.json``. On a GPU (defaults = the issue's sizes)::

    PYTHONPATH=lib python benchmarks/bench_scale.py

On a CPU, shrink everything, e.g.::

    PYTHONPATH=lib python benchmarks/bench_scale.py --samples 1024 --big-batch 512 \\
        --hvp-batches 32 128 --eig-samples 1024 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from largebatch import data, distributed, hessian, models
from largebatch.callbacks import Callback, TrainState
from largebatch.config import RunConfig
from largebatch.hessian_diagnostics import product_timings
from largebatch.train import fit

RESULTS = Path(__file__).resolve().parent / "results" / "scale.json"

#: Issue 9's measurements on one H100 (torch 2.11, ResNet-20, CIFAR-10 tensors), before it:
#: measurement -> (value, the sizes it was taken at).
H100_BEFORE: dict[str, tuple[float, str]] = {
    "fit epoch, small batch (s)": (5.42, "B=128, 50k"),
    "bare loop epoch, small batch (s)": (3.96, "B=128, 50k"),
    "fit / bare, small batch": (1.37, "B=128"),
    "fit epoch, big batch (s)": (4.25, "B=2048/128, 50k"),
    "bare big-batch epoch (s)": (2.21, "B=2048, 50k"),
    "fit / bare big batch": (1.9, "B=2048/128"),
    "HVP/grad, small batch, cached graph": (3.8, "B=128"),
    "HVP/grad, small batch, recomputed": (4.5, "B=128"),
    "HVP/grad, large batch, cached graph": (5.5, "B=1024"),
    "HVP/grad, large batch, recomputed": (6.6, "B=1024"),
    "top eigenvalue, full data (s)": (29.0, "10k, DataLoader of 1024, 12 HVPs"),
    "seconds per HVP, full data": (2.4, "10k"),
}
#: Issue 9's targets on an H100.
TARGETS = {
    "fit / bare, small batch": "<= 1.05", "fit / bare accumulation": "<= 1.10",
    "HVP/grad, small batch, jvp": "<= 2.5", "HVP/grad, large batch, jvp": "<= 2.5",
    "top eigenvalue, full data (s)": "< 10 s at 50k",
}
Row = tuple[str, str, float]  # measurement, sizes of this run, value


# --------------------------------------------------------------------------- problem


def cifar10_tensors(samples: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``samples`` CIFAR-10 training images on ``device``; random ones of the real shape
    and dtype when the files are missing (the GPU machine has no internet)."""
    try:
        train = data.load("cifar10").train
        x, y, source = train.tensors[0][:samples], train.tensors[1][:samples], "CIFAR-10"
    except (FileNotFoundError, OSError, RuntimeError, ValueError):
        g = torch.Generator().manual_seed(0)
        x = torch.rand(samples, 3, 32, 32, generator=g)
        y = torch.randint(0, 10, (samples,), generator=g)
        source = "random tensors of CIFAR-10's shape"
    return x.to(device), y.to(device), source


def resnet20(device: torch.device, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return models.build("resnet20", (3, 32, 32), 10).to(device)


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def seconds(fn: Callable[[], Any]) -> float:
    synchronize()
    start = time.perf_counter()
    fn()
    synchronize()
    return time.perf_counter() - start


# --------------------------------------------------------------------------- training


class _UpdateClock(Callback):
    """Seconds from the start of training to the end of update ``last`` (GPU work included)."""

    def __init__(self, last: int) -> None:
        self.last, self.started, self.elapsed = last, 0.0, float("nan")

    def on_train_start(self, state: TrainState) -> None:
        synchronize()
        self.started = time.perf_counter()

    def on_step_end(self, state: TrainState) -> None:
        if state.step == self.last:
            synchronize()
            self.elapsed = time.perf_counter() - self.started


def fit_epoch(x: torch.Tensor, y: torch.Tensor, batch: int, micro: int | None) -> float:
    """Seconds of the updates of one epoch of ``train.fit`` (evaluation excluded)."""
    model = resnet20(x.device)
    steps = len(y) // batch
    clock = _UpdateClock(steps)
    config = RunConfig(model="resnet20", dataset="cifar10", batch_size=batch, micro_batch_size=micro,
                       steps=steps, lr=0.05, momentum=0.9, weight_decay=5e-4)
    fit(model, TensorDataset(x, y), None, config, callbacks=[clock], progress=False)
    return clock.elapsed


def bare_epoch(x: torch.Tensor, y: torch.Tensor, batch: int, micro: int | None) -> float:
    """Seconds of one epoch of a bare loop: device data, device permutation, no host sync."""
    model = resnet20(x.device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    order = torch.randperm(len(y), device=x.device)
    steps = len(y) // batch
    chunk = micro or batch

    def epoch() -> None:
        for index in order[: steps * batch].view(steps, batch):
            optimizer.zero_grad(set_to_none=True)
            for part in index.split(chunk):
                (F.cross_entropy(model(x[part]), y[part]) * (len(part) / batch)).backward()
            optimizer.step()

    return seconds(epoch)


def training_rows(x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace) -> list[Row]:
    fit_epoch(x[: 2 * args.batch], y[: 2 * args.batch], args.batch, None)  # warm up kernels
    small = {"fit": [], "bare": []}
    big = {"fit": [], "accumulation": [], "big batch": []}
    for _ in range(args.repeats):  # interleaved, so load changes hit every variant alike
        small["fit"].append(fit_epoch(x, y, args.batch, None))
        small["bare"].append(bare_epoch(x, y, args.batch, None))
        big["fit"].append(fit_epoch(x, y, args.big_batch, args.batch))
        big["accumulation"].append(bare_epoch(x, y, args.big_batch, args.batch))
        big["big batch"].append(bare_epoch(x, y, args.big_batch, None))
    s = {k: statistics.median(v) for k, v in small.items()}
    b = {k: statistics.median(v) for k, v in big.items()}
    one, acc, n = f"B={args.batch}", f"B={args.big_batch}/{args.batch}", f", {len(y)}"
    return [
        ("fit epoch, small batch (s)", one + n, s["fit"]),
        ("bare loop epoch, small batch (s)", one + n, s["bare"]),
        ("fit / bare, small batch", one, s["fit"] / s["bare"]),
        ("fit epoch, big batch (s)", acc + n, b["fit"]),
        ("bare accumulation epoch (s)", acc + n, b["accumulation"]),
        ("bare big-batch epoch (s)", f"B={args.big_batch}" + n, b["big batch"]),
        ("fit / bare accumulation", acc, b["fit"] / b["accumulation"]),
        ("fit / bare big batch", acc, b["fit"] / b["big batch"]),
    ]


# --------------------------------------------------------------------------- Hessian


def product_rows(x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace) -> list[Row]:
    model = resnet20(x.device).eval()
    rows: list[Row] = []
    for label, n in zip(("small batch", "large batch"), args.hvp_batches):
        batch = (x[:n], y[:n])
        jvp = hessian.HessianOperator(model, batch, hvp="jvp")
        block = hessian.HessianOperator(model, batch, hvp="jvp", vectors_per_pass=args.vectors)
        v = torch.randn(jvp.dim, generator=torch.Generator().manual_seed(0)).to(x.device)
        vs = torch.randn(jvp.dim, args.vectors, generator=torch.Generator().manual_seed(1)).to(x.device)
        t = product_timings(model, batch, args.repeats, extra={
            "jvp": lambda: jvp.matvec(v), "jvp block": lambda: block.matmat(vs)})
        grad = t["gradient"]
        rows += [(f"HVP/grad, {label}, cached graph", f"B={n}", t["hvp (cached graph)"] / grad),
                 (f"HVP/grad, {label}, recomputed", f"B={n}", t["hvp (recomputed graph)"] / grad),
                 (f"HVP/grad, {label}, jvp", f"B={n}", t["jvp"] / grad),
                 (f"HVP/grad, {label}, jvp, vmap (per vector)", f"B={n}, {args.vectors} vectors",
                  t["jvp block"] / args.vectors / grad)]
        model.zero_grad(set_to_none=True)
    return rows


def eigenvalue_rows(x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace) -> list[Row]:
    model = resnet20(x.device).eval()
    batches = hessian.device_batches((x[: args.eig_samples], y[: args.eig_samples]), args.hessian_batch)
    rows: list[Row] = []
    for hvp in ("backward", "jvp"):
        result: list[hessian.EigenResult] = []
        elapsed = seconds(lambda: result.append(
            hessian.top_eigenvalues(model, batches, k=1, tol=args.eig_tol, hvp=hvp)))
        sizes = f"{args.eig_samples}, device batches of {args.hessian_batch}, {hvp}"
        rows += [("top eigenvalue, full data (s)", f"{sizes}, {result[0].num_matvecs} HVPs", elapsed),
                 ("seconds per HVP, full data", sizes, elapsed / result[0].num_matvecs)]
    return rows


# --------------------------------------------------------------------------- data parallel


def scaling_worker(args: argparse.Namespace) -> None:
    """One torchrun worker: samples/s of fit and HVPs/s over this rank's shard; rank 0 writes."""
    torch.set_num_threads(args.threads)
    distributed.init_from_env()
    device = distributed.device()
    x, y, _ = cifar10_tensors(args.samples, device)
    elapsed = fit_epoch(x, y, args.batch, None)
    samples_per_s = (len(y) // args.batch) * args.batch / elapsed
    model = resnet20(device).eval()
    start, stop = distributed.shard_range(args.eig_samples)
    shard = hessian.device_batches((x[start:stop], y[start:stop]), args.hessian_batch)
    op = hessian.HessianOperator(model, shard, hvp=args.scaling_hvp, sharded=True)
    v = torch.randn(op.dim, generator=torch.Generator().manual_seed(0)).to(device)
    op.matvec(v)  # warm up
    per_hvp = statistics.median(seconds(lambda: op.matvec(v)) for _ in range(args.repeats))
    if distributed.is_main():
        Path(args.scaling_worker).write_text(json.dumps(
            {"samples_per_s": samples_per_s, "hvps_per_s": 1 / per_hvp, "workers": distributed.world_size()}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scaling_rows(args: argparse.Namespace) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    skipped = []
    for procs in args.procs:
        if torch.cuda.is_available() and procs > torch.cuda.device_count():
            skipped.append(f"{procs} processes: only {torch.cuda.device_count()} GPU(s)")
            continue
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "rank0.json"
            forwarded = [a for a in sys.argv[1:] if a != "--no-scaling"]
            command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs}",
                       "--master_addr=127.0.0.1", f"--master_port={_free_port()}", __file__,
                       *forwarded, "--scaling-worker", str(out)]
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            subprocess.run(command, env=env, check=True, timeout=args.timeout)
            result = json.loads(out.read_text())
        rows += [(f"fit samples/s, {procs} process(es)", f"B={args.batch}, {args.samples}", result["samples_per_s"]),
                 (f"HVPs/s, {procs} process(es)", f"{args.eig_samples} sharded, {args.scaling_hvp}",
                  result["hvps_per_s"])]
    return rows, skipped


# --------------------------------------------------------------------------- main


def table(rows: list[Row], device: str) -> str:
    lines = [f"| measurement | H100, issue 9 (before) | this run ({device}) | target |", "|---|---|---|---|"]
    for name, sizes, value in rows:
        quoted = f"{H100_BEFORE[name][0]:g} ({H100_BEFORE[name][1]})" if name in H100_BEFORE else ""
        lines.append(f"| {name} | {quoted} | {value:.3g} ({sizes}) | {TARGETS.get(name, '')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=50_000, help="training samples (an epoch)")
    parser.add_argument("--batch", type=int, default=128, help="small batch, and the micro-batch of the big one")
    parser.add_argument("--big-batch", type=int, default=2048, help="big batch, accumulated in micro-batches of --batch")
    parser.add_argument("--hvp-batches", type=int, nargs="+", default=[128, 1024],
                        help="small and large batch of the HVP/gradient ratio")
    parser.add_argument("--vectors", type=int, default=4, help="vectors per vmap pass")
    parser.add_argument("--eig-samples", type=int, default=50_000, help="samples of the full-data eigenvalue")
    parser.add_argument("--hessian-batch", type=int, default=1024, help="device batch of the full-data products")
    parser.add_argument("--eig-tol", type=float, default=1e-3, help="Lanczos relative residual tolerance")
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2], help="worker counts of the scaling rows")
    parser.add_argument("--scaling-hvp", choices=("backward", "jvp"), default="jvp")
    parser.add_argument("--no-scaling", action="store_true", help="skip the multi-process rows")
    parser.add_argument("--repeats", type=int, default=5, help="timing repetitions (median)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds a scaling launch may take")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--scaling-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scaling_worker:
        scaling_worker(args)
        return
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {args.threads} thread(s)"
    x, y, source = cifar10_tensors(max(args.samples, args.eig_samples, max(args.hvp_batches)), device)
    train_x, train_y = x[: args.samples], y[: args.samples]
    rows: list[Row] = []
    for section in (lambda: training_rows(train_x, train_y, args), lambda: product_rows(x, y, args),
                    lambda: eigenvalue_rows(x, y, args)):
        rows += section()
        print(f"... {len(rows)} rows: {rows[-1]}", file=sys.stderr, flush=True)  # progress on a slow machine
    skipped: list[str] = []
    if not args.no_scaling:
        scaling, skipped = scaling_rows(args)
        rows += scaling
    print(f"ResNet-20, {source}: {args.samples} training samples, eigenvalue over {args.eig_samples}; "
          f"torch {torch.__version__}; {name}")
    print(table(rows, name))
    for line in skipped:
        print(f"skipped: {line}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": name, "torch": torch.__version__, "python": platform.python_version(),
                                    "data": source, "arguments": {k: str(v) for k, v in vars(args).items()},
                                    "rows": [dict(measurement=n, sizes=z, value=v) for n, z, v in rows],
                                    "h100_before": H100_BEFORE, "targets": TARGETS, "skipped": skipped},
                                   indent=1))


if __name__ == "__main__":
    main()
