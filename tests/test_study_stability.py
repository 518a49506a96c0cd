"""Leave-one-seed-out stability of chapters 02-05 (largebatch.studies): each study's verdicts are
recomputed from its tables restricted to the kept seeds, on small synthetic tables (no training)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from largebatch import analysis, claims
from largebatch.studies import adaptive_batch, adversarial, sharp_minima, train_longer
from largebatch.studies.common import restrict_to_seeds
from test_studies import namespace

SEEDS = [0, 1, 2, 3, 4]


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _recorded(chapter, tables, study, tmp_path, monkeypatch) -> list[dict]:
    monkeypatch.setenv(claims.VERDICTS_DIR_ENV, str(tmp_path))
    study.record_verdicts(tables)
    return json.loads((tmp_path / f"{chapter}.verdicts.json").read_text())["verdicts"]


def _one_omission_per_seed(rows: list[dict], seeds=SEEDS) -> None:
    for row in rows:
        stability = row["stability"]
        assert stability["status"] in (analysis.STABLE, analysis.FRAGILE), (row["claim"], row["setting"])
        assert [o["seed"] for o in stability["omissions"]] == seeds, (row["claim"], row["setting"])


def _by_key(verdicts) -> dict:
    return {(v.claim, v.setting): v for v in verdicts}


# ------------------------------------------------------------------ the shared restriction


@dataclass
class _Toy:
    design: str
    runs: pd.DataFrame
    summary: pd.DataFrame
    detail: dict


def _toy() -> _Toy:
    runs = pd.DataFrame({"seed": [0, 1, 2, 0, 1, 2], "batch_size": [16] * 3 + [64] * 3,
                         "v": [1.0, 2.0, 3.0, 4.0, 5.0, 9.0]})
    return _Toy("d", runs, runs.groupby("batch_size", as_index=False)["v"].mean(), {"small": 1})


def test_restrict_to_seeds_filters_seed_frames_and_recomputes_what_is_named():
    toy = _toy()
    kept = restrict_to_seeds(toy, [0, 2], unchanged={"design": "parameters", "detail": "one seed"},
                             recompute=lambda t: {"summary": t.runs.groupby("batch_size", as_index=False)["v"].mean()})
    assert kept.runs["seed"].tolist() == [0, 2, 0, 2] and toy.runs["seed"].tolist() == [0, 1, 2] * 2
    assert kept.summary["v"].tolist() == [2.0, 6.5] and kept.detail is toy.detail


def test_restrict_to_seeds_refuses_a_field_left_whole_by_mistake():
    with pytest.raises(TypeError, match=r"fields \['summary'\] hold no seed column"):
        restrict_to_seeds(_toy(), [0, 1], unchanged={"design": "parameters", "detail": "one seed"})
    with pytest.raises(TypeError, match="recomputed and also"):
        restrict_to_seeds(_toy(), [0, 1], unchanged={"design": "p", "detail": "s", "summary": "s"},
                          recompute=lambda t: {"summary": None})
    with pytest.raises(TypeError, match="do not have: \\['sumary'\\]"):
        restrict_to_seeds(_toy(), [0, 1], unchanged={"sumary": "typo"})
    with pytest.raises(ValueError, match=r"seeds \[7\] are not in the tables"):
        restrict_to_seeds(_toy(), [0, 7], unchanged={"design": "p", "detail": "s", "summary": "s"})


# ------------------------------------------------------------------ 02 sharp minima


def _sharp_minima_tables() -> sharp_minima.Tables:
    design = sharp_minima.design(namespace("02_sharp_minima", seeds=SEEDS, batch_sizes=[32, 64, 128, 480]))
    rows = []
    for name in design.models:
        for rule in sharp_minima.RULES.values():
            for b in design.batch_sizes:
                for seed in design.seeds:
                    noise = _rng(seed * 1000 + b).normal(0, 0.3)
                    rows.append({"model": name, "rule": rule, "setting": f"{name}, {rule}", "batch_size": b,
                                 "seed": seed, "key": f"{name}-{rule}-{b}-{seed}", "status": "completed",
                                 "reached_target": True, "usable": True, "train_accuracy": 0.9,
                                 "test_accuracy": 0.8 + noise / 100, "generalization_gap": 0.1,
                                 "hessian_top_eigenvalue": np.log2(b) + noise, "hessian_trace": 10.0,
                                 "keskar_sharpness": 1.0 + noise, "hessian_smallest_eigenvalue": -0.01})
    runs = pd.DataFrame(rows)
    # one largest-batch run with a large negative eigenvalue: A5 rests on seed 3
    outlier = (runs["batch_size"] == 480) & (runs["seed"] == 3)
    runs.loc[outlier, "hessian_smallest_eigenvalue"] = -5.0
    saddles = sharp_minima._saddles(design, runs[runs["usable"]])
    return sharp_minima.Tables(design, runs, sharp_minima._summary(runs), saddles, {}, pd.DataFrame(), {}, {}, {},
                               {}, {})


def test_sharp_minima_restriction_reaches_every_verdict(tmp_path, monkeypatch):
    tables = _sharp_minima_tables()
    full = _by_key(sharp_minima.verdicts(tables))
    assert _by_key(sharp_minima.verdicts(sharp_minima.restrict(tables, SEEDS))) == full
    kept = sharp_minima.restrict(tables, [0, 1, 2, 4])
    assert set(kept.summary["test_accuracy_n"]) == {4} and set(tables.summary["test_accuracy_n"]) == {5}
    without_3 = _by_key(sharp_minima.verdicts(kept))
    for name in tables.design.models:
        for rule in sharp_minima.RULES.values():
            for claim in ("A1", "E1"):
                assert "over 20 runs" in full[claim, f"{name}, {rule}"].evidence
                assert "over 16 runs" in without_3[claim, f"{name}, {rule}"].evidence
    assert full["A5", ""].outcome == analysis.NOT_REPRODUCED and "over 5 runs" in full["A5", ""].evidence
    assert without_3["A5", ""].outcome == "reproduced" and "over 4 runs" in without_3["A5", ""].evidence

    rows = _recorded(sharp_minima.CHAPTER, tables, sharp_minima, tmp_path, monkeypatch)
    _one_omission_per_seed(rows)
    a5 = next(r for r in rows if r["claim"] == "A5")
    assert a5["stability"]["status"] == analysis.FRAGILE and a5["stability"]["changed_by"] == [3]


# ------------------------------------------------------------------ 03 train longer


def _train_longer_tables() -> train_longer.Tables:
    design = train_longer.design(namespace("03_train_longer", seeds=SEEDS))
    offsets = dict(zip(design.rows, [0.10, 0.00, 0.03, 0.06, 0.09]))
    rows = pd.DataFrame([{"row": label, "seed": seed, "key": f"{label}-{seed}", "status": "completed",
                          "test_accuracy": 0.7 + offset + _rng(seed + 17 * i).normal(0, 0.005),
                          "train_accuracy": 0.9, "train_loss": 0.3, "steps": 100, "hessian_top_eigenvalue": 5.0}
                         for i, (label, offset) in enumerate(offsets.items()) for seed in design.seeds])
    ratio_runs = pd.DataFrame([{"lr rule": rule, "batch_size": b, "seed": seed, "key": f"{rule}-{b}-{seed}",
                                "status": "completed",
                                "lr_over_batch": (0.1 if rule == "fixed lr" else 0.1 * b / 16) / b,
                                "hessian_top_eigenvalue": float(b if rule == "fixed lr" else 16)
                                + _rng(seed + b).normal(0, 1), "test_accuracy": 0.8}
                               for rule in train_longer.RATIO_RULES for b in design.batch_sizes
                               for seed in design.seeds])
    steps = np.arange(1, 41)
    distances = pd.concat([pd.DataFrame({"step": steps, "run": label, "seed": seed,
                                         "distance": 1 + (1 + 0.1 * seed) * np.log(steps)
                                         + (seed == 4) * 0.5 * np.sqrt(steps)})
                           for label in train_longer._distance_configs(design) for seed in design.seeds],
                          ignore_index=True)
    return train_longer.Tables(design=design, rows=rows, ratio_runs=ratio_runs, distances=distances,
                               **train_longer._distance_fits(design, distances),
                               **train_longer._summaries(rows, ratio_runs))


def test_train_longer_restriction_reaches_every_verdict(tmp_path, monkeypatch):
    tables = _train_longer_tables()
    full = _by_key(train_longer.verdicts(tables))
    assert _by_key(train_longer.verdicts(train_longer.restrict(tables, SEEDS))) == full
    kept = train_longer.restrict(tables, [0, 1, 2, 3])
    without_4 = _by_key(train_longer.verdicts(kept))
    for claim in ("B3", "B4"):
        assert "5 pairs" in full[claim, ""].evidence and "4 pairs" in without_4[claim, ""].evidence
    assert set(kept.row_summary["test_accuracy_n"]) == {4} and set(kept.ratio_summary["test_accuracy_n"]) == {4}
    assert "over 20 runs" in full["J1", ""].evidence and "over 16 runs" in without_4["J1", ""].evidence
    # B1 fits the mean curve of the kept seeds: seed 4's curve (a square-root term) leaves it
    mean_kept = tables.distances[tables.distances["seed"] < 4].groupby("step")["distance"].mean()
    curve = kept.curves["B = 16"].set_index("step")["distance"]
    assert np.allclose(curve, mean_kept) and not np.allclose(tables.curves["B = 16"]["distance"], mean_kept)
    assert kept.fit_table["R2 (log law)"].min() > tables.fit_table["R2 (log law)"].min()
    assert without_4["B1", ""].value != full["B1", ""].value

    rows = _recorded(train_longer.CHAPTER, tables, train_longer, tmp_path, monkeypatch)
    _one_omission_per_seed(rows)
    b1 = next(r for r in rows if r["claim"] == "B1")
    assert b1["stability"]["omissions"][4]["value"] == pytest.approx(without_4["B1", ""].value)


# ------------------------------------------------------------------ 04 adversarial


def _adversarial_tables() -> adversarial.Tables:
    design = adversarial.design(namespace("04_adversarial", seeds=SEEDS))
    rows = []
    for regime in adversarial.REGIMES:
        for momentum in (design.low_momentum, design.momentum):
            for b in design.batch_sizes:
                for seed in design.seeds:
                    # the seed's luck, shared by every run at the seed, and the run's own
                    noise = _rng(seed * 100 + b).normal(0, 0.01) + _rng(len(rows)).normal(0, 0.003)
                    for attack in ("fgsm", "pgd"):
                        large = b == design.large
                        rows.append({"regime": regime, "momentum": momentum, "batch_size": b, "seed": seed,
                                     "key": f"{regime}-{momentum}-{b}-{seed}", "attack": attack,
                                     "status": "completed", "setting": adversarial._setting(regime, momentum),
                                     "test_accuracy": 0.8 - 0.05 * large + noise, "auc": 0.5 - 0.05 * large + noise,
                                     "robust_at_ref": 0.4 + noise, "hessian_top_eigenvalue": 1.0 + large,
                                     "log_eigenvalue": np.log(1.0 + large) + noise})
    runs = pd.DataFrame(rows)
    a4 = pd.DataFrame([{"training": training, "batch_size": b, "seed": seed, "key": f"{training}-{b}-{seed}",
                        "attack": "pgd", "test_accuracy": 0.8, "auc": 0.5,
                        "log_eigenvalue": (0.0 if training == "natural" else -0.5) + _rng(seed + b).normal(0, 0.1)
                        + _rng(seed + b + 1000 * (training == "natural")).normal(0, 0.05)}
                       for training in ("natural", adversarial.ADVERSARIAL) for b in (design.small, design.large)
                       for seed in design.seeds])
    curves = runs.assign(epsilon=0.1, robust_accuracy=runs["robust_at_ref"])
    curvature = pd.DataFrame({"network": ["MLP relu", "MLP tanh"], "psd": [True, False], "rank_bound": [True, True]})
    convexity = pd.DataFrame({"network": ["MLP relu"], "segment": ["inside the linear region"], "convex": [True]})
    return adversarial.Tables(design, pd.Series({"completed": 1}), {"rms": 1.0, "linf": 2.0}, curves, runs,
                              a4.assign(epsilon=0.1, robust_accuracy=0.4), a4, curvature, convexity, {},
                              ["MLP relu"], ["MLP tanh"])


def test_adversarial_restriction_reaches_every_verdict_but_a3(tmp_path, monkeypatch):
    tables = _adversarial_tables()
    full = _by_key(adversarial.verdicts(tables))
    assert _by_key(adversarial.verdicts(adversarial.restrict(tables, SEEDS))) == full
    kept = adversarial.restrict(tables, [0, 1, 2, 4])
    assert set(kept.pgd_runs["seed"]) == set(kept.a4["seed"]) == set(kept.table["seed"]) == {0, 1, 2, 4}
    without_3 = _by_key(adversarial.verdicts(kept))
    for key in [("A2", "accuracy"), ("A2", "pgd"), ("C2", "momentum 0"), ("C2", "momentum 0.9"),
                ("A4", "B = 16"), ("A4", "B = 64")]:
        assert "5 pairs" in full[key].evidence and "4 pairs" in without_3[key].evidence, key
    assert full["C3", ""].evidence != without_3["C3", ""].evidence
    for setting in ("area under PGD curve", "test accuracy"):  # C1: means over the kept seeds
        assert full["C1", setting].value != without_3["C1", setting].value

    rows = _recorded(adversarial.CHAPTER, tables, adversarial, tmp_path, monkeypatch)
    a3 = [r for r in rows if r["claim"] == "A3"]
    assert len(a3) == 4 and all(r["stability"]["status"] == analysis.NOT_APPLICABLE for r in a3)
    assert all("one run per network" in r["stability"]["note"] and not r["stability"]["omissions"] for r in a3)
    _one_omission_per_seed([r for r in rows if r["claim"] != "A3"])


# ------------------------------------------------------------------ on tiny real runs


@pytest.mark.slow
@pytest.mark.parametrize("chapter, study", [(sharp_minima.CHAPTER, sharp_minima), (train_longer.CHAPTER, train_longer),
                                            (adversarial.CHAPTER, adversarial)])
def test_four_seeds_of_tiny_runs_give_one_omission_per_seed(chapter, study, tmp_path, monkeypatch):
    """The tables of real (tiny) runs restrict: all seeds give the verdicts as they are, and the
    verdict file holds an omission per seed for every verdict (A3: not applicable)."""
    monkeypatch.setenv("LARGEBATCH_CACHE_DIR", str(tmp_path / "cache"))
    seeds = [0, 1, 2, 3]
    tables = study.tables(study.design(namespace(chapter, seeds=seeds)))
    assert study.verdicts(study.restrict(tables, seeds)) == study.verdicts(tables)
    rows = _recorded(chapter, tables, study, tmp_path / "verdicts", monkeypatch)
    assert all(r["stability"]["status"] == analysis.NOT_APPLICABLE for r in rows if r["claim"] == "A3")
    _one_omission_per_seed([r for r in rows if r["claim"] != "A3"], seeds)


# ------------------------------------------------------------------ chapter 05


def _adaptive_batch_tables() -> adaptive_batch.Tables:
    design = adaptive_batch.design(namespace(adaptive_batch.CHAPTER, seeds=SEEDS))
    chosen = pd.Series({"estimate": "sampled", "samples": 32, "max_products": 3, "agreement": 1.0,
                        "gradient_evaluations": 1000.0, "reliable": True})
    methods = [adaptive_batch.SMALL, adaptive_batch.GROWTH, adaptive_batch.NOISE, design.abs, design.absa,
               adaptive_batch.method_label("ABSA", 32, 3)]
    assert len(set(methods)) == len(methods)
    rows = []
    for index, method in enumerate(methods):
        for seed in SEEDS:
            luck = _rng(seed).normal(0, 0.02)  # the seed's initialization, shared by every method
            own = _rng(100 * index + seed).normal(0, 0.002)
            rows.append({"method": method, "seed": seed, "test_accuracy": 0.9 - 0.005 * (index > 0) + luck + own,
                         "robust_accuracy": 0.5 + luck + own, "updates": 1000.0 / (1 + index),
                         "gradient_evaluations": 5e4 * (1 + index) + own, "wall_time_s": 1.0,
                         "top_eigenvalue": float(np.exp(1.0 - 0.1 * index + luck)), "final_batch": 64})
    per_run = pd.DataFrame(rows)
    summary = analysis.seed_summary(per_run, "method", list(adaptive_batch.METRICS))
    per_run = per_run.assign(log_eigenvalue=np.log(per_run["top_eigenvalue"]),
                             test_points=100 * per_run["test_accuracy"],
                             robust_points=100 * per_run["robust_accuracy"])
    return adaptive_batch.Tables(design, {}, {}, pd.Series(["completed"]), {"epochs": [1, 2]}, pd.DataFrame(),
                                 chosen, per_run, summary)


def test_adaptive_batch_restriction_reaches_every_verdict_and_pairs_by_seed(tmp_path, monkeypatch):
    tables = _adaptive_batch_tables()
    full = _by_key(adaptive_batch.verdicts(tables))
    assert _by_key(adaptive_batch.verdicts(adaptive_batch.restrict(tables, SEEDS))) == full
    kept = adaptive_batch.restrict(tables, [0, 1, 2, 4])
    assert set(kept.per_run["seed"]) == {0, 1, 2, 4} and (kept.summary["test_accuracy_n"] == 4).all()
    without_3 = _by_key(adaptive_batch.verdicts(kept))
    accuracy = [key for key in full if key[1].startswith("accuracy")]
    assert len(accuracy) == 4  # D1, D2 and D3 (twice)
    for key in accuracy + [("D2", "log eigenvalue: ABSA vs ABS"), ("D2", "robust accuracy: ABSA vs ABS")]:
        assert "paired test by seed" in full[key].criterion, key
        assert "5 pairs" in full[key].evidence and "4 pairs" in without_3[key].evidence, key
    # a 0.5-point shift under a 2-point seed effect: within the 1-point margin only when paired
    d1 = f"accuracy: {tables.design.absa} vs {adaptive_batch.SMALL}"
    assert full["D1", d1].outcome == "reproduced"
    points = {m: group["test_points"].tolist() for m, group in tables.per_run.groupby("method")}
    welch = analysis.margin_verdict("D1", points[tables.design.absa], points[adaptive_batch.SMALL], quantity="a",
                                    margin=100 * tables.design.accuracy_margin, z=tables.design.z_threshold)
    assert welch.outcome == "inconclusive" and "Welch" in welch.criterion
    rows = _recorded(adaptive_batch.CHAPTER, tables, adaptive_batch, tmp_path, monkeypatch)
    _one_omission_per_seed(rows)
