"""Cache integrity: corrupted files are named, quarantined (never deleted) and recomputed;
a run killed at any write step resumes to the same record; verify and gc."""

import json
import os
import shutil

import pytest
import torch

from largebatch import experiments, experiments_cli, run_cache
from largebatch.config import RunConfig
from largebatch.run_cache import CacheWarning, CorruptEntryError

TINY = RunConfig(num_samples=200, model="mnist1d_mlp", model_options={"width": 8}, batch_size=32,
                 epochs=3, lr=0.05)
WALL_CLOCK = ("wall_time_s", "finished_at", "epoch_wall_time_s")


def comparable(record):
    """A record without its wall-clock fields and its own content checksum (which covers them)."""
    kept = {k: v for k, v in record.items() if k not in WALL_CLOCK}
    kept["checksums"] = {k: v for k, v in record["checksums"].items() if k != "record"}
    return json.loads(json.dumps(kept))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A cache holding TINY, finished once; tests copy it."""
    cache = tmp_path_factory.mktemp("finished")
    record = experiments.run(TINY, cache, progress=False)
    return cache, record


@pytest.fixture
def cache(finished, tmp_path):
    copy = tmp_path / "runs"
    shutil.copytree(finished[0], copy)
    return copy


def quarantined(cache):
    folder = cache / run_cache.QUARANTINE_DIR / TINY.key()
    return sorted(p.name.split("-", 1)[1] for p in folder.iterdir()) if folder.exists() else []


def test_records_carry_checksums_of_their_content_and_checkpoint(finished):
    cache, record = finished
    folder = cache / TINY.key()
    assert record["checksums"][run_cache.CHECKPOINT_FILE] == run_cache.sha256_file(folder / "model.pt")
    assert run_cache.check_record(folder) == (json.loads((folder / "record.json").read_text()), [])
    assert sorted(p.name for p in folder.iterdir()) == ["model.pt", "record.json"]  # no lock, state or temp


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def empty(path):
    path.write_bytes(b"")


def wrong_schema(path):
    path.write_text(json.dumps({"key": TINY.key(), "config": {}}))


def json_list(path):
    path.write_text("[1, 2, 3]")


def altered_value(path):
    record = json.loads(path.read_text())
    record["final"]["test_accuracy"] = 1.0
    path.write_text(json.dumps(record))


CORRUPTIONS = [("record.json", truncate, "not valid JSON"), ("record.json", flip_byte, "record.json"),
               ("record.json", empty, "not valid JSON"), ("record.json", wrong_schema, "missing fields"),
               ("record.json", json_list, "wrong schema"), ("record.json", altered_value, "checksum mismatch"),
               ("model.pt", truncate, "checksum mismatch"), ("model.pt", flip_byte, "checksum mismatch"),
               ("model.pt", empty, "checksum mismatch")]


@pytest.mark.parametrize("name, corrupt, reason", CORRUPTIONS,
                         ids=[f"{n}-{c.__name__}" for n, c, _ in CORRUPTIONS])
def test_a_corrupted_entry_is_named_quarantined_and_recomputed(cache, finished, name, corrupt, reason):
    folder = cache / TINY.key()
    corrupt(folder / name)
    damaged = (folder / name).read_bytes()
    originals = {n: (folder / n).read_bytes() for n in ("record.json", "model.pt")}
    assert experiments.load_record(TINY, cache) is None
    with pytest.warns(CacheWarning, match=reason) as caught:
        record = experiments.run(TINY, cache, progress=False)
    assert str(folder / name) in str(caught[0].message)
    assert comparable(record) == comparable(finished[1])  # recomputed bit for bit
    assert quarantined(cache) == sorted(["model.pt", "model.pt.why", "record.json", "record.json.why"])
    moved = {p.name.split("-", 1)[1]: p.read_bytes() for p in (cache / "_quarantine" / TINY.key()).iterdir()}
    assert moved[name] == damaged and all(moved[n] == originals[n] for n in originals)  # nothing deleted
    assert reason in moved[name + ".why"].decode()


def test_load_model_names_a_corrupted_checkpoint_and_quarantines_it(cache):
    path = cache / TINY.key() / "model.pt"
    flip_byte(path)
    with pytest.raises(CorruptEntryError, match="model.pt: checksum mismatch") as caught, \
            pytest.warns(CacheWarning):
        experiments.load_model(TINY, cache)
    assert str(path) in str(caught.value) and "run(config) recomputes it" in str(caught.value)
    assert not path.exists() and "model.pt" in quarantined(cache)


def test_an_unloadable_checkpoint_of_an_old_record_is_named(cache):
    folder = cache / TINY.key()
    record = json.loads((folder / "record.json").read_text())
    del record["checksums"]  # written before checksums existed: accepted as it is
    (folder / "record.json").write_text(json.dumps(record))
    assert experiments.load_record(TINY, cache) == record
    empty(folder / "model.pt")
    with pytest.raises(CorruptEntryError, match="model.pt: not a loadable torch file"), pytest.warns(CacheWarning):
        experiments.load_model(TINY, cache)


@pytest.mark.parametrize("corrupt", [truncate, flip_byte, empty])
def test_a_damaged_training_state_is_quarantined_and_the_run_starts_afresh(cache, finished, corrupt, monkeypatch):
    folder = cache / TINY.key()
    state = {"epoch": 1}
    run_cache.write_checked(folder / "train_state.pt", state)
    assert run_cache.read_checked(folder / "train_state.pt") == state
    corrupt(folder / "train_state.pt")
    for name in ("record.json", "model.pt"):
        (folder / name).unlink()
    with pytest.warns(CacheWarning, match="train_state.pt"):
        record = experiments.run(TINY, cache, progress=False)
    assert comparable(record) == comparable(finished[1])
    assert quarantined(cache) == ["train_state.pt", "train_state.pt.why"]


class Killed(BaseException):
    """Stands for SIGKILL at a write step (BaseException: nothing may catch it)."""


def kill_at(monkeypatch, target, occurrence, after_write=False):
    """Make the ``occurrence``-th atomic write of ``target`` die: with a temporary file left
    behind (during the write), or just after the write completed."""
    real = run_cache.atomic_write_bytes
    seen = []

    def dying(path, payload):
        if path.name == target:
            seen.append(path)
            if len(seen) == occurrence:
                if after_write:
                    real(path, payload)
                else:
                    (path.parent / f".{path.name}.abcd1234").write_bytes(payload[: len(payload) // 2])
                raise Killed(f"killed writing {path}")
        real(path, payload)

    monkeypatch.setattr(run_cache, "atomic_write_bytes", dying)


# (file, which write of it, killed after it completed?, epoch the rerun resumes from)
FAULTS = [("train_state.pt", 1, False, None), ("train_state.pt", 2, False, 1), ("train_state.pt", 2, True, 2),
          ("model.pt", 1, False, 2), ("model.pt", 1, True, 2), ("record.json", 1, False, 2)]


@pytest.mark.parametrize("target, occurrence, after_write, resumed_from", FAULTS,
                         ids=[f"{t}#{o}-{'after' if a else 'during'}" for t, o, a, _ in FAULTS])
def test_a_run_killed_at_a_write_step_resumes_to_the_same_record(tmp_path, finished, monkeypatch, target,
                                                                 occurrence, after_write, resumed_from):
    cache = tmp_path / "runs"
    kill_at(monkeypatch, target, occurrence, after_write)
    with pytest.raises(Killed):
        experiments.run(TINY, cache, progress=False)
    monkeypatch.undo()
    assert experiments.load_record(TINY, cache) is None  # nothing looks finished
    resumes = []
    real_fit = experiments.fit

    def watched_fit(*args, resume=None, **kwargs):
        resumes.append(None if resume is None else resume["counters"]["epoch"])
        return real_fit(*args, resume=resume, **kwargs)

    monkeypatch.setattr(experiments, "fit", watched_fit)
    record = experiments.run(TINY, cache, progress=False)
    assert resumes == [resumed_from]
    assert comparable(record) == comparable(finished[1])
    folder = cache / TINY.key()
    assert run_cache.sha256_file(folder / "model.pt") == finished[1]["checksums"]["model.pt"]
    leftovers = run_cache.gc(cache, min_age_s=0)
    assert [p.name for p in leftovers] == ([] if after_write else [f".{target}.abcd1234"])
    assert sorted(p.name for p in folder.iterdir()) == ["model.pt", "record.json"]


def test_verify_lists_bad_entries_and_gc_removes_orphans(cache, capsys):
    folder = cache / TINY.key()
    other = cache / "0123456789abcdef"
    other.mkdir()
    (other / "record.json").write_text("{truncated")
    (folder / ".record.json.x1y2z3w4").write_bytes(b"half a rec")
    run_cache.write_checked(folder / "train_state.pt", {"epoch": 2})  # left over after the record
    assert experiments_cli.main(["verify", "--cache", str(cache)]) == 1
    out = capsys.readouterr().out
    assert f"{other / 'record.json'}: not valid JSON" in out
    assert "1 finished runs (0 without checksums), 1 bad files" in out
    assert experiments_cli.main(["gc", "--cache", str(cache)]) == 0  # the temporary file is too new
    assert capsys.readouterr().out.splitlines() == [f"removed {folder / 'train_state.pt'}",
                                                    f"1 orphaned files removed from {cache}"]
    os.utime(folder / ".record.json.x1y2z3w4", (0, 0))
    assert experiments_cli.main(["gc", "--cache", str(cache), "--min-age", "60"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"removed {folder / '.record.json.x1y2z3w4'}"
    assert sorted(p.name for p in folder.iterdir()) == ["model.pt", "record.json"]
    with pytest.warns(CacheWarning, match="not valid JSON"):
        assert experiments_cli.main(["verify", "--cache", str(cache), "--repair"]) == 0
    assert not (other / "record.json").exists()
    assert (cache / "_quarantine" / other.name).exists()
    assert experiments_cli.main(["verify", "--cache", str(cache)]) == 0
    assert experiments.load_model(TINY, cache) is not None  # the finished run survived every step


def test_results_leave_out_a_bad_record_and_name_it(cache):
    (cache / TINY.key() / "record.json").write_text("{")
    with pytest.warns(CacheWarning, match="record.json: not valid JSON"):
        assert experiments.results(cache_dir=cache).empty


def test_a_damaged_measurement_is_quarantined_and_measured_again(cache):
    from largebatch import analysis

    calls = []

    def compute():
        calls.append(1)
        return {"value": torch.tensor([1.5, 2.5])}

    first = analysis.measure(TINY, "thing", compute, cache)
    path = cache / TINY.key() / "measurements" / "thing.pt"
    flip_byte(path)
    with pytest.warns(CacheWarning, match="thing.pt: checksum mismatch"):
        again = analysis.measure(TINY, "thing", compute, cache)
    assert len(calls) == 2 and torch.equal(again["value"], first["value"])
    moved = [p.name for p in (cache / "_quarantine" / TINY.key() / "measurements").iterdir()]
    assert sorted(name.split("-", 1)[1] for name in moved) == ["thing.pt", "thing.pt.why"]


def test_a_bad_entry_takes_its_measurements_to_quarantine(cache):
    from largebatch import analysis

    analysis.measure(TINY, "thing", lambda: 1.0, cache)
    truncate(cache / TINY.key() / "record.json")
    with pytest.warns(CacheWarning):
        experiments.run(TINY, cache, progress=False)
    assert "measurements" in quarantined(cache)
    assert not (cache / TINY.key() / "measurements").exists()
