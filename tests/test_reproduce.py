"""largebatch.reproduce on tiny fake notebooks: parallel jobs, seeds, manifest, failures."""

import json
import os
from pathlib import Path

import nbformat
import pytest

from largebatch import provenance, reproduce

REPORT = """
import json, os, time
from pathlib import Path
folder = Path(os.environ["LARGEBATCH_VERDICTS_DIR"])
seen = sorted(p.stem for p in folder.glob("*.done"))
time.sleep(SLEEP)
report = {"env": {k: v for k, v in os.environ.items() if k.startswith("LARGEBATCH_")}, "seen": seen, **VALUES}
(folder / f"{NAME}.json").write_text(json.dumps(report))
(folder / f"{NAME}.done").write_text("")
"""


def write_notebook(folder: Path, name: str, parameters: str, values: str, sleep: float = 0.0,
                   fail: bool = False) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    body = REPORT.replace("SLEEP", repr(sleep)).replace("NAME", repr(name)).replace("VALUES", values)
    notebook.cells = [cell, nbformat.v4.new_code_cell(body)]
    if fail:
        notebook.cells.append(nbformat.v4.new_code_cell(f"raise RuntimeError('{name} broke on purpose')"))
    nbformat.write(notebook, folder / f"{name}.ipynb")


@pytest.fixture()
def project(tmp_path):
    """A project folder with four notebooks (one failing, one summary) and a profile."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    write_notebook(notebooks, "01_single", "seed: int = 0  # seed", '{"seed": seed}', sleep=1.0)
    write_notebook(notebooks, "02_many", "seeds: list = [0]  # seeds\nepochs: int = 5  # epochs",
                   '{"seeds": seeds, "epochs": epochs}')
    write_notebook(notebooks, "03_broken", "epochs: int = 5  # epochs", '{"epochs": epochs}', fail=True)
    write_notebook(notebooks, "06_summary", "", "{}")
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "smoke.yaml").write_text("all:\n  epochs: 2\n02_many:\n  seeds: [7]\n")
    return tmp_path


def report(folder: Path, name: str) -> dict:
    return json.loads((folder / f"{name}.json").read_text())


@pytest.mark.slow
def test_parallel_run_names_failures_writes_manifest_and_runs_summary_last(project, capsys, monkeypatch):
    out = project / "out"
    monkeypatch.chdir(project)
    monkeypatch.setenv("LARGEBATCH_CACHE_DIR", "relcache")  # relative to where the command runs, not the kernels
    status = reproduce.main(["--root", str(project), "--profile", "smoke", "--out", str(out),
                             "--jobs", "2"])
    captured = capsys.readouterr()
    assert status == 1
    assert "failed notebooks (1): 03_broken" in captured.err
    assert "broke on purpose" in captured.err
    for name in ("01_single", "02_many", "06_summary"):  # the others still ran
        assert (out / f"{name}.ipynb").exists()
    # the summary started after every other notebook had finished
    assert report(out, "06_summary")["seen"] == ["01_single", "02_many", "03_broken"]
    env = report(out, "01_single")["env"]
    assert env["LARGEBATCH_PROFILE"] == "smoke"
    assert Path(env["LARGEBATCH_VERDICTS_DIR"]) == out.resolve()
    assert env["LARGEBATCH_CACHE_DIR"] == str(project / "relcache")
    assert Path(env["LARGEBATCH_DATA"]).is_absolute()
    assert report(out, "02_many")["seeds"] == [7] and report(out, "02_many")["epochs"] == 2
    cells = nbformat.read(out / "02_many.ipynb", as_version=4).cells  # the book shows the injected cell folded
    injected = [c for c in cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "hide-input" in injected[0].metadata["tags"] and "seeds = [7]" in injected[0].source
    manifest = json.loads((out / reproduce.MANIFEST_FILE).read_text())
    entries = manifest["notebooks"]
    assert set(entries) == {"01_single", "02_many", "03_broken", "06_summary"}
    assert entries["03_broken"]["status"] == "failed"
    assert "broke on purpose" in entries["03_broken"]["error_tail"]
    assert entries["02_many"]["status"] == "executed" and entries["02_many"]["error_tail"] == ""
    assert entries["02_many"]["parameters"] == {"epochs": 2, "seeds": [7]}
    assert entries["02_many"]["notebook"] == "02_many.ipynb"
    assert entries["01_single"]["seconds"] >= 1.0  # it sleeps a second
    assert entries["02_many"]["library_version"] and "git_commit" in entries["02_many"]
    assert entries["02_many"]["seeds"] == [7] and entries["01_single"]["seeds"] == [0]  # its default
    assert entries["03_broken"]["seeds"] is None  # it declares no seed
    assert entries["02_many"]["provenance"] == manifest["provenance"] == provenance.environment()
    # the time table names every notebook with its status
    table = captured.out[captured.out.index("notebook  "):]
    for name, status in (("01_single", "executed"), ("03_broken", "failed"), ("06_summary", "executed")):
        assert any(line.split()[:2] == [name, status] for line in table.splitlines())

    # a second run re-executes only the failed notebook; the manifest keeps the others' last times
    status = reproduce.main(["--root", str(project), "--profile", "smoke", "--out", str(out),
                             "--only", "01", "03"])
    assert status == 1
    entries = json.loads((out / reproduce.MANIFEST_FILE).read_text())["notebooks"]
    assert entries["01_single"]["status"] == "cached" and entries["01_single"]["last_execution_seconds"] >= 1.0
    assert entries["03_broken"]["status"] == "failed"


@pytest.mark.slow
def test_seeds_go_to_seeds_parameter_or_one_run_per_seed(project):
    out = project / "out"
    status = reproduce.main(["--root", str(project), "--profile", "smoke", "--out", str(out),
                             "--only", "01", "02", "--seeds", "3", "4"])
    assert status == 0
    assert report(out, "02_many")["seeds"] == [3, 4]  # --seeds overrides the profile's list
    assert report(out, "01_single")["seed"] == 3
    extra = out / "seed-4"
    assert report(extra, "01_single")["seed"] == 4
    assert Path(report(extra, "01_single")["env"]["LARGEBATCH_VERDICTS_DIR"]) == extra.resolve()
    assert not (extra / "02_many.ipynb").exists()
    entries = json.loads((out / reproduce.MANIFEST_FILE).read_text())["notebooks"]
    assert entries["01_single[seed=4]"]["notebook"] == "seed-4/01_single.ipynb"
    assert entries["01_single[seed=4]"]["parameters"] == {"seed": 4}


@pytest.mark.slow
def test_the_profiles_start_order_runs_first_and_the_rest_in_book_order(project):
    (project / "profiles" / "smoke.yaml").write_text("start_order: [03_broken, 02_many]\n")
    out = project / "out"
    assert reproduce.main(["--root", str(project), "--profile", "smoke", "--out", str(out)]) == 1
    assert report(out, "02_many")["seen"] == ["03_broken"]
    assert report(out, "01_single")["seen"] == ["02_many", "03_broken"]
    assert report(out, "06_summary")["seen"] == ["01_single", "02_many", "03_broken"]  # the summary stays last
    entries = json.loads((out / reproduce.MANIFEST_FILE).read_text())["notebooks"]
    assert list(entries) == ["01_single", "02_many", "03_broken", "06_summary"]  # reported in book order


@pytest.mark.parametrize("order, message", [("[02_many, 02_many]", "distinct notebook names"),
                                            ("02_many", "must be a list"),
                                            ("[02_mani]", "'02_mani' (did you mean '02_many'?), which is not a notebook")])
def test_a_bad_start_order_is_rejected_before_any_execution(project, capsys, order, message):
    (project / "profiles" / "smoke.yaml").write_text(f"start_order: {order}\n")
    with pytest.raises(SystemExit):
        reproduce.main(["--root", str(project), "--profile", "smoke", "--out", str(project / "out")])
    assert message in capsys.readouterr().err
    assert not (project / "out").exists()


def test_bad_options_are_rejected_before_any_execution(project, capsys):
    notebooks = reproduce.chapter_notebooks(project)
    assert list(notebooks) == ["01_single", "02_many", "03_broken", "06_summary"]
    for argv, message in ((["--jobs", "0"], "must be a positive integer"),
                          (["--seeds", "1", "-p", "seed", "2"], "either with --seeds or with -p")):
        with pytest.raises(SystemExit):
            reproduce.main(["--root", str(project), "--profile", "smoke", *argv])
        assert message in capsys.readouterr().err
    with pytest.raises(ValueError, match="jobs must be a positive integer"):
        reproduce.run_tasks([], jobs=0)


def test_environment_is_restored(monkeypatch):
    monkeypatch.setenv("LARGEBATCH_PROFILE", "before")
    monkeypatch.delenv("LARGEBATCH_VERDICTS_DIR", raising=False)
    with reproduce._environment({"LARGEBATCH_PROFILE": "inside", "LARGEBATCH_VERDICTS_DIR": "/x"}):
        assert os.environ["LARGEBATCH_PROFILE"] == "inside" and os.environ["LARGEBATCH_VERDICTS_DIR"] == "/x"
    assert os.environ["LARGEBATCH_PROFILE"] == "before" and "LARGEBATCH_VERDICTS_DIR" not in os.environ


def test_the_library_fingerprint_covers_subpackages(tmp_path, monkeypatch):
    """A chapter is executed again when its study module (largebatch/studies/) changes."""
    (tmp_path / "studies").mkdir()
    (tmp_path / "reproduce.py").write_text("")
    study = tmp_path / "studies" / "chapter.py"
    study.write_text("A = 1\n")
    monkeypatch.setattr(reproduce, "__file__", str(tmp_path / "reproduce.py"))
    before = reproduce._library_fingerprint()
    study.write_text("A = 2\n")
    assert reproduce._library_fingerprint() != before
