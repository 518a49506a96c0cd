"""Scaling rules and regime adaptation (Hoffer et al. 2017), ghost batch norm through the config."""

import math

import pytest
import torch

from largebatch import experiments, train
from largebatch.config import RunConfig
from largebatch.ghost_batch_norm import GhostBatchNorm

# 400 samples: 320 for training, so batches of 32 and 160 divide the training set exactly.
BASE = RunConfig(num_samples=400, model="mnist1d_mlp", model_options={"width": 8}, batch_size=32,
                 base_batch_size=32, epochs=2, lr=0.05, schedule="multistep", milestones=(1.0,))


def test_regime_adaptation_multiplies_epochs_and_milestones_by_the_batch_ratio():
    large = BASE.replace(batch_size=160, regime_adaptation=True)
    assert large.batch_ratio == 5
    assert large.total_epochs == pytest.approx(5 * BASE.epochs)
    assert large.total_milestones == pytest.approx((5.0,))
    plain = BASE.replace(batch_size=160)
    assert plain.total_epochs == BASE.epochs and plain.total_milestones == BASE.milestones


def test_regime_adaptation_makes_as_many_updates_as_the_small_batch_baseline(tmp_path):
    small = experiments.run(BASE, tmp_path, progress=False)
    adapted = experiments.run(BASE.replace(batch_size=160, regime_adaptation=True), tmp_path, progress=False)
    plain = experiments.run(BASE.replace(batch_size=160), tmp_path, progress=False)
    assert small["final"]["steps"] == 2 * 320 // 32 == adapted["final"]["steps"]
    assert plain["final"]["steps"] == small["final"]["steps"] // 5
    # the learning-rate drop happens after the same fraction of the updates
    drops = [row["step"] for row in adapted["history"] if row["lr"] < BASE.lr * 0.5]
    assert drops and min(drops) > adapted["final"]["steps"] // 2 - 1


def test_sqrt_rule_scales_the_learning_rate_by_the_square_root_of_the_batch_ratio():
    config = BASE.replace(batch_size=512, lr_scaling="sqrt")
    assert train.lr_scale("sqrt", 512, 32) == pytest.approx(4.0)
    assert train.learning_rate(config, 512, 0.0, config.total_epochs) == pytest.approx(BASE.lr * math.sqrt(16))
    # after the milestone the schedule multiplies the scaled rate by gamma
    assert train.learning_rate(config, 512, 1.5, config.total_epochs) == pytest.approx(BASE.lr * 4 * 0.1)
    linear = config.replace(lr_scaling="linear")
    assert train.learning_rate(linear, 512, 0.0, linear.total_epochs) == pytest.approx(BASE.lr * 16)
    assert train.learning_rate(BASE, 512, 0.0, BASE.total_epochs) == pytest.approx(BASE.lr)


def test_sqrt_rule_is_what_a_large_batch_run_uses(tmp_path):
    config = BASE.replace(batch_size=128, lr_scaling="sqrt", schedule="constant", milestones=())
    record = experiments.run(config, tmp_path, progress=False)
    assert record["history"] and all(row["lr"] == pytest.approx(BASE.lr * 2) for row in record["history"])


def test_gradient_clipping_is_part_of_the_configuration(tmp_path):
    config = BASE.replace(batch_size=160, lr_scaling="sqrt", clip_grad_norm=5.0)
    assert config.key() != BASE.replace(batch_size=160, lr_scaling="sqrt").key()
    assert experiments.run(config, tmp_path, progress=False)["status"] == "completed"


def test_ghost_batch_norm_through_the_config_builds_and_trains(tmp_path):
    config = BASE.replace(model="mnist1d_cnn", model_options={"width": 4}, batch_size=160,
                          ghost_batch_size=32)
    bundle = experiments.load_data(config)
    model = experiments.build_model(config, bundle)
    ghosts = [m for m in model.modules() if isinstance(m, GhostBatchNorm)]
    assert ghosts and all(m.ghost_batch_size == 32 for m in ghosts)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) and not isinstance(m, GhostBatchNorm)
                   for m in model.modules())
    record = experiments.run(config, tmp_path, progress=False)
    assert record["status"] == "completed" and record["final"]["steps"] == 2 * 2
    assert math.isfinite(record["final"]["train_loss"])
    # without the option, the same network keeps plain batch norm
    plain = experiments.build_model(config.replace(ghost_batch_size=None), bundle)
    assert not any(isinstance(m, GhostBatchNorm) for m in plain.modules())


def test_ghost_batch_norm_changes_training_of_a_large_batch(tmp_path):
    config = BASE.replace(model="mnist1d_cnn", model_options={"width": 4}, batch_size=160)
    ghost = experiments.run(config.replace(ghost_batch_size=32), tmp_path, progress=False)
    plain = experiments.run(config, tmp_path, progress=False)
    assert ghost["final"]["train_loss"] != plain["final"]["train_loss"]
    # a ghost batch as large as the batch is plain batch norm
    whole = experiments.run(config.replace(ghost_batch_size=160), tmp_path, progress=False)
    assert whole["final"]["train_loss"] == pytest.approx(plain["final"]["train_loss"], rel=1e-5)
