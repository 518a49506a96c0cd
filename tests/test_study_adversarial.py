"""Chapter 04's study module, largebatch.studies.adversarial: grids, cached robust curves,
tables, input curvature, the saddle-free verdict, and the chapter's design."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from largebatch import analysis, attacks, experiments, run_cache
from largebatch.studies import adversarial
from largebatch.studies.common import LabelledRun, unique_configs
from largebatch.config import ConfigError, RunConfig

TINY = RunConfig(num_samples=200, model="mnist1d_mlp", model_options={"width": 8}, batch_size=32,
                 epochs=2, lr=0.05)
EPSILONS = [0.0, 0.1, 0.3]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    for config in (TINY, TINY.replace(batch_size=64)):
        experiments.run(config, folder, progress=False)
    return folder


# ----------------------------------------------------------------------------- grids


def test_scaling_grid_shares_the_reference_run_and_scales_the_rest():
    grid = adversarial.scaling_grid(TINY, [16, 64, 32], [0, 1], momenta=[0.0, 0.9])
    assert len(grid) == 2 * 2 * 3 * 2
    unique = unique_configs(grid)
    assert len(unique) == 2 * 2 * (1 + 2 * 2)  # momenta x seeds x (shared reference + 2 regimes x 2 sizes)
    for run in grid:
        config = run.config
        assert config.base_batch_size == 16
        assert (config.batch_size, config.momentum, config.seed) == (
            run.labels["batch_size"], run.labels["momentum"], run.labels["seed"])
        expected = "none" if config.batch_size == 16 else run.labels["regime"]
        assert config.lr_scaling == expected


def test_scaling_grid_rejects_bad_input():
    with pytest.raises(ValueError, match="non-empty"):
        adversarial.scaling_grid(TINY, [], [0])
    with pytest.raises(ValueError, match="lr_scaling rules"):
        adversarial.scaling_grid(TINY, [16, 32], [0], regimes=("cubic",))


def test_input_scale():
    inputs = torch.tensor([[[3.0, -4.0]], [[1.0, 1.0]]])
    scale = adversarial.input_scale(inputs)
    assert scale["rms"] == pytest.approx((math.sqrt(12.5) + 1.0) / 2)
    assert scale["linf"] == pytest.approx((4.0 + 1.0) / 2)


@pytest.mark.parametrize("epsilons, reference, message", [
    ([], None, "non-empty"), ([0.0, -0.1], None, ">= 0"), ([0.1, 0.2], None, "include 0"),
    ([0.0, 0.1], 0.2, "reference_eps must be one of"),
])
def test_check_epsilons(epsilons, reference, message):
    with pytest.raises(ConfigError, match=message):
        adversarial.check_epsilons(epsilons, reference)
    adversarial.check_epsilons([0, 0.1, 0.2], 0.1)


# ----------------------------------------------------------------------------- curves and tables


def test_robust_curve_matches_attacks_and_is_cached(cache, monkeypatch):
    curve = adversarial.robust_curve(TINY, EPSILONS, "pgd", num_points=20, steps=3, seed=1, cache_dir=cache)
    model = experiments.load_model(TINY, cache)
    inputs, targets = experiments.load_data(TINY).test.tensors
    direct = attacks.robust_accuracy(model, (inputs[:20], targets[:20]), EPSILONS, attack="pgd", steps=3,
                                     generator=torch.Generator().manual_seed(1))
    assert curve["accuracy"].tolist() == direct["accuracy"].tolist()
    assert curve["epsilon"].tolist() == EPSILONS
    stored = list((experiments.run_dir(TINY, cache) / "measurements").glob("robust_*.pt"))
    assert len(stored) == 1

    def no_attack(*args, **kwargs):
        raise AssertionError("a cached curve must not be recomputed")

    monkeypatch.setattr(attacks, "robust_accuracy", no_attack)
    again = adversarial.robust_curve(TINY, list(reversed(EPSILONS)), "pgd", num_points=20, steps=3, seed=1,
                                    cache_dir=cache)
    pd.testing.assert_frame_equal(again, curve)
    with pytest.raises(AssertionError, match="must not be recomputed"):  # other settings: a new curve
        adversarial.robust_curve(TINY, EPSILONS, "pgd", num_points=20, steps=4, seed=1, cache_dir=cache)


def test_robust_curve_checks_arguments_before_any_compute(cache):
    with pytest.raises(ValueError, match="attack must be one of"):
        adversarial.robust_curve(TINY, EPSILONS, "cw", cache_dir=cache)
    with pytest.raises(ValueError, match="epsilons"):
        adversarial.robust_curve(TINY, [-1.0], cache_dir=cache)
    with pytest.raises(ValueError, match="num_points"):
        adversarial.robust_curve(TINY, EPSILONS, num_points=0, cache_dir=cache)


def test_robustness_table_and_per_run(cache):
    runs = [LabelledRun({"tag": "a"}, TINY), LabelledRun({"tag": "b"}, TINY.replace(batch_size=64))]
    table = adversarial.robustness_table(runs, EPSILONS, num_points=30, steps=2, cache_dir=cache)
    assert len(table) == 2 * 2 * len(EPSILONS)
    assert set(table["tag"]) == {"a", "b"} and set(table["attack"]) == {"fgsm", "pgd"}
    record = experiments.load_record(TINY, cache)
    first = table[(table["run"] == 0) & (table["epsilon"] == 0)]
    assert (first["robust_accuracy"] <= 1).all()
    assert first["test_accuracy"].iloc[0] == record["final"]["test_accuracy"]
    assert math.isnan(first["hessian_top_eigenvalue"].iloc[0])  # not measured in TINY
    for _, curve in table.groupby(["run", "attack"]):
        assert curve["robust_accuracy"].is_monotonic_decreasing

    summary = adversarial.per_run(table, reference_eps=0.1)
    assert len(summary) == 4 and "epsilon" not in summary.columns
    for _, row in summary.iterrows():
        curve = table[(table["run"] == row["run"]) & (table["attack"] == row["attack"])]
        assert row["auc"] == pytest.approx(adversarial.area_under_curve(curve["epsilon"], curve["robust_accuracy"]))
        assert row["robust_at_ref"] == curve[curve["epsilon"] == 0.1]["robust_accuracy"].iloc[0]
    with pytest.raises(ValueError, match="reference_eps"):
        adversarial.per_run(table, reference_eps=0.2)


def test_robustness_table_needs_finished_runs_and_skips_diverged_ones(cache, tmp_path):
    with pytest.raises(FileNotFoundError, match="not finished"):
        adversarial.robustness_table([TINY.replace(seed=99)], EPSILONS, cache_dir=cache)
    folder = tmp_path / "runs"
    experiments.run(TINY, folder, progress=False)
    path = experiments.run_dir(TINY, folder) / experiments.RECORD_FILE
    record = json.loads(path.read_text())
    record["status"] = "diverged"
    path.write_text(json.dumps(run_cache.seal(record, record["checksums"]["model.pt"])))  # a valid record
    table = adversarial.robustness_table([TINY], EPSILONS, cache_dir=folder)
    assert table["robust_accuracy"].isna().all() and (table["status"] == "diverged").all()
    assert not (experiments.run_dir(TINY, folder) / "robust").exists()


# ----------------------------------------------------------------------------- summaries and verdicts


def test_area_under_curve():
    assert adversarial.area_under_curve([0, 1, 2], [0.5, 0.5, 0.5]) == pytest.approx(0.5)
    assert adversarial.area_under_curve([0, 1], [1.0, 0.0]) == pytest.approx(0.5)
    assert adversarial.area_under_curve([2, 0, 1], [0.0, 1.0, 0.5]) == pytest.approx(0.5)  # order-free
    assert adversarial.area_under_curve([0, 0.1, 0.3], [0.9, 0.6, 0.0]) == pytest.approx(
        (0.1 * 1.5 / 2 + 0.2 * 0.6 / 2) / 0.3)
    assert adversarial.area_under_curve([0.2], [0.7]) == 0.7
    with pytest.raises(ValueError):
        adversarial.area_under_curve([0, 1], [1.0])


# ----------------------------------------------------------------------------- input curvature

NUM_CLASSES = 4


def mlp(activation: type[nn.Module], seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 12), activation(), nn.Linear(12, 12), activation(),
                         nn.Linear(12, NUM_CLASSES))


def test_input_curvature_table_relu_psd_with_rank_bound_tanh_indefinite():
    torch.manual_seed(1)
    inputs, targets = torch.randn(12, 6), torch.randint(0, NUM_CLASSES, (12,))
    table = adversarial.input_curvature_table({"relu": mlp(nn.ReLU), "tanh": mlp(nn.Tanh)}, inputs, targets,
                                             NUM_CLASSES)
    relu, tanh = table[table["network"] == "relu"], table[table["network"] == "tanh"]
    assert relu["psd"].all() and relu["rank_bound"].all()
    assert (relu["n_nonzero"] <= NUM_CLASSES - 1).all() and (relu["negative_ratio"] == 0).all()
    assert (~tanh["psd"]).mean() > 0.5 and (tanh["negative_ratio"] > 0).any()
    assert (table["threshold"] > 0).all() and table["confidence"].between(1 / NUM_CLASSES, 1).all()


def test_confident_points_are_not_called_indefinite():
    """Scaled-up logits make every eigenvalue as small as round-off; the threshold absorbs it."""
    model = mlp(nn.ReLU)
    with torch.no_grad():
        model[-1].weight.mul_(200.0)
    torch.manual_seed(2)
    inputs, targets = torch.randn(10, 6), torch.randint(0, NUM_CLASSES, (10,))
    table = adversarial.input_curvature_table({"relu": model}, inputs, targets, NUM_CLASSES)
    assert (table["confidence"] > 1 - 1e-6).any()
    assert table["psd"].all() and table["rank_bound"].all()


def test_gradient_line_starts_at_the_loss_and_ascends():
    model = mlp(nn.ReLU)
    x, y = torch.randn(6), 1
    steps, losses = adversarial.gradient_line(model, x, y, 0.5, num_steps=11)
    assert steps[0] == 0 and steps[-1] == pytest.approx(0.5) and len(losses) == 11
    assert losses[0].item() == pytest.approx(F.cross_entropy(model(x.unsqueeze(0)), torch.tensor([y])).item())
    assert losses[1] > losses[0]  # the gradient is an ascent direction
    with pytest.raises(ValueError):
        adversarial.gradient_line(model, x, y, 0.0)


def test_convexity_inside_linear_regions():
    model = mlp(nn.ReLU)
    torch.manual_seed(3)
    inputs, targets = torch.randn(8, 6), torch.randint(0, NUM_CLASSES, (8,))
    inside = adversarial.convexity_table(model, inputs, targets, 5.0, within_region=True)
    assert inside["convex"].all() and (inside["length"] <= 5.0).all()
    assert (inside["min_second_difference"] >= -inside["allowance"]).all()
    fixed = adversarial.convexity_table(mlp(nn.Tanh), inputs, targets, 5.0)
    assert (fixed["length"] == 5.0).all()
    with pytest.raises(ValueError, match="no ReLU"):
        adversarial.convexity_table(mlp(nn.Tanh), inputs, targets, 5.0, within_region=True)


def _curvature_rows(network, psd, rank_bound=True):
    return pd.DataFrame({"network": network, "psd": psd, "rank_bound": rank_bound})


def _outcome(*args):
    *parts, overall = adversarial.saddle_free_verdict(*args)
    assert overall.claim == "A3" and not overall.setting and all(p.setting for p in parts)
    return overall.outcome, [p.value for p in parts]


def test_saddle_free_verdict():
    convex = pd.DataFrame({"network": ["relu", "relu"], "convex": [True, True]})
    curvature = pd.concat([_curvature_rows("relu", [True, True]), _curvature_rows("tanh", [False, True])])
    assert _outcome(curvature, convex, ["relu"], ["tanh"], 0.5) == ("reproduced", [1.0, 1.0, 0.5])
    assert _outcome(curvature, convex, ["relu"], ["tanh"], 0.9)[0] == "partly reproduced"
    not_psd = pd.concat([_curvature_rows("relu", [True, False]), _curvature_rows("tanh", [True, True])])
    assert _outcome(not_psd, convex.assign(convex=[True, False]), ["relu"], ["tanh"], 0.5) == (
        analysis.NOT_REPRODUCED, [0.5, 0.5, 0.0])
    with pytest.raises(ValueError, match="smooth network 'gelu'"):
        adversarial.saddle_free_verdict(curvature, convex, ["relu"], ["gelu"], 0.5)


@pytest.mark.parametrize("changes, message", [
    ({"batch_sizes": [32, 32]}, "two distinct sizes"), ({"seeds": []}, "one seed"),
    ({"momenta": [0.9, 0.9]}, "must differ"), ({"activations": ["tanh", "relu"]}, "start with relu"),
    ({"activations": ["relu"]}, "start with relu"), ({"indefinite_fraction": 0.0}, r"\(0, 1\]"),
    ({"num_threads": -1}, "num_threads"),
])
def test_check_study(changes, message):
    good = {"batch_sizes": [32, 128], "seeds": [0], "momenta": [0.0, 0.9], "activations": ["relu", "tanh"],
            "indefinite_fraction": 0.5, "num_threads": 1}
    adversarial.check_study(**good)
    with pytest.raises(ConfigError, match=message):
        adversarial.check_study(**{**good, **changes})
