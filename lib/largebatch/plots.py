"""One matplotlib style for the whole book and the figure helpers the chapters share."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

import matplotlib.pyplot as plt
import pandas as pd

STYLE = {
    "figure.figsize": (6.4, 3.6),
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": "medium",
    "legend.frameon": False,
    "font.size": 10,
}

LABELS = {
    "train_loss": "training loss (cross-entropy)",
    "test_loss": "test loss (cross-entropy)",
    "train_accuracy": "training accuracy",
    "test_accuracy": "test accuracy",
    "running_loss": "mean mini-batch loss",
    "epoch": "epoch",
    "step": "parameter updates",
}


def use_style() -> None:
    """Apply the book's matplotlib style."""
    matplotlib.rcParams.update(STYLE)


def learning_curves(histories: Mapping[str, pd.DataFrame],
                    metrics: Sequence[str] = ("train_loss", "test_accuracy"),
                    x: str = "epoch") -> plt.Figure:
    """One panel per metric, one line per labelled run history."""
    use_style()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        for label, frame in histories.items():
            axis.plot(frame[x], frame[metric], marker="o", markersize=2.5, label=label)
        axis.set_xlabel(LABELS.get(x, x))
        axis.set_ylabel(LABELS.get(metric, metric))
        if metric.endswith("loss"):
            axis.set_yscale("log")
    axes[0][0].legend()
    fig.tight_layout()
    return fig


def figure_dir() -> Path:
    """Where figures are saved: ``figures/`` inside the run cache (see ``experiments``)."""
    from largebatch.experiments import default_cache_dir

    return default_cache_dir() / "figures"


def save_figure(fig: plt.Figure, name: str, folder: str | Path | None = None) -> None:
    """Save a figure as PNG with the results (``figure_dir()`` unless ``folder`` is given)."""
    path = Path(folder) if folder is not None else figure_dir()
    path.mkdir(parents=True, exist_ok=True)
    fig.savefig(path / f"{name}.png")


def _error_bars(axis: plt.Axes, x, mean, sem, label: str, **style) -> None:
    """A line with markers and standard-error bars (bars omitted where unknown)."""
    import numpy as np

    sem = np.nan_to_num(np.asarray(sem, dtype=float), nan=0.0)
    axis.errorbar(x, mean, yerr=sem, marker="o", markersize=3.5, capsize=3, linewidth=1.4,
                  label=label, **style)


def robust_accuracy_curves(summary: pd.DataFrame, hue: str,
                           attacks: Sequence[str] = ("fgsm", "pgd"),
                           eps_unit: float | None = None, eps_unit_name: str = "input RMS",
                           titles: Mapping[str, str] | None = None) -> plt.Figure:
    """Robust accuracy against epsilon, one panel per attack, one line per ``hue`` value.

    ``summary`` has columns ``attack``, ``epsilon``, ``hue``, ``robust_accuracy_mean`` and
    ``robust_accuracy_sem`` (error bars: one standard error over seeds). With
    ``eps_unit`` a second x axis on top shows ``epsilon / eps_unit`` (e.g. relative to
    the inputs' RMS value).
    """
    use_style()
    fig, axes = plt.subplots(1, len(attacks), figsize=(4.6 * len(attacks), 3.6), squeeze=False,
                             sharey=True)
    titles = titles or {"fgsm": "FGSM (one step)", "pgd": "PGD (L-inf, iterated)"}
    for axis, attack in zip(axes[0], attacks):
        part = summary[summary["attack"] == attack]
        for value, line in part.groupby(hue, sort=True):
            line = line.sort_values("epsilon")
            _error_bars(axis, line["epsilon"], line["robust_accuracy_mean"],
                        line["robust_accuracy_sem"], label=str(value))
        axis.set_title(titles.get(attack, attack))
        axis.set_xlabel("L-inf perturbation size epsilon (input units)")
        axis.set_ylim(0, 1)
        if eps_unit:
            top = axis.secondary_xaxis("top", functions=(lambda e: e / eps_unit, lambda r: r * eps_unit))
            top.set_xlabel(f"epsilon / {eps_unit_name}")
    axes[0][0].set_ylabel("robust test accuracy")
    axes[0][-1].legend(title=hue.replace("_", " "), fontsize="small")
    fig.tight_layout()
    return fig


def metrics_vs_batch_size(summary: pd.DataFrame, metrics: Mapping[str, str], hue: str | None = None,
                          log_metrics: Sequence[str] = (), x: str = "batch_size") -> plt.Figure:
    """One panel per metric against the batch size (log axis), one line per ``hue`` value.

    ``metrics`` maps a column stem to its axis label; ``summary`` holds ``<stem>_mean`` and
    ``<stem>_sem`` (error bars: one standard error). Metrics in ``log_metrics`` get a
    logarithmic y axis.
    """
    use_style()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    groups = summary.groupby(hue, sort=False) if hue else [("", summary)]
    for axis, (metric, label) in zip(axes[0], metrics.items()):
        for value, line in groups:
            line = line.sort_values(x)
            _error_bars(axis, line[x], line[f"{metric}_mean"], line[f"{metric}_sem"], label=str(value))
        axis.set_xscale("log", base=2)
        ticks = sorted(summary[x].unique())
        axis.set_xticks(ticks, [str(int(t)) for t in ticks])
        axis.minorticks_off()
        axis.set_xlabel("batch size (samples per update)" if x == "batch_size" else x)
        axis.set_ylabel(label)
        if metric in log_metrics:
            axis.set_yscale("log")
    if hue:
        axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    return fig


def input_curvature_panels(table: pd.DataFrame, num_classes: int) -> plt.Figure:
    """Input-Hessian spectra per network: sign of the curvature and number of nonzero eigenvalues.

    ``table`` is ``largebatch.studies.adversarial.input_curvature_table``'s output. Left: the
    smallest eigenvalue in units of the point's zero threshold (``min_eig / threshold``;
    the band ``[-1, 1]`` is numerically zero, below it the Hessian is indefinite). Right:
    the number of nonzero eigenvalues against the bound ``num_classes - 1`` of
    piecewise-linear networks.
    """
    import numpy as np

    use_style()
    networks = list(dict.fromkeys(table["network"]))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.9))
    rng = np.random.default_rng(0)
    for position, name in enumerate(networks):
        part = table[table["network"] == name]
        jitter = position + rng.uniform(-0.18, 0.18, len(part))
        left.scatter(jitter, part["min_eig"] / part["threshold"], s=9, alpha=0.6)
        right.scatter(jitter, part["n_nonzero"], s=9, alpha=0.6)
    left.set_yscale("symlog", linthresh=1.0)
    left.axhspan(-1, 1, color="grey", alpha=0.25, label="numerically zero")
    left.set_ylabel("smallest eigenvalue / zero threshold")
    left.legend(loc="lower left", fontsize="small")
    right.axhline(num_classes - 1, color="black", linestyle="--", linewidth=1,
                  label=f"C - 1 = {num_classes - 1}")
    right.set_ylabel("nonzero eigenvalues of the input Hessian")
    right.legend(fontsize="small")
    for axis in (left, right):
        axis.set_xticks(range(len(networks)), networks, rotation=20, ha="right")
        axis.set_xlabel("network (one dot per test point)")
    fig.tight_layout()
    return fig


def loss_along_lines(lines: Mapping[str, tuple], xlabel: str = "step along the unit input gradient (L2, input units)",
                     ) -> plt.Figure:
    """Loss against the step size along a direction, one line per labelled ``(steps, losses)``."""
    use_style()
    fig, axis = plt.subplots(figsize=(5.2, 3.6))
    for label, (steps, losses) in lines.items():
        axis.plot(steps, losses, marker="o", markersize=2.5, label=label)
    axis.set_xlabel(xlabel)
    axis.set_ylabel("loss (cross-entropy)")
    axis.legend(fontsize="small")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- Hessian chapter


def hessian_spectrum(eigenvalues: Sequence[float], bins: int = 60, zero: float = 1e-10) -> plt.Figure:
    """A dense spectrum: eigenvalue magnitudes by rank (log axis, sign by colour) and a histogram (log counts).

    Eigenvalues with ``|lambda| <= zero * max |lambda|`` are drawn as "numerically zero" at that level.
    """
    import numpy as np

    use_style()
    values = np.sort(np.asarray(eigenvalues, dtype=float))[::-1]
    floor = zero * float(np.abs(values).max())
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.4))
    rank = np.arange(1, len(values) + 1)
    for mask, shown, style, label in (
            (values > floor, values, dict(color="C0"), "positive"),
            (values < -floor, -values, dict(color="C3"), "negative (magnitude)"),
            (np.abs(values) <= floor, np.full_like(values, floor), dict(color="0.5", marker="x"),
             f"numerically zero (below {zero:g} of the largest)")):
        if mask.any():
            left.plot(rank[mask], shown[mask], linestyle="none", markersize=3,
                      **{"marker": ".", **style}, label=f"{label}: {int(mask.sum())}")
    left.set_yscale("log")
    left.set_xlabel("rank (largest first)")
    left.set_ylabel("|Hessian eigenvalue|")
    left.legend(fontsize="small", loc="lower left", bbox_to_anchor=(0.0, 0.12))
    right.hist(values, bins=bins, color="C0", edgecolor="white", linewidth=0.3)
    right.set_yscale("log")
    right.set_xlabel("Hessian eigenvalue")
    right.set_ylabel("number of eigenvalues")
    fig.tight_layout()
    return fig


def error_vs_matvecs(curves: Mapping[str, pd.DataFrame], x: str = "matvecs", y: str = "error",
                     group: str = "seed", xlabel: str = "Hessian-vector products",
                     ylabel: str = "relative error", log_x: bool = False, axis: plt.Axes | None = None,
                     title: str | None = None, hline: float | None = None,
                     slopes: Mapping[str, float] | None = None) -> plt.Figure:
    """Median over ``group`` (seeds) of ``y`` against ``x``, one line per labelled frame, min-max band.

    ``hline`` draws a dotted horizontal line (e.g. an error target); ``slopes`` maps labels to
    exponents ``a`` of grey guide lines ``y ~ x**a`` through the first curve's first median.
    """
    use_style()
    if axis is None:
        fig, axis = plt.subplots(figsize=(5.0, 3.4))
    else:
        fig = axis.figure
    for index, (label, frame) in enumerate(curves.items()):
        stats = frame.dropna(subset=[y]).groupby(x)[y].agg(["median", "min", "max"]).reset_index()
        axis.plot(stats[x], stats["median"], marker="o" if len(stats) < 30 else None, markersize=3,
                  color=f"C{index}", label=label)
        if frame[group].nunique() > 1:
            axis.fill_between(stats[x], stats["min"], stats["max"], color=f"C{index}", alpha=0.2, linewidth=0)
    if hline is not None:
        axis.axhline(hline, color="0.4", linestyle=":", linewidth=1, label=f"error {hline:g}")
    if slopes:
        import numpy as np

        first = next(iter(curves.values())).dropna(subset=[y]).groupby(x)[y].median()
        xs = np.asarray(first.index, dtype=float)
        for style, (label, exponent) in zip((":", "-."), slopes.items()):
            axis.plot(xs, first.iloc[0] * (xs / xs[0]) ** exponent, color="0.45", linestyle=style,
                      linewidth=1, label=label)
    axis.set_yscale("log")
    if log_x:
        from matplotlib.ticker import NullFormatter, ScalarFormatter

        axis.set_xscale("log")
        axis.xaxis.set_major_formatter(ScalarFormatter())
        axis.xaxis.set_minor_formatter(NullFormatter())
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    if title:
        axis.set_title(title)
    axis.legend()
    fig.tight_layout()
    return fig


def density_vs_histogram(grid, densities: Mapping[str, Sequence[float]], eigenvalues: Sequence[float],
                         bins: int = 80, floor: float = 1e-5) -> plt.Figure:
    """Estimated eigenvalue densities (lines) over the histogram of the exact eigenvalues (bars).

    The histogram is normalized as a density (area 1); the y axis is logarithmic, clipped at ``floor``.
    """
    import numpy as np

    use_style()
    fig, axis = plt.subplots(figsize=(6.4, 3.6))
    axis.hist(np.asarray(eigenvalues, dtype=float), bins=bins, density=True, color="0.8",
              label="exact eigenvalues (histogram)")
    for index, (label, density) in enumerate(densities.items()):
        axis.plot(np.asarray(grid, dtype=float), np.clip(np.asarray(density, dtype=float), floor, None),
                  color=f"C{index}", label=label, linewidth=1.2, linestyle="-" if index == 0 else "--")
    axis.set_yscale("log")
    axis.set_ylim(bottom=floor)
    axis.set_xlabel("Hessian eigenvalue")
    axis.set_ylabel("density (per unit eigenvalue)")
    axis.legend()
    fig.tight_layout()
    return fig


def estimate_spread(frame: pd.DataFrame, reference: float, x: str = "batch_size", y: str = "eigenvalue",
                    xlabel: str = "samples in the batch the Hessian is taken on",
                    ylabel: str = "top Hessian eigenvalue", reference_label: str = "full training set",
                    highlight: float | None = None) -> plt.Figure:
    """Every estimate (dots), their median and 10-90% range per ``x``, and a reference line; log-log."""
    use_style()
    fig, axis = plt.subplots(figsize=(6.4, 3.6))
    axis.scatter(frame[x], frame[y], s=10, alpha=0.6, color="C0", label="one random batch each")
    stats = frame.groupby(x)[y].quantile([0.1, 0.5, 0.9]).unstack().reset_index()
    axis.plot(stats[x], stats[0.5], color="C0", label="median")
    axis.fill_between(stats[x], stats[0.1], stats[0.9], color="C0", alpha=0.15, linewidth=0,
                      label="10-90% of batches")
    axis.axhline(reference, color="k", linestyle="--", linewidth=1, label=reference_label)
    if highlight is not None:
        axis.axvline(highlight, color="C3", linestyle=":", linewidth=1, label=f"{highlight:g} samples")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    axis.set_xscale("log", base=2)
    axis.set_yscale("log")
    axis.set_xticks(sorted(frame[x].unique()))
    axis.xaxis.set_major_formatter(ScalarFormatter())
    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.yaxis.set_major_formatter(ScalarFormatter())
    axis.yaxis.set_minor_formatter(ScalarFormatter())
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.legend(fontsize="small")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- sharp minima, train longer


def interpolation_curves(frame: pd.DataFrame, labels: tuple[str, str] = ("small batch", "large batch"),
                         ) -> plt.Figure:
    """Loss (log axis) and accuracy along ``theta(alpha) = alpha theta_b + (1 - alpha) theta_a``.

    ``frame`` is ``landscape.interpolate``'s output (columns ``alpha, split, loss,
    accuracy``); dotted lines mark the two solutions at alpha = 0 and 1 (Keskar et al.
    2017, Fig. 3).
    """
    use_style()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.4))
    for index, (split, line) in enumerate(frame.groupby("split", sort=False)):
        line = line.sort_values("alpha")
        style = {"color": f"C{index}", "marker": "o", "markersize": 2.5, "label": split}
        left.plot(line["alpha"], line["loss"], **style)
        right.plot(line["alpha"], line["accuracy"], **style)
    for axis in (left, right):
        for position, name in zip((0.0, 1.0), labels):
            axis.axvline(position, color="0.4", linestyle=":", linewidth=1)
        axis.set_xlabel(f"alpha (0: {labels[0]}, 1: {labels[1]})")
    left.set_yscale("log")
    left.set_ylabel("loss (cross-entropy)")
    right.set_ylabel("accuracy")
    right.set_ylim(0, 1)
    left.legend(fontsize="small")
    fig.tight_layout()
    return fig


def loss_surfaces(planes: Mapping[str, pd.DataFrame], xlabel: str = "alpha (direction 1)",
                  ylabel: str = "beta (direction 2)", levels: int = 20) -> plt.Figure:
    """Contours of log10(loss) on planes through solutions, one panel each, one shared colour scale.

    Each frame is ``landscape.loss_along_directions`` output for two directions
    (columns ``alpha, beta, loss``); a cross marks the solution at the origin.
    """
    import numpy as np

    use_style()
    surfaces = {label: frame.pivot(index="beta", columns="alpha", values="loss")
                for label, frame in planes.items()}
    values = np.log10(np.concatenate([s.to_numpy().ravel() for s in surfaces.values()]))
    bounds = np.linspace(np.nanmin(values), np.nanmax(values), levels)
    fig, axes = plt.subplots(1, len(surfaces), figsize=(4.0 * len(surfaces) + 0.8, 3.6), squeeze=False,
                             sharey=True, constrained_layout=True)
    for axis, (label, surface) in zip(axes[0], surfaces.items()):
        filled = axis.contourf(surface.columns, surface.index, np.log10(surface.to_numpy()), levels=bounds,
                               cmap="viridis")
        axis.contour(surface.columns, surface.index, np.log10(surface.to_numpy()), levels=bounds[::3],
                     colors="white", linewidths=0.4)
        axis.plot([0], [0], marker="x", color="red", markersize=7)
        axis.set_title(label)
        axis.set_xlabel(xlabel)
        axis.grid(False)
    axes[0][0].set_ylabel(ylabel)
    fig.colorbar(filled, ax=axes[0].tolist(), label="log10 training loss")
    return fig


def spectral_densities(densities: Mapping[str, tuple], floor: float = 1e-6) -> plt.Figure:
    """Hessian eigenvalue densities (stochastic Lanczos quadrature), one line per labelled ``(grid, density)``.

    Log density axis (clipped at ``floor``), so the outliers beside the bulk near zero stay visible.
    """
    import numpy as np

    use_style()
    fig, axis = plt.subplots(figsize=(6.4, 3.6))
    for label, (grid, density) in densities.items():
        axis.plot(np.asarray(grid, dtype=float), np.clip(np.asarray(density, dtype=float), floor, None),
                  linewidth=1.2, label=label)
    axis.set_yscale("log")
    axis.set_ylim(bottom=floor)
    axis.set_xlabel("Hessian eigenvalue")
    axis.set_ylabel("density (per unit eigenvalue)")
    axis.legend(fontsize="small")
    fig.tight_layout()
    return fig


def distance_curves(curves: Mapping[str, pd.DataFrame], fits: Mapping[str, tuple] | None = None,
                    ) -> plt.Figure:
    """``||w_t - w_0||`` against updates on a log axis, with fitted log laws.

    ``curves`` maps a label to a frame with columns ``step, distance``; ``fits`` maps
    the same label to ``(a, b, first_step, last_step)``, drawn as a dashed line
    ``a + b ln(t)`` over the fitted window.
    """
    import numpy as np

    use_style()
    fig, axis = plt.subplots(figsize=(6.4, 3.8))
    for index, (label, curve) in enumerate(curves.items()):
        curve = curve[curve["step"] > 0]
        axis.plot(curve["step"], curve["distance"], marker="o", markersize=2.5, linewidth=1,
                  color=f"C{index}", label=label)
        if fits and label in fits:
            a, b, first, last = fits[label]
            t = np.geomspace(first, last, 50)
            axis.plot(t, a + b * np.log(t), linestyle="--", color=f"C{index}", linewidth=1.6, alpha=0.8)
    axis.set_xscale("log")
    axis.set_xlabel("parameter updates t (log scale)")
    axis.set_ylabel("distance from initialization ||w_t - w_0||")
    axis.plot([], [], linestyle="--", color="0.3", label="fit a + b ln t (high-lr phase)")
    axis.legend(fontsize="small")
    fig.tight_layout()
    return fig


def rows_with_error_bars(summary: pd.DataFrame, label: str, metrics: Mapping[str, str],
                         columns: int | None = None) -> plt.Figure:
    """One panel per metric, one horizontal error bar (mean ± standard error) per table row.

    ``summary`` holds a ``label`` column naming the rows (drawn top to bottom in order)
    and ``<stem>_mean`` / ``<stem>_sem`` columns for every stem of ``metrics`` (which maps
    the stem to its axis label). The panels fill ``columns`` per row (default: all in one).
    """
    import math

    import numpy as np

    use_style()
    columns = columns or len(metrics)
    rows = math.ceil(len(metrics) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns + 2.0, rows * (0.45 * len(summary) + 1.4)),
                             squeeze=False, sharey=True)
    positions = np.arange(len(summary))[::-1]
    for axis, (metric, axis_label) in zip(axes.flat, metrics.items()):
        sem = np.nan_to_num(summary[f"{metric}_sem"].to_numpy(dtype=float), nan=0.0)
        axis.errorbar(summary[f"{metric}_mean"], positions, xerr=sem, fmt="o", markersize=4, capsize=3)
        axis.set_xlabel(axis_label)
        axis.grid(axis="y", visible=False)
    for axis in list(axes.flat)[len(metrics):]:
        axis.set_visible(False)
    axes[0][0].set_yticks(positions, summary[label].tolist())
    fig.tight_layout()
    return fig


def metric_scatter(frame: pd.DataFrame, x: str, y: str, hue: str, xlabel: str, ylabel: str,
                   log_x: bool = False) -> plt.Figure:
    """One point per run: ``y`` against ``x``, coloured by ``hue`` (e.g. sharpness against robustness)."""
    use_style()
    fig, axis = plt.subplots(figsize=(5.6, 3.8))
    for value, part in frame.groupby(hue, sort=True):
        axis.scatter(part[x], part[y], s=22, alpha=0.8, label=str(value))
    if log_x:
        axis.set_xscale("log")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.legend(fontsize="small")
    fig.tight_layout()
    return fig


def legend_below(fig: plt.Figure, ncol: int | None = None) -> plt.Figure:
    """Move the first panel's legend below the panels (one legend for the figure, off the data)."""
    axis = fig.axes[0]
    handles, labels = axis.get_legend_handles_labels()
    for panel in fig.axes:
        if panel.get_legend() is not None:
            panel.get_legend().remove()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=ncol or min(len(labels), 4),
               fontsize="small")
    return fig


def adaptive_schedules(histories: Mapping[str, pd.DataFrame],
                       estimates: Mapping[str, str] | None = None) -> plt.Figure:
    """Batch size, learning rate and top-eigenvalue estimates against epoch, one colour per run.

    ``estimates`` maps history columns to line labels; the first is drawn solid, the
    others dashed (e.g. the controller's large-sample estimate beside a 128-sample one).
    Epochs without an estimate (after the controller stopped adapting) are left out.
    """
    use_style()
    estimates = estimates or {"eigenvalue": "estimate"}
    fig, axes = plt.subplots(1, 3, figsize=(13.0, 3.6))
    for index, (label, frame) in enumerate(histories.items()):
        color = f"C{index}"
        axes[0].step(frame["epoch"], frame["batch_size"], where="pre", color=color, label=label)
        axes[1].plot(frame["epoch"], frame["lr"], color=color, marker="o", markersize=2.5)
        for style, (column, name) in zip(("-", "--", ":"), estimates.items()):
            if column in frame:
                shown = frame.dropna(subset=[column])
                axes[2].plot(shown["epoch"], shown[column], linestyle=style, color=color, marker="o",
                             markersize=2.5, label=f"{label}, {name}")
    axes[0].set_yscale("log", base=2)
    axes[0].set_ylabel("batch size")
    axes[1].set_ylabel("learning rate (last update of the epoch)")
    axes[2].set_yscale("log")
    axes[2].set_ylabel("top Hessian eigenvalue estimate")
    for axis in axes:
        axis.set_xlabel("epoch")
    axes[0].legend(fontsize="small")
    axes[2].legend(fontsize="x-small")
    fig.tight_layout()
    return fig


def tradeoff_curves(histories: Mapping[str, Sequence[pd.DataFrame]], xs: Mapping[str, str],
                    y: str = "test_accuracy") -> plt.Figure:
    """``y`` against each cost column of ``xs`` (column -> axis label), log x axes.

    ``histories`` maps a method to its runs' histories (one line per run, one colour per method).
    """
    use_style()
    fig, axes = plt.subplots(1, len(xs), figsize=(5.2 * len(xs), 3.8), squeeze=False, sharey=True)
    for axis, (x, xlabel) in zip(axes[0], xs.items()):
        for index, (label, frames) in enumerate(histories.items()):
            for run, frame in enumerate(frames):
                axis.plot(frame[x], frame[y], color=f"C{index}", alpha=0.75, linewidth=1.2,
                          label=label if run == 0 else None)
        axis.set_xscale("log")
        axis.set_xlabel(xlabel)
    axes[0][0].set_ylabel(LABELS.get(y, y))
    axes[0][-1].legend(fontsize="small")
    fig.tight_layout()
    return fig
