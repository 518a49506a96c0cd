"""The one training loop: mini-batch SGD with everything the papers vary.

``fit`` runs SGD with momentum and weight decay over in-memory data, with a
learning-rate schedule, a scaling rule for the batch size and warmup, gradient
accumulation over micro-batches (a large batch never has to fit in memory),
gradient-norm clipping, an epoch or update budget and divergence detection.

Extension points, so later chapters never rewrite the loop:

* ``input_transform(model, inputs, targets) -> (inputs, targets)`` is applied to
  every micro-batch before its forward pass (adversarial samples);
* ``batch_size_schedule.next_batch_size(state) -> int`` is asked before every
  epoch (adaptive batch size); a schedule with an ``observe_micro_batch(model,
  size, total)`` method is called after every micro-batch's backward pass (it
  sees the accumulated ``.grad``, e.g. to estimate the gradient noise scale);
* ``input_transform`` and ``batch_size_schedule`` objects with a
  ``take_gradient_evaluations() -> int`` method report the extra gradient
  evaluations (samples x passes) they spent, counted in
  ``TrainState.gradient_evaluations``;
* ``callbacks`` observe every update and epoch and return metrics to record
  (Hessian, distance from initialization, robust accuracy);
* ghost batch norm is a property of the model (see ``ghost_batch_norm``).

``fit(..., checkpoint=save)`` hands ``save`` a :func:`training_state` after every
epoch; ``fit(..., resume=that_state)`` continues from it, bit for bit on CPU.
Schedules, input transforms and callbacks with ``state_dict``/``load_state_dict``
are saved and restored with it.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol, Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from largebatch import distributed
from largebatch.callbacks import Callback, TrainState
from largebatch.config import ConfigError, RunConfig
from largebatch.evaluation import check_labels, evaluate, output_classes

MicroBatchObserver = Callable[[nn.Module, int, int], None]
InputTransform = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class TransformChain:
    """Input transforms applied in order (e.g. augmentation, then adversarial examples).

    It reports the gradient evaluations its parts spent and checkpoints the state of
    the parts that have one, so cost counting and resuming see through it.
    """

    def __init__(self, transforms: Sequence[InputTransform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, model: nn.Module, inputs: torch.Tensor,
                 targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for transform in self.transforms:
            inputs, targets = transform(model, inputs, targets)
        return inputs, targets

    def take_gradient_evaluations(self) -> int:
        return sum(_spent(t) for t in self.transforms)

    def state_dict(self) -> dict[str, Any]:
        return {str(i): t.state_dict() for i, t in enumerate(self.transforms) if hasattr(t, "state_dict")}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        for i, transform in enumerate(self.transforms):
            if hasattr(transform, "state_dict"):
                transform.load_state_dict(saved[str(i)])


def compose_transforms(*transforms: InputTransform | None) -> InputTransform | None:
    """One input transform applying ``transforms`` in order (Nones skipped); None if none is left."""
    chain = [t for t in transforms if t is not None]
    if len(chain) <= 1:
        return chain[0] if chain else None
    return TransformChain(chain)


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
    epoch_wall_time_s: list[float] = field(default_factory=list)  # cumulative, at each epoch end
    divergence: dict[str, Any] | None = None  # when diverged: step, loss and threshold that tripped


def divergence_threshold(factor: float, initial_loss: float, num_classes: int) -> float:
    """Update losses above ``factor * max(initial_loss, ln(num_classes))`` mean divergence.

    ``ln(num_classes)`` is the loss of a uniform guess, so a run that starts with an
    unusually small loss is not called diverged for reaching a chance-level one.
    """
    return factor * max(initial_loss, math.log(num_classes))


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
                  total_epochs: float, previous_batch_size: int | None = None,
                  since_change: float = math.inf) -> float:
    """Learning rate at a fractional epoch: scaled peak, linear warmup from ``lr``, schedule.

    After a batch-size change (``since_change`` epochs ago, from ``previous_batch_size``)
    the scaled peak moves linearly from the old batch's to the new one's over
    ``config.increase_warmup_epochs``.
    """
    peak = config.lr * lr_scale(config.lr_scaling, batch_size, config.base_batch_size)
    if config.warmup_epochs > 0 and epoch_progress < config.warmup_epochs:
        peak = config.lr + (peak - config.lr) * epoch_progress / config.warmup_epochs
    elif previous_batch_size and since_change < config.increase_warmup_epochs:
        before = config.lr * lr_scale(config.lr_scaling, previous_batch_size, config.base_batch_size)
        peak = before + (peak - before) * since_change / config.increase_warmup_epochs
    return peak * schedule_factor(config, epoch_progress, total_epochs)


def _micro_batches(batch_size: int, micro_batch_size: int | None) -> list[tuple[int, int]]:
    size = min(micro_batch_size or batch_size, batch_size)
    return [(start, min(start + size, batch_size)) for start in range(0, batch_size, size)]


def accumulate_gradient(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                        micro_batch_size: int | None = None,
                        input_transform: InputTransform | None = None,
                        observer: MicroBatchObserver | None = None) -> float:
    """Back-propagate the mean loss of a batch, chunk by chunk; returns the mean loss.

    Each micro-batch's loss is weighted by its share of the batch, so the
    accumulated gradient equals the gradient of the whole batch's mean loss
    (exactly for models without batch statistics; with BN each chunk is
    normalized on its own, a ghost-batch effect). ``observer(model, size, total)``
    is called after each chunk's backward pass.
    """
    return float(_accumulate(model, None, inputs, targets, len(targets), micro_batch_size,
                             input_transform, observer))


def _accumulate(model: nn.Module, parallel: nn.Module | None, inputs: torch.Tensor,
                targets: torch.Tensor, batch_size: int, micro_batch_size: int | None,
                input_transform: InputTransform | None,
                observer: MicroBatchObserver | None = None) -> torch.Tensor:
    """Accumulate this worker's share of a batch of ``batch_size`` samples into ``.grad``.

    Returns this worker's part of the batch's mean loss, a float64 tensor (a sum of
    float32 losses in float64 equals the Python-float sum of their ``.item()``, so no
    host sync is needed per micro-batch). With ``parallel`` (DistributedDataParallel
    around ``model``) gradients are all-reduced with the last micro-batch only
    (``no_sync`` before); each loss is scaled by the world size because DDP averages.
    ``observer(model, size, batch_size)`` sees ``.grad`` after each chunk's backward pass
    (this worker's accumulation so far).
    """
    world = distributed.world_size() if parallel is not None else 1
    chunks = _micro_batches(len(targets), micro_batch_size)
    mean_loss = torch.zeros((), dtype=torch.float64, device=inputs.device)
    for index, (start, stop) in enumerate(chunks):
        last = index == len(chunks) - 1
        x, y = inputs[start:stop], targets[start:stop]
        if input_transform is not None:
            x, y = input_transform(model, x, y)
        with contextlib.nullcontext() if parallel is None or last else parallel.no_sync():
            loss = F.cross_entropy((parallel or model)(x), y) * ((stop - start) / batch_size)
            (loss * world if world > 1 else loss).backward()
        if observer is not None:
            observer(model, stop - start, batch_size)
        mean_loss += loss.detach().to(torch.float64)
    return mean_loss


def fit(model: nn.Module, train_data: TensorDataset, test_data: TensorDataset | None,
        config: RunConfig, *, callbacks: Sequence[Callback] = (),
        input_transform: InputTransform | None = None,
        batch_size_schedule: BatchSizeSchedule | None = None,
        progress: bool = True, checkpoint: Callable[[dict[str, Any]], None] | None = None,
        resume: dict[str, Any] | None = None) -> TrainResult:
    """Train ``model`` in place as ``config`` says; returns the history.

    Each epoch is a fresh permutation of the training set (seeded by
    ``config.seed``) cut into batches of the current batch size; the last
    incomplete batch is dropped, so every update sees exactly ``batch_size``
    samples. The budget is ``config.total_epochs`` passes (after regime
    adaptation) or ``config.steps`` updates. ``checkpoint(training_state)`` is
    called after every epoch; ``resume`` (such a state) continues a run.

    The training tensors are moved to the model's device once. Under ``torchrun``
    (see :mod:`largebatch.distributed`) every worker draws the same permutation and
    takes its contiguous shard of each batch, so the data order does not depend on
    the number of workers; gradients are all-reduced once per update and the
    batch-size schedule's decision (batch size and ``state.extra``) is rank 0's.

    The run stops as ``diverged`` at the first update whose loss is non-finite or
    above :func:`divergence_threshold` (``config.divergence_factor`` times the larger
    of the first update's loss and ``ln(classes)``); the history up to it is kept and
    ``TrainResult.divergence`` says where. Labels outside the model's classes are
    rejected before the first update.
    """
    distributed.init_from_env()
    num_train = len(train_data)
    if config.batch_size > num_train:
        raise ConfigError(f"batch_size must be <= the training set size {num_train}, "
                          f"got {config.batch_size}")
    world = distributed.world_size()
    if config.batch_size < world:
        raise ConfigError(f"batch_size must be >= the number of workers {world}, got {config.batch_size}")
    device = next(model.parameters()).device
    inputs, targets = (t.to(device) for t in train_data.tensors)
    num_classes = output_classes(model, inputs)
    check_labels(targets, num_classes, "training labels")
    parallel = distributed.wrap(model)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    total_epochs = config.total_epochs
    if config.steps is not None:
        total_epochs = config.steps * config.batch_size / num_train
    state = TrainState(model=model, optimizer=optimizer, train_data=train_data,
                       batch_size=config.batch_size)
    result = TrainResult(status="completed")
    stateful = _stateful(callbacks, input_transform, batch_size_schedule)
    if resume is None:
        _record(result.step_log, state, [cb.on_train_start(state) for cb in callbacks])
    else:
        _restore(resume, state, result, generator, stateful)
    observer = getattr(batch_size_schedule, "observe_micro_batch", None)
    model.train()
    bar = tqdm(total=math.ceil(total_epochs), initial=state.epoch, desc=f"B={config.batch_size}",
               unit="epoch", disable=not (progress and distributed.is_main()), leave=False)
    epoch_loss_sum, epoch_updates = 0.0, 0
    while not _budget_spent(state, config, total_epochs):
        started = time.perf_counter()
        if batch_size_schedule is not None:
            chosen = batch_size_schedule.next_batch_size(state)
            chosen, state.extra, spent = distributed.broadcast_object(
                (chosen, state.extra, _spent(batch_size_schedule)))
            new_size = _checked_batch_size(chosen, num_train, world)
            if new_size != state.batch_size:
                state.previous_batch_size, state.batch_changed_epoch = state.batch_size, state.epoch
                state.batch_size = new_size
            state.gradient_evaluations += spent
        order = torch.randperm(num_train, generator=generator).to(device)
        steps_this_epoch = num_train // state.batch_size
        epoch_loss_sum, epoch_updates = 0.0, 0
        for index in range(steps_this_epoch):
            progress_epochs = state.epoch + index / steps_this_epoch
            state.lr = learning_rate(config, state.batch_size, progress_epochs, total_epochs,
                                     state.previous_batch_size, progress_epochs - state.batch_changed_epoch)
            for group in optimizer.param_groups:
                group["lr"] = state.lr
            start, stop = distributed.shard_range(state.batch_size)
            batch = order[index * state.batch_size + start:index * state.batch_size + stop]
            optimizer.zero_grad(set_to_none=True)
            partial = _accumulate(model, parallel, inputs[batch], targets[batch], state.batch_size,
                                  config.micro_batch_size, input_transform, observer)
            if parallel is not None:  # one all-reduce for the loss and the attack's cost
                partial = distributed.all_reduce_sum(torch.stack([partial, partial.new_tensor(
                    float(_spent(input_transform)))]))
                loss, transform_cost = float(partial[0]), int(partial[1])
            else:
                loss, transform_cost = float(partial), _spent(input_transform)
            state.gradient_evaluations += state.batch_size + transform_cost
            if math.isnan(state.initial_loss):
                state.initial_loss = loss
            threshold = divergence_threshold(config.divergence_factor, state.initial_loss, num_classes)
            if not math.isfinite(loss) or loss > threshold:
                result.status = "diverged"
                result.divergence = {"step": state.step, "loss": loss, "threshold": threshold}
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
        state.wall_time_s += time.perf_counter() - started
        result.epoch_wall_time_s.append(state.wall_time_s)
        bar.update(1)
        distributed.broadcast_buffers(model)  # per-worker BN statistics: evaluate rank 0's
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
        if checkpoint is not None and not _budget_spent(state, config, total_epochs):
            checkpoint(training_state(state, result, generator, stateful))
    bar.close()
    result.steps = state.step
    return result


_COUNTERS = ("epoch", "step", "samples_seen", "batch_size", "lr", "last_loss", "gradient_evaluations",
             "previous_batch_size", "batch_changed_epoch", "wall_time_s", "initial_loss")


def _stateful(callbacks: Sequence[Callback], input_transform: Any, batch_size_schedule: Any) -> dict[str, Any]:
    """The objects whose own state a checkpoint keeps, by a stable name."""
    with_state = [cb for cb in callbacks if hasattr(cb, "state_dict")]
    named: dict[str, Any] = {f"callback{i}": cb for i, cb in enumerate(with_state)}
    named.update(input_transform=input_transform, batch_size_schedule=batch_size_schedule)
    return {name: obj for name, obj in named.items() if hasattr(obj, "state_dict")}


def training_state(state: TrainState, result: TrainResult, generator: torch.Generator,
                   stateful: dict[str, Any]) -> dict[str, Any]:
    """Everything :func:`fit` needs to continue after the current epoch (tensors and plain data)."""
    return {"model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
            "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
            "counters": {name: getattr(state, name) for name in _COUNTERS},
            "history": list(result.history), "step_log": list(result.step_log),
            "epoch_wall_time_s": list(result.epoch_wall_time_s),
            "objects": {name: obj.state_dict() for name, obj in stateful.items()}}


def _restore(saved: dict[str, Any], state: TrainState, result: TrainResult,
             generator: torch.Generator, stateful: dict[str, Any]) -> None:
    if set(saved["objects"]) != set(stateful):
        raise ValueError(f"the checkpoint holds state for {sorted(saved['objects'])}, "
                         f"but this run has {sorted(stateful)}")
    state.model.load_state_dict(saved["model"])
    state.optimizer.load_state_dict(saved["optimizer"])
    generator.set_state(saved["generator"])
    torch.set_rng_state(saved["torch_rng"])
    for name, value in saved["counters"].items():
        setattr(state, name, value)
    result.history[:] = saved["history"]
    result.step_log[:] = saved["step_log"]
    result.epoch_wall_time_s[:] = saved["epoch_wall_time_s"]
    for name, obj in stateful.items():
        obj.load_state_dict(saved["objects"][name])


def _spent(obj: Any) -> int:
    """Extra gradient evaluations an input transform or schedule reports (0 if it does not)."""
    take = getattr(obj, "take_gradient_evaluations", None)
    return int(take()) if take is not None else 0


def _checked_batch_size(batch_size: int, num_train: int, world: int = 1) -> int:
    if not isinstance(batch_size, int) or not world <= batch_size <= num_train:
        raise ConfigError(f"the batch-size schedule returned {batch_size!r}; "
                          f"it must be an integer in [{world}, {num_train}]")
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
                           "lr": state.lr, "running_loss": running_loss,
                           "gradient_evaluations": state.gradient_evaluations}
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
