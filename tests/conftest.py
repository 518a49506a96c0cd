"""Shared test set-up."""

import os

import pytest
import torch

from largebatch import reproduce


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """The test models are tiny: one intra-op thread is faster (and repeatable) on a 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory):
    """Execute every chapter with the smoke profile and build the book from the outputs."""
    folder = tmp_path_factory.mktemp("smoke")
    os.environ["LARGEBATCH_CACHE_DIR"] = str(folder / "cache")
    status = reproduce.main(["--profile", "smoke", "--jobs", "2", "--out", str(folder / "executed"), "--build",
                             "--book-output", str(folder / "book")])
    return status, folder
