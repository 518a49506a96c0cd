"""The papers' CIFAR data augmentation, applied per batch on the device where the batch lives.

``crop_flip`` is the standard augmentation of the CIFAR experiments the book
reproduces: pad each image with 4 zero pixels on every side, cut a random 32x32
window out of it, and mirror it left-right with probability 1/2. It acts on raw
inputs in [0, 1] (the model normalizes them itself), so the padding is black.

:func:`build` returns it as a ``train.fit`` input transform. Its random numbers
come from a generator of its own, seeded from the run's seed, so runs stay
reproducible and the data order is unchanged. Only training batches pass through
it: the Hessian, the attacks and every evaluation see the data unaugmented.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

AUGMENTATIONS = ("none", "crop_flip")
PADDING = 4
SEED_STREAM = 0x5EED  # added to the run's seed: a stream distinct from the data order's


class CropFlip:
    """Random crop after zero padding, then a random horizontal flip, independently per sample."""

    def __init__(self, seed: int, padding: int = PADDING) -> None:
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding!r}")
        self.seed, self.padding = seed, padding
        self._generator: torch.Generator | None = None

    def _random(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed + SEED_STREAM)
        return self._generator

    def state_dict(self) -> dict[str, Any]:
        """The generator's position, so a resumed run draws the same crops and flips."""
        if self._generator is None:
            return {"device": None, "state": None}
        return {"device": str(self._generator.device), "state": self._generator.get_state()}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self._generator = None
        if saved["device"] is not None:
            self._generator = torch.Generator(device=saved["device"])
            self._generator.set_state(saved["state"])

    def __call__(self, model: nn.Module, inputs: torch.Tensor,
                 targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a batch of images ``(N, C, H, W)``; ``model`` and ``targets`` pass through."""
        if inputs.dim() != 4:
            raise ValueError(f"crop_flip augments images of shape (N, C, H, W), got shape {tuple(inputs.shape)}")
        n, _, height, width = inputs.shape
        generator = self._random(inputs.device)
        rows = torch.randint(0, 2 * self.padding + 1, (n, 1), generator=generator, device=inputs.device)
        cols = torch.randint(0, 2 * self.padding + 1, (n, 1), generator=generator, device=inputs.device)
        flip = torch.rand(n, generator=generator, device=inputs.device) < 0.5
        padded = nn.functional.pad(inputs, (self.padding,) * 4)
        rows = rows + torch.arange(height, device=inputs.device)  # (N, H): rows of each window
        cols = cols + torch.arange(width, device=inputs.device)  # (N, W)
        cols = torch.where(flip[:, None], cols.flip(1), cols)  # a flip reads the window's columns backwards
        samples = torch.arange(n, device=inputs.device)[:, None, None]
        windows = padded.permute(0, 2, 3, 1)[samples, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
        return windows.permute(0, 3, 1, 2).contiguous(), targets


def build(name: str, seed: int) -> CropFlip | None:
    """The input transform for an augmentation name, or None for ``"none"``."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {', '.join(AUGMENTATIONS)}, got {name!r}")
    return CropFlip(seed) if name == "crop_flip" else None
