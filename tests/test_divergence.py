"""Divergence: a loss that explodes (finite or not) ends the run as ``diverged``, with its
history kept; analysis summaries leave diverged runs out and say how many."""

import hashlib
import json
import math

import pandas as pd
import pytest

from largebatch import analysis, experiments
from largebatch.config import RunConfig
from largebatch.train import divergence_threshold

EXPLODING = RunConfig(epochs=2, num_samples=200, batch_size=32, lr=1e6)  # the example


def test_an_exploding_finite_loss_is_divergence(tmp_path):
    record = experiments.run(EXPLODING, tmp_path, progress=False)
    assert record["status"] == "diverged"
    divergence = record["divergence"]
    assert math.isfinite(divergence["loss"]) and divergence["loss"] > divergence["threshold"]
    initial = record["history"][0]["running_loss"]  # the updates before divergence: here the first one
    assert divergence["threshold"] == divergence_threshold(10.0, initial, 10)
    assert record["history"] and math.isnan(record["history"][-1]["train_loss"])  # history kept
    assert set(record["final"]) == {"steps"}  # no metrics of a diverged model enter tables as results
    assert json.loads((tmp_path / EXPLODING.key() / "record.json").read_text())["status"] == "diverged"


def test_only_non_finite_losses_would_let_the_exploded_run_count_as_completed(tmp_path):
    strict = experiments.run(EXPLODING, tmp_path, progress=False)
    lenient = experiments.run(EXPLODING.replace(divergence_factor=1e30), tmp_path, progress=False)
    assert lenient["status"] == "completed"  # what the issue saw: finite but exploded, at chance level
    assert lenient["final"]["train_loss"] > strict["divergence"]["threshold"]


def test_the_threshold_is_the_factor_times_the_larger_of_initial_loss_and_chance_loss():
    assert divergence_threshold(10.0, 5.0, 10) == 50.0
    assert divergence_threshold(10.0, 0.1, 10) == 10.0 * math.log(10)  # never below chance level
    assert divergence_threshold(3.0, 2.0, 100) == 3.0 * math.log(100)


def test_the_default_factor_keeps_old_cache_keys_and_another_changes_them():
    old_key = hashlib.sha256(json.dumps({"batch_size": 64}, sort_keys=True).encode()).hexdigest()[:16]
    assert RunConfig(batch_size=64, divergence_factor=10.0).key() == old_key
    assert RunConfig(batch_size=64, divergence_factor=20.0).key() != old_key


def frame() -> pd.DataFrame:
    return pd.DataFrame({"batch_size": [32, 32, 32, 512, 512],
                         "status": ["completed", "completed", "diverged", "diverged", "target_reached"],
                         "test_accuracy": [0.8, 0.6, 0.1, 0.1, 0.5]})


def test_seed_summary_excludes_diverged_runs_and_counts_them():
    summary = analysis.seed_summary(frame(), "batch_size", ["test_accuracy"])
    assert summary["test_accuracy_mean"].tolist() == pytest.approx([0.7, 0.5])
    assert summary["test_accuracy_n"].tolist() == [2, 1]
    assert summary["n_diverged"].tolist() == [1, 1]


def test_excluded_runs_are_reported():
    kept, excluded = analysis.exclude_diverged(frame())
    assert excluded == 2 and (kept["status"] != "diverged").all() and len(kept) == 3
    assert analysis.diverged_note(frame()) == "2 of 5 runs diverged and are excluded from the means."
    assert analysis.diverged_note(frame().iloc[:2]) == ""
    no_status = frame().drop(columns="status")
    assert "n_diverged" not in analysis.seed_summary(no_status, "batch_size", ["test_accuracy"])
