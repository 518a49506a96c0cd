"""Loss-landscape tools: evaluation, interpolation, 1-D/2-D slices and sharpness.

* :func:`interpolate` -- the linear path between two solutions (Goodfellow et al.
  2015; Keskar et al. 2017, Fig. 3); :func:`interpolate_state_dicts` its points.
* :func:`random_direction` -- filter-normalized random directions (Li et al. 2018).
* :func:`top_eigenvector_direction` -- a Hessian eigenvector as a direction
  (Yao et al. 2018).
* :func:`loss_along_directions` -- loss and accuracy on a line or a plane through
  the current weights.
* :func:`keskar_sharpness` -- the epsilon-sharpness of Keskar et al. (2017), Metric 2.1.

Data is either a tuple ``(inputs, targets)`` of tensors, split here into batches of
``batch_size``, or any iterable of ``(inputs, targets)`` batches (e.g. a
``DataLoader``). Every function leaves the model as it found it: weights, buffers,
gradients and train/eval mode.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.optimize
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from largebatch.evaluation import (DEFAULT_BATCH_SIZE, Data, LossFn, eval_mode, evaluate,
                                   iterate_batches, model_device)

Direction = dict[str, Tensor]
_NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


# ---------------------------------------------------------------- evaluation


def _trainable(model: nn.Module) -> dict[str, nn.Parameter]:
    """Trainable parameters by name, in ``model.parameters()`` order."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


# ------------------------------------------------------------- interpolation


def interpolate_state_dicts(
    state_a: Mapping[str, Tensor], state_b: Mapping[str, Tensor], alpha: float
) -> dict[str, Tensor]:
    """The state dict ``alpha * state_b + (1 - alpha) * state_a``.

    Every floating-point entry is interpolated -- weights and batch-norm running
    means and variances alike; other entries (e.g. ``num_batches_tracked``) are
    taken from ``state_a``. Running variances, which extrapolation (``alpha``
    outside [0, 1]) can make negative, are clamped at 0.
    """
    if state_a.keys() != state_b.keys():
        raise ValueError("the two state dicts have different keys")
    state = {}
    for key, tensor_a in state_a.items():
        if tensor_a.is_floating_point():
            mixed = alpha * state_b[key].to(tensor_a.device) + (1 - alpha) * tensor_a
            state[key] = mixed.clamp(min=0) if key.endswith("running_var") else mixed
        else:
            state[key] = tensor_a.clone()
    return state


def interpolate(
    model_a: nn.Module,
    model_b: nn.Module,
    data_by_split: Mapping[str, Data],
    alphas: Sequence[float] | Tensor | None = None,
    loss_fn: LossFn = F.cross_entropy,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> pd.DataFrame:
    """Loss and accuracy along ``theta(alpha) = alpha * theta_b + (1 - alpha) * theta_a``.

    ``alpha = 0`` is ``model_a`` and ``alpha = 1`` is ``model_b``, exactly. Keskar et
    al. plot ``f(alpha * x_LB + (1 - alpha) * x_SB)``: pass the small-batch solution
    as ``model_a`` and the large-batch one as ``model_b``. The whole state dict is
    interpolated, batch-norm buffers included (see :func:`interpolate_state_dicts`).
    ``alphas`` defaults to -1, -0.9, ..., 2. Neither model is modified.

    Returns a long DataFrame with columns ``alpha, split, loss, accuracy``.
    """
    if alphas is None:
        alphas = torch.arange(-10, 21, dtype=torch.float64) / 10
    if len(alphas) == 0 or not data_by_split:
        raise ValueError("alphas and data_by_split must not be empty")
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    mismatched = [k for k in state_a if k in state_b and state_a[k].shape != state_b[k].shape]
    if mismatched:
        raise ValueError(f"model_a and model_b must be the same network; the shapes of {mismatched} differ")
    probe = copy.deepcopy(model_a)
    rows = []
    for alpha in (float(a) for a in alphas):
        probe.load_state_dict(interpolate_state_dicts(state_a, state_b, alpha))
        for split, data in data_by_split.items():
            rows.append({"alpha": alpha, "split": split,
                         **evaluate(probe, data, loss_fn, batch_size)})
    return pd.DataFrame(rows, columns=["alpha", "split", "loss", "accuracy"])


# ---------------------------------------------------------------- directions


def _norm_parameter_names(model: nn.Module) -> set[str]:
    """Names of the parameters that belong to normalization layers (BN, GN, LN)."""
    return {
        f"{module_name}.{name}" if module_name else name
        for module_name, module in model.named_modules()
        if isinstance(module, _NORM_LAYERS)
        for name, _ in module.named_parameters(recurse=False)
    }


def random_direction(
    model: nn.Module,
    seed: int,
    filter_normalize: bool = True,
    ignore: Sequence[str] = ("bias", "bn"),
) -> Direction:
    """A seeded Gaussian direction over the trainable parameters (Li et al. 2018).

    With ``filter_normalize`` each filter of the direction -- a slice along dim 0: a
    conv filter, a row of a linear weight -- is rescaled to the norm of the same
    filter of the weights, ``d_i <- d_i / ||d_i|| * ||theta_i||``. A parameter with
    at most one dimension is one filter as a whole (so a zero-initialized one, like
    a fresh batch-norm bias, gets a zero direction).

    ``ignore`` names parameter groups whose direction is zero: ``"bn"`` the
    parameters of normalization layers, ``"bias"`` the other parameters named
    ``bias``. The default is Li et al.'s choice; pass ``()`` to include them all.
    The draw is made on the CPU from ``seed``, so it does not depend on the device.
    """
    unknown = set(ignore) - {"bias", "bn"}
    if unknown:
        raise ValueError(f"unknown ignore groups {sorted(unknown)}; use 'bias' and/or 'bn'")
    norm_names = _norm_parameter_names(model)
    generator = torch.Generator().manual_seed(seed)
    direction = {}
    for name, param in _trainable(model).items():
        d = torch.randn(param.shape, generator=generator, dtype=torch.float64)
        is_bn = name in norm_names
        is_bias = not is_bn and name.rsplit(".", 1)[-1] == "bias"
        if ("bn" in ignore and is_bn) or ("bias" in ignore and is_bias):
            d.zero_()
        elif filter_normalize:
            weight = param.detach().to("cpu", torch.float64)
            rows = d.reshape(len(d), -1) if d.dim() > 1 else d.reshape(1, -1)
            weight_rows = weight.reshape(rows.shape)
            scale = weight_rows.norm(dim=1, keepdim=True) / (rows.norm(dim=1, keepdim=True) + 1e-10)
            rows *= scale
        direction[name] = d.to(param.device, param.dtype)
    return direction


def top_eigenvector_direction(model: nn.Module, eigenvector: Tensor) -> Direction:
    """Unflatten a Hessian eigenvector into a direction dict (Yao et al. 2018).

    ``eigenvector`` is a flat tensor over the trainable parameters, concatenated in
    ``model.parameters()`` order; it is used as given (eigenvectors are usually of
    unit norm, so coordinates along it are distances in weight space).
    """
    params = _trainable(model)
    size = sum(p.numel() for p in params.values())
    if eigenvector.dim() != 1 or eigenvector.numel() != size:
        raise ValueError(
            f"eigenvector has shape {tuple(eigenvector.shape)}; expected ({size},), "
            "the number of trainable parameters"
        )
    pieces = eigenvector.detach().split([p.numel() for p in params.values()])
    return {
        name: piece.reshape(p.shape).to(p.device, p.dtype).clone()
        for (name, p), piece in zip(params.items(), pieces)
    }


def loss_along_directions(
    model: nn.Module,
    data: Data,
    directions: Sequence[Direction],
    coords: Tensor | Sequence[float] | tuple[Sequence[float], Sequence[float]],
    loss_fn: LossFn = F.cross_entropy,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> pd.DataFrame:
    """Loss and accuracy at ``theta + a * d1`` (one direction) or ``theta + a * d1 + b * d2``.

    ``coords`` is a 1-D sequence of ``a`` for one direction, or a pair ``(as, bs)``
    spanning a grid for two. Returns a long DataFrame with columns ``alpha, loss,
    accuracy`` (plus ``beta`` for a plane; ``df.pivot(index="beta", columns="alpha",
    values="loss")`` gives the surface). Parameters a direction does not name stay
    fixed. Evaluation is in eval mode; the weights are restored exactly afterwards.
    """
    if len(directions) not in (1, 2):
        raise ValueError("give one direction (a curve) or two (a plane)")
    params = _trainable(model)
    for direction in directions:
        for name, d in direction.items():
            if name not in params or d.shape != params[name].shape:
                raise ValueError(f"direction entry {name!r} matches no trainable parameter")
    if len(directions) == 1:
        points = [(float(a), None) for a in coords]
    else:
        alphas, betas = coords
        points = [(float(a), float(b)) for b in betas for a in alphas]
    names = set().union(*directions)
    originals = {name: params[name].detach().clone() for name in names}
    rows = []
    try:
        for a, b in points:
            with torch.no_grad():
                for name in names:
                    moved = originals[name].clone()
                    if name in directions[0]:
                        moved += a * directions[0][name]
                    if b is not None and name in directions[1]:
                        moved += b * directions[1][name]
                    params[name].copy_(moved)
            row = {"alpha": a} if b is None else {"alpha": a, "beta": b}
            rows.append({**row, **evaluate(model, data, loss_fn, batch_size)})
    finally:
        with torch.no_grad():
            for name in names:
                params[name].copy_(originals[name])
    return pd.DataFrame(rows)


# ----------------------------------------------------------------- sharpness


@dataclass(frozen=True)
class Sharpness:
    """Result of :func:`keskar_sharpness`; ``float(result)`` is the metric."""

    value: float  # 100 * (max_f - f_x) / (1 + f_x)
    f_x: float  # loss at the weights
    max_f: float  # largest loss found in the box (at least f_x: y = 0 is in it)
    num_evals: int  # loss-and-gradient evaluations made by the solver

    def __float__(self) -> float:
        return self.value


def _loss_and_grad(
    model: nn.Module, params: list[nn.Parameter], data: Data, loss_fn: LossFn, batch_size: int
) -> tuple[float, Tensor]:
    """Mean loss over ``data`` and its flat gradient, without touching ``.grad``."""
    device = model_device(model)
    loss_sum, count = 0.0, 0
    grad = torch.zeros(sum(p.numel() for p in params), dtype=params[0].dtype, device=device)
    for inputs, targets in iterate_batches(data, batch_size):
        inputs, targets = inputs.to(device), targets.to(device)
        loss = loss_fn(model(inputs), targets)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        grad += len(targets) * torch.cat([
            (torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)
        ])
        loss_sum += float(loss.detach()) * len(targets)
        count += len(targets)
    return loss_sum / count, grad / count


def _set_flat(params: list[nn.Parameter], flat: Tensor) -> None:
    """Copy a flat vector into the parameters."""
    with torch.no_grad():
        for p, chunk in zip(params, flat.split([p.numel() for p in params])):
            p.copy_(chunk.reshape(p.shape))


def keskar_sharpness(
    model: nn.Module,
    data: Data,
    eps: float = 1e-3,
    subspace_dim: int | None = None,
    max_iter: int = 10,
    seed: int = 0,
    loss_fn: LossFn = F.cross_entropy,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Sharpness:
    """Keskar et al.'s (2017) sharpness, ``100 * (max_{y in C} f(x + A y) - f(x)) / (1 + f(x))``.

    ``x`` is the flat vector of trainable parameters and ``f`` the mean loss on
    ``data`` in eval mode. In the full space (``subspace_dim=None``) ``A`` is the
    identity and the box ``C`` is ``|y_i| <= eps * (|x_i| + 1)``. With
    ``subspace_dim=p``, ``A`` is an ``(n, p)`` matrix of standard Gaussians drawn from
    ``seed`` and ``C`` is ``|y_i| <= eps * (|(A^+ x)_i| + 1)``, with ``A^+`` the
    pseudo-inverse; ``A`` is held in memory (``n * p`` parameter-sized floats).

    The maximum is approximated with scipy's L-BFGS-B (``max_iter`` iterations) on
    ``-f`` with autograd gradients, started from a uniform random point of the box
    drawn from ``seed`` (at a minimum the gradient at ``y = 0`` vanishes and the
    solver would not move). ``max_f`` is the largest loss evaluated (``f(x)``
    included), so the value is a lower bound on the exact one. Weights, gradients and mode are
    restored afterwards.
    """
    if not (isinstance(eps, (int, float)) and np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
    if subspace_dim is not None and not (isinstance(subspace_dim, int) and subspace_dim >= 1):
        raise ValueError(f"subspace_dim must be an integer >= 1 or None (the full space), got {subspace_dim!r}")
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    params = list(_trainable(model).values())
    x = torch.cat([p.detach().reshape(-1) for p in params])
    generator = torch.Generator().manual_seed(seed)
    if subspace_dim is None:
        basis = None
        bound = eps * (x.double().abs() + 1)
    else:
        basis = torch.randn(x.numel(), subspace_dim, generator=generator).to(x.device, x.dtype)
        gram, projection = (basis.T @ basis).double(), (basis.T @ x).double()
        bound = eps * (torch.linalg.solve(gram, projection).abs() + 1)
    bound = bound.cpu().numpy()
    uniform = torch.rand(len(bound), generator=generator, dtype=torch.float64).numpy()
    start = (2 * uniform - 1) * bound
    evaluations: list[float] = []

    def negative_loss(y: np.ndarray) -> tuple[float, np.ndarray]:
        step = torch.from_numpy(y).to(x.device, x.dtype)
        _set_flat(params, x + (step if basis is None else basis @ step))
        loss, grad = _loss_and_grad(model, params, data, loss_fn, batch_size)
        if basis is not None:
            grad = basis.T @ grad
        evaluations.append(loss)
        return -loss, -grad.double().cpu().numpy()

    f_x = evaluate(model, data, loss_fn, batch_size)["loss"]
    try:
        with eval_mode(model), torch.enable_grad():
            scipy.optimize.minimize(
                negative_loss, start, jac=True, method="L-BFGS-B",
                bounds=np.stack([-bound, bound], axis=1), options={"maxiter": max_iter},
            )
    finally:
        _set_flat(params, x)
    max_f = max(f_x, *evaluations)  # y = 0 lies in the box
    return Sharpness(100 * (max_f - f_x) / (1 + f_x), f_x, max_f, len(evaluations))
