"""RunConfig: validation before any compute, cache keys, round trips."""

import pytest

from largebatch.config import ConfigError, RunConfig


@pytest.mark.parametrize("changes, message", [
    ({"dataset": "imagenet"}, "dataset must be one of"),
    ({"model": "vgg99"}, "model must be one of"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"batch_size": -5}, "batch_size must be a positive integer"),
    ({"batch_size": 32.0}, "batch_size must be of type int"),
    ({"batch_size": "64"}, "batch_size must be of type int"),
    ({"lr": -0.1}, "lr must be a finite number >= 0"),
    ({"lr": float("nan")}, "lr must be a finite number >= 0"),
    ({"lr": "0.1"}, "lr must be of type float"),
    ({"momentum": 1.0}, "momentum must be in [0, 1)"),
    ({"schedule": "exp"}, "schedule must be one of"),
    ({"schedule": "multistep"}, "milestones must be given"),
    ({"milestones": (20, 10), "schedule": "multistep"}, "milestones must be increasing"),
    ({"lr_scaling": "cubic"}, "lr_scaling must be one of"),
    ({"epochs": 0}, "epochs must be positive"),
    ({"steps": 0}, "steps must be a positive integer"),
    ({"micro_batch_size": 0}, "micro_batch_size must be a positive integer"),
    ({"ghost_batch_size": 0}, "ghost_batch_size must be a positive integer"),
    ({"adversarial_fraction": 1.5}, "adversarial_fraction must be in [0, 1]"),
    ({"adversarial_eps": -0.1}, "adversarial_eps must be >= 0"),
    ({"adversarial_method": "cw"}, "adversarial_method must be one of"),
    ({"clip_grad_norm": 0.0}, "clip_grad_norm must be positive"),
    ({"seed": True}, "seed must be of type int"),
])
def test_bad_values_are_rejected_with_the_parameter_name(changes, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(")", r"\)")):
        RunConfig(**changes)


def test_ints_are_accepted_for_floats_and_lists_for_milestones():
    config = RunConfig(lr=1, epochs=3, schedule="multistep", milestones=[1, 2])
    assert config.milestones == (1, 2)


def test_key_ignores_defaults_and_changes_with_any_field():
    assert RunConfig().key() == RunConfig(batch_size=128).key()
    keys = {RunConfig().key(), RunConfig(batch_size=64).key(), RunConfig(seed=1).key(),
            RunConfig(lr=0.1).key(), RunConfig(model="mnist1d_mlp").key()}
    assert len(keys) == 5


def test_dict_round_trip_and_unknown_fields():
    config = RunConfig(batch_size=64, milestones=(5.0,), schedule="step", model_options={"width": 8})
    assert RunConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown configuration fields"):
        RunConfig.from_dict({"batch": 3})


def test_regime_adaptation_scales_epochs_and_milestones():
    config = RunConfig(batch_size=512, base_batch_size=128, epochs=10, schedule="multistep",
                       milestones=(5.0, 8.0), regime_adaptation=True)
    assert config.total_epochs == 40
    assert config.total_milestones == (20.0, 32.0)
    assert RunConfig(batch_size=512, epochs=10).total_epochs == 10
