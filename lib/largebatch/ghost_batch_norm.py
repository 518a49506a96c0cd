"""Ghost batch normalization (Hoffer, Hubara & Soudry 2017, "Train longer, generalize better").

In train mode a large batch is split into "ghost" batches of ``ghost_batch_size``
samples (the last one may be smaller) and each is normalized with its own
statistics, so a large-batch run sees the batch-norm noise of a small-batch run.
The running statistics are updated once per ghost batch, in order, exactly as
ordinary batch norm applied to the ghost batches one after another::

    running_mean = (1 - momentum) * running_mean + momentum * chunk_mean
    running_var  = (1 - momentum) * running_var  + momentum * chunk_var_unbiased

(``num_batches_tracked`` grows by one per ghost batch; ``momentum=None`` gives the
cumulative average over ghost batches). This is the unrolled update of Hoffer et
al.'s Algorithm 1. In eval mode the layer is ordinary batch norm with the running
statistics. Parameters and buffers are those of ``nn.BatchNorm*d``, so state dicts
are interchangeable with the plain model's.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

_PLAIN_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _check_ghost_batch_size(ghost_batch_size: int) -> int:
    """Return ``ghost_batch_size`` if it is an integer >= 1, else raise ValueError."""
    is_int = isinstance(ghost_batch_size, int) and not isinstance(ghost_batch_size, bool)
    if not is_int or ghost_batch_size < 1:
        raise ValueError(f"ghost_batch_size must be an integer >= 1, got {ghost_batch_size!r}")
    return ghost_batch_size


class GhostBatchNorm(_BatchNorm):
    """Batch norm over ghost batches of ``ghost_batch_size`` samples (inputs ``(N, C, *)``)."""

    def __init__(
        self,
        num_features: int,
        ghost_batch_size: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.ghost_batch_size = _check_ghost_batch_size(ghost_batch_size)

    @classmethod
    def from_batch_norm(cls, bn: _BatchNorm, ghost_batch_size: int) -> GhostBatchNorm:
        """A ghost version of ``bn`` sharing its parameter and buffer tensors and mode."""
        ghost = cls(bn.num_features, ghost_batch_size, bn.eps, bn.momentum, bn.affine,
                    bn.track_running_stats, device="meta")
        for name, param in bn.named_parameters(recurse=False):
            setattr(ghost, name, param)
        for name, buffer in bn.named_buffers(recurse=False):
            setattr(ghost, name, buffer)
        ghost.train(bn.training)
        return ghost

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected an input of shape (N, C, *), got {input.dim()}-D")

    def forward(self, input: Tensor) -> Tensor:
        """Normalize each ghost batch on its own in training; plain batch norm otherwise."""
        # Like plain batch norm, a layer without running statistics uses batch
        # (here: ghost-batch) statistics in eval mode too.
        uses_batch_stats = self.training or self.running_mean is None
        plain_forward = super().forward
        if not uses_batch_stats or len(input) <= self.ghost_batch_size:
            return plain_forward(input)
        return torch.cat([plain_forward(chunk) for chunk in input.split(self.ghost_batch_size)])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, ghost_batch_size={self.ghost_batch_size}"


def convert_to_ghost_batch_norm(model: nn.Module, ghost_batch_size: int) -> nn.Module:
    """Replace every ``nn.BatchNorm1d/2d/3d`` of ``model`` by a :class:`GhostBatchNorm`.

    The replacement happens in place and reuses the original parameter and buffer
    tensors, so an optimizer built before the conversion keeps updating them. The
    model is returned (a new module if ``model`` itself is a batch-norm layer).
    """
    _check_ghost_batch_size(ghost_batch_size)
    if isinstance(model, _PLAIN_BATCH_NORMS):
        return GhostBatchNorm.from_batch_norm(model, ghost_batch_size)
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, _PLAIN_BATCH_NORMS):
                setattr(parent, name, GhostBatchNorm.from_batch_norm(child, ghost_batch_size))
    return model
