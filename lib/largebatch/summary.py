"""The reproduction summary (chapter 06): what the chapters' verdict files say, by paper and by claim.

Everything on the summary page is generated from the ``*.verdicts.json`` files that the
chapters write (:func:`largebatch.analysis.record_verdicts`) and from the claims
registry (:data:`largebatch.claims.CLAIMS`): :func:`claim_rows` gives one row per
claim (``"not run"`` when its chapter wrote no file), :func:`paper_sentences` one
sentence per paper, and the ``*_html`` functions the page's parts: the claims table
(verdicts as symbol, word and colour, with their stability; rows become stacked cards
on a phone), the per-setting verdicts and the criteria in collapsible details, and the
machine, versions and seeds behind each chapter.
"""

from __future__ import annotations

import html
import math
import os
from typing import Any, Sequence

import pandas as pd

from largebatch import analysis, claims

__all__ = ["claim_rows", "claims_html", "compare", "criteria_html", "key_number", "papers_html", "paper_sentences",
           "provenance_html", "provenance_rows", "seed_ranges", "setting_rows", "settings_html", "with_error"]

STYLE = """<style>
table.lb-summary {border-collapse: collapse; width: 100%; font-size: 0.9em; margin: 0.5em 0;}
table.lb-summary th, table.lb-summary td {border-bottom: 1px solid #ddd; padding: 0.3em 0.45em;
  text-align: left; vertical-align: top; overflow-wrap: break-word;}
table.lb-summary td small {display: block; color: #555;}
table.lb-summary .lb-short {white-space: nowrap;}
table.lb-summary td.lb-verdict {min-width: 8.5em;}
table.lb-summary td.lb-verdict span {font-weight: 600; white-space: nowrap;}
@media (max-width: 720px) {
  table.lb-summary, table.lb-summary tbody {display: block; width: 100%;}
  table.lb-summary thead, table.lb-summary colgroup {display: none;}
  table.lb-summary tr {display: block; border-bottom: 2px solid #bbb; padding: 0.25em 0;}
  table.lb-summary td {display: block; border: none; padding: 0.1em 0.3em; min-width: 0;}
  table.lb-summary td::before {content: attr(data-label) ": "; font-weight: 600;}
  table.lb-summary td small {display: inline; margin-left: 0.4em;}
}
</style>"""


def with_error(value: float | None, error: float | None) -> str:
    """``value ± error``, the error to two significant digits and the value to the same decimal
    place (``0.556, 1.53`` -> ``"0.6 ± 1.5"``); three significant digits without an error; "" for none."""
    if value is None or not math.isfinite(value):
        return ""
    if error is None or not math.isfinite(error) or error <= 0:
        return f"{value:.3g}"
    decimals = max(0, 1 - math.floor(math.log10(error)))
    return f"{value:.{decimals}f} ± {error:.{decimals}f}"


def _number(row: dict[str, Any]) -> str:
    return with_error(row.get("value"), row.get("spread"))


def key_number(overall: dict[str, Any], settings: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """The number a claim's verdict rests on and what it is: its value ± standard error, or for a
    verdict combined over parts the count of parts reproduced."""
    if _number(overall):
        return _number(overall), overall.get("measured", "")
    reproduced = sum(r["outcome"] == "reproduced" for r in settings)
    return (f"{reproduced} of {len(settings)}", "parts reproduced") if settings else ("", "")


def _stability(row: dict[str, Any]) -> analysis.Stability:
    return analysis.Verdict.from_row(row).stability


def claim_rows(folder: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per registered claim, from the verdict files in ``folder``.

    Columns: ``claim``, ``paper``, ``statement`` (plain words), ``book_setting``,
    ``paper_setting``, ``number`` and ``measured`` (:func:`key_number`), ``verdict``
    (``"not run"`` when its chapter wrote no file or not this claim), ``stability``
    (its label, e.g. ``fragile (without seed 3)``; "" when not run), ``fragile``,
    ``link`` (the figure's anchor), ``chapter``, ``profile`` and ``seeds`` (a count).
    """
    files = claims.read_verdicts(folder)
    rows = []
    for item in claims.CLAIMS.values():
        content = files.get(item.chapter, {"verdicts": []})
        found = [r for r in content["verdicts"] if r["claim"] == item.id]
        overall = next((r for r in found if not r["setting"]), None)
        row = {"claim": item.id, "paper": item.paper, "statement": item.plain,
               "book_setting": item.book_setting, "paper_setting": item.paper_setting, "number": "",
               "measured": "", "verdict": claims.NOT_RUN, "stability": "", "fragile": False,
               "link": item.link, "chapter": item.chapter, "profile": "", "seeds": 0}
        if overall is not None:
            stability = _stability(overall)
            number, measured = key_number(overall, [r for r in found if r["setting"]])
            row.update(number=number, measured=measured, verdict=overall["outcome"],
                       stability=stability.label, fragile=stability.status == analysis.FRAGILE,
                       profile=content["profile"], seeds=len(content["seeds"]))
        rows.append(row)
    return pd.DataFrame(rows)


def setting_rows(folder: str | os.PathLike | None = None) -> pd.DataFrame:
    """Every per-setting verdict (claim, setting, number, verdict, stability), in registry order."""
    files = claims.read_verdicts(folder)
    rows = [{"claim": r["claim"], "setting": r["setting"], "number": _number(r),
             "verdict": r["outcome"], "stability": _stability(r).label}
            for item in claims.CLAIMS.values() for r in files.get(item.chapter, {"verdicts": []})["verdicts"]
            if r["claim"] == item.id and r["setting"]]
    return pd.DataFrame(rows, columns=["claim", "setting", "number", "verdict", "stability"])


def _listing(items: Sequence[str], serial: bool = False) -> str:
    """``a``, ``a and b``, ``a, b and c`` (``a, b, and c`` with ``serial``, for clauses)."""
    if len(items) < 3:
        return " and ".join(items)
    return ", ".join(items[:-1]) + ("," if serial else "") + " and " + items[-1]


_PHRASES = {  # outcome: (one claim, several claims)
    "reproduced": ("holds", "hold"),
    "partly reproduced": ("holds in part", "hold in part"),
    analysis.NOT_REPRODUCED: ("does not hold at this scale", "do not hold at this scale"),
    "inconclusive": ("stays undecided (within the seed noise)", "stay undecided (within the seed noise)"),
    claims.NOT_RUN: ("was not run", "were not run"),
}


def paper_sentences(rows: pd.DataFrame) -> list[tuple[str, str]]:
    """One sentence per paper (in registry order): which of its claims hold at this scale, and
    which verdicts are fragile. ``rows`` is :func:`claim_rows`."""
    sentences = []
    for paper, group in rows.groupby("paper", sort=False):
        parts = []
        for outcome, (one, several) in _PHRASES.items():
            ids = list(group.loc[group["verdict"] == outcome, "claim"])
            if ids:
                parts.append(f"{_listing(ids)} {one if len(ids) == 1 else several}")
        listed = _listing(parts, serial=True)
        sentence = listed if len(group) == 1 else f"of its {len(group)} claims, {listed}"
        fragile = list(group.loc[group["fragile"], "claim"])
        if fragile:
            sentence += (f"; the verdict{'s' if len(fragile) > 1 else ''} on {_listing(fragile)} "
                         f"{'are' if len(fragile) > 1 else 'is'} fragile (leaving out one seed changes "
                         f"{'them' if len(fragile) > 1 else 'it'})")
        sentences.append((paper, sentence[0].upper() + sentence[1:] + "."))
    return sentences


def _cell(label: str, content: str, css: str = "", style: str = "") -> str:
    attributes = f' data-label="{html.escape(label)}"'
    attributes += f' class="{css}"' if css else ""
    attributes += f' style="{style}"' if style else ""
    return f"<td{attributes}>{content}</td>"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], widths: Sequence[str] = ()) -> str:
    """A summary table; ``widths`` (CSS, one per column) keep the text columns from being squeezed."""
    columns = "".join(f'<col style="width: {w}">' if w else "<col>" for w in widths)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    return (f'<table class="lb-summary">{f"<colgroup>{columns}</colgroup>" if columns else ""}'
            f"<thead><tr>{head}</tr></thead><tbody>"
            + "".join(f"<tr>{''.join(cells)}</tr>" for cells in rows) + "</tbody></table>")


def _small(text: str) -> str:
    return f"<small>{html.escape(text)}</small>" if text else ""


def _verdict_cell(verdict: str, stability: str) -> str:
    label = analysis.outcome_label(verdict)
    return _cell("verdict", f"<span>{html.escape(label)}</span>" + _small(stability), "lb-verdict",
                 analysis.outcome_style(label))


def papers_html(rows: pd.DataFrame) -> str:
    """The paper sentences (:func:`paper_sentences`) as a list."""
    items = "".join(f"<li><strong>{html.escape(paper)}</strong>: {html.escape(sentence)}</li>"
                    for paper, sentence in paper_sentences(rows))
    return f"<ul>{items}</ul>"


def claims_html(rows: pd.DataFrame) -> str:
    """One row per claim: plain statement, setting (book, then paper), key number, verdict with
    its stability, figure link; with the page's table style (:data:`STYLE`), so show it first."""
    body = [[_cell("claim", html.escape(r.claim), "lb-short"),
             _cell("claim in plain words", html.escape(r.statement)),
             _cell("tested on", html.escape(r.book_setting) + _small(f"paper: {r.paper_setting}")),
             _cell("key number", html.escape(r.number) + _small(r.measured)),
             _verdict_cell(r.verdict, r.stability),
             _cell("figure", f'<a href="{html.escape(r.link)}">{html.escape(r.chapter[:2])} ›</a>', "lb-short")]
            for r in rows.itertuples()]
    return STYLE + _table(["claim", "claim in plain words", "tested on", "key number", "verdict", "figure"],
                          body, ["", "29%", "26%", "19%", "", ""])


def _details(title: str, content: str) -> str:
    return f"<details><summary>{html.escape(title)}</summary>{content}</details>"


def settings_html(settings: pd.DataFrame) -> str:
    """The per-setting verdicts in a collapsible detail."""
    body = [[_cell("claim", html.escape(r.claim), "lb-short"), _cell("setting", html.escape(r.setting)),
             _cell("number", html.escape(r.number)), _verdict_cell(r.verdict, r.stability)]
            for r in settings.itertuples()]
    return _details(f"Per-setting verdicts ({len(body)})", _table(["claim", "setting", "number", "verdict"], body))


def criteria_html() -> str:
    """Every claim's full statement, measurement and criterion, in a collapsible detail (a list:
    these texts are too long for table cells)."""
    items = "".join(f"<dt>{html.escape(c.id)}: {html.escape(c.statement)}</dt>"
                    f"<dd>Measured: {html.escape(c.measurement)}.<br>Criterion: {html.escape(c.criterion)}.</dd>"
                    for c in claims.CLAIMS.values())
    return _details("Statements, measurements and criteria", f"<dl>{items}</dl>")


def seed_ranges(seeds: Sequence[int]) -> str:
    """``[0, 1, 2, 3, 7]`` as ``"0-3, 7"``."""
    ordered, spans = sorted(seeds), []
    for seed in ordered:
        if spans and seed == spans[-1][1] + 1:
            spans[-1][1] = seed
        else:
            spans.append([seed, seed])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def provenance_rows(folder: str | os.PathLike | None = None) -> pd.DataFrame:
    """Per chapter with a verdict file: profile, seeds, CPU (cores), Python and torch versions."""
    rows = []
    for chapter, content in claims.read_verdicts(folder).items():
        machine = content.get("provenance") or {}
        cpu = f"{machine['cpu']} ({machine['usable_cores']} cores)" if machine else "not recorded"
        rows.append({"chapter": chapter, "profile": content["profile"], "seeds": seed_ranges(content["seeds"]),
                     "machine": cpu, "python": machine.get("python", ""), "torch": machine.get("torch", "")})
    return pd.DataFrame(rows, columns=["chapter", "profile", "seeds", "machine", "python", "torch"])


def provenance_html(rows: pd.DataFrame) -> str:
    """The provenance rows as a table (a sentence when no chapter wrote a verdict file)."""
    if rows.empty:
        return "<p>No chapter has written a verdict file yet.</p>"
    body = [[_cell(column, html.escape(str(value))) for column, value in row.items()]
            for _, row in rows.iterrows()]
    return _table(list(rows.columns), body)


def compare(folder_a: str | os.PathLike, folder_b: str | os.PathLike) -> pd.DataFrame:
    """Claim by claim, the verdicts of two builds (e.g. two seed lists, or two machines):
    ``claim``, then ``number``, ``verdict`` and ``stability`` of each (suffixes ``_a``,
    ``_b``), and ``changed`` (the verdicts differ)."""
    columns = ["claim", "number", "verdict", "stability"]
    a, b = (claim_rows(folder)[columns] for folder in (folder_a, folder_b))
    both = a.merge(b, on="claim", suffixes=("_a", "_b"))
    both["changed"] = both["verdict_a"] != both["verdict_b"]
    return both


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m largebatch.summary FOLDER_A FOLDER_B``: the claims whose verdict differs
    between two folders of verdict files, and the whole table; exit status 0 either way."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m largebatch.summary", description=main.__doc__)
    parser.add_argument("folders", nargs=2, type=str, metavar="FOLDER", help="folders of *.verdicts.json files")
    args = parser.parse_args(argv)
    for folder in args.folders:
        if not claims.read_verdicts(folder):
            parser.error(f"{folder} holds no *.verdicts.json file")
    table = compare(*args.folders)
    print(table.to_string(index=False))
    changed = table[table["changed"]]
    print(f"\n{len(changed)} of {len(table)} claim verdicts differ"
          + (f": {', '.join(changed['claim'])}" if len(changed) else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
