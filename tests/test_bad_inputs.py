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

import pandas as pd
import papermill
import pytest
import torch
from fakedata import make_idx_set, write_cifar10, write_svhn
from torch.utils.data import TensorDataset

from largebatch import (analysis, attacks, data, experiments, experiments_cli, hessian, landscape,
                        models, notebook, reproduce, train)
from largebatch.config import ConfigError, RunConfig
from largebatch.studies import adversarial

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


def _write(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.write_text(text)
    return str(path)


def _with_env(name: str, value: str, call: Callable[[], Any]) -> Any:
    """``call()`` with ``$name`` set to ``value`` (restored afterwards)."""
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        return call()
    finally:
        if saved is None:
            del os.environ[name]
        else:
            os.environ[name] = saved


def _with_profile(folder: Path, profile: str, *argv: str) -> Any:
    """``reproduce`` on the project's notebooks with ``profile`` as the smoke profile."""
    (folder / "notebooks").symlink_to(reproduce.project_root() / "notebooks")
    (folder / "profiles").mkdir()
    (folder / "profiles" / "smoke.yaml").write_text(profile)
    return reproduce.main(["--root", str(folder), "--profile", "smoke", *argv])


def _repeated_runs() -> pd.DataFrame:
    """Runs of one seed listed three times per batch size (what ``seeds = [0, 0, 0]`` gives)."""
    return pd.DataFrame({"key": ["k32"] * 3 + ["k256"] * 3, "seed": 0, "batch_size": [32] * 3 + [256] * 3,
                         "test_accuracy": [0.9] * 3 + [0.8] * 3, "status": "completed"})


def _damaged(folder: Path, write: Callable[[Path], Any], name: str, content: bytes | None = None) -> Path:
    """A data set written by ``write(folder)`` whose file ``name`` is then cut in half (or replaced)."""
    write(folder)
    path = folder / name
    path.write_bytes(content if content is not None else path.read_bytes()[: path.stat().st_size // 2])
    return folder


def _idx_labels(count: int) -> bytes:
    """An idx1 file of ``count`` zero labels."""
    return bytes([0, 0, 0x08, 1]) + count.to_bytes(4, "big") + bytes(count)


def _papermill(folder: Path, **parameters: Any) -> Any:
    source = reproduce.project_root() / "notebooks" / "00_quickstart.ipynb"
    return papermill.execute_notebook(str(source), str(folder / source.name), parameters=parameters,
                                      cwd=str(source.parent), kernel_name="python3", progress_bar=False)


NAN = float("nan")
BIGGER_THAN_DATA = [TINY.replace(seed=5), TINY.replace(seed=6), TINY.replace(batch_size=161)]
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
    # 1. repeated seeds: the option, every chapter, the verdict layer
    Row("reproduce CLI", "--seeds 0 0 0", lambda t: reproduce.main(["--only", "04", "--seeds", "0", "0", "0"]),
        SystemExit, "--seeds must be distinct"),
    Row("reproduce CLI", "--only 04 -p seeds [0,0,0]",
        lambda t: reproduce.main(["--only", "04", "-p", "seeds", "[0,0,0]"]), SystemExit,
        "parameter seeds of 04_adversarial must be distinct"),
    Row("reproduce CLI", "--only 01 -p seeds [0,0,0]",
        lambda t: reproduce.main(["--only", "01", "-p", "seeds", "[0,0,0]"]), SystemExit,
        "parameter seeds of 01_hessian must be distinct"),
    Row("reproduce CLI", "profile 04_adversarial: {seeds: [1, 1]}",
        lambda t: _with_profile(t, "04_adversarial:\n  seeds: [1, 1]\n", "--only", "04"), SystemExit,
        "parameter seeds of 04_adversarial must be distinct"),
    Row("notebook", "seeds = [0, 0, 0] (any chapter's first cell)",
        lambda t: notebook.check_parameters({"__annotations__": {"seeds": list[int]}, "seeds": [0, 0, 0]}),
        ConfigError, "parameter seeds must be distinct"),
    Row("analysis", "record_verdicts('04_adversarial', ..., seeds=[0, 0, 0])",
        lambda t: analysis.record_verdicts("04_adversarial", [], [0, 0, 0], folder=t), ConfigError,
        "seeds must be distinct"),
    Row("analysis", "seed_summary(one run listed 3 times per batch size)",
        lambda t: analysis.seed_summary(_repeated_runs(), "batch_size", ["test_accuracy"]), ValueError,
        "holds run k32 3 times"),
    Row("analysis", "batch_size_effect(one run listed 3 times per batch size)",
        lambda t: analysis.batch_size_effect(_repeated_runs(), "test_accuracy", 32, 256), ValueError,
        "holds run k256 3 times"),
    Row("analysis", "batch_size_sweep(config, [32], seeds=[0, 0])",
        lambda t: analysis.batch_size_sweep(TINY, [32], [0, 0]), ConfigError, "seeds must be distinct"),
    Row("studies.adversarial", "scaling_grid(config, [16, 32], seeds=[1, 1])",
        lambda t: adversarial.scaling_grid(TINY, [16, 32], [1, 1]), ConfigError, "seeds must be distinct"),
    # 3. one cache folder, named once
    Row("experiments CLI", "LARGEBATCH_CACHE_DIR='' verify",
        lambda t: _with_env("LARGEBATCH_CACHE_DIR", "", lambda: experiments_cli.main(["verify"])), SystemExit,
        "$LARGEBATCH_CACHE_DIR is set but empty"),
    Row("experiments", "LARGEBATCH_CACHE_DIR=<a file>; run(config)",
        lambda t: _with_env("LARGEBATCH_CACHE_DIR", _write(t, "file", ""), lambda: experiments.run(TINY)),
        ConfigError, "$LARGEBATCH_CACHE_DIR is a file, not a folder"),
    Row("experiments", "run(config, cache_dir=<a file>)",
        lambda t: experiments.run(TINY, _write(t, "file", "")), ConfigError, "the cache folder is a file"),
    Row("experiments", "run(config, cache_dir='')", lambda t: experiments.run(TINY, ""), ConfigError,
        "the cache folder is empty"),
    Row("reproduce CLI", "LARGEBATCH_CACHE_DIR='' --only 00",
        lambda t: _with_env("LARGEBATCH_CACHE_DIR", "", lambda: reproduce.main(["--only", "00"])), SystemExit,
        "$LARGEBATCH_CACHE_DIR is set but empty"),
    Row("reproduce CLI", "LARGEBATCH_DATA=<a file> --only 00",
        lambda t: _with_env("LARGEBATCH_DATA", _write(t, "file", ""), lambda: reproduce.main(["--only", "00"])),
        SystemExit, "$LARGEBATCH_DATA is a file, not a folder"),
    Row("reproduce CLI", "--out ''", lambda t: reproduce.main(["--only", "00", "--out", ""]), SystemExit,
        "the folder is empty"),
    Row("data", "LARGEBATCH_DATA='' data.load('cifar10')",
        lambda t: _with_env("LARGEBATCH_DATA", "", lambda: data.load("cifar10")), ConfigError,
        "$LARGEBATCH_DATA is set but empty"),
    Row("data", "data.load('cifar10', root='')", lambda t: data.load("cifar10", root=""), ConfigError,
        "root is empty"),
    Row("analysis", "LARGEBATCH_VERDICTS_DIR=<a file>; record_verdicts(...)",
        lambda t: _with_env("LARGEBATCH_VERDICTS_DIR", _write(t, "file", ""),
                            lambda: analysis.record_verdicts("04_adversarial", [], [0, 1, 2])), ConfigError,
        "$LARGEBATCH_VERDICTS_DIR is a file"),
    Row("experiments CLI", "verify --cache ''", lambda t: experiments_cli.main(["verify", "--cache", ""]),
        SystemExit, "--cache: the folder is empty"),
    # 4. profile and sweep files
    Row("reproduce CLI", "profile section 00_quickstrat:",
        lambda t: _with_profile(t, "00_quickstrat:\n  epochs: 2\n"), SystemExit,
        "unknown section '00_quickstrat' (did you mean '00_quickstart'?)"),
    Row("reproduce CLI", "profile all: {epoch: 2} (no notebook declares epoch)",
        lambda t: _with_profile(t, "all:\n  epoch: 2\n"), SystemExit, "['epoch']"),
    Row("reproduce CLI", "profile 00_quickstart: {epoch: 2}",
        lambda t: _with_profile(t, "00_quickstart:\n  epoch: 2\n", "--only", "04"), SystemExit,
        "section '00_quickstart' sets ['epoch'] (did you mean 'epochs'?)"),
    Row("reproduce CLI", "profile whose top level is a list",
        lambda t: _with_profile(t, "- all\n- 00_quickstart\n"), SystemExit, "must map sections"),
    Row("reproduce CLI", "profile section that is not a mapping (00_quickstart: 3)",
        lambda t: _with_profile(t, "00_quickstart: 3\n"), SystemExit,
        "section '00_quickstart' must map parameter names to values"),
    Row("reproduce CLI", "malformed YAML profile", lambda t: _with_profile(t, "all: {epochs: 2\n"), SystemExit,
        "smoke.yaml is not valid YAML"),
    Row("reproduce CLI", "-p epochs '[1,'", lambda t: reproduce.main(["--only", "00", "-p", "epochs", "[1,"]),
        SystemExit, "-p epochs '[1,' is not a YAML value"),
    Row("experiments CLI", "malformed YAML sweep file",
        lambda t: experiments_cli.main(["sweep", _write(t, "sweep.yaml", "base: {lr: 0.1\n")]), SystemExit,
        "sweep.yaml is not valid YAML"),
    # 5. an empty --only
    Row("reproduce CLI", "--only ''", lambda t: reproduce.main(["--only", ""]), SystemExit,
        "--only got an empty name"),
    Row("reproduce CLI", "--only 00 99_nothing (one name matches nothing)",
        lambda t: reproduce.main(["--only", "00", "99_nothing"]), SystemExit, "--only '99_nothing' matched no"),
    # 6. attacks and their clip box
    Row("attacks", "fgsm(model, (x - 0.5) / 0.25, y, 0.03, clip=(0, 1))",
        lambda t: attacks.fgsm(_net(), (_batch()[0] - 0.5) / 0.25, _batch()[1], 0.03, clip=(0, 1)), ValueError,
        "inputs must lie inside clip=(0, 1)"),
    Row("attacks", "pgd(model, inputs outside clip=(0, 1), ...)",
        lambda t: attacks.pgd(_net(), *_batch(), 0.03, clip=(0, 1)), ValueError, "inputs must lie inside clip"),
    Row("attacks", "robust_accuracy(model, inputs outside clip=(0, 1), [0.1])",
        lambda t: attacks.robust_accuracy(_net(), _batch(), [0.1], clip=(0, 1)), ValueError,
        "inputs must lie inside clip"),
    Row("attacks", "fgsm(..., clip=(1, 0))",
        lambda t: attacks.fgsm(_net(), _batch()[0].sigmoid(), _batch()[1], 0.1, clip=(1, 0)), ValueError,
        "clip must be None or (low, high)"),
    Row("attacks", "AdversarialTransform(0.5, 0.1, clip=(1, 0))",
        lambda t: attacks.AdversarialTransform(0.5, 0.1, clip=(1, 0)), ValueError, "got (1, 0)"),
    Row("attacks", "robust_accuracy(..., epsilons=[])", lambda t: attacks.robust_accuracy(_net(), _batch(), []),
        ValueError, "epsilons must name at least one"),
    # 8. late or silent checks
    Row("experiments CLI", "sweep [ok, ok, batch_size=161 > 160 training samples]",
        lambda t: experiments_cli.main(["sweep", _sweep_file(t, [c.to_dict() for c in BIGGER_THAN_DATA])]),
        SystemExit, "configuration 2"),
    Row("experiments", "sweep([ok, ok, batch_size=161])", lambda t: experiments.sweep(BIGGER_THAN_DATA), ConfigError,
        "configuration 2"),
    Row("experiments CLI", "verify --cache <missing folder>",
        lambda t: experiments_cli.main(["verify", "--cache", str(t / "missing")]), SystemExit, "does not exist"),
    Row("experiments CLI", "verify --cache <a file>",
        lambda t: experiments_cli.main(["verify", "--cache", _write(t, "file", "")]), SystemExit,
        "is a file, not a folder"),
    Row("experiments CLI", "gc --cache <missing folder>",
        lambda t: experiments_cli.main(["gc", "--cache", str(t / "missing")]), SystemExit, "does not exist"),
    Row("experiments CLI", "sweep file {}", lambda t: experiments_cli.main(["sweep", _sweep_file(t, {})]),
        SystemExit, "names no configuration"),
    Row("experiments CLI", "sweep file []", lambda t: experiments_cli.main(["sweep", _sweep_file(t, [])]),
        SystemExit, "names no configuration"),
    Row("experiments CLI", "sweep file [{}]", lambda t: experiments_cli.main(["sweep", _sweep_file(t, [{}])]),
        SystemExit, "configuration 0 is empty"),
    Row("experiments CLI", "sweep file {'grid': {}}",
        lambda t: experiments_cli.main(["sweep", _sweep_file(t, {"grid": {}})]), SystemExit, "'grid'"),
    Row("experiments CLI", "sweep.YAML (read as YAML) with batch_size: 0",
        lambda t: experiments_cli.main(["sweep", _write(t, "sweep.YAML", "- batch_size: 0\n")]), SystemExit,
        "configuration 0: batch_size"),
    Row("experiments CLI", "sweep sweep.txt", lambda t: experiments_cli.main(["sweep", _write(t, "sweep.txt", "[]")]),
        SystemExit, "must end in .json, .yaml, .yml"),
    Row("experiments CLI", "gc --min-age -5", lambda t: experiments_cli.main(["gc", "--min-age", "-5"]), SystemExit,
        "--min-age"),
    Row("experiments CLI", "gc --min-age nan", lambda t: experiments_cli.main(["gc", "--min-age", "nan"]),
        SystemExit, "--min-age"),
    Row("notebook", "papermill -p epoch 2 (the notebook declares epochs)", lambda t: _papermill(t, epoch=2),
        papermill.PapermillExecutionError, "['epoch'], which this notebook does not declare"),
    Row("notebook", "check_parameters after papermill injected epoch = 2",
        lambda t: notebook.check_parameters({"__annotations__": {"epochs": int}, "epochs": 20,
                                             "In": ["", "# Parameters\nepoch = 2\n"]}), ConfigError,
        "(did you mean 'epochs'?)"),
    Row("data", "MNIST train-images file cut in half",
        lambda t: data.load("mnist", root=_damaged(t, lambda f: make_idx_set(f / "MNIST" / "raw"),
                                                   "MNIST/raw/train-images-idx3-ubyte")), data.DataFormatError,
        "train-images-idx3-ubyte has"),
    Row("data", "MNIST train labels of another set (6 images, 5 labels)",
        lambda t: data.load("mnist", root=_damaged(t, lambda f: make_idx_set(f / "MNIST" / "raw"),
                                                   "MNIST/raw/train-labels-idx1-ubyte", _idx_labels(5))),
        data.DataFormatError, "train-labels-idx1-ubyte ((5,))"),
    Row("data", "CIFAR-10 data_batch_3 cut in half",
        lambda t: data.load("cifar10", root=_damaged(t, lambda f: write_cifar10(f, 4, 4),
                                                     "cifar-10-batches-py/data_batch_3")), data.DataFormatError,
        "data_batch_3 is not a CIFAR python batch"),
    Row("data", "CIFAR-10 test_batch that is not a pickle",
        lambda t: data.load("cifar10", root=_damaged(t, lambda f: write_cifar10(f, 4, 4),
                                                     "cifar-10-batches-py/test_batch", b"<html>not found</html>")),
        data.DataFormatError, "test_batch is not a CIFAR python batch"),
    Row("data", "SVHN train_32x32.mat that is not a .mat file",
        lambda t: data.load("svhn", root=_damaged(t, lambda f: write_svhn(f, 4, 4), "train_32x32.mat",
                                                  b"garbage")), data.DataFormatError, "train_32x32.mat"),
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
    if isinstance(error, SystemExit):
        assert error.code not in (0, None), "a command line that fails must exit non-zero"
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
