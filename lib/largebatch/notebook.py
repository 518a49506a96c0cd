"""Helpers for the chapter notebooks: parameter checks, glued numbers and shown tables.

Each notebook's parameters cell gives every parameter a type hint and a comment;
papermill injects new values below it. :func:`check_parameters` compares every
value with its hint, rejects a value papermill injected for a name the cell does
not declare (``-p epoch 2`` for ``epochs``) and a ``seeds`` list that repeats a
seed, so a wrong parameter fails in the first cells with a message that names it,
before any compute.
"""

from __future__ import annotations

import ast
import difflib
import math
from typing import Any, Mapping, Sequence

import pandas as pd
from pandas.io.formats.style import Styler

from largebatch.config import ConfigError, accepts, describe_type
from largebatch.user_input import check_seeds

INJECTED_CELL_COMMENT = "# Parameters"  # the first line of the cell papermill injects


def check_parameters(namespace: Mapping[str, Any]) -> None:
    """Check every annotated variable of a notebook namespace against its type hint, that
    papermill injected no undeclared name, and that ``seeds`` (if declared) are distinct."""
    declared = namespace.get("__annotations__", {})
    unknown = sorted(injected_parameters(namespace) - set(declared))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(declared), n=1)
        raise ConfigError(f"papermill injected {unknown}, which this notebook does not declare as a parameter"
                          + (f" (did you mean {close[0]!r}?)" if close else "")
                          + f"; it declares {', '.join(declared)}")
    for name, hint in declared.items():
        if name not in namespace:
            raise ConfigError(f"parameter {name} is declared but has no value")
        value = namespace[name]
        if not accepts(hint, value):
            raise ConfigError(f"parameter {name} must be of type {describe_type(hint)}, "
                              f"got {value!r} ({type(value).__name__})")
    if "seeds" in declared:
        check_seeds("parameter seeds", namespace["seeds"])


def injected_parameters(namespace: Mapping[str, Any]) -> set[str]:
    """The names papermill assigned in the cell it injected (first line ``# Parameters``),
    read from IPython's input history ``In``; empty outside IPython or without papermill.
    ``PAPERMILL_*`` names (papermill's ``--inject-paths``) are not parameters."""
    names: set[str] = set()
    for source in namespace.get("In") or []:
        if not (isinstance(source, str) and source.lstrip().startswith(INJECTED_CELL_COMMENT)):
            continue
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        names |= {target.id for node in tree.body if isinstance(node, ast.Assign)
                  for target in node.targets if isinstance(target, ast.Name)}
    return {name for name in names if not name.startswith("PAPERMILL_")}


def check_choice(name: str, value: Any, allowed: Sequence[Any]) -> None:
    """Fail with a clear message if a parameter is not one of the allowed values."""
    if value not in allowed:
        raise ConfigError(f"parameter {name} must be one of {', '.join(map(str, allowed))}, got {value!r}")


def check_positive(name: str, values: Any) -> None:
    """Fail unless a number (or every number of a list) is positive."""
    items = values if isinstance(values, (list, tuple)) else [values]
    if not items or any(v <= 0 for v in items):
        raise ConfigError(f"parameter {name} must be positive (every entry of a non-empty list), got {values!r}")


def require(condition: bool, message: str) -> None:
    """Fail with ``message`` (a :class:`ConfigError`) unless ``condition`` holds: for checks
    between parameters that the helpers above do not cover."""
    if not condition:
        raise ConfigError(message)


def glue(name: str, value: Any, display: bool = False) -> None:
    """Glue a value into the book's prose (``{glue:text}`name```), and keep it in the notebook.

    NumPy and torch scalars are turned into Python numbers first, so that format
    specs such as ``:.3f`` work in the prose.
    """
    from myst_nb import glue as myst_glue

    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    myst_glue(name, value, display=display)


def glue_all(values: Mapping[str, Any]) -> None:
    """Glue every named value of a mapping."""
    for name, value in values.items():
        glue(name, value)


def show(frame: pd.DataFrame, digits: int = 3) -> Styler:
    """A table as the book shows it: no pandas index, floats to ``digits`` significant digits.

    A meaningful index (anything but the default range) becomes ordinary columns first.
    """
    if not isinstance(frame.index, pd.RangeIndex):
        frame = frame.reset_index()

    def number(value: Any) -> Any:
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.{digits}g}"
        return value

    return frame.style.hide(axis="index").format(number)


def mean_sem(summary: pd.DataFrame, metric: str, scale: float = 1.0, digits: int = 1) -> list[str]:
    """``"mean ± sem"`` per row of a :func:`largebatch.analysis.seed_summary` table, both
    times ``scale`` with ``digits`` decimals (the mean alone where the error is NaN)."""
    return [f"{scale * m:.{digits}f}" + (f" ± {scale * s:.{digits}f}" if not math.isnan(s) else "")
            for m, s in zip(summary[f"{metric}_mean"], summary[f"{metric}_sem"])]
