"""Chapter 05, "Adaptive batch size: is the Hessian signal worth its cost?": ABS, ABSA and cheaper controllers.

Claims D1, D2 (Yao et al., ABSA) and D3 (this book's question). The design is seven
methods trained from the same initializations (a small-batch baseline, a fixed large batch
without and with linear scaling and warmup, a batch-growth schedule, a noise-scale
controller, ABS and ABSA with the reference code's eigenvalue estimate), a study of how
cheap that estimate may be, and ABS and ABSA run again at the cheapest reliable estimate
setting it finds. Every run is attacked with PGD and its final top Hessian eigenvalue
measured. The chapter follows the shape of every study module (see
:mod:`largebatch.studies`); the estimate study below is its own part:

ABS doubles the batch when its estimate of the top Hessian eigenvalue falls to
``1 / ratio`` of a reference estimate (:class:`largebatch.absa.AdaptiveRule`). Each
estimate is power iteration on a fresh random sample, so a small sample or few
products make the decision noisy. The estimate study measures, on the weights of a real ABS
run, how often an estimate with ``samples`` samples and at most ``products``
Hessian-vector products makes the same decision as a *tight* estimate (the whole
training set, Lanczos to a tight tolerance) on the same weights, and what it costs:

* :func:`epoch_weights` -- the weights after each epoch of a run, retrained with
  snapshots (bit for bit the cached run on CPU);
* :func:`measure_estimates` -- per snapshot the tight eigenvalue and, for every sample
  size, ``repeats`` power iterations on fresh samples, each recorded product by product
  (so one iteration of ``max(products)`` also gives every smaller cap); cached next to
  the run's record;
* :func:`decision_agreement` -- for every pair of snapshots ``i < j`` (reference made
  at ``i``, decision at ``j``) and every pair of repeats, whether
  ``estimate_j <= estimate_i / ratio`` agrees with the same test on the tight values;
  one row per setting, with its mean cost in gradient evaluations
  (:func:`largebatch.absa.estimate_cost`);
* :func:`doubling_causes` -- which rule made a run's doublings (the rule replayed);
* :func:`cheapest_reliable` -- the cheapest setting whose agreement reaches a threshold;
* :func:`agreement_frame` and :func:`agreement_plot` -- the table as shown, and agreement
  against cost, one point per setting.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any, Mapping

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from pandas.io.formats.style import Styler
from torch import Tensor

from largebatch import analysis, data, experiments, hessian, notebook, plots
from largebatch.absa import HVP_GRADIENT_EVALUATIONS, AdaptiveRule, build_controller, estimate_cost
from largebatch.callbacks import Callback, TrainState
from largebatch.config import RunConfig
from largebatch.studies.adversarial import check_epsilons, robust_curve
from largebatch.studies.common import LabelledRun, design_table, parameters, restrict_to_seeds, use_threads
from largebatch.train import fit

__all__ = ["CHAPTER", "Design", "EstimateGrid", "Tables", "agreement_figure", "agreement_frame", "agreement_plot",
           "agreement_table", "cheapest_reliable", "closest_tight_ratio", "comparison_figure", "comparison_table",
           "decision_agreement", "decision_epochs", "design", "doubling_causes", "epoch_weights", "estimate_setting",
           "measure_estimates", "prose", "record_verdicts", "restrict", "schedules_figure", "status_table", "tables",
           "tradeoff_figure", "verdicts"]

CHAPTER = "05_adaptive_batch"
_FORMAT = 1  # of the cached measurement


@dataclass(frozen=True)
class EstimateGrid:
    """The estimate settings compared and how each is measured."""

    samples: tuple[int, ...]  # sample sizes of the estimates
    products: tuple[int, ...]  # caps on Hessian-vector products
    repeats: int = 4  # independent estimates (fresh sample, start vector) per snapshot and size
    tol: float = 1e-2  # power-iteration tolerance of the estimates (the controller's)
    tight_tol: float = 1e-4  # Lanczos tolerance of the tight estimate on the whole training set
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "samples", tuple(sorted(set(self.samples))))
        object.__setattr__(self, "products", tuple(sorted(set(self.products))))
        if not self.samples or min(self.samples) < 1:
            raise ValueError(f"samples must be a non-empty list of integers >= 1, got {self.samples}")
        if not self.products or min(self.products) < 1:
            raise ValueError(f"products must be a non-empty list of integers >= 1, got {self.products}")
        if self.repeats < 2:
            raise ValueError(f"repeats must be >= 2 (agreement needs independent estimates), got {self.repeats}")
        if not (0 < self.tight_tol <= self.tol):
            raise ValueError(f"tight_tol must be in (0, tol = {self.tol}], got {self.tight_tol}")


class _Snapshots(Callback):
    def __init__(self) -> None:
        self.weights: list[dict[str, Tensor]] = []

    def on_epoch_end(self, state: TrainState) -> None:
        self.weights.append({k: v.detach().clone() for k, v in state.model.state_dict().items()})


def epoch_weights(config: RunConfig, epochs: int) -> list[dict[str, Tensor]]:
    """The model's weights after each of the first ``epochs`` epochs of ``config``'s run.

    The run is trained again with its own controller (ABS or none; no adversarial
    samples or augmentation) as :func:`largebatch.experiments.run` trains it, so on a
    CPU the weights are bit for bit those of the cached run. Its first ``epochs`` epochs do not depend on the
    epoch budget unless the schedule is cosine, which is refused.
    """
    if config.adversarial_fraction != 0 or config.augmentation != "none" or config.regime_adaptation:
        raise ValueError("epoch_weights retrains runs without adversarial samples, augmentation or "
                         "regime adaptation")
    if config.schedule == "cosine" or config.steps is not None:
        raise ValueError("epoch_weights needs a schedule that does not depend on the budget (not cosine, no steps)")
    if not 1 <= epochs <= config.total_epochs:
        raise ValueError(f"epochs must be in [1, {config.total_epochs}], got {epochs}")
    short = config.replace(epochs=epochs, eval_every=1)
    bundle = experiments.validate(short)
    snapshots = _Snapshots()
    device = experiments.default_device()
    with experiments.single_thread() if device.type == "cpu" else contextlib.nullcontext():
        model = experiments.build_model(short, bundle).to(device)
        controller = build_controller(short, bundle.train)
        callbacks = [snapshots] + ([controller] if isinstance(controller, Callback) else [])
        fit(model, bundle.train, None, short, callbacks=callbacks, batch_size_schedule=controller, progress=False)
    return snapshots.weights


def decision_epochs(record: dict[str, Any]) -> list[int]:
    """The epochs after which an ABS/ABSA run estimated the eigenvalue (its decisions)."""
    return [row["epoch"] - 1 for row in record["history"]
            if row.get("eigenvalue") is not None and np.isfinite(row["eigenvalue"])]


def doubling_causes(record: dict[str, Any]) -> dict[str, int]:
    """How many of an ABS/ABSA run's doublings the ratio rule and the duration rule made.

    The rule (:class:`largebatch.absa.AdaptiveRule`) is replayed on the estimates the run
    recorded; a replay that does not give the recorded batch sizes is an error (a record
    made by another rule).
    """
    config = RunConfig.from_dict(record["config"])
    if config.batch_size_controller not in ("abs", "absa"):
        raise ValueError(f"doubling_causes needs an abs/absa run, got {config.batch_size_controller!r}")
    assert config.max_batch_size is not None  # checked by RunConfig
    rule = AdaptiveRule(config.batch_size, config.max_batch_size, config.adaptive_ratio, config.adaptive_duration)
    counts = {"ratio": 0, "duration": 0}
    for row in record["history"]:
        value = row.get("eigenvalue")
        if value is not None and rule.adapting:
            before, ratio_fires = rule.batch_size, rule.reference is not None and value <= rule.reference / rule.ratio
            if rule.update(value) > before:
                counts["ratio" if ratio_fires else "duration"] += 1
        if row["batch_size"] != rule.batch_size:
            raise ValueError(f"the replayed rule gives batch {rule.batch_size} at epoch {row['epoch']}, "
                             f"the run recorded {row['batch_size']}")
    return counts


def _stream_seed(*numbers: int) -> int:
    """A seed for one estimate's sample and start vector, from the numbers that name it."""
    return int.from_bytes(hashlib.sha256(json.dumps(numbers).encode()).digest()[:7], "big")


def _power_trace(model: torch.nn.Module, data: tuple[Tensor, Tensor], max_products: int, tol: float,
                 seed: int) -> list[float]:
    """Rayleigh quotients after each product of the controller's power iteration."""
    trace: list[float] = []
    hessian.top_eigenvalues(model, data, k=1, method="power", which="LM", tol=tol, max_iter=max_products,
                            seed=seed, callback=lambda _, values: trace.append(float(values[0])))
    return trace


def measure_estimates(config: RunConfig, grid: EstimateGrid,
                      cache_dir: str | None = None) -> dict[str, Any]:
    """Tight and sampled eigenvalue estimates on the weights of ``config``'s decisions.

    ``config`` is a finished ABS run (:func:`largebatch.experiments.run`); the snapshots
    are the weights after each epoch at which it estimated. Returns (cached next to the
    run's record) ``epochs``, ``tight`` (one value per snapshot), ``tight_products``, and
    ``traces[str(samples)]``: per snapshot, per repeat, the Rayleigh quotients after each
    product (at most ``max(grid.products)``, fewer where the tolerance stopped it).
    """
    record = experiments.run(config, cache_dir, progress=False)
    epochs = decision_epochs(record)
    if len(epochs) < 2:
        raise ValueError(f"the ABS run {config.key()} made {len(epochs)} eigenvalue estimate(s) before its "
                         "last epoch or its maximum batch; the agreement study needs two: train longer or "
                         "allow a larger maximum batch (max_batch_size) or a longer adaptive_duration")
    bundle = experiments.load_data(config)
    if max(grid.samples) > bundle.num_train:
        raise ValueError(f"grid samples must be <= the training set size {bundle.num_train}, "
                         f"got {max(grid.samples)}")
    digest = hashlib.sha256(json.dumps({"format": _FORMAT, **asdict(grid)}, sort_keys=True).encode())

    def compute() -> dict[str, Any]:
        device = experiments.default_device()
        inputs, targets = (t.to(device) for t in bundle.train.tensors)
        model = experiments.build_model(config, bundle).to(device)
        weights = epoch_weights(config, max(epochs))
        tight, tight_products = [], 0
        traces: dict[str, list[list[list[float]]]] = {str(s): [] for s in grid.samples}
        with experiments.single_thread() if device.type == "cpu" else contextlib.nullcontext():
            for epoch in epochs:
                model.load_state_dict(weights[epoch - 1])
                best = hessian.top_eigenvalues(model, (inputs, targets), k=1, tol=grid.tight_tol, seed=grid.seed)
                tight.append(float(best.eigenvalues[0]))
                tight_products += best.num_matvecs
                for samples in grid.samples:
                    repeats = []
                    for repeat in range(grid.repeats):
                        stream = torch.Generator().manual_seed(_stream_seed(grid.seed, epoch, samples, repeat))
                        chosen = torch.randperm(len(targets), generator=stream)[:samples].to(device)
                        start = int(torch.randint(2 ** 31, (1,), generator=stream))
                        repeats.append(_power_trace(model, (inputs[chosen], targets[chosen]), max(grid.products),
                                                    grid.tol, start))
                    traces[str(samples)].append(repeats)
        return {"epochs": epochs, "tight": tight, "tight_products": tight_products, "traces": traces,
                "num_train": len(targets)}

    return analysis.measure(config, f"estimate_agreement_{digest.hexdigest()[:16]}", compute, cache_dir)


def decision_agreement(measured: dict[str, Any], products: tuple[int, ...], ratio: float) -> pd.DataFrame:
    """One row per setting (samples x product cap): agreement with the tight decisions and cost.

    Columns: ``estimate`` (``"sampled"``, or ``"tight"`` for the whole-training-set
    estimate itself, agreement 1 by definition), ``samples, max_products, agreement``
    (share of snapshot pairs x repeat pairs whose decision ``estimate_j <= estimate_i /
    ratio`` equals the tight one), ``agreement_sem`` (standard error over snapshot pairs),
    ``pairs``, ``doubling_pairs`` (pairs where the tight decision is to double),
    ``mean_products`` and ``gradient_evaluations`` (mean cost of one estimate,
    :func:`largebatch.absa.estimate_cost`). Sorted by cost.
    """
    tight = np.asarray(measured["tight"])
    pairs = list(itertools.combinations(range(len(tight)), 2))
    truth = [bool(tight[j] <= tight[i] / ratio) for i, j in pairs]
    shared = {"pairs": len(pairs), "doubling_pairs": sum(truth)}
    rows = []
    for key, per_epoch in measured["traces"].items():
        for cap in sorted(products):
            used = np.array([[min(len(trace), cap) for trace in repeats] for repeats in per_epoch])
            values = np.array([[trace[n - 1] for trace, n in zip(repeats, counts)]
                               for repeats, counts in zip(per_epoch, used)])
            per_pair = np.array([np.mean((values[j][None, :] <= values[i][:, None] / ratio) == want)
                                 for (i, j), want in zip(pairs, truth)])
            rows.append({"estimate": "sampled", "samples": int(key), "max_products": cap,
                         "agreement": float(per_pair.mean()),
                         "agreement_sem": float(per_pair.std(ddof=1) / np.sqrt(len(per_pair))), **shared,
                         "mean_products": float(used.mean()),
                         "gradient_evaluations": float(np.mean([estimate_cost(int(key), int(n)) for n in used.flat]))})
    per_estimate = measured["tight_products"] / len(tight)
    rows.append({"estimate": "tight", "samples": measured["num_train"], "max_products": np.nan, "agreement": 1.0,
                 "agreement_sem": 0.0, **shared, "mean_products": per_estimate,
                 "gradient_evaluations": measured["num_train"] * (1 + HVP_GRADIENT_EVALUATIONS * per_estimate)})
    return pd.DataFrame(rows).sort_values("gradient_evaluations", ignore_index=True)


def closest_tight_ratio(measured: dict[str, Any], ratio: float) -> float:
    """Of the tight ratios ``eigenvalue_j / eigenvalue_i`` (``i < j``), the one nearest to the
    threshold ``1 / ratio`` (in log): how close the study's decisions come to a coin flip."""
    tight = measured["tight"]
    ratios = [tight[j] / tight[i] for i, j in itertools.combinations(range(len(tight)), 2)]
    return min(ratios, key=lambda r: abs(np.log(abs(r) * ratio)))


def cheapest_reliable(table: pd.DataFrame, min_agreement: float) -> pd.Series:
    """The cheapest sampled setting with ``agreement >= min_agreement``; if none reaches it,
    the most agreeing one. ``reliable`` says which of the two it is."""
    if not 0 < min_agreement <= 1:
        raise ValueError(f"min_agreement must be in (0, 1], got {min_agreement}")
    sampled = table[table["estimate"] == "sampled"]
    reliable = sampled[sampled["agreement"] >= min_agreement]
    chosen = reliable.nsmallest(1, "gradient_evaluations") if len(reliable) else sampled.nlargest(1, "agreement")
    return pd.concat([chosen.iloc[0], pd.Series({"reliable": len(reliable) > 0})])


def agreement_frame(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`decision_agreement`'s table as the chapter shows it (agreement in percent)."""
    return pd.DataFrame({
        "estimate": [f"{row.samples} samples, ≤ {row.max_products:.0f} products" if row.estimate == "sampled"
                     else f"whole training set ({row.samples}), Lanczos" for row in table.itertuples()],
        "same decision as the tight estimate (%)": [f"{100 * a:.1f} ± {100 * e:.1f}"
                                                    for a, e in zip(table["agreement"], table["agreement_sem"])],
        "products used (mean)": table["mean_products"].round(2),
        "gradient evaluations per estimate": table["gradient_evaluations"].round(0).astype(int),
    })


def estimate_setting(table: pd.DataFrame, samples: int, products: int) -> pd.Series:
    """The row of the sampled setting ``samples`` x at most ``products`` products."""
    rows = table[(table["estimate"] == "sampled") & (table["samples"] == samples)
                 & (table["max_products"] == products)]
    if len(rows) != 1:
        raise ValueError(f"the setting {samples} samples x {products} products is not in the study's grid "
                         f"(samples {sorted(set(table['samples']))}, products "
                         f"{sorted(set(table['max_products'].dropna()))})")
    return rows.iloc[0]


def agreement_plot(table: pd.DataFrame, min_agreement: float, highlight: dict[str, tuple[int, int]]) -> plt.Figure:
    """Decision agreement against the cost of one estimate, one point per setting.

    ``highlight`` maps a label to a ``(samples, max_products)`` setting to mark (e.g. the
    reference's and the chosen one).
    """
    plots.use_style()
    fig, axis = plt.subplots(figsize=(6.4, 4.0))
    sampled = table[table["estimate"] == "sampled"]
    for index, (samples, rows) in enumerate(sampled.groupby("samples")):
        axis.errorbar(rows["gradient_evaluations"], 100 * rows["agreement"], yerr=100 * rows["agreement_sem"],
                      color=f"C{index}", marker="o", capsize=2, label=f"{samples} samples")
        for k, (_, row) in enumerate(rows.iterrows()):  # caps of similar cost: labels stacked, not overlaid
            axis.annotate(f"≤{row['max_products']:.0f}", (row["gradient_evaluations"], 100 * row["agreement"]),
                          textcoords="offset points", xytext=(5, -12 + 9 * k), fontsize="x-small")
    for marker, (label, (samples, cap)) in zip(("s", "D", "^", "v"), highlight.items()):
        row = sampled[(sampled["samples"] == samples) & (sampled["max_products"] == cap)]
        axis.scatter(row["gradient_evaluations"], 100 * row["agreement"], s=120, facecolors="none",
                     edgecolors="black", marker=marker, label=label, zorder=3)
    axis.axhline(100 * min_agreement, color="grey", linestyle="--", linewidth=1,
                 label=f"{100 * min_agreement:g}% threshold")
    axis.set_xscale("log")
    axis.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axis.set_xlabel("gradient evaluations per estimate (samples x (1 + 2 x products))")
    axis.set_ylabel("same doubling decision as the tight estimate (%)")
    axis.legend(fontsize="x-small")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- the design

SMALL, LARGE, GOYAL, GROWTH, NOISE = ("small batch", "large batch, no scaling", "large batch, linear + warmup",
                                      "batch growth", "noise scale")
# Per run and method, as the comparison table shows them: metric -> (its name, scale, digits).
METRICS = {
    "test_accuracy": ("test accuracy (%)", 100, 1),
    "robust_accuracy": ("PGD robust accuracy (%)", 100, 1),
    "updates": ("parameter updates", 1, 0),
    "gradient_evaluations": ("gradient evaluations (thousands)", 1e-3, 0),
    "wall_time_s": ("training wall time (s)", 1, 1),
    "top_eigenvalue": ("final top eigenvalue", 1, 2),
    "final_batch": ("final batch", 1, 0),
}


def method_label(name: str, samples: int, products: int) -> str:
    """ABS or ABSA at an estimate setting, e.g. ``ABS (128 × 10)``."""
    return f"{name} ({samples} × {products})"


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
    weight_decay: float
    schedule: str
    milestones: list[float]
    gamma: float
    small_batch: int
    max_batch_size: int
    micro_batch_size: int
    warmup_epochs: float
    growth_milestones: list[float]
    noise_micro_batch: int
    adaptive_ratio: float
    adaptive_duration: int
    eigen_samples: int
    eigen_iterations: int
    eigen_tol: float
    agreement_samples: list[int]
    agreement_products: list[int]
    agreement_repeats: int
    agreement_tight_tol: float
    agreement_seed: int  # -1: the first of seeds
    min_agreement: float
    increase_warmup_epochs: float
    adversarial_fraction: float
    adversarial_eps: float
    seeds: list[int]
    epsilons: list[float]
    reference_eps: float
    pgd_steps: int
    attack_samples: int
    hessian_tol: float
    accuracy_margin: float
    min_update_saving: float
    abs_update_saving: float
    z_threshold: float
    num_threads: int
    augmentation: str

    def __post_init__(self) -> None:
        notebook.check_choice("dataset", self.dataset, data.DATASETS)
        notebook.check_choice("schedule", self.schedule, ["constant", "multistep"])
        for name in ("epochs", "attack_samples", "pgd_steps", "accuracy_margin", "z_threshold",
                     "agreement_samples", "agreement_products"):
            notebook.check_positive(name, getattr(self, name))
        seeds, small = self.seeds, self.small_batch
        notebook.require(len(set(seeds)) == len(seeds) >= 2 and min(seeds) >= 0,
                         f"parameter seeds needs at least two distinct seeds >= 0, got {seeds}")
        notebook.require(0 < self.noise_micro_batch < small and small % self.noise_micro_batch == 0,
                         f"parameter noise_micro_batch must divide small_batch ({small}) at least twice, "
                         f"got {self.noise_micro_batch}")
        notebook.require(self.micro_batch_size >= 0,
                         f"parameter micro_batch_size must be >= 0, got {self.micro_batch_size}")
        check_epsilons(self.epsilons, self.reference_eps)
        if self.agreement_seed == -1:
            object.__setattr__(self, "agreement_seed", seeds[0])
        notebook.require(self.agreement_seed in seeds,
                         f"parameter agreement_seed must be one of seeds {seeds}, got {self.agreement_seed}")
        notebook.require(0 < self.min_agreement <= 1,
                         f"parameter min_agreement must be in (0, 1], got {self.min_agreement}")
        notebook.require(
            self.eigen_samples in self.agreement_samples and self.eigen_iterations in self.agreement_products,
            f"the reference setting (eigen_samples {self.eigen_samples}, eigen_iterations {self.eigen_iterations}) "
            f"must be in the study's grid: agreement_samples {self.agreement_samples}, agreement_products "
            f"{self.agreement_products}")
        notebook.require(self.agreement_repeats >= 2, "parameter agreement_repeats must be >= 2 (agreement "
                         f"needs independent estimates), got {self.agreement_repeats}")
        notebook.require(0 < self.agreement_tight_tol <= self.eigen_tol, "parameter agreement_tight_tol must be "
                         f"in (0, eigen_tol = {self.eigen_tol}], got {self.agreement_tight_tol}")
        notebook.require(self.num_threads >= 0, "parameter num_threads must be >= 0 (0: torch's default), "
                         f"got {self.num_threads}")
        self.grid  # noqa: B018 - built (and checked) here
        bundle = self.bundle
        notebook.require(max(self.agreement_samples) <= bundle.num_train,
                         f"parameter agreement_samples must be <= the training set size {bundle.num_train}, "
                         f"got {self.agreement_samples}")
        experiments.build_model(self.base, bundle)  # fails here on bad model options

    @cached_property
    def grid(self) -> EstimateGrid:
        """The estimate settings the estimate study compares."""
        return EstimateGrid(samples=tuple(self.agreement_samples), products=tuple(self.agreement_products),
                            repeats=self.agreement_repeats, tol=self.eigen_tol, tight_tol=self.agreement_tight_tol)

    @cached_property
    def bundle(self) -> data.DataBundle:
        """The data, checked against every method's batches."""
        bundle = experiments.validate(self.methods[self.absa])
        for config in self.methods.values():
            experiments.validate(config, bundle)
        return bundle

    @cached_property
    def base(self) -> RunConfig:
        """The small-batch baseline at seed 0: what every run shares."""
        return experiments.RunConfig(
            dataset=self.dataset, model=self.model, model_options=self.model_options,
            num_samples=self.num_samples, epochs=self.epochs, lr=self.lr, momentum=self.momentum,
            weight_decay=self.weight_decay, schedule=self.schedule, milestones=tuple(self.milestones),
            gamma=self.gamma, batch_size=self.small_batch, micro_batch_size=self.micro_batch_size or None,
            hessian_top_k=1, hessian_tol=self.hessian_tol, augmentation=self.augmentation)

    @property
    def abs(self) -> str:
        """The label of ABS at the reference estimate setting."""
        return method_label("ABS", self.eigen_samples, self.eigen_iterations)

    @property
    def absa(self) -> str:
        """The label of ABSA at the reference estimate setting."""
        return method_label("ABSA", self.eigen_samples, self.eigen_iterations)

    @cached_property
    def methods(self) -> dict[str, RunConfig]:
        """Label -> configuration at seed 0; the order of every table and figure."""
        base = self.base
        scaled = dict(lr_scaling="linear", base_batch_size=self.small_batch)
        controlled = dict(max_batch_size=self.max_batch_size, increase_warmup_epochs=self.increase_warmup_epochs)
        eigen = dict(adaptive_ratio=self.adaptive_ratio, adaptive_duration=self.adaptive_duration,
                     eigen_samples=self.eigen_samples, eigen_iterations=self.eigen_iterations,
                     eigen_tol=self.eigen_tol, **scaled, **controlled)
        return {
            SMALL: base,
            LARGE: base.replace(batch_size=self.max_batch_size),
            GOYAL: base.replace(batch_size=self.max_batch_size, warmup_epochs=self.warmup_epochs, **scaled),
            GROWTH: base.replace(batch_size_controller="growth", growth_milestones=tuple(self.growth_milestones),
                                 schedule="constant", milestones=(), **controlled),
            NOISE: base.replace(batch_size_controller="noise_scale", micro_batch_size=self.noise_micro_batch,
                                **scaled, **controlled),
            self.abs: base.replace(batch_size_controller="abs", **eigen),
            self.absa: base.replace(batch_size_controller="absa", adversarial_fraction=self.adversarial_fraction,
                                    adversarial_eps=self.adversarial_eps, **eigen),
        }

    @property
    def configs(self) -> dict[str, list[RunConfig]]:
        """Label -> its runs, one per seed."""
        return {label: [config.replace(seed=seed) for seed in self.seeds] for label, config in self.methods.items()}

    def cheap_configs(self, samples: int, products: int) -> dict[str, list[RunConfig]]:
        """ABS and ABSA again at the estimate setting ``samples`` x at most ``products`` products
        (the same runs, and labels, when that is the reference setting)."""
        cheap = dict(eigen_samples=samples, eigen_iterations=products)
        configs = self.configs
        return {method_label(name, samples, products): [c.replace(**cheap) for c in configs[label]]
                for name, label in (("ABS", self.abs), ("ABSA", self.absa))}

    @property
    def runs(self) -> list[LabelledRun]:
        """Every run of the seven methods, labelled by method, batch, learning rate and batch rule."""
        return [LabelledRun({**self._labels(label, config), "seed": c.seed}, c)
                for label, config in self.methods.items() for c in [config.replace(seed=s) for s in self.seeds]]

    def _labels(self, label: str, config: RunConfig) -> dict[str, str]:
        controller = config.batch_size_controller
        batch = (f"{config.batch_size} → {config.max_batch_size}" if controller != "none"
                 else str(config.batch_size))
        lr = f"{config.lr:g}" + (f" × B / {config.base_batch_size}" if config.lr_scaling == "linear" else "")
        if config.warmup_epochs:
            lr += f", warmup {config.warmup_epochs:g} epochs"
        duration = f"{config.adaptive_duration} epoch" + ("s" if config.adaptive_duration != 1 else "")
        rules = {
            "none": "fixed",
            "growth": "doubles at epochs " + ", ".join(f"{m:g}" for m in config.growth_milestones),
            "noise_scale": f"doubles while B_simple ≥ 2 B (micro-batches of {config.micro_batch_size})",
            "abs": f"doubles when the eigenvalue falls {config.adaptive_ratio:g}-fold, or after {duration}; "
                   f"estimate on {config.eigen_samples} samples, ≤ {config.eigen_iterations} products",
        }
        rule = rules.get(controller, rules["abs"])
        if config.adversarial_fraction:
            rule += f"; FGSM on {config.adversarial_fraction:.0%} of samples, eps {config.adversarial_eps:g}"
        return {"method": label, "batch": batch, "learning rate": lr, "batch rule": rule}

    def table(self) -> Styler:
        """The design as the chapter shows it (the labels say what differs)."""
        styler = design_table(self.runs, self.bundle, fields=())
        # the method, the learning rate and the batch rule wrap, so that the table fits the page
        wrapped = [{"selector": f"td.col{index}", "props": f"white-space: normal; min-width: {width}em"}
                   for index, width in ((0, 7), (2, 8), (3, 12))]
        wrapped.append({"selector": "td, th", "props": "padding-right: 0.8em"})
        caption = (f"{styler.caption}. Then ABS and ABSA again at the cheapest reliable estimate setting of the "
                   f"estimate study ({2 * len(self.seeds)} more runs).")
        return styler.set_table_styles(wrapped, overwrite=False).set_caption(caption)


def design(namespace: Mapping[str, Any]) -> Design:
    """The chapter's design from the notebook's parameters (its ``globals()``), validated."""
    return Design(**parameters(namespace, Design))


# ----------------------------------------------------------------------------- the tables


@dataclass
class Tables:
    """What the figures and verdicts read."""

    design: Design
    configs: dict[str, list[RunConfig]]  # method -> its runs, the two at the chosen estimate setting included
    records: dict[str, list[dict[str, Any]]]  # method -> the records of its runs
    statuses: pd.Series  # the final status of every run of the seven methods
    measured: dict[str, Any]  # the estimate study's estimates (measure_estimates)
    agreement: pd.DataFrame  # one row per estimate setting (decision_agreement)
    chosen: pd.Series  # the cheapest reliable setting (cheapest_reliable)
    per_run: pd.DataFrame  # one row per run: "method", "seed", the METRICS, "log_eigenvalue", "*_points"
    summary: pd.DataFrame  # seed statistics of the METRICS per method

    @property
    def cheap(self) -> tuple[int, int]:
        """The chosen estimate setting: samples, at most products."""
        return int(self.chosen["samples"]), int(self.chosen["max_products"])

    @property
    def abs_cheap(self) -> str:
        return method_label("ABS", *self.cheap)

    @property
    def absa_cheap(self) -> str:
        return method_label("ABSA", *self.cheap)


def _per_run(design: Design, configs: dict[str, list[RunConfig]],
             records: dict[str, list[dict[str, Any]]]) -> pd.DataFrame:
    """One row per run: its final metrics, cost and PGD robust accuracy at the reference epsilon."""
    rows = []
    for label, rs in records.items():
        for config, r in zip(configs[label], rs):
            curve = robust_curve(config, design.epsilons, "pgd", num_points=design.attack_samples,
                                 steps=design.pgd_steps)
            rows.append({
                "method": label, "seed": r["config"]["seed"], "status": r["status"],
                "test_accuracy": r["final"].get("test_accuracy", math.nan),
                "robust_accuracy": float(curve.loc[np.isclose(curve["epsilon"], design.reference_eps),
                                                   "accuracy"].iloc[0]),
                "updates": r["final"]["steps"], "gradient_evaluations": r["history"][-1]["gradient_evaluations"],
                "wall_time_s": r["epoch_wall_time_s"][-1], "final_batch": r["history"][-1]["batch_size"],
                "top_eigenvalue": r["final"].get("hessian_top_eigenvalue", math.nan),
            })
    return pd.DataFrame(rows)


def tables(design: Design) -> Tables:
    """Train the seven methods (or read them from the cache), make the estimate study, train ABS and
    ABSA at the cheapest reliable setting, attack every run, tabulate."""
    use_threads(design.num_threads)
    configs = design.configs
    records = {label: experiments.sweep(group) for label, group in configs.items()}
    statuses = pd.Series([r["status"] for rs in records.values() for r in rs], name="status")
    measured = measure_estimates(configs[design.abs][design.seeds.index(design.agreement_seed)], design.grid)
    agreement = decision_agreement(measured, design.grid.products, design.adaptive_ratio)
    chosen = cheapest_reliable(agreement, design.min_agreement)
    cheap = design.cheap_configs(int(chosen["samples"]), int(chosen["max_products"]))
    configs.update(cheap)
    for label in cheap:
        records[label] = experiments.sweep(configs[label])  # the same runs when the reference setting is chosen
    per_run = _per_run(design, configs, records)
    summary = analysis.seed_summary(per_run, "method", list(METRICS))
    per_run["log_eigenvalue"] = np.log(per_run["top_eigenvalue"])
    per_run["test_points"] = 100 * per_run["test_accuracy"]
    per_run["robust_points"] = 100 * per_run["robust_accuracy"]
    return Tables(design, configs, records, statuses, measured, agreement, chosen, per_run, summary)


# ----------------------------------------------------------------------------- figures and tables


def status_table(tables: Tables) -> Styler:
    """How the runs of the seven methods ended."""
    return notebook.show(tables.statuses.value_counts().reset_index())


def agreement_figure(tables: Tables) -> None:
    """Decision agreement against the cost of one estimate; the reference and the chosen setting marked."""
    d, cheap = tables.design, tables.cheap
    figure = agreement_plot(tables.agreement, d.min_agreement, {
        f"reference ({d.eigen_samples} × {d.eigen_iterations})": (d.eigen_samples, d.eigen_iterations),
        f"chosen ({cheap[0]} × {cheap[1]})": cheap})
    plots.save_figure(figure, "adaptive_batch_estimate_agreement")


def agreement_table(tables: Tables) -> Styler:
    """The estimate study: agreement with the tight decisions and cost, per setting."""
    return notebook.show(agreement_frame(tables.agreement))


def schedules_figure(tables: Tables) -> None:
    """Batch size, learning rate and eigenvalue estimates of ABS and ABSA at both settings (first seed)."""
    d = tables.design
    first = {label: experiments.history(tables.records[label][0])
             for label in (d.abs, tables.abs_cheap, d.absa, tables.absa_cheap)}
    plots.save_figure(plots.adaptive_schedules(first, {"eigenvalue": "estimate"}), "adaptive_batch_schedules")


def tradeoff_figure(tables: Tables) -> None:
    """D1: test accuracy against parameter updates and against gradient evaluations, one line per run."""
    figure = plots.tradeoff_curves(
        {label: [experiments.history(r) for r in rs] for label, rs in tables.records.items()},
        {"step": "parameter updates", "gradient_evaluations": "gradient evaluations"})
    plots.save_figure(figure, "adaptive_batch_tradeoff")


def _metrics_table(tables: Tables, metrics: list[str]) -> Styler:
    summary = tables.summary
    return notebook.show(pd.DataFrame({
        "method": summary["method"],
        **{METRICS[metric][0]: notebook.mean_sem(summary, metric, *METRICS[metric][1:]) for metric in metrics},
        "seeds": summary["test_accuracy_n"],
    }))


def comparison_table(tables: Tables) -> Styler:
    """D2: per method, mean ± standard error over seeds of the accuracies and the final top eigenvalue."""
    return _metrics_table(tables, ["test_accuracy", "robust_accuracy", "top_eigenvalue"])


def cost_table(tables: Tables) -> Styler:
    """D1, D3: per method, mean ± standard error over seeds of what the training cost."""
    return _metrics_table(tables, ["updates", "gradient_evaluations", "wall_time_s", "final_batch"])


def comparison_figure(tables: Tables) -> None:
    """Per method: test and robust accuracy, updates, gradient evaluations, final top eigenvalue."""
    figure = plots.rows_with_error_bars(tables.summary, "method", {
        "test_accuracy": "test accuracy",
        "robust_accuracy": f"PGD robust accuracy (eps {tables.design.reference_eps:g})",
        "updates": "parameter updates",
        "gradient_evaluations": "gradient evaluations",
        "top_eigenvalue": "final top Hessian eigenvalue",
    }, columns=2)
    plots.save_figure(figure, "adaptive_batch_comparison")


# ----------------------------------------------------------------------------- verdicts


def _parts(tables: Tables) -> dict[str, list[analysis.Verdict]]:
    """The parts of each claim's verdict, by the criteria the chapter states."""
    d, per_run = tables.design, tables.per_run

    def values(label: str, metric: str) -> list[float]:
        return per_run.loc[per_run["method"] == label, metric].tolist()

    def seeded(label: str, metric: str) -> pd.Series:  # every method at a seed starts from its weights
        return analysis.by_seed(per_run, metric, method=label)

    def within_margin(claim: str, treated: str, reference: str) -> analysis.Verdict:
        return analysis.margin_verdict(
            claim, seeded(treated, "test_points"), seeded(reference, "test_points"),
            quantity=f"test accuracy of {treated} vs {reference}", margin=100 * d.accuracy_margin,
            z=d.z_threshold, unit=" points", paired=True, setting=f"accuracy: {treated} vs {reference}")

    def saving(claim: str, more: str, fewer: str, metric: str, min_ratio: float) -> analysis.Verdict:
        name = metric.replace("_", " ")
        return analysis.ratio_verdict(claim, values(more, metric), values(fewer, metric), min_ratio=min_ratio,
                                      quantity=f"{name} of {more} / {fewer}", setting=f"{name}: {more} / {fewer}")

    return {
        "D1": [within_margin("D1", d.absa, SMALL), saving("D1", SMALL, d.absa, "updates", d.min_update_saving)],
        "D2": [
            within_margin("D2", d.abs, SMALL),
            saving("D2", SMALL, d.abs, "updates", d.abs_update_saving),
            analysis.margin_verdict("D2", seeded(d.absa, "log_eigenvalue"), seeded(d.abs, "log_eigenvalue"),
                                    quantity="log final top eigenvalue", higher_is_better=False,
                                    z=d.z_threshold, paired=True, setting="log eigenvalue: ABSA vs ABS"),
            analysis.margin_verdict("D2", seeded(d.absa, "robust_points"), seeded(d.abs, "robust_points"),
                                    quantity="PGD robust accuracy", z=d.z_threshold, unit=" points",
                                    paired=True, setting="robust accuracy: ABSA vs ABS"),
        ],
        "D3": [part for cheaper in (GROWTH, NOISE)
               for part in (within_margin("D3", tables.absa_cheap, cheaper),
                            saving("D3", cheaper, tables.absa_cheap, "gradient_evaluations", 1.0))],
    }


def verdicts(tables: Tables) -> list[analysis.Verdict]:
    """D1, D2 and D3: each claim's parts, then the claim (their combination)."""
    return [verdict for claim, parts in _parts(tables).items()
            for verdict in (*parts, analysis.combine_verdicts(claim, parts))]


_UNREAD = "no verdict reads it (the verdicts read the per-run table)"
_ESTIMATE_STUDY = ("the estimate study runs on one seed's weights (agreement_seed); it fixes the "
                   "estimate setting of the D3 runs, it is not a sample over seeds")


def restrict(tables: Tables, seeds: list[int]) -> Tables:
    """The tables as if only ``seeds`` had been run: the per-run rows of those seeds, their summary
    recomputed; the estimate study (one seed's weights) and the run lists as they are."""
    return restrict_to_seeds(
        tables, seeds, recompute=lambda kept: {"summary": analysis.seed_summary(kept.per_run, "method",
                                                                                  list(METRICS))},
        unchanged={"design": "the parameters", "configs": _UNREAD, "records": _UNREAD, "statuses": _UNREAD,
                   "measured": _ESTIMATE_STUDY, "agreement": _ESTIMATE_STUDY, "chosen": _ESTIMATE_STUDY})


def record_verdicts(tables: Tables) -> Styler:
    """Write the chapter's verdict file and show its verdicts, each recomputed with every seed left
    out in turn (the per-run rows of the other seeds)."""
    return analysis.record_verdicts(CHAPTER, lambda kept: verdicts(restrict(tables, kept)), tables.design.seeds)


# ----------------------------------------------------------------------------- prose


def prose(tables: Tables) -> dict[str, Any]:
    """The numbers the chapter's text quotes (glued by name)."""
    d, agreement, chosen, cheap = tables.design, tables.agreement, tables.chosen, tables.cheap
    values: dict[str, Any] = {
        "num_seeds": len(d.seeds), "epochs": d.epochs, "small_batch": d.small_batch, "max_batch": d.max_batch_size,
        "lr": d.lr, "large_lr": d.lr * d.max_batch_size / d.small_batch, "warmup_epochs": d.warmup_epochs,
        "growth_milestones_text": ", ".join(f"{m:g}" for m in d.growth_milestones),
        "eigen_samples": d.eigen_samples, "eigen_iterations": d.eigen_iterations,
        "adaptive_ratio": d.adaptive_ratio, "adversarial_fraction": d.adversarial_fraction,
        "adversarial_eps": d.adversarial_eps, "reference_eps": d.reference_eps,
        "noise_micro_batch": d.noise_micro_batch, "pgd_steps": d.pgd_steps,
        "attack_samples": min(d.attack_samples, d.bundle.num_test),
        "accuracy_margin_points": 100 * d.accuracy_margin, "min_update_saving": d.min_update_saving,
        "abs_min_update_saving": d.abs_update_saving, "z_threshold": d.z_threshold,
        "min_agreement_points": 100 * d.min_agreement, "agreement_repeats": d.agreement_repeats,
        "agreement_seed": d.agreement_seed,
        "agreement_samples_text": ", ".join(str(n) for n in d.grid.samples),
        "agreement_products_text": ", ".join(str(n) for n in d.grid.products),
        "agreement_tight_tol": d.agreement_tight_tol, "adaptive_duration": d.adaptive_duration,
    }
    reference_row = estimate_setting(agreement, d.eigen_samples, d.eigen_iterations)
    tight_row = agreement[agreement["estimate"] == "tight"].iloc[0]
    values.update({
        "agreement_pairs": int(chosen["pairs"]), "agreement_doubling_pairs": int(chosen["doubling_pairs"]),
        "agreement_weights": len(tables.measured["epochs"]), "chosen_samples": cheap[0],
        "chosen_products": cheap[1],
        "chosen_reliable": "reaches" if chosen["reliable"] else "does not reach (none does; it is the most agreeing)",
        "chosen_agreement_points": 100 * chosen["agreement"], "chosen_cost": chosen["gradient_evaluations"],
        "reference_agreement_points": 100 * reference_row["agreement"],
        "reference_cost": reference_row["gradient_evaluations"], "tight_cost": tight_row["gradient_evaluations"],
        "lowest_agreement_points": 100 * agreement["agreement"].min(),
        "closest_ratio": closest_tight_ratio(tables.measured, d.adaptive_ratio),
        "threshold_ratio": 1 / d.adaptive_ratio,
    })
    parts = _parts(tables)
    for claim, claim_parts in parts.items():
        values[f"verdict_{claim.lower()}"] = analysis.combine_verdicts(claim, claim_parts).outcome
        values[f"{claim.lower()}_evidence"] = "; ".join(f"{p.setting}: {p.evidence}, {p.outcome}"
                                                        for p in claim_parts)
    means = tables.summary.set_index("method")
    named = [(SMALL, "small"), (LARGE, "large"), (GOYAL, "goyal"), (GROWTH, "growth"), (NOISE, "noise"),
             (d.abs, "abs"), (d.absa, "absa"), (tables.abs_cheap, "abs_cheap"), (tables.absa_cheap, "absa_cheap")]
    for label, key in named:  # a label twice when the chosen setting is the reference: both keys glued
        values.update({f"{key}_{metric}": means.loc[label, f"{metric}_mean"] for metric in METRICS})
        values[f"{key}_acc_points"] = 100 * means.loc[label, "test_accuracy_mean"]
        values[f"{key}_robust_points"] = 100 * means.loc[label, "robust_accuracy_mean"]
        values[f"{key}_gev_millions"] = 1e-6 * means.loc[label, "gradient_evaluations_mean"]
    for label, key in named[3:]:
        values[f"{key}_update_saving"] = means.loc[SMALL, "updates_mean"] / means.loc[label, "updates_mean"]
        values[f"{key}_gev_ratio"] = (means.loc[label, "gradient_evaluations_mean"]
                                      / means.loc[SMALL, "gradient_evaluations_mean"])
    records = tables.records
    growth_schedule = list(experiments.history(records[GROWTH][0])["batch_size"])
    causes = [doubling_causes(r) for label in (d.abs, d.absa) for r in records[label]]
    values["ratio_doublings"] = sum(c["ratio"] for c in causes)
    values["duration_doublings"] = sum(c["duration"] for c in causes)
    values["eigen_runs"] = len(records[d.abs]) + len(records[d.absa])
    values["eigen_runs_like_growth"] = sum(list(experiments.history(r)["batch_size"]) == growth_schedule
                                           for label in (d.abs, d.absa) for r in records[label])
    return values
