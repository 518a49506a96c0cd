"""Where the quick book's time goes, and what its time savings cost in accuracy.

Side by side in one run, on the book's own networks (MNIST-1D, trained as the chapters
train them, into a temporary cache):

* ``chunks``: seconds per full-training-set Hessian-vector product (4000 samples, eval
  mode, gradient graphs kept) with the set as one batch and cut into chunks, and the
  relative difference of the products: ``experiments`` takes chunks of
  ``HESSIAN_CHUNK_SAMPLES``.
* ``tolerance``: the end-of-run top eigenvalue (Lanczos) at the solver's default residual
  tolerance 1e-6 against the chapters' 1e-3, and top-3 against top-1 (chapter 02 used
  to compute three and show one): products, seconds, relative change of the eigenvalue.
* ``chapters`` (with ``--manifests``): per-chapter execution seconds of ``manifest.json``
  files of ``largebatch.reproduce`` side by side (e.g. a cold build before and after).

    PYTHONPATH=lib .venv/bin/python benchmarks/bench_book.py          # ~2 min on one core
    PYTHONPATH=lib .venv/bin/python benchmarks/bench_book.py --manifests before.json after.json

Prints markdown tables and writes ``benchmarks/results/book.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from largebatch import experiments, hessian
from largebatch.config import RunConfig

RESULTS = Path(__file__).resolve().parent / "results" / "book.json"
NETWORKS = {  # name -> the chapter run whose final weights are measured
    "MLP (02, B=50)": RunConfig(model="mnist1d_mlp", batch_size=50, epochs=20, lr=0.05),
    "CNN (02, B=50)": RunConfig(model="mnist1d_cnn", batch_size=50, epochs=20, lr=0.05),
    "CNN width 16 (04/05, B=512)": RunConfig(model="mnist1d_cnn", model_options={"width": 16}, batch_size=512,
                                             epochs=20, lr=0.05),
}


def seconds_per_call(fn: Any, repeats: int) -> float:
    fn()  # warm-up (builds and caches the gradient graphs)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def chunk_rows(model: torch.nn.Module, data: tuple, chunks: list[int], repeats: int) -> list[dict]:
    v = torch.randn(sum(p.numel() for p in model.parameters()), generator=torch.Generator().manual_seed(0))
    whole = hessian.HessianOperator(model, data, cache_graph=True)
    reference = whole.matvec(v)
    rows = [{"chunk": "whole set", "seconds": seconds_per_call(lambda: whole.matvec(v), repeats), "rel_diff": 0.0}]
    for size in chunks:
        op = hessian.HessianOperator(model, hessian.device_batches(data, size), cache_graph=True)
        product = op.matvec(v)
        rows.append({"chunk": size, "seconds": seconds_per_call(lambda: op.matvec(v), repeats),
                     "rel_diff": float((product - reference).norm() / reference.norm())})
    for row in rows:
        row["speedup"] = rows[0]["seconds"] / row["seconds"]
    return rows


def tolerance_rows(model: torch.nn.Module, data: tuple, seed: int) -> list[dict]:
    batches = hessian.device_batches(data, experiments.HESSIAN_CHUNK_SAMPLES)
    rows = []
    for k, tol in ((3, 1e-6), (1, 1e-6), (3, 1e-3), (1, 1e-3)):
        start = time.perf_counter()
        result = hessian.top_eigenvalues(model, batches, k=k, tol=tol, seed=seed, cache_graph=True)
        rows.append({"k": k, "tol": tol, "products": result.num_matvecs, "seconds": time.perf_counter() - start,
                     "top": result.eigenvalues[0]})
    for row in rows:
        row["rel_change"] = abs(row["top"] - rows[0]["top"]) / abs(rows[0]["top"])
    return rows


def manifest_rows(paths: list[Path]) -> list[dict]:
    manifests = [json.loads(p.read_text())["notebooks"] for p in paths]
    names = sorted(set().union(*manifests))
    return [{"notebook": name, **{str(p): m.get(name, {}).get("last_execution_seconds") for p, m in zip(paths, manifests)}}
            for name in names]


def markdown(rows: list[dict]) -> str:
    def cell(value: Any) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    header = list(rows[0])
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(cell(row[c]) for c in header) + " |" for row in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, nargs="+", default=[2048, 1024, 512])
    parser.add_argument("--repeats", type=int, default=5, help="products timed per setting")
    parser.add_argument("--manifests", type=Path, nargs="+", default=[], help="manifest.json files to compare")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the chapters run
    results: dict[str, Any] = {"threads": 1, "torch": torch.__version__, "networks": {}}
    with tempfile.TemporaryDirectory() as cache:
        for name, config in NETWORKS.items():
            experiments.run(config, cache, progress=False)
            model = experiments.load_model(config, cache).eval()
            data = experiments.load_data(config).train.tensors
            results["networks"][name] = {"chunks": chunk_rows(model, data, args.chunks, args.repeats),
                                         "tolerance": tolerance_rows(model, data, config.seed)}
            print(f"\n### {name}: {len(data[1])} samples, {sum(p.numel() for p in model.parameters())} parameters")
            print("\nSeconds per Hessian-vector product\n\n" + markdown(results["networks"][name]["chunks"]))
            print("\nTop eigenvalue, Lanczos\n\n" + markdown(results["networks"][name]["tolerance"]))
    if args.manifests:
        results["chapters"] = manifest_rows(args.manifests)
        print("\nSeconds per chapter\n\n" + markdown(results["chapters"]))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))
    print(f"\n-> {RESULTS}")


if __name__ == "__main__":
    main()
