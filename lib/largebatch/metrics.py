"""Training-time metric callbacks.

:class:`DistanceFromInit` tracks ``||w_t - w_0||``, the distance travelled from the
initial weights. Hoffer et al. (2017) model training as a random walk on a random
potential, where this distance grows only logarithmically with the number of
updates; large batches make fewer updates and so end closer to the start.
"""

from __future__ import annotations

import torch

from largebatch.callbacks import Callback, Metrics, TrainState


def _flat_trainable(model: torch.nn.Module) -> torch.Tensor:
    """The trainable parameters, detached and concatenated into a new flat tensor."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad])


class DistanceFromInit(Callback):
    """Record ``||w_t - w_0||`` over all trainable parameters at log-spaced steps.

    Steps recorded: 0 (at train start), then the distinct values of
    ``round(ratio ** k)``, ``k = 0, 1, ...`` -- with the default
    ``points_per_decade=10``: 1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 32, ...
    About ``points_per_decade`` records per decade of steps, so the step log holds
    ``O(log T)`` rows. A step is recorded when it reaches the next scheduled value,
    so the schedule also works if the hook is not called at every step.
    """

    key = "distance_from_init"

    def __init__(self, points_per_decade: int = 10) -> None:
        if points_per_decade < 1:
            raise ValueError(f"points_per_decade must be >= 1, got {points_per_decade}")
        self.ratio = 10 ** (1 / points_per_decade)
        self._initial: torch.Tensor | None = None
        self._target = 1.0  # ratio ** k for the next scheduled record
        self._next_step = 1

    def on_train_start(self, state: TrainState) -> Metrics:
        """Store a detached copy of ``w_0`` and restart the schedule."""
        self._initial = _flat_trainable(state.model)
        self._target, self._next_step = 1.0, 1
        return {self.key: self.distance(state.model)}

    def on_step_end(self, state: TrainState) -> Metrics | None:
        """The distance at scheduled steps, None at the others."""
        if state.step < self._next_step:
            return None
        while round(self._target) <= state.step:
            self._target *= self.ratio
        self._next_step = round(self._target)
        return {self.key: self.distance(state.model)}

    def state_dict(self) -> dict:
        """What a training checkpoint keeps: ``w_0`` and the recording schedule."""
        return {"initial": self._initial, "target": self._target, "next_step": self._next_step}

    def load_state_dict(self, saved: dict) -> None:
        self._initial, self._target, self._next_step = saved["initial"], saved["target"], saved["next_step"]

    def distance(self, model: torch.nn.Module) -> float:
        """``||w - w_0||`` for the model's current weights."""
        if self._initial is None:
            raise RuntimeError("DistanceFromInit.on_train_start was not called")
        return float(torch.linalg.vector_norm(_flat_trainable(model) - self._initial))
