"""Chapter 01, "Computing the Hessian": what the tour of :mod:`largebatch.hessian` leaves out.

Chapter 01 is the exception to the study pattern (see :mod:`largebatch.studies`): its
code is what it teaches, so the calls to :mod:`largebatch.hessian` and
:mod:`largebatch.hessian_diagnostics` stay in the notebook. This module holds the rest,
in the chapter's order:

* :class:`Design` and :func:`design` -- the parameters, checked (every error names the
  notebook parameter), the two training runs and their data;
* :func:`train_networks` -- both networks trained (or read from the run cache), with the
  table of what they are;
* per section, the table the page shows (``*_table``, :func:`products_needed`,
  :func:`slq_moments`), the figure assembly (``*_figure``: saved under its fixed name,
  shown, nothing returned) and the numbers its prose quotes (``*_prose``, glued by name).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping

import matplotlib.pyplot as plt
import pandas as pd
import torch
from pandas.io.formats.style import Styler
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from largebatch import data, experiments, models, notebook, plots
from largebatch import hessian_diagnostics as diag
from largebatch.config import RunConfig
from largebatch.studies.common import parameters, use_threads

CHAPTER = "01_hessian"
POSITIVE = ("tiny_width", "tiny_epochs", "chunk_size", "top_k", "tol", "trace_budgets", "slq_runs",
            "slq_steps", "probe_batch_sizes", "timing_samples", "timing_repeats")
REFERENCE_BATCH = 128  # the batch the papers' adaptive batch size takes its eigenvalue on


@dataclass(frozen=True)
class Design:
    """The chapter's parameters (see the notebook's parameters cell), checked on construction."""

    dataset: str
    model: str
    num_samples: int
    epochs: int
    lr: float
    batch_size: int
    seeds: list[int]
    tiny_dataset: str
    tiny_width: int
    tiny_epochs: int
    hessian_samples: int
    chunk_size: int
    top_k: int
    tol: float
    trace_budgets: list[int]
    trace_matvecs: int
    slq_runs: int
    slq_steps: int
    probe_batch_sizes: list[int]
    timing_samples: int
    timing_repeats: int
    num_threads: int
    augmentation: str

    def __post_init__(self) -> None:
        notebook.check_choice("dataset", self.dataset, data.DATASETS)
        notebook.check_choice("tiny_dataset", self.tiny_dataset, data.DATASETS)
        notebook.check_choice("model", self.model, list(models.MODELS))
        notebook.require(bool(self.seeds) and min(self.seeds) >= 0,
                         f"parameter seeds must be a non-empty list of integers >= 0, got {self.seeds!r}")
        for name in POSITIVE:
            notebook.check_positive(name, getattr(self, name))
        for name in ("hessian_samples", "num_threads"):  # 0 means "all samples" and "torch's default"
            value = getattr(self, name)
            notebook.require(value >= 0, f"parameter {name} must be >= 0, got {value!r}")
        notebook.require(self.trace_matvecs >= 3 and min(self.trace_budgets) >= 3,
                         "parameters trace_matvecs and trace_budgets must be >= 3 (Hutch++ needs 3 products), "
                         f"got {self.trace_matvecs} and {self.trace_budgets}")
        train = self.bundle.num_train
        notebook.require(self.num_hessian <= train, "parameter hessian_samples must be <= the training set size "
                         f"{train}, got {self.hessian_samples}")
        for name, sizes, limit in (
                ("probe_batch_sizes", self.probe_batch_sizes, self.num_hessian),
                ("timing_samples", [self.timing_samples], min(self.num_hessian, self.tiny_bundle.num_train))):
            notebook.require(max(sizes) <= limit, f"parameter {name} must be <= {limit} (the samples the "
                             f"Hessians are taken over), got {sizes}")

    @cached_property
    def tiny_config(self) -> RunConfig:
        """The tiny MLP whose Hessian is formed densely."""
        return experiments.RunConfig(
            dataset=self.tiny_dataset, model="mnist1d_mlp", model_options={"width": self.tiny_width},
            num_samples=self.num_samples, epochs=self.tiny_epochs, lr=self.lr, batch_size=self.batch_size,
            seed=self.seeds[0])

    @cached_property
    def cnn_config(self) -> RunConfig:
        """The trained network of sections 1 and 6-8."""
        return experiments.RunConfig(
            dataset=self.dataset, model=self.model, num_samples=self.num_samples, epochs=self.epochs,
            lr=self.lr, batch_size=self.batch_size, seed=self.seeds[0], augmentation=self.augmentation)

    @cached_property
    def tiny_bundle(self) -> data.DataBundle:
        """The tiny MLP's data, checked against its configuration."""
        return experiments.validate(self.tiny_config)

    @cached_property
    def bundle(self) -> data.DataBundle:
        """The trained network's data, checked against its configuration."""
        self.tiny_bundle  # noqa: B018 - checked first, as the chapter always did
        return experiments.validate(self.cnn_config)

    @property
    def num_hessian(self) -> int:
        """Training samples the trained network's Hessian is taken over."""
        return self.hessian_samples or self.bundle.num_train

    @cached_property
    def hessian_set(self) -> TensorDataset:
        """The first :attr:`num_hessian` training samples of the trained network."""
        return TensorDataset(*(t[:self.num_hessian] for t in self.bundle.train.tensors))

    @property
    def reference_batch(self) -> int:
        """The batch size the chapter compares with: the papers' 128 if probed, else the smallest."""
        return REFERENCE_BATCH if REFERENCE_BATCH in self.probe_batch_sizes else min(self.probe_batch_sizes)

    def describe(self) -> str:
        """Two lines: the two networks and the samples their Hessians are taken over."""
        tiny, cnn = self.tiny_bundle, self.bundle
        return (f"tiny MLP on {tiny.name}: Hessian over its {tiny.num_train} training samples\n"
                f"{self.model} on {cnn.name}: Hessian over {self.num_hessian} of {cnn.num_train} "
                "training samples")


def design(namespace: Mapping[str, Any]) -> Design:
    """The chapter's design from the notebook's parameters (its ``globals()``), validated."""
    return Design(**parameters(namespace, Design))


# ----------------------------------------------------------------------------- the two networks


@dataclass
class Networks:
    """Both trained networks and what the chapter's Hessians are taken over."""

    design: Design
    tiny: nn.Module
    cnn: nn.Module
    records: tuple[dict[str, Any], dict[str, Any]]  # the runs of the tiny MLP and the CNN

    @property
    def tiny_data(self) -> tuple[Tensor, Tensor]:
        """The tiny MLP's whole training set, one batch ``(inputs, targets)``."""
        inputs, targets = self.design.tiny_bundle.train.tensors
        return inputs, targets

    def table(self) -> Styler:
        """One row per network: its size, its training and its accuracy."""
        rows = []
        for name, config, net, record in (("tiny MLP", self.design.tiny_config, self.tiny, self.records[0]),
                                          ("CNN", self.design.cnn_config, self.cnn, self.records[1])):
            final = record["final"]
            rows.append({"network": name, "model": config.model, "parameters": models.num_parameters(net),
                         "epochs": config.epochs, "train accuracy": final["train_accuracy"],
                         "test accuracy": final["test_accuracy"], "train loss": final["train_loss"]})
        return notebook.show(pd.DataFrame(rows).set_index("network"))


def train_networks(design: Design) -> Networks:
    """Set torch's threads, then train both networks by :func:`experiments.sweep` (a second
    execution reads them from the run cache) and load them, in eval mode."""
    use_threads(design.num_threads)
    records = experiments.sweep([design.tiny_config, design.cnn_config])
    tiny = experiments.load_model(design.tiny_config)
    cnn = experiments.load_model(design.cnn_config)
    return Networks(design, tiny, cnn, (records[0], records[1]))


def networks_prose(nets: Networks) -> dict[str, Any]:
    """The numbers the introduction quotes."""
    design = nets.design
    tiny_params, cnn_params = models.num_parameters(nets.tiny), models.num_parameters(nets.cnn)
    return {"cnn_epochs": design.cnn_config.epochs, "tiny_epochs": design.tiny_config.epochs,
            "tiny_params": tiny_params, "cnn_params": cnn_params, "cnn_entries": float(cnn_params) ** 2,
            "cnn_dense_gib": 4 * float(cnn_params) ** 2 / 2**30, "num_hessian": design.num_hessian,
            "tiny_train": design.tiny_bundle.num_train}


# ----------------------------------------------------------------------------- 1. cost of a product


def product_timings(nets: Networks) -> pd.DataFrame:
    """Seconds of a gradient and of a product (:func:`diag.product_timings`) on one random batch
    of ``timing_samples`` training samples, one row per network."""
    design = nets.design
    samples = {"tiny MLP": (nets.tiny, design.tiny_bundle.train), "CNN": (nets.cnn, design.hessian_set)}
    return pd.DataFrame({
        name: diag.product_timings(net, diag.random_batch(data_set, design.timing_samples, design.seeds[0]),
                                   design.timing_repeats)
        for name, (net, data_set) in samples.items()}).T


def _ratios(timings: pd.DataFrame) -> pd.DataFrame:
    return (timings.drop(columns="gradient").div(timings["gradient"], axis=0)
            .rename(columns=lambda c: f"{c} / gradient"))


def timing_table(timings: pd.DataFrame) -> Styler:
    """Milliseconds of each computation, and each product's cost in gradients."""
    timings_ms = (1e3 * timings).rename(columns=lambda c: f"{c} (ms)")
    return notebook.show(pd.concat([timings_ms, _ratios(timings)], axis=1).rename_axis("network"))


def timing_prose(design: Design, timings: pd.DataFrame) -> dict[str, Any]:
    """The numbers section 1 quotes."""
    ratios = _ratios(timings)
    fresh, cached = "hvp (recomputed graph) / gradient", "hvp (cached graph) / gradient"
    return {"timing_samples": design.timing_samples, "timing_repeats": design.timing_repeats,
            "threads_used": torch.get_num_threads(),
            "ratio_cnn_fresh": float(ratios.loc["CNN", fresh]), "ratio_cnn_cached": float(ratios.loc["CNN", cached]),
            "ratio_tiny_fresh": float(ratios.loc["tiny MLP", fresh]),
            "ratio_tiny_cached": float(ratios.loc["tiny MLP", cached]),
            "cnn_gradient_ms": float(1e3 * timings.loc["CNN", "gradient"])}


# ----------------------------------------------------------------------------- 2. the dense Hessian


def spectrum_prose(design: Design, dense: Tensor, eigenvalues: Tensor, product_gap: float) -> dict[str, Any]:
    """The numbers section 2 quotes about the dense spectrum (``eigenvalues`` largest first)."""
    top = float(eigenvalues[0])
    trace = float(dense.trace())
    zero_level = 1e-10 * float(eigenvalues.abs().max())  # as in the figure: rounding-level eigenvalues
    return {"tiny_width": design.tiny_width, "product_gap": product_gap, "tiny_top": top,
            "tiny_second": float(eigenvalues[1]), "tiny_min": float(eigenvalues[-1]),
            "tiny_negative": int((eigenvalues < -zero_level).sum()),
            "tiny_negative_share": float((eigenvalues < -zero_level).float().mean()),
            "tiny_zero": int((eigenvalues.abs() <= zero_level).sum()), "tiny_flat": design.tiny_width + 1,
            "tiny_bulk_share": float((eigenvalues.abs() < 0.01 * top).float().mean()), "tiny_trace": trace,
            "tiny_top10_share": float(eigenvalues[:10].sum() / trace)}


# ----------------------------------------------------------------------------- 3. top eigenvalues


def eigen_convergence_figure(convergence: Mapping[tuple[int, str], pd.DataFrame], threshold: float) -> None:
    """One panel per k of ``convergence`` (keyed ``(k, method)``): error against products."""
    ks = list(dict.fromkeys(k for k, _ in convergence))
    figure, axes = plt.subplots(1, len(ks), figsize=(10, 3.6), squeeze=False)
    for axis, k in zip(axes[0], ks):
        plots.error_vs_matvecs({m: frame for (kk, m), frame in convergence.items() if kk == k}, axis=axis,
                               log_x=True, ylabel="largest relative eigenvalue error", title=f"top-{k}",
                               hline=threshold)
    plots.save_figure(figure, "hessian_eigen_convergence")


def products_needed(convergence: Mapping[tuple[int, str], pd.DataFrame], threshold: float) -> pd.DataFrame:
    """Products each run needed to reach ``threshold``, one row per task and method, the median first."""
    needed = pd.DataFrame({f"top-{k} {method}": diag.matvecs_to_reach(frame, threshold)
                           for (k, method), frame in convergence.items()}).T.rename(columns=lambda s: f"seed {s}")
    needed.insert(0, "median", needed.median(axis=1))
    return needed.rename_axis("estimate")


def eigen_prose(design: Design, needed: pd.DataFrame, eigenvalues: Tensor, threshold: float) -> dict[str, Any]:
    """The numbers section 3 quotes (``needed``: :func:`products_needed`)."""
    median, k = needed["median"], design.top_k
    return {"top_k": k, "num_seeds": len(design.seeds), "eig_threshold": threshold,
            "need_top1_lanczos": float(median["top-1 lanczos"]), "need_top1_power": float(median["top-1 power"]),
            "need_topk_lanczos": float(median[f"top-{k} lanczos"]),
            "need_topk_power": float(median[f"top-{k} power"]),
            "topk_power_over_lanczos": float(median[f"top-{k} power"] / median[f"top-{k} lanczos"]),
            "tiny_gap_ratio": float(eigenvalues[1] / eigenvalues[0])}


# ----------------------------------------------------------------------------- 4. the trace


def trace_figure(trace_frame: pd.DataFrame) -> None:
    """Relative error of both trace estimators against products, with 1/sqrt(m) and 1/m guides."""
    figure = plots.error_vs_matvecs({m: trace_frame[trace_frame.method == m] for m in ("hutchinson", "hutch++")},
                                    x="budget", log_x=True, ylabel="relative error of the trace",
                                    xlabel="Hessian-vector products", slopes={"∝ 1/√m": -0.5, "∝ 1/m": -1.0})
    plots.save_figure(figure, "hessian_trace_convergence")


def trace_table(trace_frame: pd.DataFrame) -> pd.DataFrame:
    """Median relative error of the trace per budget (rows) and method (columns)."""
    return trace_frame.pivot_table(index="budget", columns="method", values="error", aggfunc="median")


def trace_prose(design: Design, table: pd.DataFrame) -> dict[str, Any]:
    """The numbers section 4 quotes (``table``: :func:`trace_table`)."""
    small, large = min(design.trace_budgets), max(design.trace_budgets)
    return {"trace_small_budget": small, "trace_large_budget": large,
            "hutch_err_small": float(table.loc[small, "hutchinson"]),
            "hutchpp_err_small": float(table.loc[small, "hutch++"]),
            "hutch_err_large": float(table.loc[large, "hutchinson"]),
            "hutchpp_err_large": float(table.loc[large, "hutch++"]),
            "hutch_gain_large": float(table.loc[large, "hutchinson"] / table.loc[large, "hutch++"])}


# ----------------------------------------------------------------------------- 5. the spectrum


def density_figure(density: Any, exact_density: Tensor, eigenvalues: Tensor) -> None:
    """The SLQ density and the exact eigenvalues broadened alike, over their histogram."""
    figure = plots.density_vs_histogram(
        density.grid, {"SLQ estimate": density.density, "exact eigenvalues, same broadening": exact_density},
        eigenvalues.tolist())
    plots.save_figure(figure, "hessian_slq_density")


def slq_moments(density: Any, eigenvalues: Tensor) -> pd.DataFrame:
    """The quadrature's first two spectral moments beside the exact ones."""
    return pd.DataFrame({"SLQ": [density.moment(1), density.moment(2)],
                         "exact": [float(eigenvalues.mean()), float((eigenvalues**2).mean())]},
                        index=pd.Index(["trace(H) / p", "trace(H²) / p"], name="moment"))


def slq_prose(nets: Networks, density: Any, exact_density: Tensor, moments: pd.DataFrame) -> dict[str, Any]:
    """The numbers section 5 quotes (``moments``: :func:`slq_moments`)."""
    design = nets.design
    grid_step = float(density.grid[1] - density.grid[0])

    def error(moment: str) -> float:
        return float(abs(moments.loc[moment, "SLQ"] / moments.loc[moment, "exact"] - 1))

    return {"slq_runs": design.slq_runs, "slq_steps": min(design.slq_steps, models.num_parameters(nets.tiny)),
            "slq_matvecs": density.num_matvecs, "slq_sigma": density.sigma,
            "slq_l1": float((density.density - exact_density).abs().sum() * grid_step),
            "slq_moment1_err": error("trace(H) / p"), "slq_moment2_err": error("trace(H²) / p")}


# ----------------------------------------------------------------------------- 6. one batch


def spread_figure(design: Design, spread: pd.DataFrame, full_top: float) -> None:
    """Every one-batch estimate against its batch size, beside the full-data eigenvalue."""
    highlight = REFERENCE_BATCH if REFERENCE_BATCH in design.probe_batch_sizes else None
    figure = plots.estimate_spread(spread, full_top, reference_label=f"all {design.num_hessian} training samples",
                                   highlight=highlight)
    plots.save_figure(figure, "hessian_batch_spread")


def spread_table(spread: pd.DataFrame, full_top: float) -> pd.DataFrame:
    """Per batch size: range, median and spread of the estimates, and the median's bias."""
    table = spread.groupby("batch_size")["eigenvalue"].agg(["min", "median", "max", "std"])
    table["max / min"] = table["max"] / table["min"]
    table["median / full"] = table["median"] / full_top
    return table


def spread_prose(design: Design, table: pd.DataFrame, full_top: Any) -> dict[str, Any]:
    """The numbers section 6 quotes (``table``: :func:`spread_table`; ``full_top``: the
    full-data result of :func:`hessian.top_eigenvalues`)."""
    smallest, largest, ref = min(design.probe_batch_sizes), max(design.probe_batch_sizes), design.reference_batch
    return {"full_top": full_top.eigenvalues[0], "full_top_matvecs": full_top.num_matvecs, "tol": design.tol,
            "ref_b": ref, "smallest_b": smallest, "largest_b": largest,
            "ref_min": float(table.loc[ref, "min"]), "ref_max": float(table.loc[ref, "max"]),
            "ref_ratio": float(table.loc[ref, "max / min"]), "ref_bias": float(table.loc[ref, "median / full"]),
            "small_ratio": float(table.loc[smallest, "max / min"]),
            "small_bias": float(table.loc[smallest, "median / full"]),
            "large_ratio": float(table.loc[largest, "max / min"]),
            "large_bias": float(table.loc[largest, "median / full"])}


# ----------------------------------------------------------------------------- 7. batch normalization


def train_label(design: Design) -> str:
    """The label of train mode on batches of the training batch size."""
    return f"train mode, batches of {design.batch_size}"


def bn_modes(design: Design, full_data: Any) -> dict[str, tuple[Any, bool]]:
    """Label -> (data, eval_mode) of the Hessians section 7 compares: eval mode on ``full_data``,
    train mode on batches of the training batch size and, if it fits one chunk, on the whole set."""
    samples = design.hessian_set.tensors
    modes = {"eval mode (running statistics)": (full_data, True),
             train_label(design): (diag.chunks(samples, design.batch_size), False)}
    if design.num_hessian <= design.chunk_size:
        modes[f"train mode, one batch of {design.num_hessian}"] = (samples, False)
    return modes


def bn_table(rows: Mapping[str, tuple[Any, float]]) -> pd.DataFrame:
    """One row per mode from ``label -> (top_eigenvalues result, mean training loss)``."""
    return pd.DataFrame([{"mode": label, "top eigenvalue": result.eigenvalues[0], "products": result.num_matvecs,
                          "mean training loss": loss} for label, (result, loss) in rows.items()]).set_index("mode")


def bn_prose(nets: Networks, table: pd.DataFrame) -> dict[str, Any]:
    """The numbers section 7 quotes (``table``: :func:`bn_table`, eval mode first)."""
    label = train_label(nets.design)
    top = table["top eigenvalue"]
    eval_top, train_top = top.iloc[0], table.loc[label, "top eigenvalue"]
    return {"batch_size": nets.design.batch_size,
            "bn_layers": sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in nets.cnn.modules()),
            "bn_eval_top": float(eval_top), "bn_train_top": float(train_top),
            "bn_factor": float(top.iloc[:2].max() / top.iloc[:2].min()),
            "bn_direction": "larger" if eval_top > train_top else "smaller",
            "bn_eval_loss": float(table.iloc[0]["mean training loss"]),
            "bn_train_loss": float(table.loc[label, "mean training loss"])}


# ----------------------------------------------------------------------------- 8. costs


def cost_table(costs: pd.DataFrame) -> Styler:
    """:func:`diag.estimator_costs` as the chapter shows it: products, seconds, the estimate and
    its error (each estimate's own stopping rule decides when it has converged; the error says how
    well it did, so the ``converged`` flags are left out to keep the table inside the page)."""
    table = costs.drop(columns="converged").set_index(["task", "method"]).rename(columns={
        "matvecs": "products", "value": "top eigenvalue / trace", "last_value": "k-th eigenvalue",
        "std_error": "std. error (trace)", "error": "relative error"})
    return table.style.format(precision=3, na_rep="").format("{:.1e}", subset=["relative error"], na_rep="")


def cost_prose(design: Design, costs: pd.DataFrame, reference: Any) -> dict[str, Any]:
    """The numbers section 8 quotes (``reference``: the tight Lanczos run the errors compare with)."""
    cost = costs.set_index(["task", "method"])
    topk = f"top-{design.top_k}"
    return {"trace_matvecs": design.trace_matvecs, "reference_matvecs": reference.num_matvecs,
            "cost_top1_lanczos": int(cost.loc[("top-1", "lanczos"), "matvecs"]),
            "cost_top1_power": int(cost.loc[("top-1", "power"), "matvecs"]),
            "cost_topk_lanczos": int(cost.loc[(topk, "lanczos"), "matvecs"]),
            "cost_topk_power": int(cost.loc[(topk, "power"), "matvecs"]),
            "sec_topk_lanczos": float(cost.loc[(topk, "lanczos"), "seconds"]),
            "sec_topk_power": float(cost.loc[(topk, "power"), "seconds"]),
            "err_topk_lanczos": float(cost.loc[(topk, "lanczos"), "error"]),
            "err_topk_power": float(cost.loc[(topk, "power"), "error"]),
            "sec_per_product": float((costs["seconds"] / costs["matvecs"]).median()),
            "cnn_trace": float(cost.loc[("trace", "hutch++"), "value"]),
            "cnn_trace_se": float(cost.loc[("trace", "hutch++"), "std_error"]),
            "cnn_trace_hutch": float(cost.loc[("trace", "hutchinson"), "value"]),
            "cnn_trace_hutch_se": float(cost.loc[("trace", "hutchinson"), "std_error"])}


__all__ = ["CHAPTER", "Design", "Networks", "bn_modes", "bn_prose", "bn_table", "cost_prose", "cost_table",
           "density_figure", "design", "eigen_convergence_figure", "eigen_prose", "networks_prose",
           "product_timings", "products_needed", "slq_moments", "slq_prose", "spectrum_prose", "spread_figure",
           "spread_prose", "spread_table", "timing_prose", "timing_table", "trace_figure", "trace_prose",
           "trace_table", "train_label", "train_networks"]
