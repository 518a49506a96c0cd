"""The paper profile cannot rot: every chapter runs its paper-profile code path on a CPU.

Each chapter notebook is executed with ``profiles/paper.yaml`` (the papers' networks
c1, c2, resnet20, f1, m1 on CIFAR-10/100, MNIST and SVHN) merged with a few
overrides that shrink only sizes (epochs, batch sizes, samples, probes), on tiny
data sets written in their real on-disk formats. A change that breaks the GPU
profile (a parameter the notebook no longer declares, a model that no longer
fits the image shape, a reader that no longer parses the files) fails here.

A new chapter needs one entry in ``SHRINK``; ``EXTRA`` runs the quick start on
the networks and data sets no chapter's paper profile uses.
"""

from __future__ import annotations

from pathlib import Path

import papermill
import pytest

from largebatch import reproduce

from fakedata import write_image_sets

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = {name: path for name, path in reproduce.chapter_notebooks(ROOT).items() if "summary" not in name}

SHRINK: dict[str, dict] = {  # per chapter: sizes only, never the data set, network or method
    "00_quickstart": {"small_batch": 2, "large_batch": 8, "epochs": 1},
    # Hessian-vector products through the CIFAR networks cost seconds on a CPU: few images, loose tolerances
    "01_hessian": {"epochs": 1, "batch_size": 4, "hessian_samples": 2, "chunk_size": 2, "seeds": [0],
                   "num_samples": 600, "tiny_epochs": 1, "top_k": 2, "tol": 0.1, "trace_budgets": [3, 6],
                   "trace_matvecs": 3, "slq_runs": 1, "slq_steps": 5, "probe_batch_sizes": [2],
                   "timing_samples": 2, "timing_repeats": 1},
    # a target every run reaches: the chapter's tables need runs that stopped on the loss threshold
    "02_sharp_minima": {"batch_sizes": [2, 8], "epochs": 1, "max_epochs": 1, "target_train_loss": 50.0,
                        "seeds": [0], "hessian_top_k": 2, "hessian_tol": 0.1, "trace_probes": 2,
                        "keskar_iterations": 1, "landscape_points": 3, "density_runs": 1, "density_steps": 3},
    "03_train_longer": {"small_batch": 2, "large_batch": 8, "batch_sizes": [2, 8], "ghost_batch_size": 2,
                        "epochs": 2, "milestones": [1.0], "seeds": [0, 1], "fit_start": 1},
    "04_adversarial": {"batch_sizes": [2, 8], "seeds": [0, 1], "epochs": 1, "attack_samples": 4, "pgd_steps": 2,
                       "curvature_points": 1, "curvature_activations": ["relu", "tanh"]},
    # three epochs and a duration of 2: the ABS run makes the two decisions the estimate study needs
    "05_adaptive_batch": {"small_batch": 4, "max_batch_size": 8, "micro_batch_size": 2, "epochs": 3,
                          "milestones": [1.0], "growth_milestones": [1.0], "warmup_epochs": 0.5,
                          "noise_micro_batch": 2, "adaptive_duration": 2, "eigen_samples": 4,
                          "eigen_iterations": 2, "agreement_samples": [4], "agreement_products": [2],
                          "agreement_tight_tol": 0.01, "seeds": [0, 1],
                          "attack_samples": 4, "pgd_steps": 2, "hessian_tol": 0.1},
}
EXTRA = {  # networks and data sets of the papers that no chapter's paper profile trains
    "cifar100-c2": ("00_quickstart", {"dataset": "cifar100", "model": "c2"}),
    "svhn-m1": ("00_quickstart", {"dataset": "svhn", "model": "m1"}),
}
CASES = [pytest.param(name, {}, id=name) for name in NOTEBOOKS] + [
    pytest.param(name, extra, id=f"{name}-{label}") for label, (name, extra) in EXTRA.items() if name in NOTEBOOKS]


@pytest.fixture(scope="module")
def image_data(tmp_path_factory):
    """MNIST, Fashion-MNIST, CIFAR-10/100 and SVHN with 10 training and 10 test images each."""
    return write_image_sets(tmp_path_factory.mktemp("data"), n_train=10, n_test=10)


def test_every_chapter_has_shrink_overrides_that_it_declares():
    for name, path in NOTEBOOKS.items():
        assert name in SHRINK, f"add an entry for {name} to SHRINK in {Path(__file__).name}"
        undeclared = set(SHRINK[name]) - reproduce.declared_parameters(path)
        assert not undeclared, f"{name} does not declare {sorted(undeclared)}"
    paper = reproduce.load_profile(ROOT, "paper")
    for name in NOTEBOOKS:  # the overrides shrink sizes; they never change what the paper profile trains
        assert not {"dataset", "model", "models", "augmentation"} & set(SHRINK[name])
    assert paper["all"]["augmentation"] == "crop_flip"


@pytest.mark.slow
@pytest.mark.parametrize("name, extra", CASES)
def test_paper_profile_code_path_runs_on_tiny_data(name, extra, image_data, tmp_path, monkeypatch):
    source = NOTEBOOKS[name]
    paper = reproduce.load_profile(ROOT, "paper")
    parameters = reproduce.parameters_for(name, reproduce.declared_parameters(source), paper,
                                          {**SHRINK[name], **extra})
    assert parameters.get("dataset", "mnist1d") != "mnist1d", "the paper profile trains on image data"
    for key, env in (("LARGEBATCH_DATA", image_data), ("LARGEBATCH_CACHE_DIR", tmp_path / "cache"),
                     ("LARGEBATCH_VERDICTS_DIR", tmp_path), ("LARGEBATCH_PROFILE", "paper")):
        monkeypatch.setenv(key, str(env))
    papermill.execute_notebook(str(source), str(tmp_path / source.name), parameters=parameters,
                               cwd=str(source.parent), kernel_name="python3", progress_bar=False)
