"""Open every page of the built book in headless Chromium and fail on what a reader would see broken.

    python tools/check_book.py [HTML_DIR] [--screenshots DIR] [--chromium PATH]

``HTML_DIR`` (default ``_build/html``) is served on 127.0.0.1; each ``.html`` page is
loaded in headless Chromium (Debian's ``chromium``; nothing is downloaded), driven
through the Chrome DevTools Protocol over tornado's websocket client. A page fails on:

* a request to the local server that is not served (image, script, style, font);
* an image that did not decode;
* a JavaScript console error or uncaught exception (failed loads of external
  resources, e.g. a CDN without network, are reported but do not fail);
* error or traceback output in a notebook cell;
* an unrendered MyST role such as a literal ``{glue:`` or ``{cite`` in the text;
* an internal link to a page that is not served or to an anchor the page lacks;
* unrendered TeX in the text outside code (``\\(``, ``\\[``, ``$$``: MathJax is served by
  the book itself, so math that did not render is a fault, not a missing network);
* a horizontal page scroll at 1280 px or at 390 px (a phone) of viewport width;
* on a chapter with a budget (:data:`CODE_BUDGETS`): more visible code lines than the
  budget, or a visible code line wider than its code column;
* on a page with a cell budget (:data:`CELL_BUDGETS`, the summary's claim table): a table
  cell taller than the budget's lines of its own text at either width, every ``<details>``
  opened (so the per-setting lists folded under the table count too).

Visible code lines are the non-blank lines of notebook code cells that are on the page
and not collapsed (a ``hide-input`` cell's input is folded away until clicked). Every
page reports them, with the widths. A full-page screenshot of each page at both widths
is saved to ``--screenshots`` (default ``_build/screenshots``): ``PAGE.png`` (1280 px)
and ``PAGE.390.png`` (a page taller than 16000 px in parts: ``PAGE.part2.png``, ...). Exit status 0 when every page passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import fnmatch
import functools
import http.server
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tornado.websocket import websocket_connect

SKIPPED_FOLDERS = {"_static", "_sources", "_images", "_downloads"}
UNRENDERED = ("{glue:", "{glue}", "{cite", "{doc}", "{ref}", "{numref}")
TEX_DELIMITERS = ("\\(", "\\[", "$$")
PAGE_TIMEOUT_S = 30.0
SETTLE_S = 0.5
WIDTHS = (1280, 390)  # viewport widths (CSS px): a laptop, a phone
VIEWPORT_HEIGHT = 1000
MAX_SCREENSHOT_HEIGHT = 16000  # px: Chromium's largest texture; a longer page comes in parts
# Chapters' visible code lines at most (pattern of the page path -> lines), and no code line wider
# than its column there: chapters on the study pattern (00, 02-06) 40; 01, a tour of the Hessian API
# whose code is what it teaches, 120.
CODE_BUDGETS = {
    "notebooks/0[02-6]_*": 40,
    "notebooks/01_*": 120,
}
CELL_BUDGETS = {"notebooks/06_*": 6}  # table cells of these pages: lines of their own text at most
# Open every <details>, then the tallest table cells, in lines of each cell's own text.
CELL_PROBE = """(() => {
  document.querySelectorAll("details").forEach(d => d.open = true);
  return Array.from(document.querySelectorAll("td")).map(td => {
    const style = getComputedStyle(td);
    const line = parseFloat(style.lineHeight) || 1.4 * parseFloat(style.fontSize);
    const range = document.createRange();
    range.selectNodeContents(td);
    return {lines: range.getBoundingClientRect().height / line, text: td.innerText.slice(0, 50)};
  }).sort((a, b) => b.lines - a.lines).slice(0, 3);
})()"""
# Typeset math first (MathJax renders asynchronously), then read the page.
PAGE_PROBE = """(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  const prose = document.body ? document.body.cloneNode(true) : null;
  if (prose) { prose.querySelectorAll("pre, code, script, style, mjx-container").forEach(e => e.remove()); }
  const code = Array.from(document.querySelectorAll(".cell_input pre"))  // not folded away in a <details>
                    .filter(e => !e.closest("details:not([open])") && e.getClientRects().length > 0);
  return {
  text: document.body ? document.body.innerText : "",
  prose: prose ? prose.textContent : "",
  codeLines: code.map(e => e.innerText.split("\\n").filter(line => line.trim()).length).reduce((a, b) => a + b, 0),
  wideCode: code.filter(e => e.scrollWidth > e.clientWidth + 1)
                .map(e => e.innerText.split("\\n").reduce((a, b) => b.length > a.length ? b : a, "")),
  errors: Array.from(document.querySelectorAll(".output.traceback, .output.error, .cell_output .traceback"))
               .map(e => e.innerText.slice(0, 300)),
  brokenImages: Array.from(document.images).filter(i => i.complete && i.naturalWidth === 0)
                     .map(i => i.currentSrc || i.src),
  images: Array.from(document.images).map(i => i.currentSrc || i.src),
  links: Array.from(document.querySelectorAll("a[href]")).map(a => a.href),
  };
})()"""
WIDTH_PROBE = """({page: document.documentElement.scrollWidth, viewport: document.documentElement.clientWidth})"""


@dataclass
class PageReport:
    path: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    screenshot: Path | None = None
    code_lines: int = 0  # visible code lines (see the module docstring)
    wide_code: list[str] = field(default_factory=list)  # the longest line of each too-wide code block
    page_widths: dict[int, int] = field(default_factory=dict)  # viewport width -> page width (CSS px)


def code_budget(path: str) -> int | None:
    """The visible-code budget of a page (:data:`CODE_BUDGETS`), or None."""
    return _budget(CODE_BUDGETS, path)


def _budget(budgets: dict[str, int], path: str) -> int | None:
    return next((lines for pattern, lines in budgets.items() if fnmatch.fnmatch(path, pattern)), None)


def tall_cells(cells: list[dict[str, Any]], width: int, budget: int) -> list[str]:
    """Problems for the table cells (``CELL_PROBE``'s result at ``width``) over ``budget`` lines."""
    return [f"a table cell {cell['lines']:.1f} lines tall at {width} px (at most {budget}): {cell['text']!r}"
            for cell in cells if cell["lines"] > budget + 0.5]


def find_chromium() -> str | None:
    """Debian's ``chromium`` (or another Chromium/Chrome on the PATH), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    failures: list[tuple[str, int]]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self.failures.append((self.path, code))
        super().send_error(code, message, explain)


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that drops a connection mid-transfer (it left the page) is no failure;
        anything else is printed as usual."""
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, list[tuple[str, int]]]:
    """Serve ``folder`` on 127.0.0.1 (a free port) in a daemon thread; also returns the failed requests."""
    failures: list[tuple[str, int]] = []
    handler = type("Handler", (_QuietHandler,), {"failures": failures})
    server = _Server(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, failures


class DevTools:
    """A minimal Chrome DevTools Protocol client: commands, and the events received meanwhile."""

    def __init__(self, connection: Any) -> None:
        self.connection, self.events, self._id = connection, [], 0

    async def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        await self.connection.write_message(json.dumps(message))
        while True:
            data = await self._read(PAGE_TIMEOUT_S)
            if data.get("id") == self._id:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                return data.get("result", {})
            self.events.append(data)

    async def _read(self, timeout: float) -> dict:
        raw = await asyncio.wait_for(self.connection.read_message(), timeout)
        if raw is None:
            raise RuntimeError("the browser closed the DevTools connection")
        return json.loads(raw)

    async def wait_for(self, method: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            self.events.append(await self._read(max(deadline - time.monotonic(), 0.01)))

    async def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self.events.append(await self._read(left))
            except asyncio.TimeoutError:
                return


def start_chromium(chromium: str, profile: Path) -> tuple[subprocess.Popen, str]:
    """Launch headless Chromium with remote debugging; returns the process and its DevTools URL."""
    process = subprocess.Popen(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--hide-scrollbars", "--window-size=1280,1000", f"--user-data-dir={profile}",
         "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while not port_file.exists() or len(port_file.read_text().split()) < 2:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{chromium} did not start its DevTools server")
        time.sleep(0.1)
    port, path = port_file.read_text().split()[:2]
    return process, f"ws://127.0.0.1:{port}{path}"


def _fetch(url: str, cache: dict[str, tuple[int, str]]) -> tuple[int, str]:
    if url not in cache:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = response.read()
                text = body.decode("utf-8", "replace") if "html" in response.headers.get("Content-Type", "") else ""
                cache[url] = (response.status, text)
        except urllib.error.HTTPError as error:
            cache[url] = (error.code, "")
    return cache[url]


def _check_link(link: str, origin: str, cache: dict[str, tuple[int, str]]) -> str | None:
    if not link.startswith(origin):
        return None
    target, _, fragment = link.partition("#")
    status, html = _fetch(target, cache)
    if status != 200:
        return f"broken internal link {link} (HTTP {status})"
    if fragment and html and not re.search(rf'(id|name)="{re.escape(fragment)}"', html):
        return f"broken internal link {link}: no anchor #{fragment}"
    return None


def _events_problems(events: list[dict], origin: str, report: PageReport) -> None:
    urls: dict[str, str] = {}
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Network.requestWillBeSent":
            urls[params["requestId"]] = params["request"]["url"]
        elif method == "Network.responseReceived":
            response = params["response"]
            if response["url"].startswith(origin) and response["status"] >= 400:
                report.problems.append(f"not served: {response['url']} (HTTP {response['status']})")
        elif method == "Network.loadingFailed":
            url = urls.get(params["requestId"], "?")
            if url.startswith(origin) and not params.get("canceled"):
                report.problems.append(f"failed to load {url}: {params.get('errorText')}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            report.problems.append(f"JavaScript exception: {text}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            report.problems.append(f"console error: {text}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            if entry.get("source") == "network" and not entry.get("url", "").startswith(origin):
                report.notes.append(f"external resource not loaded: {entry.get('url')}")
            elif entry.get("source") != "network":  # local network failures are reported above
                report.problems.append(f"console error: {entry['text']}")


async def _load(tools: DevTools, session: str, url: str, width: int) -> None:
    await tools.send("Emulation.setDeviceMetricsOverride",
                     {"width": width, "height": VIEWPORT_HEIGHT, "deviceScaleFactor": 1, "mobile": False},
                     session)
    await tools.send("Page.navigate", {"url": url}, session)
    await tools.wait_for("Page.loadEventFired", PAGE_TIMEOUT_S)
    await tools.drain(SETTLE_S)


async def _full_page_screenshot(tools: DevTools, session: str, path: Path, width: int) -> None:
    """The whole page, the window made as tall as the page; a page taller than MAX_SCREENSHOT_HEIGHT
    comes in parts (``PAGE.part2.png``, ...) taken down the page. The window is restored afterwards."""
    metrics = {"width": width, "deviceScaleFactor": 1, "mobile": False}
    size = (await tools.send("Page.getLayoutMetrics", {}, session))["cssContentSize"]
    window = int(min(max(size["height"], VIEWPORT_HEIGHT), MAX_SCREENSHOT_HEIGHT))
    await tools.send("Emulation.setDeviceMetricsOverride", {**metrics, "height": window}, session)
    await tools.drain(SETTLE_S)
    page = (await tools.send("Page.getLayoutMetrics", {}, session))["cssContentSize"]["height"]
    if page < window:  # the page got shorter in the taller window: no empty band below it
        window = int(max(page, VIEWPORT_HEIGHT))
        await tools.send("Emulation.setDeviceMetricsOverride", {**metrics, "height": window}, session)
        await tools.drain(SETTLE_S)
    for part, top in enumerate(range(0, int(page), window), start=1):
        await _evaluate(tools, session, f"window.scrollTo(0, {top})")
        shot = await tools.send("Page.captureScreenshot", {"format": "png"}, session)
        target = path if part == 1 else path.with_name(f"{path.stem}.part{part}.png")
        target.write_bytes(base64.b64decode(shot["data"]))
    await tools.send("Emulation.setDeviceMetricsOverride", {**metrics, "height": VIEWPORT_HEIGHT}, session)


async def _evaluate(tools: DevTools, session: str, expression: str) -> Any:
    reply = await tools.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                  "awaitPromise": True}, session)
    return reply["result"]["value"]


async def check_page(tools: DevTools, session: str, url: str, origin: str, report: PageReport,
                     screenshots: Path, cache: dict[str, tuple[int, str]]) -> None:
    tools.events.clear()
    await _load(tools, session, url, WIDTHS[0])
    probe = await _evaluate(tools, session, PAGE_PROBE)
    stem = report.path.replace("/", "__").removesuffix(".html")
    report.screenshot = screenshots / f"{stem}.png"
    await _full_page_screenshot(tools, session, report.screenshot, WIDTHS[0])
    _events_problems(tools.events, origin, report)
    report.problems += [f"error output in a cell: {text!r}" for text in probe["errors"]]
    if "Traceback (most recent call last)" in probe["text"]:
        report.problems.append("a traceback is shown on the page")
    report.problems += [f"unrendered role {marker!r} in the text" for marker in UNRENDERED if marker in probe["text"]]
    report.problems += [f"unrendered TeX {marker!r} in the text" for marker in TEX_DELIMITERS
                        if marker in probe["prose"]]
    report.problems += [f"image did not decode: {src}" for src in probe["brokenImages"]]
    for src in probe["images"]:
        if src.startswith(origin) and _fetch(src, cache)[0] != 200:
            report.problems.append(f"image not served: {src}")
    for link in sorted(set(probe["links"])):
        if problem := _check_link(link, origin, cache):
            report.problems.append(problem)
    report.code_lines, report.wide_code = probe["codeLines"], probe["wideCode"]
    cells = _budget(CELL_BUDGETS, report.path)
    for width in WIDTHS:  # the width of the page (every <details> opened where cells are measured)
        if width != WIDTHS[0]:  # the same page on a phone, and its screenshot
            tools.events.clear()
            await _load(tools, session, url, width)
            await _full_page_screenshot(tools, session, screenshots / f"{stem}.{width}.png", width)
        if cells is not None:
            report.problems += tall_cells(await _evaluate(tools, session, CELL_PROBE), width, cells)
        report.page_widths[width] = (await _evaluate(tools, session, WIDTH_PROBE))["page"]
    report.problems += [f"horizontal page scroll at {width} px: the page is {page} px wide"
                        for width, page in report.page_widths.items() if page > width]
    budget = code_budget(report.path)
    if budget is not None and report.code_lines > budget:
        report.problems.append(f"{report.code_lines} visible code lines, more than this page's {budget}")
    if budget is not None:
        report.problems += [f"visible code line wider than its column: {line.strip()[:80]!r}"
                            for line in report.wide_code]


async def check_pages(html: Path, pages: Sequence[str], chromium: str, screenshots: Path) -> list[PageReport]:
    server, failed_requests = serve(html)
    origin = f"http://127.0.0.1:{server.server_address[1]}/"
    with tempfile.TemporaryDirectory(prefix="check_book_") as profile:
        process, devtools_url = start_chromium(chromium, Path(profile))
        try:
            tools = DevTools(await websocket_connect(devtools_url, max_message_size=256 * 2**20))
            target = await tools.send("Target.createTarget", {"url": "about:blank"})
            session = (await tools.send("Target.attachToTarget", {"targetId": target["targetId"],
                                                                  "flatten": True}))["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                await tools.send(f"{domain}.enable", {}, session)
            await tools.send("Network.setCacheDisabled", {"cacheDisabled": True}, session)
            cache: dict[str, tuple[int, str]] = {}
            reports = []
            for page in pages:
                report = PageReport(page)
                try:
                    await check_page(tools, session, origin + page, origin, report, screenshots, cache)
                except (RuntimeError, asyncio.TimeoutError) as error:
                    report.problems.append(f"could not check the page: {error!r}")
                reports.append(report)
        finally:
            process.kill()
            process.wait()
            server.shutdown()
    # requests no page check attributed (e.g. made by a script after the settle time, or the browser's
    # own request for /favicon.ico on a page without an icon link)
    named = {url.rstrip(":") for report in reports for line in report.problems
             for url in re.findall(rf"{re.escape(origin)}[^\s#]*", line)}
    unattributed = sorted({(path, code) for path, code in failed_requests
                           if origin + path.lstrip("/") not in named})
    if unattributed:
        reports.append(PageReport("(server)", [f"not served: {path} (HTTP {code})" for path, code in unattributed]))
    return reports


def book_pages(html: Path) -> list[str]:
    """Every HTML page of the built book, relative to its root."""
    return sorted(str(p.relative_to(html)) for p in html.rglob("*.html")
                  if not SKIPPED_FOLDERS & set(p.relative_to(html).parts))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html", nargs="?", type=Path, default=Path("_build/html"), help="the built book")
    parser.add_argument("--screenshots", type=Path, default=Path("_build/screenshots"))
    parser.add_argument("--chromium", default=None, help="browser executable (default: chromium on the PATH)")
    args = parser.parse_args(argv)
    chromium = args.chromium or find_chromium()
    if chromium is None:
        parser.error("no Chromium found: install Debian's package (apt-get install chromium) or pass --chromium")
    if not (args.html / "index.html").exists():
        parser.error(f"{args.html} holds no built book (index.html missing)")
    args.screenshots.mkdir(parents=True, exist_ok=True)
    pages = book_pages(args.html)
    started = time.perf_counter()
    reports = asyncio.run(check_pages(args.html, pages, chromium, args.screenshots))
    failed = [r for r in reports if r.problems]
    for report in reports:
        measured = (f"  code lines {report.code_lines}"
                    + (f"/{code_budget(report.path)}" if code_budget(report.path) is not None else "")
                    + f", too wide {len(report.wide_code)}, page width "
                    + ", ".join(f"{page}@{width}" for width, page in report.page_widths.items())
                    if report.page_widths else "")
        print(f"{'FAIL' if report.problems else 'ok  '} {report.path}{measured}"
              + (f"  [{report.screenshot}]" if report.screenshot else ""))
        for line in report.problems:
            print(f"     - {line}")
        for line in sorted(set(report.notes)):
            print(f"     . {line}")
    print(f"checked {len(pages)} pages in {time.perf_counter() - started:.1f} s: {len(failed)} with problems; "
          f"screenshots in {args.screenshots}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
