"""The chapter study modules (largebatch.studies) without papermill: designs from the notebooks'
parameters, errors that name them, the design table, and each study end to end on tiny runs."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
from pathlib import Path

import jupytext
import pytest
from pandas.io.formats.style import Styler

from largebatch import claims, reproduce
from largebatch.config import ConfigError, RunConfig
from largebatch.studies import adaptive_batch, adversarial, sharp_minima, train_longer
from largebatch.studies.common import LabelledRun, design_table, parameters

ROOT = Path(__file__).resolve().parents[1]
STUDIES = {"02_sharp_minima": sharp_minima, "03_train_longer": train_longer, "04_adversarial": adversarial,
           "05_adaptive_batch": adaptive_batch}
GLUED = re.compile(r"\{glue:text\}`(\w+)")


def notebook_source(chapter: str) -> Path:
    return ROOT / "notebooks" / f"{chapter}.py"


def namespace(chapter: str, profile: str = "smoke", **changes) -> dict:
    """The notebook's parameters cell executed, then a profile's values and ``changes`` on top
    (as papermill injects them)."""
    cell = next(c for c in jupytext.read(notebook_source(chapter)).cells
                if "parameters" in c.metadata.get("tags", []))
    values: dict = {}
    exec(compile(cell.source, chapter, "exec", dont_inherit=True), values)  # real hints, as in a kernel
    declared = reproduce.declared_parameters(notebook_source(chapter).with_suffix(".ipynb"))
    values.update(reproduce.parameters_for(chapter, declared, reproduce.load_profile(ROOT, profile), {}))
    values.update(changes)
    return values


@pytest.mark.parametrize("chapter", STUDIES)
def test_design_fields_are_the_notebook_parameters(chapter):
    study = STUDIES[chapter]
    fields = {f.name for f in dataclasses.fields(study.Design)}
    assert fields == reproduce.declared_parameters(notebook_source(chapter).with_suffix(".ipynb"))
    assert study.CHAPTER == chapter


@pytest.mark.parametrize("chapter", STUDIES)
@pytest.mark.parametrize("profile", ["smoke", "quick"])
def test_every_design_takes_another_seed_list(chapter, profile):
    """``reproduce --seeds 5 6 7 8 9`` gives a chapter only its seeds: nothing may name seed 0."""
    design = STUDIES[chapter].design(namespace(chapter, profile, seeds=[5, 6, 7, 8, 9]))
    assert design.seeds == [5, 6, 7, 8, 9]
    if chapter == "05_adaptive_batch":
        assert design.agreement_seed == 5  # -1: the first of the seeds
        assert adaptive_batch.design(namespace(chapter, profile, seeds=[5, 6], agreement_seed=6)).agreement_seed == 6


@pytest.mark.parametrize("chapter, changes, message", [
    ("02_sharp_minima", {"epochs": "20"}, "parameter epochs must be of type int"),
    ("02_sharp_minima", {"batch_sizes": [480, 32]}, "parameter batch_sizes must hold at least two increasing"),
    ("02_sharp_minima", {"model": "resnet20"}, "parameter model must be one of"),
    ("02_sharp_minima", {"max_epochs": 1}, "parameter max_epochs must be >= epochs"),
    ("03_train_longer", {"large_batch": 16}, "parameter large_batch must exceed small_batch (16)"),
    ("03_train_longer", {"milestones": [5.0]}, "parameter milestones must be a non-empty list of epochs below"),
    ("03_train_longer", {"model_options": {}}, "has no batch norm layer"),
    ("04_adversarial", {"epsilons": [0.1, 0.2], "reference_eps": 0.1}, "parameter epsilons must include 0"),
    ("04_adversarial", {"curvature_activations": ["tanh", "relu"]}, "parameter curvature_activations must start"),
    ("04_adversarial", {"batch_sizes": [16, 4096]}, "batch_size must be <= the training set size"),
    ("05_adaptive_batch", {"schedule": "cosine"}, "parameter schedule must be one of"),
    ("05_adaptive_batch", {"seeds": [0]}, "parameter seeds needs at least two distinct seeds"),
    ("05_adaptive_batch", {"noise_micro_batch": 5}, "parameter noise_micro_batch must divide small_batch (16)"),
    ("05_adaptive_batch", {"micro_batch_size": -1}, "parameter micro_batch_size must be >= 0"),
    ("05_adaptive_batch", {"epsilons": [0.0, 0.2]}, "parameter reference_eps must be one of epsilons"),
    ("05_adaptive_batch", {"agreement_seed": 7}, "parameter agreement_seed must be one of seeds"),
    ("05_adaptive_batch", {"min_agreement": 1.5}, "parameter min_agreement must be in (0, 1]"),
    ("05_adaptive_batch", {"eigen_iterations": 3}, "must be in the study's grid: agreement_samples"),
    ("05_adaptive_batch", {"agreement_repeats": 1}, "parameter agreement_repeats must be >= 2"),
    ("05_adaptive_batch", {"agreement_tight_tol": 0.5}, "parameter agreement_tight_tol must be in (0, eigen_tol"),
    ("05_adaptive_batch", {"agreement_products": [0, 5]}, "parameter agreement_products must be positive"),
    ("05_adaptive_batch", {"agreement_samples": [128, 100000]}, "parameter agreement_samples must be <= the training"),
    ("05_adaptive_batch", {"max_batch_size": 16384}, "must be <= the training set size"),
])
def test_bad_parameters_fail_with_the_parameter_named(chapter, changes, message):
    with pytest.raises(ConfigError) as failure:
        STUDIES[chapter].design(namespace(chapter, **changes))
    assert message in str(failure.value)


def test_a_parameter_the_notebook_does_not_set_is_named():
    values = namespace("03_train_longer")
    del values["fit_start"], values["__annotations__"]["fit_start"]  # a notebook without that parameter
    with pytest.raises(ConfigError, match="parameter fit_start is not set"):
        parameters(values, train_longer.Design)


def test_design_table_has_one_row_per_setting_and_the_shared_fields_in_its_caption():
    base = RunConfig(num_samples=600, lr=0.1, hessian_top_k=1)
    runs = [LabelledRun({"arm": arm, "seed": seed}, base.replace(batch_size=size, seed=seed))
            for arm, size in (("small", 32), ("large", 256)) for seed in (0, 1, 2)]
    styler = design_table(runs)
    frame = styler.data
    assert list(frame.columns) == ["arm", "batch size", "seeds"]
    assert frame.values.tolist() == [["small", "32", "0, 1, 2"], ["large", "256", "0, 1, 2"]]
    caption = styler.caption
    assert caption.startswith("Every run: ") and "lr 0.1" in caption and "hessian top k 1" in caption
    assert "momentum 0.9" in caption  # a core field, shown at its default value too
    assert "batch size" not in caption and "seed" not in caption


def test_the_quick_designs_of_the_chapters():
    design = train_longer.design(namespace("03_train_longer", profile="quick"))
    # the baseline and "no fix" rows are also runs of the ratio study (B0 under both rules, B under fixed lr)
    assert len(design.runs) == 55 and len({r.config.key() for r in design.runs}) == 40
    frame = design.table().data
    assert len(frame) == 11 and set(frame["seeds"]) == {"0, 1, 2, 3, 4"}
    assert {"study", "run", "batch size", "lr scaling", "ghost batch size", "regime adaptation"} <= set(frame)
    design = adversarial.design(namespace("04_adversarial", profile="quick"))
    assert len(design.training_runs) == 64  # 12 per seed, 4 input-curvature networks
    assert len(sharp_minima.design(namespace("02_sharp_minima", profile="quick")).runs) == 60
    design = adaptive_batch.design(namespace("05_adaptive_batch", profile="quick"))
    assert len(design.runs) == 35 and len({r.config.key() for r in design.runs}) == 35
    frame = design.table().data
    assert list(frame.columns) == ["method", "batch", "learning rate", "batch rule", "seeds"] and len(frame) == 7
    assert list(frame["method"])[-2:] == ["ABS (128 × 10)", "ABSA (128 × 10)"]
    cheap = design.cheap_configs(128, 5)
    assert list(cheap) == ["ABS (128 × 5)", "ABSA (128 × 5)"]
    assert [c.eigen_iterations for c in cheap["ABS (128 × 5)"]] == [5] * 5  # one per seed
    assert list(design.cheap_configs(128, 10)) == [design.abs, design.absa]  # the reference setting: the same runs


@pytest.mark.slow
@pytest.mark.parametrize("chapter", STUDIES)
def test_study_end_to_end_on_tiny_runs(chapter, tmp_path, monkeypatch):
    """Design, tables, every figure and shown table, the verdict file and the glued numbers."""
    monkeypatch.setenv("LARGEBATCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv(claims.VERDICTS_DIR_ENV, str(tmp_path / "verdicts"))
    study = STUDIES[chapter]
    tables = study.tables(study.design(namespace(chapter)))
    shown = [f for name, f in inspect.getmembers(study, inspect.isfunction)
             if f.__module__ == study.__name__ and not name.startswith("_")
             and list(inspect.signature(f).parameters) == ["tables"] and name not in ("verdicts", "prose")]
    figures = [f for f in shown if f.__name__.endswith("_figure")]
    for function in shown:
        result = function(tables)
        assert (result is None) if function in figures else isinstance(result, Styler), function.__name__
    assert len(list((tmp_path / "cache" / "figures").glob("*.png"))) == len(figures)
    recorded = json.loads((tmp_path / "verdicts" / f"{chapter}.verdicts.json").read_text())
    assert {v["claim"] for v in recorded["verdicts"]} == {c.id for c in claims.CLAIMS.values()
                                                         if c.chapter == chapter}
    glued = set(GLUED.findall(notebook_source(chapter).read_text()))
    assert glued <= set(study.prose(tables)), sorted(glued - set(study.prose(tables)))


@pytest.mark.parametrize("chapter", STUDIES)
def test_the_chapter_notebook_only_calls_its_study(chapter):
    """No functions in the notebook, its parameters cell collapsed, and it uses its own study module."""
    cells = [c for c in jupytext.read(notebook_source(chapter)).cells if c.cell_type == "code"]
    assert not [c.source for c in cells if re.search(r"^\s*(def|class) ", c.source, re.M)]
    parameters_cell = next(c for c in cells if "parameters" in c.metadata.get("tags", []))
    assert "hide-input" in parameters_cell.metadata["tags"]
    study = STUDIES[chapter].__name__.rsplit(".", 1)[1]
    assert any(f"from largebatch.studies import {study} as study" in c.source for c in cells)
