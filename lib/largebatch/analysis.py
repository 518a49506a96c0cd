"""Analysis shared by the chapters: sweeps, seed summaries, fits, verdicts, cached measurements.

The chapter notebooks stay thin: they build configurations with
:func:`batch_size_sweep`, run them through :mod:`largebatch.experiments`, summarize
the records over seeds with :func:`seed_summary`, and turn measured numbers into a
verdict with a criterion stated in advance (:func:`correlation_verdict`,
:func:`improvement_verdict`, :func:`closure_verdict`). Post-hoc measurements of a
finished run (sharpness, landscapes, spectra) are cached next to its record with
:func:`measure`, so re-executing a chapter does not recompute them.

Distances from the initialization (Hoffer et al. 2017) are fitted with a log law
(:func:`fit_log_law`) and, for comparison with a random walk, a power law
(:func:`fit_power_law`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, NamedTuple, Sequence

import numpy as np
import pandas as pd

from largebatch import experiments, run_cache
from largebatch.config import RunConfig

OUTCOMES = ("reproduced", "partly reproduced", "not reproduced", "inconclusive")

__all__ = [
    "Correlation", "Difference", "LogLawFit", "PowerLawFit", "Verdict", "all_verdicts", "batch_size_sweep",
    "closure_verdict", "combine_verdicts", "correlation_verdict", "difference", "distance_curve",
    "diverged_note", "exclude_diverged",
    "fit_log_law", "fit_power_law", "improvement_verdict", "margin_verdict", "measure", "ratio_verdict",
    "records_frame",
    "seed_summary", "spearman",
]


# ------------------------------------------------------------------ configurations


def batch_size_sweep(base: RunConfig, batch_sizes: Iterable[int], seeds: Iterable[int],
                     **changes: Any) -> list[RunConfig]:
    """``base`` with ``changes`` at every batch size and seed (batch sizes outer, seeds inner).

    Every other hyper-parameter stays as in ``base``: the same learning rate and
    epochs for every batch size unless ``base`` names a scaling rule.
    """
    batch_sizes, seeds = list(batch_sizes), list(seeds)
    if not batch_sizes or not seeds:
        raise ValueError("batch_sizes and seeds must not be empty")
    return [base.replace(batch_size=b, seed=s, **changes) for b in batch_sizes for s in seeds]


# ------------------------------------------------------------------ tables


def records_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per record (as :func:`experiments.results`) plus derived columns.

    Added: ``generalization_gap`` (train minus test accuracy), ``reached_target``
    (status ``target_reached``, or False when no target was set), ``epochs_run`` and
    ``model_name`` (the model plus its options, e.g. ``mnist1d_mlp (batch_norm=True)``).
    """
    records = list(records)
    frame = experiments.results(records)
    frame["epochs_run"] = [r["history"][-1]["epoch"] if r["history"] else 0 for r in records]
    frame["reached_target"] = frame["status"] == "target_reached"
    if "train_accuracy" in frame and "test_accuracy" in frame:
        frame["generalization_gap"] = frame["train_accuracy"] - frame["test_accuracy"]
    frame["model_name"] = [
        r["config"]["model"] + (" (" + ", ".join(f"{k}={v}" for k, v in sorted(r["config"]["model_options"].items())) + ")"
                                if r["config"]["model_options"] else "")
        for r in records]
    return frame


def exclude_diverged(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The rows of runs that did not diverge, and how many diverged rows were left out.

    A run is diverged when its ``status`` column says so (see ``train.fit``); a frame
    without a ``status`` column is returned whole.
    """
    if "status" not in frame:
        return frame, 0
    diverged = frame["status"] == "diverged"
    return frame[~diverged], int(diverged.sum())


def diverged_note(frame: pd.DataFrame) -> str:
    """A sentence for verdict texts and captions: how many runs diverged and were excluded
    (empty when none did)."""
    _, excluded = exclude_diverged(frame)
    if excluded == 0:
        return ""
    return f"{excluded} of {len(frame)} runs diverged and are excluded from the means."


def seed_summary(frame: pd.DataFrame, by: str | Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Mean, standard deviation, standard error and count of ``metrics`` per group (over seeds).

    Columns are ``<metric>_mean``, ``<metric>_std`` (ddof 1), ``<metric>_sem``
    (std / sqrt(n)) and ``<metric>_n``; std and sem are NaN for a single value,
    NaN values are left out. Diverged runs (``status`` column) are left out of every
    metric, and ``n_diverged`` counts them per group. Groups keep their order of first appearance.
    """
    by = [by] if isinstance(by, str) else list(by)
    missing = [m for m in [*by, *metrics] if m not in frame]
    if missing:
        raise KeyError(f"columns not in the table: {missing}")
    rows = []
    for key, group in frame.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        group, excluded = exclude_diverged(group)
        if "status" in frame:
            row["n_diverged"] = excluded
        for metric in metrics:
            values = pd.to_numeric(group[metric], errors="coerce").dropna()
            n = len(values)
            std = float(values.std(ddof=1)) if n > 1 else math.nan
            row[f"{metric}_mean"] = float(values.mean()) if n else math.nan
            row[f"{metric}_std"] = std
            row[f"{metric}_sem"] = std / math.sqrt(n) if n > 1 else math.nan
            row[f"{metric}_n"] = n
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ fits


class LogLawFit(NamedTuple):
    """``distance = a + b * ln(step)`` fitted by least squares; ``r2`` its coefficient of determination."""

    a: float
    b: float
    r2: float


class PowerLawFit(NamedTuple):
    """``distance = c * step ** exponent`` fitted in log-log space; ``r2`` there."""

    c: float
    exponent: float
    r2: float


def _checked_xy(steps: Sequence[float], values: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"steps and values must be 1-D of the same length, got {x.shape} and {y.shape}")
    if np.any(x <= 0):
        raise ValueError("steps must be positive (a log law is undefined at step 0)")
    if len(x) < 3 or len(np.unique(x)) < 2:
        raise ValueError(f"need at least 3 points at 2 distinct steps, got {len(x)}")
    return x, y


def _r2(y: np.ndarray, predicted: np.ndarray) -> float:
    total = float(((y - y.mean()) ** 2).sum())
    residual = float(((y - predicted) ** 2).sum())
    return 1.0 - residual / total if total > 0 else (1.0 if residual == 0 else 0.0)


def fit_log_law(steps: Sequence[float], distance: Sequence[float]) -> LogLawFit:
    """Least-squares fit of ``distance = a + b ln(step)`` (Hoffer et al. 2017, ultra-slow diffusion)."""
    x, y = _checked_xy(steps, distance)
    b, a = np.polyfit(np.log(x), y, 1)
    return LogLawFit(float(a), float(b), _r2(y, a + b * np.log(x)))


def fit_power_law(steps: Sequence[float], distance: Sequence[float]) -> PowerLawFit:
    """Fit ``distance = c step^exponent`` (a line in log-log space); a random walk has exponent 1/2."""
    x, y = _checked_xy(steps, distance)
    if np.any(y <= 0):
        raise ValueError("distances must be positive for a power-law fit")
    exponent, log_c = np.polyfit(np.log(x), np.log(y), 1)
    return PowerLawFit(float(np.exp(log_c)), float(exponent), _r2(np.log(y), log_c + exponent * np.log(x)))


def distance_curve(record: dict[str, Any]) -> pd.DataFrame:
    """Steps and ``||w_t - w_0||`` of a run made with ``track_distance=True``."""
    rows = [(row["step"], row["distance_from_init"]) for row in record["steps"] if "distance_from_init" in row]
    if not rows:
        raise ValueError("the record has no distances; run the configuration with track_distance=True")
    return pd.DataFrame(rows, columns=["step", "distance"])


# ------------------------------------------------------------------ statistics


class Correlation(NamedTuple):
    """Spearman rank correlation ``rho``, its two-sided p-value and the number of pairs."""

    rho: float
    p_value: float
    n: int


def spearman(x: Sequence[float], y: Sequence[float]) -> Correlation:
    """Spearman's rank correlation of paired values (NaN pairs dropped)."""
    from scipy import stats

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 3 or len(np.unique(x)) < 2 or len(np.unique(y)) < 2:
        return Correlation(math.nan, math.nan, int(len(x)))
    result = stats.spearmanr(x, y)
    return Correlation(float(result.statistic), float(result.pvalue), int(len(x)))


class Difference(NamedTuple):
    """``mean(a) - mean(b)`` and its standard error ``sqrt(s_a^2/n_a + s_b^2/n_b)``."""

    mean: float
    std_error: float


def difference(a: Sequence[float], b: Sequence[float]) -> Difference:
    """Difference of two groups' means (e.g. test accuracies over seeds) with Welch's standard error.

    NaN values (diverged runs) are left out. The error is NaN when a group has fewer
    than two values: one seed says nothing about the noise, so a verdict built on it
    comes out inconclusive rather than significant.
    """
    a, b = (np.asarray(v, dtype=float) for v in (a, b))
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        raise ValueError("both groups need at least one finite value")
    if len(a) < 2 or len(b) < 2:
        return Difference(float(a.mean() - b.mean()), math.nan)
    variance = float(a.var(ddof=1)) / len(a) + float(b.var(ddof=1)) / len(b)
    return Difference(float(a.mean() - b.mean()), math.sqrt(variance))


# ------------------------------------------------------------------ verdicts


@dataclass(frozen=True)
class Verdict:
    """The outcome of testing one claim against a criterion fixed before the runs."""

    claim: str
    outcome: str  # one of OUTCOMES
    criterion: str  # what was required, in words
    evidence: str  # the measured numbers, in words

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")

    def as_row(self) -> dict[str, str]:
        return {"claim": self.claim, "verdict": self.outcome, "criterion": self.criterion,
                "evidence": self.evidence}


def correlation_verdict(claim: str, x: Sequence[float], y: Sequence[float], *, quantity: str,
                        against: str = "batch size", min_rho: float = 0.5, alpha: float = 0.05,
                        min_points: int = 4) -> Verdict:
    """Claim "``y`` (``quantity``) grows with ``x`` (``against``)": Spearman rho >= ``min_rho``, p < ``alpha``.

    The p-value is two-sided. ``not reproduced`` otherwise; ``inconclusive`` with
    fewer than ``min_points`` valid pairs or fewer than two distinct values.
    """
    result = spearman(x, y)
    criterion = f"Spearman rho between {against} and {quantity} >= {min_rho} with p < {alpha}"
    if result.n < min_points or math.isnan(result.rho):
        return Verdict(claim, "inconclusive", criterion,
                       f"only {result.n} usable runs for {quantity}")
    evidence = f"rho = {result.rho:.2f}, p = {result.p_value:.2g} over {result.n} runs"
    outcome = "reproduced" if result.rho >= min_rho and result.p_value < alpha else "not reproduced"
    return Verdict(claim, outcome, criterion, evidence)


def improvement_verdict(claim: str, treated: Sequence[float], reference: Sequence[float], *,
                        quantity: str = "test accuracy", z: float = 2.0) -> Verdict:
    """Claim "``treated`` is higher than ``reference``": difference of means > ``z`` standard errors.

    ``not reproduced`` when it is lower by more than ``z`` standard errors;
    ``inconclusive`` when the difference is within the seed noise.
    """
    diff = difference(treated, reference)
    criterion = f"mean {quantity} higher by more than {z:g} standard errors over seeds"
    evidence = f"difference {100 * diff.mean:+.1f} ± {100 * diff.std_error:.1f} points"
    if diff.mean > z * diff.std_error:
        outcome = "reproduced"
    elif diff.mean < -z * diff.std_error:
        outcome = "not reproduced"
    else:
        outcome = "inconclusive"
    return Verdict(claim, outcome, criterion, evidence)


def closure_verdict(claim: str, baseline: Sequence[float], no_fix: Sequence[float],
                    fixed: Sequence[float], *, z: float = 2.0) -> Verdict:
    """Claim "the fix closes the gap between ``no_fix`` and the ``baseline``" (accuracies over seeds).

    * ``inconclusive``: no gap, ``baseline - no_fix`` within ``z`` standard errors;
    * ``reproduced``: the fix is not worse than the baseline by more than ``z``
      standard errors (the gap is closed);
    * ``partly reproduced``: the fix beats ``no_fix`` by more than ``z`` standard
      errors but stays below the baseline;
    * ``not reproduced``: otherwise.
    """
    gap = difference(baseline, no_fix)
    remaining = difference(baseline, fixed)
    gained = difference(fixed, no_fix)
    closed = gained.mean / gap.mean if gap.mean != 0 else math.nan
    criterion = (f"gap beyond {z:g} standard errors, and the fixed run within {z:g} standard errors "
                 "of the baseline (partly: better than no fix by that margin)")
    evidence = (f"gap {100 * gap.mean:.1f} ± {100 * gap.std_error:.1f} points, remaining "
                f"{100 * remaining.mean:.1f} ± {100 * remaining.std_error:.1f} points "
                f"({100 * closed:.0f}% closed)")
    if gap.mean <= z * gap.std_error:
        outcome = "inconclusive"
    elif remaining.mean <= z * remaining.std_error:
        outcome = "reproduced"
    elif gained.mean > z * gained.std_error:
        outcome = "partly reproduced"
    else:
        outcome = "not reproduced"
    return Verdict(claim, outcome, criterion, evidence)


def margin_verdict(claim: str, treated: Sequence[float], reference: Sequence[float], *, quantity: str,
                   margin: float = 0.0, higher_is_better: bool = True, z: float = 2.0,
                   unit: str = "") -> Verdict:
    """Claim "``treated`` is better than ``reference`` by more than ``-margin``" (values over seeds).

    ``margin = 0``: better (e.g. a lower eigenvalue with ``higher_is_better=False``);
    ``margin > 0``: not worse by ``margin`` or more (non-inferiority, e.g. "within 1
    point": ``margin=0.01`` on accuracies). ``reproduced`` when the difference in the
    good direction exceeds ``-margin`` by more than ``z`` standard errors, ``not
    reproduced`` when it falls below ``-margin`` by more than that, else ``inconclusive``.
    """
    diff = difference(treated, reference)
    gain = diff.mean if higher_is_better else -diff.mean
    direction = "higher" if higher_is_better else "lower"
    criterion = (f"mean {quantity} {direction} than the reference" if margin == 0 else
                 f"mean {quantity} not worse than the reference by {margin:g}{unit} or more")
    criterion += f", beyond {z:g} standard errors over seeds"
    evidence = f"difference {diff.mean:+.4g} ± {diff.std_error:.2g}{unit}"
    if gain + margin > z * diff.std_error:
        outcome = "reproduced"
    elif gain + margin < -z * diff.std_error:
        outcome = "not reproduced"
    else:
        outcome = "inconclusive"
    return Verdict(claim, outcome, criterion, evidence)


def ratio_verdict(claim: str, numerator: Sequence[float], denominator: Sequence[float], *,
                  quantity: str, min_ratio: float) -> Verdict:
    """Claim "``mean(numerator) / mean(denominator)`` is at least ``min_ratio``" (e.g. update savings).

    For counts that barely vary over seeds (parameter updates, gradient evaluations):
    the ratio of means is compared with the threshold, no significance test.
    """
    a, b = (np.asarray(v, dtype=float) for v in (numerator, denominator))
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    criterion = f"{quantity} at least {min_ratio:g}x"
    if len(a) == 0 or len(b) == 0 or b.mean() <= 0:
        return Verdict(claim, "inconclusive", criterion, f"no usable runs for {quantity}")
    ratio = float(a.mean() / b.mean())
    evidence = f"{ratio:.2f}x (means {a.mean():.4g} / {b.mean():.4g})"
    return Verdict(claim, "reproduced" if ratio >= min_ratio else "not reproduced", criterion, evidence)


def all_verdicts(claim: str, verdicts: Sequence[Verdict]) -> Verdict:
    """One verdict for a claim made of parts (e.g. "as accurate *and* fewer updates").

    Every part reproduced: ``reproduced``; some: ``partly reproduced``; none:
    ``not reproduced``, or ``inconclusive`` when no part was decided. Unlike
    :func:`combine_verdicts` (one criterion over several settings), the criteria
    and evidence of every part are kept.
    """
    if not verdicts:
        raise ValueError("no verdicts to combine")
    outcomes = [v.outcome for v in verdicts]
    reproduced = sum(o == "reproduced" for o in outcomes)
    if reproduced == len(outcomes):
        outcome = "reproduced"
    elif reproduced or "partly reproduced" in outcomes:
        outcome = "partly reproduced"
    elif "not reproduced" in outcomes:
        outcome = "not reproduced"
    else:
        outcome = "inconclusive"
    return Verdict(claim, outcome, "; ".join(v.criterion for v in verdicts),
                   "; ".join(f"{v.evidence} ({v.outcome})" for v in verdicts))


def combine_verdicts(claim: str, verdicts: Sequence[Verdict]) -> Verdict:
    """One verdict over several settings: all reproduced, none, or some (``partly``)."""
    if not verdicts:
        raise ValueError("no verdicts to combine")
    decided = [v for v in verdicts if v.outcome != "inconclusive"]
    reproduced = sum(v.outcome == "reproduced" for v in decided)
    if not decided:
        outcome = "inconclusive"
    elif reproduced == len(decided) and len(decided) == len(verdicts):
        outcome = "reproduced"
    elif reproduced == 0 and not any(v.outcome == "partly reproduced" for v in decided):
        outcome = "not reproduced"
    else:
        outcome = "partly reproduced"
    evidence = f"{reproduced} of {len(verdicts)} settings reproduced"
    return Verdict(claim, outcome, verdicts[0].criterion, evidence)


# ------------------------------------------------------------------ cached measurements


def measure(config: RunConfig, name: str, compute: Callable[[], Any],
            cache_dir: str | os.PathLike | None = None) -> Any:
    """The result of ``compute()`` for a finished run, cached next to its record.

    ``name`` must say everything the result depends on besides the run (e.g.
    ``"keskar_eps0.001_iter10"``). Results are saved with ``torch.save`` (tensors,
    numbers, strings, lists and dicts of them) behind a checksum and read back with
    ``weights_only=True`` (:func:`run_cache.write_checked`); the file is written
    atomically, so an interrupted measurement is simply recomputed, and a damaged one
    is moved to the cache's quarantine folder and recomputed.
    """
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise ValueError(f"measurement name must be a plain file name, got {name!r}")
    folder = experiments.run_dir(config, cache_dir)
    if not (folder / experiments.RECORD_FILE).exists():
        raise FileNotFoundError(f"no finished run at {folder}; call experiments.run(config) first")
    path = folder / run_cache.MEASUREMENTS_DIR / f"{name}.pt"
    if path.exists():
        try:
            return run_cache.read_checked(path)
        except run_cache.CorruptEntryError as error:  # moved aside and measured again
            run_cache.quarantine(error.problem, folder.parent)
    value = compute()
    run_cache.write_checked(path, value)
    return value
