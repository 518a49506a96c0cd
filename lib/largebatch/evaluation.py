"""What every measuring module shares: data in batches, eval mode, loss and accuracy.

Data is either a tuple ``(inputs, targets)`` of tensors, a ``TensorDataset``
(both split here into batches of ``batch_size``) or any iterable of
``(inputs, targets)`` batches, e.g. a ``DataLoader`` (used as given).
"""

from __future__ import annotations

import contextlib
import itertools
import math
from typing import Callable, Iterable, Iterator, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

Batch = tuple[Tensor, Tensor]
Data = Union[Batch, TensorDataset, Iterable[Batch]]
LossFn = Callable[[Tensor, Tensor], Tensor]

DEFAULT_BATCH_SIZE = 1024


def iterate_batches(data: Data, batch_size: int = DEFAULT_BATCH_SIZE) -> Iterator[Batch]:
    """Yield ``(inputs, targets)`` batches from tensors, a TensorDataset or an iterable of batches."""
    if isinstance(data, TensorDataset):
        data = (data.tensors[0], data.tensors[1])
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        inputs, targets = data
        yield from zip(inputs.split(batch_size), targets.split(batch_size))
    else:
        yield from data


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU when it has none)."""
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if tensor is None else tensor.device


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode; restore each submodule's own mode on exit, even on errors."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def output_classes(model: nn.Module, sample: Tensor) -> int:
    """Number of outputs (classes) of ``model``: one no-grad, eval-mode forward of ``sample[:1]``."""
    with eval_mode(model), torch.no_grad():
        logits = model(sample[:1].to(model_device(model)))
    return int(logits.shape[-1])


def check_labels(targets: Tensor, num_classes: int, name: str = "targets") -> None:
    """Raise ValueError when integer class labels fall outside ``[0, num_classes)``.

    The message names the offending labels (up to five) and the number of classes,
    instead of the ``IndexError`` the loss would raise from deep inside.
    """
    if targets.is_floating_point() or targets.numel() == 0:
        return
    bad = targets[(targets < 0) | (targets >= num_classes)]
    if bad.numel():
        shown = sorted(set(bad.unique().tolist()))[:5]
        raise ValueError(f"{name} must be class labels in [0, {num_classes}) for a model with "
                         f"{num_classes} classes, got label(s) {shown} ({bad.numel()} samples)")


def check_finite(tensor: Tensor, name: str) -> None:
    """Raise ValueError when ``tensor`` holds NaN or infinite values, naming it."""
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        count = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"{name} must be finite, got {count} non-finite (NaN or inf) values")


def evaluate(model: nn.Module, data: Data, loss_fn: LossFn = F.cross_entropy,
             batch_size: int = DEFAULT_BATCH_SIZE) -> dict[str, float]:
    """Mean loss and accuracy of ``model`` on ``data``, in eval mode (mode restored).

    ``loss_fn`` must return the mean over its batch; batches are weighted by size.
    Accuracy is the top-1 rate for ``(N, classes)`` logits and ``(N,)`` class
    targets, and NaN for any other output (e.g. regression).
    """
    device = model_device(model)
    loss_sum, correct, count, classification = 0.0, 0, 0, True
    with eval_mode(model), torch.no_grad():
        for inputs, targets in iterate_batches(data, batch_size):
            inputs, targets = inputs.to(device), targets.to(device)
            logits = model(inputs)
            n = len(targets)
            loss_sum += float(loss_fn(logits, targets)) * n
            if classification and logits.dim() == 2 and targets.dim() == 1:
                correct += int((logits.argmax(dim=1) == targets).sum())
            else:
                classification = False
            count += n
    if count == 0:
        raise ValueError("no samples in data")
    return {"loss": loss_sum / count, "accuracy": correct / count if classification else math.nan}
