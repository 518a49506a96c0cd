"""The papers' networks, built by name.

Every model starts with a :class:`Normalize` layer, so inputs stay in raw units
(attack epsilons are measured there) and the model carries its own
preprocessing into checkpoints.

=============  ==========================================================
name           network
=============  ==========================================================
mnist1d_mlp    MLP for MNIST-1D (Greydanus): 2 hidden layers of ``width``
mnist1d_cnn    small 1-D CNN for MNIST-1D: 3 conv layers (BN optional)
f1             Hoffer's F1: 5 hidden layers of 512 with BN (MNIST)
m1             LeNet-5 style CNN with BN (MNIST)
c1             AlexNet-like shallow CNN (CIFAR; Keskar's C1, HessianFlow)
c2             VGG-like deep CNN with BN (CIFAR; Keskar's C2)
resnet20       CIFAR ResNet-20 (He et al. 2016), option-A shortcuts
=============  ==========================================================
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F


class Normalize(nn.Module):
    """Subtract a per-channel mean and divide by a per-channel standard deviation."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {tuple(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(shape)) / self.std.view(shape)


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "softplus": nn.Softplus, "gelu": nn.GELU,
}
"""Hidden-layer nonlinearities of :func:`mnist1d_mlp`: ReLU is piecewise linear, the others smooth."""


def _mlp(in_features: int, widths: Sequence[int], num_classes: int, batch_norm: bool,
         activation: Callable[[], nn.Module] = nn.ReLU) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Flatten()]
    for width in widths:
        layers.append(nn.Linear(in_features, width))
        if batch_norm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(activation())
        in_features = width
    layers.append(nn.Linear(in_features, num_classes))
    return layers


def mnist1d_mlp(input_shape: tuple[int, ...], num_classes: int, width: int = 100,
                batch_norm: bool = False, activation: str = "relu") -> list[nn.Module]:
    """Two hidden layers of ``width`` units, as in the MNIST-1D paper.

    ``activation`` is one of :data:`ACTIVATIONS` (default ``"relu"``; the smooth ones
    serve the input-curvature comparison of the adversarial chapter).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    return _mlp(math.prod(input_shape), [width, width], num_classes, batch_norm,
                ACTIVATIONS[activation])


def mnist1d_cnn(input_shape: tuple[int, ...], num_classes: int, width: int = 32,
                batch_norm: bool = True) -> list[nn.Module]:
    """Three 1-D conv layers (kernel 5/3/3, max-pool 2 after the first two) and a linear head."""
    channels, length = input_shape
    layers: list[nn.Module] = []
    for index, kernel in enumerate((5, 3, 3)):
        layers.append(nn.Conv1d(channels if index == 0 else width, width, kernel,
                                padding=kernel // 2, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(nn.ReLU())
        if index < 2:
            layers.append(nn.MaxPool1d(2))
            length //= 2
    layers += [nn.Flatten(), nn.Linear(width * length, num_classes)]
    return layers


def f1(input_shape: tuple[int, ...], num_classes: int, width: int = 512,
       batch_norm: bool = True) -> list[nn.Module]:
    """Hoffer et al.'s F1: five fully connected hidden layers with BN."""
    return _mlp(math.prod(input_shape), [width] * 5, num_classes, batch_norm)


def m1(input_shape: tuple[int, ...], num_classes: int, batch_norm: bool = True) -> list[nn.Module]:
    """LeNet-5 style: conv 20@5x5, pool, conv 50@5x5, pool, fc 500, fc classes."""
    channels, height, width = input_shape
    norm: Callable[[int], nn.Module] = nn.BatchNorm2d if batch_norm else (lambda c: nn.Identity())
    side = ((height - 4) // 2 - 4) // 2
    side_w = ((width - 4) // 2 - 4) // 2
    return [nn.Conv2d(channels, 20, 5), norm(20), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(20, 50, 5), norm(50), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(50 * side * side_w, 500), nn.ReLU(), nn.Linear(500, num_classes)]


def c1(input_shape: tuple[int, ...], num_classes: int) -> list[nn.Module]:
    """AlexNet-like: two 64@5x5 conv blocks with BN and 3x3/2 pooling, fc 384, fc 192."""
    channels, height, _ = input_shape
    side = height
    for _ in range(2):
        side = (side - 3) // 2 + 1
    return [nn.Conv2d(channels, 64, 5, padding=2), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 64, 5, padding=2), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Flatten(), nn.Linear(64 * side * side, 384), nn.BatchNorm1d(384), nn.ReLU(),
            nn.Linear(384, 192), nn.BatchNorm1d(192), nn.ReLU(), nn.Linear(192, num_classes)]


_VGG_PLAN = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def c2(input_shape: tuple[int, ...], num_classes: int) -> list[nn.Module]:
    """VGG-16-like for 32x32 images: 13 conv layers with BN, one linear head."""
    layers: list[nn.Module] = []
    channels = input_shape[0]
    for item in _VGG_PLAN:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.BatchNorm2d(item), nn.ReLU()]
            channels = item
    side = input_shape[1] // 32
    return layers + [nn.Flatten(), nn.Linear(512 * side * side, num_classes)]


class BasicBlock(nn.Module):
    """ResNet basic block with the parameter-free (option A) shortcut of the CIFAR ResNets."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1 and self.extra_channels == 0:
            return x
        x = x[:, :, ::self.stride, ::self.stride]
        half = self.extra_channels // 2
        return F.pad(x, (0, 0, 0, 0, half, self.extra_channels - half))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def resnet20(input_shape: tuple[int, ...], num_classes: int) -> list[nn.Module]:
    """ResNet-20 for CIFAR: 16/32/64 channels, three stages of three basic blocks."""
    layers: list[nn.Module] = [nn.Conv2d(input_shape[0], 16, 3, 1, 1, bias=False),
                               nn.BatchNorm2d(16), nn.ReLU()]
    in_channels = 16
    for stage, channels in enumerate((16, 32, 64)):
        for block in range(3):
            layers.append(BasicBlock(in_channels, channels, 2 if stage > 0 and block == 0 else 1))
            in_channels = channels
    return layers + [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes)]


MODELS: dict[str, Callable[..., list[nn.Module]]] = {
    "mnist1d_mlp": mnist1d_mlp, "mnist1d_cnn": mnist1d_cnn, "f1": f1, "m1": m1,
    "c1": c1, "c2": c2, "resnet20": resnet20,
}


def build(name: str, input_shape: Sequence[int], num_classes: int,
          mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
          normalize: bool = True, **options) -> nn.Sequential:
    """Build the network ``name``: a Sequential of ``Normalize`` then the layers.

    ``mean``/``std`` are per-channel input statistics (identity if omitted, or if
    ``normalize`` is False: the network sees raw inputs, as the ABSA reference code's
    CIFAR-10 models do); ``options`` are the network's own keyword arguments (e.g.
    ``width``, ``batch_norm``).
    """
    if not isinstance(normalize, bool):
        raise ValueError(f"normalize must be True or False, got {normalize!r}")
    if not normalize:
        mean = std = None
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(MODELS)}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    input_shape = tuple(int(s) for s in input_shape)
    channels = input_shape[0]
    mean = tuple(mean) if mean is not None else (0.0,) * channels
    std = tuple(std) if std is not None else (1.0,) * channels
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean and std need one value per input channel ({channels}), "
                         f"got {len(mean)} and {len(std)}")
    try:
        layers = MODELS[name](input_shape, num_classes, **options)
    except TypeError as error:
        raise ValueError(f"bad options for model {name!r}: {error}") from None
    return nn.Sequential(Normalize(mean, std), *layers)


def num_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) scalar parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
