"""Tests for largebatch.hessian: every estimator against a dense Hessian or a closed form."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from largebatch.hessian import (
    HessianOperator,
    MatrixOperator,
    exact_eigenvalues,
    exact_hessian,
    spectral_density,
    top_eigenvalues,
    trace,
)

F64 = torch.float64




# --------------------------------------------------------------------------- fixtures


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))


def _cnn(batch_norm: bool) -> nn.Module:
    torch.manual_seed(1)
    layers = [nn.Conv1d(1, 2, kernel_size=3)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(2))
    layers += [nn.Tanh(), nn.Flatten(), nn.Linear(2 * 6, 3)]
    model = nn.Sequential(*layers)
    if batch_norm:  # non-trivial running statistics, then back to train mode
        with torch.no_grad():
            for _ in range(3):
                model(torch.randn(32, 1, 8) * 2 + 0.5)
    return model


def _data(model_name: str, n: int = 40, seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = (n, 4) if model_name == "mlp" else (n, 1, 8)
    return torch.randn(shape, generator=g), torch.randint(0, 3, (n,), generator=g)


MODELS = {"mlp": _mlp, "cnn": lambda: _cnn(False), "cnn_bn": lambda: _cnn(True)}


@pytest.fixture(params=list(MODELS))
def problem(request):
    """(model, batch, dense float64 Hessian) for each small model."""
    model = MODELS[request.param]()
    batch = _data("mlp" if request.param == "mlp" else "cnn")
    return model, batch, exact_hessian(model, batch)


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def _spectrum_matrix(eigenvalues: list[float], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=g, dtype=F64))
    a = q @ torch.diag(torch.tensor(eigenvalues, dtype=F64)) @ q.T
    return (a + a.T) / 2


# --------------------------------------------------------------------------- products


def test_hvp_matches_dense_hessian(problem):
    model, batch, dense = problem
    op = HessianOperator(model, batch, dtype=F64)
    assert op.dim == dense.shape[0] == sum(p.numel() for p in model.parameters())
    v = torch.randn(op.dim, dtype=F64)
    torch.testing.assert_close(op.matvec(v), dense @ v, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(op.matvec(2 * v), 2 * dense @ v, rtol=1e-10, atol=1e-12)
    assert op.num_matvecs == 2
    assert torch.allclose(dense, dense.T, atol=1e-12)


def test_full_data_product_equals_big_batch_for_any_batch_size():
    model = _mlp()
    x, y = _data("mlp", n=50)
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=F64)
    big = HessianOperator(model, (x, y), dtype=F64).matvec(v)
    torch.testing.assert_close(big, exact_hessian(model, (x, y)) @ v, rtol=1e-10, atol=1e-12)
    for batch_size in (1, 7, 16, 50, 64):  # 16 leaves a last batch of 2
        loader = DataLoader(TensorDataset(x, y), batch_size=batch_size)
        for cache in (False, True):
            hv = HessianOperator(model, loader, dtype=F64, cache_graph=cache).matvec(v)
            torch.testing.assert_close(hv, big, rtol=1e-10, atol=1e-12)
    generator = ((x[i:i + 20], y[i:i + 20]) for i in range(0, 50, 20))
    op = HessianOperator(model, generator, dtype=F64)
    torch.testing.assert_close(op.matvec(v), big, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(op.matvec(v), big, rtol=1e-10, atol=1e-12)  # generator kept
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    torch.testing.assert_close(exact_hessian(model, loader), exact_hessian(model, (x, y)),
                               rtol=1e-10, atol=1e-12)


def test_float32_operator_is_close_to_float64():
    model = _mlp()
    batch = _data("mlp")
    op = HessianOperator(model, batch)
    assert op.dtype == torch.float32
    v = torch.randn(op.dim)
    expected = exact_hessian(model, batch) @ v.double()
    torch.testing.assert_close(op.matvec(v).double(), expected, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- eigenvalues


def test_lanczos_top_k_matches_dense(problem):
    model, batch, dense = problem
    exact, vectors = torch.linalg.eigh(dense)
    exact, vectors = exact.flip(0), vectors.flip(1)
    k = 4
    res = top_eigenvalues(model, batch, k=k, dtype=F64)
    assert res.converged and len(res.eigenvalues) == k and res.eigenvectors.shape == (k, dense.shape[0])
    for i in range(k):
        assert _rel(res.eigenvalues[i], float(exact[i])) < 1e-6
        gap = min(abs(exact[i] - exact[j]) for j in range(dense.shape[0]) if j != i) / abs(exact[i])
        if gap > 1e-2:
            cos = float(res.eigenvectors[i] @ vectors[:, i]) / float(res.eigenvectors[i].norm())
            assert abs(cos) > 1 - 1e-6
    for value, vec, residual in zip(res.eigenvalues, res.eigenvectors, res.residuals):
        assert float((dense @ vec - value * vec).norm()) <= 10 * residual + 1e-12
    assert res.num_matvecs < dense.shape[0]


def test_lanczos_smallest_and_magnitude_on_network():
    model, batch = _mlp(), _data("mlp")
    exact = exact_eigenvalues(model, batch)
    smallest = top_eigenvalues(model, batch, k=2, which="SA", dtype=F64)
    assert smallest.converged
    assert _rel(smallest.eigenvalues[0], float(exact[-1])) < 1e-6
    assert _rel(smallest.eigenvalues[1], float(exact[-2])) < 1e-6
    magnitude = top_eigenvalues(model, batch, k=3, which="LM", dtype=F64)
    by_magnitude = sorted(exact.tolist(), key=abs, reverse=True)[:3]
    assert all(_rel(a, b) < 1e-6 for a, b in zip(magnitude.eigenvalues, by_magnitude))


def test_power_iteration_matches_dense():
    model, batch = _mlp(), _data("mlp")
    exact = exact_eigenvalues(model, batch)
    assert exact[1] / exact[0] < 0.95 and exact[2] / exact[1] < 0.95  # separated: power converges
    res = top_eigenvalues(model, batch, k=2, method="power", tol=1e-12, max_iter=3000, dtype=F64)
    assert res.converged
    assert all(_rel(a, float(b)) < 1e-6 for a, b in zip(res.eigenvalues, exact[:2]))
    lanczos = top_eigenvalues(model, batch, k=2, dtype=F64)
    cos = torch.nn.functional.cosine_similarity(res.eigenvectors, lanczos.eigenvectors, dim=1)
    assert (cos.abs() > 1 - 1e-6).all()


def test_known_spectrum_clustered_and_negative():
    rest = torch.linspace(-1, 1, 95, dtype=F64).tolist()
    op = MatrixOperator(_spectrum_matrix([10.0, 9.999, 9.998, -12.0, 5.0] + rest))
    la = top_eigenvalues(op, k=4, which="LA")
    assert la.converged
    torch.testing.assert_close(torch.tensor(la.eigenvalues, dtype=F64),
                               torch.tensor([10.0, 9.999, 9.998, 5.0], dtype=F64), rtol=1e-9, atol=0)
    lm = top_eigenvalues(op, k=2, which="LM")
    assert lm.eigenvalues == pytest.approx([-12.0, 10.0], rel=1e-9)
    sa = top_eigenvalues(op, k=2, which="SA")
    assert sa.eigenvalues == pytest.approx([-12.0, -1.0], rel=1e-9)
    # Well separated spectrum: power iteration agrees, also when the negative end dominates.
    sep = MatrixOperator(_spectrum_matrix([10.0, -12.0, 5.0, 2.0] + torch.linspace(-0.5, 0.5, 46).tolist()))
    for which, expected in [("LM", [-12.0, 10.0]), ("LA", [10.0, 5.0]), ("SA", [-12.0, -0.5])]:
        power = top_eigenvalues(sep, k=2, which=which, method="power", tol=1e-12, max_iter=20000)
        lanczos = top_eigenvalues(sep, k=2, which=which)
        assert power.eigenvalues == pytest.approx(expected, rel=1e-6)
        assert lanczos.eigenvalues == pytest.approx(expected, rel=1e-9)


def test_lanczos_restarts_and_uses_fewer_products_than_power():
    eigenvalues = [10.0 * 0.8 ** i for i in range(10)] + torch.linspace(0, 1, 290, dtype=F64).tolist()
    op = MatrixOperator(_spectrum_matrix(eigenvalues))
    lanczos = top_eigenvalues(op, k=10, krylov_dim=22, tol=1e-8)
    power = top_eigenvalues(op, k=10, method="power", tol=1e-10, max_iter=5000)
    assert lanczos.converged
    assert lanczos.eigenvalues == pytest.approx(eigenvalues[:10], rel=1e-9)
    assert power.eigenvalues == pytest.approx(eigenvalues[:10], rel=1e-6)
    assert 5 * lanczos.num_matvecs < power.num_matvecs
    assert op.num_matvecs == lanczos.num_matvecs + power.num_matvecs


def test_exact_spectrum_when_k_equals_dim():
    values = [3.0, 1.0, 0.5, -2.0, 0.0]
    res = top_eigenvalues(MatrixOperator(_spectrum_matrix(values)), k=5)
    assert res.converged and res.eigenvalues == pytest.approx(sorted(values, reverse=True), abs=1e-12)


# --------------------------------------------------------------------------- trace


def _hutchinson_std(matrix: torch.Tensor, samples: int) -> float:
    off = (matrix ** 2).sum() - (matrix.diagonal() ** 2).sum()
    return math.sqrt(2 * float(off) / samples)


def test_hutchinson_trace(problem):
    model, batch, dense = problem
    res = trace(model, batch, num_matvecs=60, dtype=F64)
    assert res.num_matvecs == 60
    expected = float(dense.trace())
    assert abs(res.estimate - expected) < 4 * res.std_error
    assert 0.5 < res.std_error / _hutchinson_std(dense, 60) < 2


def test_hutch_plus_plus_trace(problem):
    model, batch, dense = problem
    n = dense.shape[0]
    full = trace(model, batch, method="hutch++", num_matvecs=3 * n, dtype=F64)
    assert full.std_error == 0 and full.num_matvecs == 2 * n
    assert full.estimate == pytest.approx(float(dense.trace()), rel=1e-10)
    partial = trace(model, batch, method="hutch++", num_matvecs=30, dtype=F64)
    assert partial.num_matvecs == 30
    assert abs(partial.estimate - float(dense.trace())) < 4 * partial.std_error


def test_hutch_plus_plus_beats_hutchinson_on_low_rank_plus_noise():
    values = [50.0, 40.0, 30.0, 20.0, 10.0] + [0.01] * 195
    op = MatrixOperator(_spectrum_matrix(values))
    plain = trace(op, num_matvecs=30)
    plus = trace(op, method="hutch++", num_matvecs=30)
    assert abs(plus.estimate - sum(values)) < 4 * plus.std_error
    assert plus.std_error < plain.std_error / 10


# --------------------------------------------------------------------------- density


def test_slq_moments_match_traces(problem):
    model, batch, dense = problem
    n = dense.shape[0]
    runs = 8
    res = spectral_density(model, batch, num_runs=runs, num_steps=12, dtype=F64)
    assert res.nodes.shape == res.weights.shape == (runs, 12)
    assert res.num_matvecs == runs * 12
    torch.testing.assert_close(res.weights.sum(dim=1), torch.ones(runs, dtype=F64), rtol=0, atol=1e-12)
    assert res.moment(0) == pytest.approx(1.0, abs=1e-12)
    for p in (1, 2):
        power = torch.linalg.matrix_power(dense, p)
        tolerance = 4 * _hutchinson_std(power, runs) / n
        assert abs(res.moment(p) - float(power.trace()) / n) < tolerance
    assert float(torch.trapezoid(res.density, res.grid)) == pytest.approx(1.0, abs=1e-3)
    spectrum = torch.linalg.eigvalsh(dense)  # Ritz values lie inside the spectrum
    assert float(res.nodes.max()) <= float(spectrum[-1]) + 1e-9
    assert float(res.nodes.min()) >= float(spectrum[0]) - 1e-9


def test_slq_with_full_steps_recovers_spectrum():
    values = torch.tensor([4.0, 2.0, 1.0, 0.5, -1.0, -3.0], dtype=F64)
    res = spectral_density(MatrixOperator(_spectrum_matrix(values.tolist())), num_runs=3, num_steps=6,
                           start="gaussian")
    for nodes in res.nodes:
        torch.testing.assert_close(nodes, values.sort().values, rtol=0, atol=1e-10)
    grid = torch.linspace(-5, 6, 2001, dtype=F64)
    custom = spectral_density(MatrixOperator(_spectrum_matrix(values.tolist())), num_steps=6, grid=grid,
                              sigma=0.1)
    assert custom.grid is grid and custom.sigma == 0.1
    assert float(torch.trapezoid(custom.density, grid)) == pytest.approx(1.0, abs=1e-6)


# --------------------------------------------------------------------------- closed forms


def test_linear_regression_mse_hessian_is_two_xtx_over_n():
    # mse_loss averages (w.x - y)^2, so H = 2 X^T X / n (no 1/2 in the loss).
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(30, 5, generator=g), torch.randn(30, 1, generator=g)
    model = nn.Linear(5, 1, bias=False)
    op = HessianOperator(model, (x, y), loss_fn=F.mse_loss, dtype=F64)
    expected = 2 * x.double().T @ x.double() / 30
    dense = torch.stack([op.matvec(e) for e in torch.eye(5, dtype=F64)], dim=1)
    torch.testing.assert_close(dense, expected, rtol=1e-12, atol=1e-12)
    res = top_eigenvalues(op, k=2)
    assert res.eigenvalues == pytest.approx(torch.linalg.eigvalsh(expected).flip(0)[:2].tolist(), rel=1e-9)
    assert trace(op, method="hutch++", num_matvecs=15).estimate == pytest.approx(float(expected.trace()))


def test_logistic_regression_hessian():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(40, 6, generator=g, dtype=F64)
    y = torch.randint(0, 2, (40,), generator=g).to(F64)
    model = nn.Linear(6, 1, bias=False).double()

    def bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits.squeeze(-1), targets)

    p = torch.sigmoid(x @ model.weight.detach().T).squeeze(-1)
    expected = x.T @ torch.diag(p * (1 - p)) @ x / 40
    torch.testing.assert_close(exact_hessian(model, (x, y), loss_fn=bce), expected, rtol=1e-10, atol=1e-12)
    op = HessianOperator(model, (x, y), loss_fn=bce)
    v = torch.randn(6, dtype=F64)
    torch.testing.assert_close(op.matvec(v), expected @ v, rtol=1e-10, atol=1e-12)


def test_softmax_regression_hessian_kronecker_form():
    g = torch.Generator().manual_seed(5)
    n, d, c = 25, 4, 3
    x = torch.randn(n, d, generator=g, dtype=F64)
    y = torch.randint(0, c, (n,), generator=g)
    model = nn.Linear(d, c, bias=False).double()
    probs = torch.softmax(x @ model.weight.detach().T, dim=1)
    # Weight (c, d) flattened row-major: index c * d + j, hence the (class) x (input) order.
    expected = sum(torch.kron(torch.diag(p) - torch.outer(p, p), torch.outer(xi, xi))
                   for p, xi in zip(probs, x)) / n
    torch.testing.assert_close(exact_hessian(model, (x, y)), expected, rtol=1e-10, atol=1e-12)
    res = top_eigenvalues(model, (x, y), k=3)
    assert res.eigenvalues == pytest.approx(torch.linalg.eigvalsh(expected).flip(0)[:3].tolist(), rel=1e-8)


# --------------------------------------------------------------------------- model handling


def test_modes_and_batchnorm_statistics_restored():
    model = _cnn(True)
    model[1].eval()  # a mixed-mode model: the BN layer alone in eval mode
    modes = [m.training for m in model.modules()]
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    batch = _data("cnn")
    for eval_mode in (True, False):
        op = HessianOperator(model, batch, eval_mode=eval_mode)
        op.matvec(torch.randn(op.dim))
        top_eigenvalues(model, batch, k=1, eval_mode=eval_mode, max_iter=30)
        assert [m.training for m in model.modules()] == modes
        for k, v in model.state_dict().items():
            assert torch.equal(v, stats[k]), k
    exact_hessian(model, batch, eval_mode=True)
    assert [m.training for m in model.modules()] == modes


def test_eval_mode_uses_running_statistics():
    model = _cnn(True)
    batch = _data("cnn")
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=F64)
    eval_hv = HessianOperator(model, batch, dtype=F64).matvec(v)
    train_hv = HessianOperator(model, batch, dtype=F64, eval_mode=False).matvec(v)
    assert not torch.allclose(eval_hv, train_hv, rtol=1e-3)
    torch.testing.assert_close(exact_hessian(model, batch, eval_mode=False) @ v, train_hv)
    model.eval()  # the same as evaluating the model in eval mode yourself
    torch.testing.assert_close(HessianOperator(model, batch, dtype=F64).matvec(v), eval_hv)
    model.train()
    # Train-mode Hessian over batches is the average of per-batch Hessians (batch statistics).
    halves = [(batch[0][:20], batch[1][:20]), (batch[0][20:], batch[1][20:])]
    per_batch = sum(HessianOperator(model, h, dtype=F64, eval_mode=False).matvec(v) for h in halves) / 2
    torch.testing.assert_close(HessianOperator(model, halves, dtype=F64, eval_mode=False).matvec(v), per_batch)


def test_float64_mode_leaves_model_dtype_unchanged():
    model = _mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    op = HessianOperator(model, _data("mlp"), dtype=F64)
    assert op.dtype == F64
    op.matvec(torch.randn(op.dim, dtype=F64))
    exact_hessian(model, _data("mlp"))
    for k, v in model.state_dict().items():
        assert v.dtype == torch.float32 and torch.equal(v, before[k])
    assert all(p.grad is None for p in model.parameters())


def test_frozen_parameters_are_excluded():
    model = _mlp()
    batch = _data("mlp")
    full = exact_hessian(model, batch)
    model[0].weight.requires_grad_(False)
    op = HessianOperator(model, batch, dtype=F64)
    assert op.dim == full.shape[0] - 24
    assert op.param_names == ["0.bias", "2.weight", "2.bias"]
    block = full[24:, 24:]
    torch.testing.assert_close(exact_hessian(model, batch), block)
    v = torch.randn(op.dim, dtype=F64)
    torch.testing.assert_close(op.matvec(v), block @ v, rtol=1e-10, atol=1e-12)


def test_unused_parameters_give_zero_blocks():
    class WithUnused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = _mlp()
            self.unused = nn.Linear(3, 2)  # registered, never called in forward

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

    model = WithUnused()
    batch = _data("mlp")
    op = HessianOperator(model, batch, dtype=F64)
    dense = torch.stack([op.matvec(e) for e in torch.eye(op.dim, dtype=F64)], dim=1)
    used = 51
    assert op.dim == used + 8
    assert torch.count_nonzero(dense[used:]) == 0 and torch.count_nonzero(dense[:, used:]) == 0
    torch.testing.assert_close(dense[:used, :used], exact_hessian(_mlp(), batch), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(exact_hessian(model, batch)[:used, :used], dense[:used, :used])
    only_unused = HessianOperator(model, batch, params=lambda name, p: name.startswith("unused"))
    assert torch.count_nonzero(only_unused.matvec(torch.ones(8))) == 0


def test_parameter_filter_gives_layer_block():
    model = _cnn(True)
    batch = _data("cnn")
    full = exact_hessian(model, batch)
    names = [n for n, _ in model.named_parameters()]
    offsets = torch.tensor([0] + [p.numel() for p in model.parameters()]).cumsum(0)
    last = names.index("4.weight")
    start, stop = int(offsets[last]), int(offsets[last + 2])
    by_filter = HessianOperator(model, batch, dtype=F64, params=lambda name, p: name.startswith("4."))
    by_names = HessianOperator(model, batch, dtype=F64, params=["4.bias", "4.weight"])
    assert by_filter.param_names == by_names.param_names == ["4.weight", "4.bias"]
    block = full[start:stop, start:stop]
    torch.testing.assert_close(exact_hessian(model, batch, params=["4.weight", "4.bias"]), block)
    res = top_eigenvalues(by_names, k=2)
    assert res.eigenvalues == pytest.approx(torch.linalg.eigvalsh(block).flip(0)[:2].tolist(), rel=1e-6)
    v = torch.randn(block.shape[0], dtype=F64)
    torch.testing.assert_close(by_filter.matvec(v), block @ v, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- bad input


def test_bad_arguments_fail_before_compute():
    model, batch = _mlp(), _data("mlp")
    op = HessianOperator(model, batch)
    with pytest.raises(ValueError, match="k=52 exceeds the operator dimension 51"):
        top_eigenvalues(op, k=52)
    with pytest.raises(ValueError, match="k must be at least 1"):
        top_eigenvalues(op, k=0)
    with pytest.raises(ValueError, match="tol must be positive"):
        top_eigenvalues(op, tol=0.0)
    with pytest.raises(ValueError, match="max_iter must be at least"):
        top_eigenvalues(op, max_iter=0)
    with pytest.raises(ValueError, match="method must be"):
        top_eigenvalues(op, method="arnoldi")
    with pytest.raises(ValueError, match="which must be"):
        top_eigenvalues(op, which="SM")
    with pytest.raises(ValueError, match="num_matvecs must be at least 3"):
        trace(op, method="hutch++", num_matvecs=2)
    with pytest.raises(ValueError, match="data is required"):
        top_eigenvalues(model)
    with pytest.raises(ValueError, match="only when a model is given"):
        trace(op, batch)
    with pytest.raises(ValueError, match=r"v must have shape \(51,\)"):
        op.matvec(torch.ones(3))
    assert op.num_matvecs == 0


def test_empty_data_and_no_parameters_raise():
    model = _mlp()
    x, y = _data("mlp")
    with pytest.raises(ValueError, match="data is empty"):
        HessianOperator(model, (x[:0], y[:0]))
    with pytest.raises(ValueError, match="data is empty"):
        HessianOperator(model, [])
    with pytest.raises(ValueError, match="data is empty"):
        top_eigenvalues(model, DataLoader(TensorDataset(x[:0], y[:0]), batch_size=4))
    with pytest.raises(ValueError, match="data is empty"):
        exact_hessian(model, iter([]))
    with pytest.raises(TypeError, match="tuple"):
        HessianOperator(model, x)
    with pytest.raises(ValueError, match="no trainable parameters"):
        HessianOperator(model, (x, y), params=lambda name, p: False)
    with pytest.raises(ValueError, match="unknown parameter name 'nope'"):
        HessianOperator(model, (x, y), params=["nope"])
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        top_eigenvalues(model, (x, y))
    with pytest.raises(ValueError, match="frozen"):
        HessianOperator(model, (x, y), params="0.weight")
    with pytest.raises(ValueError, match="symmetric"):
        MatrixOperator(torch.tensor([[1.0, 2.0], [0.0, 1.0]]))


# --------------------------------------------------------------------------- determinism


def test_seeded_results_are_repeatable():
    model, batch = _mlp(), _data("mlp")

    def run(seed: int) -> tuple:
        eig = top_eigenvalues(model, batch, k=2, seed=seed, max_iter=15)
        power = top_eigenvalues(model, batch, k=1, method="power", seed=seed, max_iter=10)
        tr = trace(model, batch, num_matvecs=9, seed=seed, method="hutch++")
        dens = spectral_density(model, batch, num_runs=2, num_steps=5, seed=seed)
        return eig.eigenvalues, eig.eigenvectors, power.eigenvalues, tr, dens.nodes, dens.density

    first, again, other = run(0), run(0), run(1)
    for a, b in zip(first, again):
        assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b
    assert first[3] != other[3] and not torch.equal(first[4], other[4])
