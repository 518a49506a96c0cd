"""Leave-one-seed-out stability of verdicts, and the paired test by seed (analysis)."""

import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from largebatch import analysis, claims

SEEDS = [0, 1, 2, 3, 4]


def _series(values, seeds=SEEDS):
    return pd.Series(values, index=seeds, dtype=float)


def _improvement(treated, reference):
    """decide(seeds) for B3 on per-seed accuracies, as a chapter writes it."""
    def decide(seeds):
        return [analysis.improvement_verdict("B3", _series(treated)[seeds], _series(reference)[seeds])]
    return decide


def test_a_robust_verdict_is_stable():
    decide = _improvement([0.80, 0.81, 0.82, 0.815, 0.805], [0.70, 0.71, 0.72, 0.705, 0.715])
    (verdict,) = analysis.leave_one_out(decide, SEEDS)
    assert verdict.outcome == "reproduced" and verdict.stability.status == analysis.STABLE
    assert [o.seed for o in verdict.stability.omissions] == SEEDS and verdict.stability.changed_by == ()
    assert all(o.outcome == "reproduced" and o.value > 5 for o in verdict.stability.omissions)


def test_one_outlier_seed_makes_a_verdict_fragile_and_is_named():
    # seed 4 collapsed: with it the gain is within the noise, without it clearly positive
    decide = _improvement([0.80, 0.81, 0.82, 0.81, 0.40], [0.70, 0.71, 0.72, 0.71, 0.71])
    (verdict,) = analysis.leave_one_out(decide, SEEDS)
    assert verdict.outcome == "inconclusive" and verdict.stability.status == analysis.FRAGILE
    assert verdict.stability.changed_by == (4,)
    assert verdict.stability.omissions[4].outcome == "reproduced"
    assert verdict.stability.label == "fragile (without seed 4)"


def test_an_outlier_that_carries_a_ratio_verdict_is_named():
    more, fewer = _series([2.5, 2.5, 2.5, 2.5, 10.0]), _series([1.0] * 5)

    def decide(seeds):
        return [analysis.ratio_verdict("D1", more[seeds], fewer[seeds], quantity="updates", min_ratio=3)]

    (verdict,) = analysis.leave_one_out(decide, SEEDS)
    assert verdict.outcome == "reproduced" and verdict.stability.changed_by == (4,)
    without_4 = verdict.stability.omissions[4]
    assert (without_4.seed, without_4.outcome, without_4.value) == (4, analysis.NOT_REPRODUCED, 2.5)


def test_combined_verdicts_are_recomputed_so_their_stability_follows_their_parts():
    stable = _improvement([0.80, 0.81, 0.82, 0.815, 0.805], [0.70, 0.71, 0.72, 0.705, 0.715])
    fragile = _improvement([0.80, 0.81, 0.82, 0.81, 0.40], [0.70, 0.71, 0.72, 0.71, 0.71])

    def decide(seeds):
        parts = [replace(stable(seeds)[0], claim="A2", setting="x"),
                 replace(fragile(seeds)[0], claim="A2", setting="y")]
        return [*parts, analysis.combine_verdicts("A2", parts)]

    x, y, overall = analysis.leave_one_out(decide, SEEDS)
    assert (x.stability.status, y.stability.status) == (analysis.STABLE, analysis.FRAGILE)
    assert overall.outcome == "partly reproduced" and overall.stability.changed_by == (4,)
    assert overall.stability.omissions[4].outcome == "reproduced"


def test_a_verdict_an_omission_does_not_produce_counts_as_inconclusive_there():
    def decide(seeds):
        verdict = analysis.Verdict("A5", "reproduced", "c", "e")
        return [verdict] if 2 in seeds else []

    (verdict,) = analysis.leave_one_out(decide, SEEDS)
    assert verdict.stability.changed_by == (2,) and verdict.stability.omissions[2].outcome == "inconclusive"
    assert verdict.stability.omissions[2].evidence == "no such verdict without this seed"


def test_an_omission_that_leaves_an_arm_one_value_says_so():
    def decide(seeds):
        treated = _series([0.90, 0.91, 0.92, 0.80, 0.81])[seeds]
        reference = _series([0.70, 0.71, 0.72, 0.60, 0.61])[seeds]  # seeds 0-2 one arm, 3-4 the other
        return [analysis.improvement_verdict("B3", treated[[s for s in seeds if s < 3]],
                                             reference[[s for s in seeds if s >= 3]])]

    (verdict,) = analysis.leave_one_out(decide, SEEDS)
    assert verdict.outcome == "reproduced" and verdict.stability.changed_by == (3, 4)
    assert "one value a side, no error estimate" in verdict.stability.omissions[3].evidence
    assert "below its own minimum" in analysis.STABILITY_RULE


def test_with_min_seeds_or_fewer_no_omission_is_tried():
    calls = []

    def decide(seeds):
        calls.append(list(seeds))
        return [analysis.Verdict("A5", "reproduced", "c", "e")]

    (verdict,) = analysis.leave_one_out(decide, [0, 1, 2])
    assert calls == [[0, 1, 2]] and verdict.stability.status == analysis.UNTESTED
    assert "fewer than the 3 a verdict needs" in verdict.stability.note


def test_a_seed_independent_verdict_is_not_applicable_not_stable(tmp_path):
    calls = []

    def decide(seeds):
        calls.append(list(seeds))
        on_one_run = analysis.Verdict("A3", "reproduced", "c", "share 1", setting="x")
        return [analysis.seed_independent(on_one_run, "one run per network (seed 0)"),
                analysis.seed_independent(replace(on_one_run, setting=""), "one run per network (seed 0)")]

    part, overall = analysis.leave_one_out(decide, SEEDS)
    assert len(calls) == 1 + len(SEEDS)  # still recomputed under every omission
    assert part.stability.status == analysis.NOT_APPLICABLE == part.stability.label
    assert part.stability.note == "one run per network (seed 0)" and part.stability.omissions == ()
    (few,) = {v.stability for v in analysis.leave_one_out(decide, [0, 1, 2])}
    assert few.status == analysis.NOT_APPLICABLE  # not "untested": there is nothing to test
    analysis.record_verdicts("04_adversarial", decide, SEEDS, tmp_path)
    (row, _) = json.loads((tmp_path / "04_adversarial.verdicts.json").read_text())["verdicts"]
    assert row["stability"]["status"] == "not applicable" and "one run per network" in row["stability"]["note"]
    assert analysis.Verdict.from_row(row) == part
    assert "not applicable" in analysis.STABILITY_RULE
    with pytest.raises(ValueError, match="say why"):
        analysis.seed_independent(part, "")


def test_a_verdict_marked_seed_independent_that_an_omission_changes_is_fragile():
    def decide(seeds):
        outcome = "reproduced" if 4 in seeds else analysis.NOT_REPRODUCED
        return [analysis.seed_independent(analysis.Verdict("A3", outcome, "c", "e"), "wrongly claimed")]

    (verdict,) = analysis.leave_one_out(decide, SEEDS)
    assert verdict.stability.status == analysis.FRAGILE and verdict.stability.changed_by == (4,)


def test_duplicate_seeds_and_duplicate_verdicts_are_errors():
    with pytest.raises(ValueError, match="seeds must be distinct .*: 1 repeated"):
        analysis.leave_one_out(lambda seeds: [], [0, 1, 1, 2, 3])
    with pytest.raises(ValueError, match="two verdicts for claim A5"):
        analysis.leave_one_out(lambda seeds: [analysis.Verdict("A5", "reproduced", "c", "e")] * 2, SEEDS)


def test_record_verdicts_with_a_function_writes_stability_and_shows_it(tmp_path):
    decide = _improvement([0.80, 0.81, 0.82, 0.81, 0.40], [0.70, 0.71, 0.72, 0.71, 0.71])
    table = analysis.record_verdicts("03_train_longer", decide, SEEDS, tmp_path)

    def no_nan(text):
        raise ValueError(f"{text} in a verdict file")

    content = json.loads((tmp_path / "03_train_longer.verdicts.json").read_text(), parse_constant=no_nan)
    (row,) = content["verdicts"]
    assert row["stability"]["status"] == "fragile" and row["stability"]["changed_by"] == [4]
    without_4 = analysis.improvement_verdict("B3", [0.80, 0.81, 0.82, 0.81], [0.70, 0.71, 0.72, 0.71])
    assert row["stability"]["omissions"][4] == {"seed": 4, "outcome": "reproduced", "value": pytest.approx(10.0),
                                               "spread": pytest.approx(without_4.spread),
                                               "evidence": without_4.evidence}
    assert "left out in turn" in content["stability_rule"]
    assert analysis.Verdict.from_row(row) == analysis.leave_one_out(decide, SEEDS)[0]
    del row["stability"]["omissions"][0]["spread"]  # a file written before omissions had spreads
    assert math.isnan(analysis.Verdict.from_row(row).stability.omissions[0].spread)
    html = table.to_html()
    assert "fragile (without seed 4)" in html and "? inconclusive" in html
    assert analysis.OUTCOME_COLOURS["inconclusive"] in html


def test_outcome_labels_carry_a_symbol_and_a_colour():
    for outcome in [*analysis.OUTCOMES, claims.NOT_RUN]:
        label = analysis.outcome_label(outcome)
        assert label.endswith(outcome) and label[0] == analysis.OUTCOME_MARKS[outcome]
        assert analysis.OUTCOME_COLOURS[outcome] in analysis.outcome_style(label)
    assert len(set(analysis.OUTCOME_MARKS.values())) == len(analysis.OUTCOME_MARKS)


# ------------------------------------------------------------------ paired test


def test_paired_difference_is_scipys_paired_t_and_welch_is_scipys_welch():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 1.0, 6), rng.normal(0.5, 1.0, 6)
    paired = analysis.paired_difference(_series(a, range(6)), dict(zip(range(6), b)))
    assert paired.test == analysis.PAIRED and (paired.n_a, paired.n_b) == (6, 6)
    assert paired.mean == pytest.approx(float(np.mean(a - b)))
    assert paired.z == pytest.approx(stats.ttest_rel(a, b).statistic)
    welch = analysis.difference(a, b)
    assert welch.test == analysis.WELCH
    assert welch.z == pytest.approx(stats.ttest_ind(a, b, equal_var=False).statistic)


def test_pairs_are_matched_by_seed_not_by_position():
    a = _series([1.0, 2.0, 4.0], [5, 7, 9])
    b = _series([3.5, 1.5, 0.0], [9, 7, 5])  # the same seeds in another order
    result = analysis.paired_difference(a, b)
    assert result.z == pytest.approx(stats.ttest_rel([1.0, 2.0, 4.0], [0.0, 1.5, 3.5]).statistic)


def test_the_paired_test_sees_an_offset_that_seed_noise_hides_from_welch():
    luck = np.array([0.60, 0.75, 0.90, 0.70, 0.80])  # each seed's initialization, shared by both arms
    treated, reference = _series(luck + np.array([0.020, 0.022, 0.018, 0.021, 0.019])), _series(luck)
    assert analysis.improvement_verdict("B3", treated, reference).outcome == "inconclusive"
    paired = analysis.improvement_verdict("B3", treated, reference, paired=True)
    assert paired.outcome == "reproduced"
    assert "(paired test by seed)" in paired.criterion and "5 pairs" in paired.evidence
    assert "(Welch test)" in analysis.improvement_verdict("B3", treated, reference).criterion


def test_paired_comparisons_reject_unlabelled_unmatched_and_repeated_seeds():
    with pytest.raises(TypeError, match="labelled by seed"):
        analysis.paired_difference([1.0, 2.0], [0.0, 1.5])
    with pytest.raises(ValueError, match="unmatched: \\[2, 3\\]"):  # a missing seed is no smaller sample
        analysis.paired_difference(_series([1.0, 2.0, 3.0], [0, 1, 2]), _series([1.0, 2.0, 3.0], [0, 1, 3]))
    with pytest.raises(ValueError, match="seeds repeated"):
        analysis.paired_difference(_series([1.0, 2.0], [0, 0]), _series([1.0, 2.0], [0, 1]))


def test_paired_difference_counts_diverged_pairs_and_gives_no_error_for_zero_variance():
    result = analysis.paired_difference(_series([1.0, 2.0, np.nan, 4.0], [0, 1, 2, 3]),
                                        _series([0.5, 1.0, 1.0, 2.0], [0, 1, 2, 3]))
    assert (result.n_a, result.excluded) == (3, 1)
    assert result.mean == pytest.approx(np.mean([0.5, 1.0, 2.0]))
    shifted = analysis.paired_difference(_series([1.0, 2.0, 3.0], [0, 1, 2]), _series([0.0, 1.0, 2.0], [0, 1, 2]))
    assert math.isnan(shifted.std_error)  # identical differences: no noise estimate, not infinite evidence
    assert analysis.improvement_verdict("B3", _series([1.0, 2.0, 3.0], [0, 1, 2]), _series([0.0, 1.0, 2.0], [0, 1, 2]),
                                        paired=True).outcome == "inconclusive"


def test_paired_margin_closure_and_difference_of_differences():
    luck = np.array([0.60, 0.75, 0.90, 0.70, 0.80])
    gain = np.array([0.020, 0.022, 0.018, 0.021, 0.019])
    margin = analysis.margin_verdict("D1", _series(luck + gain), _series(luck), quantity="acc", paired=True)
    assert margin.outcome == "reproduced" and "paired test by seed" in margin.criterion
    closure = analysis.closure_verdict("B2", _series(luck + 0.1 + gain / 10), _series(luck),
                                       _series(luck + 0.1 + gain / 20), paired=True)
    assert closure.outcome == "partly reproduced" and "paired test by seed" in closure.criterion
    a1, b1, a2, b2 = (_series(luck + offset) for offset in (gain, 0 * gain, 2 * gain[::-1], 0 * gain))
    result = analysis.difference_of_differences(a1, b1, a2, b2, paired=True)
    assert result.test == analysis.PAIRED
    assert result.z == pytest.approx(stats.ttest_rel(gain, 2 * gain[::-1]).statistic)


def test_by_seed_and_paired_batch_size_effect():
    frame = pd.DataFrame({"batch_size": [16] * 3 + [64] * 3, "seed": [0, 1, 2, 2, 1, 0],
                          "v": [1.0, 2.0, 4.0, 3.0, 1.5, 0.0]})
    assert analysis.by_seed(frame, "v", batch_size=64).to_dict() == {2: 3.0, 1: 1.5, 0: 0.0}
    effect = analysis.batch_size_effect(frame, "v", 16, 64, paired=True)
    assert effect.test == analysis.PAIRED
    assert effect.z == pytest.approx(stats.ttest_rel([0.0, 1.5, 3.0], [1.0, 2.0, 4.0]).statistic)
    with pytest.raises(ValueError, match="several rows"):
        analysis.by_seed(pd.concat([frame, frame]), "v", batch_size=16)
    assert math.isnan(analysis.paired_difference(_series([1.0], [0]), _series([0.0], [0])).std_error)
