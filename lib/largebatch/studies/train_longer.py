"""Chapter 03, "Train longer, generalize better?": Hoffer et al.'s fixes and the ratio lr/B.

Claims B1-B4 (Hoffer et al. 2017) and J1 (Jastrzebski et al. 2017). The design has
two studies: Hoffer et al.'s Table 1 (a small-batch baseline, then a large batch with
one fix added per row: square-root learning rate, ghost batch norm, regime adaptation)
and a batch-size sweep under a fixed learning rate and under lr/B held constant. Every
run tracks its distance from initialization (B1) and measures the top Hessian
eigenvalue of its final weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping

import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler

from largebatch import analysis, data, experiments, models, notebook, plots
from largebatch.config import ConfigError, RunConfig
from largebatch.ghost_batch_norm import GhostBatchNorm
from largebatch.studies.common import LabelledRun, design_table, parameters, restrict_to_seeds, use_threads

CHAPTER = "03_train_longer"
REGIME_ADAPTATION = "+ regime adaptation"
RATIO_RULES = {"fixed lr": "none", "lr/B constant": "linear"}  # label -> lr_scaling of the ratio study


@dataclass(frozen=True)
class Design:
    """The chapter's parameters (see the notebook's parameters cell), checked on construction."""

    dataset: str
    model: str
    model_options: dict
    num_samples: int
    small_batch: int
    large_batch: int
    batch_sizes: list[int]
    ghost_batch_size: int
    epochs: int
    milestones: list[float]
    lr: float
    momentum: float
    clip_grad_norm: float
    seeds: list[int]
    fit_start: int
    hessian_tol: float
    eval_every: int
    num_threads: int

    def __post_init__(self) -> None:
        notebook.check_choice("dataset", self.dataset, data.DATASETS)
        notebook.check_choice("model", self.model, list(models.MODELS))
        for name in ("small_batch", "large_batch", "batch_sizes", "ghost_batch_size", "epochs",
                     "milestones", "lr", "clip_grad_norm", "fit_start", "hessian_tol", "eval_every"):
            notebook.check_positive(name, getattr(self, name))
        notebook.require(self.large_batch > self.small_batch, f"parameter large_batch must exceed "
                         f"small_batch ({self.small_batch}), got {self.large_batch}")
        notebook.require(sorted(set(self.batch_sizes)) == list(self.batch_sizes) and len(self.batch_sizes) >= 2,
                         f"parameter batch_sizes must hold at least two increasing sizes, got {self.batch_sizes!r}")
        notebook.require(bool(self.seeds) and min(self.seeds) >= 0 and len(set(self.seeds)) == len(self.seeds),
                         "parameter seeds must be a non-empty list of distinct integers >= 0, "
                         f"got {self.seeds!r}")
        notebook.require(bool(self.milestones) and max(self.milestones) < self.epochs,
                         "parameter milestones must be a non-empty list of epochs below epochs "
                         f"({self.epochs}), got {self.milestones!r}")
        notebook.require(self.num_threads >= 0, "parameter num_threads must be >= 0 (0: torch's default), "
                         f"got {self.num_threads}")
        probe = experiments.build_model(self.rows["+ ghost batch norm"], self.bundle)
        if not any(isinstance(m, GhostBatchNorm) for m in probe.modules()):
            raise ConfigError(f"model {self.model} with options {self.model_options} has no batch norm "
                              "layer, so ghost batch norm changes nothing; choose a network with batch norm")

    @cached_property
    def bundle(self) -> data.DataBundle:
        """The training data, checked against the largest batch of the design."""
        largest = max([*self.rows.values(), *self.ratio_configs["fixed lr"]], key=lambda c: c.batch_size)
        return experiments.validate(largest)

    @cached_property
    def base(self) -> RunConfig:
        """What every run shares: the schedule, clipping, distance tracking, the top eigenvalue."""
        return experiments.RunConfig(
            dataset=self.dataset, model=self.model, model_options=self.model_options,
            num_samples=self.num_samples, epochs=self.epochs, lr=self.lr, momentum=self.momentum,
            schedule="multistep", milestones=tuple(self.milestones), gamma=0.1,
            base_batch_size=self.small_batch, clip_grad_norm=self.clip_grad_norm, track_distance=True,
            hessian_top_k=1, hessian_tol=self.hessian_tol, eval_every=self.eval_every)

    @cached_property
    def rows(self) -> dict[str, RunConfig]:
        """Hoffer et al.'s Table 1, one change at a time (seed 0; every seed is trained)."""
        large = self.base.replace(batch_size=self.large_batch)
        return {
            "small batch (baseline)": self.base.replace(batch_size=self.small_batch),
            "large batch, no fix": large,
            "+ sqrt lr scaling": large.replace(lr_scaling="sqrt"),
            "+ ghost batch norm": large.replace(lr_scaling="sqrt", ghost_batch_size=self.ghost_batch_size),
            REGIME_ADAPTATION: large.replace(lr_scaling="sqrt", ghost_batch_size=self.ghost_batch_size,
                                             regime_adaptation=True),
        }

    @cached_property
    def ratio_configs(self) -> dict[str, list[RunConfig]]:
        """The lr/B study: every batch size under each rule of :data:`RATIO_RULES` (seed 0)."""
        return {rule: [self.base.replace(batch_size=b, lr_scaling=scaling if b != self.small_batch else "none")
                       for b in self.batch_sizes]
                for rule, scaling in RATIO_RULES.items()}

    def with_seeds(self, config: RunConfig) -> list[RunConfig]:
        """``config`` at every seed of the design."""
        return [config.replace(seed=s) for s in self.seeds]

    @property
    def runs(self) -> list[LabelledRun]:
        """Every run, labelled by its study and row (a run in both studies is trained once)."""
        table = [LabelledRun({"study": "Table 1 (B2-B4)", "run": label}, c)
                 for label, config in self.rows.items() for c in self.with_seeds(config)]
        ratio = [LabelledRun({"study": "lr/B (J1)", "run": rule}, c)
                 for rule, group in self.ratio_configs.items() for config in group
                 for c in self.with_seeds(config)]
        return table + ratio

    def table(self) -> Styler:
        """The design as the chapter shows it."""
        return design_table(self.runs, self.bundle)


def design(namespace: Mapping[str, Any]) -> Design:
    """The chapter's design from the notebook's parameters (its ``globals()``), validated."""
    return Design(**parameters(namespace, Design))


@dataclass
class Tables:
    """What the figures and verdicts read."""

    design: Design
    curves: dict[str, pd.DataFrame]  # seed-averaged distance from initialization, per run label
    fits: dict[str, tuple[float, float, int, int]]  # a, b and window of the log law, per run label
    fit_table: pd.DataFrame  # one row per distance curve: window, log-law and power-law fits
    rows: pd.DataFrame  # one row per run of Table 1 (column "row": its label)
    row_summary: pd.DataFrame  # seed statistics per row of Table 1
    ratio_runs: pd.DataFrame  # one row per run of the lr/B study (columns "lr rule", "lr_over_batch")
    ratio_summary: pd.DataFrame  # seed statistics per rule and batch size
    distances: pd.DataFrame  # per-seed distance curves ("run" label, "seed", "step", "distance")


def _distance_configs(design: Design) -> dict[str, RunConfig]:
    """The runs whose distance curves are fitted (B1), by label (seed 0; every seed is trained)."""
    configs = {f"B = {b}": design.ratio_configs["fixed lr"][i] for i, b in enumerate(design.batch_sizes)}
    configs[f"B = {design.large_batch}, all fixes + regime adaptation"] = design.rows[REGIME_ADAPTATION]
    return configs


def _distances(design: Design, row_records: dict, ratio_records: dict) -> pd.DataFrame:
    """Every run's distance from initialization, one row per label, seed and step."""
    records = {f"B = {b}": ratio_records["fixed lr"][b] for b in design.batch_sizes}
    records[f"B = {design.large_batch}, all fixes + regime adaptation"] = row_records[REGIME_ADAPTATION]
    return pd.concat([analysis.distance_curve(r).assign(run=label, seed=r["config"]["seed"])
                      for label, group in records.items() for r in group], ignore_index=True)


def _mean_curve(distances: pd.DataFrame) -> pd.DataFrame:
    """The mean over seeds of one label's distance curves (seeds in their order in the table)."""
    curves = [group.set_index("step")["distance"] for _, group in distances.groupby("seed", sort=False)]
    return pd.concat(curves, axis=1).mean(axis=1).rename("distance").reset_index()


def _distance_fits(design: Design, distances: pd.DataFrame) -> dict[str, Any]:
    """Log-law and power-law fits of the seed-averaged distance over the high-learning-rate window:
    the fields ``curves``, ``fits`` and ``fit_table`` of :class:`Tables`."""
    curves, fits, fit_rows = {}, {}, []
    for label, config in _distance_configs(design).items():
        curve = _mean_curve(distances[distances["run"] == label])
        first = design.fit_start
        last = int(config.total_milestones[0] * (design.bundle.num_train // config.batch_size))
        window = curve[(curve["step"] >= first) & (curve["step"] <= last)]
        curves[label] = curve
        row = {"run": label, "batch size": config.batch_size, "window": f"{first}-{last}",
               "points": len(window),
               "distance at window end": float(curve.loc[curve["step"] <= last, "distance"].iloc[-1])}
        if len(window) >= 3:
            log_fit = analysis.fit_log_law(window["step"], window["distance"])
            power_fit = analysis.fit_power_law(window["step"], window["distance"])
            fits[label] = (log_fit.a, log_fit.b, first, last)
            row.update({"a": log_fit.a, "b": log_fit.b, "R2 (log law)": log_fit.r2,
                        "exponent (power law)": power_fit.exponent, "R2 (power law)": power_fit.r2})
        fit_rows.append(row)
    return {"curves": curves, "fits": fits, "fit_table": pd.DataFrame(fit_rows)}


def _summaries(rows: pd.DataFrame, ratio_runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Seed statistics per row of Table 1 and per rule and batch size of the lr/B study (the
    fields ``row_summary`` and ``ratio_summary``; diverged runs excluded and counted)."""
    return {"row_summary": analysis.seed_summary(
                rows, "row", ["test_accuracy", "train_accuracy", "train_loss", "steps", "hessian_top_eigenvalue"]),
            "ratio_summary": analysis.seed_summary(
                ratio_runs, ["lr rule", "batch_size"], ["test_accuracy", "hessian_top_eigenvalue"])}


def tables(design: Design) -> Tables:
    """Train every run (or read it from the cache) and build the tables."""
    use_threads(design.num_threads)
    row_records = {label: experiments.sweep(design.with_seeds(c)) for label, c in design.rows.items()}
    ratio_records = {rule: {c.batch_size: experiments.sweep(design.with_seeds(c)) for c in group}
                     for rule, group in design.ratio_configs.items()}
    distances = _distances(design, row_records, ratio_records)
    rows = pd.concat([analysis.records_frame(records).assign(row=label)
                      for label, records in row_records.items()], ignore_index=True)
    ratio_frames = []
    for rule, by_batch in ratio_records.items():
        for records in by_batch.values():
            frame = analysis.records_frame(records)
            frame["lr rule"] = rule
            frame["peak_lr"] = frame["lr"] * np.where(
                frame["lr_scaling"] == "linear", frame["batch_size"] / design.small_batch, 1.0)
            ratio_frames.append(frame)
    ratio_runs = pd.concat(ratio_frames, ignore_index=True)
    ratio_runs["lr_over_batch"] = ratio_runs["peak_lr"] / ratio_runs["batch_size"]
    return Tables(design=design, rows=rows, ratio_runs=ratio_runs, distances=distances,
                  **_distance_fits(design, distances), **_summaries(rows, ratio_runs))


# ----------------------------------------------------------------------------- figures and tables


def distance_figure(tables: Tables) -> None:
    """B1: distance from initialization against updates (log axis), with the log-law fits."""
    plots.save_figure(plots.distance_curves(tables.curves, tables.fits), "train_longer_distance")


def distance_fits(tables: Tables) -> Styler:
    """B1: the fits of the distance curves, one row per curve."""
    return notebook.show(tables.fit_table)


def gap_table(tables: Tables) -> Styler:
    """Hoffer et al.'s table: one row per change, mean and standard error over seeds."""
    summary, rows = tables.row_summary, tables.design.rows
    configs = [rows[r] for r in summary["row"]]
    return notebook.show(pd.DataFrame({
        "run": summary["row"],
        "batch": [c.batch_size for c in configs],
        "peak lr": [c.lr * math.sqrt(c.batch_ratio) if c.lr_scaling == "sqrt" else c.lr for c in configs],
        "epochs": [c.total_epochs for c in configs],
        "updates": summary["steps_mean"].round().astype(int),
        "test accuracy (%)": notebook.mean_sem(summary, "test_accuracy", 100),
        "train accuracy (%)": notebook.mean_sem(summary, "train_accuracy", 100),
        "train loss": notebook.mean_sem(summary, "train_loss", digits=3),
        "top eigenvalue": notebook.mean_sem(summary, "hessian_top_eigenvalue", digits=2),
        "seeds": summary["test_accuracy_n"],
        "diverged (excluded)": summary["excluded"],
    }))


def gap_figure(tables: Tables) -> None:
    """B2-B4: test accuracy and top eigenvalue per row of the table."""
    figure = plots.rows_with_error_bars(tables.row_summary, "row", {
        "test_accuracy": "test accuracy", "hessian_top_eigenvalue": "top Hessian eigenvalue"})
    plots.save_figure(figure, "train_longer_table")


def ratio_figure(tables: Tables) -> None:
    """J1: test accuracy and top eigenvalue against the batch size, per learning-rate rule."""
    figure = plots.metrics_vs_batch_size(
        tables.ratio_summary,
        {"test_accuracy": "test accuracy", "hessian_top_eigenvalue": "top Hessian eigenvalue"},
        hue="lr rule", log_metrics=("hessian_top_eigenvalue",))
    plots.save_figure(figure, "train_longer_ratio")


def ratio_table(tables: Tables) -> Styler:
    """J1: mean and standard error per rule and batch size."""
    columns = ["lr rule", "batch_size", "test_accuracy_mean", "test_accuracy_sem",
               "hessian_top_eigenvalue_mean", "hessian_top_eigenvalue_sem", "test_accuracy_n", "excluded"]
    return notebook.show(tables.ratio_summary[columns].rename(
        columns={"test_accuracy_n": "seeds", "excluded": "diverged (excluded)"}))


# ----------------------------------------------------------------------------- verdicts


def _accuracies(tables: Tables, label: str) -> pd.Series:
    """Test accuracies of one row of Table 1, indexed by seed (diverged runs are NaN: verdicts leave
    their pairs out, counted)."""
    return analysis.by_seed(tables.rows, "test_accuracy", row=label)


def _b1(tables: Tables) -> analysis.Verdict:
    fit_table = tables.fit_table
    fixed_lr_fits = fit_table[fit_table["batch size"].isin(tables.design.batch_sizes)
                              & ~fit_table["run"].str.contains("regime")]
    criterion = "log-law R2 >= 0.95 and power-law exponent < 0.5 for every fixed-lr batch size"
    if "R2 (log law)" not in fixed_lr_fits or fixed_lr_fits["R2 (log law)"].isna().any():
        return analysis.Verdict("B1", "inconclusive", criterion, "a fit window holds fewer than 3 points")
    worst_r2 = float(fixed_lr_fits["R2 (log law)"].min())
    largest_exponent = float(fixed_lr_fits["exponent (power law)"].max())
    holds = worst_r2 >= 0.95 and largest_exponent < 0.5
    return analysis.Verdict("B1", "reproduced" if holds else analysis.NOT_REPRODUCED, criterion,
                            f"lowest R2 {worst_r2:.3f}, largest exponent {largest_exponent:.2f}",
                            value=worst_r2, measured="lowest log-law R2")


def verdicts(tables: Tables) -> list[analysis.Verdict]:
    """B1, B2, B3, B4 and J1, by the criteria the chapter states.

    B2-B4 compare rows of Table 1 with the paired test by seed: at a seed every row starts
    from the same weights (``torch.manual_seed(seed)`` before the network is built; ghost
    batch norm reuses the built layers' tensors) and draws the same sequence of training-set
    permutations (a generator seeded with the seed, one permutation per epoch), cut into
    batches of its own size (regime adaptation draws more epochs of that sequence).
    """
    labels = list(tables.design.rows)
    accuracy = {label: _accuracies(tables, label) for label in labels}
    b2 = analysis.closure_verdict("B2", accuracy[labels[0]], accuracy[labels[1]], accuracy[labels[4]],
                                  paired=True)
    b3 = analysis.improvement_verdict("B3", accuracy[labels[3]], accuracy[labels[2]], paired=True)
    b4 = analysis.improvement_verdict("B4", accuracy[labels[2]], accuracy[labels[1]], paired=True)
    j1 = analysis.correlation_verdict("J1", 1 / tables.ratio_runs["lr_over_batch"],
                                      tables.ratio_runs["hessian_top_eigenvalue"],
                                      quantity="top Hessian eigenvalue", against="B / lr")
    return [_b1(tables), b2, b3, b4, j1]


def restrict(tables: Tables, seeds: list[int]) -> Tables:
    """The tables as if only ``seeds`` had been run: the runs and distance curves of those seeds,
    the mean curves, their fits and the seed statistics recomputed from them."""
    return restrict_to_seeds(
        tables, seeds, unchanged={"design": "the parameters"},
        recompute=lambda kept: {**_distance_fits(kept.design, kept.distances),
                                **_summaries(kept.rows, kept.ratio_runs)})


def record_verdicts(tables: Tables) -> Styler:
    """Write the chapter's verdict file and show its verdicts, each recomputed with every seed left
    out in turn (B1: the fits of the mean distance curves; B2-B4: the runs of Table 1; J1: the runs
    of the lr/B study)."""
    return analysis.record_verdicts(CHAPTER, lambda kept: verdicts(restrict(tables, kept)), tables.design.seeds)


# ----------------------------------------------------------------------------- prose


def prose(tables: Tables) -> dict[str, Any]:
    """The numbers the chapter's text quotes (glued by name)."""
    design, rows, fit_table = tables.design, tables.rows, tables.fit_table
    b1, b2, b3, b4, j1 = verdicts(tables)
    ratio_ok = tables.ratio_runs[tables.ratio_runs["status"] != "diverged"]

    def row_mean(label: str, column: str) -> float:
        return float(rows.loc[rows["row"] == label, column].mean())

    def ratio_mean(rule: str, batch: int, column: str) -> float:
        part = ratio_ok[(ratio_ok["lr rule"] == rule) & (ratio_ok["batch_size"] == batch)]
        return float(part[column].mean()) if len(part) else math.nan

    small_fit = fit_table.iloc[0]
    end_distance = dict(zip(fit_table["run"], fit_table["distance at window end"]))
    values = {
        "small_batch": design.small_batch, "large_batch": design.large_batch,
        "batch_ratio": float(design.large_batch / design.small_batch), "epochs": design.epochs,
        "ra_epochs": float(design.rows[REGIME_ADAPTATION].total_epochs), "num_seeds": len(design.seeds),
        "lr": float(design.lr), "ghost_batch_size": design.ghost_batch_size,
        "clip": float(design.clip_grad_norm), "fit_start": design.fit_start,
        "verdict_b1": b1.outcome, "verdict_b2": b2.outcome, "verdict_b3": b3.outcome,
        "verdict_b4": b4.outcome, "verdict_ratio": j1.outcome,
        "b1_evidence": b1.evidence, "b2_evidence": b2.evidence, "b3_evidence": b3.evidence,
        "b4_evidence": b4.evidence, "ratio_evidence": j1.evidence,
        "fit_b_small": float(small_fit.get("b", math.nan)),
        "fit_r2_small": float(small_fit.get("R2 (log law)", math.nan)),
        "fit_exp_small": float(small_fit.get("exponent (power law)", math.nan)),
        "diverged_ratio_runs": int((tables.ratio_runs["status"] == "diverged").sum()),
        "distance_small": end_distance.get(f"B = {design.small_batch}", math.nan),
        "distance_large": end_distance.get(f"B = {design.large_batch}", math.nan),
        "distance_adapted": end_distance[f"B = {design.large_batch}, all fixes + regime adaptation"],
        "ratio_small_batch": design.batch_sizes[0], "ratio_large_batch": design.batch_sizes[-1],
    }
    for index, label in enumerate(design.rows):
        values[f"row{index}_test"] = row_mean(label, "test_accuracy")
        values[f"row{index}_steps"] = row_mean(label, "steps")
        values[f"row{index}_eig"] = row_mean(label, "hessian_top_eigenvalue")
    for key, rule in (("fixed", "fixed lr"), ("const", "lr/B constant")):
        for which, batch in (("small", design.batch_sizes[0]), ("large", design.batch_sizes[-1])):
            values[f"{key}_test_{which}"] = ratio_mean(rule, batch, "test_accuracy")
            values[f"{key}_eig_{which}"] = ratio_mean(rule, batch, "hessian_top_eigenvalue")
    return values
