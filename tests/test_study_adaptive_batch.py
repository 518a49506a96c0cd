"""The estimate study of chapter 05 (largebatch.studies.adaptive_batch): snapshots, decision agreement,
cost, the cheapest reliable setting. The chapter's design and its end-to-end run are in test_studies.py."""

import matplotlib
import pytest
import torch

from largebatch import experiments, hessian
from largebatch.studies import adaptive_batch as study
from largebatch.studies.adaptive_batch import EstimateGrid
from largebatch.config import RunConfig

matplotlib.use("Agg")

TINY_ABS = RunConfig(num_samples=400, model="mnist1d_mlp", model_options={"width": 8}, batch_size=16, epochs=4,
                     lr=0.05, lr_scaling="linear", base_batch_size=16, batch_size_controller="abs",
                     max_batch_size=128, adaptive_duration=1, eigen_samples=64, eigen_iterations=5)

# three snapshots, tight eigenvalues 10, 4, 6: with ratio 2 only the pair (0, 1) doubles
SCRIPTED = {"epochs": [1, 2, 3], "tight": [10.0, 4.0, 6.0], "tight_products": 30, "num_train": 100,
            "traces": {"8": [[[20.0, 10.0], [12.0]], [[4.0, 4.0], [7.0]], [[6.0, 6.0], [6.0]]]}}


def test_agreement_counts_every_snapshot_pair_and_repeat_pair_at_each_product_cap():
    table = study.decision_agreement(SCRIPTED, (1, 2), ratio=2.0).set_index(["estimate", "max_products"],
                                                                                  drop=False)
    two, one = table.loc[("sampled", 2)], table.loc[("sampled", 1)]
    # cap 2: pair (0,1) agrees 2 of 4, (0,2) 2 of 4, (1,2) 4 of 4
    assert two["agreement"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    # cap 1 stops the first repeat at 20: (0,1) 3 of 4, (0,2) 0 of 4, (1,2) 4 of 4
    assert one["agreement"] == pytest.approx((0.75 + 0.0 + 1.0) / 3)
    assert (two["pairs"], two["doubling_pairs"]) == (3, 1)
    assert two["mean_products"] == 1.5 and two["gradient_evaluations"] == pytest.approx(8 * (1 + 2 * 1.5))
    assert one["gradient_evaluations"] == pytest.approx(8 * 3)
    tight = table[table["estimate"] == "tight"].iloc[0]
    assert tight["agreement"] == 1.0 and tight["gradient_evaluations"] == pytest.approx(100 * (1 + 2 * 10))
    assert list(table["gradient_evaluations"]) == sorted(table["gradient_evaluations"])


def test_cheapest_reliable_setting_or_the_most_agreeing_one():
    table = study.decision_agreement(SCRIPTED, (1, 2), ratio=2.0)
    chosen = study.cheapest_reliable(table, 0.6)
    assert (chosen["max_products"], bool(chosen["reliable"])) == (2, True)
    assert study.cheapest_reliable(table, 0.5)["max_products"] == 1  # both reach 0.5: the cheaper
    fallback = study.cheapest_reliable(table, 0.9)
    assert (fallback["max_products"], bool(fallback["reliable"])) == (2, False)
    assert study.estimate_setting(table, 8, 1)["agreement"] == pytest.approx(1.75 / 3)
    with pytest.raises(ValueError, match="not in the study's grid"):
        study.estimate_setting(table, 8, 5)
    with pytest.raises(ValueError, match="min_agreement"):
        study.cheapest_reliable(table, 0.0)
    figure = study.agreement_plot(table, 0.6, {"chosen": (8, 2)})
    assert figure.axes[0].get_xscale() == "log"


@pytest.mark.parametrize("changes, name", [(dict(samples=()), "samples"), (dict(products=(0,)), "products"),
                                           (dict(repeats=1), "repeats"), (dict(tight_tol=0.1), "tight_tol")])
def test_bad_grids_are_rejected(changes, name):
    with pytest.raises(ValueError, match=name):
        EstimateGrid(**{"samples": (8,), "products": (2,), **changes})


def test_epoch_weights_are_the_cached_runs_bit_for_bit(tmp_path):
    experiments.run(TINY_ABS, tmp_path, progress=False)
    final = experiments.load_model(TINY_ABS, tmp_path).state_dict()
    weights = study.epoch_weights(TINY_ABS, 4)
    assert len(weights) == 4
    for name, value in final.items():
        assert torch.equal(weights[-1][name], value)
    for early, again in zip(weights[:2], study.epoch_weights(TINY_ABS, 2)):  # a prefix is the same run
        assert all(torch.equal(early[name], again[name]) for name in early)
    with pytest.raises(ValueError, match="adversarial"):
        study.epoch_weights(TINY_ABS.replace(batch_size_controller="absa", adversarial_fraction=0.2,
                                                  adversarial_eps=0.1), 2)


def test_measured_estimates_on_a_tiny_run_are_cached_and_capped(tmp_path, monkeypatch):
    grid = EstimateGrid(samples=(32, 128), products=(2, 5), repeats=2, tight_tol=1e-3)
    measured = study.measure_estimates(TINY_ABS, grid, tmp_path)
    record = experiments.load_record(TINY_ABS, tmp_path)
    assert measured["epochs"] == study.decision_epochs(record) == [1, 2, 3]
    assert len(measured["tight"]) == 3 and measured["num_train"] == 320
    for traces in measured["traces"].values():
        assert len(traces) == 3 and all(len(repeats) == 2 and all(1 <= len(t) <= 5 for t in repeats)
                                        for repeats in traces)
    table = study.decision_agreement(measured, grid.products, TINY_ABS.adaptive_ratio)
    assert len(table) == 2 * 2 + 1 and table["agreement"].between(0, 1).all()
    monkeypatch.setattr(hessian, "top_eigenvalues", lambda *a, **k: pytest.fail("must read the cache"))
    assert study.measure_estimates(TINY_ABS, grid, tmp_path) == measured


def test_a_run_with_one_decision_is_refused_naming_the_parameters(tmp_path):
    short = TINY_ABS.replace(max_batch_size=32)  # the first forced doubling reaches the cap
    with pytest.raises(ValueError, match="max_batch_size"):
        study.measure_estimates(short, EstimateGrid(samples=(32,), products=(2,)), tmp_path)


def test_doubling_causes_replay_the_rule_on_the_recorded_estimates(tmp_path):
    record = experiments.run(TINY_ABS, tmp_path, progress=False)
    causes = study.doubling_causes(record)
    batches = [row["batch_size"] for row in record["history"]]
    assert causes["ratio"] + causes["duration"] == sum(b > a for a, b in zip(batches, batches[1:])) == 3
    record["history"][2]["batch_size"] = 16  # not what the rule gives
    with pytest.raises(ValueError, match="replayed rule"):
        study.doubling_causes(record)


def test_agreement_table_shows_percent_and_cost():
    shown = study.agreement_frame(study.decision_agreement(SCRIPTED, (2,), ratio=2.0))
    assert list(shown.iloc[0]) == ["8 samples, ≤ 2 products", "66.7 ± 16.7", 1.5, 32]


def test_closest_tight_ratio_to_the_threshold():
    assert study.closest_tight_ratio(SCRIPTED, 2.0) == pytest.approx(0.6)  # 6 / 10 (4/10, 6/4 farther)
