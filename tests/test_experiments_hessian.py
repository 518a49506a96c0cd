"""Curvature recorded at the end of a run: top and bottom eigenvalues, trace, tolerances, cache keys."""

import math

import pytest

from largebatch import experiments, hessian
from largebatch.config import ConfigError, RunConfig

TINY = RunConfig(num_samples=200, model="mnist1d_mlp", model_options={"width": 6}, batch_size=32,
                 epochs=2, lr=0.05)


def test_new_fields_at_their_defaults_keep_old_cache_keys():
    # The key hashes only fields that differ from their defaults, so configurations
    # written before these fields existed keep their results.
    assert RunConfig().key() == RunConfig(hessian_bottom_k=0, hessian_tol=None, hessian_trace_probes=None).key()
    assert TINY.replace(hessian_bottom_k=1).key() != TINY.key()


@pytest.mark.parametrize("changes, message", [
    ({"hessian_bottom_k": -1}, "hessian_bottom_k must be >= 0"),
    ({"hessian_tol": 0.0}, "hessian_tol must be positive"),
    ({"hessian_tol": float("nan")}, "hessian_tol must be positive"),
    ({"hessian_trace_probes": 1}, "hessian_trace_probes must be an integer >= 2"),
])
def test_bad_hessian_options_are_rejected(changes, message):
    with pytest.raises(ConfigError, match=message):
        TINY.replace(**changes)


def test_record_holds_top_bottom_and_trace_matching_the_dense_hessian(tmp_path):
    config = TINY.replace(hessian_top_k=2, hessian_bottom_k=1, hessian_trace=True, hessian_tol=1e-8,
                          hessian_trace_probes=400)
    final = experiments.run(config, tmp_path, progress=False)["final"]
    model = experiments.load_model(config, tmp_path)
    exact = hessian.exact_eigenvalues(model, experiments.load_data(config).train.tensors)
    assert final["hessian_top_eigenvalues"] == pytest.approx(exact[:2].tolist(), rel=1e-3)
    assert final["hessian_top_eigenvalue"] == final["hessian_top_eigenvalues"][0]
    assert final["hessian_smallest_eigenvalue"] == pytest.approx(float(exact[-1]), rel=1e-2, abs=1e-4)
    assert final["hessian_bottom_eigenvalues"] == [final["hessian_smallest_eigenvalue"]]
    assert final["hessian_top_converged"] and final["hessian_bottom_converged"]
    trace, error = final["hessian_trace"], final["hessian_trace_std_error"]
    assert abs(trace - float(exact.sum())) < 5 * error + 1e-6
    assert final["hessian_matvecs"] >= 400


def test_without_curvature_options_nothing_is_computed(tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("no Hessian was asked for")

    monkeypatch.setattr(hessian, "top_eigenvalues", forbidden)
    monkeypatch.setattr(hessian, "trace", forbidden)
    final = experiments.run(TINY, tmp_path, progress=False)["final"]
    assert not any(key.startswith("hessian") for key in final)


def test_tolerance_and_probes_reach_the_estimators(tmp_path, monkeypatch):
    seen = {}
    real_top, real_trace = hessian.top_eigenvalues, hessian.trace

    def top(*args, **kwargs):
        seen.setdefault("which", []).append(kwargs.get("which", "LA"))
        seen["tol"] = kwargs.get("tol")
        return real_top(*args, **kwargs)

    def trace(*args, **kwargs):
        seen["num_matvecs"] = kwargs.get("num_matvecs")
        return real_trace(*args, **kwargs)

    monkeypatch.setattr(hessian, "top_eigenvalues", top)
    monkeypatch.setattr(hessian, "trace", trace)
    config = TINY.replace(hessian_top_k=1, hessian_bottom_k=1, hessian_trace=True, hessian_tol=1e-2,
                          hessian_trace_probes=7)
    final = experiments.run(config, tmp_path, progress=False)["final"]
    assert seen == {"which": ["LA", "SA"], "tol": 1e-2, "num_matvecs": 7}
    assert math.isfinite(final["hessian_trace"]) and final["hessian_trace_std_error"] > 0
