"""Data sets as in-memory tensors: MNIST-1D (default, generated locally) and the papers' image sets.

``load(name)`` returns a :class:`DataBundle` with train and test
``TensorDataset``s of raw inputs (float32) and integer labels, plus what models
and attacks need to know: number of classes, input shape, value range and the
per-channel statistics that the model's first layer uses to normalize.

MNIST-1D is generated deterministically by the ``mnist1d`` package and never
downloaded. MNIST, Fashion-MNIST, CIFAR-10/100 and SVHN are read from their
standard on-disk formats (idx, python pickles, .mat) under ``root``; they are
fetched through torchvision only when ``download=True``. A missing file raises
:class:`DataNotFoundError`, a truncated or wrong one :class:`DataFormatError`, each
naming the file.
"""

from __future__ import annotations

import functools
import gzip
import math
import os
import pickle
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from largebatch.user_input import checked_folder, default_data_dir

DATASETS = ("mnist1d", "mnist", "fashion_mnist", "cifar10", "cifar100", "svhn")

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_FOLDERS = {
    "mnist": "MNIST/raw",
    "fashion_mnist": "FashionMNIST/raw",
    "cifar10": "cifar-10-batches-py",
    "cifar100": "cifar-100-python",
    "svhn": ".",
}
_TORCHVISION_CLASSES = {
    "mnist": "MNIST",
    "fashion_mnist": "FashionMNIST",
    "cifar10": "CIFAR10",
    "cifar100": "CIFAR100",
    "svhn": "SVHN",
}


class DataNotFoundError(FileNotFoundError):
    """Raised when a data set is not on disk and downloading was not requested."""


class DataFormatError(ValueError):
    """A data file that is truncated or not in its data set's format; the message names it."""


@dataclass(frozen=True)
class DataBundle:
    """A data set split into train and test tensors, with what models need to know."""

    name: str
    train: TensorDataset
    test: TensorDataset
    num_classes: int
    input_shape: tuple[int, ...]
    value_range: tuple[float, float] | None  # None: inputs are unbounded (MNIST-1D)
    mean: tuple[float, ...]  # per-channel statistics of the training inputs
    std: tuple[float, ...]

    @property
    def num_train(self) -> int:
        return len(self.train)

    @property
    def num_test(self) -> int:
        return len(self.test)


def default_root() -> Path:
    """Where image data sets live: ``$LARGEBATCH_DATA`` or ``~/.cache/largebatch/data``, absolute
    (an empty value or a file is an error)."""
    return default_data_dir()


def load(
    name: str = "mnist1d",
    root: str | os.PathLike | None = None,
    download: bool = False,
    num_samples: int = 5000,
    train_split: float = 0.8,
    seed: int = 42,
) -> DataBundle:
    """Load a data set by name.

    ``num_samples``, ``train_split`` and ``seed`` apply to MNIST-1D only (its
    generator's arguments); the image sets have their standard splits. MNIST-1D
    makes ``num_samples // 10`` samples of each of its 10 classes, so ``num_samples``
    must be a multiple of 10 (other values are rejected rather than silently rounded down).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; available: {', '.join(DATASETS)}")
    if name == "mnist1d":
        return _load_mnist1d(num_samples, train_split, seed)
    root = checked_folder(root, "root") if root is not None else default_root()
    if download:
        _download(name, root)
    reader = {"mnist": _read_idx_set, "fashion_mnist": _read_idx_set, "cifar10": _read_cifar,
              "cifar100": _read_cifar, "svhn": _read_svhn}[name]
    (x_train, y_train), (x_test, y_test), num_classes = reader(name, root)
    return _bundle(name, x_train, y_train, x_test, y_test, num_classes, value_range=(0.0, 1.0))


def _bundle(name: str, x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor,
            y_test: torch.Tensor, num_classes: int,
            value_range: tuple[float, float] | None) -> DataBundle:
    channel_dims = [0] + list(range(2, x_train.dim()))
    mean = tuple(x_train.mean(dim=channel_dims).tolist())
    std = tuple(x_train.std(dim=channel_dims).tolist())
    return DataBundle(name=name, train=TensorDataset(x_train, y_train),
                      test=TensorDataset(x_test, y_test), num_classes=num_classes,
                      input_shape=tuple(x_train.shape[1:]), value_range=value_range,
                      mean=mean, std=std)


@functools.lru_cache(maxsize=8)
def _load_mnist1d(num_samples: int, train_split: float, seed: int) -> DataBundle:
    """Generate MNIST-1D (memoized per process: treat the returned tensors as read-only)."""
    if not isinstance(num_samples, int) or num_samples < 20 or num_samples % 10:
        raise ValueError(f"num_samples must be an integer >= 20 and a multiple of 10 (MNIST-1D makes "
                         f"num_samples // 10 samples per class), got {num_samples!r}")
    if not 0.0 < train_split < 1.0:
        raise ValueError(f"train_split must be in (0, 1), got {train_split!r}")
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = num_samples, train_split, seed
    numpy_state = np.random.get_state()  # the generator reseeds numpy's and Python's global RNGs
    python_state = random.getstate()
    try:
        raw = make_dataset(args)
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)

    def tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.as_tensor(x, dtype=torch.float32).unsqueeze(1),
                torch.as_tensor(y, dtype=torch.int64))

    x_train, y_train = tensors(raw["x"], raw["y"])
    x_test, y_test = tensors(raw["x_test"], raw["y_test"])
    return _bundle("mnist1d", x_train, y_train, x_test, y_test, 10, value_range=None)


def _missing(name: str, path: Path, root: Path) -> DataNotFoundError:
    return DataNotFoundError(
        f"{name} not found: looked for {path}. Fetch it with "
        f"largebatch.data.load({name!r}, root={str(root)!r}, download=True) "
        f"or place the original files there (root defaults to $LARGEBATCH_DATA).")


def _open_maybe_gzip(path: Path):
    if path.exists():
        return open(path, "rb")
    gz = path.with_name(path.name + ".gz")
    if gz.exists():
        return gzip.open(gz, "rb")
    raise FileNotFoundError(path)


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (the MNIST format), plain or ``.gz``; a :class:`DataFormatError`
    naming the file when it is not one or is truncated."""
    try:
        with _open_maybe_gzip(path) as handle:
            data = handle.read()
    except (OSError, EOFError) as error:  # a damaged .gz
        if isinstance(error, FileNotFoundError):
            raise
        raise DataFormatError(f"{path} cannot be read ({type(error).__name__}: {error})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataFormatError(f"{path} is not an unsigned-byte idx file")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise DataFormatError(f"{path} is truncated: its idx header names {ndim} dimensions")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = 4 + 4 * ndim + math.prod(shape)
    if len(data) != expected:
        raise DataFormatError(f"{path} has {len(data)} bytes, but its idx header {shape} needs {expected} "
                              "(truncated or not an idx file)")
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _read_idx_set(name: str, root: Path):
    folder = root / _FOLDERS[name]
    splits = []
    for images_file, labels_file in _IDX_FILES.values():
        try:
            images, labels = read_idx(folder / images_file), read_idx(folder / labels_file)
        except FileNotFoundError as error:
            raise _missing(name, Path(error.args[0]) if error.args else folder, root) from None
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataFormatError(f"{folder / images_file} ({images.shape}) and {folder / labels_file} "
                                  f"({labels.shape}) must hold N images of H x W and their N labels")
        x = torch.as_tensor(images.copy(), dtype=torch.float32).div_(255).unsqueeze(1)
        splits.append((x, torch.as_tensor(labels.astype(np.int64))))
    return splits[0], splits[1], 10


def _read_cifar(name: str, root: Path):
    folder = root / _FOLDERS[name]
    if name == "cifar10":
        files = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        label_key, num_classes = "labels", 10
    else:
        files = {"train": ["train"], "test": ["test"]}
        label_key, num_classes = "fine_labels", 100
    splits = []
    for split_files in files.values():
        images, labels = [], []
        for file_name in split_files:
            path = folder / file_name
            if not path.exists():
                raise _missing(name, path, root)
            batch_images, batch_labels = _read_cifar_batch(path, label_key)
            images.append(batch_images)
            labels.extend(batch_labels)
        x = torch.as_tensor(np.concatenate(images), dtype=torch.float32).div_(255)
        splits.append((x, torch.as_tensor(labels, dtype=torch.int64)))
    return splits[0], splits[1], num_classes


def _read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, list[int]]:
    """Images (N, 3, 32, 32) and labels of one CIFAR python batch file; a
    :class:`DataFormatError` naming the file when it is truncated or not such a batch."""
    try:
        with open(path, "rb") as handle:
            batch = pickle.load(handle, encoding="latin1")
        flat = np.asarray(batch["data"], dtype=np.uint8)
        labels = [int(label) for label in batch[label_key]]
        if flat.ndim != 2 or flat.shape[1] != 3 * 32 * 32 or len(flat) != len(labels):
            raise ValueError(f"{flat.shape} data for {len(labels)} labels, not (N, 3072) and N labels")
    except Exception as error:  # pickle raises many types for damaged files
        raise DataFormatError(f"{path} is not a CIFAR python batch with 'data' and {label_key!r} "
                              f"({type(error).__name__}: {error})") from None
    return flat.reshape(-1, 3, 32, 32), labels


def _read_svhn(name: str, root: Path):
    from scipy.io import loadmat

    splits = []
    for split in ("train", "test"):
        path = root / f"{split}_32x32.mat"
        if not path.exists():
            raise _missing(name, path, root)
        try:
            mat = loadmat(path)
            images, labels = np.transpose(mat["X"], (3, 2, 0, 1)), mat["y"].astype(np.int64).reshape(-1)
            if images.shape[1:] != (3, 32, 32) or len(images) != len(labels):
                raise ValueError(f"X {mat['X'].shape} and y {mat['y'].shape}, not (32, 32, 3, N) and N labels")
        except Exception as error:  # scipy raises many types for damaged files
            raise DataFormatError(f"{path} is not an SVHN .mat file with 'X' and 'y' "
                                  f"({type(error).__name__}: {error})") from None
        x = torch.as_tensor(images.copy(), dtype=torch.float32)
        labels = labels % 10  # SVHN stores digit 0 as 10
        splits.append((x.div_(255), torch.as_tensor(labels)))
    return splits[0], splits[1], 10


def _download(name: str, root: Path) -> None:
    from largebatch._torchvision import import_torchvision

    datasets = import_torchvision().datasets
    cls = getattr(datasets, _TORCHVISION_CLASSES[name])
    root.mkdir(parents=True, exist_ok=True)
    if name == "svhn":
        for split in ("train", "test"):
            cls(str(root), split=split, download=True)
    else:
        for train in (True, False):
            cls(str(root), train=train, download=True)
