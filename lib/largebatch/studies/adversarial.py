"""Chapter 04, "Large batches are easier to attack": robustness, momentum, input curvature.

Claims A2, A3, A4 (Yao et al. 2018) and C1-C3 (Kamath et al. 2020). The design is a
grid of batch sizes under two learning-rate regimes (fixed, or lr/B held constant) and
two momenta, the two ends of its main setting trained again adversarially (A4), and a
small MLP with ReLU and smooth activations for the input curvature (A3). The chapter
follows the shape of every study module (see :mod:`largebatch.studies`); the attack
helpers below are also what other chapters use to attack a finished run:

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
from functools import cached_property
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from pandas.io.formats.style import Styler
from torch import Tensor, nn

from largebatch import analysis, attacks, data, experiments, models, notebook, plots
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
from largebatch.studies.common import (LabelledRun, design_table, network_name, parameters, restrict_to_seeds,
                                       unique_configs, use_threads)
from largebatch.train import lr_scale
from largebatch.user_input import check_seeds

__all__ = [
    "CHAPTER", "ROUNDOFF_FACTOR", "Design", "Tables", "area_under_curve", "check_epsilons", "check_study",
    "convexity_table", "design", "gradient_line", "input_curvature_table", "input_scale", "per_run", "prose",
    "record_verdicts", "restrict", "robust_curve", "robustness_table", "saddle_free_verdict", "scaling_grid",
    "tables", "verdicts",
]

REGIMES = ("none", "linear")
_CURVE_FORMAT = 1  # bump when the cached robust-curve computation changes


# ----------------------------------------------------------------------------- grids


def scaling_grid(base: RunConfig, batch_sizes: Sequence[int], seeds: Sequence[int],
                 regimes: Sequence[str] = REGIMES, momenta: Sequence[float] | None = None,
                 ) -> list[LabelledRun]:
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
                    runs.append(LabelledRun({"regime": regime, "momentum": momentum,
                                         "batch_size": batch_size, "seed": seed}, config))
    return runs


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


def _labelled(runs: Iterable[LabelledRun | RunConfig]) -> list[LabelledRun]:
    return [run if isinstance(run, LabelledRun) else LabelledRun({}, run) for run in runs]


def robustness_table(runs: Sequence[LabelledRun | RunConfig], epsilons: Sequence[float],
                     attack_names: Sequence[str] = ("fgsm", "pgd"), *,
                     cache_dir: str | os.PathLike | None = None, **curve_kwargs: Any,
                     ) -> pd.DataFrame:
    """One row per run, attack and epsilon: labels, run facts and robust accuracy.

    Every run must be finished (its record cached). Columns: the run's labels (for
    :class:`LabelledRun`), ``run`` (position in ``runs``), ``key``, ``batch_size``, ``lr_scaling``, ``momentum``, ``seed``,
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


# ============================================================================= the chapter

CHAPTER = "04_adversarial"
REGIME_NAMES = {"none": "fixed lr", "linear": "lr/B fixed"}  # lr_scaling of the grid -> its name in tables
ADVERSARIAL = "adversarial (FGSM)"  # the "training" label of the A4 runs (the others: "natural")


@dataclass(frozen=True)
class Design:
    """The chapter's parameters (see the notebook's parameters cell), checked on construction."""

    dataset: str
    model: str
    model_options: dict
    num_samples: int
    epochs: int
    lr: float
    momentum: float
    low_momentum: float
    batch_sizes: list[int]
    seeds: list[int]
    epsilons: list[float]
    reference_eps: float
    pgd_steps: int
    attack_samples: int
    hessian_tol: float
    adversarial_fraction: float
    adversarial_eps: float
    curvature_dataset: str
    curvature_model: str
    curvature_activations: list[str]
    curvature_points: int
    line_length: float
    z_threshold: float
    constant_tolerance: float
    indefinite_fraction: float
    num_threads: int
    augmentation: str

    def __post_init__(self) -> None:
        notebook.check_choice("dataset", self.dataset, data.DATASETS)
        notebook.check_choice("curvature_dataset", self.curvature_dataset, data.DATASETS)
        for name in ("batch_sizes", "epochs", "attack_samples", "pgd_steps", "curvature_points", "line_length",
                     "z_threshold", "constant_tolerance", "hessian_tol"):
            notebook.check_positive(name, getattr(self, name))
        check_epsilons(self.epsilons, self.reference_eps)
        for activation in self.curvature_activations:
            notebook.check_choice("curvature_activations", activation, list(models.ACTIVATIONS))
        check_study(self.batch_sizes, self.seeds, [self.low_momentum, self.momentum], self.curvature_activations,
                    self.indefinite_fraction, self.num_threads)
        experiments.build_model(self.base, self.bundle)  # fails here on bad model options
        for config in self.curvature_runs.values():
            experiments.build_model(config, self.curvature_bundle)

    @property
    def small(self) -> int:
        return min(self.batch_sizes)

    @property
    def large(self) -> int:
        return max(self.batch_sizes)

    @cached_property
    def bundle(self) -> data.DataBundle:
        """The data of the batch-size study, checked against the largest batch."""
        return experiments.validate(self.base.replace(batch_size=self.large))

    @cached_property
    def curvature_bundle(self) -> data.DataBundle:
        """The data of the input-curvature study."""
        return experiments.validate(self.curvature_base)

    @property
    def base(self) -> RunConfig:
        return experiments.RunConfig(
            dataset=self.dataset, model=self.model, model_options=self.model_options,
            num_samples=self.num_samples, epochs=self.epochs, lr=self.lr, momentum=self.momentum,
            eval_every=self.epochs,  # the chapter reads final metrics only: no evaluation before the end
            hessian_top_k=1, hessian_tol=self.hessian_tol, augmentation=self.augmentation)

    @cached_property
    def grid(self) -> list[LabelledRun]:
        """Batch sizes x regimes (fixed lr, lr/B fixed) x momenta x seeds; labels regime, momentum,
        batch_size, seed."""
        return scaling_grid(self.base, self.batch_sizes, self.seeds, regimes=("none", "linear"),
                            momenta=[self.low_momentum, self.momentum])

    @property
    def natural(self) -> list[LabelledRun]:
        """The runs of the grid that A4 trains again adversarially: fixed lr, main momentum, both ends."""
        return [run for run in self.grid if run.labels["regime"] == "none"
                and run.labels["momentum"] == self.momentum and run.labels["batch_size"] in (self.small, self.large)]

    @property
    def adversarial_training(self) -> list[LabelledRun]:
        return [LabelledRun({**run.labels, "training": ADVERSARIAL},
                            run.config.replace(adversarial_fraction=self.adversarial_fraction,
                                               adversarial_eps=self.adversarial_eps, adversarial_method="fgsm"))
                for run in self.natural]

    @property
    def a4_runs(self) -> list[LabelledRun]:
        """The natural runs and their adversarially trained twins (label ``training``)."""
        return [LabelledRun({**run.labels, "training": "natural"}, run.config)
                for run in self.natural] + self.adversarial_training

    @property
    def curvature_base(self) -> RunConfig:
        return experiments.RunConfig(dataset=self.curvature_dataset, model=self.curvature_model,
                                     num_samples=self.num_samples, epochs=self.epochs, lr=self.lr,
                                     momentum=self.momentum, batch_size=self.small)

    @property
    def curvature_runs(self) -> dict[str, RunConfig]:
        """Activation -> the input-curvature network with it."""
        return {name: self.curvature_base.replace(model_options={"activation": name})
                for name in self.curvature_activations}

    @property
    def training_runs(self) -> list[RunConfig]:
        """Every distinct configuration to train."""
        return unique_configs(self.grid + self.adversarial_training) + list(self.curvature_runs.values())

    @property
    def runs(self) -> list[LabelledRun]:
        """Every run, labelled for the design table (runs shared by two settings appear twice)."""
        def labels(claims: str, config: RunConfig) -> dict[str, Any]:
            adversarial = (f"FGSM on {config.adversarial_fraction:.0%}, eps {config.adversarial_eps:g}"
                           if config.adversarial_fraction else "")
            return {"claims": claims, "lr rule": REGIME_NAMES["linear" if config.lr_scaling == "linear" else "none"],
                    "momentum": config.momentum, "batch_size": config.batch_size,
                    "network": network_name(config), "adversarial training": adversarial}

        grid = [LabelledRun({**labels("A2, C1-C3", run.config), "lr rule": REGIME_NAMES[run.labels["regime"]]},
                            run.config) for run in self.grid]
        return (grid + [LabelledRun(labels("A4", run.config), run.config) for run in self.adversarial_training]
                + [LabelledRun(labels("A3", config), config) for config in self.curvature_runs.values()])

    def table(self) -> Styler:
        """The design as the chapter shows it (the labels say what differs)."""
        return design_table(self.runs, self.bundle, fields=())


def design(namespace: Mapping[str, Any]) -> Design:
    """The chapter's design from the notebook's parameters (its ``globals()``), validated."""
    return Design(**parameters(namespace, Design))


@dataclass
class Tables:
    """What the figures and verdicts read."""

    design: Design
    statuses: pd.Series  # number of trained runs per final status
    scale: dict[str, float]  # mean RMS and largest |x| of the attacked test inputs
    table: pd.DataFrame  # the grid: one row per run, attack and epsilon (robustness_table)
    runs: pd.DataFrame  # the grid: one row per run and attack, with "auc", "robust_at_ref", "setting"
    a4_table: pd.DataFrame  # the A4 runs: one row per run, attack and epsilon
    a4: pd.DataFrame  # the A4 runs: one row per run and attack
    curvature: pd.DataFrame  # input Hessian spectrum per network and test point (input_curvature_table)
    convexity: pd.DataFrame  # convexity along the input gradient per network, segment and point
    lines: dict[str, tuple[Tensor, Tensor]]  # MLP -> loss along its input gradient at one test point
    piecewise: list[str]  # names of the piecewise-linear (ReLU) networks of the A3 study
    smooth: list[str]  # names of the smooth networks

    @property
    def pgd_runs(self) -> pd.DataFrame:
        return analysis.select(self.runs, attack="pgd")


def _setting(regime: str, momentum: float) -> str:
    return f"{REGIME_NAMES[regime]}, momentum {momentum:g}"


def _curvature(design: Design, natural: list[LabelledRun]) -> tuple[pd.DataFrame, pd.DataFrame, dict, list, list]:
    """A3: input Hessians and convexity of the MLPs and of the grid's ReLU CNNs at both ends."""
    networks = {f"MLP {name}": experiments.load_model(config) for name, config in design.curvature_runs.items()}
    cnn_runs = {f"CNN relu, B = {b}": next(run.config for run in natural
                                           if run.labels["batch_size"] == b and run.labels["seed"] == design.seeds[0])
                for b in (design.small, design.large)}
    networks.update({name: experiments.load_model(config) for name, config in cnn_runs.items()})
    points = design.curvature_points
    mlp_inputs, mlp_targets = (t[:points] for t in design.curvature_bundle.test.tensors)
    cnn_inputs, cnn_targets = (t[:points] for t in design.bundle.test.tensors)
    piecewise = ["MLP relu", *cnn_runs]
    smooth = [f"MLP {name}" for name in design.curvature_activations[1:]]
    mlps = ["MLP relu", *smooth]
    curvature = pd.concat([
        input_curvature_table({n: networks[n] for n in mlps}, mlp_inputs, mlp_targets,
                              design.curvature_bundle.num_classes),
        input_curvature_table({n: networks[n] for n in cnn_runs}, cnn_inputs, cnn_targets,
                              design.bundle.num_classes),
    ], ignore_index=True)
    segments = [(True, "inside the linear region"), (False, "fixed length")]
    convexity = pd.concat([
        convexity_table(networks[name], inputs, targets, design.line_length, within_region=within)
        .assign(network=name, segment=segment)
        for name, (inputs, targets) in [*((n, (mlp_inputs, mlp_targets)) for n in mlps),
                                        *((n, (cnn_inputs, cnn_targets)) for n in cnn_runs)]
        for within, segment in (segments if name in piecewise else segments[1:])
    ], ignore_index=True)
    lines = {name: gradient_line(networks[name], mlp_inputs[0], mlp_targets[0], design.line_length, num_steps=41)
             for name in mlps}
    return curvature, convexity, lines, piecewise, smooth


def tables(design: Design) -> Tables:
    """Train every run (or read it from the cache), attack them, measure input curvature."""
    use_threads(design.num_threads)
    records = experiments.sweep(design.training_runs)
    statuses = pd.Series([r["status"] for r in records]).value_counts()
    scale = input_scale(design.bundle.test.tensors[0][:design.attack_samples])
    curve_settings = {"num_points": design.attack_samples, "steps": design.pgd_steps}
    table = robustness_table(design.grid, design.epsilons, **curve_settings)
    table["setting"] = [_setting(r, m) for r, m in zip(table["regime"], table["momentum"])]
    runs = per_run(table, reference_eps=design.reference_eps)
    runs["log_eigenvalue"] = np.log(runs["hessian_top_eigenvalue"])
    a4_table = robustness_table(design.a4_runs, design.epsilons, **curve_settings)
    a4_table["setting"] = [f"{t}, B = {b}" for t, b in zip(a4_table["training"], a4_table["batch_size"])]
    a4 = per_run(a4_table, reference_eps=design.reference_eps)
    a4["log_eigenvalue"] = np.log(a4["hessian_top_eigenvalue"])
    return Tables(design, statuses, scale, table, runs, a4_table, a4, *_curvature(design, design.natural))


# ----------------------------------------------------------------------------- figures and tables


def scale_table(tables: Tables) -> Styler:
    """What an epsilon means: the size of the attacked inputs."""
    scale, eps = tables.scale, tables.design.reference_eps
    return notebook.show(pd.DataFrame({"per-sample RMS (mean)": [scale["rms"]],
                                       "per-sample max |x| (mean)": [scale["linf"]],
                                       "reference epsilon": [eps], "reference epsilon / RMS": [eps / scale["rms"]]}))


def status_table(tables: Tables) -> Styler:
    """How the trained runs ended."""
    return notebook.show(tables.statuses.rename_axis("final status").rename("runs"))


def robustness_summary(tables: Tables) -> Styler:
    """Per setting, attack and batch size: clean accuracy, area under the curve, robust accuracy at
    the reference epsilon, top eigenvalue (seed statistics)."""
    return notebook.show(analysis.seed_summary(tables.runs, ["setting", "attack", "batch_size"],
                                               ["test_accuracy", "auc", "robust_at_ref", "hessian_top_eigenvalue"]))


def a2_figure(tables: Tables) -> None:
    """A2: robust accuracy against epsilon at each batch size, fixed lr and the main momentum."""
    main = _setting("none", tables.design.momentum)
    curves = analysis.seed_summary(analysis.select(tables.table, setting=main),
                                   ["attack", "epsilon", "batch_size"], ["robust_accuracy"])
    figure = plots.robust_accuracy_curves(curves, hue="batch_size", eps_unit=tables.scale["rms"])
    plots.save_figure(figure, "adversarial_a2_robust_accuracy")


def _a2_effects(tables: Tables) -> dict[str, analysis.Difference]:
    """Largest minus smallest batch (fixed lr, main momentum), paired by seed: at a seed both batch
    sizes start from the same weights and draw the same training-set permutations (cut into batches
    of their own size), and every PGD attack starts from the same random draw (generator seed 0)."""
    design = tables.design
    return {name: analysis.batch_size_effect(tables.runs, metric, design.small, design.large, paired=True,
                                             regime="none", momentum=design.momentum, attack=attack)
            for name, metric, attack in [("accuracy", "test_accuracy", "pgd"), ("fgsm", "auc", "fgsm"),
                                         ("pgd", "auc", "pgd"), ("pgd_ref", "robust_at_ref", "pgd"),
                                         ("eigenvalue", "log_eigenvalue", "pgd")]}


def a2_table(tables: Tables) -> Styler:
    """A2: largest minus smallest batch, per quantity (mean of the per-seed differences, paired test)."""
    return notebook.show(pd.DataFrame([{"comparison": name, **c._asdict(), "z": c.z}
                                       for name, c in _a2_effects(tables).items()]))


def eigenvalue_figure(tables: Tables) -> None:
    """Top Hessian eigenvalue against the area under the PGD curve, every naturally trained run."""
    figure = plots.metric_scatter(tables.pgd_runs, "hessian_top_eigenvalue", "auc", hue="setting",
                                  xlabel="top Hessian eigenvalue (training loss, log scale)",
                                  ylabel="area under PGD curve (mean robust acc.)", log_x=True)
    plots.save_figure(figure, "adversarial_eigenvalue_vs_robustness")


def _accuracy_auc_eigenvalue(summary: pd.DataFrame, hue: str, name: str) -> None:
    figure = plots.metrics_vs_batch_size(summary, {
        "test_accuracy": "clean test accuracy", "auc": "area under PGD curve (mean robust acc.)",
        "hessian_top_eigenvalue": "top Hessian eigenvalue"}, hue=hue, log_metrics=["hessian_top_eigenvalue"])
    plots.save_figure(figure, name)


def c_figure(tables: Tables) -> None:
    """C1-C3: clean accuracy, PGD area and top eigenvalue against the batch size, every setting."""
    summary = analysis.seed_summary(tables.pgd_runs, ["setting", "batch_size"],
                                    ["test_accuracy", "auc", "hessian_top_eigenvalue"])
    _accuracy_auc_eigenvalue(summary, "setting", "adversarial_c_batch_size")


def _c_effects(tables: Tables) -> dict[str, Any]:
    """C1's spreads of the means; C2 and C3 paired by seed: every run of the grid at a seed starts
    from the same weights (batch size, learning rate and momentum do not enter the initialization)
    and draws the same training-set permutations, and its PGD attack the same random start."""
    design, pgd_runs = tables.design, tables.pgd_runs
    spreads = {(regime, metric): analysis.spread_of_means(pgd_runs, metric, regime=regime, momentum=design.momentum)
               for regime in ("linear", "none") for metric in ("auc", "test_accuracy")}
    c2 = {m: analysis.batch_size_effect(pgd_runs, "auc", design.small, design.large, paired=True, regime="none",
                                        momentum=m)
          for m in (design.low_momentum, design.momentum)}

    def auc(regime: str, momentum: float) -> pd.Series:
        return analysis.by_seed(pgd_runs, "auc", regime=regime, momentum=momentum, batch_size=design.large)

    c3 = analysis.difference_of_differences(auc("none", design.momentum), auc("none", design.low_momentum),
                                            auc("linear", design.momentum), auc("linear", design.low_momentum),
                                            paired=True)
    return {"spreads": spreads, "c2": c2, "c3": c3}


def c_table(tables: Tables) -> Styler:
    """C1-C3: the numbers their verdicts read."""
    effects = _c_effects(tables)
    spreads, c2, c3 = effects["spreads"], effects["c2"], effects["c3"]
    return notebook.show(pd.DataFrame({
        "C1 spread of PGD area, lr/B fixed": [spreads[("linear", "auc")]],
        "C1 spread of clean accuracy, lr/B fixed": [spreads[("linear", "test_accuracy")]],
        "(context) spread of PGD area, fixed lr": [spreads[("none", "auc")]],
        **{f"C2 change of PGD area, momentum {m:g}": [c.mean] for m, c in c2.items()},
        **{f"C2 z, momentum {m:g}": [c.z] for m, c in c2.items()},
        "C3 momentum gain, fixed lr": [c3.mean_a], "C3 momentum gain, lr/B fixed": [c3.mean_b], "C3 z": [c3.z],
    }).T.rename(columns={0: "value"}).rename_axis("quantity"))


def a4_curves_figure(tables: Tables) -> None:
    """A4: robust accuracy against epsilon, natural and adversarial training at both batch sizes."""
    curves = analysis.seed_summary(tables.a4_table, ["attack", "epsilon", "setting"], ["robust_accuracy"])
    figure = plots.robust_accuracy_curves(curves, hue="setting", eps_unit=tables.scale["rms"])
    plots.save_figure(figure, "adversarial_a4_robust_accuracy")


def a4_figure(tables: Tables) -> None:
    """A4: clean accuracy, PGD area and top eigenvalue against the batch size, per training."""
    summary = analysis.seed_summary(analysis.select(tables.a4, attack="pgd"), ["training", "batch_size"],
                                    ["test_accuracy", "auc", "hessian_top_eigenvalue"])
    _accuracy_auc_eigenvalue(summary, "training", "adversarial_a4_batch_size")


def _a4_effects(tables: Tables) -> dict[tuple[int, str], analysis.Difference]:
    """Adversarial minus natural training at each end, paired by seed (the twins share the seed's
    initialization and data order; only a share of each batch is replaced by FGSM examples)."""
    a4_pgd = analysis.select(tables.a4, attack="pgd")
    effects = {}
    for b in (tables.design.small, tables.design.large):
        for metric in ("log_eigenvalue", "test_accuracy", "auc"):
            effects[(b, metric)] = analysis.compare(
                analysis.by_seed(a4_pgd, metric, batch_size=b, training=ADVERSARIAL),
                analysis.by_seed(a4_pgd, metric, batch_size=b, training="natural"), paired=True)
    return effects


def a3_figure(tables: Tables) -> None:
    """A3: input-Hessian eigenvalue counts and negative curvature per network."""
    figure = plots.input_curvature_panels(tables.curvature, tables.design.curvature_bundle.num_classes)
    plots.save_figure(figure, "adversarial_a3_input_hessian")


def curvature_table(tables: Tables) -> Styler:
    """A3: per network, the share of points with a PSD input Hessian within the rank bound."""
    return notebook.show(tables.curvature.groupby("network", sort=False).agg(
        psd=("psd", "mean"), rank_bound=("rank_bound", "mean"), indefinite=("psd", lambda s: 1 - s.mean()),
        median_nonzero=("n_nonzero", "median"), median_negative_ratio=("negative_ratio", "median")))


def convexity_summary(tables: Tables) -> Styler:
    """A3: per network and segment, the share of points where the loss is convex along the gradient."""
    return notebook.show(tables.convexity.groupby(["network", "segment"], sort=False).agg(
        convex=("convex", "mean"), median_length=("length", "median"),
        worst_second_difference=("min_second_difference", "min")))


def gradient_line_figure(tables: Tables) -> None:
    """A3: the loss of each MLP along its own normalized input gradient at one test point."""
    plots.save_figure(plots.loss_along_lines(tables.lines), "adversarial_a3_gradient_line")


# ----------------------------------------------------------------------------- verdicts


def verdicts(tables: Tables) -> list[analysis.Verdict]:
    """A2, C1, C2, C3, A4 and A3, per setting and overall, by the criteria the chapter states."""
    design, z = tables.design, tables.design.z_threshold
    a2 = _a2_effects(tables)
    a2_parts = [analysis.difference_verdict("A2", a2[name], expected_sign=-1, quantity=quantity, z=z, setting=name)
                for name, quantity in [("accuracy", "test accuracy"), ("fgsm", "area under FGSM curve"),
                                       ("pgd", "area under PGD curve")]]
    c1_means = analysis.seed_summary(analysis.select(tables.pgd_runs, regime="linear", momentum=design.momentum),
                                     ["batch_size"], ["auc", "test_accuracy"])
    c1_parts = [analysis.constant_verdict("C1", c1_means[f"{metric}_mean"], design.constant_tolerance,
                                          quantity=quantity, setting=quantity)
                for metric, quantity in [("auc", "area under PGD curve"), ("test_accuracy", "test accuracy")]]
    effects = _c_effects(tables)
    c2_parts = [analysis.difference_verdict("C2", c, expected_sign=-1, quantity="area under PGD curve", z=z,
                                            setting=f"momentum {m:g}") for m, c in effects["c2"].items()]
    c3 = analysis.difference_verdict("C3", effects["c3"], z=z,
                                     quantity="momentum gain in PGD area, fixed lr minus lr/B fixed")
    a4 = _a4_effects(tables)
    a4_parts = [analysis.difference_verdict("A4", a4[(b, "log_eigenvalue")], expected_sign=-1,
                                            quantity="log top Hessian eigenvalue", z=z, scale=1.0,
                                            unit="(natural log)", setting=f"B = {b}")
                for b in (design.small, design.large)]
    inside = tables.convexity[tables.convexity["segment"] == "inside the linear region"]
    a3 = [analysis.seed_independent(v, _a3_runs(design)) for v in saddle_free_verdict(
        tables.curvature, inside, tables.piecewise, tables.smooth, design.indefinite_fraction)]
    return [*a2_parts, analysis.combine_verdicts("A2", a2_parts), *c1_parts, analysis.combine_verdicts("C1", c1_parts),
            *c2_parts, analysis.combine_verdicts("C2", c2_parts), c3, *a4_parts,
            analysis.combine_verdicts("A4", a4_parts), *a3]


def _a3_runs(design: Design) -> str:
    """What A3 rests on: one network per activation and batch size, whichever seeds are left out."""
    seeds = sorted({c.seed for c in design.curvature_runs.values()})
    return (f"one run per network: the MLPs at seed {', '.join(map(str, seeds))} (not the seed list) and the "
            f"CNNs of the first seed ({design.seeds[0]}), at {design.curvature_points} test points")


_A3_INPUTS = "A3's input curvature, one run per network (its verdicts are marked not applicable)"


def restrict(tables: Tables, seeds: list[int]) -> Tables:
    """The tables as if only ``seeds`` had been run: the grid's and the A4 runs of those seeds (curves
    and per-run rows); the input-curvature study (one run per network) as it is."""
    return restrict_to_seeds(tables, seeds, unchanged={
        "design": "the parameters", "scale": "the size of the test inputs",
        "statuses": "how every trained run ended, shown as a table, which no verdict reads",
        **{name: _A3_INPUTS for name in ("curvature", "convexity", "lines", "piecewise", "smooth")}})


def record_verdicts(tables: Tables) -> Styler:
    """Write the chapter's verdict file and show its verdicts, each recomputed with every seed left
    out in turn (A2, C1-C3: the grid's runs; A4: the natural and adversarial runs at both ends); A3
    rests on one run per network and is marked not applicable."""
    return analysis.record_verdicts(CHAPTER, lambda kept: verdicts(restrict(tables, kept)), tables.design.seeds)


# ----------------------------------------------------------------------------- prose


def prose(tables: Tables) -> dict[str, Any]:
    """The numbers the chapter's text quotes (glued by name)."""
    design, scale = tables.design, tables.scale
    overall = {v.claim: v.outcome for v in verdicts(tables) if not v.setting}
    values: dict[str, Any] = {
        "input_rms": scale["rms"], "input_linf": scale["linf"], "reference_eps": design.reference_eps,
        "reference_eps_rms": design.reference_eps / scale["rms"],
        "reference_eps_linf": design.reference_eps / scale["linf"], "largest_eps": max(design.epsilons),
        "largest_eps_rms": max(design.epsilons) / scale["rms"],
        "attack_samples": min(design.attack_samples, len(design.bundle.test.tensors[1])),
        "pgd_steps": design.pgd_steps, "num_seeds": len(design.seeds), "small_batch": design.small,
        "large_batch": design.large, "lr": design.lr, "large_lr_linear": design.lr * design.large / design.small,
        "momentum": design.momentum, "low_momentum": design.low_momentum, "epochs": design.epochs,
        **{f"{claim.lower()}_verdict": overall[claim] for claim in ("A2", "C1", "C2", "C3", "A4", "A3")},
    }
    a2 = _a2_effects(tables)
    for name, key in (("accuracy", "acc"), ("fgsm", "fgsm"), ("pgd", "pgd")):
        values.update({f"a2_{key}_small": a2[name].mean_b, f"a2_{key}_large": a2[name].mean_a,
                       f"a2_{key}_z": a2[name].z})
    values.update({"a2_ref_small": a2["pgd_ref"].mean_b, "a2_ref_large": a2["pgd_ref"].mean_a,
                   "a2_eig_ratio": float(np.exp(a2["eigenvalue"].mean)),
                   "a2_eig_small": float(np.exp(a2["eigenvalue"].mean_b)),
                   "a2_eig_large": float(np.exp(a2["eigenvalue"].mean_a))})
    distinct = tables.pgd_runs.drop_duplicates("key")  # the smallest-batch runs are shared by both regimes
    values.update({"eigen_rho": analysis.spearman(distinct["hessian_top_eigenvalue"], distinct["auc"]).rho,
                   "eigen_rho_clean": analysis.spearman(distinct["hessian_top_eigenvalue"],
                                                        distinct["test_accuracy"]).rho,
                   "eigen_runs": int(distinct["auc"].notna().sum())})
    effects = _c_effects(tables)
    spreads, c2, c3 = effects["spreads"], effects["c2"], effects["c3"]
    values.update({
        "c1_auc_spread": spreads[("linear", "auc")], "c1_acc_spread": spreads[("linear", "test_accuracy")],
        "c1_auc_spread_fixed": spreads[("none", "auc")], "constant_tolerance": design.constant_tolerance,
        "c2_low_change": c2[design.low_momentum].mean, "c2_low_z": c2[design.low_momentum].z,
        "c2_main_change": c2[design.momentum].mean, "c2_main_z": c2[design.momentum].z,
        "c3_gain_fixed": c3.mean_a, "c3_gain_linear": c3.mean_b, "c3_z": c3.z, "z_threshold": design.z_threshold,
        "adversarial_fraction": design.adversarial_fraction, "adversarial_eps": design.adversarial_eps,
    })
    a4 = _a4_effects(tables)
    for label, b in (("small", design.small), ("large", design.large)):
        eig = a4[(b, "log_eigenvalue")]
        values.update({
            f"a4_{label}_eig_natural": float(np.exp(eig.mean_b)), f"a4_{label}_eig_adv": float(np.exp(eig.mean_a)),
            f"a4_{label}_eig_z": eig.z, f"a4_{label}_acc_natural": a4[(b, "test_accuracy")].mean_b,
            f"a4_{label}_acc_adv": a4[(b, "test_accuracy")].mean_a, f"a4_{label}_auc_natural": a4[(b, "auc")].mean_b,
            f"a4_{label}_auc_adv": a4[(b, "auc")].mean_a})
    values.update(_a3_prose(tables))
    return values


def _a3_prose(tables: Tables) -> dict[str, Any]:
    design, curvature, convexity = tables.design, tables.curvature, tables.convexity
    piecewise, smooth = tables.piecewise, tables.smooth
    inside = convexity[convexity["segment"] == "inside the linear region"]
    fixed = convexity[convexity["segment"] == "fixed length"]
    linear = curvature[curvature["network"].isin(piecewise)]
    indefinite = [float(1 - curvature[curvature["network"] == name]["psd"].mean()) for name in smooth]
    relu_fixed_convex = float(fixed[fixed["network"].isin(piecewise)]["convex"].mean())
    survives = "does not survive" if relu_fixed_convex < 0.5 else "survives"
    return {
        "curvature_points": design.curvature_points, "first_seed": design.seeds[0],
        "num_classes_minus_one": design.curvature_bundle.num_classes - 1,
        "relu_psd_share": float(linear["psd"].mean()), "relu_rank_share": float(linear["rank_bound"].mean()),
        "relu_max_nonzero": int(linear["n_nonzero"].max()), "relu_convex_share": float(inside["convex"].mean()),
        "relu_region_length": float(inside["length"].median()), "relu_fixed_convex_share": relu_fixed_convex,
        "smooth_fixed_convex_share": float(fixed[fixed["network"].isin(smooth)]["convex"].mean()),
        "smooth_indefinite_min": min(indefinite), "smooth_indefinite_max": max(indefinite),
        "smooth_names": ", ".join(design.curvature_activations[1:]),
        "indefinite_fraction": design.indefinite_fraction, "line_length": design.line_length,
        "reference_ball_l2": design.reference_eps * float(np.sqrt(np.prod(design.curvature_bundle.input_shape))),
        "fixed_segment_reading": f"so for most points the convexity {survives} the crossing of region boundaries",
    }
