"""Adaptive batch size: the ABS/ABSA rule, the noise-scale estimator, costs, resume, bad settings."""

import hashlib
import math
import json

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from largebatch import experiments, hessian, run_cache
from largebatch.absa import (AdaptiveRule, BatchGrowthSchedule, EigenvalueController, NoiseScaleController,
                             build_controller, reference_adversarial_stop)
from largebatch.attacks import AdversarialTransform
from largebatch.callbacks import Callback
from largebatch.config import ConfigError, RunConfig
from largebatch.train import accumulate_gradient, fit


def synthetic(n=256, features=10, classes=3, seed=0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=generator, dtype=dtype)
    w = torch.randn(features, classes, generator=generator, dtype=dtype)
    return TensorDataset(x, (x @ w + 0.5 * torch.randn(n, classes, generator=generator, dtype=dtype)).argmax(1))


def mlp(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)


def test_rule_doubles_at_the_ratio_halves_the_fraction_and_stops_at_the_cap():
    rule = AdaptiveRule(batch_size=32, max_batch_size=256, ratio=2.0, duration=10, fraction=0.2)
    script = [(10.0, 32, 0.2), (6.0, 32, 0.2), (5.0, 64, 0.1), (3.0, 64, 0.1), (2.5, 128, 0.05), (1.0, 256, 0.0)]
    for eigenvalue, batch, fraction in script:
        assert rule.update(eigenvalue) == batch
        assert rule.fraction == pytest.approx(fraction)
    assert rule.reference == 1.0 and not rule.adapting
    with pytest.raises(ValueError, match="stopped adapting"):  # no estimates once at the cap
        rule.update(0.1)


def test_forced_doubling_keeps_the_reference_so_a_later_ratio_doubling_can_fire():
    """The reference code moves the reference eigenvalue on ratio doublings only."""
    rule = AdaptiveRule(batch_size=32, max_batch_size=1024, ratio=2.0, duration=3, fraction=0.2)
    batches = [rule.update(value) for value in (10.0, 8.0, 7.0)]
    assert batches == [32, 32, 64]  # forced after epoch 3: the reference epoch counts
    assert rule.reference == 10.0 and rule.fraction == pytest.approx(0.1)
    assert rule.update(5.5) == 64  # 5.5 > 10 / 2
    # 4.9 <= 10 / 2 doubles; against the forced doubling's 7.0 (4.9 > 3.5) it would not
    assert rule.update(4.9) == 128 and rule.reference == 4.9 and rule.counter == 0


@pytest.mark.parametrize("duration", [1, 3, 10])
def test_first_forced_doubling_comes_after_exactly_duration_epochs(duration):
    rule = AdaptiveRule(batch_size=16, max_batch_size=2 ** 20, ratio=2.0, duration=duration)
    sizes = [16] + [rule.update(1.0) for _ in range(3 * duration)]  # flat curvature: duration rule only
    doubled_after = [epoch for epoch in range(1, len(sizes)) if sizes[epoch] > sizes[epoch - 1]]
    assert doubled_after == [duration, 2 * duration, 3 * duration]  # the reference epoch 1 counts
    assert rule.reference == 1.0


@pytest.mark.parametrize("epochs, last_adversarial", [(1, 1), (6, 3), (7, 3), (90, 45), (91, 45)])
def test_adversarial_samples_stop_after_epoch_epochs_over_two(epochs, last_adversarial):
    assert reference_adversarial_stop(epochs) == last_adversarial


class Scripted(EigenvalueController):
    """Eigenvalues by epoch instead of power iteration; records when it was asked."""

    def __init__(self, values, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.values, self.asked = values, []

    def estimate(self, model, epoch, samples, stream=0):
        self.asked.append(epoch)
        return self.values[epoch], 3


class StepRecorder(Callback):
    def __init__(self):
        self.rows = []

    def on_step_end(self, state):
        self.rows.append((state.epoch, state.batch_size, state.lr))


def test_controller_in_the_loop_sets_batch_fraction_lr_warmup_and_counts_costs():
    data = synthetic()
    transform = AdversarialTransform(fraction=0.5, eps=0.1)
    rule = AdaptiveRule(batch_size=32, max_batch_size=128, ratio=2.0, duration=10, fraction=0.5)
    controller = Scripted({1: 10.0, 2: 4.0, 3: 4.0, 4: 1.5}, data, rule, eigen_samples=64,
                          transform=transform, adversarial_stop_epoch=3)
    recorder = StepRecorder()
    config = RunConfig(batch_size=32, epochs=6, lr=0.1, lr_scaling="linear", base_batch_size=32,
                       increase_warmup_epochs=1.0)
    outcome = fit(mlp(), data, None, config, callbacks=[controller, recorder], input_transform=transform,
                  batch_size_schedule=controller, progress=False)
    rows = outcome.history
    assert controller.asked == [1, 2, 3, 4]  # no estimate at the start nor once at the cap
    assert [r["batch_size"] for r in rows] == [32, 32, 64, 64, 128, 128]
    assert [r["adversarial_fraction"] for r in rows] == [0.5, 0.5, 0.25, 0.0, 0.0, 0.0]
    assert [r.get("eigenvalue") for r in rows] == [None, 10.0, 4.0, 4.0, 1.5, None]
    # lr: linear in the batch, warmed up over one epoch after each increase
    epoch2 = [lr for epoch, batch, lr in recorder.rows if epoch == 2]
    assert epoch2 == pytest.approx([0.1, 0.125, 0.15, 0.175])
    epoch3 = [lr for epoch, batch, lr in recorder.rows if epoch == 3]
    assert epoch3 == pytest.approx([0.2] * 4)
    epoch4 = [lr for epoch, batch, lr in recorder.rows if epoch == 4]
    assert epoch4 == pytest.approx([0.2, 0.3])
    # cost: 6 passes of 256 samples, FGSM on the adversarial share, 4 estimates of 64 x (1 + 2 x 3)
    attacks = 8 * 16 + 8 * 16 + 4 * 16
    assert rows[-1]["gradient_evaluations"] == 6 * 256 + attacks + 4 * 64 * 7
    assert rows[-1]["step"] == 8 + 8 + 4 + 4 + 2 + 2


def test_power_iteration_estimate_matches_the_exact_top_eigenvalue():
    data = synthetic(64)
    model = mlp()
    rule = AdaptiveRule(batch_size=16, max_batch_size=64)
    controller = EigenvalueController(data, rule, eigen_samples=64, eigen_iterations=200, eigen_tol=1e-8)
    value, products = controller.estimate(model, epoch=1, samples=64)
    exact = hessian.exact_eigenvalues(model, data.tensors).max().item()
    assert value == pytest.approx(exact, rel=1e-3) and products > 1
    # a sub-sample is a different, fresh draw every epoch, the same for the same epoch
    assert controller.estimate(model, 2, 16)[0] == controller.estimate(model, 2, 16)[0]
    assert controller.estimate(model, 2, 16)[0] != controller.estimate(model, 3, 16)[0]


def test_growth_schedule_multiplies_at_milestones_and_caps():
    schedule = BatchGrowthSchedule(start=32, max_batch_size=256, milestones=(2.0, 4.0, 5.0, 7.0), factor=2)

    class State:
        epoch = 0

    sizes = []
    for epoch in range(9):
        State.epoch = epoch
        sizes.append(schedule.next_batch_size(State))
    assert sizes == [32, 32, 64, 64, 128, 256, 256, 256, 256]


def test_noise_scale_estimator_matches_the_closed_form():
    """Softmax regression: per-sample gradients (p - y) x^T are exact, so are G and Sigma."""
    n, d, k = 2000, 5, 3
    data = synthetic(n, features=d, classes=k, dtype=torch.float64)
    x, y = data.tensors
    model = nn.Linear(d, k, bias=False).to(torch.float64)
    with torch.no_grad():
        model.weight.copy_(0.3 * torch.randn(k, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
        residual = F.softmax(model(x), 1) - F.one_hot(y, k).to(torch.float64)
    per_sample = (residual[:, :, None] * x[:, None, :]).reshape(n, -1)
    mean = per_sample.mean(0)
    trace_sigma = (per_sample - mean).square().sum(1).mean().item()
    exact_noise_scale = trace_sigma / mean.square().sum().item()

    controller = NoiseScaleController(start=64, max_batch_size=512)
    generator = torch.Generator().manual_seed(2)
    for _ in range(1500):  # batches drawn with replacement: the estimator is then unbiased
        chosen = torch.randint(n, (64,), generator=generator)
        model.zero_grad(set_to_none=True)
        accumulate_gradient(model, x[chosen], y[chosen], 16, observer=controller.observe_micro_batch)
    estimate = controller.estimate
    assert estimate.count == 1500
    assert estimate.gradient_sq_norm == pytest.approx(mean.square().sum().item(), rel=0.05)
    assert estimate.trace_covariance == pytest.approx(trace_sigma, rel=0.05)
    assert estimate.noise_scale == pytest.approx(exact_noise_scale, rel=0.06)  # errors seen: < 2%


def test_noise_scale_controller_doubles_toward_the_measurement_and_caps():
    controller = NoiseScaleController(start=64, max_batch_size=256)

    class State:
        epoch = 1

    def measured(noise_scale, batch):
        controller.estimate.reset()  # |G|^2 = 1 and tr(Sigma) = noise_scale, exactly
        big = 1 + noise_scale / batch
        controller.estimate.add([1 + noise_scale / 16], 16, big, batch)

    measured(100.0, 64)
    assert controller.next_batch_size(State) == 64  # 100 < 2 x 64
    measured(300.0, 64)
    assert controller.next_batch_size(State) == 128
    measured(1e6, 128)
    assert controller.next_batch_size(State) == 256
    measured(1e6, 256)
    assert controller.next_batch_size(State) == 256


def test_accumulated_steps_equal_big_batch_steps_under_a_growing_batch():
    data = synthetic(256, dtype=torch.float64)
    config = RunConfig(batch_size=32, epochs=3, lr=0.1, batch_size_controller="growth", max_batch_size=128,
                       growth_milestones=(1.0, 2.0))
    models = []
    for micro in (None, 8):
        model = mlp(dtype=torch.float64)
        schedule = build_controller(config.replace(micro_batch_size=micro), data)
        outcome = fit(model, data, None, config.replace(micro_batch_size=micro),
                      batch_size_schedule=schedule, progress=False)
        assert [r["batch_size"] for r in outcome.history] == [32, 64, 128]
        models.append(model)
    for p, q in zip(*(m.parameters() for m in models)):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-12)


def test_attack_cost_counts_input_gradient_passes():
    model, (x, y) = mlp(), synthetic(20).tensors
    fgsm = AdversarialTransform(fraction=0.5, eps=0.1)
    pgd = AdversarialTransform(fraction=0.25, eps=0.1, method="pgd", steps=3, restarts=2)
    fgsm(model, x, y), pgd(model, x, y)
    assert fgsm.take_gradient_evaluations() == 10 and fgsm.take_gradient_evaluations() == 0
    assert pgd.take_gradient_evaluations() == 5 * 3 * 2


ABSA = RunConfig(num_samples=400, model="mnist1d_mlp", model_options={"width": 8}, batch_size=16, epochs=5,
                 lr=0.05, lr_scaling="linear", base_batch_size=16, batch_size_controller="absa",
                 max_batch_size=128, adaptive_duration=1, eigen_samples=64, eigen_iterations=5,
                 adversarial_fraction=0.5, adversarial_eps=0.05, micro_batch_size=16)
NOISE = RunConfig(num_samples=400, model="mnist1d_mlp", model_options={"width": 8}, batch_size=32, epochs=5,
                  lr=0.05, batch_size_controller="noise_scale", max_batch_size=128, micro_batch_size=8)


class Crash(Callback):
    def on_epoch_end(self, state):
        if state.epoch == 3:
            raise KeyboardInterrupt("killed after epoch 3")


@pytest.mark.parametrize("config", [ABSA, NOISE], ids=["absa", "noise_scale"])
def test_resume_mid_schedule_is_bit_for_bit(config, tmp_path, monkeypatch):
    whole = experiments.run(config, tmp_path / "whole", progress=False)
    assert len({row["batch_size"] for row in whole["history"]}) > 1  # the schedule did adapt
    original = experiments._callbacks
    monkeypatch.setattr(experiments, "_callbacks", lambda c: original(c) + [Crash()])
    with pytest.raises(KeyboardInterrupt):
        experiments.run(config, tmp_path / "cut", progress=False)
    saved = tmp_path / "cut" / config.key() / experiments.TRAIN_STATE_FILE
    assert saved.exists() and not (tmp_path / "cut" / config.key() / experiments.RECORD_FILE).exists()
    assert run_cache.read_checked(saved)["counters"]["epoch"] == 2
    monkeypatch.setattr(experiments, "_callbacks", original)
    resumed = experiments.run(config, tmp_path / "cut", progress=False)
    assert not saved.exists()
    assert resumed["history"] == whole["history"] and resumed["final"] == whole["final"]
    assert resumed["steps"] == whole["steps"] and len(resumed["epoch_wall_time_s"]) == 5
    a, b = (experiments.load_model(config, tmp_path / name) for name in ("whole", "cut"))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_absa_record_keeps_the_cost_and_schedule_per_epoch(tmp_path):
    record = experiments.run(ABSA.replace(eigen_diagnostic_samples=32), tmp_path, progress=False)
    rows = record["history"]
    assert {"batch_size", "lr", "eigenvalue", "eigen_samples", "eigenvalue_diagnostic",
            "adversarial_fraction", "step", "gradient_evaluations", "test_accuracy"} <= set(rows[1])
    counts = [r["gradient_evaluations"] for r in rows]
    assert counts == sorted(counts) and counts[-1] > 5 * 320  # attacks and products on top of 5 passes
    assert rows[0]["adversarial_fraction"] == 0.5 and rows[-1]["adversarial_fraction"] == 0.0  # stop at half


@pytest.mark.parametrize("changes, name", [
    (dict(adaptive_ratio=1.0), "adaptive_ratio"),
    (dict(max_batch_size=8), "max_batch_size"),
    (dict(max_batch_size=96), "max_batch_size"),
    (dict(adversarial_fraction=1.5), "adversarial_fraction"),
    (dict(adversarial_fraction=0.0), "adversarial_fraction"),
    (dict(adaptive_duration=0), "adaptive_duration"),
    (dict(eigen_samples=0), "eigen_samples"),
    (dict(adversarial_stop_epoch=-1.0), "adversarial_stop_epoch"),
    (dict(batch_size_controller="magic"), "batch_size_controller"),
    (dict(batch_size_controller="noise_scale", adversarial_fraction=0.0, micro_batch_size=None),
     "micro_batch_size"),
    (dict(batch_size_controller="growth"), "growth_milestones"),
    (dict(batch_size_controller="growth", growth_milestones=(2.0,), growth_factor=4, max_batch_size=32),
     "max_batch_size"),
    (dict(batch_size_controller="abs"), "adversarial_fraction"),
])
def test_bad_settings_are_rejected_naming_the_setting(changes, name):
    with pytest.raises(ConfigError, match=name):
        ABSA.replace(**changes)


def test_eigen_sample_larger_than_the_training_set_fails_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(experiments, "fit", lambda *a, **k: pytest.fail("must not train"))
    for changes, name in [(dict(eigen_samples=400), "eigen_samples"),
                          (dict(eigen_diagnostic_samples=512), "eigen_diagnostic_samples"),
                          (dict(max_batch_size=512), "max_batch_size")]:
        with pytest.raises(ConfigError, match=f"{name} must be <= the training set size 320"):
            experiments.run(ABSA.replace(**changes), tmp_path, progress=False)


def test_new_fields_at_their_defaults_keep_old_cache_keys():
    config = RunConfig(batch_size=64, batch_size_controller="none", eigen_samples=128, growth_milestones=[])
    old_key = hashlib.sha256(json.dumps({"batch_size": 64}, sort_keys=True).encode()).hexdigest()[:16]
    assert config.key() == old_key


def test_abs_and_absa_keys_carry_the_rule_revision_so_old_records_are_not_reused():
    config = RunConfig(batch_size=16, batch_size_controller="abs", max_batch_size=64)
    fields = {"batch_size": 16, "batch_size_controller": "abs", "max_batch_size": 64}
    before = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
    revised = hashlib.sha256(json.dumps({**fields, "controller_revision": 2}, sort_keys=True).encode())
    assert config.key() != before and config.key() == revised.hexdigest()[:16]


@pytest.mark.parametrize("fraction, size, floor, rounded", [
    (1 / 128, 128, 0, 1),  # at 1/size the reference makes none
    (math.nextafter(1 / 128, 1.0), 128, 1, 1),  # just above: one
    (math.nextafter(1 / 128, 0.0), 128, 0, 1),  # just below: none
    (0.2, 128, 25, 26), (0.1, 128, 12, 13), (0.0125, 128, 1, 2), (0.00625, 128, 0, 1),
    (math.nextafter(1 / 49, 1.0), 49, 1, 1),  # fraction * size rounds below 1: still one
    (1.0, 16, 16, 16), (0.0, 16, 0, 0),
])
def test_reference_adversarial_count_is_the_floor_with_at_least_one_above_one_over_size(fraction, size, floor,
                                                                                       rounded):
    assert AdversarialTransform(fraction, 0.1, count="floor").adversarial_count(size) == floor
    assert AdversarialTransform(fraction, 0.1).adversarial_count(size) == rounded


def test_reference_fgsm_clips_to_the_attacked_samples_own_range():
    model, (x, y) = mlp(), synthetic(16).tensors
    transform = AdversarialTransform(0.25, eps=10.0, clip="own", count="floor")
    out, _ = transform(model, x, y)
    attacked = x[:4]
    assert torch.equal(out[4:], x[4:]) and not torch.equal(out[:4], attacked)
    assert out[:4].min() >= attacked.min() and out[:4].max() <= attacked.max()
    assert set(out[:4].unique().tolist()) <= {attacked.min().item(), attacked.max().item()}  # eps >> range
    flat = torch.full_like(x, 0.5)  # one value: clamped to [0.5, 0.5] the examples are the samples
    assert torch.equal(transform(model, flat, y)[0], flat)
    with pytest.raises(ValueError, match="count"):
        AdversarialTransform(0.2, 0.1, count="nearest")
    with pytest.raises(ValueError, match="clip"):
        AdversarialTransform(0.2, 0.1, clip="data")


def test_absa_runs_use_the_reference_count_and_clip_others_keep_theirs():
    bundle = experiments.load_data(ABSA)
    absa = experiments._input_transform(ABSA, bundle)
    assert (absa.count, absa.clip) == ("floor", "own")
    plain = experiments._input_transform(RunConfig(num_samples=400, adversarial_fraction=0.5,
                                                   adversarial_eps=0.1), bundle)
    assert (plain.count, plain.clip) == ("round", bundle.value_range)


@pytest.mark.parametrize("epochs", [6, 7])
def test_absa_in_the_loop_stops_adversarial_samples_after_epoch_epochs_over_two(epochs, monkeypatch):
    data = synthetic()
    config = RunConfig(batch_size=32, epochs=epochs, lr=0.05, lr_scaling="linear", base_batch_size=32,
                       batch_size_controller="absa", max_batch_size=128, adaptive_duration=100,
                       eigen_samples=64, adversarial_fraction=0.25, adversarial_eps=0.05)
    transform = AdversarialTransform(0.25, 0.05, count="floor")
    controller = build_controller(config, data, transform)
    monkeypatch.setattr(controller, "estimate", lambda model, epoch, samples, stream=0: (1.0, 2))  # flat
    outcome = fit(mlp(), data, None, config, callbacks=[controller], input_transform=transform,
                  batch_size_schedule=controller, progress=False)
    fractions = [row["adversarial_fraction"] for row in outcome.history]
    assert fractions == [0.25] * 3 + [0.0] * (epochs - 3)  # epochs 1-3 of 6 and of 7, as the reference
