"""Adaptive batch size: ABS / ABSA and the cheaper controllers they are compared with.

Every controller plugs into :func:`largebatch.train.fit` through its
``batch_size_schedule`` extension point (``next_batch_size(state)`` before every
epoch); none has its own loop. The learning rate follows the batch through the
run's ``lr_scaling`` rule (``base_batch_size`` = the starting batch: linear or
sqrt scaling), with ``increase_warmup_epochs`` of warmup after each increase.
Batches larger than ``micro_batch_size`` are built by gradient accumulation, so
BatchNorm sees micro-batch statistics (a ghost-batch effect, as in the reference
code, where micro-batches hold 128 samples).

* :class:`EigenvalueController` -- ABS and ABSA (Yao et al. 2018, arXiv 1810.01021),
  with the decision rule of the reference code (:class:`AdaptiveRule`, which describes
  it). After every epoch, while adapting, it estimates the top Hessian eigenvalue by
  plain power iteration (:func:`largebatch.hessian.top_eigenvalues`, ``method="power"``,
  ``which="LM"`` as the reference's loop, at most ``eigen_iterations`` products,
  relative tolerance ``eigen_tol``; eval mode, so BN uses running statistics) on a fresh
  random sample of ``eigen_samples`` training samples (the reference: one batch of 128
  from a shuffled loader, at most 10 products, tolerance 1e-2 -- the defaults of
  :class:`~largebatch.config.RunConfig`). With an
  :class:`~largebatch.attacks.AdversarialTransform` (ABSA) it sets the adversarial
  fraction of the rule, and 0 after epoch :func:`reference_adversarial_stop` (half of
  training) unless ``adversarial_stop_epoch`` says otherwise.
* :class:`BatchGrowthSchedule` -- Smith et al. 2017, "Don't decay the learning rate,
  increase the batch size": the batch is multiplied by ``growth_factor`` at the
  ``growth_milestones`` where a step schedule would divide the learning rate.
* :class:`NoiseScaleController` -- McCandlish et al. 2018: the simple noise scale
  ``B_simple = tr(Sigma) / |G|^2`` estimated from the micro-batch gradients the loop
  already computes (no extra backward pass); the batch doubles (once per epoch, up to
  the cap) while the last epoch's estimate is at least twice the batch.

Cost convention (``TrainState.gradient_evaluations``, samples x passes): a training
update costs its batch size; an FGSM example one more evaluation (PGD: steps x
restarts); a Hessian-vector product two evaluations on its samples, and building the
gradient graph of the eigenvalue sample one more (:func:`estimate_cost`). Accuracy
evaluations and the diagnostic eigenvalue (``eigen_diagnostic_samples``) are
measurements, not training cost, and are not counted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from largebatch import distributed, hessian
from largebatch.attacks import AdversarialTransform
from largebatch.callbacks import Callback, Metrics, TrainState
from largebatch.config import ConfigError, RunConfig

HVP_GRADIENT_EVALUATIONS = 2  # one Hessian-vector product costs about two gradients

__all__ = ["AdaptiveRule", "EigenvalueController", "BatchGrowthSchedule", "NoiseScaleEstimate",
           "NoiseScaleController", "build_controller", "estimate_cost", "reference_adversarial_stop",
           "HVP_GRADIENT_EVALUATIONS"]


def estimate_cost(samples: int, products: int) -> int:
    """Gradient evaluations of one eigenvalue estimate: the graph, then two per product."""
    return samples * (1 + HVP_GRADIENT_EVALUATIONS * products)


def reference_adversarial_stop(epochs: int) -> int:
    """The epoch after which the reference stops adversarial training: ``epochs // 2``.

    The reference sets the ratio to 0 at the end of every epoch ``e >= epochs // 2``
    (1-based), so epochs ``1 .. epochs // 2`` have adversarial samples: epochs 1-45 of 90,
    1-3 of 7. The test follows epoch 1, so a 1-epoch run is adversarial throughout (1).
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    return max(1, epochs // 2)


@dataclass
class AdaptiveRule:
    """The ABS/ABSA decision rule of the reference code, on a sequence of eigenvalue estimates.

    Read from amirgholami/HessianFlow at commit 644fc8a (``hessianflow/optimizer/absa.py``,
    function ``absa``, lines 103-205; ``hessianflow/eigen.py`` lines 9-45;
    ``hessianflow/optimizer/optm_utils.py`` lines 30-56; the settings of ``train.py`` and the
    README), described here and re-implemented, not copied. After every epoch, while the
    batch is below its cap, the reference estimates the top eigenvalue and then, in order:

    1. *Counter.* An epoch counter goes up by one. It starts at 0, so the estimate after
       epoch 1 -- which becomes the reference eigenvalue -- already counts 1.
    2. *Ratio rule.* From the second estimate on: if the estimate is at most
       ``reference / ratio`` (2 there), the batch doubles, this estimate becomes the new
       reference and the counter goes back to 0. Nothing else moves the reference.
    3. *Duration rule.* If the counter has reached ``duration`` (10 there), the batch
       doubles and the counter goes back to 0, but the reference stays the old estimate.
       So the first forced doubling comes after epoch ``duration`` (counting the reference
       epoch), later ones ``duration`` epochs after the last doubling, and a ratio
       doubling afterwards is judged against the kept, older reference.
    4. *Every doubling* multiplies the learning rate by the batch's growth (linear
       scaling, no warmup: ``lr_scaling="linear"``, ``increase_warmup_epochs=0`` here)
       and halves the adversarial fraction. At the cap (128 x 128 there) the batch stops
       there, the fraction becomes 0 and no more estimates are made.

    Outside this rule, in :class:`EigenvalueController` and the transform: the reference
    sets the fraction to 0 after epoch ``epochs // 2`` (:func:`reference_adversarial_stop`);
    each micro-batch (128 samples there) has its first ``int(fraction x size)`` samples
    replaced by one-step FGSM examples (at least one while ``fraction > 1 / size``, none
    otherwise), made in eval mode with radius eps (0.005 on [0, 1] CIFAR-10 pixels) and
    clipped to the attacked samples' own minimum and maximum (see
    :class:`~largebatch.attacks.AdversarialTransform`, ``count="floor"``, ``clip="own"``).
    The estimate (``hessianflow/eigen.py``, ``get_eigen``): eval mode, one gradient graph
    on a 128-sample batch of a shuffled training loader, a Gaussian start vector, at most
    10 Hessian-vector products, stopping when the Rayleigh quotient changes by less than
    1e-2 relative. The learning rate is divided by 5 after the milestone epochs.

    Kept differences of the book's loop: each epoch is a fresh permutation cut into whole
    batches (the reference's accumulation counter runs on across epoch boundaries and a
    doubling can land inside an accumulation), and the eigenvalue sample is drawn from
    the training tensors rather than from a second loader.
    """

    batch_size: int
    max_batch_size: int
    ratio: float = 2.0
    duration: int = 10
    fraction: float = 0.0  # adversarial fraction now (ABSA; 0 for ABS)
    reference: float | None = None  # the eigenvalue the ratio rule compares with
    counter: int = 0  # epochs counted since the last doubling (the reference epoch counts)

    @property
    def adapting(self) -> bool:
        return self.batch_size < self.max_batch_size

    def update(self, eigenvalue: float) -> int:
        """Take the estimate made after an epoch; returns the next epoch's batch size."""
        if not self.adapting:
            raise ValueError(f"the rule stopped adapting at the maximum batch {self.max_batch_size}; "
                             "no more estimates are taken")
        self.counter += 1
        if self.reference is None:
            self.reference = eigenvalue
        elif eigenvalue <= self.reference / self.ratio:
            self.reference = eigenvalue
            self._double()
        if self.counter >= self.duration:
            self._double()
        return self.batch_size

    def _double(self) -> None:
        self.batch_size = min(2 * self.batch_size, self.max_batch_size)
        self.fraction = self.fraction / 2 if self.adapting else 0.0
        self.counter = 0


class EigenvalueController(Callback):
    """ABS (no transform) or ABSA (with an adversarial transform whose fraction it sets).

    Also a callback: each history row gets the estimate that chose the epoch's batch
    (``eigenvalue``, ``eigen_samples``, optional ``eigenvalue_diagnostic``) and the
    adversarial fraction used (``adversarial_fraction``).
    """

    def __init__(self, train_data: TensorDataset, rule: AdaptiveRule, *, eigen_samples: int = 128,
                 eigen_iterations: int = 10, eigen_tol: float = 1e-2, seed: int = 0,
                 transform: AdversarialTransform | None = None,
                 adversarial_stop_epoch: float = math.inf, diagnostic_samples: int = 0) -> None:
        if not 1 <= eigen_samples <= len(train_data):
            raise ValueError(f"eigen_samples must be in [1, {len(train_data)}], got {eigen_samples}")
        self.train_data, self.rule, self.transform = train_data, rule, transform
        self.eigen_samples, self.eigen_iterations, self.eigen_tol = eigen_samples, eigen_iterations, eigen_tol
        self.seed, self.adversarial_stop_epoch = seed, adversarial_stop_epoch
        self.diagnostic_samples = diagnostic_samples
        self.last: dict[str, float] = {}
        self._pending_evaluations = 0

    def _sample(self, size: int, epoch: int, stream: int) -> tuple[Tensor, Tensor]:
        """A fresh random sample, the same for the same (seed, epoch, stream) -- so resumes match."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 2 + stream)
        inputs, targets = self.train_data.tensors
        if size == len(targets):
            return inputs, targets
        chosen = torch.randperm(len(targets), generator=generator)[:size]
        return inputs[chosen], targets[chosen]

    def estimate(self, model: nn.Module, epoch: int, samples: int, stream: int = 0) -> tuple[float, int]:
        """Top Hessian eigenvalue on ``samples`` fresh samples, and the products it took.

        Under torchrun each worker takes its shard of the sample and the products are
        all-reduced, so every rank computes the same estimate from all ranks' data.
        """
        device = next(model.parameters()).device
        inputs, targets = self._sample(samples, epoch, stream)
        start, stop = distributed.shard_range(len(targets))
        shard = (inputs[start:stop].to(device), targets[start:stop].to(device))
        result = hessian.top_eigenvalues(model, shard, k=1, method="power", which="LM", tol=self.eigen_tol,
                                         max_iter=self.eigen_iterations, seed=self.seed + epoch,
                                         sharded=distributed.is_distributed())
        return result.eigenvalues[0], result.num_matvecs

    def next_batch_size(self, state: TrainState) -> int:
        self.last = {}
        if state.epoch > 0 and self.rule.adapting:
            # rank 0's estimate decides on every rank (batch, fraction and rule state stay in step)
            value, products = distributed.broadcast_object(
                self.estimate(state.model, state.epoch, self.eigen_samples))
            self._pending_evaluations += estimate_cost(self.eigen_samples, products)
            self.last = {"eigenvalue": value, "eigen_samples": self.eigen_samples}
            if self.diagnostic_samples:
                self.last["eigenvalue_diagnostic"] = self.estimate(state.model, state.epoch,
                                                                   self.diagnostic_samples, stream=1)[0]
            self.rule.update(value)
        if self.transform is not None:
            stopped = state.epoch >= self.adversarial_stop_epoch
            self.transform.fraction = 0.0 if stopped else self.rule.fraction
        return self.rule.batch_size

    def take_gradient_evaluations(self) -> int:
        spent, self._pending_evaluations = self._pending_evaluations, 0
        return spent

    def on_epoch_end(self, state: TrainState) -> Metrics:
        fraction = self.transform.fraction if self.transform is not None else 0.0
        return {**self.last, "adversarial_fraction": fraction}

    def state_dict(self) -> dict[str, Any]:
        return {"rule": asdict(self.rule), "last": dict(self.last)}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.rule = AdaptiveRule(**saved["rule"])
        self.last = dict(saved["last"])


@dataclass
class BatchGrowthSchedule:
    """Smith et al. 2017: the batch is ``start * factor**k`` after ``k`` milestones, capped."""

    start: int
    max_batch_size: int
    milestones: tuple[float, ...]
    factor: int = 2

    def next_batch_size(self, state: TrainState) -> int:
        passed = sum(state.epoch >= m for m in self.milestones)
        return min(self.start * self.factor ** passed, self.max_batch_size)


class NoiseScaleEstimate:
    """Running estimate of ``B_simple = tr(Sigma) / |G|^2`` from two batch sizes.

    With gradients ``g`` of ``b``-sample micro-batches and ``G_B`` of the whole
    ``B``-sample batch, ``E|g|^2 = |G|^2 + tr(Sigma)/b`` and ``E|G_B|^2 = |G|^2 +
    tr(Sigma)/B`` (McCandlish et al. 2018, appendix A), which gives unbiased
    estimates of ``|G|^2`` and ``tr(Sigma)``. Both are averaged over updates before
    the ratio is taken (the ratio of averages is far less noisy than the average of ratios).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.small_sq, self.big_sq, self.count = 0.0, 0.0, 0
        self.small_size = self.big_size = 0

    def add(self, micro_sq_norms: list[float], micro_size: int, batch_sq_norm: float, batch_size: int) -> None:
        """One update: squared norms of its micro-batch gradients and of the batch gradient."""
        if not micro_size < batch_size:
            raise ValueError(f"micro_size must be smaller than batch_size, got {micro_size} >= {batch_size}")
        self.small_sq += sum(micro_sq_norms) / len(micro_sq_norms)
        self.big_sq += batch_sq_norm
        self.count += 1
        self.small_size, self.big_size = micro_size, batch_size

    @property
    def gradient_sq_norm(self) -> float:
        """Unbiased estimate of ``|G|^2``."""
        b, big = self.small_size, self.big_size
        return (big * self.big_sq - b * self.small_sq) / (self.count * (big - b))

    @property
    def trace_covariance(self) -> float:
        """Unbiased estimate of ``tr(Sigma)`` (covariance of one sample's gradient)."""
        b, big = self.small_size, self.big_size
        return (self.small_sq - self.big_sq) / (self.count * (1 / b - 1 / big))

    @property
    def noise_scale(self) -> float:
        """``tr(Sigma) / |G|^2``; infinite when the signal estimate is not positive, NaN when empty."""
        if self.count == 0:
            return math.nan
        signal = self.gradient_sq_norm
        return self.trace_covariance / signal if signal > 0 else math.inf

    def state_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        vars(self).update(saved)


class NoiseScaleController(Callback):
    """Grow the batch toward the gradient noise scale measured during the last epoch.

    ``observe_micro_batch`` (called by the loop after every micro-batch's backward
    pass) reads the accumulated ``.grad``: its increments are the micro-batch
    gradients (weighted by their share of the batch), its final value the batch
    gradient. Before each epoch the batch doubles if the last epoch's estimate is at
    least twice the batch, up to ``max_batch_size``. History rows get ``noise_scale``.
    One process only: under torchrun the last micro-batch's all-reduce hides its own
    gradient, so the estimator would see a mixture of local and global gradients.
    """

    def __init__(self, start: int, max_batch_size: int) -> None:
        if distributed.is_distributed():
            raise ConfigError("batch_size_controller='noise_scale' runs in one process only: under "
                              "torchrun the all-reduce hides the micro-batch gradients it measures")
        self.batch_size, self.max_batch_size = start, max_batch_size
        self.estimate = NoiseScaleEstimate()
        self._previous: Tensor | None = None
        self._micro_sq: list[float] = []
        self._seen = 0

    def observe_micro_batch(self, model: nn.Module, size: int, total: int) -> None:
        grad = torch.cat([p.grad.reshape(-1) if p.grad is not None else torch.zeros_like(p).reshape(-1)
                          for p in model.parameters() if p.requires_grad]).to(torch.float64)
        increment = grad if self._previous is None else grad - self._previous
        self._micro_sq.append(float((increment * (total / size)).square().sum()))
        self._previous, self._seen = grad, self._seen + size
        if self._seen == total:
            self.estimate.add(self._micro_sq, size, float(grad.square().sum()), total)
            self._previous, self._micro_sq, self._seen = None, [], 0

    def next_batch_size(self, state: TrainState) -> int:
        if state.epoch > 0 and self.estimate.noise_scale >= 2 * self.batch_size:
            self.batch_size = min(2 * self.batch_size, self.max_batch_size)
        self.estimate.reset()
        return self.batch_size

    def on_epoch_end(self, state: TrainState) -> Metrics:
        return {"noise_scale": self.estimate.noise_scale}

    def state_dict(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "estimate": self.estimate.state_dict()}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.batch_size = saved["batch_size"]
        self.estimate.load_state_dict(saved["estimate"])


def build_controller(config: RunConfig, train_data: TensorDataset,
                     transform: AdversarialTransform | None = None) -> Any:
    """The controller ``config.batch_size_controller`` names, or None for ``"none"``."""
    name = config.batch_size_controller
    if name == "none":
        return None
    assert config.max_batch_size is not None  # checked by RunConfig
    if name == "growth":
        return BatchGrowthSchedule(config.batch_size, config.max_batch_size, config.growth_milestones,
                                   config.growth_factor)
    if name == "noise_scale":
        return NoiseScaleController(config.batch_size, config.max_batch_size)
    stop = config.adversarial_stop_epoch
    if stop is None:
        stop = reference_adversarial_stop(math.ceil(config.total_epochs - 1e-9))
    rule = AdaptiveRule(config.batch_size, config.max_batch_size, config.adaptive_ratio,
                        config.adaptive_duration, fraction=config.adversarial_fraction)
    return EigenvalueController(
        train_data, rule, eigen_samples=config.eigen_samples, eigen_iterations=config.eigen_iterations,
        eigen_tol=config.eigen_tol, seed=config.seed, transform=transform if name == "absa" else None,
        adversarial_stop_epoch=stop,
        diagnostic_samples=config.eigen_diagnostic_samples)
