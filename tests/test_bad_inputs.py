"""Every bad input fails with a clear error naming the culprit, and leaves the run cache untouched.

One table: what is called, the exception type, and a text the message must contain (the
parameter, file or value at fault). The cache (``$LARGEBATCH_CACHE_DIR``) holds a finished
run; every file in it is hashed before and after each call. ``python tests/test_bad_inputs.py``
prints the table with the actual messages as markdown.
"""

import contextlib
import hashlib
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, NamedTuple

import pytest
import torch
from torch.utils.data import TensorDataset

from largebatch import (attacks, data, experiments, experiments_cli, hessian, landscape, models, notebook,
                        reproduce, train)
from largebatch.config import ConfigError, RunConfig

TINY = RunConfig(num_samples=200, model="mnist1d_mlp", model_options={"width": 8}, batch_size=32,
                 epochs=1, lr=0.05)


class Row(NamedTuple):
    area: str
    description: str  # the bad input, as a user would write it
    call: Callable[[Path], Any]  # gets a scratch folder outside the cache
    error: type[BaseException]
    culprit: str  # must appear in the message


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return models.build("mnist1d_mlp", (1, 40), 10, width=8)


def _batch(labels_offset: int = 0, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(16, 1, 40, generator=generator) * scale
    return x, torch.arange(16) % 10 + labels_offset


def _sweep_file(folder: Path, content: Any) -> str:
    path = folder / "sweep.json"
    path.write_text(json.dumps(content))
    return str(path)


NAN = float("nan")
ROWS = [
    # configuration
    Row("config", "RunConfig(batch_size=0)", lambda t: RunConfig(batch_size=0), ConfigError, "batch_size"),
    Row("config", "RunConfig(lr=nan)", lambda t: RunConfig(lr=NAN), ConfigError, "lr"),
    Row("config", "RunConfig(lr='0.1')", lambda t: RunConfig(lr="0.1"), ConfigError, "lr"),
    Row("config", "RunConfig(dataset='imagenet')", lambda t: RunConfig(dataset="imagenet"), ConfigError, "dataset"),
    Row("config", "RunConfig(model='vgg16')", lambda t: RunConfig(model="vgg16"), ConfigError, "model"),
    Row("config", "RunConfig(num_samples=95)", lambda t: RunConfig(num_samples=95), ConfigError, "num_samples"),
    Row("config", "RunConfig(divergence_factor=1.0)", lambda t: RunConfig(divergence_factor=1.0), ConfigError,
        "divergence_factor"),
    Row("config", "RunConfig(divergence_factor=inf)", lambda t: RunConfig(divergence_factor=math.inf),
        ConfigError, "divergence_factor"),
    Row("config", "RunConfig(momentum=1.0)", lambda t: RunConfig(momentum=1.0), ConfigError, "momentum"),
    Row("config", "RunConfig(schedule='step') without milestones", lambda t: RunConfig(schedule="step"),
        ConfigError, "milestones"),
    Row("config", "RunConfig.from_dict({'batch': 64})", lambda t: RunConfig.from_dict({"batch": 64}),
        ConfigError, "'batch'"),
    Row("config", "RunConfig(batch_size_controller='abs') without max_batch_size",
        lambda t: RunConfig(batch_size_controller="abs"), ConfigError, "max_batch_size"),
    # experiments API and CLI
    Row("experiments", "run(TINY with batch_size=161 > 160 training samples)",
        lambda t: experiments.run(TINY.replace(batch_size=161), progress=False), ConfigError, "batch_size"),
    Row("experiments", "run({'batch_size': 3})", lambda t: experiments.run({"batch_size": 3}), TypeError,
        "RunConfig"),
    Row("experiments", "sweep([TINY], jobs=0)", lambda t: experiments.sweep([TINY], jobs=0), ValueError, "jobs"),
    Row("experiments", "sweep([TINY], shard=(4, 4))", lambda t: experiments.sweep([TINY], shard=(4, 4)),
        ValueError, "shard"),
    Row("experiments", "parse_shard('1of4')", lambda t: experiments.parse_shard("1of4"), ValueError, "shard"),
    Row("experiments", "load_model(a configuration never run)",
        lambda t: experiments.load_model(TINY.replace(seed=9)), FileNotFoundError, TINY.replace(seed=9).key()),
    Row("experiments CLI", "sweep missing.json",
        lambda t: experiments_cli.main(["sweep", str(t / "missing.json")]), SystemExit, "missing.json"),
    Row("experiments CLI", "sweep file with [{'batch_size': 0}]",
        lambda t: experiments_cli.main(["sweep", _sweep_file(t, [{"batch_size": 0}])]), SystemExit,
        "configuration 0: batch_size"),
    Row("experiments CLI", "sweep file holding a number",
        lambda t: experiments_cli.main(["sweep", _sweep_file(t, 3)]), SystemExit, "list of configuration"),
    Row("experiments CLI", "sweep f.json --shard 5/4",
        lambda t: experiments_cli.main(["sweep", _sweep_file(t, []), "--shard", "5/4"]), SystemExit, "--shard"),
    Row("experiments CLI", "sweep f.json --jobs 0",
        lambda t: experiments_cli.main(["sweep", _sweep_file(t, []), "--jobs", "0"]), SystemExit, "--jobs"),
    # data and models
    Row("data", "data.load('mnist1d', num_samples=95)", lambda t: data.load("mnist1d", num_samples=95),
        ValueError, "multiple of 10"),
    Row("data", "data.load('imagenet')", lambda t: data.load("imagenet"), ValueError, "'imagenet'"),
    Row("data", "data.load('cifar10', root=<empty folder>)", lambda t: data.load("cifar10", root=t),
        FileNotFoundError, "cifar10"),
    Row("models", "models.build('vgg16', ...)", lambda t: models.build("vgg16", (1, 40), 10), ValueError, "vgg16"),
    Row("models", "models.build('mnist1d_mlp', num_classes=1)", lambda t: models.build("mnist1d_mlp", (1, 40), 1),
        ValueError, "num_classes"),
    Row("models", "models.build('mnist1d_mlp', depth=3)", lambda t: models.build("mnist1d_mlp", (1, 40), 10, depth=3),
        ValueError, "depth"),
    # training
    Row("train", "fit with labels 10..19 for 10 classes",
        lambda t: train.fit(_net(), TensorDataset(*_batch(10)), None, TINY.replace(batch_size=8), progress=False),
        ValueError, "[0, 10)"),
    # Hessian engine
    Row("hessian", "top_eigenvalues(model, (NaN inputs, labels))",
        lambda t: hessian.top_eigenvalues(_net(), _batch(scale=NAN)), FloatingPointError,
        "non-finite Hessian-vector product"),
    Row("hessian", "trace(model, (inf inputs, labels))",
        lambda t: hessian.trace(_net(), _batch(scale=math.inf)), FloatingPointError, "non-finite Hessian-vector"),
    Row("hessian", "top_eigenvalues(model, (inputs, labels 10..19))",
        lambda t: hessian.top_eigenvalues(_net(), _batch(10)), ValueError, "label(s) [10, 11"),
    Row("hessian", "top_eigenvalues(..., k=0)", lambda t: hessian.top_eigenvalues(_net(), _batch(), k=0),
        ValueError, "k must"),
    Row("hessian", "top_eigenvalues(..., which='XX')",
        lambda t: hessian.top_eigenvalues(_net(), _batch(), which="XX"), ValueError, "which"),
    Row("hessian", "MatrixOperator(NaN matrix)", lambda t: hessian.MatrixOperator(torch.full((2, 2), NAN)),
        ValueError, "finite"),
    # attacks
    Row("attacks", "fgsm(model, NaN inputs, labels, 0.1)", lambda t: attacks.fgsm(_net(), *_batch(scale=NAN), 0.1),
        ValueError, "inputs must be finite"),
    Row("attacks", "pgd(model, inputs, labels 10..19, 0.1)", lambda t: attacks.pgd(_net(), *_batch(10), 0.1),
        ValueError, "[0, 10)"),
    Row("attacks", "pgd(..., norm='3')", lambda t: attacks.pgd(_net(), *_batch(), 0.1, norm="3"), ValueError, "norm"),
    Row("attacks", "robust_accuracy(..., epsilons=[-0.1])",
        lambda t: attacks.robust_accuracy(_net(), _batch(), [-0.1]), ValueError, "epsilon"),
    # landscape
    Row("landscape", "keskar_sharpness(..., eps=-1)", lambda t: landscape.keskar_sharpness(_net(), _batch(), eps=-1),
        ValueError, "eps"),
    Row("landscape", "keskar_sharpness(..., subspace_dim=0)",
        lambda t: landscape.keskar_sharpness(_net(), _batch(), subspace_dim=0), ValueError, "subspace_dim"),
    Row("landscape", "interpolate(width-8 model, width-9 model)",
        lambda t: landscape.interpolate(_net(), models.build("mnist1d_mlp", (1, 40), 10, width=9),
                                        {"train": _batch()}), ValueError, "model_a and model_b"),
    Row("landscape", "random_direction(..., ignore=('weights',))",
        lambda t: landscape.random_direction(_net(), 0, ignore=("weights",)), ValueError, "'weights'"),
    # notebook parameters (as papermill injects them)
    Row("notebook", "epochs = '20' where the cell declares epochs: int",
        lambda t: notebook.check_parameters({"__annotations__": {"epochs": int}, "epochs": "20"}), ConfigError,
        "epochs"),
    Row("notebook", "model = 'vgg16' (choice)", lambda t: notebook.check_choice("model", "vgg16", list(models.MODELS)),
        ConfigError, "model"),
    Row("notebook", "batch_sizes = [128, 0]", lambda t: notebook.check_positive("batch_sizes", [128, 0]),
        ConfigError, "batch_sizes"),
    # reproduce CLI
    Row("reproduce CLI", "--profile bogus", lambda t: reproduce.main(["--profile", "bogus"]), SystemExit, "bogus"),
    Row("reproduce CLI", "--only 99_nothing", lambda t: reproduce.main(["--only", "99_nothing"]), SystemExit,
        "--only"),
    Row("reproduce CLI", "-p not_a_parameter 1",
        lambda t: reproduce.main(["--only", "00", "-p", "not_a_parameter", "1"]), SystemExit, "not_a_parameter"),
]


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every path under ``folder`` with its content hash and modification time."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir",
                                         p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_inputs_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LARGEBATCH_CACHE_DIR", str(folder))
        experiments.run(TINY, progress=False)
        yield folder


def failure(row: Row, scratch: Path) -> tuple[BaseException, str]:
    """Call the row; return the exception and its message (plus stderr, for command lines)."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            row.call(scratch)
        except row.error as error:
            return error, f"{error} {stderr.getvalue()}".strip()
    raise AssertionError(f"{row.description}: no {row.error.__name__} raised")


def test_the_table_covers_every_area_with_at_least_30_inputs():
    assert len(ROWS) >= 30
    assert {r.area for r in ROWS} >= {"config", "data", "models", "hessian", "attacks", "landscape", "notebook",
                                      "reproduce CLI"}


@pytest.mark.parametrize("row", ROWS, ids=[f"{r.area}: {r.description}" for r in ROWS])
def test_bad_input_is_named_and_leaves_the_cache_untouched(row, cache, tmp_path, monkeypatch):
    monkeypatch.setenv("LARGEBATCH_CACHE_DIR", str(cache))
    before = snapshot(cache)
    error, message = failure(row, tmp_path)
    assert type(error) is row.error or (row.error is FileNotFoundError and isinstance(error, FileNotFoundError))
    assert row.culprit in message, message
    assert snapshot(cache) == before


if __name__ == "__main__":  # the table as markdown, with the messages the library gives
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        os.environ["LARGEBATCH_CACHE_DIR"] = str(Path(folder) / "cache")
        print("| area | input | exception | message |\n|---|---|---|---|")
        for row in ROWS:
            scratch = Path(folder) / str(ROWS.index(row))
            scratch.mkdir()
            error, message = failure(row, scratch)
            text = message.rsplit("error: ", 1)[-1] if isinstance(error, SystemExit) else message
            text = " ".join(text.replace(folder, "<tmp>").replace("|", "\\|").split())
            print(f"| {row.area} | `{row.description}` | {type(error).__name__} | {text[:220]} |")
