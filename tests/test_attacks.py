"""Tests for largebatch.attacks on a small MLP trained on separable synthetic data."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from largebatch.attacks import AdversarialTransform, fgsm, pgd, robust_accuracy

CLIP = (0.0, 1.0)
EPSILONS = [0.0, 0.02, 0.05, 0.1, 0.2]


@pytest.fixture(scope="module")
def trained():
    """A 2-layer MLP trained to ~99% test accuracy on 3 Gaussian classes in [0, 1]^30."""
    torch.manual_seed(0)
    n, d, classes = 600, 30, 3
    means = 0.2 + 0.6 * torch.rand(classes, d)
    targets = torch.randint(0, classes, (n,))
    inputs = (means[targets] + 0.15 * torch.randn(n, d)).clamp(*CLIP)
    model = nn.Sequential(nn.Linear(d, 64), nn.ReLU(), nn.Linear(64, classes))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        F.cross_entropy(model(inputs[:400]), targets[:400]).backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    model.eval()
    return model, inputs[400:], targets[400:]


def accuracy(model, inputs, targets) -> float:
    with torch.no_grad():
        return (model(inputs).argmax(1) == targets).double().mean().item()


def broken(model, inputs, targets) -> torch.Tensor:
    with torch.no_grad():
        return model(inputs).argmax(1) != targets


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


ATTACKS = {
    "fgsm": lambda m, x, y, eps, **kw: fgsm(m, x, y, eps, **kw),
    "pgd-inf": lambda m, x, y, eps, **kw: pgd(m, x, y, eps, steps=5, generator=generator(), **kw),
    "pgd-2": lambda m, x, y, eps, **kw: pgd(
        m, x, y, eps, norm="2", steps=5, restarts=2, generator=generator(), **kw
    ),
}


def test_model_is_meaningful(trained):
    model, inputs, targets = trained
    assert accuracy(model, inputs, targets) > 0.95
    assert accuracy(model, fgsm(model, inputs, targets, 0.2, clip=CLIP), targets) < 0.3


@pytest.mark.parametrize("name", ATTACKS)
@pytest.mark.parametrize("clip", [CLIP, None])
def test_perturbation_stays_in_ball_and_range(trained, name, clip):
    model, inputs, targets = trained
    eps = 0.3 if name == "pgd-2" else 0.1
    adversarial = ATTACKS[name](model, inputs, targets, eps, clip=clip)
    delta = (adversarial - inputs).flatten(1)
    assert adversarial.shape == inputs.shape and not adversarial.requires_grad
    if name == "pgd-2":
        assert (delta.norm(dim=1) <= eps * (1 + 1e-6)).all()
        assert (delta.norm(dim=1) > 0.9 * eps).float().mean() > 0.5  # really uses the ball
    else:
        assert delta.abs().max() <= eps + 1e-6
    if clip is None:
        assert adversarial.min() < 0 or adversarial.max() > 1  # nothing clips silently
    else:
        assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert broken(model, adversarial, targets).sum() > broken(model, inputs, targets).sum()


@pytest.mark.parametrize("name", ATTACKS)
def test_zero_eps_returns_inputs(trained, name):
    model, inputs, targets = trained
    assert torch.equal(ATTACKS[name](model, inputs, targets, 0.0, clip=CLIP), inputs)


def test_robust_accuracy_curve(trained):
    model, inputs, targets = trained
    clean = accuracy(model, inputs, targets)
    for attack, kwargs in [("fgsm", {}), ("pgd", {"steps": 5, "generator": generator()})]:
        table = robust_accuracy(
            model, (inputs, targets), EPSILONS[::-1], attack, clip=CLIP, **kwargs
        )
        assert list(table.columns) == ["epsilon", "accuracy", "attack", "norm"]
        assert table.epsilon.tolist() == EPSILONS and (table.attack == attack).all()
        assert table.accuracy.iloc[0] == clean
        assert table.accuracy.is_monotonic_decreasing
        assert table.accuracy.iloc[-1] < 0.3 < 0.9 < table.accuracy.iloc[1]
    # every point is counted: batching and a DataLoader give the same numbers
    loader = DataLoader(TensorDataset(inputs, targets), batch_size=64)
    whole = robust_accuracy(model, (inputs, targets), EPSILONS, clip=CLIP, batch_size=1000)
    batched = robust_accuracy(model, loader, EPSILONS, clip=CLIP)
    assert whole.accuracy.tolist() == batched.accuracy.tolist()


def test_robust_accuracy_counts_clean_errors_and_earlier_breaks(trained):
    model, inputs, targets = trained
    wrong = targets.clone()
    wrong[:50] = (targets[:50] + 1) % 3  # 50 points now misclassified clean
    table = robust_accuracy(model, (inputs, wrong), [0.0, 0.05], clip=CLIP)
    per_eps = [
        1 - broken(model, fgsm(model, inputs, wrong, eps, clip=CLIP), wrong).double().mean().item()
        for eps in (0.0, 0.05)
    ]
    assert table.accuracy.iloc[0] == pytest.approx(per_eps[0])
    assert table.accuracy.iloc[1] <= min(per_eps) + 1e-12
    assert table.accuracy.iloc[0] <= 150 / 200


class Kinked(nn.Module):
    """Class 0 wins while 0.5 - x + 2 relu(x - 1) > 0: FGSM from x = 0 breaks the
    point at eps = 0.75 but overshoots back into class 0 at eps = 3."""

    def forward(self, x):
        margin = 0.5 - x[:, 0] + 2 * F.relu(x[:, 0] - 1)
        return torch.stack([margin, torch.zeros_like(margin)], dim=1)


def test_point_broken_at_smaller_eps_stays_broken():
    model, x, y = Kinked(), torch.zeros(1, 1), torch.zeros(1, dtype=torch.long)
    assert not broken(model, fgsm(model, x, y, 3.0), y).item()  # FGSM alone recovers
    assert broken(model, fgsm(model, x, y, 0.75), y).item()
    table = robust_accuracy(model, (x, y), [3.0, 0.0, 0.75])
    assert table.accuracy.tolist() == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_single_pgd_step_has_the_requested_size(trained, norm):
    model, inputs, targets = trained
    eps = 0.1 if norm == "inf" else 0.5
    x = pgd(
        model, inputs, targets, eps, norm=norm, steps=1, step_size=0.4 * eps, random_start=False
    )
    delta = (x - inputs).flatten(1)
    moved = delta.abs().sum(dim=1) > 0  # the clean input may be kept if it is already worse
    assert moved.float().mean() > 0.9
    size = delta.abs().amax(dim=1) if norm == "inf" else delta.norm(dim=1)
    assert torch.allclose(size[moved], torch.tensor(0.4 * eps), rtol=1e-5)


def test_more_steps_and_restarts_never_help_the_model(trained):
    model, inputs, targets = trained
    eps, size = 0.1, 0.02

    def broken_by(steps, restarts):
        x = pgd(model, inputs, targets, eps, steps=steps, step_size=size, restarts=restarts,
                clip=CLIP, generator=generator(3))
        return broken(model, x, targets)

    few, more, restarted = broken_by(2, 1), broken_by(6, 1), broken_by(6, 3)
    assert (few <= more).all() and (more <= restarted).all()  # per sample: a superset
    assert few.sum() < restarted.sum()


def test_fgsm_matches_foolbox_bit_for_bit(trained):
    fb = pytest.importorskip("foolbox")
    model, inputs, targets = trained
    fmodel = fb.PyTorchModel(model, bounds=CLIP)
    for eps in [0.01, 0.05, 0.1, 0.3]:
        _, theirs, _ = fb.attacks.FGSM()(fmodel, inputs, targets, epsilons=eps)
        assert torch.equal(fgsm(model, inputs, targets, eps, clip=CLIP), theirs)


def test_pgd_accuracy_close_to_foolbox(trained):
    fb = pytest.importorskip("foolbox")
    model, inputs, targets = trained
    fmodel = fb.PyTorchModel(model, bounds=CLIP)
    steps = 10
    for eps in [0.05, 0.1, 0.15]:
        size = 2.5 * eps / steps
        torch.manual_seed(0)
        attack = fb.attacks.LinfPGD(abs_stepsize=size, steps=steps, random_start=True)
        _, _, success = attack(fmodel, inputs, targets, epsilons=eps)
        theirs = 1 - success.double().mean().item()
        ours = robust_accuracy(
            model, (inputs, targets), [eps], "pgd", steps=steps, step_size=size, clip=CLIP,
            generator=generator(),
        ).accuracy.item()
        assert abs(ours - theirs) <= 0.02
        assert ours < accuracy(model, inputs, targets) - 0.05  # the comparison is not vacuous


def mixed_mode_model(training: bool) -> nn.Module:
    model = nn.Sequential(nn.Linear(30, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    model.train(training)
    model[1].train(not training)
    return model


def with_grads(model: nn.Module) -> dict:
    """Give half the parameters a .grad; return what every .grad should stay."""
    for i, parameter in enumerate(model.parameters()):
        parameter.grad = torch.randn_like(parameter) if i % 2 == 0 else None
    return {
        name: None if p.grad is None else p.grad.clone() for name, p in model.named_parameters()
    }


def assert_untouched(model: nn.Module, modes: list[bool], grads: dict, state: dict) -> None:
    assert [m.training for m in model.modules()] == modes
    for name, parameter in model.named_parameters():
        if grads[name] is None:
            assert parameter.grad is None
        else:
            assert torch.equal(parameter.grad, grads[name])
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


CALLS = {
    "fgsm": lambda m, x, y: fgsm(m, x, y, 0.1),
    "pgd": lambda m, x, y: pgd(m, x, y, 0.1, steps=3, restarts=2),
    "pgd-2": lambda m, x, y: pgd(m, x, y, 0.5, norm="2", steps=3),
    "robust_accuracy": lambda m, x, y: robust_accuracy(m, (x, y), [0.0, 0.1], "pgd", steps=2),
    "transform": lambda m, x, y: AdversarialTransform(0.5, 0.1)(m, x, y),
}


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("name", CALLS)
def test_modes_grads_and_buffers_untouched(trained, name, training):
    _, inputs, targets = trained
    torch.manual_seed(1)
    model = mixed_mode_model(training)
    modes = [m.training for m in model.modules()]
    grads = with_grads(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}  # BN statistics
    CALLS[name](model, inputs[:32], targets[:32])
    assert_untouched(model, modes, grads, state)


def test_mode_restored_after_exception(trained):
    _, inputs, targets = trained
    model = mixed_mode_model(True)
    modes = [m.training for m in model.modules()]

    def failing_loss(logits, targets, reduction="mean"):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fgsm(model, inputs, targets, 0.1, loss_fn=failing_loss)
    with pytest.raises(RuntimeError, match="boom"):
        pgd(model, inputs, targets, 0.1, loss_fn=failing_loss)
    assert [m.training for m in model.modules()] == modes


class Untouchable(nn.Module):
    """A model that fails if it is ever run: bad arguments must be caught first."""

    def forward(self, x):
        raise AssertionError("the model ran before the arguments were checked")


@pytest.mark.parametrize(
    "call, parameter",
    [
        (lambda m, x, y: fgsm(m, x, y, -0.1), "eps"),
        (lambda m, x, y: pgd(m, x, y, -0.1), "eps"),
        (lambda m, x, y: pgd(m, x, y, float("nan")), "eps"),
        (lambda m, x, y: pgd(m, x, y, 0.1, norm="1"), "norm"),
        (lambda m, x, y: pgd(m, x, y, 0.1, norm=2), "norm"),
        (lambda m, x, y: pgd(m, x, y, 0.1, steps=0), "steps"),
        (lambda m, x, y: pgd(m, x, y, 0.1, restarts=0), "restarts"),
        (lambda m, x, y: pgd(m, x, y, 0.1, step_size=0.0), "step_size"),
        (lambda m, x, y: robust_accuracy(m, (x, y), [0.1, -0.1]), "epsilon"),
        (lambda m, x, y: robust_accuracy(m, (x, y), [0.1], "cw"), "attack"),
        (lambda m, x, y: robust_accuracy(m, (x, y), [0.1], "pgd", steps=0), "steps"),
        (lambda m, x, y: AdversarialTransform(1.5, 0.1), "fraction"),
        (lambda m, x, y: AdversarialTransform(0.5, -0.1), "eps"),
        (lambda m, x, y: AdversarialTransform(0.5, 0.1, method="bim"), "method"),
        (lambda m, x, y: AdversarialTransform(0.5, 0.1, "pgd", norm="l2"), "norm"),
    ],
)
def test_bad_arguments_rejected_before_compute(call, parameter):
    inputs, targets = torch.zeros(4, 30), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match=parameter):
        call(Untouchable(), inputs, targets)


def test_bad_arguments_name_allowed_values():
    model, inputs, targets = Untouchable(), torch.zeros(4, 30), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"\('inf', '2'\)"):
        pgd(model, inputs, targets, 0.1, norm="1")
    with pytest.raises(ValueError, match=">= 0"):
        fgsm(model, inputs, targets, -1.0)
    with pytest.raises(TypeError):
        robust_accuracy(model, (inputs, targets), [0.1], "fgsm", steps=3)  # not an FGSM option


def test_adversarial_transform(trained):
    model, inputs, targets = trained
    x, y = inputs[:40], targets[:40]
    model.train()
    try:
        same_x, same_y = AdversarialTransform(0.0, 0.1, clip=CLIP)(model, x, y)
        assert torch.equal(same_x, x) and torch.equal(same_y, y)

        transform = AdversarialTransform(1.0, 0.1, clip=CLIP)
        all_x, all_y = transform(model, x, y)
        assert torch.equal(all_x, fgsm(model, x, y, 0.1, clip=CLIP)) and torch.equal(all_y, y)
        assert (all_x != x).any(dim=1).all()

        transform.fraction = 0.25  # the ABSA controller changes it between calls
        part_x, _ = transform(model, x, y)
        assert torch.equal(part_x[:10], all_x[:10]) and torch.equal(part_x[10:], x[10:])

        half = AdversarialTransform(0.5, 0.1, "pgd", clip=CLIP, steps=3, generator=generator())
        pgd_x, _ = half(model, x, y)
        assert (pgd_x[:20] - x[:20]).abs().max() <= 0.1 + 1e-6 and torch.equal(pgd_x[20:], x[20:])
        assert model.training
        with pytest.raises(ValueError, match="fraction"):
            transform.fraction = -0.5
        assert transform.fraction == 0.25
    finally:
        model.eval()
