"""Convergence histories of the eigen-solvers, eval/train mode, and largebatch.hessian_diagnostics."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from largebatch import hessian_diagnostics as diag
from largebatch.hessian import HessianOperator, MatrixOperator, exact_hessian, top_eigenvalues

F64 = torch.float64




def _matrix(eigenvalues: list[float], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=g, dtype=F64))
    return q @ torch.diag(torch.tensor(eigenvalues, dtype=F64)) @ q.T


SPECTRUM = [10.0, 7.0, 5.0, 3.0] + [0.5 - 0.05 * i for i in range(26)]  # includes negatives


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))


def _bn_cnn() -> nn.Module:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.BatchNorm1d(2), nn.Tanh(), nn.Flatten(), nn.Linear(12, 3))
    with torch.no_grad():  # non-trivial running statistics
        for _ in range(3):
            model(torch.randn(32, 1, 8) * 2 + 0.5)
    return model


def _data(shape: tuple[int, ...], n: int = 40, seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, *shape), generator=g), torch.randint(0, 3, (n,), generator=g)


# --------------------------------------------------------------------------- callback


@pytest.mark.parametrize("method", ["lanczos", "power"])
@pytest.mark.parametrize("k", [1, 3])
def test_callback_sees_every_product_and_ends_at_the_result(method, k):
    op = MatrixOperator(_matrix(SPECTRUM))
    calls: list[tuple[int, list[float]]] = []
    res = top_eigenvalues(op, k=k, method=method, tol=1e-10, callback=lambda m, e: calls.append((m, e)))
    assert [m for m, _ in calls] == list(range(1, res.num_matvecs + 1))
    assert op.num_matvecs == res.num_matvecs  # the history costs no extra products
    assert all(len(e) <= k for _, e in calls)
    assert calls[-1][1] == pytest.approx(res.eigenvalues, rel=1e-12)
    for _, estimates in calls:  # in the order `which` asks for (largest first)
        assert estimates == sorted(estimates, reverse=True)


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_callback_does_not_change_the_result(method):
    matrix = _matrix(SPECTRUM, seed=3)
    plain = top_eigenvalues(MatrixOperator(matrix), k=3, method=method, tol=1e-8, seed=5)
    traced = top_eigenvalues(MatrixOperator(matrix), k=3, method=method, tol=1e-8, seed=5,
                             callback=lambda m, e: None)
    assert plain.eigenvalues == traced.eigenvalues and plain.num_matvecs == traced.num_matvecs


def test_power_callback_counts_across_the_shifted_rerun():
    # The largest magnitude is negative: power iteration for "LA" reruns on a shifted operator.
    op = MatrixOperator(_matrix([-20.0, 4.0, 2.0, 1.0, 0.5, 0.1]))
    seen: list[int] = []
    last: list[list[float]] = []
    res = top_eigenvalues(op, k=1, method="power", which="LA", tol=1e-10,
                          callback=lambda m, e: (seen.append(m), last.append(e)))
    assert seen == list(range(1, res.num_matvecs + 1))
    assert res.eigenvalues[0] == pytest.approx(4.0, rel=1e-6)
    assert last[-1][0] == pytest.approx(4.0, rel=1e-6)  # the shift is removed from the estimates


def test_power_callback_reports_found_values_plus_the_current_one():
    op = MatrixOperator(_matrix(SPECTRUM))
    sizes: list[int] = []
    top_eigenvalues(op, k=3, method="power", tol=1e-8, callback=lambda m, e: sizes.append(len(e)))
    assert sizes[0] == 1 and sizes[-1] == 3 and sizes == sorted(sizes)


# --------------------------------------------------------------------------- eval_mode


def test_eval_mode_false_means_batch_statistics_even_for_a_model_in_eval_mode():
    batch = _data((1, 8))
    trained = _bn_cnn()
    trained.train()
    expected = exact_hessian(trained, batch, eval_mode=False)
    model = _bn_cnn().eval()  # e.g. a checkpoint from experiments.load_model
    v = torch.randn(expected.shape[0], dtype=F64)
    torch.testing.assert_close(HessianOperator(model, batch, dtype=F64, eval_mode=False).matvec(v), expected @ v)
    torch.testing.assert_close(exact_hessian(model, batch, eval_mode=False), expected)
    assert not any(m.training for m in model.modules())  # mode restored


# --------------------------------------------------------------------------- costs


def test_product_timings_and_cost_ratio():
    model, batch = _bn_cnn(), _data((1, 8))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    timings = diag.product_timings(model, batch, repeats=2, extra={"nothing": lambda: None})
    assert set(timings) == {"gradient", "hvp (cached graph)", "hvp (recomputed graph)", "nothing"}
    assert all(t >= 0 for t in timings.values()) and timings["gradient"] > 0
    ratio = diag.hvp_cost_ratio(model, batch, repeats=2)
    assert 0 < ratio < 100 and math.isfinite(ratio)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(m.training for m in model.modules())
    with pytest.raises(ValueError, match="repeats"):
        diag.product_timings(model, batch, repeats=0)
    with pytest.raises(TypeError, match="one batch"):
        diag.product_timings(model, [batch, batch])


def test_mean_loss_in_both_modes():
    model, (x, y) = _bn_cnn(), _data((1, 8))
    model.eval()
    with torch.no_grad():
        eval_loss = float(F.cross_entropy(model(x), y))
        model.train()
        halves = [(x[:20], y[:20]), (x[20:], y[20:])]
        train_loss = sum(float(F.cross_entropy(model(a), b)) for a, b in halves) / 2
    model = _bn_cnn().eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert diag.mean_loss(model, (x, y)) == pytest.approx(eval_loss, rel=1e-6)
    assert diag.mean_loss(model, halves, eval_mode=False) == pytest.approx(train_loss, rel=1e-6)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


# --------------------------------------------------------------------------- data helpers


def test_random_batch_and_chunks():
    data = TensorDataset(torch.arange(50.0).reshape(50, 1), torch.arange(50))
    x, y = diag.random_batch(data, 20, seed=1)
    assert x.shape == (20, 1) and len(set(y.tolist())) == 20 and torch.equal(x[:, 0].long(), y)
    assert torch.equal(diag.random_batch(data, 20, seed=1)[1], y)
    assert not torch.equal(diag.random_batch(data, 20, seed=2)[1], y)
    assert sorted(diag.random_batch(data, 50, seed=0)[1].tolist()) == list(range(50))
    for bad in (0, 51):
        with pytest.raises(ValueError, match="size"):
            diag.random_batch(data, bad, seed=0)
    assert diag.chunks((x, y), None)[0] is x and diag.chunks((x, y), 20)[0] is x
    parts = diag.chunks((x, y), 8)
    assert [len(p[0]) for p in parts] == [8, 8, 4]
    with pytest.raises(ValueError, match="size"):
        diag.chunks((x, y), 0)


# --------------------------------------------------------------------------- convergence


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_eigen_convergence_against_a_known_spectrum(method):
    op = MatrixOperator(_matrix(SPECTRUM))
    frame = diag.eigen_convergence(op, SPECTRUM[:3], method=method, seeds=[0, 1], tol=1e-10)
    assert list(frame.columns) == ["seed", "matvecs", "error"]
    assert set(frame["seed"]) == {0, 1}
    final = frame.groupby("seed").tail(1)
    assert (final["error"] < 1e-6).all()
    if method == "power":  # the third eigenvalue is not estimated at the start
        assert frame.groupby("seed").head(1)["error"].isna().all()
    else:  # Lanczos sees k Ritz values after k products
        assert frame[frame["matvecs"] >= 3]["error"].notna().all()
    with pytest.raises(ValueError, match="non-zero"):
        diag.eigen_convergence(op, [1.0, 0.0])


def test_matvecs_to_reach():
    import pandas as pd

    frame = pd.DataFrame({"seed": [0, 0, 0, 1, 1, 1], "matvecs": [1, 2, 3, 1, 2, 3],
                          "error": [1.0, 0.05, 0.001, float("nan"), 0.5, 0.2]})
    reached = diag.matvecs_to_reach(frame, 0.1)
    assert reached[0] == 2 and math.isnan(reached[1])
    assert diag.matvecs_to_reach(frame, 0.6).tolist() == [2.0, 2.0]


def test_trace_convergence_errors_and_exact_hutchpp():
    matrix = _matrix(SPECTRUM)
    exact = float(matrix.trace())
    frame = diag.trace_convergence(MatrixOperator(matrix), exact, budgets=[3, 12, 90], seeds=[0, 1])
    assert len(frame) == 2 * 3 * 2
    row = frame.iloc[0]
    assert row["error"] == pytest.approx(abs(row["estimate"] - exact) / abs(exact))
    full = frame[(frame["method"] == "hutch++") & (frame["budget"] == 90)]  # sketch spans all 30 dims
    assert (full["error"] < 1e-10).all() and (full["matvecs"] <= 60).all()


def test_broadened_density_integrates_to_one_and_peaks_at_the_eigenvalues():
    eig = torch.tensor([0.0, 0.0, 0.0, 5.0], dtype=F64)
    grid = torch.linspace(-3, 8, 4001, dtype=F64)
    density = diag.broadened_density(eig, grid, sigma=0.2)
    assert float(torch.trapezoid(density, grid)) == pytest.approx(1.0, rel=1e-6)
    assert float(grid[density.argmax()]) == pytest.approx(0.0, abs=1e-2)
    assert float(density[(grid - 5).abs().argmin()]) == pytest.approx(0.25 / (0.2 * math.sqrt(2 * math.pi)), rel=1e-3)
    with pytest.raises(ValueError, match="sigma"):
        diag.broadened_density(eig, grid, sigma=0.0)


# --------------------------------------------------------------------------- spread and costs


def test_batch_eigenvalue_spread_matches_direct_estimates():
    model = _mlp()
    x, y = _data((4,), n=60)
    data = TensorDataset(x, y)
    frame = diag.batch_eigenvalue_spread(model, data, [10, 60], seeds=[0, 1], tol=1e-8, dtype=F64)
    assert list(frame.columns) == ["batch_size", "seed", "eigenvalue", "matvecs", "seconds"]
    assert len(frame) == 4
    full = exact_hessian(model, (x, y))
    assert frame[frame.batch_size == 60]["eigenvalue"].tolist() == pytest.approx(
        [float(torch.linalg.eigvalsh(full)[-1])] * 2, rel=1e-6)
    small = diag.random_batch(data, 10, seed=1)
    expected = float(torch.linalg.eigvalsh(exact_hessian(model, small))[-1])
    assert frame[(frame.batch_size == 10) & (frame.seed == 1)]["eigenvalue"].item() == pytest.approx(expected, rel=1e-6)
    chunked = diag.batch_eigenvalue_spread(model, data, [60], seeds=[0], tol=1e-8, dtype=F64, chunk_size=25)
    assert chunked["eigenvalue"].item() == pytest.approx(float(torch.linalg.eigvalsh(full)[-1]), rel=1e-6)


def test_estimator_costs_table():
    model = _mlp()
    batch = _data((4,), n=60)
    eigenvalues = torch.linalg.eigvalsh(exact_hessian(model, batch)).flip(0).tolist()
    table = diag.estimator_costs(model, batch, k=3, tol=1e-8, power_max_iter=2000, trace_matvecs=10,
                                 reference=eigenvalues, dtype=F64)
    assert table[["task", "method"]].values.tolist() == [
        ["top-1", "lanczos"], ["top-1", "power"], ["top-3", "lanczos"], ["top-3", "power"],
        ["trace", "hutchinson"], ["trace", "hutch++"]]
    assert (table["matvecs"] > 0).all() and (table["seconds"] > 0).all()
    assert (table.loc[table.task == "top-1", "error"] < 1e-5).all()
    assert table.loc[(table.task == "top-3") & (table.method == "lanczos"), "error"].item() < 1e-6
    assert table.loc[table.method == "hutch++", "matvecs"].item() == 9
    assert table.loc[table.task == "trace", "std_error"].notna().all()
