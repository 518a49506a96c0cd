"""Tests for largebatch.input_curvature: the input Hessian of piecewise-linear nets is PSD."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from largebatch.input_curvature import (
    gauss_newton_input_hessian,
    input_hessian,
    input_hessian_spectrum,
    loss_along_direction,
    same_linear_region,
)

N_CLASSES = 4


def relu_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, N_CLASSES)
    )


def relu_cnn() -> nn.Module:
    """Conv, eval-mode batch norm with non-trivial statistics, ReLU and max-pooling."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(6 * 2 * 2, N_CLASSES),
    )
    norm = model[1]
    with torch.no_grad():
        norm.running_mean.uniform_(-0.5, 0.5)
        norm.running_var.uniform_(0.5, 2.0)
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.2, 0.2)
    return model


def smooth_mlp(activation: type[nn.Module]) -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Linear(12, 16), activation(), nn.Linear(16, 16), activation(), nn.Linear(16, N_CLASSES)
    )


PIECEWISE = {"mlp": (relu_mlp, (12,)), "cnn": (relu_cnn, (1, 8, 8))}


def sample_batch(shape: tuple[int, ...], n: int, seed: int = 2) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(n, *shape, generator=generator)
    return inputs, torch.randint(0, N_CLASSES, (n,), generator=generator)


@pytest.mark.parametrize("name", PIECEWISE)
def test_hessian_equals_gauss_newton_and_is_psd_with_low_rank(name):
    make, shape = PIECEWISE[name]
    model = make()
    inputs, targets = sample_batch(shape, 5)
    d = inputs[0].numel()
    for x, y in zip(inputs, targets):
        h = input_hessian(model, x, y)
        g = gauss_newton_input_hessian(model, x, y)
        assert h.shape == (d, d) and h.dtype == torch.float64
        assert torch.allclose(h, h.T, rtol=0, atol=1e-12 * h.abs().max())
        assert (h - g).abs().max() <= 1e-8 * g.abs().max()
    spectrum = input_hessian_spectrum(model, inputs, targets)
    assert len(spectrum) == len(inputs)
    assert (spectrum.max_eig > 0).all()
    assert (spectrum.min_eig >= -1e-10 * spectrum.max_eig).all()
    assert spectrum.psd.all() and (spectrum.n_negative == 0).all()
    assert (spectrum.n_positive <= N_CLASSES - 1).all()
    assert (spectrum.n_positive >= 1).all()


@pytest.mark.parametrize("activation", [nn.Tanh, nn.Softplus, nn.GELU])
def test_smooth_activations_have_negative_curvature(activation):
    model = smooth_mlp(activation)
    inputs, targets = sample_batch((12,), 20)
    spectrum = input_hessian_spectrum(model, inputs, targets)
    scale = spectrum[["min_eig", "max_eig"]].abs().max(axis=1)
    assert (spectrum.min_eig < -1e-6 * scale).any()
    assert not spectrum.psd.all()
    # the Gauss-Newton form misses the second-order term of the network
    x, y = inputs[0], targets[0]
    h, g = input_hessian(model, x, y), gauss_newton_input_hessian(model, x, y)
    assert (h - g).abs().max() > 1e-3 * g.abs().max()


@pytest.mark.parametrize("training", [True, False])
def test_model_mode_and_dtype_untouched(training):
    model = relu_cnn().train(training)
    model[1].train(not training)  # mixed modes must come back as they were
    modes = [m.training for m in model.modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = sample_batch((1, 8, 8), 1)
    input_hessian(model, x[0], y[0])
    gauss_newton_input_hessian(model, x[0], y[0])
    loss_along_direction(model, x[0], y[0], torch.ones_like(x[0]), [0.0, 1.0])
    same_linear_region(model, x[0], x[0])
    assert [m.training for m in model.modules()] == modes
    assert all(p.dtype == torch.float32 and p.grad is None for p in model.parameters())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("name", PIECEWISE)
def test_loss_is_convex_along_gradient_inside_a_linear_region(name):
    make, shape = PIECEWISE[name]
    model = make()
    model64 = copy.deepcopy(model).double().eval()
    inputs, targets = sample_batch(shape, 3, seed=5)
    for x, y in zip(inputs, targets):
        x = x.double()
        z = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model64(z[None]), y[None]), z)
        direction = grad / grad.norm()
        reach = 1.0
        while not same_linear_region(model, x, x + reach * direction):
            reach /= 2
        assert reach > 1e-6
        losses = loss_along_direction(model, x, y, direction, torch.linspace(0, reach, 41))
        second = losses[2:] - 2 * losses[1:-1] + losses[:-2]
        assert losses.dtype == torch.float64
        assert (second >= -1e-13).all()
        assert (losses.diff() > 0).all()  # ascent direction of a convex function
        # a central second difference at mid-segment matches the Hessian's quadratic form
        middle, step = reach / 2, min(reach / 4, 1e-3)
        points = [middle - step, middle, middle + step]
        around = loss_along_direction(model, x, y, direction, points)
        curvature = (around[0] - 2 * around[1] + around[2]) / step**2
        hessian = input_hessian(model, x + middle * direction, y)
        quadratic = direction.flatten() @ hessian @ direction.flatten()
        assert curvature.item() == pytest.approx(quadratic.item(), rel=1e-4)


def test_same_linear_region():
    model = relu_cnn()
    x, _ = sample_batch((1, 8, 8), 1)
    assert same_linear_region(model, x[0], x[0])
    assert not same_linear_region(model, x[0], -x[0])
    with pytest.raises(ValueError, match="ReLU"):
        same_linear_region(nn.Linear(3, 2), torch.zeros(3), torch.ones(3))
