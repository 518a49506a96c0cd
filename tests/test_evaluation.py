"""Shared evaluation helpers: batching of every data form, eval mode restored on errors."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from largebatch.evaluation import eval_mode, evaluate, iterate_batches


def test_every_data_form_gives_the_same_batches_and_metrics():
    x, y = torch.randn(10, 3), torch.arange(10) % 2
    as_tuple = list(iterate_batches((x, y), 4))
    as_dataset = list(iterate_batches(TensorDataset(x, y), 4))
    as_loader = list(iterate_batches(DataLoader(TensorDataset(x, y), batch_size=4)))
    assert [len(b[1]) for b in as_tuple] == [4, 4, 2]
    for a, b, c in zip(as_tuple, as_dataset, as_loader):
        assert torch.equal(a[0], b[0]) and torch.equal(a[0], c[0]) and torch.equal(a[1], c[1])
    model = nn.Linear(3, 2)
    one = evaluate(model, (x, y), batch_size=10)
    assert evaluate(model, TensorDataset(x, y), batch_size=3) == pytest.approx(one)
    with pytest.raises(ValueError, match="no samples"):
        evaluate(model, (x[:0], y[:0]))


def test_eval_mode_restores_each_submodule_even_on_errors():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Dropout())
    model[1].eval()  # a mixed state must survive
    with pytest.raises(RuntimeError):
        with eval_mode(model):
            assert not any(m.training for m in model.modules())
            raise RuntimeError
    assert [m.training for m in model] == [True, False, True]
