"""Chapter 02, "Large batches find sharp minima?": curvature and sharpness against batch size.

Claims A1, A5 (Yao et al. 2018) and E1 (Keskar et al. 2017). The design is a
batch-size sweep of two networks under two stopping rules (fixed epochs; a training-loss
threshold), every run measuring the top Hessian eigenvalues and the trace of its final
weights; Keskar's sharpness is measured afterwards on each saved network. The two ends
of the sweep of one network are then compared in detail: interpolation, loss planes,
Hessian eigen-directions, spectral densities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping

import pandas as pd
import torch
from pandas.io.formats.style import Styler
from torch import nn

from largebatch import analysis, data, experiments, hessian, landscape, models as model_zoo, notebook, plots
from largebatch.config import RunConfig
from largebatch.studies.common import LabelledRun, design_table, parameters, restrict_to_seeds, use_threads

CHAPTER = "02_sharp_minima"
RULES = {"epochs": "fixed epochs", "threshold": "loss threshold"}  # stopping rule -> its name in tables
SIDES = ("small", "large")  # the two ends of the sweep compared in detail
_POSITIVE = ("batch_sizes", "epochs", "target_train_loss", "max_epochs", "lr", "eval_every", "hessian_top_k",
             "hessian_tol", "trace_probes", "keskar_eps", "keskar_iterations", "landscape_points",
             "landscape_radius", "eigen_radius", "density_runs", "density_steps")


@dataclass(frozen=True)
class Design:
    """The chapter's parameters (see the notebook's parameters cell), checked on construction."""

    dataset: str
    models: list[str]
    model: str
    num_samples: int
    batch_sizes: list[int]
    epochs: int
    target_train_loss: float
    max_epochs: int
    lr: float
    momentum: float
    seeds: list[int]
    eval_every: int
    hessian_top_k: int
    hessian_tol: float
    trace_probes: int
    keskar_eps: float
    keskar_iterations: int
    landscape_points: int
    landscape_radius: float
    eigen_radius: float
    density_runs: int
    density_steps: int
    detail_rule: str
    num_threads: int
    augmentation: str

    def __post_init__(self) -> None:
        notebook.check_choice("dataset", self.dataset, data.DATASETS)
        for name in self.models:
            notebook.check_choice("models", name, list(model_zoo.MODELS))
        notebook.check_choice("model", self.model, self.models)
        notebook.require(len(self.models) == 2 and self.models[0] != self.models[1],
                         "parameter models must name two different networks (the text compares two), "
                         f"got {self.models!r}")
        notebook.check_choice("detail_rule", self.detail_rule, list(RULES))
        for name in _POSITIVE:
            notebook.check_positive(name, getattr(self, name))
        notebook.require(sorted(set(self.batch_sizes)) == list(self.batch_sizes) and len(self.batch_sizes) >= 2,
                         f"parameter batch_sizes must hold at least two increasing sizes, got {self.batch_sizes!r}")
        notebook.require(bool(self.seeds) and min(self.seeds) >= 0 and len(set(self.seeds)) == len(self.seeds),
                         "parameter seeds must be a non-empty list of distinct integers >= 0, "
                         f"got {self.seeds!r}")
        notebook.require(self.max_epochs >= self.epochs,
                         f"parameter max_epochs must be >= epochs ({self.epochs}), got {self.max_epochs}")
        notebook.require(self.num_threads >= 0, "parameter num_threads must be >= 0 (0: torch's default), "
                         f"got {self.num_threads}")
        self.bundle  # the largest batch must fit the data

    @cached_property
    def configs(self) -> dict[tuple[str, str], list[RunConfig]]:
        """(network, stopping rule) -> its runs, batch sizes outer, seeds inner."""
        base = experiments.RunConfig(
            dataset=self.dataset, num_samples=self.num_samples, lr=self.lr, momentum=self.momentum,
            eval_every=self.eval_every, hessian_top_k=self.hessian_top_k, hessian_trace=True,
            hessian_tol=self.hessian_tol, hessian_trace_probes=self.trace_probes,
            augmentation=self.augmentation)
        rule_changes = {"epochs": {"epochs": self.epochs},
                        "threshold": {"epochs": self.max_epochs, "target_train_loss": self.target_train_loss}}
        configs = {}
        for name in self.models:
            for rule, changes in rule_changes.items():
                bottom = 1 if name == self.model and rule == "threshold" else 0  # smallest eigenvalue, for A5
                model_base = base.replace(model=name, hessian_bottom_k=bottom, **changes)
                configs[name, rule] = analysis.batch_size_sweep(model_base, self.batch_sizes, self.seeds)
        return configs

    @cached_property
    def bundle(self) -> data.DataBundle:
        """The data, checked against the largest batch."""
        return experiments.validate(self.configs[self.model, "epochs"][-1])

    @property
    def detail(self) -> dict[str, RunConfig]:
        """The two solutions compared in detail: smallest and largest batch, first seed."""
        group = self.configs[self.model, self.detail_rule]
        return {"small": group[0], "large": group[-1]}

    @property
    def runs(self) -> list[LabelledRun]:
        """Every run, labelled by model (network), stopping rule, batch size and seed."""
        return [LabelledRun({"model": name, "stopping rule": RULES[rule], "batch_size": c.batch_size,
                             "seed": c.seed}, c)
                for (name, rule), group in self.configs.items() for c in group]

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
    runs: pd.DataFrame  # one row per run: metrics, "rule", "setting", "keskar_sharpness", "usable"
    summary: pd.DataFrame  # seed statistics of the usable runs per setting and batch size
    saddles: pd.DataFrame  # usable loss-threshold runs of the detailed network, with "negative_ratio"
    status: dict[str, str]  # side -> status of the run compared in detail
    interpolation: pd.DataFrame  # loss and accuracy along the line between the two solutions
    random_planes: dict[str, pd.DataFrame]  # side -> loss on a random filter-normalized plane
    eigen_planes: dict[str, pd.DataFrame]  # side -> loss on the plane of the top two eigenvectors
    eigen_lines: dict[str, dict[str, list]]  # side -> loss along the top eigenvector ("alpha", "loss")
    densities: dict[str, dict[str, Any]]  # side -> spectral density ("grid", "density", "nodes", "weights")
    negative_mass: dict[str, float]  # side -> spectral mass below -1% of the top eigenvalue

    def label(self, side: str) -> str:
        return f"B = {self.design.detail[side].batch_size}"


def _keskar(design: Design, config: RunConfig, bundles: dict[str, data.DataBundle]) -> float:
    """Keskar's sharpness of a finished run, cached beside its record."""
    def compute() -> dict[str, float]:
        result = landscape.keskar_sharpness(experiments.load_model(config), bundles[config.model].train.tensors,
                                            eps=design.keskar_eps, max_iter=design.keskar_iterations,
                                            seed=config.seed)
        return {"sharpness": result.value, "evaluations": result.num_evals}

    name = f"keskar_eps{design.keskar_eps:g}_iter{design.keskar_iterations}"
    return analysis.measure(config, name, compute)["sharpness"]


def _runs_frame(design: Design) -> pd.DataFrame:
    """Train the sweep and tabulate it, with Keskar's sharpness and which runs are usable."""
    records = {key: experiments.sweep(group) for key, group in design.configs.items()}
    bundles = {name: experiments.load_data(design.configs[name, "epochs"][0]) for name in design.models}
    frames = []
    for (name, rule), group in records.items():
        frame = analysis.records_frame(group)
        frame["rule"] = RULES[rule]
        frame["setting"] = f"{name}, {RULES[rule]}"
        frame["keskar_sharpness"] = [_keskar(design, c, bundles) if r["status"] != "diverged" else math.nan
                                     for c, r in zip(design.configs[name, rule], group)]
        frames.append(frame)
    runs = pd.concat(frames, ignore_index=True)
    # kept: every fixed-epoch run and the threshold runs that reached the target; diverged runs
    # stay in (their metrics are NaN) so that the statistics exclude them and count them
    runs["usable"] = (runs["status"] == "diverged") | (runs["rule"] == RULES["epochs"]) | runs["reached_target"]
    return runs


def _saddles(design: Design, usable: pd.DataFrame) -> pd.DataFrame:
    saddles = usable[(usable["model"] == design.model) & (usable["rule"] == RULES["threshold"])].copy()
    saddles["negative_ratio"] = ((-saddles["hessian_smallest_eigenvalue"]).clip(lower=0)
                                 / saddles["hessian_top_eigenvalue"])
    return saddles


def _planes(design: Design, networks: dict[str, nn.Module], train: Any) -> tuple[dict, dict, dict]:
    """Random planes, top-eigenvector planes and lines of the two detailed solutions (cached)."""
    detail, points = design.detail, design.landscape_points
    grid = torch.linspace(-design.landscape_radius, design.landscape_radius, points)
    eigen_grid = torch.linspace(-design.eigen_radius, design.eigen_radius, points)
    line_grid = torch.linspace(-design.eigen_radius, design.eigen_radius, 2 * points + 1)

    def random_plane(side: str) -> dict[str, list]:
        directions = [landscape.random_direction(networks[side], seed=1000 + i) for i in range(2)]
        return landscape.loss_along_directions(networks[side], train, directions, (grid, grid)).to_dict("list")

    def eigenvectors(side: str) -> list[torch.Tensor]:
        def compute() -> dict[str, Any]:
            result = hessian.top_eigenvalues(networks[side], train, k=2, tol=design.hessian_tol,
                                             seed=detail[side].seed)
            return {"eigenvalues": list(result.eigenvalues), "eigenvectors": result.eigenvectors}

        return analysis.measure(detail[side], f"top2_eigenvectors_tol{design.hessian_tol:g}", compute)[
            "eigenvectors"]

    def eigen_plane(side: str) -> dict[str, list]:
        directions = [landscape.top_eigenvector_direction(networks[side], v) for v in eigenvectors(side)]
        return landscape.loss_along_directions(networks[side], train, directions,
                                               (eigen_grid, eigen_grid)).to_dict("list")

    def eigen_line(side: str) -> dict[str, list]:
        direction = landscape.top_eigenvector_direction(networks[side], eigenvectors(side)[0])
        return landscape.loss_along_directions(networks[side], train, [direction], line_grid).to_dict("list")

    suffix = f"{points}pts"
    random_planes = {side: pd.DataFrame(analysis.measure(
        detail[side], f"random_plane_r{design.landscape_radius:g}_{suffix}", lambda: random_plane(side)))
        for side in SIDES}
    eigen_planes = {side: pd.DataFrame(analysis.measure(
        detail[side], f"eigen_plane_r{design.eigen_radius:g}_{suffix}", lambda: eigen_plane(side)))
        for side in SIDES}
    eigen_lines = {side: analysis.measure(
        detail[side], f"eigen_line_r{design.eigen_radius:g}_{2 * points + 1}pts", lambda: eigen_line(side))
        for side in SIDES}
    return random_planes, eigen_planes, eigen_lines


def _densities(design: Design, networks: dict[str, nn.Module], train: Any) -> dict[str, dict[str, Any]]:
    """Spectral densities of the two detailed solutions, on one grid and kernel width (cached)."""
    finals = {side: experiments.load_record(c)["final"] for side, c in design.detail.items()}
    top = max(f["hessian_top_eigenvalue"] for f in finals.values())
    bottom = min(f.get("hessian_smallest_eigenvalue", -0.05 * top) for f in finals.values())
    sigma = 0.01 * (top - bottom)  # one kernel width and one grid for both densities
    grid = torch.linspace(bottom - 5 * sigma, top + 5 * sigma, 1000, dtype=torch.float64)

    def density(side: str) -> dict[str, Any]:
        def compute() -> dict[str, Any]:
            result = hessian.spectral_density(networks[side], train, num_runs=design.density_runs,
                                              num_steps=design.density_steps, grid=grid, sigma=sigma,
                                              seed=design.detail[side].seed)
            return {"grid": result.grid, "density": result.density, "nodes": result.nodes,
                    "weights": result.weights}

        name = f"density_{design.density_runs}x{design.density_steps}_grid{bottom:.4g}_{top:.4g}"
        return analysis.measure(design.detail[side], name, compute)

    return {side: density(side) | {"top": finals[side]["hessian_top_eigenvalue"]} for side in SIDES}


def _summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Seed statistics of the usable runs per setting and batch size."""
    return analysis.seed_summary(runs[runs["usable"]], ["setting", "batch_size"], [
        "train_accuracy", "test_accuracy", "generalization_gap", "hessian_top_eigenvalue", "hessian_trace",
        "keskar_sharpness"])


def tables(design: Design) -> Tables:
    """Train every run (or read it from the cache), make the measurements, build the tables."""
    use_threads(design.num_threads)
    runs = _runs_frame(design)
    usable = runs[runs["usable"]]
    summary = _summary(runs)
    detail = design.detail
    status = {side: experiments.load_record(c)["status"] for side, c in detail.items()}
    networks = {side: experiments.load_model(c) for side, c in detail.items()}
    bundle = experiments.load_data(design.configs[design.model, "epochs"][0])
    splits = {"train": bundle.train.tensors, "test": bundle.test.tensors}
    interpolation = pd.DataFrame(analysis.measure(
        detail["large"], f"interpolation_from_{detail['small'].key()}",
        lambda: landscape.interpolate(networks["small"], networks["large"], splits).to_dict("list")))
    random_planes, eigen_planes, eigen_lines = _planes(design, networks, bundle.train.tensors)
    densities = _densities(design, networks, bundle.train.tensors)
    # spectral mass clearly below zero: eigenvalues under -1% of that solution's top eigenvalue
    negative_mass = {side: float((d["weights"] * (d["nodes"] < -0.01 * d["top"])).sum(dim=1).mean())
                     for side, d in densities.items()}
    return Tables(design, runs, summary, _saddles(design, usable), status, interpolation, random_planes,
                  eigen_planes, eigen_lines, densities, negative_mass)


# ----------------------------------------------------------------------------- figures and tables


def reach_table(tables: Tables) -> Styler:
    """Loss-threshold rule: epochs and updates to the target, and the share of seeds that reached it."""
    threshold_runs = tables.runs[tables.runs["rule"] == RULES["threshold"]]
    reach = analysis.seed_summary(threshold_runs, ["model", "batch_size"],
                                  ["epochs_run", "steps", "reached_target"])
    return notebook.show(reach[["model", "batch_size", "epochs_run_mean", "steps_mean", "reached_target_mean"]]
                         .rename(columns={"epochs_run_mean": "epochs (mean)", "steps_mean": "updates (mean)",
                                          "reached_target_mean": "share of seeds at target"}))


def accuracy_table(tables: Tables) -> Styler:
    """Means over seeds per setting and batch size: accuracy, curvature, sharpness."""
    shown = ["train_accuracy", "test_accuracy", "hessian_top_eigenvalue", "hessian_trace", "keskar_sharpness"]
    columns = ["setting", "batch_size", *[f"{c}_mean" for c in shown], "test_accuracy_n", "excluded"]
    return notebook.show(tables.summary[columns].rename(columns={
        **{f"{c}_mean": c.replace("_", " ") for c in shown}, "test_accuracy_n": "seeds",
        "excluded": "diverged (excluded)"}))


def accuracy_figure(tables: Tables) -> None:
    """Training and test accuracy and their gap against the batch size."""
    figure = plots.metrics_vs_batch_size(tables.summary, {
        "train_accuracy": "training accuracy", "test_accuracy": "test accuracy",
        "generalization_gap": "train - test accuracy"}, hue="setting")
    plots.legend_below(figure)
    plots.save_figure(figure, "sharp_minima_accuracy")


def hessian_figure(tables: Tables) -> None:
    """A1: top eigenvalue and trace of the Hessian against the batch size (log axes)."""
    figure = plots.metrics_vs_batch_size(
        tables.summary, {"hessian_top_eigenvalue": "top Hessian eigenvalue",
                         "hessian_trace": "Hessian trace (Hutchinson)"},
        hue="setting", log_metrics=("hessian_top_eigenvalue", "hessian_trace"))
    plots.legend_below(figure, ncol=2)
    plots.save_figure(figure, "sharp_minima_hessian")


def keskar_figure(tables: Tables) -> None:
    """E1: Keskar's sharpness against the batch size (log axis)."""
    figure = plots.metrics_vs_batch_size(
        tables.summary, {"keskar_sharpness": f"Keskar sharpness (eps = {tables.design.keskar_eps:g})"},
        hue="setting", log_metrics=("keskar_sharpness",))
    plots.legend_below(figure, ncol=2)
    plots.save_figure(figure, "sharp_minima_keskar")


def interpolation_figure(tables: Tables) -> None:
    """Loss and accuracy along the line from the small-batch to the large-batch solution."""
    figure = plots.interpolation_curves(tables.interpolation, labels=(tables.label("small"), tables.label("large")))
    plots.save_figure(figure, "sharp_minima_interpolation")


def random_planes_figure(tables: Tables) -> None:
    """Training loss on a random filter-normalized plane through each solution."""
    figure = plots.loss_surfaces({tables.label(s): p for s, p in tables.random_planes.items()},
                                 xlabel="alpha (random direction 1)", ylabel="beta (random direction 2)")
    plots.save_figure(figure, "sharp_minima_random_planes")


def eigen_planes_figure(tables: Tables) -> None:
    """Training loss on the plane of each solution's top two Hessian eigenvectors."""
    figure = plots.loss_surfaces({tables.label(s): p for s, p in tables.eigen_planes.items()},
                                 xlabel="distance along top eigenvector v1",
                                 ylabel="distance along eigenvector v2")
    plots.save_figure(figure, "sharp_minima_eigen_planes")


def eigen_lines_figure(tables: Tables) -> None:
    """Training loss along each solution's top Hessian eigenvector."""
    lines = {tables.label(s): (c["alpha"], c["loss"]) for s, c in tables.eigen_lines.items()}
    figure = plots.loss_along_lines(lines, xlabel="distance along the top Hessian eigenvector v1 (weight space)")
    figure.axes[0].set_ylabel("training loss (cross-entropy)")
    plots.save_figure(figure, "sharp_minima_eigen_lines")


def density_figure(tables: Tables) -> None:
    """Spectral densities of the Hessians of both solutions (log density axis)."""
    figure = plots.spectral_densities({tables.label(s): (d["grid"], d["density"])
                                       for s, d in tables.densities.items()})
    plots.save_figure(figure, "sharp_minima_spectral_density")


def saddle_table(tables: Tables) -> Styler:
    """A5: smallest and top eigenvalue per batch size, loss-threshold runs of the detailed network."""
    summary = analysis.seed_summary(tables.saddles, "batch_size", [
        "hessian_smallest_eigenvalue", "hessian_top_eigenvalue", "negative_ratio"])
    columns = ["batch_size", "hessian_smallest_eigenvalue_mean", "hessian_top_eigenvalue_mean",
               "negative_ratio_mean", "negative_ratio_n", "excluded"]
    return notebook.show(summary[columns].rename(columns={
        "hessian_smallest_eigenvalue_mean": "smallest eigenvalue", "hessian_top_eigenvalue_mean": "top eigenvalue",
        "negative_ratio_mean": "|smallest| / top", "negative_ratio_n": "runs", "excluded": "diverged (excluded)"}))


# ----------------------------------------------------------------------------- verdicts


def _setting_verdicts(tables: Tables, claim: str, column: str, quantity: str) -> list[analysis.Verdict]:
    usable = tables.runs[tables.runs["usable"]]
    return [analysis.correlation_verdict(claim, group["batch_size"], group[column], quantity=quantity,
                                         setting=f"{name}, {rule}")
            for (name, rule), group in usable.groupby(["model", "rule"], sort=False)]


def _a5(tables: Tables) -> analysis.Verdict:
    largest = tables.saddles[tables.saddles["batch_size"] == tables.design.batch_sizes[-1]].dropna(
        subset=["negative_ratio"])
    criterion = "|smallest eigenvalue| <= 0.1 x top eigenvalue for every largest-batch run at the loss threshold"
    if largest.empty:
        return analysis.Verdict("A5", "inconclusive", criterion, "no largest-batch run reached the loss threshold")
    worst = float(largest["negative_ratio"].max())
    return analysis.Verdict("A5", "reproduced" if worst <= 0.1 else analysis.NOT_REPRODUCED, criterion,
                            f"largest ratio {worst:.2g} over {len(largest)} runs", value=worst,
                            measured="largest |smallest| / top eigenvalue")


def verdicts(tables: Tables) -> list[analysis.Verdict]:
    """A1 and E1 per setting and overall, then A5, by the criteria the chapter states."""
    a1_settings = _setting_verdicts(tables, "A1", "hessian_top_eigenvalue", "top Hessian eigenvalue")
    e1_settings = _setting_verdicts(tables, "E1", "keskar_sharpness", "Keskar sharpness")
    return [*a1_settings, analysis.combine_verdicts("A1", a1_settings),
            *e1_settings, analysis.combine_verdicts("E1", e1_settings), _a5(tables)]


_DETAIL = "the two solutions compared in detail (first seed), which no verdict reads"


def restrict(tables: Tables, seeds: list[int]) -> Tables:
    """The tables as if only ``seeds`` had been run: the runs and saddle rows of those seeds, their
    summary recomputed; the detailed comparison (one seed) as it is."""
    return restrict_to_seeds(tables, seeds, recompute=lambda kept: {"summary": _summary(kept.runs)},
                             unchanged={"design": "the parameters", **{name: _DETAIL for name in (
                                 "status", "interpolation", "random_planes", "eigen_planes", "eigen_lines",
                                 "densities", "negative_mass")}})


def record_verdicts(tables: Tables) -> Styler:
    """Write the chapter's verdict file and show its verdicts, each recomputed with every seed left
    out in turn (A1, E1: the runs of the sweep; A5: the loss-threshold runs at the largest batch)."""
    return analysis.record_verdicts(CHAPTER, lambda kept: verdicts(restrict(tables, kept)), tables.design.seeds)


# ----------------------------------------------------------------------------- prose


def prose(tables: Tables) -> dict[str, Any]:
    """The numbers the chapter's text quotes (glued by name)."""
    design, runs, saddles = tables.design, tables.runs, tables.saddles
    usable = runs[runs["usable"]]
    found = verdicts(tables)
    overall = {v.claim: v for v in found if not v.setting}
    small_b, large_b = design.batch_sizes[0], design.batch_sizes[-1]
    num_train = design.bundle.num_train

    def mean_at(frame: pd.DataFrame, rule: str, name: str, batch: int, column: str) -> float:
        rows = frame[(frame["rule"] == RULES[rule]) & (frame["model"] == name) & (frame["batch_size"] == batch)]
        return float(rows[column].mean()) if len(rows) else math.nan

    def evidence(claim: str, name: str, rule: str) -> str:
        matches = [v.evidence for v in found if v.claim == claim and v.setting == f"{name}, {RULES[rule]}"]
        return matches[0] if matches else "no usable runs"

    values = {
        "small_batch": small_b, "large_batch": large_b, "num_seeds": len(design.seeds),
        "epochs": design.epochs, "target_loss": float(design.target_train_loss), "max_epochs": design.max_epochs,
        "lr": float(design.lr), "num_runs": len(runs), "detail_model": design.model,
        "dataset_name": design.bundle.name, "detail_rule": RULES[design.detail_rule],
        "largest_share": ("the whole training set" if large_b == num_train
                          else f"{large_b / num_train:.0%} of the {num_train} training samples"),
        **{f"verdict_{c.lower()}": overall[c].outcome for c in ("A1", "E1", "A5")},
        **{f"{c.lower()}_evidence": overall[c].evidence for c in ("A1", "E1", "A5")},
        "missed_target": int((~runs.loc[runs["rule"] == RULES["threshold"], "reached_target"]).sum()),
        "detail_small_status": tables.status["small"], "detail_large_status": tables.status["large"],
        "negative_mass_small": tables.negative_mass["small"], "negative_mass_large": tables.negative_mass["large"],
    }
    for index, name in enumerate(design.models):
        for rule in RULES:
            tag = f"m{index}_{rule}"
            values[f"{tag}_name"] = name
            values[f"{tag}_a1"] = evidence("A1", name, rule)
            values[f"{tag}_e1"] = evidence("E1", name, rule)
            for which, batch in (("small", small_b), ("large", large_b)):
                values[f"{tag}_test_{which}"] = mean_at(usable, rule, name, batch, "test_accuracy")
                values[f"{tag}_eig_{which}"] = mean_at(usable, rule, name, batch, "hessian_top_eigenvalue")
                values[f"{tag}_keskar_{which}"] = mean_at(usable, rule, name, batch, "keskar_sharpness")
                values[f"{tag}_steps_{which}"] = mean_at(runs, rule, name, batch, "steps")
    for which, batch in (("small", small_b), ("large", large_b)):
        values[f"ratio_{which}"] = mean_at(saddles, "threshold", design.model, batch, "negative_ratio")
        values[f"lmin_{which}"] = mean_at(saddles, "threshold", design.model, batch, "hessian_smallest_eigenvalue")
    return values
