"""The attack study of the adversarial chapter: grids, cached robust curves, input curvature.

Written once so that the chapter "Large batches are easier to attack" only calls it;
statistics and verdicts come from :mod:`largebatch.analysis`.

* :func:`scaling_grid` -- the runs of a batch-size study under two learning-rate
  regimes (fixed learning rate, or learning rate proportional to the batch size) and
  several momenta, sharing the runs where the regimes coincide.
* :func:`robust_curve` -- robust accuracy against epsilon of one finished run
  (:func:`largebatch.attacks.robust_accuracy`), cached next to the run's record.
* :func:`robustness_table` -- one row per run, attack and epsilon, with the run's
  labels, clean test accuracy and top Hessian eigenvalue; :func:`per_run` adds the
  area under each robust-accuracy curve.
* :func:`input_curvature_table`, :func:`gradient_line`, :func:`convexity_table` -- the
  input-space curvature checks of the "saddle-free" claim (piecewise-linear networks),
  judged by :func:`saddle_free_verdict`.
* :func:`input_scale` -- the size of the inputs, to express epsilons relative to it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from largebatch import analysis, attacks, experiments
from largebatch.config import ConfigError, RunConfig
from largebatch.evaluation import eval_mode
from largebatch.input_curvature import (
    DEFAULT_TOL,
    ROUNDOFF_FACTOR,
    input_hessian_spectrum,
    logits_function,
    loss_along_direction,
    same_linear_region,
)
from largebatch.train import lr_scale
from largebatch.user_input import check_seeds

__all__ = [
    "ROUNDOFF_FACTOR", "GridRun", "area_under_curve", "check_epsilons", "check_study",
    "convexity_table", "gradient_line", "input_curvature_table", "input_scale", "per_run",
    "robust_curve", "robustness_table", "saddle_free_verdict", "scaling_grid", "unique_configs",
]

REGIMES = ("none", "linear")
_CURVE_FORMAT = 1  # bump when the cached robust-curve computation changes


# ----------------------------------------------------------------------------- grids


@dataclass(frozen=True)
class GridRun:
    """One run of a grid: its labels (become table columns) and its configuration."""

    labels: dict[str, Any]
    config: RunConfig


def scaling_grid(base: RunConfig, batch_sizes: Sequence[int], seeds: Sequence[int],
                 regimes: Sequence[str] = REGIMES, momenta: Sequence[float] | None = None,
                 ) -> list[GridRun]:
    """Batch-size runs under learning-rate regimes, momenta and seeds.

    ``regimes`` are ``lr_scaling`` rules: ``"none"`` keeps ``base.lr`` at every batch
    size, ``"linear"`` multiplies it by ``batch_size / min(batch_sizes)`` (the ratio
    lr / batch size stays constant). The smallest batch size is the common reference
    (``base_batch_size``), where every regime trains with ``base.lr``: those runs are
    the same run (configured with ``lr_scaling="none"``) and trained once.
    ``momenta`` defaults to ``[base.momentum]``. Labels: ``regime``, ``momentum``,
    ``batch_size``, ``seed``.
    """
    if not batch_sizes:
        raise ValueError("batch_sizes must be non-empty")
    check_seeds("seeds", seeds)
    unknown = [r for r in regimes if r not in ("none", "linear", "sqrt")]
    if unknown:
        raise ValueError(f"regimes must be lr_scaling rules (none, linear, sqrt), got {unknown}")
    reference = min(batch_sizes)
    runs = []
    for regime in regimes:
        for momentum in (momenta if momenta is not None else [base.momentum]):
            for batch_size in batch_sizes:
                for seed in seeds:
                    rule = "none" if batch_size == reference else regime
                    config = base.replace(batch_size=batch_size, lr_scaling=rule,
                                          base_batch_size=reference, momentum=momentum, seed=seed)
                    runs.append(GridRun({"regime": regime, "momentum": momentum,
                                         "batch_size": batch_size, "seed": seed}, config))
    return runs


def unique_configs(runs: Iterable[GridRun | RunConfig]) -> list[RunConfig]:
    """The distinct configurations of some runs, in first-seen order (to train each once)."""
    seen: dict[str, RunConfig] = {}
    for run in runs:
        config = run.config if isinstance(run, GridRun) else run
        seen.setdefault(config.key(), config)
    return list(seen.values())


# ----------------------------------------------------------------------------- inputs


def check_epsilons(epsilons: Sequence[float], reference_eps: float | None = None) -> None:
    """Fail (``ConfigError``) unless ``epsilons`` are numbers >= 0 that include 0 (and the reference)."""
    if not epsilons or any(not isinstance(e, (int, float)) or not e >= 0 for e in epsilons):
        raise ConfigError(f"parameter epsilons must be a non-empty list of numbers >= 0, got {epsilons!r}")
    if 0 not in epsilons:
        raise ConfigError(f"parameter epsilons must include 0 (the clean accuracy), got {epsilons!r}")
    if reference_eps is not None and not any(math.isclose(e, reference_eps) for e in epsilons):
        raise ConfigError(f"parameter reference_eps must be one of epsilons {epsilons!r}, "
                          f"got {reference_eps!r}")


def check_study(batch_sizes: Sequence[int], seeds: Sequence[int], momenta: Sequence[float],
                activations: Sequence[str], indefinite_fraction: float, num_threads: int = 0) -> None:
    """Fail (``ConfigError``) on parameters of the adversarial chapter that cannot make a study.

    Two distinct batch sizes at least, one seed at least (distinct seeds), distinct momenta, activations
    that start with ``"relu"`` and name at least one smooth one, ``indefinite_fraction``
    in (0, 1] and ``num_threads >= 0``.
    """
    if len(set(batch_sizes)) < 2:
        raise ConfigError(f"parameter batch_sizes must name two distinct sizes at least, got {batch_sizes!r}")
    check_seeds("parameter seeds", seeds)
    if len(set(momenta)) != len(momenta):
        raise ConfigError(f"parameters low_momentum and momentum must differ, got {list(momenta)!r}")
    if list(activations[:1]) != ["relu"] or len(activations) < 2:
        raise ConfigError(f"parameter curvature_activations must start with relu and name at least "
                          f"one smooth activation, got {activations!r}")
    if not 0 < indefinite_fraction <= 1:
        raise ConfigError(f"parameter indefinite_fraction must be in (0, 1], got {indefinite_fraction!r}")
    if num_threads < 0:
        raise ConfigError(f"parameter num_threads must be >= 0 (0: torch's default), got {num_threads!r}")


def input_scale(inputs: Tensor) -> dict[str, float]:
    """Mean over samples of each input's RMS value and of its largest absolute value.

    An L-inf perturbation of size eps changes each coordinate by at most eps, so
    ``eps / rms`` and ``eps / linf`` say how large it is compared with the signal.
    """
    flat = inputs.detach().flatten(1).double()
    return {"rms": flat.pow(2).mean(dim=1).sqrt().mean().item(),
            "linf": flat.abs().amax(dim=1).mean().item()}


# ----------------------------------------------------------------------------- curves


def robust_curve(config: RunConfig, epsilons: Sequence[float], attack: str = "pgd", *,
                 num_points: int | None = None, steps: int = 10, restarts: int = 1,
                 seed: int = 0, batch_size: int = 500,
                 cache_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """Robust test accuracy of a finished run for each epsilon (L-inf, input units).

    The first ``num_points`` test samples (all if None) are attacked with ``attack``
    (``"fgsm"``, or ``"pgd"`` with ``steps`` steps of ``2.5 eps / steps``, a random
    start drawn from a generator seeded with ``seed``, and ``restarts``), clipped to
    the data set's value range. The curve is stored next to the run's record, keyed by
    these settings, and read from there next time. Columns: ``epsilon, accuracy,
    attack, norm``.
    """
    if attack not in attacks.ATTACKS:
        raise ValueError(f"attack must be one of {attacks.ATTACKS}, got {attack!r}")
    if any(not eps >= 0 for eps in epsilons) or not epsilons:
        raise ValueError(f"epsilons must be a non-empty list of numbers >= 0, got {list(epsilons)}")
    if num_points is not None and num_points < 1:
        raise ValueError(f"num_points must be a positive integer or None, got {num_points!r}")
    ordered = sorted({float(e) for e in epsilons})
    settings = {"format": _CURVE_FORMAT, "epsilons": ordered, "attack": attack,
                "num_points": num_points}
    if attack == "pgd":
        settings.update(steps=steps, restarts=restarts, seed=seed)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]

    def compute() -> dict[str, list]:
        model = experiments.load_model(config, cache_dir)
        bundle = experiments.load_data(config)
        inputs, targets = bundle.test.tensors
        if num_points is not None:
            inputs, targets = inputs[:num_points], targets[:num_points]
        kwargs: dict[str, Any] = {"clip": bundle.value_range}
        if attack == "pgd":
            kwargs.update(steps=steps, restarts=restarts,
                          generator=torch.Generator().manual_seed(seed))
        curve = attacks.robust_accuracy(model, (inputs, targets), ordered, attack=attack,
                                        batch_size=batch_size, **kwargs)
        return curve.to_dict(orient="list")

    return pd.DataFrame(analysis.measure(config, f"robust_{digest}", compute, cache_dir))


def _labelled(runs: Iterable[GridRun | RunConfig]) -> list[GridRun]:
    return [run if isinstance(run, GridRun) else GridRun({}, run) for run in runs]


def robustness_table(runs: Sequence[GridRun | RunConfig], epsilons: Sequence[float],
                     attack_names: Sequence[str] = ("fgsm", "pgd"), *,
                     cache_dir: str | os.PathLike | None = None, **curve_kwargs: Any,
                     ) -> pd.DataFrame:
    """One row per run, attack and epsilon: labels, run facts and robust accuracy.

    Every run must be finished (its record cached). Columns: the run's labels (for
    :class:`GridRun`), ``run`` (position in ``runs``), ``key``, ``batch_size``, ``lr_scaling``, ``momentum``, ``seed``,
    ``adversarial_fraction``, ``effective_lr`` (learning rate after scaling),
    ``status``, ``steps``, ``test_accuracy``, ``hessian_top_eigenvalue`` (NaN if not
    measured), ``attack``, ``epsilon``, ``robust_accuracy``. A diverged run gives NaN
    accuracies (and is not attacked). ``curve_kwargs`` go to :func:`robust_curve`.
    """
    rows = []
    for index, run in enumerate(_labelled(runs)):
        config = run.config
        record = experiments.load_record(config, cache_dir)
        if record is None:
            raise FileNotFoundError(f"run {config.key()} (batch {config.batch_size}, seed "
                                    f"{config.seed}) is not finished; call experiments.run first")
        final = record["final"]
        facts = {
            "run": index, "key": config.key(), "batch_size": config.batch_size, "lr_scaling": config.lr_scaling,
            "momentum": config.momentum, "seed": config.seed,
            "adversarial_fraction": config.adversarial_fraction,
            "effective_lr": config.lr * lr_scale(config.lr_scaling, config.batch_size,
                                                 config.base_batch_size),
            "status": record["status"], "steps": final.get("steps", math.nan),
            "test_accuracy": final.get("test_accuracy", math.nan),
            "hessian_top_eigenvalue": final.get("hessian_top_eigenvalue", math.nan),
        }
        facts.update(run.labels)
        for attack in attack_names:
            if record["status"] == "diverged":
                curve = pd.DataFrame({"epsilon": sorted({float(e) for e in epsilons}),
                                      "accuracy": math.nan})
            else:
                curve = robust_curve(config, epsilons, attack, cache_dir=cache_dir, **curve_kwargs)
            for eps, accuracy in zip(curve["epsilon"], curve["accuracy"]):
                rows.append({**facts, "attack": attack, "epsilon": float(eps),
                             "robust_accuracy": float(accuracy)})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- summaries


def area_under_curve(epsilons: Sequence[float], accuracies: Sequence[float]) -> float:
    """Mean robust accuracy over ``[min eps, max eps]`` (trapezoid rule, area / width).

    A single number per curve in [0, 1]: 1 means unbreakable over the whole range, the
    clean accuracy is an upper bound when the curve starts at eps = 0.
    """
    eps = np.asarray(epsilons, dtype=float)
    acc = np.asarray(accuracies, dtype=float)
    if eps.shape != acc.shape or eps.size == 0:
        raise ValueError("epsilons and accuracies must be non-empty and of the same length")
    order = np.argsort(eps)
    eps, acc = eps[order], acc[order]
    if eps.size == 1 or eps[-1] == eps[0]:
        return float(acc.mean())
    area = float(np.sum((acc[1:] + acc[:-1]) * np.diff(eps)) / 2)
    return area / float(eps[-1] - eps[0])


def per_run(table: pd.DataFrame, reference_eps: float | None = None) -> pd.DataFrame:
    """One row per run and attack: every non-curve column plus ``auc`` (see
    :func:`area_under_curve`) and, if ``reference_eps`` is given, ``robust_at_ref``
    (the robust accuracy at that epsilon, which must be on the grid)."""
    keys = [c for c in table.columns if c not in ("epsilon", "robust_accuracy")]
    rows = []
    for _, group in table.groupby(["run", "attack"], sort=False):
        row = group.iloc[0][keys].to_dict()
        row["auc"] = area_under_curve(group["epsilon"], group["robust_accuracy"])
        if reference_eps is not None:
            match = group[np.isclose(group["epsilon"], reference_eps)]
            if match.empty:
                raise ValueError(f"reference_eps {reference_eps} is not among the epsilons "
                                 f"{sorted(group['epsilon'])}")
            row["robust_at_ref"] = float(match["robust_accuracy"].iloc[0])
        rows.append(row)
    return pd.DataFrame(rows)


def saddle_free_verdict(curvature: pd.DataFrame, convexity: pd.DataFrame, piecewise: Sequence[str],
                        smooth: Sequence[str], indefinite_fraction: float,
                        ) -> list[analysis.Verdict]:
    """Verdict on the saddle-free claim from :func:`input_curvature_table` and
    :func:`convexity_table` outputs (with a ``network`` column; ``convexity`` rows of
    segments inside linear regions only).

    Three criteria: every ``piecewise`` network is PSD with at most C-1 nonzero
    eigenvalues at every point; its loss is convex along the gradient inside the linear
    region at every point; every ``smooth`` network is indefinite at a share of at least
    ``indefinite_fraction`` of the points. One verdict per criterion (value: the share of
    points that meet it), then, last, their combination
    (:func:`largebatch.analysis.combine_verdicts`).
    """
    linear = curvature[curvature["network"].isin(piecewise)]
    inside = convexity[convexity["network"].isin(piecewise)]
    if linear.empty or inside.empty or not smooth:
        raise ValueError("need curvature and convexity rows of piecewise-linear networks and "
                         "at least one smooth network")

    def part(ok: bool, setting: str, criterion: str, share: float) -> analysis.Verdict:
        outcome = "reproduced" if ok else analysis.NOT_REPRODUCED
        return analysis.Verdict("A3", outcome, criterion, f"share {share:.3g}", setting, share,
                                measured="share of points")

    psd = linear["psd"] & linear["rank_bound"]
    criteria = [
        part(bool(psd.all()), "piecewise-linear: PSD, rank <= C-1",
             "PSD with at most C-1 nonzero eigenvalues at every point", float(psd.mean())),
        part(bool(inside["convex"].all()), "piecewise-linear: convex in the linear region",
             "loss convex along the gradient inside the linear region at every point",
             float(inside["convex"].mean()))]
    for name in smooth:
        rows = curvature[curvature["network"] == name]
        if rows.empty:
            raise ValueError(f"no curvature rows for the smooth network {name!r}")
        share = float((~rows["psd"]).mean())
        criteria.append(part(share >= indefinite_fraction, f"{name}: indefinite",
                             f"indefinite at a share >= {indefinite_fraction:g} of the points", share))
    return [*criteria, analysis.combine_verdicts("A3", criteria)]


# ----------------------------------------------------------------------------- input curvature


def input_curvature_table(networks: Mapping[str, nn.Module], inputs: Tensor, targets: Tensor,
                          num_classes: int, tol: float = DEFAULT_TOL,
                          roundoff_factor: float = ROUNDOFF_FACTOR) -> pd.DataFrame:
    """:func:`largebatch.input_curvature.input_hessian_spectrum` of several networks.

    Adds the columns ``network`` and ``rank_bound`` (at most ``num_classes - 1``
    nonzero eigenvalues).
    """
    tables = []
    for name, network in networks.items():
        table = input_hessian_spectrum(network, inputs, targets, tol=tol, roundoff_factor=roundoff_factor)
        table.insert(0, "network", name)
        table["rank_bound"] = table["n_nonzero"] <= num_classes - 1
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def _unit_gradient(model: nn.Module, x: Tensor, y: Tensor | int) -> Tensor:
    """The input gradient of the loss at one sample, of unit L2 norm (float64, eval mode)."""
    point = x.detach().to(torch.float64).unsqueeze(0).requires_grad_(True)
    target = torch.as_tensor(y).reshape(1)
    with eval_mode(model):
        logits = logits_function(model)(point)
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, target), point)
    grad = grad[0]
    norm = grad.norm()
    if norm == 0:
        raise ValueError("the input gradient is zero at this sample; no ascent direction")
    return grad / norm


def gradient_line(model: nn.Module, x: Tensor, y: Tensor | int, max_step: float,
                  num_steps: int = 33, within_region: bool = False,
                  max_halvings: int = 30) -> tuple[Tensor, Tensor]:
    """Loss along the normalized input gradient: ``(steps, losses)`` for ``x + a g``.

    ``a`` runs over ``num_steps`` evenly spaced values in ``[0, A]`` (L2 distance in
    input units), ``A = max_step``; with ``within_region=True``, ``A`` is halved until
    ``x + A g`` lies in the same linear region as ``x`` (see
    :func:`largebatch.input_curvature.same_linear_region`; regions are convex, so the
    whole segment does), so the line stays where the network is affine.
    """
    if not max_step > 0 or num_steps < 3:
        raise ValueError("max_step must be > 0 and num_steps >= 3")
    direction = _unit_gradient(model, x, y)
    length = float(max_step)
    if within_region:
        start = x.detach().to(torch.float64)
        for _ in range(max_halvings):
            if same_linear_region(model, start, start + length * direction):
                break
            length /= 2
        else:
            raise ValueError(f"no step above {length:.2e} stays in the linear region of this sample")
    steps = torch.linspace(0.0, length, num_steps, dtype=torch.float64)
    return steps, loss_along_direction(model, x, y, direction, steps)


def convexity_table(model: nn.Module, inputs: Tensor, targets: Tensor, max_step: float,
                    within_region: bool = False, num_steps: int = 33, tol: float = 1e-9,
                    roundoff_factor: float = ROUNDOFF_FACTOR) -> pd.DataFrame:
    """Is the loss convex along the gradient direction? One row per sample.

    The loss is sampled with :func:`gradient_line`; its second differences
    ``f(a-h) - 2 f(a) + f(a+h)`` must all be at least ``-allowance``, where
    ``allowance = tol * max|f| + roundoff_factor * eps64 * (1 + max|logit at x|)``
    covers the float64 round-off of a cross-entropy computed from logits of that size.
    Columns: ``sample``, ``length`` (of the segment), ``min_second_difference``
    (smallest second difference, divided by ``max|f|``), ``allowance`` (likewise
    divided) and ``convex``.
    """
    rows = []
    for index, (x, y) in enumerate(zip(inputs, targets)):
        steps, losses = gradient_line(model, x, y, max_step, num_steps, within_region)
        with eval_mode(model), torch.no_grad():
            logit_size = logits_function(model)(x.double().unsqueeze(0)).abs().max().item()
        second = losses[2:] - 2 * losses[1:-1] + losses[:-2]
        size = max(losses.abs().max().item(), 1e-300)
        allowance = tol * size + roundoff_factor * torch.finfo(torch.float64).eps * (1 + logit_size)
        rows.append({"sample": index, "length": float(steps[-1]),
                     "min_second_difference": second.min().item() / size,
                     "allowance": allowance / size, "convex": second.min().item() >= -allowance})
    return pd.DataFrame(rows)
