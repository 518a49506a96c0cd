"""Curvature of the loss with respect to one input (paper claim A3).

For a network that is piecewise linear in its input (linear and convolutional
layers, ReLU, max-pooling, batch norm in eval mode), the logits are
``z(x) = J x + b`` inside each linear region, so with softmax cross-entropy the
Hessian of the loss with respect to the input is

    H = J^T (diag(p) - p p^T) J,        p = softmax(z),

the Gauss-Newton form. ``diag(p) - p p^T`` is positive semi-definite with the
all-ones vector in its kernel, so ``H`` is PSD with rank at most ``C - 1``:
the loss has no saddle points or local maxima in the input inside a region, and
finding an adversarial perturbation is a "saddle-free" ascent. Smooth
activations (tanh, softplus, GELU) add the term ``sum_k dL/dz_k * d^2 z_k/dx^2``,
which is generally indefinite.

All computations run the model in eval mode (each module's mode is restored
afterwards) on float64 copies of its parameters and buffers; the user's model
keeps its dtype. Single samples ``x`` have the input shape without a batch
dimension; Hessians are over the flattened input, shape ``(d, d)``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, jacrev

from largebatch.evaluation import eval_mode

__all__ = [
    "DEFAULT_TOL",
    "ROUNDOFF_FACTOR",
    "gauss_newton_input_hessian",
    "input_hessian",
    "input_hessian_spectrum",
    "logit_jacobian",
    "logits_function",
    "loss_along_direction",
    "same_linear_region",
]

LossFn = Callable[..., Tensor]

DEFAULT_TOL = 1e-8
"""Relative eigenvalue tolerance: ``|lambda| <= tol * max|lambda|`` counts as zero.

Round-off in a float64 Hessian is around 1e-13 relative to its largest
eigenvalue, while the negative curvature of smooth networks is typically 1e-4
relative or more, so 1e-8 separates the two with a wide margin either way."""

HESSIAN_CHUNK = 64
"""Rows of the dense input Hessian computed per vectorized pass (memory ~ chunk x one backward pass)."""

ROUNDOFF_FACTOR = 100.0
"""Multiple of machine epsilon allowed as round-off (see :func:`input_hessian_spectrum`)."""


def logits_function(model: nn.Module, dtype: torch.dtype = torch.float64) -> Callable[[Tensor], Tensor]:
    """``inputs -> logits`` using ``dtype`` copies of the model's floating tensors (no grad to them)."""
    state = {
        name: tensor.detach().to(dtype) if tensor.is_floating_point() else tensor
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]
    }
    return lambda inputs: functional_call(model, state, (inputs,))


def _target(y: Tensor | int, device: torch.device) -> Tensor:
    return torch.as_tensor(y, device=device).reshape(1)


def input_hessian(
    model: nn.Module,
    x: Tensor,
    y: Tensor | int,
    loss_fn: LossFn = F.cross_entropy,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Dense Hessian of ``loss_fn(model(x), y)`` w.r.t. the flattened input ``x``.

    Exact second derivatives in ``dtype``: the Jacobian of the input gradient, row
    by row by reverse mode, :data:`HESSIAN_CHUNK` rows per vectorized pass, so the
    memory stays bounded for image inputs (a CIFAR image has ``d = 3072``; all rows
    in one pass took 10 GB through C1). Returns a ``(d, d)`` tensor with ``d = x.numel()``.
    """
    shape = x.shape
    flat = x.detach().to(dtype).flatten()
    target = _target(y, x.device)
    with eval_mode(model):
        logits_of = logits_function(model, dtype)

        def loss(z: Tensor) -> Tensor:
            return loss_fn(logits_of(z.view(1, *shape)), target)

        return jacrev(jacrev(loss), chunk_size=HESSIAN_CHUNK)(flat)


def gauss_newton_input_hessian(
    model: nn.Module,
    x: Tensor,
    y: Tensor | int | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Closed form ``J^T (diag(p) - p p^T) J`` for softmax cross-entropy.

    ``J`` is the Jacobian of the logits w.r.t. the flattened input (by
    ``torch.func.jacrev``) and ``p`` the softmax. This equals
    :func:`input_hessian` exactly for piecewise-linear networks. ``y`` is not
    needed (the cross-entropy Hessian in the logits does not depend on the
    label); it is accepted so both functions can be called alike.
    """
    jacobian = logit_jacobian(model, x, dtype)  # (C, d)
    with eval_mode(model), torch.no_grad():
        p = torch.softmax(logits_function(model, dtype)(x.detach().to(dtype).unsqueeze(0))[0], dim=0)
    curvature = torch.diag(p) - torch.outer(p, p)
    return jacobian.T @ curvature @ jacobian


def logit_jacobian(model: nn.Module, x: Tensor, dtype: torch.dtype = torch.float64) -> Tensor:
    """Jacobian ``(C, d)`` of the logits w.r.t. one flattened input (``jacrev``, eval mode)."""
    shape = x.shape
    with eval_mode(model):
        logits_of = logits_function(model, dtype)
        return jacrev(lambda z: logits_of(z.view(1, *shape))[0])(x.detach().to(dtype).flatten())


def input_hessian_spectrum(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    loss_fn: LossFn = F.cross_entropy,
    tol: float = DEFAULT_TOL,
    roundoff_factor: float = ROUNDOFF_FACTOR,
    dtype: torch.dtype = torch.float64,
) -> pd.DataFrame:
    """Eigenvalue summary of the input Hessian, one row per sample of the batch.

    An eigenvalue counts as zero when its magnitude is at most

        threshold = max(tol * max|eig|, roundoff_factor * eps * ||J||_2^2),

    the larger of a relative tolerance and the round-off of ``J^T A J`` in
    ``dtype`` (``J`` the Jacobian of the logits, ``A`` the softmax curvature, whose
    entries carry an absolute error of order ``eps``). The second term matters at
    points classified with near certainty, where every eigenvalue is itself of the
    order of round-off.

    Columns: ``sample`` (index in the batch), ``label``, ``confidence`` (largest
    softmax probability), ``min_eig``, ``max_eig``, ``threshold``, ``n_positive`` /
    ``n_negative`` (eigenvalues above ``threshold`` / below ``-threshold``),
    ``n_nonzero``, ``psd`` (no eigenvalue below ``-threshold``) and
    ``negative_ratio`` (``-min_eig / max|eig|`` if not PSD, else 0).
    """
    eps = torch.finfo(dtype).eps
    rows = []
    for index, (x, y) in enumerate(zip(inputs, targets)):
        h = input_hessian(model, x, y, loss_fn=loss_fn, dtype=dtype)
        eigenvalues = torch.linalg.eigvalsh((h + h.T) / 2)
        jacobian = logit_jacobian(model, x, dtype)
        with eval_mode(model), torch.no_grad():
            logits = logits_function(model, dtype)(x.detach().to(dtype).unsqueeze(0))
        largest = eigenvalues.abs().max().item()
        threshold = max(tol * largest,
                        roundoff_factor * eps * torch.linalg.matrix_norm(jacobian, 2).item() ** 2)
        n_negative = int((eigenvalues < -threshold).sum())
        n_positive = int((eigenvalues > threshold).sum())
        rows.append({
            "sample": index, "label": int(y), "confidence": torch.softmax(logits, 1).max().item(),
            "min_eig": eigenvalues.min().item(), "max_eig": eigenvalues.max().item(),
            "threshold": threshold, "n_positive": n_positive, "n_negative": n_negative,
            "n_nonzero": n_positive + n_negative, "psd": n_negative == 0,
            "negative_ratio": (-eigenvalues.min().item() / largest) if n_negative else 0.0,
        })
    return pd.DataFrame(rows)


def loss_along_direction(
    model: nn.Module,
    x: Tensor,
    y: Tensor | int,
    direction: Tensor,
    alphas: Sequence[float] | Tensor,
    loss_fn: LossFn = F.cross_entropy,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Loss at ``x + a * direction`` for each ``a`` in ``alphas``, in ``dtype``.

    Inside one linear region of a piecewise-linear network this is a convex
    function of ``a`` (see :func:`same_linear_region`).
    """
    alphas = torch.as_tensor(alphas, dtype=dtype, device=x.device)
    shape = (-1,) + (1,) * x.dim()
    points = x.detach().to(dtype) + alphas.view(shape) * direction.detach().to(dtype)
    targets = _target(y, x.device).expand(len(alphas))
    with eval_mode(model), torch.no_grad():
        logits = logits_function(model, dtype)(points)
        return loss_fn(logits, targets, reduction="none")


_PIECEWISE_MODULES = (nn.ReLU, nn.LeakyReLU, nn.MaxPool1d, nn.MaxPool2d)


def _activation_pattern(model: nn.Module, x: Tensor) -> list[Tensor]:
    """Which side of every kink one sample lies on: ReLU signs and max-pool argmaxes."""
    pattern: list[Tensor] = []

    def record(module: nn.Module, args: tuple[Tensor, ...], _output: Tensor) -> None:
        (inputs,) = args
        if isinstance(module, (nn.ReLU, nn.LeakyReLU)):
            pattern.append(inputs > 0)
        else:
            pool = F.max_pool1d if isinstance(module, nn.MaxPool1d) else F.max_pool2d
            _, indices = pool(
                inputs,
                module.kernel_size,
                module.stride,
                module.padding,
                module.dilation,
                ceil_mode=module.ceil_mode,
                return_indices=True,
            )
            pattern.append(indices)

    modules = [m for m in model.modules() if isinstance(m, _PIECEWISE_MODULES)]
    if not modules:
        raise ValueError(
            "model has no ReLU, LeakyReLU, MaxPool1d or MaxPool2d modules to inspect "
            "(activations called functionally are invisible to same_linear_region)"
        )
    handles = [m.register_forward_hook(record) for m in modules]
    try:
        with eval_mode(model), torch.no_grad():
            logits_function(model, torch.float64)(x.detach().to(torch.float64).unsqueeze(0))
    finally:
        for handle in handles:
            handle.remove()
    return pattern


def same_linear_region(model: nn.Module, x1: Tensor, x2: Tensor) -> bool:
    """Whether two samples share every ReLU sign and max-pool argmax (eval mode, float64).

    Only activation *modules* are seen (``nn.ReLU``, ``nn.LeakyReLU``,
    ``nn.MaxPool1d/2d``), not functional calls. A linear region is convex (a
    polytope cut out by linear inequalities), so when the two end points share
    the pattern the whole segment between them does too.
    """
    first = _activation_pattern(model, x1)
    second = _activation_pattern(model, x2)
    return all(torch.equal(a, b) for a, b in zip(first, second))
