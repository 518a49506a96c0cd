"""Concurrency with real processes: two writers racing for one run, a writer SIGKILLed while
holding the run's lock, four shards of one sweep, local worker processes (--jobs).

Each worker script counts its trainings by appending the configuration's key to a file
before calling the real ``fit``; the tests print their wall time (run with ``-s``)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from largebatch import experiments, experiments_cli, run_cache
from largebatch.config import RunConfig

TINY = RunConfig(num_samples=200, model="mnist1d_mlp", model_options={"width": 8}, batch_size=32,
                 epochs=2, lr=0.05)
WORKER = textwrap.dedent("""
    import os, sys, time
    from largebatch import experiments, experiments_cli
    real_fit = experiments.fit

    def counted_fit(model, train, test, config, checkpoint=None, **kwargs):
        with open(os.environ["COUNTER"], "a") as stream:
            stream.write(config.key() + "\\n")
        pause = float(os.environ.get("PAUSE_AFTER_CHECKPOINT", "0"))
        racers = int(os.environ.get("HOLD_UNTIL_STARTED", "0"))

        def slow_checkpoint(state):
            checkpoint(state)
            if pause:
                with open(os.environ["COUNTER"] + ".checkpointed", "w") as stream:
                    stream.write(str(os.getpid()))
                time.sleep(pause)
            deadline = time.time() + 120  # hold the lock until every racer has started (however slow)
            while racers and time.time() < deadline and started_count() < racers:
                time.sleep(0.05)

        return real_fit(model, train, test, config, checkpoint=slow_checkpoint, **kwargs)

    def started_count():
        with open(os.environ["COUNTER"] + ".started") as stream:
            return len(stream.read().split())

    experiments.fit = counted_fit
    with open(os.environ["COUNTER"] + ".started", "a") as stream:
        stream.write(f"{time.time()}\\n")
    sys.exit(experiments_cli.main(sys.argv[1:]))
""")


def start(tmp_path, argv, **env):
    environment = {**os.environ, "COUNTER": str(tmp_path / "trained"), **env,
                   "PYTHONPATH": os.pathsep.join([str(Path(experiments.__file__).parents[1]),
                                                  os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", WORKER, *argv], env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def sweep_file(tmp_path, configs):
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps([c.to_dict() for c in configs]))
    return path


def trained(tmp_path):
    path = tmp_path / "trained"
    return path.read_text().split() if path.exists() else []


def finish(process, timeout=120):
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return out


def test_two_writers_racing_for_one_run_train_it_once(tmp_path):
    cache = tmp_path / "runs"
    started = time.perf_counter()
    file = sweep_file(tmp_path, [TINY])
    # the trainer holds the lock after its first checkpoint until the other racer has started, so the
    # race is real however slowly either process imports
    racers = [start(tmp_path, ["sweep", str(file), "--cache", str(cache)], HOLD_UNTIL_STARTED="2")
              for _ in range(2)]
    outputs = [finish(p) for p in racers]
    print(f"\ntwo racing writers: {time.perf_counter() - started:.1f} s")
    assert trained(tmp_path) == [TINY.key()]
    starts = [float(t) for t in (tmp_path / "trained.started").read_text().split()]
    assert len(starts) == 2 and max(starts) < (cache / TINY.key() / "record.json").stat().st_mtime  # a real race
    assert all(f"{TINY.key()} completed" in out for out in outputs)
    folder = cache / TINY.key()
    assert run_cache.check_record(folder)[1] == []
    assert sorted(p.name for p in folder.iterdir()) == ["model.pt", "record.json"]


def test_a_lock_left_by_a_killed_writer_is_taken_over(tmp_path, monkeypatch):
    cache = tmp_path / "runs"
    started = time.perf_counter()
    config = TINY.replace(epochs=3)
    writer = start(tmp_path, ["sweep", str(sweep_file(tmp_path, [config])), "--cache", str(cache)],
                   PAUSE_AFTER_CHECKPOINT="60")
    marker = tmp_path / "trained.checkpointed"
    deadline = time.time() + 60
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert marker.exists(), writer.stderr.read() if writer.poll() is not None else "writer too slow"
    lock = cache / config.key() / run_cache.LOCK_FILE
    assert lock.read_text().startswith(f"pid {writer.pid} host ")
    with pytest.raises(TimeoutError, match=f"held by pid {writer.pid}"):
        with run_cache.run_lock(cache / config.key(), timeout_s=0.3):
            pass
    os.kill(writer.pid, signal.SIGKILL)  # dies holding the lock, after its first epoch's checkpoint
    writer.communicate()
    assert lock.exists() and (cache / config.key() / "train_state.pt").exists()

    resumed = []
    real_fit = experiments.fit

    def watched_fit(*args, resume=None, **kwargs):
        resumed.append(resume["counters"]["epoch"])
        return real_fit(*args, resume=resume, **kwargs)

    monkeypatch.setattr(experiments, "fit", watched_fit)
    taken_over = time.perf_counter()
    record = experiments.run(config, cache, progress=False)
    print(f"\nSIGKILLed writer: lock taken over and run finished in {time.perf_counter() - taken_over:.1f} s "
          f"({time.perf_counter() - started:.1f} s in all)")
    assert resumed == [1] and record["status"] == "completed" and len(record["history"]) == 3
    assert not lock.exists()
    monkeypatch.undo()
    fresh = experiments.run(config, tmp_path / "fresh", progress=False)
    assert record["history"] == fresh["history"] and record["final"] == fresh["final"]


def test_four_shards_cover_a_sweep_exactly_once(tmp_path):
    cache = tmp_path / "runs"
    configs = [TINY.replace(epochs=1, seed=seed, batch_size=b) for seed in range(3) for b in (32, 64)]
    file = sweep_file(tmp_path, configs)
    started = time.perf_counter()
    shards = [start(tmp_path, ["sweep", str(file), "--cache", str(cache), "--shard", f"{i}/4"]) for i in range(4)]
    outputs = [finish(p) for p in shards]
    print(f"\nfour shards of {len(configs)} runs: {time.perf_counter() - started:.1f} s")
    keys = [c.key() for c in configs]
    assert sorted(trained(tmp_path)) == sorted(keys)  # every run trained, none twice
    reported = [line.split()[0] for out in outputs for line in out.splitlines()[:-1]]
    assert sorted(reported) == sorted(keys)
    assert [out.splitlines()[-1].split()[0] for out in outputs] == ["2", "2", "1", "1"]
    assert sorted(p.name for p in cache.iterdir()) == sorted(keys)


def test_local_jobs_give_the_records_of_a_serial_sweep(tmp_path):
    configs = [TINY.replace(epochs=1, seed=seed) for seed in range(2)]
    started = time.perf_counter()
    parallel = experiments.sweep(configs, tmp_path / "parallel", progress=False, jobs=2)
    print(f"\nsweep of {len(configs)} runs with jobs=2: {time.perf_counter() - started:.1f} s")
    serial = experiments.sweep(configs, tmp_path / "serial", progress=False)
    assert len(parallel) == len(serial) == 2
    for a, b in zip(parallel, serial):
        assert a["key"] == b["key"] and a["history"] == b["history"] and a["final"] == b["final"]
        assert a["checksums"]["model.pt"] == b["checksums"]["model.pt"]


def test_a_sweep_file_names_a_list_or_a_grid(tmp_path):
    listed_file = tmp_path / "listed.json"
    listed_file.write_text(json.dumps([TINY.to_dict(), {"batch_size": 64}]))
    listed = experiments_cli.load_configs(listed_file)
    assert listed == [TINY, RunConfig(batch_size=64)]
    grid = tmp_path / "grid.yaml"
    grid.write_text("base: {model: mnist1d_mlp, epochs: 1}\ngrid: {batch_size: [32, 64], seed: [0, 1, 2]}\n")
    configs = experiments_cli.load_configs(grid)
    assert [(c.batch_size, c.seed) for c in configs] == [(b, s) for b in (32, 64) for s in (0, 1, 2)]
    assert {(c.model, c.epochs) for c in configs} == {("mnist1d_mlp", 1)}
