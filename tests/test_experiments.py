"""Cached runs: records, checkpoints, cache hits, atomic writes, resume after a killed sweep."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from largebatch import experiments
from largebatch.config import ConfigError, RunConfig

TINY = RunConfig(num_samples=200, model="mnist1d_mlp", model_options={"width": 8}, batch_size=32,
                 epochs=2, lr=0.05)


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "runs"


def test_run_writes_a_complete_record_and_a_checkpoint(cache):
    record = experiments.run(TINY, cache, progress=False)
    folder = cache / TINY.key()
    on_disk = json.loads((folder / "record.json").read_text())
    assert on_disk == json.loads(json.dumps(record))
    assert record["status"] == "completed"
    assert record["config"] == TINY.to_dict()
    assert len(record["history"]) == 2 and record["final"]["steps"] == 2 * (160 // 32)
    assert 0 <= record["final"]["test_accuracy"] <= 1
    assert record["version"] and record["wall_time_s"] > 0 and "git_commit" in record
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []  # no temp files left
    state = torch.load(folder / "model.pt", weights_only=True)
    assert set(state) == set(experiments.build_model(TINY, experiments.load_data(TINY)).state_dict())


def test_second_run_is_a_cache_hit(cache, monkeypatch):
    first = experiments.run(TINY, cache, progress=False)

    def no_training(*args, **kwargs):
        raise AssertionError("a cached run must not train again")

    monkeypatch.setattr(experiments, "fit", no_training)
    assert experiments.run(TINY, cache, progress=False) == first


def test_runs_are_bit_for_bit_repeatable(tmp_path):
    a = experiments.run(TINY, tmp_path / "a", progress=False)
    b = experiments.run(TINY, tmp_path / "b", progress=False)
    assert a["history"] == b["history"] and a["final"] == b["final"]
    model_a = experiments.load_model(TINY, tmp_path / "a")
    model_b = experiments.load_model(TINY, tmp_path / "b")
    for p, q in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(p, q)


def test_load_model_restores_the_trained_weights(cache):
    record = experiments.run(TINY, cache, progress=False)
    model = experiments.load_model(TINY, cache)
    bundle = experiments.load_data(TINY)
    from largebatch.train import evaluate

    assert evaluate(model, bundle.test)["accuracy"] == record["final"]["test_accuracy"]
    for split, dataset in (("train", bundle.train), ("test", bundle.test)):  # final = the weights' own
        assert evaluate(model, dataset) == {"loss": record["final"][f"{split}_loss"],
                                            "accuracy": record["final"][f"{split}_accuracy"]}
    with pytest.raises(FileNotFoundError, match="call run"):
        experiments.load_model(TINY.replace(seed=9), cache)


@pytest.mark.parametrize("eval_every", [1, 3])
def test_final_metrics_are_those_of_the_final_weights_whenever_the_history_evaluated(cache, eval_every):
    config = TINY.replace(epochs=3, eval_every=eval_every)
    record = experiments.run(config, cache, progress=False)
    model, bundle = experiments.load_model(config, cache), experiments.load_data(config)
    from largebatch.train import evaluate

    assert [row["epoch"] for row in record["history"]] == ([1, 2, 3] if eval_every == 1 else [3])
    for split, dataset in (("train", bundle.train), ("test", bundle.test)):
        metrics = evaluate(model, dataset)
        assert (record["final"][f"{split}_loss"], record["final"][f"{split}_accuracy"]) == \
            (metrics["loss"], metrics["accuracy"]) == \
            (record["history"][-1][f"{split}_loss"], record["history"][-1][f"{split}_accuracy"])


def test_bad_configuration_fails_before_any_training(cache, monkeypatch):
    monkeypatch.setattr(experiments, "fit", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(ConfigError, match="batch_size must be <= the training set size 160"):
        experiments.run(TINY.replace(batch_size=161), cache)
    with pytest.raises(TypeError, match="RunConfig"):
        experiments.run({"batch_size": 3}, cache)
    with pytest.raises(TypeError, match="RunConfig"):
        experiments.sweep([TINY, "not a config"], cache)
    assert not cache.exists()


def test_results_table(cache):
    records = experiments.sweep([TINY, TINY.replace(batch_size=64)], cache, progress=False)
    table = experiments.results(records)
    assert list(table["batch_size"]) == [32, 64]
    assert {"test_accuracy", "train_loss", "status", "wall_time_s", "key"} <= set(table.columns)
    assert len(experiments.results(cache_dir=cache)) == 2
    assert list(experiments.history(records[0])["epoch"]) == [1, 2]


SWEEP_SCRIPT = textwrap.dedent("""
    import sys
    from largebatch import experiments
    from largebatch.config import RunConfig
    base = RunConfig(num_samples=200, model="mnist1d_mlp", model_options={"width": 8}, batch_size=32, lr=0.05)
    configs = [base.replace(epochs=1), base.replace(epochs=2000), base.replace(epochs=1, seed=3)]
    experiments.sweep(configs, sys.argv[1], progress=False)
""")


def test_killed_sweep_resumes_without_recomputing_finished_runs(cache, monkeypatch):
    base = RunConfig(num_samples=200, model="mnist1d_mlp", model_options={"width": 8}, batch_size=32, lr=0.05)
    configs = [base.replace(epochs=1), base.replace(epochs=2000), base.replace(epochs=1, seed=3)]
    process = subprocess.Popen([sys.executable, "-c", SWEEP_SCRIPT, str(cache)])
    first = cache / configs[0].key() / "record.json"
    deadline = time.time() + 120
    while not first.exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # the second run is now training
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert first.exists()
    assert not (cache / configs[1].key() / "record.json").exists()

    trained = []
    real_fit = experiments.fit

    def counting_fit(model, train, test, config, **kwargs):
        trained.append(config)
        return real_fit(model, train, test, config, **kwargs)

    monkeypatch.setattr(experiments, "fit", counting_fit)
    resumed = [configs[0], configs[1].replace(epochs=1, seed=7), configs[2]]
    records = experiments.sweep(resumed, cache, progress=False)
    assert trained == resumed[1:]
    assert records[0] == json.loads(first.read_text())


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "record.json"
    experiments.atomic_write_bytes(target, b"old")

    def failing_replace(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(KeyboardInterrupt):
        experiments.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LARGEBATCH_CACHE_DIR", str(tmp_path))
    assert experiments.default_cache_dir() == tmp_path
    monkeypatch.delenv("LARGEBATCH_CACHE_DIR")
    monkeypatch.chdir(experiments.__file__.rsplit("/lib/", 1)[0] + "/notebooks")
    assert experiments.default_cache_dir().parts[-2:] == (".cache", "runs")


def test_device_is_not_part_of_the_run_identity(cache):
    record = experiments.run(TINY, cache, progress=False, device="cpu")
    assert experiments.run(TINY, cache, progress=False, device="meta") == record  # cache hit, no compute
    assert next(experiments.load_model(TINY, cache, device="cpu").parameters()).device.type == "cpu"
