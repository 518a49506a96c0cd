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


def test_a_single_seed_gives_no_error_estimate_and_no_verdict():
    single = analysis.difference([0.9], [0.5, 0.6])
    assert single.mean == pytest.approx(0.35) and math.isnan(single.std_error)
    assert analysis.improvement_verdict("B4", [0.9], [0.5, 0.6]).outcome == "inconclusive"


def test_correlation_verdict_outcomes():
    sizes = [16, 16, 64, 64, 256, 256, 1024, 1024]
    up = analysis.correlation_verdict("A1", sizes, [1, 1.1, 2, 2.2, 4, 4.1, 8, 8.5], quantity="eigenvalue")
    assert up.outcome == "reproduced" and "rho = 0.98" in up.evidence  # ties in the batch sizes
    down = analysis.correlation_verdict("A1", sizes, [8, 8.5, 4, 4.1, 2, 2.2, 1, 1.1], quantity="eigenvalue")
    assert down.outcome == "not reproduced"
    few = analysis.correlation_verdict("A1", [16, 64], [1, 2], quantity="eigenvalue")
    assert few.outcome == "inconclusive"


def test_improvement_and_closure_verdicts():
    assert analysis.improvement_verdict("B4", [0.80, 0.81, 0.82], [0.70, 0.71, 0.72]).outcome == "reproduced"
    assert analysis.improvement_verdict("B4", [0.70, 0.71, 0.72], [0.80, 0.81, 0.82]).outcome == "not reproduced"
    assert analysis.improvement_verdict("B4", [0.70, 0.75, 0.80], [0.72, 0.74, 0.78]).outcome == "inconclusive"
    baseline, no_fix = [0.90, 0.91, 0.92], [0.70, 0.71, 0.72]
    assert analysis.closure_verdict("B2", baseline, no_fix, [0.905, 0.91, 0.915]).outcome == "reproduced"
    partly = analysis.closure_verdict("B2", baseline, no_fix, [0.80, 0.81, 0.82])
    assert partly.outcome == "partly reproduced" and "50% closed" in partly.evidence
    assert analysis.closure_verdict("B2", baseline, no_fix, [0.70, 0.71, 0.72]).outcome == "not reproduced"
    assert analysis.closure_verdict("B2", baseline, [0.90, 0.91, 0.92], baseline).outcome == "inconclusive"


def test_combine_verdicts_and_outcome_check():
    yes = analysis.Verdict("A1 (x)", "reproduced", "c", "e")
    no = analysis.Verdict("A1 (y)", "not reproduced", "c", "e")
    unsure = analysis.Verdict("A1 (z)", "inconclusive", "c", "e")
    assert analysis.combine_verdicts("A1", [yes, yes]).outcome == "reproduced"
    assert analysis.combine_verdicts("A1", [yes, no]).outcome == "partly reproduced"
    assert analysis.combine_verdicts("A1", [no, no]).outcome == "not reproduced"
    assert analysis.combine_verdicts("A1", [unsure]).outcome == "inconclusive"
    assert analysis.combine_verdicts("A1", [yes, unsure]).outcome == "partly reproduced"
    with pytest.raises(ValueError):
        analysis.Verdict("A1", "maybe", "c", "e")


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
