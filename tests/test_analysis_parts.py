"""Verdicts with a margin, on ratios of counts, and over the parts of one claim (analysis)."""

import pytest

from largebatch.analysis import Verdict, all_verdicts, margin_verdict, ratio_verdict


def test_margin_verdict_non_inferiority_and_direction():
    baseline = [0.90, 0.91, 0.92]
    assert margin_verdict("x", [0.912, 0.915, 0.918], [0.909, 0.91, 0.911], quantity="acc", margin=0.01).outcome == "reproduced"
    assert margin_verdict("x", [0.85, 0.86, 0.87], baseline, quantity="acc", margin=0.01).outcome == "not reproduced"
    assert margin_verdict("x", [0.88, 0.90, 0.92], baseline, quantity="acc", margin=0.01).outcome == "inconclusive"
    lower = margin_verdict("x", [1.0, 1.1, 1.2], [2.0, 2.1, 2.2], quantity="eig", higher_is_better=False)
    assert lower.outcome == "reproduced" and "-1" in lower.evidence
    assert margin_verdict("x", [2.0, 2.1, 2.2], [1.0, 1.1, 1.2], quantity="eig",
                          higher_is_better=False).outcome == "not reproduced"
    assert margin_verdict("x", [0.95], [0.90], quantity="acc").outcome == "inconclusive"  # one seed


def test_ratio_verdict_threshold():
    assert ratio_verdict("x", [3000, 3000], [1000, 900], quantity="u", min_ratio=3).outcome == "reproduced"
    assert ratio_verdict("x", [3000, 3000], [1000, 1100], quantity="u", min_ratio=3).outcome == "not reproduced"
    assert "3.16x" in ratio_verdict("x", [3000, 3000], [1000, 900], quantity="u", min_ratio=3).evidence


@pytest.mark.parametrize("outcomes, expected", [
    (["reproduced", "reproduced"], "reproduced"),
    (["reproduced", "not reproduced"], "partly reproduced"),
    (["reproduced", "inconclusive"], "partly reproduced"),
    (["not reproduced", "inconclusive"], "not reproduced"),
    (["inconclusive", "inconclusive"], "inconclusive"),
])
def test_all_verdicts(outcomes, expected):
    parts = [Verdict("p", o, f"c{i}", f"e{i}") for i, o in enumerate(outcomes)]
    combined = all_verdicts("claim", parts)
    assert combined.outcome == expected and combined.criterion == "c0; c1" and "e1" in combined.evidence
