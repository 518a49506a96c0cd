"""Sphinx extension: write each inline ``<script>`` of a page once.

Sphinx 7 registers an inline script added with ``app.add_js_file(None, body=...)``
after the builder started under two file names (``None`` and ``""``), so the
page carries it twice; for sphinx-thebe's ``const THEBE_JS_URL = ...`` the
second copy is a JavaScript error on every page (sphinx-doc/sphinx#13402, fixed
in Sphinx 8.2). This drops the repeated copies before each page is written.
"""

from __future__ import annotations

from typing import Any


def drop_repeated_inline_scripts(app: Any, pagename: str, templatename: str, context: dict[str, Any],
                                 doctree: Any) -> None:
    """Keep the first of several inline scripts with the same body and attributes."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple[str, ...]] = set()
    kept = []
    for script in scripts:
        attributes = getattr(script, "attributes", {})
        if getattr(script, "filename", None) in (None, "") and "body" in attributes:
            key = tuple(f"{k}={v}" for k, v in sorted(attributes.items()))
            if key in seen:
                continue
            seen.add(key)
        kept.append(script)
    scripts[:] = kept


def setup(app: Any) -> dict[str, Any]:
    app.connect("html-page-context", drop_repeated_inline_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
