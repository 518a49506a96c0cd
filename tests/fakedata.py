"""Tiny data sets written in the original on-disk formats (idx, CIFAR pickles, SVHN .mat).

Shared by the data-reader tests and the paper-profile tests, so neither downloads anything.
``write_image_sets(root)`` fills ``root`` with every image set ``largebatch.data`` reads.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    """Write ``array`` (uint8) as an idx file: magic 0x0000 08 <ndim>, big-endian dims, bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(">" + "I" * array.ndim, *array.shape)
    payload = header + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)


def make_idx_set(folder: Path, compress: bool = False, n_train: int = 6, n_test: int = 4):
    """Write the four MNIST idx files with distinct, checkable content; return the arrays."""
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) * 3 % 10).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, compress)
        arrays[prefix] = (images, labels)
    return arrays


def write_pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(obj, handle)


def cifar_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)


def write_cifar10(root: Path, per_batch: int, n_test: int) -> None:
    """Five training batches of ``per_batch`` images and one test batch, labels cycling over 10 classes."""
    folder = root / "cifar-10-batches-py"
    for index in range(1, 6):
        labels = [(index * per_batch + k) % 10 for k in range(per_batch)]
        write_pickle(folder / f"data_batch_{index}",
                     {"data": cifar_images(per_batch, index).reshape(per_batch, 3072), "labels": labels})
    write_pickle(folder / "test_batch", {"data": cifar_images(n_test, 99).reshape(n_test, 3072),
                                         "labels": [k % 10 for k in range(n_test)]})


def write_cifar100(root: Path, n_train: int, n_test: int) -> None:
    folder = root / "cifar-100-python"
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        write_pickle(folder / split, {"data": cifar_images(n, seed).reshape(n, 3072),
                                      "fine_labels": [k % 100 for k in range(n)],
                                      "coarse_labels": [k % 20 for k in range(n)]})


def write_svhn(root: Path, n_train: int, n_test: int) -> None:
    """``{train,test}_32x32.mat`` in SVHN's (H, W, C, N) layout, digit 0 stored as 10."""
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 3), ("test", n_test, 4)):
        images = cifar_images(n, seed)
        digits = np.array([k % 10 or 10 for k in range(n)], dtype=np.uint8).reshape(n, 1)
        savemat(root / f"{split}_32x32.mat", {"X": np.ascontiguousarray(images.transpose(2, 3, 1, 0)), "y": digits})


def write_image_sets(root: Path, n_train: int = 40, n_test: int = 20) -> Path:
    """Every image data set (MNIST, Fashion-MNIST, CIFAR-10/100, SVHN) with about ``n_train`` training images."""
    make_idx_set(root / "MNIST" / "raw", n_train=n_train, n_test=n_test)
    make_idx_set(root / "FashionMNIST" / "raw", n_train=n_train, n_test=n_test)
    write_cifar10(root, per_batch=max(1, n_train // 5), n_test=n_test)
    write_cifar100(root, n_train, n_test)
    write_svhn(root, n_train, n_test)
    return root
