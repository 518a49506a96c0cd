"""Statistics and verdicts shared by every chapter, plus sweeps, fits and cached measurements.

The one place where measured numbers become verdicts. The chapter notebooks build
configurations with :func:`batch_size_sweep`, run them through
:mod:`largebatch.experiments`, summarize the records over seeds with
:func:`seed_summary` (diverged runs left out and counted), compare groups with
:func:`difference` (Welch), :func:`paired_difference` (two arms sharing each seed's
initialization; values labelled by seed, e.g. with :func:`by_seed`) or :func:`spearman`,
and turn the numbers into a :class:`Verdict` on a claim of :mod:`largebatch.claims`
with a criterion stated in advance (:func:`correlation_verdict`,
:func:`difference_verdict`, :func:`improvement_verdict`, :func:`margin_verdict`,
:func:`ratio_verdict`, :func:`closure_verdict`, :func:`constant_verdict`,
:func:`combine_verdicts`); each criterion names the test it used. A chapter hands
:func:`record_verdicts` a function of the seeds that computes its verdicts:
:func:`leave_one_out` recomputes them with every seed left out in turn and marks a
verdict that any omission changes as fragile; the verdicts, their stability and the
machine they were computed on (:mod:`largebatch.provenance`) go to the file the
reproduction summary reads, and :func:`verdict_table` shows them. Post-hoc
measurements of a finished run (sharpness, landscapes, spectra) are cached next to
its record with :func:`measure`, so re-executing a chapter does not recompute them.

Distances from the initialization (Hoffer et al. 2017) are fitted with a log law
(:func:`fit_log_law`) and, for comparison with a random walk, a power law
(:func:`fit_power_law`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd

from largebatch import claims, experiments, run_cache
from largebatch.config import RunConfig
from largebatch.user_input import check_seeds

NOT_REPRODUCED = "not reproduced at this scale"
MIN_SEEDS = 3  # a verdict resting on fewer seeds is recorded as inconclusive
OUTCOMES = ("reproduced", "partly reproduced", NOT_REPRODUCED, "inconclusive")

__all__ = [
    "FRAGILE", "MIN_SEEDS", "NOT_APPLICABLE", "NOT_REPRODUCED", "OUTCOMES", "OUTCOME_COLOURS", "OUTCOME_MARKS",
    "PAIRED", "STABILITY_RULE", "STABLE", "UNTESTED", "WELCH", "Correlation", "Difference", "LogLawFit",
    "Omission", "PowerLawFit", "Stability", "Verdict", "batch_size_effect", "batch_size_sweep", "by_seed",
    "closure_verdict", "combine_verdicts", "compare", "constant_verdict", "correlation_verdict",
    "difference", "difference_of_differences", "difference_verdict", "distance_curve",
    "fit_log_law", "fit_power_law", "improvement_verdict", "leave_one_out", "margin_verdict", "measure",
    "outcome_label", "outcome_style", "paired_difference", "ratio_verdict", "record_verdicts",
    "records_frame", "seed_independent", "seed_summary", "select", "spearman", "spread_of_means",
    "verdict_table",
]


# ------------------------------------------------------------------ configurations


def batch_size_sweep(base: RunConfig, batch_sizes: Iterable[int], seeds: Iterable[int],
                     **changes: Any) -> list[RunConfig]:
    """``base`` with ``changes`` at every batch size and seed (batch sizes outer, seeds inner).

    Every other hyper-parameter stays as in ``base``: the same learning rate and
    epochs for every batch size unless ``base`` names a scaling rule.
    """
    batch_sizes, seeds = list(batch_sizes), check_seeds("seeds", list(seeds))
    if not batch_sizes:
        raise ValueError("batch_sizes must not be empty")
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
    frame["model_name"] = [_model_name(r["config"]) for r in records]
    return frame


def _model_name(config: dict[str, Any]) -> str:
    options = ", ".join(f"{k}={v}" for k, v in sorted(config["model_options"].items()))
    return config["model"] + (f" ({options})" if options else "")


def seed_summary(frame: pd.DataFrame, by: str | Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Mean, standard deviation, standard error and count of ``metrics`` per group (over seeds).

    Columns are ``<metric>_mean``, ``<metric>_std`` (ddof 1), ``<metric>_sem``
    (std / sqrt(n)), ``<metric>_n`` and ``excluded``: rows whose ``status`` is
    ``"diverged"`` are left out of every statistic and counted there. Remaining NaN
    values are left out too; std and sem are NaN for a single value. Groups keep their
    order of first appearance.
    """
    by = [by] if isinstance(by, str) else list(by)
    missing = [m for m in [*by, *metrics] if m not in frame]
    if missing:
        raise KeyError(f"columns not in the table: {missing}")
    diverged = (frame["status"] == "diverged") if "status" in frame else pd.Series(False, frame.index)
    rows = []
    for key, group in frame.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        _check_distinct_runs(group, f"the group {row}")
        kept = group[~diverged.loc[group.index]]
        for metric in metrics:
            values = pd.to_numeric(kept[metric], errors="coerce").dropna()
            n = len(values)
            std = float(values.std(ddof=1)) if n > 1 else math.nan
            row[f"{metric}_mean"] = float(values.mean()) if n else math.nan
            row[f"{metric}_std"] = std
            row[f"{metric}_sem"] = std / math.sqrt(n) if n > 1 else math.nan
            row[f"{metric}_n"] = n
        row["excluded"] = int(len(group) - len(kept))
        rows.append(row)
    return pd.DataFrame(rows)


def select(frame: pd.DataFrame, **where: Any) -> pd.DataFrame:
    """Rows whose columns equal the given values (floats compared with ``np.isclose``)."""
    mask = pd.Series(True, index=frame.index)
    for column, value in where.items():
        if column not in frame.columns:
            raise KeyError(f"no column {column!r}; columns: {list(frame.columns)}")
        if isinstance(value, float):
            mask &= np.isclose(frame[column].astype(float), value)
        else:
            mask &= frame[column] == value
    return frame[mask]


def by_seed(frame: pd.DataFrame, metric: str, **where: Any) -> pd.Series:
    """``metric`` of the rows matching ``where``, indexed by seed (for :func:`paired_difference`).

    ``ValueError`` when a seed has several rows there: the selection must name one run per seed.
    """
    rows = select(frame, **where)
    repeated = sorted(set(rows["seed"][rows["seed"].duplicated()]))
    if repeated:
        raise ValueError(f"seeds {repeated} have several rows matching {where}; name one run per seed")
    return pd.Series(rows[metric].to_numpy(dtype=float), index=rows["seed"].to_numpy(), name=metric)


def batch_size_effect(frame: pd.DataFrame, metric: str, small: int, large: int, *,
                      paired: bool = False, **where: Any) -> Difference:
    """``metric`` at batch size ``large`` minus at ``small`` over the rows matching ``where``:
    Welch's :func:`difference`, or with ``paired`` the :func:`paired_difference` by seed
    (the two batch sizes start from the same initialization at each seed)."""
    if paired:
        return paired_difference(by_seed(frame, metric, batch_size=large, **where),
                                 by_seed(frame, metric, batch_size=small, **where))
    rows = select(frame, **where)
    samples = {size: select(rows, batch_size=size) for size in (large, small)}
    for size, sample in samples.items():
        _check_distinct_runs(sample, f"batch size {size}" + (f" where {where}" if where else ""))
    return difference(samples[large][metric], samples[small][metric])


def _check_distinct_runs(sample: pd.DataFrame, what: str) -> None:
    """Fail when a sample of runs (rows with a ``key`` column) holds one run more than once:
    a repeated seed counts one run several times and fakes a seed noise of zero."""
    if "key" not in sample:
        return
    repeated = sample["key"][sample["key"].duplicated()].unique().tolist()
    if repeated:
        seeds = sorted(set(sample["seed"])) if "seed" in sample else "?"
        raise ValueError(f"{what} holds run {repeated[0]} {int((sample['key'] == repeated[0]).sum())} times "
                         f"(seeds {seeds}): statistics over seeds need distinct runs; are seeds repeated?")


def spread_of_means(frame: pd.DataFrame, metric: str, by: str = "batch_size", **where: Any) -> float:
    """Largest minus smallest group mean of ``metric`` (groups ``by``), over rows matching ``where``."""
    means = select(frame, **where).groupby(by)[metric].mean().dropna()
    if means.empty:
        raise ValueError(f"no finite {metric} among the rows matching {where}")
    return float(means.max() - means.min())


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
    """Spearman rank correlation ``rho``, its two-sided p-value, the number of pairs used
    and of pairs left out (NaN: diverged runs)."""

    rho: float
    p_value: float
    n: int
    excluded: int = 0


def spearman(x: Sequence[float], y: Sequence[float]) -> Correlation:
    """Spearman's rank correlation of paired values (NaN pairs dropped and counted)."""
    from scipy import stats

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    excluded = int((~keep).sum())
    x, y = x[keep], y[keep]
    if len(x) < 3 or len(np.unique(x)) < 2 or len(np.unique(y)) < 2:
        return Correlation(math.nan, math.nan, int(len(x)), excluded)
    result = stats.spearmanr(x, y)
    return Correlation(float(result.statistic), float(result.pvalue), int(len(x)), excluded)


WELCH = "Welch test"
PAIRED = "paired test by seed"


class Difference(NamedTuple):
    """``mean_a - mean_b`` with its standard error over seeds, and the test that gave it.

    ``test`` is :data:`WELCH` (two independent samples, error
    ``sqrt(s_a^2/n_a + s_b^2/n_b)``) or :data:`PAIRED` (the per-seed differences of two
    arms sharing each seed's initialization, error ``s_d/sqrt(n)``; ``n_a = n_b`` = the
    pairs). The error is NaN when a sample has fewer than two values; ``excluded``
    counts the NaN values (diverged runs) left out.
    """

    mean: float
    std_error: float
    mean_a: float
    mean_b: float
    n_a: int
    n_b: int
    excluded: int = 0
    test: str = WELCH

    @property
    def z(self) -> float:
        """The difference in standard errors (NaN when the error is unknown)."""
        return self.mean / self.std_error if math.isfinite(self.std_error) else math.nan


def _standard_error(error: float) -> float:
    """``error``, or NaN when it is 0: identical values over seeds (coarse accuracies of tiny
    test sets, or runs the seed does not change) give no noise estimate, and a difference
    over a zero error is no evidence: the verdicts built on it come out inconclusive."""
    return math.nan if error == 0 else error


def difference(a: Sequence[float], b: Sequence[float]) -> Difference:
    """Difference of two groups' means (e.g. test accuracies over seeds) with Welch's standard error.

    NaN values (diverged runs) are left out and counted. The error is NaN when a group
    has fewer than two values: one seed says nothing about the noise, so a verdict
    built on it comes out inconclusive rather than significant; so is it when both
    groups are constant (zero variance: no noise estimate).
    """
    a, b = (np.asarray(v, dtype=float) for v in (a, b))
    excluded = int((~np.isfinite(a)).sum() + (~np.isfinite(b)).sum())
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        raise ValueError("both groups need at least one finite value")
    error = (_standard_error(math.sqrt(float(a.var(ddof=1)) / len(a) + float(b.var(ddof=1)) / len(b)))
             if len(a) > 1 and len(b) > 1 else math.nan)
    return Difference(float(a.mean() - b.mean()), error, float(a.mean()), float(b.mean()),
                      len(a), len(b), excluded)


def _labelled(values: Mapping[int, float] | pd.Series, name: str) -> pd.Series:
    """``values`` as a float Series indexed by seed; ``ValueError`` for unlabelled or repeated seeds."""
    if not isinstance(values, (Mapping, pd.Series)):
        raise TypeError(f"a paired comparison needs {name} labelled by seed (a pandas Series indexed "
                        f"by seed, e.g. from analysis.by_seed, or a dict), got {type(values).__name__}")
    series = pd.Series(values, dtype=float)
    if series.index.has_duplicates:
        raise ValueError(f"seeds repeated in {name}: {sorted(series.index[series.index.duplicated()])}")
    return series


def _paired_arms(a: Mapping[int, float] | pd.Series,
                 b: Mapping[int, float] | pd.Series) -> tuple[pd.Series, pd.Series]:
    """Both arms labelled by seed, in seed order; ``ValueError`` unless they name the same seeds."""
    a, b = _labelled(a, "the first arm"), _labelled(b, "the second arm")
    unmatched = sorted(set(a.index) ^ set(b.index))
    if unmatched:
        raise ValueError(f"a paired comparison needs the same seeds in both arms; unmatched: {unmatched}")
    return a.sort_index(), b.sort_index()


def paired_difference(a: Mapping[int, float] | pd.Series, b: Mapping[int, float] | pd.Series) -> Difference:
    """Mean of the per-seed differences ``a[s] - b[s]`` with the paired standard error ``s_d/sqrt(n)``.

    For two arms that share each seed's initialization (same seed, same network at step
    0), so that the seed's luck cancels in the difference. ``a`` and ``b`` are labelled by
    seed and must name the same seeds (a seed in one arm only is a ``ValueError``, not a
    smaller sample); a pair with a NaN (diverged run) is left out and counted. The error
    is NaN with one pair or identical differences (no noise estimate). ``z`` equals the
    paired t statistic.
    """
    a, b = _paired_arms(a, b)
    keep = np.isfinite(a.to_numpy()) & np.isfinite(b.to_numpy())
    excluded = int((~np.isfinite(a.to_numpy())).sum() + (~np.isfinite(b.to_numpy())).sum())
    if not keep.any():
        raise ValueError("no seed has a finite value in both arms")
    first, second = a.to_numpy()[keep], b.to_numpy()[keep]
    deltas = first - second
    n = len(deltas)
    error = _standard_error(float(deltas.std(ddof=1)) / math.sqrt(n)) if n > 1 else math.nan
    return Difference(float(deltas.mean()), error, float(first.mean()), float(second.mean()), n, n,
                      excluded, PAIRED)


def compare(a: Sequence[float] | pd.Series, b: Sequence[float] | pd.Series, *, paired: bool = False) -> Difference:
    """:func:`paired_difference` of ``a`` and ``b`` when ``paired``, else :func:`difference` (Welch)."""
    return paired_difference(a, b) if paired else difference(a, b)


def difference_of_differences(a1: Sequence[float], b1: Sequence[float], a2: Sequence[float],
                              b2: Sequence[float], *, paired: bool = False) -> Difference:
    """``(mean a1 - mean b1) - (mean a2 - mean b2)``.

    Welch (default): four independent samples; ``mean_a`` and ``mean_b`` are the two
    inner differences, the error is Welch's over the four variances, ``n_a``/``n_b`` the
    smaller sample of each inner difference. ``paired``: the four arms share each seed's
    initialization (all labelled by seed), and the paired test runs on the per-seed
    inner differences ``a1 - b1`` and ``a2 - b2``.
    """
    if paired:
        first, second = (x - y for x, y in (_paired_arms(a1, b1), _paired_arms(a2, b2)))
        return paired_difference(first, second)
    first, second = difference(a1, b1), difference(a2, b2)
    error = math.sqrt(first.std_error ** 2 + second.std_error ** 2)
    return Difference(first.mean - second.mean, error, first.mean, second.mean,
                      min(first.n_a, first.n_b), min(second.n_a, second.n_b),
                      first.excluded + second.excluded)


# ------------------------------------------------------------------ verdicts


STABLE, FRAGILE, UNTESTED, NOT_APPLICABLE = "stable", "fragile", "untested", "not applicable"
STABILITIES = (STABLE, FRAGILE, UNTESTED, NOT_APPLICABLE)


@dataclass(frozen=True)
class Omission:
    """A verdict recomputed with one seed left out: its outcome, value, spread and evidence then."""

    seed: int
    outcome: str
    value: float = math.nan
    spread: float = math.nan
    evidence: str = ""


@dataclass(frozen=True)
class Stability:
    """Whether a verdict survives leaving out each seed in turn (:func:`leave_one_out`).

    ``status`` is :data:`STABLE` (no omission changes the outcome), :data:`FRAGILE`
    (``changed_by`` names the seeds whose omission changed it; ``omissions`` says to
    what), :data:`UNTESTED` (``note`` says why) or :data:`NOT_APPLICABLE` (the verdict
    does not rest on the seed list, e.g. on one run per network: no omission can change
    it, ``note`` says why; see :func:`seed_independent`).
    """

    status: str
    omissions: tuple[Omission, ...] = ()
    changed_by: tuple[int, ...] = ()
    note: str = ""

    def __post_init__(self) -> None:
        if self.status not in STABILITIES:
            raise ValueError(f"stability must be one of {STABILITIES}, got {self.status!r}")

    @property
    def label(self) -> str:
        """``stable``, ``untested``, ``not applicable`` or e.g. ``fragile (without seed 3)``."""
        if self.status != FRAGILE:
            return self.status
        seeds = ", ".join(str(s) for s in self.changed_by)
        return f"fragile (without seed{'s' if len(self.changed_by) > 1 else ''} {seeds})"


def _nan_for_none(value: float | None) -> float:
    return math.nan if value is None else float(value)


NOT_RECOMPUTED = Stability(UNTESTED, note="given as a value, not recomputed without each seed")


@dataclass(frozen=True)
class Verdict:
    """The outcome of testing one registered claim against a criterion fixed before the runs.

    ``setting`` names the setting of a per-setting verdict ("" for the claim's overall
    verdict); ``value`` is the deciding number (e.g. a difference or a correlation),
    ``spread`` its standard error over seeds (NaN when not defined), ``measured`` says
    what the value is, ``excluded`` counts diverged runs left out, ``stability`` says
    whether it survives leaving out each seed (set by :func:`leave_one_out`).
    """

    claim: str  # an id of largebatch.claims.CLAIMS
    outcome: str  # one of OUTCOMES
    criterion: str  # what was required, in words
    evidence: str  # the measured numbers, in words
    setting: str = ""
    value: float = math.nan
    spread: float = math.nan
    measured: str = ""
    excluded: int = 0
    stability: Stability = NOT_RECOMPUTED

    def __post_init__(self) -> None:
        claims.claim(self.claim)
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Verdict:
        """The verdict of one row of a verdict file (``null`` numbers back to NaN)."""
        fields = {k: v for k, v in row.items() if k in cls.__dataclass_fields__}
        stability = dict(fields.get("stability") or asdict(NOT_RECOMPUTED))
        stability["omissions"] = tuple(
            Omission(o["seed"], o["outcome"], _nan_for_none(o.get("value")), _nan_for_none(o.get("spread")),
                     o.get("evidence", ""))
            for o in stability.get("omissions", ()))
        stability["changed_by"] = tuple(stability.get("changed_by", ()))
        return cls(**{**fields, "value": _nan_for_none(fields.get("value")),
                      "spread": _nan_for_none(fields.get("spread")), "stability": Stability(**stability)})

    def as_row(self) -> dict[str, Any]:
        return {"claim": self.claim, "setting": self.setting, "verdict": self.outcome,
                "stability": self.stability.label, "value": self.value, "spread": self.spread,
                "excluded": self.excluded, "criterion": self.criterion, "evidence": self.evidence}


def _runs(diff: Difference) -> str:
    """The sample sizes, and why there is no error estimate when there is none."""
    runs = f"{diff.n_a} pairs" if diff.test == PAIRED else f"{diff.n_a} vs {diff.n_b} runs"
    if math.isnan(diff.std_error):
        runs += "; zero variance over seeds, no error estimate" if min(diff.n_a, diff.n_b) > 1 else \
            "; one value a side, no error estimate"
    return runs


def _exclusions(count: int) -> str:
    return f"; {count} diverged run{'s' if count != 1 else ''} excluded" if count else ""


def correlation_verdict(claim: str, x: Sequence[float], y: Sequence[float], *, quantity: str,
                        against: str = "batch size", min_rho: float = 0.5, alpha: float = 0.05,
                        min_points: int = 4, setting: str = "") -> Verdict:
    """Claim "``y`` (``quantity``) grows with ``x`` (``against``)": Spearman rho >= ``min_rho``, p < ``alpha``.

    The p-value is two-sided. Not reproduced otherwise; ``inconclusive`` with fewer
    than ``min_points`` valid pairs or fewer than two distinct values.
    """
    result = spearman(x, y)
    criterion = (f"Spearman rho between {against} and {quantity} >= {min_rho} with p < {alpha} "
                 "(two-sided Spearman test)")
    measured = f"Spearman rho, {against} vs {quantity}"
    if result.n < min_points or math.isnan(result.rho):
        return Verdict(claim, "inconclusive", criterion,
                       f"only {result.n} usable runs for {quantity}{_exclusions(result.excluded)}",
                       setting, measured=measured, excluded=result.excluded)
    evidence = (f"rho = {result.rho:.2f}, p = {result.p_value:.2g} over {result.n} runs"
                f"{_exclusions(result.excluded)}")
    outcome = "reproduced" if result.rho >= min_rho and result.p_value < alpha else NOT_REPRODUCED
    return Verdict(claim, outcome, criterion, evidence, setting, result.rho, math.nan, measured,
                   result.excluded)


def difference_verdict(claim: str, diff: Difference, *, expected_sign: int = 1,
                       quantity: str = "test accuracy", z: float = 2.0, scale: float = 100.0,
                       unit: str = "points", setting: str = "") -> Verdict:
    """Claim "``diff`` has the sign ``expected_sign``": beyond ``z`` standard errors that way.

    Not reproduced when it is beyond ``z`` standard errors the other way;
    ``inconclusive`` within the seed noise (or when the error is unknown). The
    evidence shows the difference times ``scale`` in ``unit``.
    """
    if expected_sign not in (1, -1):
        raise ValueError(f"expected_sign must be +1 or -1, got {expected_sign!r}")
    direction = "higher" if expected_sign > 0 else "lower"
    criterion = f"mean {quantity} {direction} by more than {z:g} standard errors over seeds ({diff.test})"
    evidence = (f"difference {scale * diff.mean:+.3g} ± {scale * diff.std_error:.2g} {unit} "
                f"(z = {diff.z:.2f}, {_runs(diff)}){_exclusions(diff.excluded)}")
    if expected_sign * diff.z >= z:
        outcome = "reproduced"
    elif expected_sign * diff.z <= -z:
        outcome = NOT_REPRODUCED
    else:
        outcome = "inconclusive"
    return Verdict(claim, outcome, criterion, evidence, setting, scale * diff.mean,
                   scale * diff.std_error, f"{quantity} difference ({unit})", diff.excluded)


def improvement_verdict(claim: str, treated: Sequence[float], reference: Sequence[float], *,
                        quantity: str = "test accuracy", z: float = 2.0, paired: bool = False,
                        setting: str = "") -> Verdict:
    """Claim "``treated`` is higher than ``reference``" (accuracies over seeds, in points):
    :func:`difference_verdict` of their :func:`compare` (paired by seed with ``paired``)."""
    return difference_verdict(claim, compare(treated, reference, paired=paired), quantity=quantity,
                              z=z, setting=setting)


def margin_verdict(claim: str, treated: Sequence[float], reference: Sequence[float], *, quantity: str,
                   margin: float = 0.0, higher_is_better: bool = True, z: float = 2.0,
                   unit: str = "", paired: bool = False, setting: str = "") -> Verdict:
    """Claim "``treated`` is better than ``reference`` by more than ``-margin``" (values over seeds).

    ``margin = 0``: better (e.g. a lower eigenvalue with ``higher_is_better=False``);
    ``margin > 0``: not worse by ``margin`` or more (non-inferiority, e.g. "within 1
    point" on accuracies in points). Reproduced when the difference in the good
    direction exceeds ``-margin`` by more than ``z`` standard errors (Welch's, or the
    paired test by seed with ``paired``: :func:`compare`), not
    reproduced when it falls below ``-margin`` by more than that, else inconclusive
    (also with fewer than two seeds a side). The value is the plain difference.
    """
    diff = compare(treated, reference, paired=paired)
    gain = diff.mean if higher_is_better else -diff.mean
    direction = "higher" if higher_is_better else "lower"
    criterion = (f"mean {quantity} {direction} than the reference" if margin == 0 else
                 f"mean {quantity} not worse than the reference by {margin:g}{unit} or more")
    criterion += f", beyond {z:g} standard errors over seeds ({diff.test})"
    evidence = (f"difference {diff.mean:+.4g} ± {diff.std_error:.2g}{unit} "
                f"({_runs(diff)}){_exclusions(diff.excluded)}")
    if gain + margin > z * diff.std_error:
        outcome = "reproduced"
    elif gain + margin < -z * diff.std_error:
        outcome = NOT_REPRODUCED
    else:
        outcome = "inconclusive"
    return Verdict(claim, outcome, criterion, evidence, setting, diff.mean, diff.std_error,
                   f"{quantity} difference", diff.excluded)


def ratio_verdict(claim: str, numerator: Sequence[float], denominator: Sequence[float], *,
                  quantity: str, min_ratio: float, setting: str = "") -> Verdict:
    """Claim "``mean(numerator) / mean(denominator)`` is at least ``min_ratio``" (e.g. update savings).

    For counts that barely vary over seeds (parameter updates, gradient evaluations):
    the ratio of means is compared with the threshold, no significance test. Non-finite
    values (diverged runs) are left out and counted.
    """
    a, b = (np.asarray(v, dtype=float) for v in (numerator, denominator))
    excluded = int(np.sum(~np.isfinite(a)) + np.sum(~np.isfinite(b)))
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    criterion = f"{quantity} at least {min_ratio:g}x (ratio of the means over seeds, no significance test)"
    if len(a) == 0 or len(b) == 0 or b.mean() <= 0:
        return Verdict(claim, "inconclusive", criterion, f"no usable runs for {quantity}", setting,
                       measured=quantity, excluded=excluded)
    ratio = float(a.mean() / b.mean())
    evidence = f"{ratio:.2f}x (means {a.mean():.4g} / {b.mean():.4g}){_exclusions(excluded)}"
    return Verdict(claim, "reproduced" if ratio >= min_ratio else NOT_REPRODUCED, criterion, evidence,
                   setting, ratio, math.nan, quantity, excluded)


def closure_verdict(claim: str, baseline: Sequence[float], no_fix: Sequence[float],
                    fixed: Sequence[float], *, z: float = 2.0, paired: bool = False) -> Verdict:
    """Claim "the fix closes the gap between ``no_fix`` and the ``baseline``" (accuracies over seeds).

    * ``inconclusive``: no gap, ``baseline - no_fix`` within ``z`` standard errors, or
      a difference without an error estimate;
    * ``reproduced``: the fix is not worse than the baseline by more than ``z``
      standard errors (the gap is closed);
    * ``partly reproduced``: the fix beats ``no_fix`` by more than ``z`` standard
      errors but stays below the baseline;
    * not reproduced: otherwise.

    Each difference is Welch's, or paired by seed with ``paired`` (:func:`compare`). The
    value is the remaining gap (baseline minus fixed) in points.
    """
    gap, remaining, gained = (compare(a, b, paired=paired)
                              for a, b in ((baseline, no_fix), (baseline, fixed), (fixed, no_fix)))
    closed = gained.mean / gap.mean if gap.mean != 0 else math.nan
    excluded = gap.excluded + int(np.sum(~np.isfinite(np.asarray(fixed, dtype=float))))
    criterion = (f"gap beyond {z:g} standard errors, and the fixed run within {z:g} standard errors "
                 f"of the baseline (partly: better than no fix by that margin; {gap.test})")
    evidence = (f"gap {100 * gap.mean:.1f} ± {100 * gap.std_error:.1f} points, remaining "
                f"{100 * remaining.mean:.1f} ± {100 * remaining.std_error:.1f} points "
                f"({100 * closed:.0f}% closed){_exclusions(excluded)}")
    if any(math.isnan(d.std_error) for d in (gap, remaining, gained)) or gap.mean <= z * gap.std_error:
        outcome = "inconclusive"
    elif remaining.mean <= z * remaining.std_error:
        outcome = "reproduced"
    elif gained.mean > z * gained.std_error:
        outcome = "partly reproduced"
    else:
        outcome = NOT_REPRODUCED
    return Verdict(claim, outcome, criterion, evidence, "", 100 * remaining.mean,
                   100 * remaining.std_error, "remaining gap (points)", excluded)


def constant_verdict(claim: str, means: Sequence[float], tolerance: float, *, quantity: str,
                     setting: str = "") -> Verdict:
    """Claim "``quantity`` is almost constant": largest minus smallest of ``means`` <= ``tolerance``.

    ``inconclusive`` with fewer than two finite means.
    """
    finite = [float(v) for v in means if math.isfinite(v)]
    criterion = f"range of the mean {quantity} across settings <= {tolerance:g} (no significance test)"
    if len(finite) < 2:
        return Verdict(claim, "inconclusive", criterion, f"only {len(finite)} finite means",
                       setting, measured=f"range of mean {quantity}")
    spread = max(finite) - min(finite)
    outcome = "reproduced" if spread <= tolerance else NOT_REPRODUCED
    return Verdict(claim, outcome, criterion, f"range {spread:.3g} over {len(finite)} means",
                   setting, spread, math.nan, f"range of mean {quantity}")


def combine_verdicts(claim: str, verdicts: Sequence[Verdict]) -> Verdict:
    """One verdict over several settings or criteria: all reproduced, none, or some (``partly``).

    Inconclusive parts do not count against the claim but prevent "reproduced"; all
    inconclusive gives ``inconclusive``. A single part is passed on (as the overall verdict).
    """
    if not verdicts:
        raise ValueError("no verdicts to combine")
    if len(verdicts) == 1:
        return replace(verdicts[0], claim=claim, setting="")
    decided = [v for v in verdicts if v.outcome != "inconclusive"]
    reproduced = sum(v.outcome == "reproduced" for v in decided)
    if not decided:
        outcome = "inconclusive"
    elif reproduced == len(decided) and len(decided) == len(verdicts):
        outcome = "reproduced"
    elif reproduced == 0 and not any(v.outcome == "partly reproduced" for v in decided):
        outcome = NOT_REPRODUCED
    else:
        outcome = "partly reproduced"
    excluded = sum(v.excluded for v in verdicts)
    evidence = f"{reproduced} of {len(verdicts)} settings reproduced{_exclusions(excluded)}"
    criteria = list(dict.fromkeys(v.criterion for v in verdicts))
    return Verdict(claim, outcome, "; ".join(criteria), evidence, excluded=excluded)


# ------------------------------------------------------------------ stability


def seed_independent(verdict: Verdict, reason: str) -> Verdict:
    """``verdict`` marked as not resting on the seed list (stability :data:`NOT_APPLICABLE`).

    For a verdict computed on runs that leaving a seed out does not touch (one run per
    network, the first seed's solutions): "stable" would claim a test that was not made.
    ``reason`` says what the verdict rests on. :func:`leave_one_out` still recomputes it
    under every omission and marks it :data:`FRAGILE` should one change it after all.
    """
    if not reason:
        raise ValueError("say why the verdict does not depend on the seeds")
    return replace(verdict, stability=Stability(NOT_APPLICABLE, note=reason))


def _independent(verdict: Verdict) -> bool:
    return verdict.stability.status == NOT_APPLICABLE


def _by_key(verdicts: Sequence[Verdict]) -> dict[tuple[str, str], Verdict]:
    keyed: dict[tuple[str, str], Verdict] = {}
    for verdict in verdicts:
        key = (verdict.claim, verdict.setting)
        if key in keyed:
            raise ValueError(f"two verdicts for claim {key[0]}, setting {key[1]!r}")
        keyed[key] = verdict
    return keyed


def _omission(seed: int, verdict: Verdict | None) -> Omission:
    if verdict is None:
        return Omission(seed, "inconclusive", evidence="no such verdict without this seed")
    return Omission(seed, verdict.outcome, verdict.value, verdict.spread, verdict.evidence)


def leave_one_out(decide: Callable[[list[int]], Sequence[Verdict]], seeds: Sequence[int]) -> list[Verdict]:
    """The verdicts ``decide(seeds)``, each carrying its :class:`Stability` under leaving one seed out.

    ``decide`` computes a chapter's verdicts, with the criteria fixed, from the runs of
    the seeds it is given. It is called with all seeds, then once with each seed left
    out; a verdict (matched by claim and setting) whose outcome differs under any
    omission is :data:`FRAGILE`, and its stability names those seeds and what the
    verdict became (outcome, value, spread, evidence). A verdict that an omission does
    not produce counts there as ``inconclusive``.

    Minimum seeds: an omission must leave :data:`MIN_SEEDS` seeds (fewer make every
    verdict inconclusive in :func:`record_verdicts`), so with at most ``MIN_SEEDS``
    seeds no omission is tried and every verdict is :data:`UNTESTED`, its note saying
    so. Above that, an omission that leaves one comparison below its own minimum (one
    value in an arm of a difference, fewer pairs than a correlation needs) gives that
    comparison's ``inconclusive`` (its evidence says why) and counts as a change: the
    verdict cannot stand without that seed.

    A verdict that ``decide`` marks :func:`seed_independent` keeps its
    :data:`NOT_APPLICABLE` stability and note (also with few seeds), unless an omission
    changes its outcome: then it is :data:`FRAGILE` like any other.
    """
    seeds = check_seeds("seeds", [int(s) for s in seeds])
    verdicts = _by_key(decide(seeds))
    if len(seeds) <= MIN_SEEDS:
        note = (f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}: leaving one out would leave fewer "
                f"than the {MIN_SEEDS} a verdict needs")
        return [v if _independent(v) else replace(v, stability=Stability(UNTESTED, note=note))
                for v in verdicts.values()]
    without = {seed: _by_key(decide([s for s in seeds if s != seed])) for seed in seeds}
    stable = []
    for key, verdict in verdicts.items():
        omissions = tuple(_omission(seed, without[seed].get(key)) for seed in seeds)
        changed = tuple(o.seed for o in omissions if o.outcome != verdict.outcome)
        if _independent(verdict) and not changed:
            stable.append(verdict)
            continue
        stability = Stability(FRAGILE if changed else STABLE, omissions, changed)
        stable.append(replace(verdict, stability=stability))
    return stable


STABILITY_RULE = (f"each verdict recomputed with every seed left out in turn (same criteria); fragile if "
                  f"any omission changes its outcome; an omission that leaves a comparison below its own "
                  f"minimum (e.g. one value in an arm) makes it inconclusive, which counts as a change; "
                  f"untested with {MIN_SEEDS} seeds or fewer (an omission would leave fewer than a verdict "
                  f"needs); not applicable to a verdict that does not rest on the seed list (its note says "
                  f"what it rests on)")


# ------------------------------------------------------------------ verdict files and tables

OUTCOME_MARKS = {"reproduced": "✔", "partly reproduced": "◐", NOT_REPRODUCED: "✘",
                 "inconclusive": "?", claims.NOT_RUN: "–"}
OUTCOME_COLOURS = {"reproduced": "#d8f0dc", "partly reproduced": "#fdf0c4", NOT_REPRODUCED: "#f8d9dc",
                   "inconclusive": "#e6e6e6", claims.NOT_RUN: "#ffffff"}


def outcome_label(outcome: str) -> str:
    """The outcome with its symbol, e.g. ``"✔ reproduced"`` (readable without colour)."""
    return f"{OUTCOME_MARKS[outcome]} {outcome}"


def outcome_style(label: str) -> str:
    """CSS for a cell holding :func:`outcome_label`'s text: the outcome's background colour (dark
    text on it, whatever the page's theme)."""
    outcome = label.split(" ", 1)[1] if label[:1] in OUTCOME_MARKS.values() else label
    return f"background-color: {OUTCOME_COLOURS[outcome]}; color: #1a1a1a" if outcome in OUTCOME_COLOURS else ""


def verdict_table(verdicts: Sequence[Verdict]) -> Any:
    """A chapter's verdicts as a table to show: outcome with symbol and colour, stability, numbers."""
    frame = pd.DataFrame([v.as_row() for v in verdicts])
    frame["verdict"] = frame["verdict"].map(outcome_label)
    return (frame.style.hide(axis="index").format(precision=3, na_rep="")
            .map(outcome_style, subset=["verdict"]))


def _json_ready(value: Any) -> Any:
    """``value`` with non-finite floats as ``None`` (JSON has no NaN), in nested lists and dicts."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def record_verdicts(chapter: str, verdicts: Sequence[Verdict] | Callable[[list[int]], Sequence[Verdict]],
                    seeds: Sequence[int], folder: str | os.PathLike | None = None) -> Any:
    """Write ``<folder>/<chapter>.verdicts.json`` and return the verdicts as a table to show.

    ``verdicts`` is best a function of the seeds (``decide(seeds) -> verdicts``): each
    verdict then carries its stability (:func:`leave_one_out`); verdicts given as values
    are recorded as :data:`UNTESTED`. ``folder`` defaults to ``$LARGEBATCH_VERDICTS_DIR``
    (set by ``largebatch.reproduce`` to the executed-notebooks folder), else the working
    directory; the profile is ``$LARGEBATCH_PROFILE``, else ``"custom"``. Every claim
    must belong to ``chapter`` in :data:`largebatch.claims.CLAIMS`, and each claim needs
    one overall verdict (``setting`` ""), which the summary shows. The file also holds
    the seeds, the stability rule, the machine and versions
    (:func:`largebatch.provenance.environment`), and per verdict the criterion, the
    figure anchor, the stability and the number of diverged runs left out. With fewer
    than :data:`MIN_SEEDS` seeds every outcome is recorded as ``inconclusive`` (the
    evidence says why): no verdict rests on fewer.
    """
    from largebatch import provenance

    seeds = check_seeds("seeds", [int(s) for s in seeds])  # distinct: a repeated seed is no new run
    verdicts = leave_one_out(verdicts, seeds) if callable(verdicts) else list(verdicts)
    if len(seeds) < MIN_SEEDS:
        note = f" (only {len(seeds)} seed{'s' if len(seeds) > 1 else ''}; a verdict needs {MIN_SEEDS})"
        verdicts = [replace(v, outcome="inconclusive", evidence=v.evidence + note) for v in verdicts]
    for verdict in verdicts:
        owner = claims.claim(verdict.claim).chapter
        if owner != chapter:
            raise ValueError(f"claim {verdict.claim} belongs to chapter {owner}, not {chapter}")
    missing = {v.claim for v in verdicts} - {v.claim for v in verdicts if not v.setting}
    if missing:
        raise ValueError(f"no overall verdict (setting '') for claims {sorted(missing)}")
    rows = [{**_json_ready(asdict(v)), "figure": claims.claim(v.claim).link} for v in verdicts]
    content = {"chapter": chapter, "profile": os.environ.get("LARGEBATCH_PROFILE") or "custom",
               "seeds": seeds, "stability_rule": STABILITY_RULE,
               "provenance": provenance.environment(), "verdicts": rows}
    path = Path(folder) if folder is not None else claims.verdicts_dir()
    path.mkdir(parents=True, exist_ok=True)
    run_cache.atomic_write_bytes(path / f"{chapter}.verdicts.json", json.dumps(content, indent=1).encode())
    return verdict_table(verdicts)


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
