"""White-box adversarial attacks, robust accuracy and adversarial training inputs.

Conventions shared by everything here:

* ``model`` is an ``nn.Module`` classifier returning logits; input normalization
  lives inside the model, so every ``eps`` is measured in raw input units.
* ``clip`` is the data set's value range ``(low, high)`` (``(0.0, 1.0)`` for
  images) or ``None`` when inputs are unbounded (MNIST-1D). Adversarial inputs
  are clipped to it after every step. Inputs must lie inside it and ``low < high``
  (``ValueError`` otherwise): clipping an input that starts outside the box would
  move it by more than ``eps``, and the robust accuracy would measure the clipping.
* Attacks run the model in eval mode and restore every module's previous mode
  afterwards, also when an exception escapes. Gradients are taken with respect to
  the input only (``torch.autograd.grad``), so parameter ``.grad`` is never touched.
* ``loss_fn(logits, targets, reduction="none")`` must return per-sample losses,
  as ``F.cross_entropy`` does. Attacks ascend the sum of these losses, which
  gives every sample its own gradient.
"""

from __future__ import annotations

import inspect
import math
from typing import Callable, Sequence, Union

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from largebatch.evaluation import Data, check_finite, check_labels, eval_mode, iterate_batches, model_device

__all__ = [
    "AdversarialTransform",
    "eval_mode",
    "fgsm",
    "pgd",
    "robust_accuracy",
]

LossFn = Callable[..., Tensor]
Clip = Union[tuple[float, float], None]

NORMS = ("inf", "2")
COUNT_RULES = ("round", "floor")
ATTACKS = ("fgsm", "pgd")


# ----------------------------------------------------------------------------
# argument checks (run before any forward pass)
# ----------------------------------------------------------------------------


def _check_eps(eps: float, name: str = "eps") -> None:
    if not eps >= 0:  # also rejects NaN
        raise ValueError(f"{name} must be a number >= 0, got {eps!r}")


def _check_clip(clip: Clip) -> None:
    """``clip`` is None or a pair ``(low, high)`` of finite numbers (or 0-d tensors), ``low < high``."""
    if clip is None:
        return
    bounds = None
    if isinstance(clip, (tuple, list)) and len(clip) == 2 and not any(isinstance(v, bool) for v in clip):
        try:
            bounds = float(clip[0]), float(clip[1])
        except (TypeError, ValueError):
            pass
    if bounds is None or not (math.isfinite(bounds[0]) and math.isfinite(bounds[1]) and bounds[0] < bounds[1]):
        raise ValueError(f"clip must be None or (low, high) with finite numbers low < high (the data's value "
                         f"range, e.g. (0.0, 1.0) for images), got {clip!r}")


def _check_inside(inputs: Tensor, clip: Clip) -> None:
    """Inputs must lie in the clip box: clipping inputs that start outside it would move
    them by more than ``eps`` (raw inputs are expected; normalization lives in the model)."""
    _check_clip(clip)
    if clip is None or inputs.numel() == 0:
        return
    low, high = float(inputs.min()), float(inputs.max())
    if low < float(clip[0]) or high > float(clip[1]):
        raise ValueError(f"inputs must lie inside clip={tuple(clip)!r}, but they range over [{low:.4g}, {high:.4g}]: "
                         "pass raw inputs (the model normalizes them) or clip=None for unbounded inputs")


def _check_pgd_args(
    eps: float, norm: str, steps: int, step_size: float | None, restarts: int
) -> None:
    _check_eps(eps)
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if restarts < 1:
        raise ValueError(f"restarts must be an integer >= 1, got {restarts!r}")
    if step_size is not None and not step_size > 0:
        raise ValueError(f"step_size must be > 0 or None (default), got {step_size!r}")


# ----------------------------------------------------------------------------
# building blocks
# ----------------------------------------------------------------------------


def _losses_and_grad(
    model: nn.Module, x: Tensor, targets: Tensor, loss_fn: LossFn, with_grad: bool, check: bool = False
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Per-sample losses, per-sample misclassification and (optionally) d loss / d x.

    ``check`` (the first call of an attack) rejects labels outside the model's classes
    and a non-finite input gradient, naming them.
    """
    x = x.detach().requires_grad_(with_grad)
    with torch.set_grad_enabled(with_grad):
        logits = model(x)
        if check and logits.ndim == 2:
            check_labels(targets, logits.shape[1])
        losses = loss_fn(logits, targets, reduction="none")
        grad = torch.autograd.grad(losses.sum(), x)[0] if with_grad else None
    if check and grad is not None and not bool(torch.isfinite(grad).all()):
        raise FloatingPointError("non-finite input gradient (NaN or inf) of the attack's loss: "
                                 "check the model's weights and the inputs")
    broken = logits.argmax(dim=1) != targets
    return losses.detach(), broken, grad


def _l2_norms(t: Tensor) -> Tensor:
    """Per-sample L2 norms, shaped to broadcast against ``t``."""
    norms = t.flatten(1).norm(dim=1)
    return norms.view(-1, *([1] * (t.dim() - 1)))


def _direction(grad: Tensor, norm: str) -> Tensor:
    """Steepest-ascent direction of unit size in the given norm."""
    if norm == "inf":
        return grad.sign()
    return grad / _l2_norms(grad).clamp_min(torch.finfo(grad.dtype).tiny)


def _project(x: Tensor, x0: Tensor, eps: float, norm: str, clip: Clip) -> Tensor:
    """Project ``x`` onto the eps ball around ``x0``, then clip to the value range."""
    delta = x - x0
    if norm == "inf":
        delta = delta.clamp(-eps, eps)
    else:
        norms = _l2_norms(delta).clamp_min(torch.finfo(delta.dtype).tiny)
        delta = delta * (eps / norms).clamp(max=1.0)
    x = x0 + delta
    return x if clip is None else x.clamp(*clip)


def _random_start(
    x0: Tensor, eps: float, norm: str, clip: Clip, generator: torch.Generator | None
) -> Tensor:
    """A point drawn uniformly from the eps ball around ``x0``, clipped to range."""
    options = dict(dtype=x0.dtype, device=x0.device, generator=generator)
    if norm == "inf":
        delta = (2 * torch.rand(x0.shape, **options) - 1) * eps
    else:
        gauss = torch.randn(x0.shape, **options)
        unit = gauss / _l2_norms(gauss).clamp_min(torch.finfo(x0.dtype).tiny)
        dim = x0[0].numel()
        radius = eps * torch.rand(len(x0), **options).pow(1.0 / dim)
        delta = unit * radius.view(-1, *([1] * (x0.dim() - 1)))
    x = x0 + delta
    return x if clip is None else x.clamp(*clip)


# ----------------------------------------------------------------------------
# attacks
# ----------------------------------------------------------------------------


def fgsm(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    eps: float,
    loss_fn: LossFn = F.cross_entropy,
    clip: Clip = None,
) -> Tensor:
    """Fast gradient sign method: one L-inf step of size ``eps`` up the loss.

    Returns ``x + eps * sign(grad)``, projected to the eps ball and clipped to
    ``clip``; the same operations, in the same order, as Foolbox's
    ``LinfFastGradientAttack``. ``eps == 0`` returns the inputs unchanged.
    """
    _check_eps(eps)
    check_finite(inputs, "inputs")
    _check_inside(inputs, clip)
    x0 = inputs.detach()
    if eps == 0:
        return x0.clone()
    with eval_mode(model):
        _, _, grad = _losses_and_grad(model, x0, targets, loss_fn, with_grad=True, check=True)
    return _project(x0 + eps * grad.sign(), x0, eps, "inf", clip)


def pgd(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    eps: float,
    norm: str = "inf",
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    restarts: int = 1,
    loss_fn: LossFn = F.cross_entropy,
    clip: Clip = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Projected gradient ascent on the loss within the L-inf or L2 ball of radius ``eps``.

    Each restart starts at a uniform random point of the ball (or at the input
    when ``random_start`` is False) and takes ``steps`` steps of size
    ``step_size`` (default ``2.5 * eps / steps``): sign of the gradient for
    ``norm="inf"``, gradient normalized per sample for ``norm="2"``. Every
    iterate of every restart is a candidate; per sample the worst one is
    returned: a misclassified candidate beats a correctly classified one, and
    among equals the higher loss wins. So a sample counts as broken if any
    iterate of any restart breaks it, and with the same ``generator`` state more
    steps (at a fixed ``step_size``) or more restarts never break fewer samples.
    ``eps == 0`` returns the inputs unchanged.
    """
    _check_pgd_args(eps, norm, steps, step_size, restarts)
    check_finite(inputs, "inputs")
    _check_inside(inputs, clip)
    x0 = inputs.detach()
    if eps == 0:
        return x0.clone()
    step = 2.5 * eps / steps if step_size is None else step_size
    best = x0.clone()
    best_broken = torch.zeros(len(x0), dtype=torch.bool, device=x0.device)
    best_loss = torch.full((len(x0),), -torch.inf, dtype=x0.dtype, device=x0.device)
    with eval_mode(model):
        for restart in range(restarts):
            x = _random_start(x0, eps, norm, clip, generator) if random_start else x0
            for t in range(steps + 1):
                last = t == steps
                losses, broken, grad = _losses_and_grad(
                    model, x, targets, loss_fn, with_grad=not last, check=restart == 0 and t == 0
                )
                better = (broken & ~best_broken) | ((broken == best_broken) & (losses > best_loss))
                best[better] = x[better]
                best_broken |= broken
                best_loss = torch.where(better, losses.to(best_loss.dtype), best_loss)
                if not last:
                    x = _project(x + step * _direction(grad, norm), x0, eps, norm, clip)
    return best


ATTACK_FUNCTIONS: dict[str, Callable[..., Tensor]] = {"fgsm": fgsm, "pgd": pgd}


def _attack_function(
    attack: str, attack_kwargs: dict, parameter: str = "attack"
) -> Callable[..., Tensor]:
    """Look up an attack by name and check its keyword arguments (no compute)."""
    if attack not in ATTACK_FUNCTIONS:
        raise ValueError(f"{parameter} must be one of {ATTACKS}, got {attack!r}")
    function = ATTACK_FUNCTIONS[attack]
    inspect.signature(function).bind(None, None, None, 0.0, **attack_kwargs)
    _check_clip(attack_kwargs.get("clip"))
    if attack == "pgd":
        _check_pgd_args(
            0.0,
            attack_kwargs.get("norm", "inf"),
            attack_kwargs.get("steps", 10),
            attack_kwargs.get("step_size"),
            attack_kwargs.get("restarts", 1),
        )
    return function


# ----------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------


def robust_accuracy(
    model: nn.Module,
    data: Data,
    epsilons: Sequence[float],
    attack: str = "fgsm",
    batch_size: int = 256,
    **attack_kwargs,
) -> pd.DataFrame:
    """Accuracy under attack for each epsilon, over all points of ``data``.

    ``data`` is ``(inputs, targets)`` (split into ``batch_size`` chunks) or an
    iterable of such batches (used as given). ``attack_kwargs`` go to
    :func:`fgsm` or :func:`pgd` (e.g. ``clip``, ``norm``, ``steps``,
    ``generator``). The data are read once; each batch is attacked at every
    epsilon, smallest first.

    The denominator is every point: a point misclassified clean counts as not
    robust, and a point broken at a smaller epsilon counts as broken at every
    larger one (the smaller ball lies inside the larger, so the example found
    there is valid too). The curve is therefore non-increasing in epsilon even
    though FGSM alone does not guarantee that.

    Returns a DataFrame with columns ``epsilon, accuracy, attack, norm``, one row
    per distinct epsilon in increasing order.
    """
    if len(epsilons) == 0:
        raise ValueError("epsilons must name at least one radius (0 gives the clean accuracy)")
    for eps in epsilons:
        _check_eps(eps, "every epsilon")
    attack_fn = _attack_function(attack, attack_kwargs)
    if batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    ordered = sorted(set(float(eps) for eps in epsilons))
    device = model_device(model)
    robust = torch.zeros(len(ordered), dtype=torch.long)
    total = 0
    with eval_mode(model):
        for inputs, targets in iterate_batches(data, batch_size):
            inputs, targets = inputs.to(device), targets.to(device)
            _check_inside(inputs, attack_kwargs.get("clip"))
            with torch.no_grad():
                still_correct = model(inputs).argmax(dim=1) == targets
            for k, eps in enumerate(ordered):
                adversarial = attack_fn(model, inputs, targets, eps, **attack_kwargs)
                with torch.no_grad():
                    still_correct &= model(adversarial).argmax(dim=1) == targets
                robust[k] += int(still_correct.sum())
            total += len(targets)
    if total == 0:
        raise ValueError("data is empty")
    return pd.DataFrame(
        {
            "epsilon": ordered,
            "accuracy": (robust.double() / total).tolist(),
            "attack": attack,
            "norm": attack_kwargs.get("norm", "inf"),
        }
    )


# ----------------------------------------------------------------------------
# adversarial training
# ----------------------------------------------------------------------------


def _pgd_passes(attack_kwargs: dict) -> int:
    """Input-gradient passes per sample of :func:`pgd` with these keyword arguments."""
    defaults = inspect.signature(pgd).parameters
    return (attack_kwargs.get("steps", defaults["steps"].default)
            * attack_kwargs.get("restarts", defaults["restarts"].default))


class AdversarialTransform:
    """Training-loop input transform that makes part of each micro-batch adversarial.

    Called as ``transform(model, inputs, targets) -> (inputs', targets)``: the
    first ``count`` of the ``n`` samples are replaced by adversarial examples
    (FGSM by default: one L-inf step of size ``eps``, as in the ABSA paper;
    ``method="pgd"`` uses :func:`pgd`), generated in eval mode. The model's
    modes are restored afterwards and parameter ``.grad`` is left untouched.

    * ``count="round"`` (default): ``round(fraction * n)``; ``count="floor"``: the ABSA
      reference code's ``int(fraction * n)``, at least 1 while ``fraction > 1 / n`` and 0
      otherwise (25 of 128 at 0.2, 1 at 0.0125, none at 1/128).
    * ``clip``: a value range ``(low, high)``, ``None`` (unbounded), or ``"own"``: the
      minimum and maximum of the attacked samples themselves, as the reference code
      clips (on [0, 1] images that is [0, 1] in practice).
    ``fraction`` and ``eps`` may be changed between calls (the ABSA controller
    halves ``fraction``). ``attack_kwargs`` go to the attack (``loss_fn``, and
    for PGD ``norm``, ``steps``, ``step_size``, ...).

    Cost: the gradient evaluations (samples x input-gradient passes: 1 for FGSM,
    ``steps x restarts`` for PGD) spent since the last call are returned by
    :meth:`take_gradient_evaluations`, which the training loop calls after every update.
    """

    def __init__(
        self,
        fraction: float,
        eps: float,
        method: str = "fgsm",
        clip: Clip | str = None,
        count: str = "round",
        **attack_kwargs,
    ) -> None:
        self._attack = _attack_function(method, attack_kwargs, "method")
        if count not in COUNT_RULES:
            raise ValueError(f"count must be one of {COUNT_RULES}, got {count!r}")
        if isinstance(clip, str):
            if clip != "own":
                raise ValueError(f"clip must be (low, high), None or 'own', got {clip!r}")
        else:
            _check_clip(clip)
        self.method, self.count = method, count
        self.clip = clip
        self.attack_kwargs = attack_kwargs
        self.fraction = fraction
        self.eps = eps
        self._pending_evaluations = 0
        self.passes_per_sample = 1 if method == "fgsm" else _pgd_passes(attack_kwargs)

    @property
    def fraction(self) -> float:
        """Share of each micro-batch replaced by adversarial examples, in [0, 1]."""
        return self._fraction

    @fraction.setter
    def fraction(self, value: float) -> None:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"fraction must be in [0, 1], got {value!r}")
        self._fraction = float(value)

    @property
    def eps(self) -> float:
        """Attack radius (L-inf unless ``norm="2"`` is given to PGD), >= 0."""
        return self._eps

    @eps.setter
    def eps(self, value: float) -> None:
        _check_eps(value)
        self._eps = float(value)

    def __call__(
        self, model: nn.Module, inputs: Tensor, targets: Tensor
    ) -> tuple[Tensor, Tensor]:
        count = self.adversarial_count(len(inputs))
        if count == 0 or self.eps == 0:
            return inputs, targets
        attacked = inputs[:count]
        clip = self.clip
        if clip == "own":
            clip = (float(attacked.min()), float(attacked.max()))
            if clip[0] == clip[1]:  # clamped to one value, the reference's examples are the samples
                return inputs, targets
        adversarial = self._attack(
            model, attacked, targets[:count], self.eps, clip=clip, **self.attack_kwargs
        )
        self._pending_evaluations += count * self.passes_per_sample
        return torch.cat([adversarial, inputs[count:].detach()]), targets

    def adversarial_count(self, size: int) -> int:
        """How many of ``size`` samples are replaced, by the ``count`` rule."""
        if self.count == "round":
            return round(self.fraction * size)
        return max(int(self.fraction * size), 1) if self.fraction > 1 / size else 0

    def take_gradient_evaluations(self) -> int:
        """Gradient evaluations spent on attacks since the last call (then reset to 0)."""
        spent, self._pending_evaluations = self._pending_evaluations, 0
        return spent

    def __repr__(self) -> str:
        return (
            f"AdversarialTransform(fraction={self.fraction}, eps={self.eps}, "
            f"method={self.method!r}, clip={self.clip!r}, count={self.count!r})"
        )
