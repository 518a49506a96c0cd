"""What every study module shares: notebook parameters in, labelled runs, the design table.

* :func:`parameters` -- the chapter's parameters from a notebook namespace, type-checked
  against their hints, as the keyword arguments of the study's ``Design``.
* :class:`LabelledRun` -- one run of a design: labels (they become table columns) and
  its :class:`~largebatch.config.RunConfig`; :func:`unique_configs` trains each once.
* :func:`design_table` -- a design as the chapter shows it: one row per setting (the
  runs that differ only by their seed), the fields that differ between settings, the
  seeds; the fields every run shares go to the caption.
* :func:`use_threads` -- torch's CPU threads, set before a study computes anything.
* :func:`restrict_to_seeds` -- a study's tables as if only some seeds had been run, for
  the leave-one-seed-out stability of its verdicts
  (:func:`largebatch.analysis.leave_one_out`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

import pandas as pd
import torch
from pandas.io.formats.style import Styler

from largebatch import notebook
from largebatch.config import ConfigError, RunConfig
from largebatch.data import DataBundle

__all__ = ["LabelledRun", "design_table", "network_name", "parameters", "restrict_to_seeds", "unique_configs",
           "use_threads"]

T = TypeVar("T")

# Shown in the caption whenever every run shares them, even at their default value.
CORE_FIELDS = ("dataset", "num_samples", "model", "model_options", "batch_size", "epochs", "lr",
               "momentum", "schedule", "augmentation")


def parameters(namespace: Mapping[str, Any], design: type) -> dict[str, Any]:
    """The fields of the dataclass ``design`` taken from a notebook namespace (``globals()``).

    Every annotated variable is first checked against its type hint
    (:func:`largebatch.notebook.check_parameters`); a field the notebook does not set
    is a :class:`~largebatch.config.ConfigError` naming it.
    """
    notebook.check_parameters(namespace)
    names = [f.name for f in dataclasses.fields(design) if f.init]
    missing = [name for name in names if name not in namespace]
    if missing:
        raise ConfigError(f"parameter {missing[0]} is not set (the study needs {', '.join(missing)})")
    return {name: namespace[name] for name in names}


def use_threads(num_threads: int) -> None:
    """Set torch's CPU threads (0 keeps torch's default)."""
    if num_threads:
        torch.set_num_threads(num_threads)


@dataclass(frozen=True)
class LabelledRun:
    """One run of a design: its labels (they become table columns) and its configuration."""

    labels: dict[str, Any]
    config: RunConfig


def unique_configs(runs: Iterable[LabelledRun | RunConfig]) -> list[RunConfig]:
    """The distinct configurations of some runs, in first-seen order (to train each once)."""
    seen: dict[str, RunConfig] = {}
    for run in runs:
        config = run.config if isinstance(run, LabelledRun) else run
        seen.setdefault(config.key(), config)
    return list(seen.values())


def network_name(config: RunConfig) -> str:
    """The network of a run with its options, e.g. ``mnist1d_mlp (activation=relu)``."""
    options = _text(config.model_options) if config.model_options else ""
    return config.model + (f" ({options})" if options else "")


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "defaults"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return "" if value is None else str(value)


def design_table(runs: Sequence[LabelledRun], bundle: DataBundle | None = None,
                 fields: Sequence[str] | None = None) -> Styler:
    """The runs of a design, one row per setting (the runs that differ only by their seed).

    Columns: the labels (but ``seed``), then every configuration field that differs
    between the runs and is not a label already (only those of ``fields`` when given: a
    design whose labels already say the rest), then the seeds. Fields shared by every
    run (those set away from their default, and the core ones of :data:`CORE_FIELDS`)
    make the caption, after the size of ``bundle`` (the data) when given.
    """
    if not runs:
        raise ValueError("a design has at least one run")
    configs = [run.config.to_dict() for run in runs]
    defaults = RunConfig().to_dict()
    labels = list(dict.fromkeys(k for run in runs for k in run.labels if k != "seed"))
    differing = [name for name in defaults if name != "seed" and name not in labels
                 and len({_text(c[name]) for c in configs}) > 1]
    varying = [name for name in differing if fields is None or name in fields]
    shared = {name: configs[0][name] for name in defaults
              if name != "seed" and name not in labels and name not in differing
              and (name in CORE_FIELDS or configs[0][name] != defaults[name])}
    settings: dict[tuple[str, ...], dict[str, Any]] = {}
    for run, config in zip(runs, configs):
        row = {**{k: _text(run.labels.get(k)) for k in labels}, **{k: _text(config[k]) for k in varying}}
        entry = settings.setdefault(tuple(row.values()), {**row, "seeds": []})
        if config["seed"] not in entry["seeds"]:
            entry["seeds"].append(config["seed"])
    frame = pd.DataFrame([{**row, "seeds": _text(row["seeds"])} for row in settings.values()])
    frame.columns = [name.replace("_", " ") for name in frame.columns]
    caption = (f"{bundle.name}: {bundle.num_train} training and {bundle.num_test} test samples. "
               if bundle is not None else "")
    caption += "Every run: " + "; ".join(f"{k.replace('_', ' ')} {_text(v)}" for k, v in shared.items())
    return notebook.show(frame).set_caption(caption).set_table_styles(
        [{"selector": "caption", "props": "caption-side: top; text-align: left"},
         {"selector": "td, th", "props": "white-space: nowrap"}], overwrite=False)


def restrict_to_seeds(tables: T, seeds: Sequence[int], *,
                      recompute: Callable[[T], Mapping[str, Any]] | None = None,
                      unchanged: Mapping[str, str] | None = None) -> T:
    """A study's ``tables`` (a dataclass) as if only the runs of ``seeds`` had been made.

    Every field that is a DataFrame with a ``seed`` column keeps the rows of those seeds
    (in their order). Every other field must be named, either by ``recompute``, a
    function of the filtered tables that returns the fields to compute again from the
    kept runs (seed statistics, fits over per-seed curves), or in ``unchanged``, each
    with the reason it does not depend on the seed list (the design; the first seed's
    detail solutions, which no verdict reads) -- a field that is neither is a
    ``TypeError``, so no seed-dependent input of a verdict is left whole by mistake,
    which would make its verdict "stable" without a test. A seed the frames do not hold
    is a ``ValueError``.
    """
    if not dataclasses.is_dataclass(tables):
        raise TypeError(f"tables must be a dataclass instance, got {type(tables).__name__}")
    seeds, unchanged = [int(s) for s in seeds], dict(unchanged or {})
    names = {f.name for f in dataclasses.fields(tables)}
    if set(unchanged) - names:
        raise TypeError(f"unchanged names fields the tables do not have: {sorted(set(unchanged) - names)}")
    filtered: dict[str, Any] = {}
    present: set[int] = set()
    for field in dataclasses.fields(tables):
        value = getattr(tables, field.name)
        if isinstance(value, pd.DataFrame) and "seed" in value.columns:
            present.update(int(s) for s in value["seed"].unique())
            filtered[field.name] = value[value["seed"].isin(seeds)]
    unknown = sorted(set(seeds) - present)
    if unknown:
        raise ValueError(f"seeds {unknown} are not in the tables (seeds {sorted(present)})")
    restricted = dataclasses.replace(tables, **filtered)
    computed = dict(recompute(restricted)) if recompute is not None else {}
    both = sorted(set(computed) & (set(filtered) | set(unchanged)))
    if both:
        raise TypeError(f"fields {both} are recomputed and also filtered by seed or left unchanged")
    missing = [f.name for f in dataclasses.fields(tables)
               if f.name not in filtered and f.name not in computed and f.name not in unchanged]
    if missing:
        raise TypeError(f"fields {missing} hold no seed column: recompute them from the kept runs or say "
                        "in unchanged why they do not depend on the seeds")
    return dataclasses.replace(restricted, **computed)
