"""The training loop: scaling rules, schedules, accumulation, determinism, divergence, hooks."""

import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from largebatch.callbacks import Callback
from largebatch.config import ConfigError, RunConfig
from largebatch.train import accumulate_gradient, evaluate, fit, learning_rate, lr_scale


def synthetic(n=256, features=10, classes=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=generator)
    w = torch.randn(features, classes, generator=generator)
    return TensorDataset(x, (x @ w).argmax(1))


def mlp(seed=0, batch_norm=False):
    torch.manual_seed(seed)
    layers = [nn.Linear(10, 16)] + ([nn.BatchNorm1d(16)] if batch_norm else []) + [nn.Tanh(), nn.Linear(16, 3)]
    return nn.Sequential(*layers)


def config(**changes):
    defaults = dict(batch_size=32, epochs=3, lr=0.1, momentum=0.9)
    return RunConfig(**{**defaults, **changes})


def test_lr_scaling_rules():
    assert lr_scale("none", 512, 128) == 1.0
    assert lr_scale("linear", 512, 128) == 4.0
    assert lr_scale("sqrt", 512, 128) == 2.0
    assert lr_scale("sqrt", 32, 128) == 0.5
    with pytest.raises(ConfigError):
        lr_scale("cubic", 1, 1)


def test_warmup_and_schedules():
    linear = config(batch_size=512, lr_scaling="linear", warmup_epochs=2, epochs=10)
    assert learning_rate(linear, 512, 0.0, 10) == pytest.approx(0.1)
    assert learning_rate(linear, 512, 1.0, 10) == pytest.approx(0.25)
    assert learning_rate(linear, 512, 5.0, 10) == pytest.approx(0.4)
    multistep = config(schedule="multistep", milestones=(3.0, 6.0), gamma=0.5, epochs=10)
    assert [learning_rate(multistep, 32, e, 10) for e in (0, 2.9, 3, 6.5)] == pytest.approx([0.1, 0.1, 0.05, 0.025])
    step = config(schedule="step", milestones=(2.0,), gamma=0.1, epochs=10)
    assert learning_rate(step, 32, 4.5, 10) == pytest.approx(0.001)
    cosine = config(schedule="cosine", epochs=10)
    assert learning_rate(cosine, 32, 5.0, 10) == pytest.approx(0.05)
    assert learning_rate(cosine, 32, 10.0, 10) == pytest.approx(0.0, abs=1e-12)
    adapted = config(schedule="multistep", milestones=(3.0,), batch_size=64, base_batch_size=32,
                     regime_adaptation=True, epochs=10)
    assert learning_rate(adapted, 64, 5.9, adapted.total_epochs) == pytest.approx(0.1)
    assert learning_rate(adapted, 64, 6.0, adapted.total_epochs) == pytest.approx(0.01)


def gradients(model):
    return torch.cat([p.grad.flatten() for p in model.parameters()])


@pytest.mark.parametrize("micro", [1, 7, 16, 64])
def test_accumulation_equals_one_big_batch(micro):
    data = synthetic(64)
    x, y = data.tensors
    reference = mlp().double()
    loss = nn.functional.cross_entropy(reference(x.double()), y)
    loss.backward()
    model = mlp().double()
    mean_loss = accumulate_gradient(model, x.double(), y, micro_batch_size=micro)
    assert mean_loss == pytest.approx(loss.item(), rel=1e-12)
    assert torch.allclose(gradients(model), gradients(reference), rtol=1e-10, atol=1e-12)


def test_training_with_accumulation_matches_training_without():
    data = synthetic(256)
    runs = []
    for micro in (None, 8):
        model = mlp().double()
        fit(model, TensorDataset(data.tensors[0].double(), data.tensors[1]), None,
            config(micro_batch_size=micro, epochs=2), progress=False)
        runs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.allclose(runs[0], runs[1], rtol=1e-9, atol=1e-10)


def test_fit_is_bit_for_bit_repeatable_and_learns():
    data = synthetic(256)
    outcomes, params = [], []
    for _ in range(2):
        model = mlp()
        outcomes.append(fit(model, data, data, config(epochs=5), progress=False))
        params.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(params[0], params[1])
    assert outcomes[0].history == outcomes[1].history
    history = outcomes[0].history
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["train_accuracy"] > 0.8
    assert outcomes[0].steps == 5 * (256 // 32)


def test_different_seed_changes_the_data_order():
    data = synthetic(256)
    a, b = mlp(), mlp()
    fit(a, data, None, config(seed=0), progress=False)
    fit(b, data, None, config(seed=1), progress=False)
    assert not torch.equal(a[0].weight, b[0].weight)


def test_divergence_ends_the_run_and_keeps_history():
    data = synthetic(256)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))  # float32 overflows
    outcome = fit(model, data, data, config(lr=1e25, momentum=0.0, epochs=5), progress=False)
    assert outcome.status == "diverged"
    assert outcome.history and math.isnan(outcome.history[-1]["train_loss"])
    assert outcome.steps < 5 * 8


def test_step_budget_and_fractional_epochs():
    data = synthetic(256)
    outcome = fit(mlp(), data, None, config(steps=11, epochs=100), progress=False)
    assert outcome.steps == 11
    outcome = fit(mlp(), data, None, config(epochs=1.5), progress=False)
    assert outcome.steps == 2 * 8  # a fractional epoch count is rounded up


def test_target_train_loss_stops_early():
    data = synthetic(256)
    outcome = fit(mlp(), data, None, config(epochs=200, target_train_loss=0.3), progress=False)
    assert outcome.status == "target_reached"
    assert outcome.history[-1]["train_loss"] <= 0.3
    assert outcome.history[-2]["train_loss"] > 0.3


def test_batch_larger_than_data_is_rejected_before_training():
    with pytest.raises(ConfigError, match="batch_size must be <= the training set size 256"):
        fit(mlp(), synthetic(256), None, config(batch_size=257), progress=False)


def test_callbacks_and_input_transform_and_batch_size_schedule():
    data = synthetic(256)
    seen_micro_batches, steps = [], []

    class Recorder(Callback):
        def on_train_start(self, state):
            return {"started": 1.0}

        def on_step_end(self, state):
            steps.append((state.step, state.batch_size, state.lr))
            return {"loss_seen": state.last_loss} if state.step % 4 == 0 else None

        def on_epoch_end(self, state):
            return {"epoch_metric": float(state.epoch)}

    def transform(model, x, y):
        assert model.training
        seen_micro_batches.append(len(y))
        return x, y

    class Doubling:
        def next_batch_size(self, state):
            return 32 * 2 ** state.epoch

    outcome = fit(mlp(), data, None, config(epochs=3, micro_batch_size=16, lr_scaling="linear",
                                            base_batch_size=32),
                  callbacks=[Recorder()], input_transform=transform,
                  batch_size_schedule=Doubling(), progress=False)
    assert [row["batch_size"] for row in outcome.history] == [32, 64, 128]
    assert outcome.steps == 8 + 4 + 2
    assert set(seen_micro_batches) == {16}
    assert len(seen_micro_batches) == 8 * 2 + 4 * 4 + 2 * 8
    assert outcome.step_log[0] == {"step": 0, "started": 1.0}
    assert [row["step"] for row in outcome.step_log[1:]] == [4, 8, 12]
    assert [row["epoch_metric"] for row in outcome.history] == [1.0, 2.0, 3.0]
    assert steps[0][2] == pytest.approx(0.1) and steps[-1][2] == pytest.approx(0.4)


def test_bad_batch_size_from_a_schedule_is_reported():
    class Broken:
        def next_batch_size(self, state):
            return 10_000

    with pytest.raises(ConfigError, match="batch-size schedule returned 10000"):
        fit(mlp(), synthetic(256), None, config(), batch_size_schedule=Broken(), progress=False)


def test_gradient_clipping_bounds_the_update():
    data = synthetic(64)
    model = mlp()
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    fit(model, data, None, config(batch_size=64, epochs=1, lr=1.0, momentum=0.0, clip_grad_norm=0.01),
        progress=False)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert (after - before).norm().item() == pytest.approx(0.01, rel=1e-4)


def test_evaluate_restores_mode_and_matches_manual_computation():
    data = synthetic(100)
    model = mlp(batch_norm=True)
    model.train()
    metrics = evaluate(model, data, batch_size=7)
    assert model.training
    model.eval()
    with torch.no_grad():
        logits = model(data.tensors[0])
    assert metrics["loss"] == pytest.approx(nn.functional.cross_entropy(logits, data.tensors[1]).item(), rel=1e-5)
    assert metrics["accuracy"] == (logits.argmax(1) == data.tensors[1]).sum().item() / 100
