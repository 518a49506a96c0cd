"""tools/measure_page.py: a page that scrolls sideways or has a tall cell fails; skipped without Chromium."""

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
_spec = importlib.util.spec_from_file_location("measure_page", ROOT / "tools" / "measure_page.py")
measure_page = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(measure_page)

needs_chromium = pytest.mark.skipif(measure_page.check_book.find_chromium() is None,
                                    reason="no Chromium on the PATH (apt-get install chromium)")
PAGE = """<!DOCTYPE html><html><head><link rel="icon" href="data:,">
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="margin: 0; font: 16px/20px sans-serif"><table><tr><td>{cell}</td></tr></table>{wide}</body></html>"""


def test_problems_name_sideways_scroll_and_tall_cells():
    probe = {"window": 390, "document": 500, "tallest": [{"lines": 8.0, "text": "long"}, {"lines": 6.2, "text": "ok"}]}
    found = measure_page.problems(probe, max_lines=6)
    assert found == ["the page scrolls sideways: 500 px wide in a 390 px window", "a cell 8.0 lines tall: 'long'"]


@needs_chromium
def test_a_narrow_page_passes_and_a_wide_page_with_a_tall_cell_fails(tmp_path, capsys):
    (tmp_path / "good.html").write_text(PAGE.format(cell="short", wide=""))
    (tmp_path / "bad.html").write_text(PAGE.format(cell="<br>".join(["line"] * 9),
                                                   wide='<div style="width: 900px">wide</div>'))
    shots = tmp_path / "shots"
    assert measure_page.main([str(tmp_path), "--page", "good.html", "--screenshots", str(shots)]) == 0
    assert measure_page.main([str(tmp_path), "--page", "bad.html", "--widths", "390",
                              "--screenshots", str(shots)]) == 1
    out = capsys.readouterr().out
    assert "scrolls sideways: 900 px wide in a 390 px window" in out
    assert float(re.search(r"a cell (\d+\.\d) lines tall", out).group(1)) > 8
    assert (shots / "bad_390.png").exists() and (shots / "good_1280.png").exists()
