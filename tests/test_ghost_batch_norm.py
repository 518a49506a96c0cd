"""Tests for largebatch.ghost_batch_norm."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from largebatch.ghost_batch_norm import GhostBatchNorm, convert_to_ghost_batch_norm


def plain_and_ghost(ghost_batch_size: int, **kwargs) -> tuple[nn.BatchNorm2d, GhostBatchNorm]:
    """A plain BN with non-trivial affine parameters and a ghost copy of it."""
    torch.manual_seed(0)
    plain = nn.BatchNorm2d(3, **kwargs)
    if plain.affine:
        with torch.no_grad():
            plain.weight.uniform_(0.5, 2.0)
            plain.bias.uniform_(-1.0, 1.0)
    ghost = GhostBatchNorm.from_batch_norm(copy.deepcopy(plain), ghost_batch_size)
    return plain, ghost


def batch(n: int = 10) -> torch.Tensor:
    return torch.randn(n, 3, 4, 4, generator=torch.Generator().manual_seed(1)) * 3 + 1


def test_each_chunk_is_normalized_with_its_own_statistics():
    plain, ghost = plain_and_ghost(4)
    inputs = batch(10)  # chunks of 4, 4 and 2 samples
    output = ghost(inputs)
    for chunk_in, chunk_out in zip(inputs.split(4), output.split(4)):
        alone = copy.deepcopy(plain)
        torch.testing.assert_close(chunk_out, alone(chunk_in), rtol=0, atol=1e-6)


def test_running_stats_follow_sequential_chunk_updates():
    for momentum in (0.1, None):
        plain, ghost = plain_and_ghost(4, momentum=momentum)
        inputs = batch(10)
        ghost(inputs)
        for chunk in inputs.split(4):
            plain(chunk)
        assert int(ghost.num_batches_tracked) == 3
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            torch.testing.assert_close(
                getattr(ghost, name), getattr(plain, name), rtol=0, atol=1e-7
            )


def test_running_stat_update_formula():
    _, ghost = plain_and_ghost(5)
    inputs = batch(10)
    ghost(inputs)
    expected_mean, expected_var = torch.zeros(3), torch.ones(3)
    for chunk in inputs.split(5):
        expected_mean = 0.9 * expected_mean + 0.1 * chunk.mean(dim=(0, 2, 3))
        expected_var = 0.9 * expected_var + 0.1 * chunk.var(dim=(0, 2, 3), unbiased=True)
    torch.testing.assert_close(ghost.running_mean, expected_mean)
    torch.testing.assert_close(ghost.running_var, expected_var)


@pytest.mark.parametrize("ghost_batch_size", [10, 64])
def test_equals_plain_batch_norm_when_ghost_batch_is_the_whole_batch(ghost_batch_size):
    plain, ghost = plain_and_ghost(ghost_batch_size)
    inputs = batch(10)
    assert torch.equal(ghost(inputs), plain(inputs))
    for name, buffer in plain.named_buffers():
        assert torch.equal(getattr(ghost, name), buffer), name


def test_eval_mode_is_plain_batch_norm():
    plain, ghost = plain_and_ghost(2)
    ghost(batch(10))
    plain.load_state_dict(ghost.state_dict())
    plain.eval(), ghost.eval()
    inputs = batch(7)
    assert torch.equal(ghost(inputs), plain(inputs))
    assert int(ghost.num_batches_tracked) == 5  # eval does not update


def test_without_running_stats_eval_uses_ghost_batches():
    _, ghost = plain_and_ghost(4, track_running_stats=False)
    inputs = batch(8)
    train_output = ghost(inputs)
    ghost.eval()
    assert torch.equal(ghost(inputs), train_output)


def test_one_dimensional_inputs():
    torch.manual_seed(0)
    plain = nn.BatchNorm1d(5)
    ghost = GhostBatchNorm.from_batch_norm(copy.deepcopy(plain), 3)
    inputs = torch.randn(9, 5)
    output = ghost(inputs)
    torch.testing.assert_close(output[3:6], copy.deepcopy(plain)(inputs[3:6]))
    with pytest.raises(ValueError):
        ghost(torch.randn(5))


def test_gradients_flow_like_per_chunk_batch_norm():
    plain, ghost = plain_and_ghost(4)
    inputs = batch(10).requires_grad_()
    weights = torch.randn(10, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    (ghost(inputs) * weights).sum().backward()
    plain_inputs = inputs.detach().clone().requires_grad_()
    outputs = torch.cat([plain(chunk) for chunk in plain_inputs.split(4)])
    (outputs * weights).sum().backward()
    torch.testing.assert_close(inputs.grad, plain_inputs.grad)
    torch.testing.assert_close(ghost.weight.grad, plain.weight.grad)
    torch.testing.assert_close(ghost.bias.grad, plain.bias.grad)


def make_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4, momentum=0.2, eps=1e-3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64, 8),
        nn.Sequential(nn.BatchNorm1d(8, affine=False), nn.ReLU()),
        nn.Linear(8, 2),
    )


def test_convert_replaces_every_batch_norm_and_keeps_state():
    plain = make_net()
    plain(torch.randn(6, 1, 6, 6))  # non-default running statistics
    plain[1].eval()
    net = convert_to_ghost_batch_norm(copy.deepcopy(plain), 2)
    assert isinstance(net[1], GhostBatchNorm) and isinstance(net[5][0], GhostBatchNorm)
    assert not any(type(m) in (nn.BatchNorm1d, nn.BatchNorm2d) for m in net.modules())
    assert (net[1].momentum, net[1].eps, net[1].affine) == (0.2, 1e-3, True)
    assert net[5][0].affine is False and net[5][0].weight is None
    assert not net[1].training and net[5][0].training
    assert net[1].ghost_batch_size == 2
    plain_state, ghost_state = plain.state_dict(), net.state_dict()
    assert list(plain_state) == list(ghost_state)
    assert all(torch.equal(plain_state[k], ghost_state[k]) for k in plain_state)
    net.load_state_dict(plain_state)  # checkpoints are interchangeable
    plain.eval(), net.eval()
    inputs = torch.randn(5, 1, 6, 6)
    assert torch.equal(net(inputs), plain(inputs))


def test_convert_keeps_parameter_objects_for_existing_optimizers():
    net = make_net()
    weight = net[1].weight
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    convert_to_ghost_batch_norm(net, 3)
    assert net[1].weight is weight
    before = weight.detach().clone()
    net(torch.randn(6, 1, 6, 6)).sum().backward()
    optimizer.step()
    assert not torch.equal(net[1].weight, before)


def test_convert_root_batch_norm_and_validation():
    ghost = convert_to_ghost_batch_norm(nn.BatchNorm1d(4), 8)
    assert isinstance(ghost, GhostBatchNorm) and ghost.ghost_batch_size == 8
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError):
            convert_to_ghost_batch_norm(make_net(), bad)
        with pytest.raises(ValueError):
            GhostBatchNorm(4, bad)
