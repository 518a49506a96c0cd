"""Tests for largebatch.metrics."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from largebatch.callbacks import TrainState
from largebatch.metrics import DistanceFromInit


def make_state() -> TrainState:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    model[0].bias.requires_grad_(False)  # frozen: not part of the distance
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    return TrainState(model=model, optimizer=optimizer, train_data=None)


def sgd_step(state: TrainState) -> None:
    inputs, targets = torch.randn(8, 3), torch.randint(0, 2, (8,))
    state.optimizer.zero_grad()
    nn.functional.cross_entropy(state.model(inputs), targets).backward()
    state.optimizer.step()
    state.step += 1


def test_distance_is_zero_at_start_and_matches_manual_norm():
    state = make_state()
    initial = [p.detach().clone() for p in state.model.parameters()]
    callback = DistanceFromInit()
    assert callback.on_train_start(state) == {"distance_from_init": 0.0}
    for _ in range(3):
        sgd_step(state)
        metrics = callback.on_step_end(state)
    with torch.no_grad():
        state.model[0].bias.add_(5.0)  # frozen parameters do not count
    expected = math.sqrt(sum(
        float(((p.detach() - p0) ** 2).sum())
        for p, p0 in zip(state.model.parameters(), initial) if p.requires_grad
    ))
    assert expected > 0
    assert metrics == {"distance_from_init": pytest.approx(expected, rel=1e-5)}
    assert callback.distance(state.model) == pytest.approx(expected, rel=1e-5)


def test_records_log_spaced_steps():
    state = make_state()
    callback = DistanceFromInit(points_per_decade=10)
    callback.on_train_start(state)
    recorded = []
    for step in range(1, 10_001):
        state.step = step
        if callback.on_step_end(state) is not None:
            recorded.append(step)
    assert recorded[:13] == [1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 32]
    assert recorded[-1] == 10_000
    assert 35 <= len(recorded) <= 40  # about 10 per decade after the first few steps
    ratios = [b / a for a, b in zip(recorded[10:], recorded[11:])]
    assert all(1.1 < r < 1.45 for r in ratios)


def test_schedule_survives_skipped_steps_and_restarts():
    state = make_state()
    callback = DistanceFromInit(points_per_decade=2)
    callback.on_train_start(state)
    calls = {}
    for step in (1, 2, 5, 40, 41, 99, 100):
        state.step = step
        calls[step] = callback.on_step_end(state) is not None
    assert calls == {1: True, 2: False, 5: True, 40: True, 41: False, 99: False, 100: True}
    callback.on_train_start(state)  # a new run starts a new schedule and a new w_0
    state.step = 1
    assert callback.on_step_end(state) == {"distance_from_init": 0.0}


def test_does_not_change_the_model():
    state = make_state()
    sgd_step(state)
    before = {k: v.clone() for k, v in state.model.state_dict().items()}
    grads = [None if p.grad is None else p.grad.clone() for p in state.model.parameters()]
    callback = DistanceFromInit()
    callback.on_train_start(state)
    callback.on_step_end(state)
    assert all(torch.equal(v, before[k]) for k, v in state.model.state_dict().items())
    for p, g in zip(state.model.parameters(), grads):
        assert (p.grad is None and g is None) or torch.equal(p.grad, g)
    assert state.model.training


def test_requires_train_start():
    state = make_state()
    state.step = 1
    with pytest.raises(RuntimeError):
        DistanceFromInit().on_step_end(state)
    with pytest.raises(ValueError):
        DistanceFromInit(points_per_decade=0)
