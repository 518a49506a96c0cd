"""The built book in a real browser (tools/check_book.py, headless Chromium); skipped without Chromium."""

import importlib.util
import io
import sys
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check_book", ROOT / "tools" / "check_book.py")
check_book = importlib.util.module_from_spec(_spec)
sys.modules["check_book"] = check_book
_spec.loader.exec_module(check_book)

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
@pytest.mark.slow
def test_the_smoke_book_passes_the_browser_check(smoke_book, capsys):
    status, folder = smoke_book
    assert status == 0
    html = folder / "book" / "_build" / "html"
    shots = folder / "screenshots"
    assert check_book.main([str(html), "--screenshots", str(shots)]) == 0, capsys.readouterr().out
    pages = check_book.book_pages(html)
    assert len(list(shots.glob("*.png"))) == len(pages) and "notebooks/00_quickstart.html" in pages


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
