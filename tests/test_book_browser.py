"""The built book in a real browser (tools/check_book.py, headless Chromium); skipped without Chromium."""

import importlib.util
import io
import re
import sys
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check_book", ROOT / "tools" / "check_book.py")
check_book = importlib.util.module_from_spec(_spec)
sys.modules["check_book"] = check_book
_spec.loader.exec_module(check_book)
_spec = importlib.util.spec_from_file_location("offline_mathjax", ROOT / "book" / "_ext" / "offline_mathjax.py")
offline_mathjax = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(offline_mathjax)

CHROMIUM = check_book.find_chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="browser check skipped: no Chromium on the PATH (apt-get install chromium)")

BROKEN_PAGE = """<!DOCTYPE html><html><head><title>broken</title>
<script>const THEBE_JS_URL = "x";</script><script>const THEBE_JS_URL = "x";</script></head>
<body><p>See {glue:}`accuracy` and {cite}`keskar2017large`.</p>
<img src="missing.png" alt="a figure that is not there">
<a href="nowhere.html">gone</a> <a href="index.html#no-such-anchor">anchor</a> <a href="index.html#here">fine</a>
<div class="output traceback"><pre>Traceback (most recent call last): ZeroDivisionError</pre></div>
<script>fetch("data.json");</script>
</body></html>"""


def cell(source: str, collapsed: bool = False, style: str = "") -> str:
    """A notebook code cell as myst-nb writes it (a collapsed one: folded in <details>)."""
    block = (f'<div class="cell_input docutils container"><div class="highlight"><pre style="{style}">'
             f'{source}</pre></div></div>')
    if collapsed:
        block = f'<details class="hide above-input"><summary>Show code cell source</summary>{block}</details>'
    return f'<div class="cell docutils container">{block}</div>'


CELLS = [cell("hidden = 1\nhidden = 2\nhidden = 3", collapsed=True), cell("a = 1\n\nb = 2"),
         cell("x = " + "1 + " * 60 + "1", style="width: 300px; overflow: auto")]
MEASURED_PAGE = f"""<!DOCTYPE html><html><head><title>measured</title><link rel="icon" href="data:,"></head>
<body><p>Unrendered math: \\(B = 32\\); in code it is fine: <code>\\[x\\]</code></p>
{"".join(CELLS)}
<div style="width: 600px; height: 3000px">wider than a phone, taller than the window</div>
</body></html>"""
LONG_PAGE = f"""<!DOCTYPE html><html><head><title>long</title><link rel="icon" href="data:,"></head>
<body>{cell(chr(10).join(f"line_{i} = {i}" for i in range(41)))}</body></html>"""  # 41 visible lines
MATH_PAGE = """<!DOCTYPE html><html><head><title>math</title><link rel="icon" href="data:,">
<script defer src="_static/mathjax/tex-mml-chtml.js"></script></head>
<body><p>Rendered math: \\(B = 32\\) and $$\\sum_i x_i$$</p></body></html>"""
TABLE_PAGE = """<!DOCTYPE html><html><head><title>table</title><link rel="icon" href="data:,"></head>
<body style="font: 16px/20px sans-serif"><table><tr><td>short</td></tr></table>
<details><summary>per setting</summary><table><tr><td>{folded}</td></tr></table></details></body></html>"""
GOOD_PAGE = """<!DOCTYPE html><html><head><title>fine</title><link rel="icon" href="data:,"></head>
<body><h1 id="here">Fine</h1><a href="page.html">a page</a></body></html>"""


@needs_chromium
def test_the_check_finds_every_kind_of_breakage(tmp_path, capsys):
    site = tmp_path / "html"
    site.mkdir()
    (site / "index.html").write_text(GOOD_PAGE)
    (site / "page.html").write_text(BROKEN_PAGE)
    status = check_book.main([str(site), "--screenshots", str(tmp_path / "shots")])
    out = capsys.readouterr().out
    assert status == 1
    index_part, page_part = out.split("FAIL page.html", 1)
    assert "ok   index.html" in index_part and "FAIL" not in index_part
    for expected in ("Identifier 'THEBE_JS_URL' has already been declared", "not served: http://127.0.0.1:",
                     "missing.png", "/data.json (HTTP 404)", "unrendered role '{glue:'", "unrendered role '{cite'",
                     "broken internal link", "nowhere.html (HTTP 404)", "no anchor #no-such-anchor",
                     "error output in a cell", "a traceback is shown on the page"):
        assert expected in page_part, expected
    assert "#here" not in page_part
    assert "(server)" not in out  # every failed request above is named under its page, once
    for name in ("index.png", "page.png"):
        assert (tmp_path / "shots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_chromium
def test_the_check_measures_code_width_and_math_as_a_reader_sees_them(tmp_path, capsys):
    site = tmp_path / "html"
    (site / "notebooks").mkdir(parents=True)
    (site / "index.html").write_text(GOOD_PAGE.replace("page.html", "notebooks/02_measured.html"))
    (site / "notebooks" / "02_measured.html").write_text(MEASURED_PAGE)
    (site / "notebooks" / "03_long.html").write_text(LONG_PAGE)
    (site / "notebooks" / "07_unbudgeted.html").write_text(LONG_PAGE)
    (site / "notebooks" / "06_tall_cell.html").write_text(TABLE_PAGE.format(folded="<br>".join(["line"] * 9)))
    (site / "notebooks" / "06_short_cells.html").write_text(TABLE_PAGE.format(folded="line<br>line"))
    (site / "math.html").write_text(MATH_PAGE)
    (site / "tall.html").write_text(GOOD_PAGE.replace("</body>", '<div style="height: 20000px"></div></body>'))
    built = SimpleNamespace(builder=SimpleNamespace(format="html"), outdir=site)
    offline_mathjax.copy_release(built, None)  # as after a book build: _static/mathjax
    shots = tmp_path / "shots"
    assert check_book.main([str(site), "--screenshots", str(shots)]) == 1
    reports = dict(re.findall(r"^(?:ok  |FAIL) (\S+)(.*?)(?=^(?:ok  |FAIL|checked) )", capsys.readouterr().out,
                              re.M | re.S))
    measured = reports["notebooks/02_measured.html"]
    assert "code lines 3/40, too wide 1, page width 1280@1280, 608@390" in measured  # 600 px + body margin
    assert "horizontal page scroll at 390 px: the page is 608 px wide" in measured and "at 1280" not in measured
    assert "unrendered TeX '\\\\(' in the text" in measured and "'\\\\['" not in measured
    assert "visible code line wider than its column: 'x = 1 + 1 + 1" in measured
    assert "41 visible code lines, more than this page's 40" in reports["notebooks/03_long.html"]
    assert reports["notebooks/07_unbudgeted.html"].startswith("  code lines 41, too wide 0")  # reported only
    assert "unrendered" not in reports["math.html"] and "FAIL" not in reports["math.html"]
    tall_cell = reports["notebooks/06_tall_cell.html"]  # a cell folded in <details> counts too, at both widths
    heights = re.findall(r"a table cell (\d+\.\d) lines tall at (\d+) px \(at most 6\): 'line", tall_cell)
    assert [width for _, width in heights] == ["1280", "390"] and all(8.5 < float(h) < 9.5 for h, _ in heights)
    assert "table cell" not in reports["notebooks/06_short_cells.html"]
    assert "table cell" not in reports["notebooks/02_measured.html"]  # only pages with a cell budget
    assert "FAIL" not in reports["index.html"] and "code lines 0/" not in reports["index.html"]
    tall = Image.open(shots / "notebooks__02_measured.png")
    assert tall.width == 1280 and tall.height > 3000  # the full page, not the window
    assert Image.open(shots / "notebooks__02_measured.390.png").width == 390  # as a phone shows it
    assert Image.open(shots / "tall.png").height == 16000 and (shots / "tall.part2.png").exists()  # in parts


@needs_chromium
@pytest.mark.slow
def test_the_smoke_book_passes_the_browser_check(smoke_book, capsys):
    status, folder = smoke_book
    assert status == 0
    html = folder / "book" / "_build" / "html"
    shots = folder / "screenshots"
    assert check_book.main([str(html), "--screenshots", str(shots)]) == 0, capsys.readouterr().out
    pages = check_book.book_pages(html)
    whole = [shot for shot in shots.glob("*.png") if ".part" not in shot.name]  # parts of long pages aside
    assert len(whole) == 2 * len(pages) and "notebooks/00_quickstart.html" in pages


@pytest.mark.slow
def test_the_smoke_book_serves_an_icon_at_its_root(smoke_book):
    """Browsers ask for /favicon.ico on pages without an icon link (the redirecting index.html)."""
    status, folder = smoke_book
    assert status == 0
    server, failed = check_book.serve(folder / "book" / "_build" / "html")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/favicon.ico", timeout=10) as reply:
            assert reply.status == 200
            icon = reply.read()
    finally:
        server.shutdown()
    assert icon[:4] == b"\x00\x00\x01\x00" and not failed  # an ICO file header
    assert Image.open(io.BytesIO(icon)).size == Image.open(ROOT / "book" / "_static" / "favicon.png").size
