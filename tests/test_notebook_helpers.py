"""Notebook helpers: a wrong parameter type or value names the parameter; tables without index."""

import pandas as pd
import pytest

from largebatch.config import ConfigError
from largebatch.notebook import check_choice, check_parameters, check_positive, mean_sem, require, show


def test_check_parameters_accepts_matching_values():
    namespace = {"__annotations__": {"epochs": int, "lr": float, "sizes": list[int], "name": str},
                 "epochs": 3, "lr": 1, "sizes": [1, 2], "name": "x"}
    check_parameters(namespace)


@pytest.mark.parametrize("name, value", [("epochs", "3"), ("epochs", 2.5), ("lr", "fast"),
                                         ("sizes", [1, "2"]), ("sizes", 4), ("name", 5)])
def test_check_parameters_names_the_wrong_parameter(name, value):
    namespace = {"__annotations__": {"epochs": int, "lr": float, "sizes": list[int], "name": str},
                 "epochs": 3, "lr": 0.1, "sizes": [1, 2], "name": "x"}
    namespace[name] = value
    with pytest.raises(ConfigError, match=f"parameter {name} must be of type"):
        check_parameters(namespace)


def test_choice_and_positive():
    check_choice("model", "a", ["a", "b"])
    with pytest.raises(ConfigError, match="parameter model must be one of a, b"):
        check_choice("model", "c", ["a", "b"])
    check_positive("batch_sizes", [1, 2])
    for bad in ([], [1, 0], -1):
        with pytest.raises(ConfigError, match="parameter batch_sizes must be positive"):
            check_positive("batch_sizes", bad)


def test_require_raises_the_message():
    require(True, "never shown")
    with pytest.raises(ConfigError, match="parameter top_k must be <= 5, got 7"):
        require(False, "parameter top_k must be <= 5, got 7")


def test_show_hides_the_index_and_rounds_to_significant_digits():
    frame = pd.DataFrame({"run": ["a", "b"], "value": [0.000123456, 98765.4321], "n": [3, 2]})
    html = show(frame.set_index("run")).to_html()
    assert "row_heading" not in html and ">run<" in html  # a named index becomes a column
    assert ">0.000123<" in html and ">9.88e+04<" in html and ">3<" in html
    assert ">nan<" not in show(pd.DataFrame({"x": [float("nan")]})).to_html()


def test_mean_sem_formats_each_row_and_drops_an_unknown_error():
    summary = pd.DataFrame({"acc_mean": [0.9123, 0.8], "acc_sem": [0.0051, float("nan")]})
    assert mean_sem(summary, "acc", scale=100, digits=1) == ["91.2 ± 0.5", "80.0"]
