"""CIFAR augmentation (crop with padding 4, horizontal flip): exact windows, coverage, determinism, wiring."""

import hashlib
import json

import pytest
import torch
from torch.nn import functional as F

from largebatch import augmentation, experiments
from largebatch.callbacks import Callback
from largebatch.config import ConfigError, RunConfig
from largebatch.train import compose_transforms, evaluate

from fakedata import write_cifar10


def candidates(image: torch.Tensor, padding: int) -> list[tuple[int, int, bool, torch.Tensor]]:
    """Every window a crop-and-flip can produce from one image, cut by plain slicing."""
    _, height, width = image.shape
    padded = F.pad(image, (padding,) * 4)
    out = []
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            window = padded[:, dy:dy + height, dx:dx + width]
            out += [(dy, dx, False, window), (dy, dx, True, window.flip(-1))]
    return out


def identify(output: torch.Tensor, image: torch.Tensor, padding: int) -> tuple[int, int, bool]:
    matches = [(dy, dx, flip) for dy, dx, flip, w in candidates(image, padding) if torch.equal(w, output)]
    assert len(matches) == 1, f"output is {len(matches)} of the possible windows, expected exactly one"
    return matches[0]


def test_every_output_is_one_padded_window_and_all_windows_and_flips_occur():
    torch.manual_seed(0)
    images = torch.rand(400, 3, 6, 5) + 0.5  # positive and distinct: a zero can only come from padding
    labels = torch.arange(400)
    before = images.clone()
    out, targets = augmentation.CropFlip(seed=3, padding=2)(None, images, labels)
    assert out.shape == images.shape and out.dtype == images.dtype and targets is labels
    assert torch.equal(images, before)  # the training data is never changed in place
    seen = [identify(out[i], images[i], 2) for i in range(len(images))]
    assert {(dy, dx) for dy, dx, _ in seen} == {(dy, dx) for dy in range(5) for dx in range(5)}
    flips = sum(flip for *_, flip in seen)
    assert 150 < flips < 250  # Binomial(400, 1/2): mean 200, sd 10
    # padding content: exactly the pixels outside the image are zero, on every channel
    for (dy, dx, _), window in zip(seen, out):
        zero_rows, zero_cols = abs(dy - 2), abs(dx - 2)
        assert int((window == 0).sum()) == 3 * (6 * 5 - (6 - zero_rows) * (5 - zero_cols))


def test_same_seed_same_augmentation_other_seed_other_and_global_rng_untouched():
    images = torch.rand(64, 3, 32, 32)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = augmentation.CropFlip(seed=0)
    a1, a2 = first(None, images, None)[0], first(None, images, None)[0]
    b1 = augmentation.CropFlip(seed=0)(None, images, None)[0]
    c1 = augmentation.CropFlip(seed=1)(None, images, None)[0]
    assert torch.equal(a1, b1) and not torch.equal(a1, a2) and not torch.equal(a1, c1)
    assert torch.equal(torch.get_rng_state(), state)


def test_zero_padding_without_flip_is_the_identity_up_to_flips():
    images = torch.rand(20, 1, 4, 4)
    out = augmentation.CropFlip(seed=0, padding=0)(None, images, None)[0]
    for i in range(20):
        assert torch.equal(out[i], images[i]) or torch.equal(out[i], images[i].flip(-1))


def test_bad_input_and_names_are_rejected():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        augmentation.CropFlip(seed=0)(None, torch.rand(4, 1, 40), None)
    with pytest.raises(ValueError, match="augmentation must be one of none, crop_flip"):
        augmentation.build("cutout", 0)
    assert augmentation.build("none", 0) is None


def test_config_field_is_validated_and_keeps_old_cache_keys():
    with pytest.raises(ConfigError, match="augmentation must be 'none' for the non-image data set mnist1d"):
        RunConfig(augmentation="crop_flip")
    with pytest.raises(ConfigError, match="augmentation must be one of none, crop_flip"):
        RunConfig(dataset="cifar10", model="c1", augmentation="mixup")
    old_key = hashlib.sha256(json.dumps({"batch_size": 64}, sort_keys=True).encode()).hexdigest()[:16]
    assert RunConfig(batch_size=64).key() == old_key  # the neutral default leaves keys unchanged
    assert RunConfig(dataset="cifar10", augmentation="crop_flip").key() != RunConfig(dataset="cifar10").key()


def test_composed_transforms_apply_in_order():
    def add(value):
        return lambda model, x, y: (x + value, y)

    def scale(model, x, y):
        return x * 10, y

    assert compose_transforms(None, None) is None
    single = add(1)
    assert compose_transforms(None, single) is single
    x, _ = compose_transforms(add(1), scale)(None, torch.zeros(2), None)
    assert torch.equal(x, torch.full((2,), 10.0))


class Costly:
    """A transform that reports the gradient evaluations it spent, like FGSM does."""

    def __call__(self, model, x, y):
        return x, y

    def take_gradient_evaluations(self):
        return 7


def test_a_chain_reports_its_parts_costs_and_checkpoints_the_augmentation():
    crop = augmentation.CropFlip(seed=3)
    chain = compose_transforms(crop, Costly())
    assert chain.take_gradient_evaluations() == 7
    images = torch.rand(4, 3, 8, 8)
    chain(None, images, None)
    saved = chain.state_dict()
    ahead, _ = chain(None, images, None)
    fresh = compose_transforms(augmentation.CropFlip(seed=3), Costly())
    fresh.load_state_dict(saved)
    assert torch.equal(fresh(None, images, None)[0], ahead)  # resumes the same crops and flips


@pytest.mark.slow
def test_augmented_runs_are_reproducible_and_measured_on_unaugmented_data(tmp_path, monkeypatch):
    write_cifar10(tmp_path / "data", per_batch=8, n_test=8)
    monkeypatch.setenv("LARGEBATCH_DATA", str(tmp_path / "data"))
    config = RunConfig(dataset="cifar10", model="m1", batch_size=8, epochs=2, augmentation="crop_flip")
    records = [experiments.run(config, tmp_path / f"cache{i}", progress=False) for i in range(2)]
    plain = experiments.run(config.replace(augmentation="none"), tmp_path / "cache0", progress=False)
    assert records[0]["final"] == records[1]["final"]
    assert records[0]["final"]["train_loss"] != plain["final"]["train_loss"]
    model = experiments.load_model(config, tmp_path / "cache0")
    bundle = experiments.load_data(config)
    assert evaluate(model, bundle.train)["loss"] == pytest.approx(records[0]["final"]["train_loss"], rel=1e-6)


class Crash(Callback):
    def on_epoch_end(self, state):
        if state.epoch == 2:
            raise KeyboardInterrupt("killed after epoch 2")


@pytest.mark.slow
def test_augmented_absa_run_resumes_bit_for_bit(tmp_path, monkeypatch):
    write_cifar10(tmp_path / "data", per_batch=8, n_test=8)
    monkeypatch.setenv("LARGEBATCH_DATA", str(tmp_path / "data"))
    config = RunConfig(dataset="cifar10", model="m1", batch_size=8, epochs=4, augmentation="crop_flip",
                       batch_size_controller="absa", max_batch_size=16, adaptive_duration=1,
                       eigen_samples=16, eigen_iterations=3, adversarial_fraction=0.5, adversarial_eps=0.05)
    whole = experiments.run(config, tmp_path / "whole", progress=False)
    original = experiments._callbacks
    monkeypatch.setattr(experiments, "_callbacks", lambda c: original(c) + [Crash()])
    with pytest.raises(KeyboardInterrupt):
        experiments.run(config, tmp_path / "cut", progress=False)
    monkeypatch.setattr(experiments, "_callbacks", original)
    resumed = experiments.run(config, tmp_path / "cut", progress=False)
    assert resumed["history"] == whole["history"] and resumed["final"] == whole["final"]
