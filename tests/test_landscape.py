"""Tests for largebatch.landscape."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from largebatch.landscape import (
    evaluate,
    interpolate,
    interpolate_state_dicts,
    keskar_sharpness,
    loss_along_directions,
    random_direction,
    top_eigenvector_direction,
)


def make_model(seed: int) -> nn.Module:
    """A small MLP with batch norm whose running statistics are not the defaults."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(32, 4) * 2 + seed)
    return model


def make_conv_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)
    )


@pytest.fixture
def data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(50, 4, generator=generator), torch.randint(0, 3, (50,), generator=generator)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_state_equal(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


class Quadratic(nn.Module):
    """A model whose loss is ``0.5 * sum_i c_i (w_i - m_i)^2`` whatever the data."""

    def __init__(self, w: torch.Tensor, c: torch.Tensor, m: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.register_buffer("c", c)
        self.register_buffer("m", m)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return (0.5 * (self.c * (self.w - self.m) ** 2).sum()).expand(len(inputs))


def quadratic_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return outputs.mean()


QUAD_DATA = (torch.zeros(4, 1, dtype=torch.float64), torch.zeros(4, dtype=torch.float64))
M = torch.tensor([0.5, -2.0, 0.0, 3.0, 1.0], dtype=torch.float64)
C = torch.tensor([1.0, 4.0, 0.5, 2.0, 10.0], dtype=torch.float64)


# ---------------------------------------------------------------- evaluate


def test_evaluate_matches_manual_and_restores_mode(data):
    model = make_model(0)
    model[1].eval()  # a mixed-mode model must come back mixed
    result = evaluate(model, data, batch_size=16)
    assert model.training and not model[1].training and model[0].training
    model.eval()
    with torch.no_grad():
        logits = model(data[0])
    assert result["loss"] == pytest.approx(float(F.cross_entropy(logits, data[1])), rel=1e-6)
    assert result["accuracy"] == pytest.approx(float((logits.argmax(1) == data[1]).float().mean()))


def test_evaluate_accepts_iterable_of_batches(data):
    model = make_model(0)
    batches = list(zip(data[0].split(7), data[1].split(7)))
    assert evaluate(model, batches) == pytest.approx(evaluate(model, data, batch_size=7))


def test_evaluate_accuracy_is_nan_for_non_classification():
    model = Quadratic(M, C, M + 1).double()
    result = evaluate(model, QUAD_DATA, loss_fn=quadratic_loss)
    assert result["loss"] == pytest.approx(0.5 * float(C.sum()))
    assert math.isnan(result["accuracy"])


# ------------------------------------------------------------ interpolation


def test_interpolate_endpoints_equal_each_model(data):
    model_a, model_b = make_model(0), make_model(1)
    splits = {"train": data, "test": (data[0][:20], data[1][:20])}
    state_a, state_b = snapshot(model_a), snapshot(model_b)
    df = interpolate(model_a, model_b, splits, alphas=[0.0, 0.5, 1.0])
    assert list(df.columns) == ["alpha", "split", "loss", "accuracy"]
    assert len(df) == 6
    for alpha, model in ((0.0, model_a), (1.0, model_b)):
        for split, split_data in splits.items():
            row = df[(df.alpha == alpha) & (df.split == split)].iloc[0]
            expected = evaluate(model, split_data)
            assert row.loss == pytest.approx(expected["loss"], rel=1e-6, abs=1e-7)
            assert row.accuracy == expected["accuracy"]
    assert_state_equal(model_a, state_a)
    assert_state_equal(model_b, state_b)


def test_interpolate_mixes_batch_norm_buffers(data):
    model_a, model_b = make_model(0), make_model(1)
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    mid = interpolate_state_dicts(state_a, state_b, 0.5)
    for key in ("1.running_mean", "1.running_var", "0.weight", "1.weight"):
        torch.testing.assert_close(mid[key], (state_a[key] + state_b[key]) / 2)
    assert torch.equal(mid["1.num_batches_tracked"], state_a["1.num_batches_tracked"])
    # The DataFrame row at alpha = 0.5 is the evaluation of that averaged model.
    averaged = copy.deepcopy(model_a)
    averaged.load_state_dict(mid)
    row = interpolate(model_a, model_b, {"train": data}, alphas=[0.5]).iloc[0]
    assert row.loss == pytest.approx(evaluate(averaged, data)["loss"], rel=1e-6)


def test_interpolate_extrapolation_keeps_variances_nonnegative(data):
    model_a, model_b = make_model(0), make_model(1)
    with torch.no_grad():
        model_b[1].running_var.fill_(0.01)
    state = interpolate_state_dicts(model_a.state_dict(), model_b.state_dict(), 2.0)
    assert (state["1.running_var"] >= 0).all()
    df = interpolate(model_a, model_b, {"train": data})
    assert len(df) == 31 and df.loss.notna().all()
    assert df.alpha.iloc[10] == 0.0 and df.alpha.iloc[20] == 1.0


# --------------------------------------------------------------- directions


@pytest.mark.parametrize("make", [lambda: make_model(0), make_conv_model])
def test_filter_normalized_direction(make):
    model = make()
    direction = random_direction(model, seed=3)
    params = dict(model.named_parameters())
    assert direction.keys() == params.keys()
    for name, d in direction.items():
        w = params[name].detach()
        assert d.shape == w.shape and d.dtype == w.dtype
        if w.dim() <= 1:  # biases and batch-norm parameters are zeroed by default
            assert torch.count_nonzero(d) == 0, name
        else:
            torch.testing.assert_close(
                d.reshape(len(d), -1).norm(dim=1), w.reshape(len(w), -1).norm(dim=1)
            )


def test_direction_can_include_bias_and_bn():
    model = make_model(0)
    direction = random_direction(model, seed=3, ignore=("bias",))
    assert torch.count_nonzero(direction["0.bias"]) == 0
    params = dict(model.named_parameters())
    for name in ("1.weight", "1.bias"):  # batch-norm parameters: one filter each
        torch.testing.assert_close(direction[name].norm(), params[name].norm())
    included = random_direction(model, seed=3, ignore=())
    assert all(torch.count_nonzero(d) > 0 for k, d in included.items() if k != "1.bias")
    # Batch-norm biases start at zero: normalized to their norm, the direction is zero.
    assert torch.count_nonzero(included["1.bias"]) == 0
    with pytest.raises(ValueError):
        random_direction(model, seed=3, ignore=("weights",))


def test_direction_is_seeded():
    model = make_model(0)
    first, again, other = (random_direction(model, seed=s) for s in (5, 5, 6))
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["0.weight"], other["0.weight"])
    raw = random_direction(model, seed=5, filter_normalize=False, ignore=())
    assert not torch.allclose(raw["0.weight"].norm(dim=1), first["0.weight"].norm(dim=1))


def test_top_eigenvector_direction_unflattens_in_parameter_order():
    model = make_model(0)
    model[1].weight.requires_grad_(False)  # frozen parameters are not in the vector
    trainable = [p for p in model.parameters() if p.requires_grad]
    vector = torch.arange(sum(p.numel() for p in trainable), dtype=torch.float32)
    direction = top_eigenvector_direction(model, vector)
    assert "1.weight" not in direction
    flat = torch.cat([d.reshape(-1) for d in direction.values()])
    assert torch.equal(flat, vector)
    assert [d.shape for d in direction.values()] == [p.shape for p in trainable]
    with pytest.raises(ValueError):
        top_eigenvector_direction(model, vector[:-1])


def test_curve_at_zero_is_the_model_and_weights_are_restored(data):
    model = make_model(0)
    model.train()
    state = snapshot(model)
    direction = random_direction(model, seed=0)
    df = loss_along_directions(model, data, [direction], torch.linspace(-1, 1, 5))
    assert list(df.columns) == ["alpha", "loss", "accuracy"] and len(df) == 5
    assert df.loss.iloc[2] == evaluate(model, data)["loss"]
    assert df.loss.nunique() > 1
    assert_state_equal(model, state)
    assert model.training


def test_curve_point_equals_moved_model(data):
    model = make_model(0)
    direction = random_direction(model, seed=0, ignore=())
    df = loss_along_directions(model, data, [direction], [0.7])
    moved = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in moved.named_parameters():
            p += 0.7 * direction[name]
    assert df.loss.iloc[0] == pytest.approx(evaluate(moved, data)["loss"], rel=1e-6)


def test_plane_grid(data):
    model = make_model(0)
    state = snapshot(model)
    d1, d2 = random_direction(model, seed=1), random_direction(model, seed=2)
    alphas, betas = torch.linspace(-1, 1, 3), torch.tensor([-0.5, 0.0, 0.5, 1.0])
    df = loss_along_directions(model, data, [d1, d2], (alphas, betas))
    assert list(df.columns) == ["alpha", "beta", "loss", "accuracy"] and len(df) == 12
    surface = df.pivot(index="beta", columns="alpha", values="loss")
    assert surface.shape == (4, 3)
    assert surface.loc[0.0, 0.0] == evaluate(model, data)["loss"]
    moved = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in moved.named_parameters():
            p += 1.0 * d1[name] + 0.5 * d2[name]
    assert surface.loc[0.5, 1.0] == pytest.approx(evaluate(moved, data)["loss"], rel=1e-6)
    assert_state_equal(model, state)
    with pytest.raises(ValueError):
        loss_along_directions(model, data, [d1, d2, d1], (alphas, betas))


# ---------------------------------------------------------------- sharpness


def box_max_at_minimum(c: torch.Tensor, m: torch.Tensor, eps: float) -> float:
    """Exact max over |y_i| <= eps (|m_i| + 1) of 0.5 sum c_i y_i^2 (any vertex)."""
    return float(0.5 * (c * (eps * (m.abs() + 1)) ** 2).sum())


def test_sharpness_of_quadratic_at_its_minimum():
    eps = 1e-2
    model = Quadratic(M, C, M)
    result = keskar_sharpness(model, QUAD_DATA, eps=eps, loss_fn=quadratic_loss)
    exact = box_max_at_minimum(C, M, eps)
    assert result.f_x == 0.0
    assert result.max_f == pytest.approx(exact, rel=1e-6)
    assert float(result) == pytest.approx(100 * exact, rel=1e-6)
    assert 0 < result.num_evals <= 30


def test_sharpness_of_quadratic_away_from_its_minimum():
    eps = 1e-2
    w = M + torch.tensor([0.5, -0.3, 0.2, -1.0, 0.4], dtype=torch.float64)
    model = Quadratic(w, C, M)
    bound = eps * (w.abs() + 1)  # smaller than |w - m|: the far vertex is the maximum
    exact_max = float(0.5 * (C * ((w - M).abs() + bound) ** 2).sum())
    f_x = float(0.5 * (C * (w - M) ** 2).sum())
    result = keskar_sharpness(model, QUAD_DATA, eps=eps, loss_fn=quadratic_loss)
    assert result.f_x == pytest.approx(f_x, rel=1e-12)
    assert result.max_f == pytest.approx(exact_max, rel=1e-6)
    assert result.value == pytest.approx(100 * (exact_max - f_x) / (1 + f_x), rel=1e-6)


def test_sharper_minimum_has_larger_sharpness():
    flat = keskar_sharpness(Quadratic(M, C, M), QUAD_DATA, loss_fn=quadratic_loss)
    sharp = keskar_sharpness(Quadratic(M, 10 * C, M), QUAD_DATA, loss_fn=quadratic_loss)
    assert sharp.value == pytest.approx(10 * flat.value, rel=1e-5)
    assert sharp.value > flat.value > 0


def test_sharpness_in_random_subspace_reaches_a_vertex():
    eps, seed = 1e-2, 4
    model = Quadratic(M, C, M)
    result = keskar_sharpness(
        model, QUAD_DATA, eps=eps, subspace_dim=2, seed=seed, loss_fn=quadratic_loss
    )
    assert result == keskar_sharpness(
        model, QUAD_DATA, eps=eps, subspace_dim=2, seed=seed, loss_fn=quadratic_loss
    )
    # Documented draw: A = randn(n, p) from a generator seeded with `seed`.
    basis = torch.randn(5, 2, generator=torch.Generator().manual_seed(seed)).double()
    bound = eps * (torch.linalg.pinv(basis) @ M).abs() + eps
    hessian = basis.T @ torch.diag(C) @ basis
    vertex_values = [
        float(0.5 * v @ hessian @ v)
        for v in (bound * torch.tensor([1.0, s], dtype=torch.float64) for s in (1.0, -1.0))
    ]
    # f(x + A y) is a convex quadratic in y: maxima over the box are at vertices
    # (+-b1, +-b2), taking two values; L-BFGS-B ends at one of them.
    assert min(abs(result.max_f / v - 1) for v in vertex_values) < 1e-6


def test_sharpness_restores_model(data):
    model = make_model(0)
    model.train()
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)
    state = snapshot(model)
    result = keskar_sharpness(model, data, eps=1e-3, max_iter=3)
    assert result.value >= 0 and result.max_f >= result.f_x
    assert result.f_x == evaluate(model, data)["loss"]
    assert_state_equal(model, state)
    assert model.training
    assert all(torch.equal(p.grad, torch.full_like(p, 7.0)) for p in model.parameters())
    sub = keskar_sharpness(model, data, eps=1e-3, subspace_dim=5, max_iter=3)
    assert sub.value >= 0
    assert_state_equal(model, state)
