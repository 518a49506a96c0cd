"""One validated description of a training run.

A :class:`RunConfig` names the data, the model and every training choice. It is
checked on construction (types and values, before any compute) and hashed into
the cache key of its result. Fields left at their default value are not part of
the key, so adding a new field with a neutral default keeps old results valid. A
controller whose behaviour changed has a revision in :data:`CONTROLLER_REVISIONS`
that enters the keys of its runs, so a cache never returns a record of its old behaviour.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any

from largebatch.augmentation import AUGMENTATIONS
from largebatch.data import DATASETS
from largebatch.models import MODELS
from largebatch.user_input import ConfigError

SCHEDULES = ("constant", "step", "multistep", "cosine")
LR_SCALING_RULES = ("none", "linear", "sqrt")
ADVERSARIAL_METHODS = ("fgsm", "pgd")
BATCH_SIZE_CONTROLLERS = ("none", "growth", "noise_scale", "abs", "absa")
# Revision 2 of abs/absa: the reference code's rule and estimate defaults (largebatch.absa.AdaptiveRule)
CONTROLLER_REVISIONS = {"abs": 2, "absa": 2}


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a training run. Epoch counts are in passes over the data."""

    # data
    dataset: str = "mnist1d"
    num_samples: int = 5000  # MNIST-1D only: samples generated (train + test), a multiple of 10
    data_root: str | None = None  # image data sets: folder of the files
    augmentation: str = "none"  # training batches only: "none" or "crop_flip" (image data sets)
    # model
    model: str = "mnist1d_cnn"
    model_options: dict[str, Any] = field(default_factory=dict)
    # optimisation
    batch_size: int = 128
    micro_batch_size: int | None = None  # gradient accumulation chunk; None: whole batch
    epochs: float = 20
    steps: int | None = None  # update budget; overrides epochs when given
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"
    milestones: tuple[float, ...] = ()  # epochs, for step/multistep
    gamma: float = 0.1
    lr_scaling: str = "none"  # scale lr with batch_size / base_batch_size
    base_batch_size: int = 128
    warmup_epochs: float = 0.0
    clip_grad_norm: float | None = None
    regime_adaptation: bool = False  # multiply epochs and milestones by batch/base batch
    target_train_loss: float | None = None  # stop once the eval-mode train loss is this low
    # diverged: a non-finite update loss, or one above divergence_factor x max(first loss, ln(classes))
    divergence_factor: float = 10.0
    ghost_batch_size: int | None = None
    sync_batch_norm: bool = False  # under torchrun: BN statistics over all workers' samples
    # adversarial training (fraction of each micro-batch replaced)
    adversarial_fraction: float = 0.0
    adversarial_eps: float = 0.0
    adversarial_method: str = "fgsm"
    # adaptive batch size (largebatch.absa); the batch grows from batch_size by doublings
    batch_size_controller: str = "none"  # none, growth, noise_scale, abs, absa (abs + adversarial)
    max_batch_size: int | None = None  # cap of the controller (required unless "none")
    adaptive_ratio: float = 2.0  # abs/absa: double when eigenvalue <= reference / ratio
    adaptive_duration: int = 10  # abs/absa: or after this many epochs without an increase
    eigen_samples: int = 128  # abs/absa: fresh training samples per eigenvalue estimate (the reference's)
    eigen_iterations: int = 10  # abs/absa: power-iteration products at most (the reference's)
    eigen_tol: float = 1e-2  # abs/absa: relative change that stops the power iteration
    eigen_diagnostic_samples: int = 0  # abs/absa: also record (unused) an estimate on this many
    adversarial_stop_epoch: float | None = None  # absa: none after this epoch; None: epochs // 2 (reference)
    increase_warmup_epochs: float = 0.0  # lr moves to the new batch's value over this many epochs
    growth_milestones: tuple[float, ...] = ()  # growth: epochs at which the batch is multiplied
    growth_factor: int = 2  # growth: batch multiplier at each milestone
    # measurements
    track_distance: bool = False
    hessian_top_k: int = 0  # top eigenvalues of the full-data Hessian at the end
    hessian_trace: bool = False
    hessian_bottom_k: int = 0  # smallest (most negative) eigenvalues of the same Hessian
    hessian_tol: float | None = None  # relative eigenvalue tolerance; None: the solver's default
    hessian_trace_probes: int | None = None  # Hutchinson probes of the trace; None: the default
    eval_every: int = 1  # epochs between evaluations
    seed: int = 0

    def __post_init__(self) -> None:
        _check_types(self)
        for name in ("milestones", "growth_milestones"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        _check_values(self)

    def replace(self, **changes: Any) -> "RunConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["milestones"] = list(self.milestones)
        data["growth_milestones"] = list(self.growth_milestones)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown configuration fields: {sorted(unknown)}")
        return cls(**data)

    def key(self) -> str:
        """Cache key: a hash of the fields that differ from their defaults (and the
        controller's revision, if it has one)."""
        defaults = RunConfig().to_dict()
        changed = {k: v for k, v in self.to_dict().items() if v != defaults[k]}
        if self.batch_size_controller in CONTROLLER_REVISIONS:
            changed["controller_revision"] = CONTROLLER_REVISIONS[self.batch_size_controller]
        text = json.dumps(changed, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def batch_ratio(self) -> float:
        return self.batch_size / self.base_batch_size

    @property
    def total_epochs(self) -> float:
        """Epoch budget after regime adaptation."""
        return self.epochs * (self.batch_ratio if self.regime_adaptation else 1.0)

    @property
    def total_milestones(self) -> tuple[float, ...]:
        """Schedule milestones (epochs) after regime adaptation."""
        scale = self.batch_ratio if self.regime_adaptation else 1.0
        return tuple(m * scale for m in self.milestones)


def accepts(hint: Any, value: Any) -> bool:
    """Whether ``value`` fits the annotation ``hint`` (ints are accepted for floats)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(accepts(arg, value) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return all(accepts(args[0], v) for v in value) if args else True
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, hint)


def describe_type(hint: Any) -> str:
    """Readable name of a type hint, for error messages."""
    return str(hint).replace("typing.", "") if not isinstance(hint, type) else hint.__name__


def _check_types(config: RunConfig) -> None:
    hints = typing.get_type_hints(RunConfig)
    for f in fields(config):
        value = getattr(config, f.name)
        if not accepts(hints[f.name], value):
            raise ConfigError(f"{f.name} must be of type {describe_type(hints[f.name])}, "
                              f"got {value!r} ({type(value).__name__})")


def _require(condition: bool, name: str, message: str, value: Any) -> None:
    if not condition:
        raise ConfigError(f"{name} {message}, got {value!r}")


def _check_values(c: RunConfig) -> None:
    _require(c.dataset in DATASETS, "dataset", f"must be one of {', '.join(DATASETS)}", c.dataset)
    _require(c.model in MODELS, "model", f"must be one of {', '.join(MODELS)}", c.model)
    _require(c.augmentation in AUGMENTATIONS, "augmentation", f"must be one of {', '.join(AUGMENTATIONS)}",
             c.augmentation)
    _require(c.augmentation == "none" or c.dataset != "mnist1d", "augmentation",
             "must be 'none' for the non-image data set mnist1d (crop and flip need images)", c.augmentation)
    _require(c.num_samples >= 20 and (c.dataset != "mnist1d" or c.num_samples % 10 == 0), "num_samples",
             "must be >= 20 and, for mnist1d, a multiple of 10 (10 classes of num_samples // 10)",
             c.num_samples)
    _require(c.batch_size > 0, "batch_size", "must be a positive integer", c.batch_size)
    _require(c.micro_batch_size is None or c.micro_batch_size > 0, "micro_batch_size",
             "must be a positive integer or None", c.micro_batch_size)
    _require(math.isfinite(c.epochs) and c.epochs > 0, "epochs", "must be positive", c.epochs)
    _require(c.steps is None or c.steps > 0, "steps", "must be a positive integer or None", c.steps)
    _require(math.isfinite(c.lr) and c.lr >= 0, "lr", "must be a finite number >= 0", c.lr)
    _require(0 <= c.momentum < 1, "momentum", "must be in [0, 1)", c.momentum)
    _require(c.weight_decay >= 0, "weight_decay", "must be >= 0", c.weight_decay)
    _require(c.schedule in SCHEDULES, "schedule", f"must be one of {', '.join(SCHEDULES)}", c.schedule)
    _require(all(m > 0 for m in c.milestones) and list(c.milestones) == sorted(c.milestones),
             "milestones", "must be increasing positive epochs", c.milestones)
    _require(c.schedule not in ("step", "multistep") or len(c.milestones) > 0, "milestones",
             f"must be given for schedule {c.schedule!r}", c.milestones)
    _require(0 < c.gamma <= 1, "gamma", "must be in (0, 1]", c.gamma)
    _require(c.lr_scaling in LR_SCALING_RULES, "lr_scaling",
             f"must be one of {', '.join(LR_SCALING_RULES)}", c.lr_scaling)
    _require(c.base_batch_size > 0, "base_batch_size", "must be a positive integer", c.base_batch_size)
    _require(c.warmup_epochs >= 0, "warmup_epochs", "must be >= 0", c.warmup_epochs)
    _require(c.clip_grad_norm is None or c.clip_grad_norm > 0, "clip_grad_norm",
             "must be positive or None", c.clip_grad_norm)
    _require(c.target_train_loss is None or c.target_train_loss > 0, "target_train_loss",
             "must be positive or None", c.target_train_loss)
    _require(math.isfinite(c.divergence_factor) and c.divergence_factor > 1, "divergence_factor",
             "must be a finite number > 1", c.divergence_factor)
    _require(c.ghost_batch_size is None or c.ghost_batch_size > 0, "ghost_batch_size",
             "must be a positive integer or None", c.ghost_batch_size)
    _require(not (c.sync_batch_norm and c.ghost_batch_size is not None), "sync_batch_norm",
             "cannot be combined with ghost_batch_size (ghost batches are per worker)", c.sync_batch_norm)
    _require(0 <= c.adversarial_fraction <= 1, "adversarial_fraction", "must be in [0, 1]",
             c.adversarial_fraction)
    _require(c.adversarial_eps >= 0, "adversarial_eps", "must be >= 0", c.adversarial_eps)
    _require(c.adversarial_method in ADVERSARIAL_METHODS, "adversarial_method",
             f"must be one of {', '.join(ADVERSARIAL_METHODS)}", c.adversarial_method)
    _check_controller(c)
    _require(c.hessian_top_k >= 0, "hessian_top_k", "must be >= 0", c.hessian_top_k)
    _require(c.hessian_bottom_k >= 0, "hessian_bottom_k", "must be >= 0", c.hessian_bottom_k)
    _require(c.hessian_tol is None or (math.isfinite(c.hessian_tol) and c.hessian_tol > 0),
             "hessian_tol", "must be positive or None", c.hessian_tol)
    _require(c.hessian_trace_probes is None or c.hessian_trace_probes >= 2, "hessian_trace_probes",
             "must be an integer >= 2 or None", c.hessian_trace_probes)
    _require(c.eval_every >= 1, "eval_every", "must be >= 1", c.eval_every)
    _require(c.seed >= 0, "seed", "must be >= 0", c.seed)


def _is_power_of(value: float, base: int) -> bool:
    while value > 1 and value == int(value):
        value /= base
    return value == 1


def _check_controller(c: RunConfig) -> None:
    """The adaptive-batch-size settings (see ``largebatch.absa``)."""
    name = c.batch_size_controller
    _require(name in BATCH_SIZE_CONTROLLERS, "batch_size_controller",
             f"must be one of {', '.join(BATCH_SIZE_CONTROLLERS)}", name)
    _require(c.adaptive_ratio > 1 and math.isfinite(c.adaptive_ratio), "adaptive_ratio",
             "must be a finite number > 1", c.adaptive_ratio)
    _require(c.adaptive_duration >= 1, "adaptive_duration", "must be an integer >= 1", c.adaptive_duration)
    _require(c.eigen_samples >= 1, "eigen_samples", "must be an integer >= 1", c.eigen_samples)
    _require(c.eigen_iterations >= 1, "eigen_iterations", "must be an integer >= 1", c.eigen_iterations)
    _require(c.eigen_tol > 0, "eigen_tol", "must be > 0", c.eigen_tol)
    _require(c.eigen_diagnostic_samples >= 0, "eigen_diagnostic_samples", "must be >= 0",
             c.eigen_diagnostic_samples)
    _require(c.adversarial_stop_epoch is None or c.adversarial_stop_epoch >= 0, "adversarial_stop_epoch",
             "must be >= 0 or None (epochs // 2)", c.adversarial_stop_epoch)
    _require(c.increase_warmup_epochs >= 0, "increase_warmup_epochs", "must be >= 0",
             c.increase_warmup_epochs)
    _require(c.growth_factor >= 2, "growth_factor", "must be an integer >= 2", c.growth_factor)
    _require(all(m > 0 for m in c.growth_milestones)
             and list(c.growth_milestones) == sorted(set(c.growth_milestones)),
             "growth_milestones", "must be increasing positive epochs", c.growth_milestones)
    if name == "none":
        return
    _require(c.max_batch_size is not None and c.max_batch_size >= c.batch_size, "max_batch_size",
             f"must be given and >= batch_size ({c.batch_size}) for batch_size_controller {name!r}",
             c.max_batch_size)
    factor = c.growth_factor if name == "growth" else 2
    _require(_is_power_of(c.max_batch_size / c.batch_size, factor), "max_batch_size",
             f"must be batch_size ({c.batch_size}) times a power of {factor}, "
             f"so that growth by factors of {factor} reaches it", c.max_batch_size)
    if name == "growth":
        _require(len(c.growth_milestones) > 0, "growth_milestones",
                 "must be given for batch_size_controller 'growth'", c.growth_milestones)
    if name == "abs":
        _require(c.adversarial_fraction == 0, "adversarial_fraction",
                 "must be 0 for batch_size_controller 'abs' (use 'absa' for adversarial samples)",
                 c.adversarial_fraction)
    if name == "absa":
        _require(c.adversarial_fraction > 0 and c.adversarial_eps > 0, "adversarial_fraction",
                 "and adversarial_eps must be > 0 for batch_size_controller 'absa'",
                 (c.adversarial_fraction, c.adversarial_eps))
    if name == "noise_scale":
        micro = c.micro_batch_size
        _require(micro is not None and micro < c.batch_size and c.batch_size % micro == 0,
                 "micro_batch_size", f"must divide batch_size ({c.batch_size}) at least twice for "
                 "batch_size_controller 'noise_scale' (it compares micro-batch and batch gradients)",
                 micro)
