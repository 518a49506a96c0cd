"""Ctrl-C with real processes and signals: parallel sweeps and chapter executions stop.

Each test starts a command line in a session of its own and sends SIGINT to its process
group, as a terminal does on Ctrl-C, once a marker file shows the work is under way (no
sleeps that assume a machine's speed: every wait polls with a generous deadline). The
command must exit with status 130, start nothing that was queued, leave no process
behind (workers, kernels) and keep what finished. The pool under both commands
(``largebatch.process_pool``) is also tested on its own.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from largebatch import experiments, run_cache
from largebatch.config import RunConfig
from largebatch.process_pool import StoppablePool

DEADLINE_S = 300.0
LIB = str(Path(experiments.__file__).parents[1])


def start(argv: list[str], cwd: Path, **env: str) -> subprocess.Popen:
    """``python -m <argv>`` in a new session (its own process group), as from a terminal."""
    environment = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([LIB, os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", *argv], cwd=cwd, env=environment, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, what: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the command ended before {what}: {process.communicate()}")
        assert time.monotonic() < deadline, f"no {what} after {DEADLINE_S} s"
        time.sleep(0.05)


def ctrl_c(process: subprocess.Popen) -> tuple[str, str]:
    """SIGINT to the whole process group; the command's output once it has exited."""
    os.killpg(process.pid, signal.SIGINT)
    return process.communicate(timeout=DEADLINE_S)


def running(pid: int, group: bool = False) -> bool:
    """Whether process ``pid`` (or any process of group ``pid``) runs. A zombie (dead, not yet
    reaped: containers whose PID 1 does not reap orphans keep them) does not count."""
    processes = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()  # after "pid (comm)": state, ppid, pgrp
        except OSError:  # it ended meanwhile
            continue
        processes.append((int(stat.parent.name), fields[0], int(fields[2])))
    return any(state != "Z" and (group_id if group else process) == pid for process, state, group_id in processes)


def wait_gone(pid: int, what: str, group: bool = False) -> None:
    deadline = time.monotonic() + 60
    while running(pid, group):
        assert time.monotonic() < deadline, f"{what} (pid {pid}) still runs 60 s after the command exited"
        time.sleep(0.05)


def _block(marker: str) -> None:
    """A call that writes its worker's pid to ``marker`` and then waits ten minutes."""
    Path(marker).write_text(str(os.getpid()))
    time.sleep(600)


def test_a_pool_left_by_an_exception_ends_its_running_call_and_starts_no_queued_one(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with StoppablePool(1) as pool:
            pool.submit(_block, str(first))
            pool.submit(_block, str(second))
            deadline = time.monotonic() + DEADLINE_S
            while not first.exists():
                assert time.monotonic() < deadline, "the first call never started"
                time.sleep(0.05)
            raise KeyboardInterrupt
    assert time.monotonic() - started < 500, "the pool waited for its running call"
    assert not running(int(first.read_text()))
    assert not second.exists(), "a queued call started after the pool was stopped"


@pytest.mark.parametrize("jobs", [2, 1])
def test_ctrl_c_stops_a_sweep_and_keeps_the_finished_runs(tmp_path, jobs):
    cache = tmp_path / "cache"
    configs = [RunConfig(num_samples=200, model="mnist1d_mlp", model_options={"width": 8}, batch_size=16,
                         epochs=30, lr=0.05, seed=seed) for seed in range(12)]
    (tmp_path / "sweep.json").write_text(json.dumps([c.to_dict() for c in configs]))
    process = start(["largebatch.experiments", "sweep", "sweep.json", "--jobs", str(jobs)], tmp_path,
                    LARGEBATCH_CACHE_DIR=str(cache))
    wait_for(lambda: any(cache.glob("*/record.json")), "finished run", process)
    out, err = ctrl_c(process)
    assert process.returncode == 130, err
    assert "interrupted:" in err and "of 12 runs of sweep.json are finished" in err
    wait_gone(process.pid, "a worker of the sweep", group=True)
    finished = [c for c in configs if experiments.load_record(c, cache) is not None]
    assert 1 <= len(finished) < len(configs) - 2, "the queued runs were trained after Ctrl-C"
    assert not list(cache.glob("*/run.lock")), "a stopped run kept its lock file"
    report = run_cache.verify(cache)
    assert report.problems == [] and report.finished == len(finished)


def write_notebook(folder: Path, name: str, body: str) -> None:
    """A notebook that writes ``<name>.started`` (its kernel's pid) into the verdicts folder, then runs ``body``."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    parameters = nbformat.v4.new_code_cell("seed: int = 0  # seed")
    parameters.metadata["tags"] = ["parameters"]
    marker = ("import os, time\nfrom pathlib import Path\n"
              f"Path(os.environ['LARGEBATCH_VERDICTS_DIR'], '{name}.started').write_text(str(os.getpid()))")
    notebook.cells = [parameters, nbformat.v4.new_code_cell(marker), nbformat.v4.new_code_cell(body)]
    nbformat.write(notebook, folder / f"{name}.ipynb")


SLOW = "deadline = time.time() + 600\nwhile time.time() < deadline:\n    time.sleep(0.05)"


def project(root: Path, names: dict[str, str]) -> Path:
    (root / "notebooks").mkdir(parents=True)
    for name, body in names.items():
        write_notebook(root / "notebooks", name, body)
    (root / "profiles").mkdir()
    (root / "profiles" / "smoke.yaml").write_text("all: {}\n")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("jobs, running", [(2, ["02_slow", "03_slow"]), (1, ["02_slow"])])
def test_ctrl_c_stops_reproduce_writes_the_manifest_and_leaves_no_kernel(tmp_path, jobs, running):
    names = {"01_fast": "pass", "02_slow": SLOW, "03_slow": SLOW, "04_queued": "pass", "06_summary": "pass"}
    root = project(tmp_path / "project", names)
    out = tmp_path / "out"
    process = start(["largebatch.reproduce", "--root", str(root), "--profile", "smoke", "--out", str(out),
                     "--jobs", str(jobs)], tmp_path, LARGEBATCH_CACHE_DIR=str(tmp_path / "cache"))
    wait_for(lambda: all((out / f"{name}.started").exists() for name in running), "running notebooks", process)
    kernels = [int((out / f"{name}.started").read_text()) for name in running]
    stdout, stderr = ctrl_c(process)
    assert process.returncode == 130, stderr
    assert "interrupted:" in stderr
    for pid in kernels:
        wait_gone(pid, "the kernel of a stopped notebook")
    wait_gone(process.pid, "a worker of reproduce", group=True)
    entries = json.loads((out / "manifest.json").read_text())["notebooks"]
    statuses = {name: entry["status"] for name, entry in entries.items()}
    assert statuses["01_fast"] == "executed"
    assert all(statuses[name] == "interrupted" for name in names if name != "01_fast"), statuses
    started = {path.stem for path in out.glob("*.started")}
    assert started == {"01_fast", *running}, "a queued notebook started after Ctrl-C"
    assert "01_fast" in stdout and "interrupted" in stdout  # the time table
