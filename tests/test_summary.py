"""The reproduction summary built from verdict files (largebatch.summary)."""

import re
from pathlib import Path

import jupytext
import pandas as pd
import papermill

from largebatch import analysis, claims, provenance, summary

SEEDS = [0, 1, 2, 3, 4]


def _chapter_02():
    a1 = [analysis.Verdict("A1", "reproduced", "rho", "rho = 0.9", "mlp", 0.9),
          analysis.Verdict("A1", analysis.NOT_REPRODUCED, "rho", "rho = 0.1", "cnn", 0.1, excluded=2)]
    a5 = analysis.Verdict("A5", "inconclusive", "ratio", "no run")
    return [*a1, analysis.combine_verdicts("A1", a1), a5]


def _accuracies(values, seeds):
    return pd.Series(values, index=SEEDS)[seeds]


def _b3_b4(seeds):
    """B3: ghost batch norm wins clearly at every seed but seed 4, where it collapsed; B4: robust."""
    reference = _accuracies([0.70, 0.71, 0.72, 0.71, 0.71], seeds)
    return [analysis.improvement_verdict("B3", _accuracies([0.80, 0.81, 0.82, 0.81, 0.40], seeds), reference),
            analysis.improvement_verdict("B4", _accuracies([0.80, 0.81, 0.82, 0.815, 0.805], seeds), reference)]


def _write(folder):
    analysis.record_verdicts("02_sharp_minima", _chapter_02(), [0, 1, 2], folder)
    analysis.record_verdicts("03_train_longer", _b3_b4, SEEDS, folder)


def test_one_row_per_claim_with_number_verdict_and_stability(tmp_path):
    _write(tmp_path)
    rows = summary.claim_rows(tmp_path).set_index("claim")
    assert list(rows.index) == list(claims.CLAIMS)  # every claim, none silently missing
    assert rows.loc["A1", "verdict"] == "partly reproduced"
    assert (rows.loc["A1", "number"], rows.loc["A1", "measured"]) == ("1 of 2", "parts reproduced")
    assert rows.loc["A1", "stability"] == analysis.UNTESTED  # three seeds: no omission tried
    assert rows.loc["B3", "verdict"] == "inconclusive" and rows.loc["B3", "fragile"]
    assert rows.loc["B3", "stability"] == "fragile (without seed 4)"
    assert rows.loc["B3", "number"].startswith("1.8 ± ") and "points" in rows.loc["B3", "measured"]
    assert rows.loc["B4", "stability"] == analysis.STABLE
    assert rows.loc["B2", "verdict"] == claims.NOT_RUN  # chapter ran, claim not recorded
    for claim_id in ("A2", "C1", "D1", "D2"):  # chapters without a file
        assert rows.loc[claim_id, "verdict"] == claims.NOT_RUN and rows.loc[claim_id, "stability"] == ""
    assert rows.loc["D1", "link"] == "05_adaptive_batch.html#fig-d1"
    assert rows.loc["A5", "seeds"] == 3 and rows.loc["B3", "seeds"] == 5
    assert rows.loc["B3", "book_setting"] == claims.CLAIMS["B3"].book_setting


def test_one_sentence_per_paper_from_the_verdicts(tmp_path):
    _write(tmp_path)
    sentences = dict(summary.paper_sentences(summary.claim_rows(tmp_path)))
    assert set(sentences) == {c.paper for c in claims.CLAIMS.values()}
    assert sentences[claims.CLAIMS["B1"].paper] == (
        "Of its 4 claims, B4 holds, B3 stays undecided (within the seed noise), and B1 and B2 were "
        "not run; the verdict on B3 is fragile (leaving out one seed changes it).")
    assert sentences[claims.CLAIMS["E1"].paper] == "E1 was not run."
    assert "A1 holds in part" in sentences[claims.CLAIMS["A1"].paper]


def test_per_setting_verdicts_and_provenance(tmp_path):
    _write(tmp_path)
    settings = summary.setting_rows(tmp_path)
    assert list(settings["setting"]) == ["mlp", "cnn"] and list(settings["number"]) == ["0.9", "0.1"]
    machine = summary.provenance_rows(tmp_path).set_index("chapter")
    assert machine.loc["03_train_longer", "seeds"] == "0-4" and machine.loc["02_sharp_minima", "seeds"] == "0-2"
    assert "cores)" in machine.loc["03_train_longer", "machine"] and machine.loc["03_train_longer", "torch"]
    assert summary.seed_ranges([7, 0, 1, 2, 5, 6, 9]) == "0-2, 5-7, 9"


def test_numbers_carry_their_error_to_matching_precision():
    assert summary.with_error(0.556, 1.53) == "0.6 ± 1.5"
    assert summary.with_error(2.144, 0.383) == "2.14 ± 0.38"
    assert summary.with_error(-40.0, 12.0) == "-40 ± 12"
    assert summary.with_error(0.91234, None) == "0.912" and summary.with_error(None, 1.0) == ""


def test_html_has_short_cells_symbols_colours_links_and_details(tmp_path):
    _write(tmp_path)
    rows = summary.claim_rows(tmp_path)
    table = summary.claims_html(rows)
    assert table.count("<tr>") == len(claims.CLAIMS) + 1
    assert "✔ reproduced" in table and "? inconclusive" in table and "– not run" in table
    assert analysis.OUTCOME_COLOURS["partly reproduced"] in table
    assert "fragile (without seed 4)" in table and "@media (max-width" in table  # cards on a phone
    links = re.findall(r'href="(\d\d_\w+)\.html#(fig-[\w-]+)"', table)
    assert {anchor for _, anchor in links} == {c.figure for c in claims.CLAIMS.values()}
    assert ";" not in "".join(re.findall(r'data-label="key number">([^<]*)<', table))  # no lists in a cell
    details = summary.settings_html(summary.setting_rows(tmp_path))
    assert details.startswith("<details><summary>Per-setting verdicts (2)</summary>")
    assert "<details>" in summary.criteria_html() and "B3" in summary.papers_html(rows)
    assert provenance.cpu_model() in summary.provenance_html(summary.provenance_rows(tmp_path))
    assert "No chapter" in summary.provenance_html(summary.provenance_rows(tmp_path / "empty"))


SUMMARY = Path(__file__).resolve().parents[1] / "notebooks" / "06_summary.ipynb"
HIDDEN = {"remove-input", "remove-cell", "hide-input"}


def test_the_summary_notebook_shows_generated_parts_with_little_visible_code(tmp_path):
    notebook = jupytext.read(SUMMARY)
    visible = [c for c in notebook.cells if c.cell_type == "code" and not HIDDEN & set(c.metadata.get("tags", []))]
    assert sum(len(c.source.splitlines()) for c in visible) <= 40
    (parameters,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert "hide-input" in parameters.metadata["tags"]  # rendered collapsed
    assert set(papermill.inspect_notebook(str(SUMMARY))) == {"verdicts_dir"}
    _write(tmp_path)
    executed = papermill.execute_notebook(str(SUMMARY), str(tmp_path / "out.ipynb"), cwd=str(SUMMARY.parent),
                                          parameters={"verdicts_dir": str(tmp_path)}, progress_bar=False,
                                          kernel_name="python3")
    shown = "".join(o.get("data", {}).get("text/html", "") for c in executed.cells for o in c.get("outputs", []))
    assert "Of its 4 claims, B4 holds" in shown and 'class="lb-summary"' in shown
    assert "<details><summary>Per-setting verdicts (2)" in shown and "fragile (without seed 4)" in shown
    assert provenance.cpu_model() in shown


def test_two_builds_compared_claim_by_claim(tmp_path, capsys):
    first, second = tmp_path / "a", tmp_path / "b"
    _write(first)
    analysis.record_verdicts("02_sharp_minima", _chapter_02(), [0, 1, 2], second)
    analysis.record_verdicts("03_train_longer", lambda seeds: _b3_b4(seeds)[:1] + [  # B4 no longer wins
        analysis.improvement_verdict("B4", _accuracies([0.70, 0.72, 0.71, 0.70, 0.72], seeds),
                                     _accuracies([0.70, 0.71, 0.72, 0.71, 0.71], seeds))], SEEDS, second)
    table = summary.compare(first, second).set_index("claim")
    assert list(table.index) == list(claims.CLAIMS)
    assert list(table.index[table["changed"]]) == ["B4"]
    assert table.loc["B4", "verdict_a"] == "reproduced" and table.loc["B4", "verdict_b"] == "inconclusive"
    assert table.loc["B3", "stability_a"] == table.loc["B3", "stability_b"] == "fragile (without seed 4)"
    assert summary.main([str(first), str(second)]) == 0
    assert capsys.readouterr().out.endswith(f"1 of {len(claims.CLAIMS)} claim verdicts differ: B4\n")


def test_comparing_a_folder_without_verdict_files_is_an_error(tmp_path, capsys):
    _write(tmp_path / "a")
    (tmp_path / "empty").mkdir()
    try:
        summary.main([str(tmp_path / "a"), str(tmp_path / "empty")])
    except SystemExit as stop:
        assert stop.code == 2
    else:
        raise AssertionError("no error for a folder without verdict files")
    assert "holds no *.verdicts.json file" in capsys.readouterr().err
