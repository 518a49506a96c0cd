"""How cheap may the ABS/ABSA eigenvalue estimate be? Decision agreement against its cost.

ABS doubles the batch when its estimate of the top Hessian eigenvalue falls to
``1 / ratio`` of a reference estimate (:class:`largebatch.absa.AdaptiveRule`). Each
estimate is power iteration on a fresh random sample, so a small sample or few
products make the decision noisy. This module measures, on the weights of a real ABS
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
* :func:`agreement_table` and :func:`agreement_figure` -- the table as shown, and agreement
  against cost, one point per setting.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
from dataclasses import asdict, dataclass
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import Tensor

from largebatch import analysis, experiments, hessian, plots
from largebatch.absa import HVP_GRADIENT_EVALUATIONS, AdaptiveRule, build_controller, estimate_cost
from largebatch.callbacks import Callback, TrainState
from largebatch.config import RunConfig
from largebatch.train import fit

__all__ = ["EstimateGrid", "epoch_weights", "decision_epochs", "doubling_causes", "measure_estimates",
           "decision_agreement", "closest_tight_ratio", "cheapest_reliable", "agreement_table", "setting",
           "agreement_figure"]

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


def agreement_table(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`decision_agreement`'s table as the chapter shows it (agreement in percent)."""
    return pd.DataFrame({
        "estimate": [f"{row.samples} samples, ≤ {row.max_products:.0f} products" if row.estimate == "sampled"
                     else f"whole training set ({row.samples}), Lanczos" for row in table.itertuples()],
        "same decision as the tight estimate (%)": [f"{100 * a:.1f} ± {100 * e:.1f}"
                                                    for a, e in zip(table["agreement"], table["agreement_sem"])],
        "products used (mean)": table["mean_products"].round(2),
        "gradient evaluations per estimate": table["gradient_evaluations"].round(0).astype(int),
    })


def setting(table: pd.DataFrame, samples: int, products: int) -> pd.Series:
    """The row of the sampled setting ``samples`` x at most ``products`` products."""
    rows = table[(table["estimate"] == "sampled") & (table["samples"] == samples)
                 & (table["max_products"] == products)]
    if len(rows) != 1:
        raise ValueError(f"the setting {samples} samples x {products} products is not in the study's grid "
                         f"(samples {sorted(set(table['samples']))}, products "
                         f"{sorted(set(table['max_products'].dropna()))})")
    return rows.iloc[0]


def agreement_figure(table: pd.DataFrame, min_agreement: float, highlight: dict[str, tuple[int, int]]) -> plt.Figure:
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
