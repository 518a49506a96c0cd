"""Tests for largebatch.data: MNIST-1D generation and the on-disk readers.

The image sets are exercised on tiny files written here in their original
formats (idx, python pickles, .mat), so no download is needed.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from largebatch import data
from largebatch.data import DataNotFoundError, load

from fakedata import cifar_images, make_idx_set, write_idx, write_pickle


# --------------------------------------------------------------------------- helpers


def channel_stats(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std over all samples and positions, in float64."""
    flat = x.double().transpose(0, 1).reshape(x.shape[1], -1)
    return flat.mean(dim=1).numpy(), flat.std(dim=1).numpy()


def assert_image_bundle(bundle, name, num_classes, input_shape, n_train, n_test):
    assert bundle.name == name
    assert bundle.num_classes == num_classes
    assert bundle.input_shape == input_shape
    assert bundle.value_range == (0.0, 1.0)
    assert bundle.num_train == n_train and bundle.num_test == n_test
    for split, n in ((bundle.train, n_train), (bundle.test, n_test)):
        x, y = split.tensors
        assert x.shape == (n, *input_shape) and x.dtype == torch.float32
        assert y.shape == (n,) and y.dtype == torch.int64
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert y.min() >= 0 and y.max() < num_classes
    mean, std = channel_stats(bundle.train.tensors[0])
    assert len(bundle.mean) == len(bundle.std) == input_shape[0]
    np.testing.assert_allclose(bundle.mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bundle.std, std, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- MNIST-1D


@pytest.fixture(scope="module")
def mnist1d_default():
    return load("mnist1d")


def test_mnist1d_default_shapes_types_and_split(mnist1d_default):
    bundle = mnist1d_default
    assert bundle.name == "mnist1d"
    assert bundle.num_classes == 10
    assert bundle.input_shape == (1, 40)
    assert bundle.value_range is None
    assert bundle.num_train == 4000 and bundle.num_test == 1000
    for split, n in ((bundle.train, 4000), (bundle.test, 1000)):
        x, y = split.tensors
        assert x.shape == (n, 1, 40) and x.dtype == torch.float32
        assert y.shape == (n,) and y.dtype == torch.int64
        assert torch.isfinite(x).all()
        assert set(y.unique().tolist()) == set(range(10))
    # balanced: the generator makes num_samples // 10 samples per class
    counts = torch.bincount(torch.cat([bundle.train.tensors[1], bundle.test.tensors[1]]))
    assert counts.tolist() == [500] * 10


def test_mnist1d_mean_std_are_training_channel_statistics(mnist1d_default):
    x_train = mnist1d_default.train.tensors[0]
    mean, std = channel_stats(x_train)
    assert len(mnist1d_default.mean) == len(mnist1d_default.std) == 1
    np.testing.assert_allclose(mnist1d_default.mean, mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(mnist1d_default.std, std, rtol=1e-4)
    # and not those of the test set or of everything (they do differ)
    test_mean, _ = channel_stats(mnist1d_default.test.tensors[0])
    assert abs(test_mean[0] - mean[0]) > 1e-4
    assert abs(mnist1d_default.mean[0] - test_mean[0]) > 1e-4


def test_mnist1d_configurable_size_and_split():
    bundle = load("mnist1d", num_samples=200, train_split=0.75, seed=3)
    assert bundle.num_train == 150 and bundle.num_test == 50
    assert bundle.train.tensors[0].shape == (150, 1, 40)
    assert bundle.test.tensors[0].shape == (50, 1, 40)
    assert bundle.input_shape == (1, 40)


def test_mnist1d_is_deterministic_and_seed_matters():
    generate = data._load_mnist1d.__wrapped__  # bypass the memo: really generate twice
    first, second = generate(100, 0.8, 5), generate(100, 0.8, 5)
    for a, b in zip(first.train.tensors + first.test.tensors,
                    second.train.tensors + second.test.tensors):
        assert torch.equal(a, b)
    assert first.mean == second.mean and first.std == second.std
    other = generate(100, 0.8, 6)
    assert not torch.equal(first.train.tensors[0], other.train.tensors[0])
    # the public entry point agrees with the raw generator
    via_load = load("mnist1d", num_samples=100, train_split=0.8, seed=5)
    assert torch.equal(via_load.train.tensors[0], first.train.tensors[0])
    assert torch.equal(via_load.test.tensors[1], first.test.tensors[1])


def test_mnist1d_leaves_global_rngs_untouched():
    np.random.seed(1234)
    random.seed(1234)
    torch.manual_seed(1234)
    numpy_before = np.random.get_state()
    python_before = random.getstate()
    torch_before = torch.get_rng_state()
    data._load_mnist1d.__wrapped__(60, 0.5, 11)  # really runs the generator (not memoized)
    numpy_after = np.random.get_state()
    assert numpy_before[0] == numpy_after[0]
    np.testing.assert_array_equal(numpy_before[1], numpy_after[1])
    assert numpy_before[2:] == numpy_after[2:]
    assert random.getstate() == python_before
    assert torch.equal(torch.get_rng_state(), torch_before)


@pytest.mark.parametrize("num_samples", [0, 10, -5, 100.0, "100"])
def test_mnist1d_rejects_bad_num_samples(num_samples):
    with pytest.raises(ValueError, match="num_samples"):
        load("mnist1d", num_samples=num_samples)


@pytest.mark.parametrize("train_split", [0.0, 1.0, -0.1, 1.5])
def test_mnist1d_rejects_bad_train_split(train_split):
    with pytest.raises(ValueError, match="train_split"):
        load("mnist1d", num_samples=100, train_split=train_split)


def test_unknown_data_set_lists_available_names():
    with pytest.raises(ValueError) as info:
        load("imagenet")
    message = str(info.value)
    assert "imagenet" in message
    for name in data.DATASETS:
        assert name in message


# --------------------------------------------------------------------------- MNIST / Fashion-MNIST (idx)


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gz"])
def test_mnist_idx_files(tmp_path, compress):
    arrays = make_idx_set(tmp_path / "MNIST" / "raw", compress=compress)
    bundle = load("mnist", root=tmp_path)
    assert_image_bundle(bundle, "mnist", 10, (1, 28, 28), 6, 4)
    for split, prefix in ((bundle.train, "train"), (bundle.test, "t10k")):
        images, labels = arrays[prefix]
        x, y = split.tensors
        np.testing.assert_array_equal(y.numpy(), labels.astype(np.int64))
        # exact byte -> value / 255 mapping, row-major (h, w)
        np.testing.assert_allclose(x[:, 0].numpy(), images / 255.0, rtol=0, atol=1e-7)
    x = bundle.train.tensors[0]
    images = arrays["train"][0]
    assert x[2, 0, 3, 17].item() == pytest.approx(images[2, 3, 17] / 255.0)


def test_root_accepts_str(tmp_path):
    make_idx_set(tmp_path / "MNIST" / "raw", n_train=3, n_test=2)
    bundle = load("mnist", root=str(tmp_path))
    assert bundle.num_train == 3 and bundle.num_test == 2


def test_fashion_mnist_idx_files(tmp_path):
    arrays = make_idx_set(tmp_path / "FashionMNIST" / "raw", n_train=5, n_test=3)
    bundle = load("fashion_mnist", root=tmp_path)
    assert_image_bundle(bundle, "fashion_mnist", 10, (1, 28, 28), 5, 3)
    np.testing.assert_array_equal(bundle.test.tensors[1].numpy(), arrays["t10k"][1])
    # not read from the MNIST folder
    with pytest.raises(DataNotFoundError):
        load("mnist", root=tmp_path)


def test_read_idx_rejects_wrong_magic(tmp_path):
    folder = tmp_path / "MNIST" / "raw"
    make_idx_set(folder)
    path = folder / "train-images-idx3-ubyte"
    raw = bytearray(path.read_bytes())
    raw[2] = 0x0D  # type code of float32, not unsigned byte
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="idx"):
        data.read_idx(path)
    with pytest.raises(ValueError):
        load("mnist", root=tmp_path)


@pytest.mark.parametrize("content", [b"", b"\x00\x00", b"\x12\x34\x56\x78rest"])
def test_read_idx_rejects_garbage(tmp_path, content):
    path = tmp_path / "garbage-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(ValueError):
        data.read_idx(path)


def test_read_idx_header_and_dims(tmp_path):
    array = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    write_idx(tmp_path / "a-idx3-ubyte", array)
    out = data.read_idx(tmp_path / "a-idx3-ubyte")
    assert out.shape == (2, 3, 5) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, array)
    # dimensions are big-endian 32-bit: 300 = 0x0000012C must not read as 0x2C01 etc.
    long = np.arange(300, dtype=np.int64).astype(np.uint8)
    write_idx(tmp_path / "b-idx1-ubyte", long, compress=True)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "b-idx1-ubyte"), long)


# --------------------------------------------------------------------------- CIFAR-10 / CIFAR-100


def test_cifar10_pickles_and_pixel_layout(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    batches = []
    for index in range(1, 6):
        images = cifar_images(2, index)
        labels = [(index + k) % 10 for k in range(2)]
        if index == 3:  # a known pixel: sample 1 of batch 3 -> train index 5
            images[1, 2, 7, 19] = 255
            images[1, 0, 7, 19] = 0
            images[1, 1, 31, 0] = 51
        # rows are channel-major: 1024 red, 1024 green, 1024 blue, each row-major
        write_pickle(folder / f"data_batch_{index}",
                     {"data": images.reshape(2, 3072), "labels": labels,
                      "batch_label": f"training batch {index} of 5"})
        batches.append((images, labels))
    test_images = cifar_images(3, 99)
    write_pickle(folder / "test_batch", {"data": test_images.reshape(3, 3072), "labels": [9, 0, 4]})

    bundle = load("cifar10", root=tmp_path)
    assert_image_bundle(bundle, "cifar10", 10, (3, 32, 32), 10, 3)
    x, y = bundle.train.tensors
    assert y.tolist() == [label for _, labels in batches for label in labels]  # batches in order
    assert bundle.test.tensors[1].tolist() == [9, 0, 4]
    assert x[5, 2, 7, 19].item() == 1.0
    assert x[5, 0, 7, 19].item() == 0.0
    assert x[5, 1, 31, 0].item() == pytest.approx(0.2)
    # flat index c*1024 + h*32 + w of the stored row <-> tensor[c, h, w]
    row = batches[0][0].reshape(2, 3072)[0]
    for c, h, w in ((0, 0, 0), (1, 0, 5), (2, 31, 31), (0, 12, 3)):
        assert x[0, c, h, w].item() == pytest.approx(row[c * 1024 + h * 32 + w] / 255.0)
    np.testing.assert_allclose(bundle.test.tensors[0].numpy(), test_images / 255.0, atol=1e-7)


def test_cifar100_pickles_use_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    train_images, test_images = cifar_images(4, 1), cifar_images(2, 2)
    write_pickle(folder / "train", {"data": train_images.reshape(4, 3072),
                                    "fine_labels": [0, 57, 99, 13], "coarse_labels": [0, 1, 2, 3]})
    write_pickle(folder / "test", {"data": test_images.reshape(2, 3072),
                                   "fine_labels": [42, 98], "coarse_labels": [4, 5]})
    bundle = load("cifar100", root=tmp_path)
    assert_image_bundle(bundle, "cifar100", 100, (3, 32, 32), 4, 2)
    assert bundle.train.tensors[1].tolist() == [0, 57, 99, 13]
    assert bundle.test.tensors[1].tolist() == [42, 98]
    np.testing.assert_allclose(bundle.train.tensors[0].numpy(), train_images / 255.0, atol=1e-7)


# --------------------------------------------------------------------------- SVHN (.mat)


def test_svhn_mat_files(tmp_path):
    savemat = pytest.importorskip("scipy.io").savemat
    rng = np.random.default_rng(0)
    splits = {}
    for split, digits in (("train", [10, 1, 5, 9, 10]), ("test", [3, 10, 7])):
        n = len(digits)
        images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)  # (N, C, H, W)
        if split == "train":
            images[3, 1, 4, 28] = 255  # known pixel at sample 3, green, row 4, column 28
            images[3, 0, 4, 28] = 0
        stored = np.ascontiguousarray(images.transpose(2, 3, 1, 0))  # SVHN layout (H, W, C, N)
        savemat(tmp_path / f"{split}_32x32.mat",
                {"X": stored, "y": np.array(digits, dtype=np.uint8).reshape(n, 1)})
        splits[split] = (images, digits)

    bundle = load("svhn", root=tmp_path)
    assert_image_bundle(bundle, "svhn", 10, (3, 32, 32), 5, 3)
    assert bundle.train.tensors[1].tolist() == [0, 1, 5, 9, 0]  # 10 means digit 0
    assert bundle.test.tensors[1].tolist() == [3, 0, 7]
    x = bundle.train.tensors[0]
    assert x[3, 1, 4, 28].item() == 1.0 and x[3, 0, 4, 28].item() == 0.0
    np.testing.assert_allclose(x.numpy(), splits["train"][0] / 255.0, atol=1e-7)


# --------------------------------------------------------------------------- missing data


@pytest.mark.parametrize("name, expected", [
    ("mnist", "MNIST/raw/train-images-idx3-ubyte"),
    ("fashion_mnist", "FashionMNIST/raw/train-images-idx3-ubyte"),
    ("cifar10", "cifar-10-batches-py/data_batch_1"),
    ("cifar100", "cifar-100-python/train"),
    ("svhn", "train_32x32.mat"),
])
def test_missing_data_raises_data_not_found(tmp_path, name, expected):
    with pytest.raises(DataNotFoundError) as info:
        load(name, root=tmp_path, download=False)
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert str(tmp_path / expected) in message
    assert "download=True" in message
    # the suggested call names the root that was passed, not a sub-folder of it
    assert f"root={str(tmp_path)!r}" in message


def test_missing_test_split_is_reported(tmp_path):
    folder = tmp_path / "MNIST" / "raw"
    make_idx_set(folder)
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataNotFoundError, match="t10k-labels-idx1-ubyte"):
        load("mnist", root=tmp_path)


def test_default_root_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LARGEBATCH_DATA", str(tmp_path))
    assert data.default_root() == tmp_path
    with pytest.raises(DataNotFoundError, match=str(tmp_path / "cifar-10-batches-py")):
        load("cifar10")
    monkeypatch.delenv("LARGEBATCH_DATA")
    assert data.default_root() == Path.home() / ".cache" / "largebatch" / "data"
