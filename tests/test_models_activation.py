"""The ``activation`` option of ``mnist1d_mlp``: ReLU by default, smooth ones on request."""

import pytest
import torch
from torch import nn

from largebatch import models


def hidden_activations(model: nn.Module) -> list[type]:
    return [type(m) for m in model.modules() if isinstance(m, (nn.ReLU, nn.Tanh, nn.Softplus, nn.GELU))]


def test_default_is_relu_and_unchanged():
    torch.manual_seed(0)
    default = models.build("mnist1d_mlp", (1, 40), 10)
    torch.manual_seed(0)
    explicit = models.build("mnist1d_mlp", (1, 40), 10, activation="relu")
    assert hidden_activations(default) == [nn.ReLU, nn.ReLU]
    assert [type(m) for m in default] == [type(m) for m in explicit]
    for p, q in zip(default.parameters(), explicit.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("name, module", [("tanh", nn.Tanh), ("softplus", nn.Softplus), ("gelu", nn.GELU)])
def test_smooth_activation_replaces_every_hidden_relu(name, module):
    model = models.build("mnist1d_mlp", (1, 40), 10, width=8, activation=name)
    assert hidden_activations(model) == [module, module]
    assert model(torch.randn(3, 1, 40)).shape == (3, 10)


def test_same_parameters_whatever_the_activation():
    torch.manual_seed(0)
    relu = models.build("mnist1d_mlp", (1, 40), 10, width=8)
    torch.manual_seed(0)
    tanh = models.build("mnist1d_mlp", (1, 40), 10, width=8, activation="tanh")
    for p, q in zip(relu.parameters(), tanh.parameters()):
        assert torch.equal(p, q)


def test_unknown_activation_is_rejected_with_the_choices():
    with pytest.raises(ValueError, match="activation must be one of relu, tanh, softplus, gelu"):
        models.build("mnist1d_mlp", (1, 40), 10, activation="sigmoid")
