"""Tests for largebatch.models: shapes, exact parameter counts, Normalize, errors, gradients."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from largebatch.models import MODELS, Normalize, build, num_parameters

INPUT_SHAPES = {
    "mnist1d_mlp": (1, 40),
    "mnist1d_cnn": (1, 40),
    "f1": (1, 28, 28),
    "m1": (1, 28, 28),
    "c1": (3, 32, 32),
    "c2": (3, 32, 32),
    "resnet20": (3, 32, 32),
}




@functools.lru_cache(maxsize=None)
def built(name: str, num_classes: int) -> nn.Sequential:
    """A default model in eval mode, shared by the read-only tests (building c2 is slow)."""
    torch.manual_seed(0)
    return build(name, INPUT_SHAPES[name], num_classes).eval()


def test_every_model_has_an_input_shape_here():
    assert set(INPUT_SHAPES) == set(MODELS)


# --------------------------------------------------------------------------- independent counts


def linear(n_in: int, n_out: int, bias: bool = True) -> int:
    return n_in * n_out + (n_out if bias else 0)


def conv(c_in: int, c_out: int, kernel_elems: int, bias: bool = True) -> int:
    return c_in * c_out * kernel_elems + (c_out if bias else 0)


def bn(channels: int) -> int:
    return 2 * channels  # weight and bias; running statistics are buffers


def expected_mnist1d_cnn(num_classes: int, width: int = 32, batch_norm: bool = True) -> int:
    total = 0
    c_in = 1
    for kernel in (5, 3, 3):
        total += conv(c_in, width, kernel, bias=not batch_norm) + (bn(width) if batch_norm else 0)
        c_in = width
    return total + linear(width * 10, num_classes)  # length 40 -> 20 -> 10 after two pools


def expected_f1(num_classes: int) -> int:
    widths = [784] + [512] * 5
    hidden = sum(linear(a, b) + bn(b) for a, b in zip(widths[:-1], widths[1:]))
    return hidden + linear(512, num_classes)


def expected_m1(num_classes: int, batch_norm: bool = True) -> int:
    # conv 20@5x5 -> 24x24 -> pool 12x12; conv 50@5x5 -> 8x8 -> pool 4x4: 800 features
    norms = bn(20) + bn(50) if batch_norm else 0
    return conv(1, 20, 25) + conv(20, 50, 25) + norms + linear(800, 500) + linear(500, num_classes)


def expected_c1(num_classes: int) -> int:
    # 32 -> pool(3, 2) -> 15 -> pool(3, 2) -> 7
    return (conv(3, 64, 25) + bn(64) + conv(64, 64, 25) + bn(64)
            + linear(64 * 7 * 7, 384) + bn(384) + linear(384, 192) + bn(192)
            + linear(192, num_classes))


def expected_c2(num_classes: int) -> int:
    channels = [3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    convs = sum(conv(a, b, 9) + bn(b) for a, b in zip(channels[:-1], channels[1:]))
    return convs + linear(512, num_classes)


def expected_resnet20(num_classes: int) -> int:
    total = conv(3, 16, 9, bias=False) + bn(16)
    c_in = 16
    for c_out in (16, 32, 64):
        for _ in range(3):  # two 3x3 convs without bias, each followed by BN; option-A shortcut
            total += conv(c_in, c_out, 9, bias=False) + bn(c_out)
            total += conv(c_out, c_out, 9, bias=False) + bn(c_out)
            c_in = c_out
    return total + linear(64, num_classes)


EXPECTED = {
    "mnist1d_mlp": lambda k: linear(40, 100) + linear(100, 100) + linear(100, k),
    "mnist1d_cnn": expected_mnist1d_cnn,
    "f1": expected_f1,
    "m1": expected_m1,
    "c1": expected_c1,
    "c2": expected_c2,
    "resnet20": expected_resnet20,
}


def manual_count(model: nn.Module) -> int:
    total = 0
    for parameter in model.parameters():
        size = 1
        for dim in parameter.shape:
            size *= dim
        total += size
    return total


def test_well_known_counts():
    assert EXPECTED["mnist1d_mlp"](10) == 15210
    assert expected_resnet20(10) == 269_722  # He et al.'s ResNet-20 (option A, with BN)
    assert expected_mnist1d_cnn(10) == 9706
    assert expected_m1(10) == 431_220


@pytest.mark.parametrize("num_classes", [10, 100])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_parameter_counts(name, num_classes):
    model = built(name, num_classes)
    expected = EXPECTED[name](num_classes)
    assert manual_count(model) == expected
    assert num_parameters(model) == expected
    assert num_parameters(model, trainable_only=False) == expected


def test_parameter_counts_with_options():
    assert manual_count(build("mnist1d_mlp", (1, 40), 10, width=64)) == (
        linear(40, 64) + linear(64, 64) + linear(64, 10))
    assert manual_count(build("mnist1d_mlp", (1, 40), 10, batch_norm=True)) == 15210 + 2 * bn(100)
    assert manual_count(build("mnist1d_cnn", (1, 40), 10, width=8, batch_norm=False)) == (
        expected_mnist1d_cnn(10, width=8, batch_norm=False))
    assert manual_count(build("m1", (1, 28, 28), 10, batch_norm=False)) == expected_m1(10, False)


# --------------------------------------------------------------------------- forward shapes


@pytest.mark.parametrize("num_classes", [10, 100])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_output_shape(name, num_classes):
    model = built(name, num_classes)
    with torch.no_grad():
        out = model(torch.rand(2, *INPUT_SHAPES[name]))
    assert out.shape == (2, num_classes)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_model_is_sequential_starting_with_normalize():
    for name in MODELS:
        model = built(name, 10)
        assert isinstance(model, nn.Sequential)
        assert isinstance(model[0], Normalize)
        assert sum(isinstance(m, Normalize) for m in model.modules()) == 1


def test_non_square_inputs_for_m1():
    model = build("m1", (1, 28, 36), 10).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, 28, 36)).shape == (2, 10)


def test_resnet20_shortcut_downsamples_and_pads_channels():
    model = built("resnet20", 10)
    first_of_stage2 = model[4 + 3]  # Normalize, conv, bn, relu, then blocks
    x = torch.randn(2, 16, 32, 32)
    out = first_of_stage2.shortcut(x)
    assert out.shape == (2, 32, 16, 16)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert torch.all(out[:, :8] == 0) and torch.all(out[:, 24:] == 0)


# --------------------------------------------------------------------------- Normalize


def test_normalize_per_channel():
    layer = Normalize((0.5, -1.0, 2.0), (0.25, 2.0, 4.0))
    x = torch.randn(4, 3, 5, 6)
    expected = torch.stack([(x[:, 0] - 0.5) / 0.25, (x[:, 1] + 1.0) / 2.0, (x[:, 2] - 2.0) / 4.0], 1)
    torch.testing.assert_close(layer(x), expected)
    layer_1d = Normalize((3.0,), (0.5,))
    x1 = torch.randn(2, 1, 40)
    torch.testing.assert_close(layer_1d(x1), (x1 - 3.0) / 0.5)


def test_build_puts_normalize_first_with_given_statistics():
    mean, std = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)
    model = build("c1", (3, 32, 32), 10, mean=mean, std=std)
    x = torch.rand(2, 3, 32, 32)
    shape = (1, 3, 1, 1)
    expected = (x - torch.tensor(mean).view(shape)) / torch.tensor(std).view(shape)
    torch.testing.assert_close(model[0](x), expected)
    state = model.state_dict()
    torch.testing.assert_close(state["0.mean"], torch.tensor(mean))
    torch.testing.assert_close(state["0.std"], torch.tensor(std))
    # buffers, not parameters: not trained and not counted
    names = {n for n, _ in model.named_parameters()}
    assert "0.mean" not in names and "0.std" not in names


def test_build_without_statistics_is_identity_normalization():
    model = build("mnist1d_mlp", (1, 40), 10)
    x = torch.randn(3, 1, 40)
    torch.testing.assert_close(model[0](x), x)


def test_normalize_false_ignores_the_statistics_raw_inputs_as_the_absa_reference():
    model = build("c1", (3, 32, 32), 10, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2), normalize=False)
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(model[0](x), x)
    with pytest.raises(ValueError, match="normalize"):
        build("c1", (3, 32, 32), 10, normalize="no")


def test_normalize_buffers_round_trip_through_state_dict():
    source = build("mnist1d_mlp", (1, 40), 10, mean=(0.7,), std=(1.9,))
    target = build("mnist1d_mlp", (1, 40), 10)
    target.load_state_dict(source.state_dict())
    assert target[0].mean.item() == pytest.approx(0.7)
    assert target[0].std.item() == pytest.approx(1.9)
    x = torch.randn(4, 1, 40)
    torch.testing.assert_close(target(x), source(x))


@pytest.mark.parametrize("std", [(0.0,), (-1.0,), (1.0, 0.0, 1.0)])
def test_normalize_rejects_non_positive_std(std):
    with pytest.raises(ValueError, match="std"):
        Normalize((0.0,) * len(std), std)
    with pytest.raises(ValueError, match="std"):
        build("c1" if len(std) == 3 else "mnist1d_mlp",
              (3, 32, 32) if len(std) == 3 else (1, 40), 10, std=std)


# --------------------------------------------------------------------------- errors


def test_unknown_model_lists_available_names():
    with pytest.raises(ValueError) as info:
        build("vit", (3, 32, 32), 10)
    assert "vit" in str(info.value)
    for name in MODELS:
        assert name in str(info.value)


@pytest.mark.parametrize("name, options", [
    ("mnist1d_mlp", {"depth": 3}),
    ("c1", {"width": 64}),
    ("resnet20", {"batch_norm": False}),
    ("m1", {"widht": 5}),
])
def test_bad_options_raise_value_error(name, options):
    with pytest.raises(ValueError, match=name):
        build(name, INPUT_SHAPES[name], 10, **options)


@pytest.mark.parametrize("num_classes", [1, 0, -3])
def test_num_classes_below_two_rejected(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        build("mnist1d_mlp", (1, 40), num_classes)


def test_two_classes_allowed():
    model = build("mnist1d_mlp", (1, 40), 2)
    assert model(torch.randn(2, 1, 40)).shape == (2, 2)


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("name", sorted(MODELS))
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    model = build(name, INPUT_SHAPES[name], 10)
    x = torch.rand(2, *INPUT_SHAPES[name])
    # train mode (BN with batch statistics): every parameter is in the graph
    model.train()
    model(x).sum().backward()
    for param_name, parameter in model.named_parameters():
        assert parameter.grad is not None, param_name
        assert torch.isfinite(parameter.grad).all(), param_name
    # eval mode with a random readout: every parameter tensor gets a non-zero gradient
    # (in train mode the biases of layers followed by BN get a zero gradient by design)
    model.zero_grad(set_to_none=True)
    model.eval()
    out = model(x)
    (out * torch.randn_like(out)).sum().backward()
    for param_name, parameter in model.named_parameters():
        assert parameter.grad is not None, param_name
        assert parameter.grad.abs().sum() > 0, param_name


# --------------------------------------------------------------------------- num_parameters


def test_num_parameters_trainable_only_vs_all():
    model = build("mnist1d_mlp", (1, 40), 10)
    assert num_parameters(model) == num_parameters(model, trainable_only=False) == 15210
    first_linear = model[2]  # Normalize, Flatten, Linear(40, 100)
    assert isinstance(first_linear, nn.Linear)
    first_linear.requires_grad_(False)
    assert num_parameters(model) == 15210 - (40 * 100 + 100)
    assert num_parameters(model, trainable_only=False) == 15210
    first_linear.bias.requires_grad_(True)
    assert num_parameters(model) == 15210 - 40 * 100


def test_num_parameters_ignores_buffers():
    model = built("resnet20", 10)
    buffers = sum(b.numel() for b in model.buffers())
    assert buffers > 0
    assert num_parameters(model, trainable_only=False) == 269_722
