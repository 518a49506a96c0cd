"""Claims registry, verdict files and the reproduction summary built from them."""

import json
import re
from pathlib import Path

import pytest

from largebatch import analysis, claims, reproduce

PAPER_IDS = {"A1", "A2", "A3", "A4", "A5", "B1", "B2", "B3", "B4", "C1", "C2", "C3", "D1", "D2", "E1"}
PAPERS = Path("/work/shared/PAPERS.md")
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_registry_holds_every_claim_of_the_papers_jastrzebski_and_the_books_own():
    assert set(claims.CLAIMS) == PAPER_IDS | {"J1", "D3"}
    assert "Jastrzebski" in claims.CLAIMS["J1"].paper
    for item in claims.CLAIMS.values():
        assert item.statement and item.measurement and item.criterion and item.paper
        assert re.fullmatch(r"\d\d_[a-z_]+", item.chapter) and item.figure.startswith("fig-")
        assert item.plain and len(item.plain) <= 90 and item.book_setting and item.paper_setting


@pytest.mark.skipif(not PAPERS.exists(), reason="PAPERS.md is not on this machine")
def test_registry_ids_match_papers_md():
    assert set(re.findall(r"^- ([A-E]\d)\. ", PAPERS.read_text(), flags=re.M)) == PAPER_IDS


def test_every_figure_label_exists_in_its_chapter():
    for item in claims.CLAIMS.values():
        source = NOTEBOOKS / f"{item.chapter}.py"
        assert f"({item.figure})=" in source.read_text(), (item.id, item.figure)


def _verdicts():
    a1 = [analysis.Verdict("A1", "reproduced", "rho", "rho = 0.9", "mlp", 0.9),
          analysis.Verdict("A1", analysis.NOT_REPRODUCED, "rho", "rho = 0.1", "cnn", 0.1, excluded=2)]
    a5 = analysis.Verdict("A5", "inconclusive", "ratio", "no run")
    return [*a1, analysis.combine_verdicts("A1", a1), a5]


def test_verdict_file_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("LARGEBATCH_VERDICTS_DIR", str(tmp_path))
    monkeypatch.setenv("LARGEBATCH_PROFILE", "smoke")
    table = analysis.record_verdicts("02_sharp_minima", _verdicts(), seeds=[0, 1, 2])
    assert "row_heading" not in table.to_html()  # no pandas index shown
    content = claims.read_verdicts()["02_sharp_minima"]
    assert content["profile"] == "smoke" and content["seeds"] == [0, 1, 2]
    rows = content["verdicts"]
    assert [r["claim"] for r in rows] == ["A1", "A1", "A1", "A5"]
    assert rows[1]["excluded"] == 2 and rows[1]["value"] == 0.1
    assert rows[2]["outcome"] == "partly reproduced" and rows[2]["value"] is None  # NaN -> null
    assert rows[0]["figure"] == "02_sharp_minima.html#fig-a1"
    assert analysis.Verdict.from_row(rows[1]) == _verdicts()[1]
    assert rows[1]["stability"]["status"] == analysis.UNTESTED  # given as values, not recomputed


def test_record_verdicts_rejects_claims_of_other_chapters_and_missing_overall(tmp_path):
    with pytest.raises(ValueError, match="belongs to chapter 04_adversarial"):
        analysis.record_verdicts("02_sharp_minima", [analysis.Verdict("A2", "reproduced", "c", "e")],
                                 [0], tmp_path)
    with pytest.raises(ValueError, match="no overall verdict"):
        analysis.record_verdicts("02_sharp_minima", _verdicts()[:2], [0], tmp_path)
    assert not list(tmp_path.iterdir())


def test_profile_defaults_to_custom_and_too_few_seeds_give_no_verdict(tmp_path, monkeypatch):
    monkeypatch.delenv("LARGEBATCH_PROFILE", raising=False)
    analysis.record_verdicts("02_sharp_minima", _verdicts(), [0, 1], tmp_path)
    content = json.loads((tmp_path / "02_sharp_minima.verdicts.json").read_text())
    assert content["profile"] == "custom"
    assert {r["outcome"] for r in content["verdicts"]} == {"inconclusive"}
    assert content["verdicts"][0]["evidence"] == "rho = 0.9 (only 2 seeds; a verdict needs 3)"


def test_reading_verdicts_rejects_unknown_claims_and_misplaced_ones(tmp_path):
    row = {"claim": "Z9", "setting": "", "outcome": "reproduced"}
    path = tmp_path / "02_sharp_minima.verdicts.json"
    path.write_text(json.dumps({"chapter": "02_sharp_minima", "profile": "smoke", "seeds": [0],
                                "verdicts": [row]}))
    with pytest.raises(ValueError, match="unknown claim 'Z9'"):
        claims.read_verdicts(tmp_path)
    path.write_text(json.dumps({"chapter": "02_sharp_minima", "profile": "smoke", "seeds": [0],
                                "verdicts": [{**row, "claim": "B1"}]}))
    with pytest.raises(ValueError, match="belongs to chapter 03_train_longer"):
        claims.read_verdicts(tmp_path)


def test_only_the_summary_is_stale_when_a_verdict_file_changes(tmp_path):
    chapter, summary = tmp_path / "02_x.ipynb", tmp_path / "06_summary.ipynb"
    chapter.write_text("chapter")
    summary.write_text("table = claims.summary_table(verdicts_dir or None)")
    before = {p: reproduce._stamp(p, {}, tmp_path) for p in (chapter, summary)}
    analysis.record_verdicts("02_sharp_minima", _verdicts(), [0, 1, 2], tmp_path)
    assert reproduce._stamp(chapter, {}, tmp_path) == before[chapter]
    assert reproduce._stamp(summary, {}, tmp_path) != before[summary]
