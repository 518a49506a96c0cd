"""Chapter 01's helpers (largebatch.studies.hessian_tour) without papermill: the design from the
notebook's parameters, errors that name them, the tables and glued numbers, the page's code."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from types import SimpleNamespace

import jupytext
import pandas as pd
import pytest
import torch
from pandas.io.formats.style import Styler

from largebatch import hessian, reproduce
from largebatch import hessian_diagnostics as diag
from largebatch.config import ConfigError
from largebatch.studies import hessian_tour as tour

from test_studies import namespace

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "notebooks" / "01_hessian.py"
GLUED = re.compile(r"\{glue:text\}`(\w+)")
COLUMN = 77  # characters of code the book's code column shows without a scroll bar at 1280 px
TINY = {"epochs": 1, "tiny_epochs": 1, "hessian_samples": 64, "chunk_size": 32, "seeds": [0, 1], "top_k": 2,
        "tol": 0.1, "trace_budgets": [3, 6], "trace_matvecs": 6, "slq_runs": 1, "slq_steps": 5,
        "probe_batch_sizes": [16, 32], "timing_samples": 16, "timing_repeats": 1, "tiny_width": 4}


def test_design_fields_are_the_notebook_parameters():
    fields = {f.name for f in dataclasses.fields(tour.Design)}
    assert fields == reproduce.declared_parameters(SOURCE.with_suffix(".ipynb"))
    assert tour.CHAPTER == SOURCE.stem


@pytest.mark.parametrize("changes, message", [
    ({"seeds": []}, "parameter seeds must be a list of distinct integers >= 0"),
    ({"model": "vgg99"}, "parameter model must be one of"),
    ({"tiny_dataset": "imagenet"}, "parameter tiny_dataset must be one of"),
    ({"tiny_width": 0}, "tiny_width"),
    ({"num_threads": -1}, "parameter num_threads must be >= 0, got -1"),
    ({"trace_matvecs": 2}, "parameters trace_matvecs and trace_budgets must be >= 3"),
    ({"hessian_samples": 10_000}, "parameter hessian_samples must be <= the training set size 480"),
    ({"probe_batch_sizes": [32, 256], "hessian_samples": 200}, "parameter probe_batch_sizes must be <= 200"),
    ({"timing_samples": 1000}, "parameter timing_samples must be <= 480"),
])
def test_bad_parameters_are_named(changes, message):
    with pytest.raises(ConfigError) as failure:
        tour.design(namespace("01_hessian", **changes))
    assert message in str(failure.value)


def test_the_smoke_design():
    design = tour.design(namespace("01_hessian"))
    assert design.num_hessian == 480 == len(design.hessian_set)
    assert design.tiny_config.model_options == {"width": design.tiny_width}
    assert design.cnn_config.seed == design.tiny_config.seed == design.seeds[0]
    assert design.reference_batch == 128
    assert design.describe() == ("tiny MLP on mnist1d: Hessian over its 480 training samples\n"
                                 "mnist1d_cnn on mnist1d: Hessian over 480 of 480 training samples")
    modes = tour.bn_modes(design, design.hessian_set.tensors)
    assert list(modes) == ["eval mode (running statistics)", "train mode, batches of 128",
                           "train mode, one batch of 480"]
    assert [eval_mode for _, eval_mode in modes.values()] == [True, False, False]
    assert len(modes["train mode, batches of 128"][0]) == 4  # 480 samples in chunks of 128
    assert list(tour.bn_modes(dataclasses.replace(design, chunk_size=100), None)) == list(modes)[:2]


def test_tables_and_numbers_from_known_frames():
    convergence = {(k, m): pd.DataFrame({"seed": [0, 0, 1, 1], "matvecs": [1, 2, 1, 2],
                                         "error": [1e-2, 1e-4, 1e-2, 1e-2] if m == "power" else [1e-4] * 4})
                   for k in (1, 3) for m in ("lanczos", "power")}
    needed = tour.products_needed(convergence, 1e-3)
    assert needed.index.name == "estimate"
    assert list(needed.index) == ["top-1 lanczos", "top-1 power", "top-3 lanczos", "top-3 power"]
    assert list(needed.columns) == ["median", "seed 0", "seed 1"]
    assert needed.loc["top-1 lanczos"].tolist() == [1.0, 1.0, 1.0]
    spread = pd.DataFrame({"batch_size": [32, 32, 128, 128], "eigenvalue": [1.0, 4.0, 2.0, 2.0]})
    table = tour.spread_table(spread, full_top=2.0)
    assert table.loc[32, "max / min"] == 4.0 and table.loc[32, "median / full"] == 1.25
    trace = pd.DataFrame({"method": ["hutchinson", "hutch++"] * 2, "budget": [3, 3, 6, 6], "seed": 0,
                          "error": [0.4, 0.2, 0.1, 0.01]})
    assert tour.trace_table(trace).loc[6, "hutch++"] == 0.01
    result = SimpleNamespace(eigenvalues=[3.0], num_matvecs=7)
    bn = tour.bn_table({"eval mode (running statistics)": (result, 0.5),
                        "train mode, batches of 128": (SimpleNamespace(eigenvalues=[1.5], num_matvecs=9), 0.4)})
    assert bn.loc["train mode, batches of 128"].tolist() == [1.5, 9, 0.4]
    timings = pd.DataFrame({"gradient": [0.002], "hvp (recomputed graph)": [0.006], "hvp (cached graph)": [0.004]},
                           index=["CNN"])
    shown = tour.timing_table(timings).data
    assert shown["hvp (cached graph) / gradient"].tolist() == [2.0] and shown["gradient (ms)"].tolist() == [2.0]
    assert shown["network"].tolist() == ["CNN"]


def test_the_page_shows_the_hessian_calls_and_fits_the_code_column():
    cells = [c for c in jupytext.read(SOURCE).cells if c.cell_type == "code"]
    parameters_cell = next(c for c in cells if "parameters" in c.metadata.get("tags", []))
    assert "hide-input" in parameters_cell.metadata["tags"]
    shown = [c.source for c in cells if not {"remove-cell", "remove-input", "hide-input"}
             & set(c.metadata.get("tags", []))]
    assert not [s for s in shown if re.search(r"^\s*(def|class) ", s, re.M)]
    lines = [line for source in shown for line in source.splitlines() if line.strip()]
    assert len(lines) <= 120
    assert not [line for line in lines if len(line) > COLUMN]
    code = "\n".join(shown)
    for call in ("hessian.exact_hessian", "hessian.HessianOperator", "hessian.MatrixOperator",
                 "hessian.top_eigenvalues", "hessian.spectral_density", "diag.eigen_convergence",
                 "diag.trace_convergence", "diag.batch_eigenvalue_spread", "diag.estimator_costs",
                 "eval_mode=False"):
        assert call in code, f"chapter 01 no longer shows {call}"


@pytest.mark.slow
def test_every_section_on_tiny_networks(tmp_path, monkeypatch):
    """The chapter's computations end to end on tiny runs: every table, figure and glued number."""
    monkeypatch.setenv("LARGEBATCH_CACHE_DIR", str(tmp_path / "cache"))
    design = tour.design(namespace("01_hessian", **TINY))
    nets = tour.train_networks(design)
    assert isinstance(nets.table(), Styler)
    timings = tour.product_timings(nets)
    assert isinstance(tour.timing_table(timings), Styler)
    dense = hessian.exact_hessian(nets.tiny, nets.tiny_data)
    eigenvalues = torch.linalg.eigvalsh(dense).flip(0)
    matrix = hessian.MatrixOperator(dense)
    convergence = {(k, m): diag.eigen_convergence(matrix, eigenvalues[:k].tolist(), method=m, seeds=[0],
                                                  tol=1e-8, max_iter=None if m == "lanczos" else 200)
                   for k in (1, design.top_k) for m in ("lanczos", "power")}
    tour.eigen_convergence_figure(convergence, 1e-3)
    needed = tour.products_needed(convergence, 1e-3)
    trace_frame = diag.trace_convergence(matrix, float(dense.trace()), design.trace_budgets, seeds=[0])
    tour.trace_figure(trace_frame)
    density = hessian.spectral_density(matrix, num_runs=1, num_steps=5, seed=0)
    exact_density = diag.broadened_density(eigenvalues, density.grid, density.sigma)
    tour.density_figure(density, exact_density, eigenvalues)
    full_data = diag.chunks(design.hessian_set.tensors, design.chunk_size)
    full_top = hessian.top_eigenvalues(nets.cnn, full_data, k=1, tol=design.tol, seed=0)
    spread = diag.batch_eigenvalue_spread(nets.cnn, design.hessian_set, design.probe_batch_sizes, [0, 1],
                                          tol=design.tol)
    tour.spread_figure(design, spread, full_top.eigenvalues[0])
    rows = {label: (full_top if eval_mode else hessian.top_eigenvalues(nets.cnn, samples, k=1, tol=design.tol,
                                                                         eval_mode=False),
                    diag.mean_loss(nets.cnn, samples, eval_mode=eval_mode))
            for label, (samples, eval_mode) in tour.bn_modes(design, full_data).items()}
    costs = diag.estimator_costs(nets.cnn, full_data, k=design.top_k, tol=design.tol, trace_matvecs=6,
                                 reference=[1.0] * design.top_k)
    shown = tour.cost_table(costs)
    assert isinstance(shown, Styler) and "converged" not in shown.data and "relative error" in shown.data
    assert len(list((tmp_path / "cache" / "figures").glob("*.png"))) == 4
    glued = {**tour.networks_prose(nets), **tour.timing_prose(design, timings),
             **tour.spectrum_prose(design, dense, eigenvalues, 0.0),
             **tour.eigen_prose(design, needed, eigenvalues, 1e-3),
             **tour.trace_prose(design, tour.trace_table(trace_frame)),
             **tour.slq_prose(nets, density, exact_density, tour.slq_moments(density, eigenvalues)),
             **tour.spread_prose(design, tour.spread_table(spread, full_top.eigenvalues[0]), full_top),
             **tour.bn_prose(nets, tour.bn_table(rows)), **tour.cost_prose(design, costs, full_top)}
    assert set(GLUED.findall(SOURCE.read_text())) <= set(glued), sorted(set(GLUED.findall(SOURCE.read_text()))
                                                                        - set(glued))
