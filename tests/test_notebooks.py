"""Chapter notebooks: paired and clean, documented parameters, early failures, smoke run, -W book build."""

import json
import re
from pathlib import Path

import jupytext
import papermill
import pytest

from largebatch import claims, reproduce
from largebatch.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "notebooks").glob("*.py"))
PARAMETER_LINE = re.compile(r"^(\w+): [\w\[\], |]+ = .+  # \S.*$")


def cells(notebook):
    return [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", []))) for c in notebook.cells]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_pair_is_in_sync_and_committed_without_outputs(source):
    paired = source.with_suffix(".ipynb")
    assert paired.exists(), f"{paired.name} missing: run jupytext --sync {source.name}"
    assert cells(jupytext.read(source)) == cells(jupytext.read(paired)), \
        f"{source.name} and {paired.name} differ: run jupytext --sync {source.name}"
    raw = json.loads(paired.read_text())
    for cell in raw["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"{paired.name} carries outputs"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_every_parameter_has_a_type_hint_and_a_comment(source):
    notebook = jupytext.read(source)
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged 'parameters'"
    lines = [line for line in tagged[0].source.splitlines() if line.strip()]
    for line in lines:
        assert PARAMETER_LINE.match(line), f"parameter line without type hint or comment: {line!r}"
    documented = papermill.inspect_notebook(str(source.with_suffix(".ipynb")))
    assert len(documented) == len(lines)
    for name, info in documented.items():
        assert info["help"], f"{name} has no help text"
        assert info["inferred_type_name"] != "None", f"{name} has no type hint"


def test_every_notebook_has_smoke_parameters_that_it_declares():
    profiles = {name: reproduce.load_profile(ROOT, name) for name in reproduce.PROFILES}
    notebooks = reproduce.chapter_notebooks(ROOT)
    for profile in profiles.values():
        for section in set(profile) - {"all"}:
            assert section in notebooks, f"profile section {section} names no notebook"
            assert set(profile[section]) <= reproduce.declared_parameters(notebooks[section])


def test_profile_merging_and_overrides():
    profile = {"all": {"epochs": 2, "lr": 0.1, "unused": 1}, "nb": {"lr": 0.2}}
    merged = reproduce.parameters_for("nb", {"epochs", "lr", "seed"}, profile, {"seed": 3, "x": 1})
    assert merged == {"epochs": 2, "lr": 0.2, "seed": 3}
    with pytest.raises(ConfigError, match="does not declare"):
        reproduce.parameters_for("nb", {"epochs"}, profile, {})


def test_unknown_override_or_notebook_is_rejected(capsys):
    with pytest.raises(SystemExit):
        reproduce.main(["--profile", "smoke", "--only", "00_quickstart", "-p", "no_such_parameter", "1"])
    assert "no selected notebook declares ['no_such_parameter']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        reproduce.main(["--profile", "smoke", "--only", "zz_missing"])


@pytest.mark.slow
@pytest.mark.parametrize("parameters, message", [
    ({"large_batch": -5}, "batch_size must be a positive integer, got -5"),
    ({"epochs": "ten"}, "parameter epochs must be of type int, got 'ten'"),
    ({"model": "vgg99"}, "model must be one of"),
    ({"large_batch": 100000}, "batch_size must be <= the training set size"),
])
def test_bad_parameters_fail_in_the_first_cells(tmp_path, monkeypatch, parameters, message):
    monkeypatch.setenv("LARGEBATCH_CACHE_DIR", str(tmp_path / "cache"))
    source = ROOT / "notebooks" / "00_quickstart.ipynb"
    with pytest.raises(papermill.PapermillExecutionError) as failure:
        papermill.execute_notebook(str(source), str(tmp_path / "out.ipynb"), parameters=parameters,
                                   cwd=str(source.parent), progress_bar=False, kernel_name="python3")
    assert message in str(failure.value)
    assert failure.value.exec_count <= 4  # Colab install cell, parameters, injected parameters, first check
    assert not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_smoke_profile_executes_every_notebook_and_the_book_builds_with_W(smoke_book):
    status, folder = smoke_book
    assert status == 0
    html = folder / "book" / "_build" / "html"
    assert (html / "index.html").exists()
    for name in reproduce.chapter_notebooks(ROOT):
        page = html / "notebooks" / f"{name}.html"
        assert page.exists(), f"{name} missing from the book"
        text = page.read_text()
        if not name.endswith("summary"):  # the summary is a table
            assert "<img" in text, f"{name} shows no figure"
        assert "Traceback" not in text and "output traceback" not in text, f"{name} shows an error"


@pytest.mark.slow
def test_summary_links_lead_to_figure_anchors_of_the_chapters(smoke_book):
    status, folder = smoke_book
    pages = folder / "book" / "_build" / "html" / "notebooks"
    summary = (pages / "06_summary.html").read_text()
    links = re.findall(r'href="(\d\d_\w+)\.html#(fig-[\w-]+)"', summary)
    assert {anchor for _, anchor in links} == {c.figure for c in claims.CLAIMS.values()}
    for chapter, anchor in links:
        if chapter in reproduce.chapter_notebooks(ROOT):
            assert f'id="{anchor}"' in (pages / f"{chapter}.html").read_text(), (chapter, anchor)
    missing = {c.chapter for c in claims.CLAIMS.values()} - set(reproduce.chapter_notebooks(ROOT))
    assert ("– not run" in summary) == bool(missing)  # a chapter not in the book: "not run"


@pytest.mark.slow
def test_a_rebuild_with_nothing_changed_reuses_everything(smoke_book, capsys):
    status, folder = smoke_book
    assert status == 0
    capsys.readouterr()
    assert reproduce.main(["--profile", "smoke", "--out", str(folder / "executed")]) == 0
    out = capsys.readouterr().out
    assert "executed in" not in out and out.count(": cached") == len(reproduce.chapter_notebooks(ROOT))
