"""The one training loop: mini-batch SGD with everything the papers vary.

``fit`` runs SGD with momentum and weight decay over in-memory data, with a
learning-rate schedule, a scaling rule for the batch size and warmup, gradient
accumulation over micro-batches (a large batch never has to fit in memory),
gradient-norm clipping, an epoch or update budget and divergence detection.

Extension points, so later chapters never rewrite the loop:

* ``input_transform(model, inputs, targets) -> (inputs, targets)`` is applied to
  every micro-batch before its forward pass (adversarial samples);
* ``batch_size_schedule.next_batch_size(state) -> int`` is asked before every
  epoch (adaptive batch size);
* ``callbacks`` observe every update and epoch and return metrics to record
  (Hessian, distance from initialization, robust accuracy);
* ghost batch norm is a property of the model (see ``ghost_batch_norm``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol, Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from largebatch.callbacks import Callback, TrainState
from largebatch.config import ConfigError, RunConfig
from largebatch.evaluation import evaluate

InputTransform = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def compose_transforms(*transforms: InputTransform | None) -> InputTransform | None:
    """One input transform applying ``transforms`` in order (Nones skipped); None if none is left."""
    chain = [t for t in transforms if t is not None]
    if len(chain) <= 1:
        return chain[0] if chain else None

    def composed(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for transform in chain:
            inputs, targets = transform(model, inputs, targets)
        return inputs, targets

    return composed


class BatchSizeSchedule(Protocol):
    """Chooses the batch size of the next epoch (e.g. the ABSA controller)."""

    def next_batch_size(self, state: TrainState) -> int: ...


@dataclass
class TrainResult:
    """Outcome of :func:`fit`. ``status`` is ``completed``, ``target_reached`` or ``diverged``."""

    status: str
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per evaluated epoch
    step_log: list[dict[str, Any]] = field(default_factory=list)  # callback metrics by step
    steps: int = 0


def lr_scale(rule: str, batch_size: int, base_batch_size: int) -> float:
    """Learning-rate multiplier for ``batch_size``: 1, B/B0 (linear) or sqrt(B/B0)."""
    ratio = batch_size / base_batch_size
    if rule == "none":
        return 1.0
    if rule == "linear":
        return ratio
    if rule == "sqrt":
        return math.sqrt(ratio)
    raise ConfigError(f"lr_scaling must be one of none, linear, sqrt, got {rule!r}")


def schedule_factor(config: RunConfig, epoch_progress: float, total_epochs: float) -> float:
    """Multiplier of the schedule at a fractional epoch (milestones after regime adaptation)."""
    if config.schedule == "constant":
        return 1.0
    if config.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(epoch_progress / total_epochs, 1.0)))
    milestones = config.total_milestones
    if config.schedule == "step":  # decay every milestones[0] epochs
        return config.gamma ** math.floor(epoch_progress / milestones[0])
    return config.gamma ** sum(epoch_progress >= m for m in milestones)


def learning_rate(config: RunConfig, batch_size: int, epoch_progress: float,
                  total_epochs: float) -> float:
    """Learning rate at a fractional epoch: scaled peak, linear warmup from ``lr``, schedule."""
    peak = config.lr * lr_scale(config.lr_scaling, batch_size, config.base_batch_size)
    if config.warmup_epochs > 0 and epoch_progress < config.warmup_epochs:
        peak = config.lr + (peak - config.lr) * epoch_progress / config.warmup_epochs
    return peak * schedule_factor(config, epoch_progress, total_epochs)


def _micro_batches(batch_size: int, micro_batch_size: int | None) -> list[tuple[int, int]]:
    size = min(micro_batch_size or batch_size, batch_size)
    return [(start, min(start + size, batch_size)) for start in range(0, batch_size, size)]


def accumulate_gradient(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                        micro_batch_size: int | None = None,
                        input_transform: InputTransform | None = None) -> float:
    """Back-propagate the mean loss of a batch, chunk by chunk; returns the mean loss.

    Each micro-batch's loss is weighted by its share of the batch, so the
    accumulated gradient equals the gradient of the whole batch's mean loss
    (exactly for models without batch statistics; with BN each chunk is
    normalized on its own, a ghost-batch effect).
    """
    total = len(targets)
    mean_loss = 0.0
    for start, stop in _micro_batches(total, micro_batch_size):
        x, y = inputs[start:stop], targets[start:stop]
        if input_transform is not None:
            x, y = input_transform(model, x, y)
        loss = F.cross_entropy(model(x), y) * ((stop - start) / total)
        loss.backward()
        mean_loss += loss.item()
    return mean_loss


def fit(model: nn.Module, train_data: TensorDataset, test_data: TensorDataset | None,
        config: RunConfig, *, callbacks: Sequence[Callback] = (),
        input_transform: InputTransform | None = None,
        batch_size_schedule: BatchSizeSchedule | None = None,
        progress: bool = True) -> TrainResult:
    """Train ``model`` in place as ``config`` says; returns the history.

    Each epoch is a fresh permutation of the training set (seeded by
    ``config.seed``) cut into batches of the current batch size; the last
    incomplete batch is dropped, so every update sees exactly ``batch_size``
    samples. The budget is ``config.total_epochs`` passes (after regime
    adaptation) or ``config.steps`` updates.
    """
    num_train = len(train_data)
    if config.batch_size > num_train:
        raise ConfigError(f"batch_size must be <= the training set size {num_train}, "
                          f"got {config.batch_size}")
    device = next(model.parameters()).device
    inputs, targets = train_data.tensors
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    total_epochs = config.total_epochs
    if config.steps is not None:
        total_epochs = config.steps * config.batch_size / num_train
    state = TrainState(model=model, optimizer=optimizer, train_data=train_data,
                       batch_size=config.batch_size)
    result = TrainResult(status="completed")
    _record(result.step_log, state, [cb.on_train_start(state) for cb in callbacks])
    model.train()
    bar = tqdm(total=math.ceil(total_epochs), desc=f"B={config.batch_size}", unit="epoch",
               disable=not progress, leave=False)
    epoch_loss_sum, epoch_updates = 0.0, 0
    while not _budget_spent(state, config, total_epochs):
        if batch_size_schedule is not None:
            state.batch_size = _checked_batch_size(batch_size_schedule.next_batch_size(state), num_train)
        order = torch.randperm(num_train, generator=generator)
        steps_this_epoch = num_train // state.batch_size
        epoch_loss_sum, epoch_updates = 0.0, 0
        for index in range(steps_this_epoch):
            progress_epochs = state.epoch + index / steps_this_epoch
            state.lr = learning_rate(config, state.batch_size, progress_epochs, total_epochs)
            for group in optimizer.param_groups:
                group["lr"] = state.lr
            batch = order[index * state.batch_size:(index + 1) * state.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = accumulate_gradient(model, inputs[batch].to(device), targets[batch].to(device),
                                       config.micro_batch_size, input_transform)
            if not math.isfinite(loss):
                result.status = "diverged"
                break
            if config.clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad_norm)
            optimizer.step()
            state.step += 1
            state.samples_seen += state.batch_size
            state.last_loss = loss
            epoch_loss_sum, epoch_updates = epoch_loss_sum + loss, epoch_updates + 1
            _record(result.step_log, state, [cb.on_step_end(state) for cb in callbacks])
            if config.steps is not None and state.step >= config.steps:
                break
        state.epoch += 1
        bar.update(1)
        row = _end_of_epoch(model, train_data, test_data, config, state, callbacks,
                            epoch_loss_sum / max(epoch_updates, 1), result.status == "diverged",
                            last=_budget_spent(state, config, total_epochs))
        if row is not None:
            result.history.append(row)
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", test_acc=f"{row.get('test_accuracy', float('nan')):.3f}")
            if (config.target_train_loss is not None and result.status == "completed"
                    and row["train_loss"] <= config.target_train_loss):
                result.status = "target_reached"
        if result.status != "completed":
            break
    bar.close()
    result.steps = state.step
    return result


def _checked_batch_size(batch_size: int, num_train: int) -> int:
    if not isinstance(batch_size, int) or not 0 < batch_size <= num_train:
        raise ConfigError(f"the batch-size schedule returned {batch_size!r}; "
                          f"it must be an integer in [1, {num_train}]")
    return batch_size


def _budget_spent(state: TrainState, config: RunConfig, total_epochs: float) -> bool:
    """Update budget, or epoch budget with a fractional epoch count rounded up."""
    if config.steps is not None:
        return state.step >= config.steps
    return state.epoch >= math.ceil(total_epochs - 1e-9)


def _end_of_epoch(model: nn.Module, train_data: TensorDataset, test_data: TensorDataset | None,
                  config: RunConfig, state: TrainState, callbacks: Iterable[Callback],
                  running_loss: float, diverged: bool, last: bool) -> dict[str, Any] | None:
    if not (diverged or last or state.epoch % config.eval_every == 0):
        return None
    row: dict[str, Any] = {"epoch": state.epoch, "step": state.step, "batch_size": state.batch_size,
                           "lr": state.lr, "running_loss": running_loss}
    if not diverged:
        train_metrics = evaluate(model, train_data)
        row.update(train_loss=train_metrics["loss"], train_accuracy=train_metrics["accuracy"])
        if test_data is not None:
            test_metrics = evaluate(model, test_data)
            row.update(test_loss=test_metrics["loss"], test_accuracy=test_metrics["accuracy"])
        for callback in callbacks:
            row.update(callback.on_epoch_end(state) or {})
    else:
        row.update(train_loss=float("nan"))
    return row


def _record(log: list[dict[str, Any]], state: TrainState, outputs: Iterable[Any]) -> None:
    merged: dict[str, Any] = {}
    for metrics in outputs:
        merged.update(metrics or {})
    if merged:
        log.append({"step": state.step, **merged})
