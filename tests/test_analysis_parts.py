"""Verdicts with a margin and on ratios of counts (analysis), as chapter 05 uses them."""

import math

from largebatch.analysis import NOT_REPRODUCED, margin_verdict, ratio_verdict


def test_margin_verdict_non_inferiority_and_direction():
    baseline = [0.90, 0.91, 0.92]
    assert margin_verdict("D1", [0.912, 0.915, 0.918], [0.909, 0.91, 0.911], quantity="acc",
                          margin=0.01).outcome == "reproduced"
    assert margin_verdict("D1", [0.85, 0.86, 0.87], baseline, quantity="acc", margin=0.01).outcome == NOT_REPRODUCED
    assert margin_verdict("D1", [0.88, 0.90, 0.92], baseline, quantity="acc", margin=0.01).outcome == "inconclusive"
    lower = margin_verdict("D2", [1.0, 1.1, 1.2], [2.0, 2.1, 2.2], quantity="eig", higher_is_better=False)
    assert lower.outcome == "reproduced" and "-1" in lower.evidence and math.isclose(lower.value, -1.0)
    assert margin_verdict("D2", [2.0, 2.1, 2.2], [1.0, 1.1, 1.2], quantity="eig",
                          higher_is_better=False).outcome == NOT_REPRODUCED
    assert margin_verdict("D1", [0.95], [0.90], quantity="acc").outcome == "inconclusive"  # one seed


def test_margin_verdict_leaves_out_and_counts_diverged_runs():
    verdict = margin_verdict("D1", [0.95, 0.96, float("nan")], [0.90, 0.91, 0.92], quantity="acc")
    assert verdict.outcome == "reproduced" and verdict.excluded == 1 and "1 diverged run excluded" in verdict.evidence


def test_ratio_verdict_threshold():
    assert ratio_verdict("D1", [3000, 3000], [1000, 900], quantity="u", min_ratio=3).outcome == "reproduced"
    assert ratio_verdict("D1", [3000, 3000], [1000, 1100], quantity="u", min_ratio=3).outcome == NOT_REPRODUCED
    saving = ratio_verdict("D1", [3000, 3000], [1000, 900], quantity="u", min_ratio=3, setting="updates")
    assert "3.16x" in saving.evidence and math.isclose(saving.value, 3000 / 950) and saving.setting == "updates"
    assert ratio_verdict("D1", [3000], [float("nan")], quantity="u", min_ratio=3).outcome == "inconclusive"
