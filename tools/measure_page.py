"""Measure one page of the built book in headless Chromium at several widths: a page a reader can read.

    python tools/measure_page.py [HTML_DIR] [--page notebooks/06_summary.html]
        [--widths 1280 390] [--max-lines 6] [--screenshots DIR]

At each width (390 emulates a phone) the page is loaded with every ``<details>`` opened,
and fails when it scrolls horizontally (the document wider than that width; a phone
would zoom out rather than scroll, which is as bad) or when
the content of a table cell is taller than ``--max-lines`` lines of its own text.
The tallest cells, the widths and a full-page screenshot per width
(``<screenshots>/<page>_<width>.png``) are reported. It reuses the server and DevTools
client of ``tools/check_book.py``. Exit status 0 when every width passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from tornado.websocket import websocket_connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_book  # noqa: E402 - a sibling script, not a package

MAX_SHOT_HEIGHT = 12000
PROBE = """(() => {
  document.querySelectorAll('details').forEach(d => d.open = true);
  const cells = Array.from(document.querySelectorAll('td')).map(td => {
    const style = getComputedStyle(td);
    const line = parseFloat(style.lineHeight) || 1.4 * parseFloat(style.fontSize);
    const range = document.createRange();
    range.selectNodeContents(td);
    return {lines: range.getBoundingClientRect().height / line, text: td.innerText.slice(0, 50)};
  }).sort((a, b) => b.lines - a.lines);
  return {window: window.innerWidth, document: document.documentElement.scrollWidth,
          height: document.documentElement.scrollHeight, cells: cells.length, tallest: cells.slice(0, 3)};
})()"""


async def measure(html: Path, page: str, widths: Sequence[int], screenshots: Path) -> dict[int, dict[str, Any]]:
    """The probe's result at each width, with a full-page screenshot saved for each."""
    server, _ = check_book.serve(html)
    url = f"http://127.0.0.1:{server.server_address[1]}/{page}"
    results = {}
    with tempfile.TemporaryDirectory(prefix="measure_page_") as profile:
        process, devtools_url = check_book.start_chromium(check_book.find_chromium(), Path(profile))
        try:
            tools = check_book.DevTools(await websocket_connect(devtools_url, max_message_size=256 * 2**20))
            target = await tools.send("Target.createTarget", {"url": "about:blank"})
            session = (await tools.send("Target.attachToTarget", {"targetId": target["targetId"],
                                                                  "flatten": True}))["sessionId"]
            await tools.send("Page.enable", {}, session)
            for width in widths:
                metrics = {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600}
                await tools.send("Emulation.setDeviceMetricsOverride", metrics, session)
                tools.events.clear()
                await tools.send("Page.navigate", {"url": url}, session)
                await tools.wait_for("Page.loadEventFired", check_book.PAGE_TIMEOUT_S)
                await tools.drain(check_book.SETTLE_S)
                probe = (await tools.send("Runtime.evaluate", {"expression": PROBE, "returnByValue": True},
                                          session))["result"]["value"]
                full = {**metrics, "height": min(probe["height"], MAX_SHOT_HEIGHT)}
                await tools.send("Emulation.setDeviceMetricsOverride", full, session)
                await tools.drain(check_book.SETTLE_S)
                shot = await tools.send("Page.captureScreenshot", {"format": "png"}, session)
                name = page.replace("/", "__").removesuffix(".html")
                (screenshots / f"{name}_{width}.png").write_bytes(base64.b64decode(shot["data"]))
                results[width] = {**probe, "window": width}  # a phone zooms out to fit: not innerWidth
        finally:
            process.kill()
            process.wait()
            server.shutdown()
    return results


def problems(probe: dict[str, Any], max_lines: float) -> list[str]:
    """What a reader would find wrong at one width."""
    found = []
    if probe["document"] > probe["window"]:
        found.append(f"the page scrolls sideways: {probe['document']} px wide in a {probe['window']} px window")
    found += [f"a cell {cell['lines']:.1f} lines tall: {cell['text']!r}" for cell in probe["tallest"]
              if cell["lines"] > max_lines + 0.5]
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html", nargs="?", type=Path, default=Path("_build/html"), help="the built book")
    parser.add_argument("--page", default="notebooks/06_summary.html")
    parser.add_argument("--widths", type=int, nargs="+", default=[1280, 390])
    parser.add_argument("--max-lines", type=float, default=6.0)
    parser.add_argument("--screenshots", type=Path, default=Path("_build/screenshots"))
    args = parser.parse_args(argv)
    if check_book.find_chromium() is None:
        parser.error("no Chromium found: install Debian's package (apt-get install chromium)")
    if not (args.html / args.page).exists():
        parser.error(f"{args.html / args.page} does not exist; build the book first")
    args.screenshots.mkdir(parents=True, exist_ok=True)
    results = asyncio.run(measure(args.html, args.page, args.widths, args.screenshots))
    failed = False
    for width, probe in results.items():
        found = problems(probe, args.max_lines)
        failed |= bool(found)
        tallest = ", ".join(f"{c['lines']:.1f}" for c in probe["tallest"])
        print(f"{'FAIL' if found else 'ok  '} {width} px: document {probe['document']} px, "
              f"{probe['cells']} cells, tallest {tallest} lines")
        for line in found:
            print(f"     - {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
