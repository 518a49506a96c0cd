"""Shared analysis helpers: sweeps, summaries, fits, statistics, verdicts, cached measurements."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from largebatch import analysis, experiments
from largebatch.config import RunConfig

TINY = RunConfig(num_samples=200, model="mnist1d_mlp", model_options={"width": 6}, batch_size=32,
                 epochs=1, lr=0.05)


def test_batch_size_sweep_keeps_every_other_hyper_parameter():
    configs = analysis.batch_size_sweep(TINY, [16, 64], [0, 1], track_distance=True)
    assert [(c.batch_size, c.seed) for c in configs] == [(16, 0), (16, 1), (64, 0), (64, 1)]
    assert all(c.lr == TINY.lr and c.epochs == TINY.epochs and c.track_distance for c in configs)
    with pytest.raises(ValueError):
        analysis.batch_size_sweep(TINY, [], [0])


def test_fit_log_law_recovers_exact_coefficients():
    steps = np.geomspace(1, 1e4, 30)
    fit = analysis.fit_log_law(steps, 2.0 + 0.5 * np.log(steps))
    a, b, r2 = fit  # unpacks as (a, b, r2)
    assert a == pytest.approx(2.0) and b == pytest.approx(0.5) and r2 == pytest.approx(1.0)


def test_log_law_fits_a_random_walk_worse_than_a_power_law():
    steps = np.geomspace(1, 1e4, 40)
    diffusive = 0.1 * np.sqrt(steps)
    power = analysis.fit_power_law(steps, diffusive)
    assert power.exponent == pytest.approx(0.5) and power.c == pytest.approx(0.1) and power.r2 == pytest.approx(1.0)
    assert analysis.fit_log_law(steps, diffusive).r2 < 0.9
    noisy = 1 + np.log(steps) + np.random.default_rng(0).normal(0, 0.3, len(steps))
    assert 0.9 < analysis.fit_log_law(steps, noisy).r2 < 1.0


@pytest.mark.parametrize("steps, values", [([0, 1, 2], [1, 2, 3]), ([1, 2], [1, 2]), ([1, 1, 1], [1, 2, 3]),
                                           ([1, 2, 3], [1, 2])])
def test_fits_reject_bad_input(steps, values):
    with pytest.raises(ValueError):
        analysis.fit_log_law(steps, values)


def test_seed_summary_mean_std_sem_and_count():
    frame = pd.DataFrame({"b": [1, 1, 1, 2], "x": [1.0, 2.0, 3.0, 5.0], "y": [0.0, np.nan, 1.0, 2.0]})
    summary = analysis.seed_summary(frame, "b", ["x", "y"])
    first, second = summary.iloc[0], summary.iloc[1]
    assert first["x_mean"] == 2.0 and first["x_std"] == pytest.approx(1.0)
    assert first["x_sem"] == pytest.approx(1 / math.sqrt(3)) and first["x_n"] == 3
    assert first["y_n"] == 2 and first["y_mean"] == 0.5  # NaN left out
    assert second["x_n"] == 1 and math.isnan(second["x_std"]) and math.isnan(second["x_sem"])
    assert (summary["excluded"] == 0).all()  # no status column: nothing counted as diverged
    with pytest.raises(KeyError):
        analysis.seed_summary(frame, "b", ["missing"])


def test_spearman_and_difference():
    result = analysis.spearman([1, 2, 3, 4, 5], [2, 4, 5, 9, 11])
    assert result.rho == pytest.approx(1.0) and result.p_value < 0.05 and result.n == 5
    assert math.isnan(analysis.spearman([1, 1, 1], [1, 2, 3]).rho)
    assert analysis.spearman([1, 2, np.nan, 4], [1, 2, 3, 4]).n == 3
    diff = analysis.difference([1.0, 3.0], [0.0, 0.0, 0.0])
    assert diff.mean == pytest.approx(2.0) and diff.std_error == pytest.approx(math.sqrt(2.0 / 2))
    assert analysis.difference([1.0, np.nan, 3.0], [0.0, 0.0]).mean == pytest.approx(2.0)


def test_difference_is_welch_and_counts_exclusions():
    result = analysis.difference([4.0, 6.0, 8.0, np.nan], [1.0, 2.0, 3.0])
    assert (result.mean_a, result.mean_b, result.mean) == (6.0, 2.0, 4.0)
    assert (result.n_a, result.n_b, result.excluded) == (3, 3, 1)
    assert result.std_error == pytest.approx(math.sqrt(4.0 / 3 + 1.0 / 3))
    assert result.z == pytest.approx(4.0 / math.sqrt(5.0 / 3))
    assert math.isnan(analysis.difference([1.0], [2.0, 3.0]).z)
    constant = analysis.difference([2.0, 2.0], [1.0, 1.0])  # no noise estimate, so no evidence
    assert math.isnan(constant.std_error) and math.isnan(constant.z)
    verdict = analysis.difference_verdict("A2", constant)
    assert verdict.outcome == "inconclusive" and "zero variance over seeds" in verdict.evidence
    closure = analysis.closure_verdict("B2", [0.9, 0.8], [0.2, 0.2], [0.5, 0.5])
    assert closure.outcome == "inconclusive"
    with pytest.raises(ValueError):
        analysis.difference([], [1.0])


def test_difference_of_differences():
    result = analysis.difference_of_differences([4, 6], [0, 2], [1, 3], [0, 2])
    assert result.mean_a == 4.0 and result.mean_b == 1.0 and result.mean == 3.0
    assert result.std_error == pytest.approx(math.sqrt(4 * 2.0 / 2))


def test_difference_verdict_directions_and_exclusions():
    drop = analysis.difference([0.5, 0.51, 0.52, np.nan], [0.9, 0.91, 0.92])
    lower = analysis.difference_verdict("A2", drop, expected_sign=-1)
    assert lower.outcome == "reproduced" and lower.value == pytest.approx(-40.0)
    assert lower.excluded == 1 and "1 diverged run excluded" in lower.evidence
    assert analysis.difference_verdict("A2", drop, expected_sign=1).outcome == analysis.NOT_REPRODUCED
    noisy = analysis.difference([0.6, 0.4], [0.5, 0.9])
    assert analysis.difference_verdict("A2", noisy, expected_sign=-1).outcome == "inconclusive"
    with pytest.raises(ValueError, match="expected_sign"):
        analysis.difference_verdict("A2", drop, expected_sign=0)


def test_constant_verdict():
    assert analysis.constant_verdict("C1", [0.50, 0.52, 0.51], 0.03, quantity="auc").outcome == "reproduced"
    wide = analysis.constant_verdict("C1", [0.50, 0.60], 0.03, quantity="auc")
    assert wide.outcome == analysis.NOT_REPRODUCED and wide.value == pytest.approx(0.1)
    assert analysis.constant_verdict("C1", [0.5, np.nan], 0.03, quantity="auc").outcome == "inconclusive"


def test_select_batch_size_effect_and_spread():
    frame = pd.DataFrame({"batch_size": [16, 16, 64, 64, 64], "momentum": [0.9, 0.9, 0.9, 0.9, 0.0],
                          "v": [1.0, 3.0, 0.0, 1.0, 9.0]})
    assert len(analysis.select(frame, momentum=0.9000000001)) == 4
    effect = analysis.batch_size_effect(frame, "v", 16, 64, momentum=0.9)
    assert (effect.mean_a, effect.mean_b, effect.mean) == (0.5, 2.0, -1.5)
    assert analysis.spread_of_means(frame, "v", momentum=0.9) == 1.5
    with pytest.raises(KeyError):
        analysis.select(frame, regime="none")


def test_seed_summary_excludes_diverged_runs_and_counts_them():
    frame = pd.DataFrame({"b": [1, 1, 1, 2, 2], "x": [1.0, 3.0, 0.1, 5.0, 7.0],
                          "status": ["completed", "completed", "diverged", "diverged", "target_reached"]})
    summary = analysis.seed_summary(frame, "b", ["x"]).set_index("b")
    assert summary.loc[1, "x_mean"] == 2.0 and summary.loc[1, "x_n"] == 2  # 0.1 of the diverged run left out
    assert summary.loc[1, "excluded"] == 1 and summary.loc[2, "excluded"] == 1
    assert summary.loc[2, "x_mean"] == 7.0


def test_a_single_seed_gives_no_error_estimate_and_no_verdict():
    single = analysis.difference([0.9], [0.5, 0.6])
    assert single.mean == pytest.approx(0.35) and math.isnan(single.std_error)
    assert analysis.improvement_verdict("B4", [0.9], [0.5, 0.6]).outcome == "inconclusive"


def test_correlation_verdict_outcomes():
    sizes = [16, 16, 64, 64, 256, 256, 1024, 1024]
    up = analysis.correlation_verdict("A1", sizes, [1, 1.1, 2, 2.2, 4, 4.1, 8, 8.5], quantity="eigenvalue")
    assert up.outcome == "reproduced" and "rho = 0.98" in up.evidence  # ties in the batch sizes
    down = analysis.correlation_verdict("A1", sizes, [8, 8.5, 4, 4.1, 2, 2.2, 1, 1.1], quantity="eigenvalue")
    assert down.outcome == analysis.NOT_REPRODUCED
    few = analysis.correlation_verdict("A1", [16, 64], [1, 2], quantity="eigenvalue")
    assert few.outcome == "inconclusive"


def test_improvement_and_closure_verdicts():
    assert analysis.improvement_verdict("B4", [0.80, 0.81, 0.82], [0.70, 0.71, 0.72]).outcome == "reproduced"
    assert analysis.improvement_verdict("B4", [0.70, 0.71, 0.72], [0.80, 0.81, 0.82]).outcome == analysis.NOT_REPRODUCED
    assert analysis.improvement_verdict("B4", [0.70, 0.75, 0.80], [0.72, 0.74, 0.78]).outcome == "inconclusive"
    baseline, no_fix = [0.90, 0.91, 0.92], [0.70, 0.71, 0.72]
    assert analysis.closure_verdict("B2", baseline, no_fix, [0.905, 0.91, 0.915]).outcome == "reproduced"
    partly = analysis.closure_verdict("B2", baseline, no_fix, [0.80, 0.81, 0.82])
    assert partly.outcome == "partly reproduced" and "50% closed" in partly.evidence
    assert analysis.closure_verdict("B2", baseline, no_fix, [0.70, 0.71, 0.72]).outcome == analysis.NOT_REPRODUCED
    assert analysis.closure_verdict("B2", baseline, [0.90, 0.91, 0.92], baseline).outcome == "inconclusive"


def test_combine_verdicts_and_outcome_check():
    yes = analysis.Verdict("A1", "reproduced", "c", "e", "x", excluded=1)
    no = analysis.Verdict("A1", analysis.NOT_REPRODUCED, "c", "e", "y")
    unsure = analysis.Verdict("A1", "inconclusive", "c", "e", "z")
    assert analysis.combine_verdicts("A1", [yes, yes]).outcome == "reproduced"
    assert analysis.combine_verdicts("A1", [yes, no]).outcome == "partly reproduced"
    assert analysis.combine_verdicts("A1", [no, no]).outcome == analysis.NOT_REPRODUCED
    assert analysis.combine_verdicts("A1", [unsure]).outcome == "inconclusive"
    assert analysis.combine_verdicts("A1", [yes, unsure]).outcome == "partly reproduced"
    combined = analysis.combine_verdicts("A1", [yes, no])
    assert combined.excluded == 1 and "1 diverged run excluded" in combined.evidence
    assert combined.setting == "" and combined.claim == "A1"
    with pytest.raises(ValueError):
        analysis.Verdict("A1", "maybe", "c", "e")
    with pytest.raises(KeyError, match="unknown claim 'Z9'"):
        analysis.Verdict("Z9", "reproduced", "c", "e")


def test_records_frame_and_distance_curve(tmp_path):
    record = experiments.run(TINY.replace(track_distance=True, target_train_loss=5.0), tmp_path, progress=False)
    frame = analysis.records_frame([record])
    row = frame.iloc[0]
    assert row["reached_target"] and row["epochs_run"] == 1
    assert row["generalization_gap"] == pytest.approx(row["train_accuracy"] - row["test_accuracy"])
    assert row["model_name"] == "mnist1d_mlp (width=6)"
    curve = analysis.distance_curve(record)
    assert curve["step"].iloc[0] == 0 and curve["distance"].iloc[0] == 0
    assert (curve["distance"].iloc[1:] > 0).all() and curve["step"].is_monotonic_increasing
    with pytest.raises(ValueError, match="track_distance"):
        analysis.distance_curve(experiments.run(TINY, tmp_path, progress=False))


def test_measure_computes_once_and_caches_beside_the_record(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"value": 1.5, "vector": torch.arange(3.0), "names": ["a"]}

    with pytest.raises(FileNotFoundError):
        analysis.measure(TINY, "thing", compute, tmp_path)
    experiments.run(TINY, tmp_path, progress=False)
    first = analysis.measure(TINY, "thing", compute, tmp_path)
    second = analysis.measure(TINY, "thing", compute, tmp_path)
    assert len(calls) == 1 and first["value"] == second["value"] == 1.5
    assert torch.equal(second["vector"], torch.arange(3.0)) and second["names"] == ["a"]
    assert (tmp_path / TINY.key() / "measurements" / "thing.pt").exists()
    with pytest.raises(ValueError):
        analysis.measure(TINY, "../escape", compute, tmp_path)
