"""Sphinx extension: serve MathJax from the built book, so that math renders without a network.

MathJax 3 comes from the pinned ``django-static-mathjax`` package on PyPI (MathJax's
release files, no Django needed; a project dependency). The page loads
``_static/mathjax/tex-mml-chtml.js`` (``mathjax_path`` in ``_config.yml``); after the
build this copies that file and the components it loads on demand (input, output with
its fonts, menu, accessibility) there from the installed package.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

from sphinx.errors import ExtensionError

ENTRY = "tex-mml-chtml.js"
COMPONENTS = (ENTRY, "input", "output", "ui", "a11y")


def mathjax_release() -> Path:
    """The ``es5`` folder of the installed MathJax release."""
    spec = importlib.util.find_spec("mathjax")
    folder = Path(spec.origin).parent / "static" / "mathjax" / "es5" if spec and spec.origin else None
    if folder is None or not (folder / ENTRY).is_file():
        raise ExtensionError("MathJax is not installed: pip install django-static-mathjax (a dependency of "
                             "largebatch), or the book's math would need a CDN")
    return folder


def check_path(app: Any, config: Any) -> None:
    """Fail early unless the book loads MathJax from ``_static/mathjax`` and the release is installed."""
    mathjax_release()
    if config.mathjax_path != f"mathjax/{ENTRY}":
        raise ExtensionError(f"mathjax_path must be mathjax/{ENTRY} (served from _static), "
                             f"got {config.mathjax_path!r}")


def copy_release(app: Any, exception: Exception | None) -> None:
    """Copy MathJax into ``_static/mathjax`` of a finished HTML build."""
    if exception is not None or app.builder.format != "html":
        return
    source, target = mathjax_release(), Path(app.outdir) / "_static" / "mathjax"
    for name in COMPONENTS:
        if (source / name).is_dir():
            shutil.copytree(source / name, target / name, dirs_exist_ok=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, target / name)


def setup(app: Any) -> dict[str, Any]:
    app.connect("config-inited", check_path)
    app.connect("build-finished", copy_release)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
