"""Chapters 03 and 04 compare arms that share a seed's initialization with the paired test by seed.

On small synthetic tables (no training) where every run at a seed shares a large seed effect
(the seed's luck) and the arms differ by a small consistent shift: Welch's test over
independent samples cannot see the shift through the seed noise, the paired test sees it.
Each switched verdict follows the paired test and says so in its criterion.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from largebatch import analysis, claims
from largebatch.studies import adversarial, train_longer
from test_study_stability import SEEDS, _adversarial_tables, _by_key, _train_longer_tables

LUCK = dict(zip(SEEDS, np.random.default_rng(7).normal(0, 0.05, len(SEEDS))))  # shared by every arm at a seed


def _own(index: int, size: float = 0.001) -> float:
    """A run's own noise, small beside the seed's luck."""
    return float(np.random.default_rng(1000 + index).normal(0, size))


def _paired_and_welch(verdict: analysis.Verdict, welch: analysis.Verdict, paired_outcome: str) -> None:
    assert verdict.outcome == paired_outcome, verdict
    assert welch.outcome == "inconclusive" and analysis.WELCH in welch.criterion, welch
    assert analysis.PAIRED in verdict.criterion and "Welch" not in verdict.criterion, verdict.criterion
    assert f"{len(SEEDS)} pairs" in verdict.evidence or verdict.claim == "B2"


# ------------------------------------------------------------------ 03 train longer


# accuracy offset of each row of Table 1: a 2-point gap, sqrt scaling and ghost batch norm one point each
ROW_OFFSETS = [0.02, 0.00, 0.01, 0.02, 0.02]


def _shifted_train_longer() -> train_longer.Tables:
    tables = _train_longer_tables()
    rows = tables.rows.copy()
    offsets = dict(zip(tables.design.rows, ROW_OFFSETS))
    rows["test_accuracy"] = [0.7 + offsets[label] + LUCK[seed] + _own(i)
                             for i, (label, seed) in enumerate(zip(rows["row"], rows["seed"]))]
    return dataclasses.replace(tables, rows=rows, **train_longer._summaries(rows, tables.ratio_runs))


def _row(tables: train_longer.Tables, index: int) -> np.ndarray:
    label = list(tables.design.rows)[index]
    return tables.rows.loc[tables.rows["row"] == label].sort_values("seed")["test_accuracy"].to_numpy()


def test_train_longer_b2_b3_b4_follow_the_paired_test():
    tables = _shifted_train_longer()
    verdicts = _by_key(train_longer.verdicts(tables))
    baseline, no_fix, sqrt_lr, ghost, adapted = (_row(tables, i) for i in range(5))
    _paired_and_welch(verdicts["B2", ""], analysis.closure_verdict("B2", baseline, no_fix, adapted), "reproduced")
    _paired_and_welch(verdicts["B3", ""], analysis.improvement_verdict("B3", ghost, sqrt_lr), "reproduced")
    _paired_and_welch(verdicts["B4", ""], analysis.improvement_verdict("B4", sqrt_lr, no_fix), "reproduced")
    assert verdicts["B3", ""].value == pytest.approx(1.0, abs=0.2)  # the one-point shift, in points


def test_train_longer_pairs_by_seed_not_by_position():
    """Rows listed in another seed order pair the same runs: the verdicts do not change."""
    tables = _shifted_train_longer()
    shuffled = dataclasses.replace(tables, rows=tables.rows.sample(frac=1, random_state=3))
    assert train_longer.verdicts(shuffled) == train_longer.verdicts(tables)


def test_train_longer_a_diverged_run_drops_its_pair():
    tables = _shifted_train_longer()
    rows = tables.rows.copy()
    diverged = (rows["row"] == list(tables.design.rows)[3]) & (rows["seed"] == 2)
    rows.loc[diverged, ["status", "test_accuracy"]] = ["diverged", np.nan]
    b3 = _by_key(train_longer.verdicts(dataclasses.replace(tables, rows=rows)))["B3", ""]
    assert b3.outcome == "reproduced" and "4 pairs" in b3.evidence and b3.excluded == 1


# ------------------------------------------------------------------ 04 adversarial


def _shifted_adversarial() -> adversarial.Tables:
    """A2 and C2: the largest batch 2 points lower (1 point with the main momentum at the fixed lr);
    C3: so the momentum gain at the largest batch is 1 point higher at the fixed lr; A4:
    adversarial training 0.05 lower in log eigenvalue. Every value carries the seed's luck."""
    tables = _adversarial_tables()
    design = tables.design
    runs = tables.runs.copy()
    large = runs["batch_size"] == design.large
    boost = large & (runs["regime"] == "none") & (runs["momentum"] == design.momentum)
    shift = -0.02 * large + 0.01 * boost
    own = np.array([_own(i) for i in range(len(runs))])
    luck = runs["seed"].map(LUCK)
    for column, level in (("test_accuracy", 0.8), ("auc", 0.5)):
        runs[column] = level + shift + luck + own
    a4 = tables.a4.copy()
    a4["log_eigenvalue"] = (-0.05 * (a4["training"] == adversarial.ADVERSARIAL) + 10 * a4["seed"].map(LUCK)
                            + [_own(i) for i in range(len(a4))])
    return dataclasses.replace(tables, runs=runs, a4=a4)


def _arm(frame, metric: str, **where) -> np.ndarray:
    return analysis.select(frame, **where).sort_values("seed")[metric].to_numpy()


def test_adversarial_a2_c2_c3_a4_follow_the_paired_test():
    tables = _shifted_adversarial()
    design, pgd = tables.design, tables.pgd_runs
    verdicts = _by_key(adversarial.verdicts(tables))

    def welch(claim: str, a, b, sign: int = -1) -> analysis.Verdict:
        return analysis.difference_verdict(claim, analysis.difference(a, b), expected_sign=sign)

    main = {"regime": "none", "momentum": design.momentum}
    for setting, metric, attack in [("accuracy", "test_accuracy", "pgd"), ("fgsm", "auc", "fgsm"),
                                    ("pgd", "auc", "pgd")]:
        arms = [_arm(tables.runs, metric, attack=attack, batch_size=b, **main) for b in (design.large, design.small)]
        _paired_and_welch(verdicts["A2", setting], welch("A2", *arms), "reproduced")
    assert verdicts["A2", ""].outcome == "reproduced"
    for m in (design.low_momentum, design.momentum):
        arms = [_arm(pgd, "auc", regime="none", momentum=m, batch_size=b) for b in (design.large, design.small)]
        _paired_and_welch(verdicts["C2", f"momentum {m:g}"], welch("C2", *arms), "reproduced")
    assert verdicts["C2", ""].outcome == "reproduced"
    c3_arms = [_arm(pgd, "auc", regime=r, momentum=m, batch_size=design.large)
               for r in ("none", "linear") for m in (design.momentum, design.low_momentum)]
    c3_welch = analysis.difference_verdict("C3", analysis.difference_of_differences(*c3_arms))
    _paired_and_welch(verdicts["C3", ""], c3_welch, "reproduced")
    assert verdicts["C3", ""].value == pytest.approx(1.0, abs=0.2)  # the one-point gain, in points
    a4_pgd = analysis.select(tables.a4, attack="pgd")
    for b in (design.small, design.large):
        arms = [_arm(a4_pgd, "log_eigenvalue", training=t, batch_size=b) for t in (adversarial.ADVERSARIAL, "natural")]
        _paired_and_welch(verdicts["A4", f"B = {b}"], welch("A4", *arms), "reproduced")
    assert verdicts["A4", ""].outcome == "reproduced"


def test_adversarial_tables_say_which_test_they_used():
    tables = _shifted_adversarial()
    assert set(adversarial.a2_table(tables).data["test"]) == {analysis.PAIRED}
    effects = adversarial._c_effects(tables)
    assert effects["c3"].test == analysis.PAIRED and {c.test for c in effects["c2"].values()} == {analysis.PAIRED}


def test_registry_criteria_name_the_paired_test_for_the_switched_claims():
    for claim_id in ("B2", "B3", "B4", "A2", "C2", "C3", "A4"):
        criterion = claims.claim(claim_id).criterion
        assert "paired" in criterion and "Welch" not in criterion, (claim_id, criterion)
