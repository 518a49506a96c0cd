"""Data parallelism: two gloo workers launched by torchrun give one process's answers.

One launch runs every scenario of ``distributed_worker.py`` on 2 CPU workers; each test
compares a part of its output with the same scenario run in this process. Tolerances:
float64 training and Hessian estimates agree to rounding (1e-12 and 1e-9 relative here;
the issue asks for 1e-6); the float32 ``experiments.run`` to 1e-5.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import distributed_worker as worker

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "distributed_worker.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(scenario: str, out: Path, timeout_s: float = 120, **env: str) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node=2`` on 127.0.0.1 (a free port), this library first on the path."""
    paths = [str(ROOT / "lib"), str(WORKER.parent), os.environ.get("PYTHONPATH", "")]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p),
                   "OMP_NUM_THREADS": "1", **env}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
               "--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(WORKER), scenario, str(out)]
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=timeout_s)


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """Each rank's outcome of every scenario, from one 2-worker launch."""
    out = tmp_path_factory.mktemp("ranks")
    done = _launch("train,hessian,schedule,absa_scripted,abs_estimated,experiment", out, LARGEBATCH_CACHE_DIR=str(out / "cache"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    return ranks, out / "cache"


def _rel(a, b) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float((a - b).abs().max() / b.abs().max())


def _assert_histories_close(got, want, rel):
    assert len(got) == len(want)
    for row, reference in zip(got, want):
        assert row.keys() == reference.keys()
        for key, value in reference.items():
            assert row[key] == pytest.approx(value, rel=rel, abs=1e-12), key


def test_two_workers_train_like_one_with_the_same_global_batch(launched):
    (first, second), _ = launched
    single = worker.train_run()
    assert torch.equal(first["train"]["weights"], second["train"]["weights"])  # ranks stay in sync
    assert first["train"]["steps"] == single["steps"] == 3 * (worker.NUM_TRAIN // 51)
    assert _rel(first["train"]["weights"], single["weights"]) < 1e-12
    _assert_histories_close(first["train"]["history"], single["history"], rel=1e-12)


def test_sharded_hessian_estimates_equal_one_process(launched):
    (first, second), _ = launched
    single = worker.hessian_run()
    for rank in (first, second):
        got = rank["hessian"]
        for key in ("top", "top_jvp", "trace", "trace_vmap", "density_nodes"):
            assert _rel(got[key], single[key]) < 1e-9, key
    assert single["top_jvp"] == pytest.approx(single["top"], rel=1e-9)
    assert single["trace_vmap"] == pytest.approx(single["trace"], rel=1e-12)


def test_schedule_decisions_are_rank_zeros_and_match_one_process(launched):
    (first, second), _ = launched
    single = worker.schedule_run()
    assert single["batch_sizes"] == [8, 8, 16, 16, 32, 32]  # the script halves twice
    assert first["schedule"] == second["schedule"] == single


def test_absa_decisions_are_rank_zeros_and_match_one_process(launched):
    (first, second), _ = launched
    single = worker.absa_scripted_run()
    assert single["batch_size"] == [8, 8, 16, 16, 32, 32]
    assert single["adversarial_fraction"] == [0.5, 0.5, 0.25, 0.25, 0.125, 0.125]
    assert first["absa_scripted"] == second["absa_scripted"] == single


def test_abs_eigenvalue_estimate_over_sharded_samples_equals_one_process(launched):
    (first, second), _ = launched
    single = worker.abs_estimated_run()
    assert first["abs_estimated"] == second["abs_estimated"]
    assert len(set(single["batch_size"])) > 1  # the run doubles its batch at least once
    for key in ("batch_size", "gradient_evaluations"):
        assert first["abs_estimated"][key] == single[key], key
    estimates = [(a, b) for a, b in zip(first["abs_estimated"]["eigenvalue"], single["eigenvalue"])
                 if b is not None]
    assert len(estimates) >= 4
    for got, want in estimates:
        assert got == pytest.approx(want, rel=1e-9)


def test_experiment_run_writes_one_record_saying_two_workers(launched, tmp_path, monkeypatch):
    (first, second), cache = launched
    records = list(cache.glob("*/record.json"))
    assert len(records) == 1 and len(list(cache.glob("*/model.pt"))) == 1
    assert first["experiment"]["workers"] == second["experiment"]["workers"] == 2
    assert first["experiment"]["history"] == second["experiment"]["history"]
    monkeypatch.setenv("LARGEBATCH_CACHE_DIR", str(tmp_path))
    single = worker.experiment_run()
    assert single["workers"] == 1 and single["key"] == first["experiment"]["key"]
    _assert_histories_close(first["experiment"]["history"], single["history"], rel=1e-5)
    for key in ("hessian_top_eigenvalue", "hessian_trace", "train_loss"):
        assert first["experiment"]["final"][key] == pytest.approx(single["final"][key], rel=1e-5), key


def test_a_failing_worker_ends_the_launch_with_an_error(tmp_path):
    started = time.monotonic()
    done = _launch("fail", tmp_path, timeout_s=90, LARGEBATCH_DIST_TIMEOUT_S="20")
    assert done.returncode != 0
    assert "worker 1 fails on purpose" in done.stdout + done.stderr
    assert time.monotonic() - started < 60
    assert not list(tmp_path.glob("rank*.pt"))


def test_sync_batch_norm_is_an_option_outside_the_default_cache_key():
    from largebatch.config import ConfigError, RunConfig

    assert RunConfig(sync_batch_norm=False).key() == RunConfig().key()
    assert RunConfig(sync_batch_norm=True).key() != RunConfig().key()
    with pytest.raises(ConfigError, match="sync_batch_norm cannot be combined with ghost_batch_size"):
        RunConfig(sync_batch_norm=True, ghost_batch_size=32)
