"""Hooks into the training loop: the state they see and the base class they extend.

A callback observes training; it may return metrics, which the loop records:
``on_step_end`` results go to the run's step log (with the step number),
``on_epoch_end`` results are merged into that epoch's history row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import nn


@dataclass
class TrainState:
    """What the loop exposes to callbacks and batch-size schedules."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    train_data: Any  # torch.utils.data.Dataset of (input, target)
    epoch: int = 0  # epochs completed so far
    step: int = 0  # optimizer updates made so far
    samples_seen: int = 0
    batch_size: int = 0  # current (effective) batch size
    lr: float = 0.0  # current learning rate
    last_loss: float = float("nan")  # mean training loss of the last update
    initial_loss: float = float("nan")  # mean training loss of the first update (divergence reference)
    # samples x gradient passes so far: one per sample of every update, plus what input
    # transforms (attacks) and batch-size schedules (Hessian products) report they spent
    gradient_evaluations: int = 0
    previous_batch_size: int = 0  # batch size before the last change (warmup after an increase)
    batch_changed_epoch: int = 0  # epoch at which the batch size last changed
    wall_time_s: float = 0.0  # training wall time, summed over resumed sessions
    extra: dict[str, Any] = field(default_factory=dict)  # scratch space for schedules


Metrics = Mapping[str, float]


class Callback:
    """Base class: override any hook; return a mapping of metrics to record them."""

    def on_train_start(self, state: TrainState) -> Metrics | None:
        """Called once before the first update (step 0); metrics go to the step log."""
        return None

    def on_step_end(self, state: TrainState) -> Metrics | None:
        """Called after every optimizer update."""
        return None

    def on_epoch_end(self, state: TrainState) -> Metrics | None:
        """Called after every epoch, after evaluation."""
        return None
