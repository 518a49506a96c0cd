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
    """Where figures are saved: ``figures/`` beside the run cache (see ``experiments``)."""
    from largebatch.experiments import default_cache_dir

    return default_cache_dir().parent / "figures"


def save_figure(fig: plt.Figure, name: str, folder: str | Path | None = None) -> None:
    """Save a figure as PNG with the results (``figure_dir()`` unless ``folder`` is given)."""
    path = Path(folder) if folder is not None else figure_dir()
    path.mkdir(parents=True, exist_ok=True)
    fig.savefig(path / f"{name}.png")
