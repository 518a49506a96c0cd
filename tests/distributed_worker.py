"""Scenarios of tests/test_distributed.py, run by every torchrun worker and by one plain process.

``python -m torch.distributed.run --nproc_per_node=2 tests/distributed_worker.py SCENARIO OUT``
runs ``SCENARIO`` on each worker and saves its outcome to ``OUT/rank<r>.pt``; the test
compares those files with the same functions called in a single process.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from largebatch import distributed, experiments, hessian
from largebatch.absa import AdaptiveRule, EigenvalueController
from largebatch.attacks import AdversarialTransform
from largebatch.callbacks import TrainState
from largebatch.config import RunConfig
from largebatch.train import fit

F64 = torch.float64
NUM_TRAIN = 240


def data() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(NUM_TRAIN, 10, generator=g, dtype=F64)
    return TensorDataset(x, (x @ torch.randn(10, 3, generator=g, dtype=F64)).argmax(1))


def mlp() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 3)).double()


def train_run() -> dict[str, Any]:
    """A BN-free float64 run: momentum, weight decay, clipping, micro-batches of 7 inside
    each worker, and an odd global batch (shards of 26 and 25 samples)."""
    model = mlp()
    config = RunConfig(batch_size=51, micro_batch_size=7, epochs=3, lr=0.1, momentum=0.9,
                       weight_decay=1e-3, clip_grad_norm=5.0)
    outcome = fit(model, data(), data(), config, progress=False)
    return {"weights": torch.cat([p.detach().flatten() for p in model.parameters()]),
            "history": outcome.history, "steps": outcome.steps}


def hessian_run() -> dict[str, Any]:
    """Top eigenvalues, trace and density of the full-data Hessian, each worker holding its part."""
    model = mlp()
    inputs, targets = data().tensors
    start, stop = distributed.shard_range(NUM_TRAIN)
    local = hessian.device_batches((inputs[start:stop], targets[start:stop]), batch_size=50)
    top = hessian.top_eigenvalues(model, local, k=2, tol=1e-10, sharded=True)
    top_jvp = hessian.top_eigenvalues(model, local, k=2, tol=1e-10, sharded=True, hvp="jvp")
    estimate = hessian.trace(model, local, num_matvecs=12, sharded=True)
    estimate_vmap = hessian.trace(model, local, num_matvecs=12, sharded=True, hvp="jvp",
                                  vectors_per_pass=4)
    density = hessian.spectral_density(model, local, num_runs=2, num_steps=10, sharded=True)
    return {"top": top.eigenvalues, "top_jvp": top_jvp.eigenvalues, "trace": estimate.estimate,
            "trace_vmap": estimate_vmap.estimate, "density_nodes": density.nodes}


class ScriptedSchedule:
    """Doubles the batch when the scripted "eigenvalue" halves from its reference (ABS's rule).

    On any rank but 0 the script is deliberately different: the broadcast must make rank 0's
    decision everyone's.
    """

    def __init__(self) -> None:
        self.script = [4.0, 3.0, 1.9, 1.5, 0.9, 0.8] if distributed.rank() == 0 else [1.0] * 6
        self.reference: float | None = None

    def next_batch_size(self, state: TrainState) -> int:
        value = self.script[state.epoch]
        if self.reference is None:
            self.reference = value
        elif value <= self.reference / 2:
            self.reference = value
            state.extra["doublings"] = state.extra.get("doublings", 0) + 1
            return min(2 * state.batch_size, NUM_TRAIN)
        return state.batch_size


def schedule_run() -> dict[str, Any]:
    model = mlp()
    config = RunConfig(batch_size=8, epochs=6, lr=0.05, lr_scaling="linear", base_batch_size=8)
    outcome = fit(model, data(), None, config, batch_size_schedule=ScriptedSchedule(), progress=False)
    return {"batch_sizes": [row["batch_size"] for row in outcome.history],
            "lrs": [row["lr"] for row in outcome.history], "steps": outcome.steps}


class RankScriptedController(EigenvalueController):
    """ABSA's controller with its eigenvalue estimates scripted by epoch, different on
    every rank but 0 (rank 0's estimate must decide batch, fraction and rule everywhere)."""

    def estimate(self, model: nn.Module, epoch: int, samples: int, stream: int = 0) -> tuple[float, int]:
        script = [0.0, 4.0, 1.9, 1.5, 0.9, 0.7] if distributed.rank() == 0 else [1.0] * 6
        return script[epoch], 3


def _adaptive_history(controller_type: type[EigenvalueController], adversarial: bool,
                      ratio: float) -> dict[str, Any]:
    model, train = mlp(), data()
    transform = AdversarialTransform(fraction=0.5, eps=0.05) if adversarial else None
    rule = AdaptiveRule(batch_size=8, max_batch_size=64, ratio=ratio, duration=10, fraction=0.5)
    controller = controller_type(train, rule, eigen_samples=40, eigen_iterations=10, seed=3,
                                 transform=transform)
    config = RunConfig(batch_size=8, epochs=6, lr=0.05, lr_scaling="linear", base_batch_size=8)
    outcome = fit(model, train, None, config, callbacks=[controller], input_transform=transform,
                  batch_size_schedule=controller, progress=False)
    keys = ("batch_size", "lr", "adversarial_fraction", "eigenvalue", "gradient_evaluations")
    return {key: [row.get(key) for row in outcome.history] for key in keys}


def absa_scripted_run() -> dict[str, Any]:
    """ABSA on a scripted eigenvalue sequence that differs between ranks."""
    return _adaptive_history(RankScriptedController, adversarial=True, ratio=2.0)


def abs_estimated_run() -> dict[str, Any]:
    """ABS with its real estimate: power iteration over a sample sharded across ranks.

    (Without adversarial samples: ABSA perturbs a share of each worker's micro-batch,
    which is not the same samples as a share of one process's micro-batch.)
    """
    return _adaptive_history(EigenvalueController, adversarial=False, ratio=1.2)


def experiment_run() -> dict[str, Any]:
    """``experiments.run`` as a chapter calls it (cache folder from ``$LARGEBATCH_CACHE_DIR``)."""
    config = RunConfig(model="mnist1d_mlp", num_samples=400, batch_size=64, epochs=2, lr=0.05,
                       hessian_top_k=1, hessian_trace=True, hessian_trace_probes=4)
    return experiments.run(config, progress=False)


def failing_run() -> dict[str, Any]:
    """Rank 1 raises while rank 0 waits in a collective for it."""
    if distributed.rank() == 1:
        raise RuntimeError("worker 1 fails on purpose")
    distributed.all_reduce_sum(torch.ones(1))
    return {}


SCENARIOS = {"train": train_run, "hessian": hessian_run, "schedule": schedule_run,
             "absa_scripted": absa_scripted_run, "abs_estimated": abs_estimated_run,
             "experiment": experiment_run, "fail": failing_run}


def main(scenario: str, out: Path) -> None:
    torch.set_num_threads(1)
    distributed.init_from_env()
    result = {"world_size": distributed.world_size()}
    for name in scenario.split(","):
        result[name] = SCENARIOS[name]()
    torch.save(result, out / f"rank{distributed.rank()}.pt")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
