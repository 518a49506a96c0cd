"""Divergence: a loss that explodes (finite or not) ends the run as ``diverged``, with its
history kept; analysis summaries leave diverged runs out and say how many."""

import hashlib
import json
import math

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


def test_summaries_leave_the_exploded_run_out_and_count_it(tmp_path):
    records = experiments.sweep([EXPLODING, EXPLODING.replace(lr=0.05)], tmp_path, progress=False)
    frame = analysis.records_frame(records).assign(group="all")
    summary = analysis.seed_summary(frame, "group", ["test_accuracy"])
    assert summary["excluded"].tolist() == [1] and summary["test_accuracy_n"].tolist() == [1]
    assert summary["test_accuracy_mean"].tolist() == [records[1]["final"]["test_accuracy"]]
