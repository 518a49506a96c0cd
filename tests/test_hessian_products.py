"""Forward-over-reverse Hessian-vector products, blocks of vectors, device batches, shards."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from largebatch import distributed
from largebatch.hessian import HessianOperator, device_batches, exact_hessian, top_eigenvalues, trace
from test_hessian import MODELS, _data

F64 = torch.float64


@pytest.mark.parametrize("name", list(MODELS))  # cnn_bn: BatchNorm with non-trivial running statistics
@pytest.mark.parametrize("options", [dict(hvp="jvp"), dict(hvp="jvp", vectors_per_pass=3),
                                     dict(hvp="backward")])
def test_block_products_match_dense_hessian(name, options):
    model = MODELS[name]()
    x, y = _data("mlp" if name == "mlp" else "cnn", n=30)
    dense = exact_hessian(model, (x, y))
    block = torch.randn(dense.shape[0], 5, generator=torch.Generator().manual_seed(0), dtype=F64)
    for data in [(x, y), device_batches((x, y), batch_size=7)]:  # 7: a last batch of 2
        op = HessianOperator(model, data, dtype=F64, **options)
        torch.testing.assert_close(op.matmat(block), dense @ block, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(op.matvec(block[:, 1]), dense @ block[:, 1], rtol=1e-10, atol=1e-12)
        assert op.num_matvecs == 6
    assert model.training  # eval mode was only for the products


class _WithUnusedLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
        self.unused = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_jvp_respects_parameter_selection_and_unused_parameters():
    model = _WithUnusedLayer()
    x, y = _data("mlp", n=20)
    for params in (None, ["body.2.weight", "body.2.bias"]):
        dense = exact_hessian(model, (x, y), params=params)
        v = torch.randn(dense.shape[0], dtype=F64)
        op = HessianOperator(model, (x, y), dtype=F64, params=params, hvp="jvp")
        torch.testing.assert_close(op.matvec(v), dense @ v, rtol=1e-10, atol=1e-12)


def test_estimators_give_the_same_answers_with_either_product():
    model = MODELS["cnn_bn"]()
    batch = _data("cnn", n=40)
    runs = {hvp: (top_eigenvalues(model, batch, k=3, tol=1e-10, dtype=F64, hvp=hvp).eigenvalues,
                  trace(model, batch, num_matvecs=10, dtype=F64, hvp=hvp, vectors_per_pass=vp).estimate)
            for hvp, vp in (("backward", 1), ("jvp", 5))}
    exact = torch.linalg.eigvalsh(exact_hessian(model, batch)).flip(0)[:3]
    assert runs["jvp"][0] == pytest.approx(exact.tolist(), rel=1e-8)
    assert runs["jvp"][0] == pytest.approx(runs["backward"][0], rel=1e-8)
    assert runs["jvp"][1] == pytest.approx(runs["backward"][1], rel=1e-12)


def test_device_batches_are_the_loader_batches_cut_once():
    x, y = _data("cnn", n=23)
    batches = device_batches(TensorDataset(x, y), batch_size=10, dtype=F64)
    loader = list(DataLoader(TensorDataset(x, y), batch_size=10))
    assert [len(b[1]) for b in batches] == [10, 10, 3]
    for (bx, by), (lx, ly) in zip(batches, loader):
        assert bx.dtype == F64 and by.dtype == ly.dtype
        assert torch.equal(bx, lx.double()) and torch.equal(by, ly)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        device_batches((x, y), batch_size=0)
    with pytest.raises(TypeError, match="pair"):
        device_batches(x)


def test_bad_product_options_fail_before_compute():
    model, batch = MODELS["mlp"](), _data("mlp")
    with pytest.raises(ValueError, match="hvp must be 'backward' or 'jvp'"):
        HessianOperator(model, batch, hvp="forward")
    with pytest.raises(ValueError, match="eval_mode=True"):
        HessianOperator(model, batch, hvp="jvp", eval_mode=False)
    with pytest.raises(ValueError, match="vectors_per_pass must be an integer >= 1"):
        HessianOperator(model, batch, hvp="jvp", vectors_per_pass=0)
    with pytest.raises(ValueError, match="needs hvp='jvp'"):
        HessianOperator(model, batch, vectors_per_pass=2)
    op = HessianOperator(model, batch, hvp="jvp")
    with pytest.raises(ValueError, match=r"block must have shape \(51, s\)"):
        op.matmat(torch.ones(3, 2))
    assert op.num_matvecs == 0


def test_one_process_is_rank_zero_of_one():
    assert not distributed.init_from_env()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.wrap(nn.Linear(2, 2)) is None
    mean = torch.tensor([1.5, -2.0])
    assert distributed.weighted_mean(mean, 4) is mean
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}


@pytest.mark.parametrize("n,parts", [(10, 3), (2, 4), (0, 2), (7, 1)])
def test_shards_are_contiguous_balanced_and_cover_everything(n, parts):
    ranges = [distributed.shard_range(n, part, parts) for part in range(parts)]
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    sizes = [stop - start for start, stop in ranges]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    with pytest.raises(ValueError, match="part must be in"):
        distributed.shard_range(n, parts, parts)
