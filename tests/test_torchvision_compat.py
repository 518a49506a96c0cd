"""Tests for largebatch._torchvision: importing torchvision 0.28 next to a CPU-only torch.

The torchvision wheel is a CUDA build. On the CPU torch its compiled extension
does not load, so ``import_torchvision`` registers the schemas of the missing
operators (``torchvision::nms``, ``torchvision::qnms``) before importing. The
data sets and transforms then work, but ``torchvision.ops`` (nms, roi_align,
deform_conv2d, ...) is unavailable on the CPU torch: it has schemas at most and
no kernels. Nothing in largebatch uses torchvision.ops, so it is not tested here.
"""

from __future__ import annotations

import struct
import sys

import numpy as np
import pytest
import torch

from largebatch._torchvision import import_torchvision


@pytest.fixture(scope="module")
def torchvision():
    return import_torchvision()


def write_idx(path, array: np.ndarray) -> None:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(">" + "I" * array.ndim, *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + array.tobytes())


def test_import_returns_torchvision_0_28(torchvision):
    assert torchvision.__name__ == "torchvision"
    assert torchvision.__version__.startswith("0.28")
    assert sys.modules["torchvision"] is torchvision


def test_import_twice_returns_the_same_module(torchvision):
    again = import_torchvision()
    assert again is torchvision
    assert import_torchvision() is again
    import torchvision as plain  # a plain import afterwards sees the same module

    assert plain is torchvision


def test_datasets_and_transforms_are_available(torchvision):
    assert hasattr(torchvision.datasets, "MNIST")
    assert hasattr(torchvision.datasets, "CIFAR10")
    assert hasattr(torchvision.datasets, "SVHN")
    assert hasattr(torchvision.transforms, "ToTensor")


def test_to_tensor_on_a_pil_image(torchvision):
    image_module = pytest.importorskip("PIL.Image")
    pixels = np.zeros((4, 5, 3), dtype=np.uint8)
    pixels[1, 2] = (255, 0, 51)  # row 1, column 2
    image = image_module.fromarray(pixels)
    tensor = torchvision.transforms.ToTensor()(image)
    assert tensor.shape == (3, 4, 5) and tensor.dtype == torch.float32
    assert tensor[:, 1, 2].tolist() == pytest.approx([1.0, 0.0, 0.2])
    assert tensor.sum().item() == pytest.approx(1.2)
    composed = torchvision.transforms.Compose([
        torchvision.transforms.ToTensor(),
        torchvision.transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    ])
    assert composed(image)[0, 1, 2].item() == pytest.approx(1.0)
    assert composed(image)[0, 0, 0].item() == pytest.approx(-1.0)


def test_mnist_dataset_reads_idx_files_like_largebatch(torchvision, tmp_path):
    """torchvision's MNIST reader and largebatch.data agree on the same raw files."""
    from largebatch.data import load

    rng = np.random.default_rng(1)
    raw = tmp_path / "MNIST" / "raw"
    for prefix, n in (("train", 4), ("t10k", 3)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte",
                  rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n, dtype=np.uint8) + 2)
    dataset = torchvision.datasets.MNIST(str(tmp_path), train=True, download=False,
                                         transform=torchvision.transforms.ToTensor())
    assert len(dataset) == 4
    image, label = dataset[3]
    assert label == 5
    assert image.shape == (1, 28, 28)
    ours = load("mnist", root=tmp_path)
    torch.testing.assert_close(ours.train.tensors[0][3], image)
    assert ours.train.tensors[1].tolist() == [2, 3, 4, 5]
    test_set = torchvision.datasets.MNIST(str(tmp_path), train=False, download=False)
    assert len(test_set) == 3


def test_fresh_interpreter_patches_only_when_needed():
    """In a new process: plain ``import torchvision`` may fail on the CPU torch, the helper must not.

    The schema patch (``_library``) is applied exactly when the plain import fails.
    (Even when patched, torchvision.ops kernels are missing on the CPU torch.)
    """
    import subprocess

    script = (
        "import importlib, sys\n"
        "try:\n"
        "    import torchvision\n"
        "    plain_ok = True\n"
        "except RuntimeError as error:\n"
        "    assert 'torchvision::nms' in str(error), error\n"
        "    plain_ok = False\n"
        "import largebatch._torchvision as compat\n"
        "tv = compat.import_torchvision()\n"
        "assert tv.__version__.startswith('0.28'), tv.__version__\n"
        "assert tv.datasets.MNIST and tv.transforms.ToTensor\n"
        "assert (compat._library is None) == plain_ok, (compat._library, plain_ok)\n"
        "assert compat.import_torchvision() is tv\n"
        "print('plain import ok' if plain_ok else 'patched')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() in {"plain import ok", "patched"}
