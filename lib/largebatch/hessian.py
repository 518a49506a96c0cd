"""Hessian of the mean training loss: products, top eigenpairs, trace, spectral density.

The instrument behind the book's sharpness measurements. Everything is matrix-free
except :func:`exact_hessian`, which builds the dense matrix of a small model to check
the estimators against.

* :class:`HessianOperator` -- Hessian-vector products (Pearlmutter's double back-prop)
  of the mean loss over one batch or over a whole data set, in eval mode by default
  and optionally in float64 on a private copy of the model.
* :class:`MatrixOperator` -- the same interface over a dense symmetric matrix.
* :func:`top_eigenvalues` -- thick-restart Lanczos with full reorthogonalization, or
  deflated power iteration (as in PyHessian).
* :func:`trace` -- Hutchinson and Hutch++ (Meyer et al. 2021) with Rademacher probes.
* :func:`spectral_density` -- stochastic Lanczos quadrature (Ghorbani et al. 2019).
* :func:`exact_hessian`, :func:`exact_eigenvalues` -- dense answers via ``torch.func``.

Every estimator accepts any operator with ``dim``, ``dtype``, ``device`` and ``matvec``,
or a model plus data (then a :class:`HessianOperator` is built from the keyword
arguments). Randomness comes from a CPU generator seeded with ``seed``, so results are
repeatable.
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Literal, Protocol, Sequence, Union

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn import functional as F

from largebatch import distributed
from largebatch.evaluation import check_labels

LossFn = Callable[[Tensor, Tensor], Tensor]
#: Progress hook of :func:`top_eigenvalues`: (products so far, current estimates).
EigenCallback = Callable[[int, list[float]], None]
Batch = tuple[Tensor, Tensor]
#: Which parameters: all trainable ones (None), a filter ``(name, param) -> bool``, or names.
ParamSelection = Union[None, Callable[[str, nn.Parameter], bool], str, Sequence[str]]
Which = Literal["LA", "LM", "SA"]
HvpMethod = Literal["backward", "jvp"]

__all__ = [
    "DensityResult",
    "EigenCallback",
    "EigenResult",
    "HessianOperator",
    "LinearOperator",
    "MatrixOperator",
    "TraceResult",
    "device_batches",
    "exact_eigenvalues",
    "exact_hessian",
    "spectral_density",
    "top_eigenvalues",
    "trace",
]


class LinearOperator(Protocol):
    """What the estimators need: a symmetric linear map on vectors of length ``dim``."""

    dim: int
    dtype: torch.dtype
    device: torch.device

    def matvec(self, v: Tensor) -> Tensor: ...


# --------------------------------------------------------------------------- helpers


def _is_batch(data: Any) -> bool:
    return (isinstance(data, (tuple, list)) and len(data) == 2
            and all(isinstance(t, Tensor) for t in data))


def _batch_source(data: Any) -> tuple[Iterable[Any], bool]:
    """Return (re-iterable batches, is_single_batch); fail early on empty data."""
    if _is_batch(data):
        if data[0].ndim == 0 or data[0].shape[0] == 0:
            raise ValueError("data is empty: the batch (inputs, targets) holds no samples")
        return [tuple(data)], True
    if isinstance(data, Tensor) or not isinstance(data, Iterable):
        raise TypeError("data must be a tuple (inputs, targets) of tensors or an iterable of "
                        f"such batches (e.g. a DataLoader), got {type(data).__name__}")
    if iter(data) is data:  # one-shot iterator (generator): keep it so products can repeat
        data = list(data)
    if hasattr(data, "__len__") and len(data) == 0:
        raise ValueError("data is empty: the iterable yields no batches")
    return data, False


def _select_parameters(model: nn.Module, params: ParamSelection) -> list[tuple[str, nn.Parameter]]:
    """Trainable parameters chosen by ``params``, in the model's own order."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if params is None:
        chosen = trainable
    elif callable(params):
        chosen = [(n, p) for n, p in trainable if params(n, p)]
    else:
        names = [params] if isinstance(params, str) else list(params)
        known = dict(model.named_parameters())
        trainable_names = {n for n, _ in trainable}
        for name in names:
            if name not in known:
                raise ValueError(f"unknown parameter name {name!r}; the model has {list(known)}")
            if name not in trainable_names:
                raise ValueError(f"parameter {name!r} is frozen (requires_grad=False)")
        chosen = [(n, p) for n, p in trainable if n in set(names)]
    if not chosen:
        raise ValueError("no trainable parameters selected: the model has no parameter with "
                         "requires_grad=True that passes the `params` selection")
    return chosen


def _working_model(model: nn.Module, dtype: torch.dtype | None) -> nn.Module:
    """The model itself, or a deep copy converted to ``dtype`` (the user's model is untouched)."""
    if dtype is None:
        return model
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating point type, got {dtype}")
    tensors = list(model.parameters()) + list(model.buffers())
    if all(t.dtype == dtype for t in tensors if t.is_floating_point()):
        return model
    return copy.deepcopy(model).to(dtype)


def _prepare(batch: Any, device: torch.device, dtype: torch.dtype | None) -> tuple[Tensor, Tensor, int]:
    """Move a batch to ``device`` (casting floating tensors to ``dtype``); return its size."""
    if not _is_batch(batch):
        raise TypeError(f"each batch must be a pair (inputs, targets) of tensors, got {type(batch).__name__}")
    out = [t.to(device=device, dtype=dtype if dtype is not None and t.is_floating_point() else None)
           for t in batch]
    return out[0], out[1], int(out[0].shape[0])


@contextmanager
def _training_flags(model: nn.Module, eval_mode: bool) -> Iterator[None]:
    """Put ``model`` in eval or train mode and restore every submodule's flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.train(not eval_mode)
    try:
        yield
    finally:
        for module, flag in flags:
            module.training = flag


def _forward(model: nn.Module, inputs: Tensor, eval_mode: bool) -> Tensor:
    if eval_mode:
        return model(inputs)
    # Train mode: run on cloned buffers so BatchNorm running statistics are not updated.
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    return functional_call(model, buffers, (inputs,))


def _scalar_loss(loss: Tensor) -> Tensor:
    if loss.ndim != 0:
        raise ValueError(f"loss_fn must return a scalar (mean-reduced) loss, got shape {tuple(loss.shape)}")
    return loss


def _rademacher(shape: Sequence[int], gen: torch.Generator, dtype: torch.dtype, device: torch.device) -> Tensor:
    signs = torch.randint(0, 2, tuple(shape), generator=gen).to(dtype) * 2 - 1
    return signs.to(device)


def _gaussian(n: int, gen: torch.Generator, dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.randn(n, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed)


def device_batches(data: Any, batch_size: int = 1024, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> list[Batch]:
    """``(inputs, targets)`` cut once into batches of ``batch_size`` held on ``device``.

    ``data`` is a pair of tensors or a ``TensorDataset``; floating tensors are cast to
    ``dtype`` if given. The batches are views of one copy of the data, so a full-data
    :class:`HessianOperator` over them neither collates nor copies per product (a
    ``DataLoader`` over a ``TensorDataset`` gives the same batches but stacks every
    sample again at every product).
    """
    tensors = data.tensors if isinstance(data, torch.utils.data.TensorDataset) else data
    if not _is_batch(tensors):
        raise TypeError(f"data must be a pair (inputs, targets) of tensors or a TensorDataset, "
                        f"got {type(data).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    moved = [t.to(device=device, dtype=dtype if dtype is not None and t.is_floating_point() else None)
             for t in tensors]
    return list(zip(moved[0].split(batch_size), moved[1].split(batch_size)))


# --------------------------------------------------------------------------- operators


class HessianOperator:
    """Hessian of the mean loss w.r.t. (selected, trainable) model parameters, as products.

    ``data`` is one batch ``(inputs, targets)`` or an iterable of batches (a DataLoader,
    a list, a generator -- generators are kept in a list so products can be repeated).
    Over several batches the product is ``sum_b n_b H_b v / sum_b n_b``: exactly the
    Hessian of the mean loss over all samples for any batch sizes, provided ``loss_fn``
    averages over the batch (the default ``cross_entropy`` does).

    * Parameters: the trainable ones (``requires_grad=True``) in ``model.parameters()``
      order, optionally narrowed by ``params`` (a filter ``(name, param) -> bool`` or
      parameter names). Parameters the loss does not use get zero rows/columns.
    * ``eval_mode=True`` (default): products run in eval mode, so BatchNorm uses its
      running statistics and dropout is off; each submodule's mode is restored after.
      With ``eval_mode=False`` they run in train mode, whatever mode the model is in:
      BatchNorm uses batch statistics (its running statistics are not updated) and the
      Hessian is the average of per-batch Hessians.
    * ``dtype``: e.g. ``torch.float64`` evaluates a converted deep copy of the model
      (inputs and floating targets cast too); the user's model is not changed.
    * ``cache_graph`` (default: True for a single batch, False otherwise): keep the
      gradient graph of each batch and reuse it, so a product costs one backward pass
      through it; otherwise each product recomputes the forward pass and the gradient.
    * ``hvp``: ``"backward"`` (default) differentiates the gradient graph a second time
      (reverse over reverse); ``"jvp"`` pushes the vector forward through the gradient
      computation (``torch.func.jvp`` of ``torch.func.grad``, forward over reverse), which
      recomputes the gradient at every product but with no second backward pass. Eval
      mode only: torch's function transforms give wrong second derivatives through
      train-mode ``batch_norm`` (torch 2.13). ``cache_graph`` does not apply.
    * ``vectors_per_pass`` (``hvp="jvp"`` only, default 1): :meth:`matmat` pushes this
      many vectors through one pass with ``torch.func.vmap`` (memory grows with it).
    * ``sharded``: each process holds its own part of the data; under torchrun the
      size-weighted partial products are all-reduced, so every rank gets the product
      of the Hessian over all ranks' samples (see :mod:`largebatch.distributed`).

    The data must be deterministic (no augmentation; shuffling only reorders the sum).
    Treat the operator as a snapshot -- the ``dtype`` copy is taken at construction and
    cached graphs at the first product -- and build a new one after the weights change.
    """

    def __init__(self, model: nn.Module, data: Any, loss_fn: LossFn = F.cross_entropy,
                 params: ParamSelection = None, dtype: torch.dtype | None = None,
                 eval_mode: bool = True, cache_graph: bool | None = None,
                 hvp: HvpMethod = "backward", vectors_per_pass: int = 1, sharded: bool = False) -> None:
        if hvp not in ("backward", "jvp"):
            raise ValueError(f"hvp must be 'backward' or 'jvp', got {hvp!r}")
        if hvp == "jvp" and not eval_mode:
            raise ValueError("hvp='jvp' needs eval_mode=True: torch.func transforms give wrong "
                             "second derivatives through train-mode batch norm; use hvp='backward'")
        if isinstance(vectors_per_pass, bool) or not isinstance(vectors_per_pass, int) or vectors_per_pass < 1:
            raise ValueError(f"vectors_per_pass must be an integer >= 1, got {vectors_per_pass!r}")
        if vectors_per_pass > 1 and hvp != "jvp":
            raise ValueError("vectors_per_pass > 1 needs hvp='jvp'")
        self._batches, single = _batch_source(data)
        self._model = _working_model(model, dtype)
        chosen = _select_parameters(self._model, params)
        self.param_names: list[str] = [n for n, _ in chosen]
        self._params: list[nn.Parameter] = [p for _, p in chosen]
        self._sizes = [p.numel() for p in self._params]
        self.dim: int = sum(self._sizes)
        self.dtype: torch.dtype = self._params[0].dtype
        self.device: torch.device = self._params[0].device
        self.num_matvecs: int = 0
        self._loss_fn = loss_fn
        self._cast = dtype
        self._eval_mode = eval_mode
        self._cache_graph = (single if cache_graph is None else cache_graph) and hvp == "backward"
        self._graphs: list[tuple[list[Tensor | None], int]] | None = None
        self._labels_checked = False
        self._hvp_method = hvp
        self._vectors_per_pass = vectors_per_pass
        self._sharded = sharded

    def _gradient_graph(self, batch: Any) -> tuple[list[Tensor | None], int]:
        inputs, targets, n = _prepare(batch, self.device, self._cast)
        with _training_flags(self._model, self._eval_mode):
            loss = _scalar_loss(self._loss_fn(_forward(self._model, inputs, self._eval_mode), targets))
        grads = torch.autograd.grad(loss, self._params, create_graph=True, allow_unused=True)
        return list(grads), n

    def _hvp(self, grads: list[Tensor | None], vs: list[Tensor], retain: bool) -> Tensor:
        """One batch's flat ``H_b v``: a backward pass through its gradient graph."""
        live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
        hv: Sequence[Tensor | None] = [None] * len(self._params)
        if live:
            hv = torch.autograd.grad([grads[i] for i in live], self._params,
                                     grad_outputs=[vs[i] for i in live],
                                     retain_graph=retain, allow_unused=True)
        return torch.cat([h.reshape(-1) if h is not None else p.new_zeros(p.numel())
                          for h, p in zip(hv, self._params)])

    def _jvp_products(self, batch: Any, block: Tensor) -> tuple[Tensor, int]:
        """One batch's ``H_b V`` for the rows of ``block`` (s, dim), forward over reverse."""
        inputs, targets, n = _prepare(batch, self.device, self._cast)
        primals = tuple(p.detach() for p in self._params)

        def loss_of(*params: Tensor) -> Tensor:
            logits = functional_call(self._model, dict(zip(self.param_names, params)), (inputs,))
            return _scalar_loss(self._loss_fn(logits, targets))

        gradient = torch.func.grad(loss_of, argnums=tuple(range(len(primals))))

        def product(*tangents: Tensor) -> tuple[Tensor, ...]:
            return torch.func.jvp(gradient, primals, tangents)[1]

        rows = block.shape[0]
        tangents = [c.reshape(rows, *p.shape) for c, p in zip(torch.split(block, self._sizes, dim=1),
                                                              self._params)]
        with _training_flags(self._model, eval_mode=True):
            if rows == 1:
                hv = [h.unsqueeze(0) for h in product(*(t[0] for t in tangents))]
            else:
                hv = torch.func.vmap(product)(*tangents)
        return torch.cat([h.reshape(rows, -1) for h in hv], dim=1), n

    def _check_labels(self) -> None:
        """Reject integer labels outside the model's classes (once, before the first product)."""
        num_classes = None
        for batch in self._batches:
            inputs, targets, n = _prepare(batch, self.device, self._cast)
            if n == 0 or targets.is_floating_point():
                continue
            if num_classes is None:
                with torch.no_grad(), _training_flags(self._model, eval_mode=True):
                    logits = self._model(inputs[:1])
                if logits.ndim != 2:
                    break
                num_classes = logits.shape[-1]
            check_labels(targets, num_classes)
        self._labels_checked = True

    def _products(self, block: Tensor) -> Iterator[tuple[Tensor, int]]:
        """``(H_b V, n_b)`` for every batch ``b``, for the rows of ``block`` (s, dim)."""
        if not self._labels_checked:
            self._check_labels()
        if self._hvp_method == "jvp":
            yield from (self._jvp_products(b, block) for b in self._batches)
            return
        vs = [[c.view_as(p) for c, p in zip(torch.split(row, self._sizes), self._params)] for row in block]
        if self._cache_graph:
            if self._graphs is None:
                self._graphs = [self._gradient_graph(b) for b in self._batches]
            graphs: Iterable[tuple[list[Tensor | None], int]] = self._graphs
        else:
            graphs = (self._gradient_graph(b) for b in self._batches)
        for grads, n in graphs:
            if n == 0:
                continue
            hv = [self._hvp(grads, v, retain=self._cache_graph or i < len(vs) - 1) for i, v in enumerate(vs)]
            yield torch.stack(hv), n

    def _apply(self, block: Tensor) -> Tensor:
        """``H V`` for the rows of ``block`` (s, dim): size-weighted mean over the batches
        (and over the ranks when sharded)."""
        mean: Tensor | None = None
        count = 0
        with torch.enable_grad():
            for hv, n in self._products(block):
                count += n
                mean = hv if mean is None else mean.add_(hv - mean, alpha=n / count)  # weighted running mean
        if mean is None and not (self._sharded and distributed.is_distributed()):
            raise ValueError("data is empty: no samples were found in the batches")
        if self._sharded:  # a rank without samples contributes zero weight
            mean = distributed.weighted_mean(torch.zeros_like(block) if mean is None else mean, count)
        self.num_matvecs += block.shape[0]
        if not bool(torch.isfinite(mean).all()):
            raise FloatingPointError(
                "non-finite Hessian-vector product (NaN or inf): the loss, its gradient or its "
                "curvature is not finite at these weights and data; check the inputs and weights "
                "for NaN/inf values")
        return mean

    def matvec(self, v: Tensor) -> Tensor:
        """Return ``H v`` for a 1-D tensor ``v`` of length :attr:`dim`."""
        if v.shape != (self.dim,):
            raise ValueError(f"v must have shape ({self.dim},), got {tuple(v.shape)}")
        return self._apply(v.to(dtype=self.dtype, device=self.device).unsqueeze(0))[0]

    def matmat(self, block: Tensor) -> Tensor:
        """Return ``H V`` for a ``(dim, s)`` block of column vectors, ``vectors_per_pass``
        columns per pass (``s`` products)."""
        if block.ndim != 2 or block.shape[0] != self.dim:
            raise ValueError(f"block must have shape ({self.dim}, s), got {tuple(block.shape)}")
        rows = block.T.to(dtype=self.dtype, device=self.device)
        return torch.cat([self._apply(part) for part in rows.split(self._vectors_per_pass)]).T


class MatrixOperator:
    """A dense symmetric matrix with the operator interface (for tests and known spectra)."""

    def __init__(self, matrix: Tensor) -> None:
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"matrix must be square, got shape {tuple(matrix.shape)}")
        scale = matrix.abs().max().clamp_min(1e-300)
        if not bool(torch.isfinite(matrix).all()):
            raise ValueError("matrix must be finite, got NaN or inf entries")
        if not torch.allclose(matrix, matrix.T, rtol=0, atol=1e-6 * float(scale)):
            raise ValueError("matrix must be symmetric")
        self.matrix = matrix
        self.dim: int = matrix.shape[0]
        self.dtype: torch.dtype = matrix.dtype
        self.device: torch.device = matrix.device
        self.num_matvecs: int = 0

    def matvec(self, v: Tensor) -> Tensor:
        """Return ``A v``."""
        self.num_matvecs += 1
        return self.matrix @ v.to(dtype=self.dtype, device=self.device)


def _operator(target: Any, data: Any, kwargs: dict[str, Any]) -> LinearOperator:
    """An operator as given, or a :class:`HessianOperator` built from a model and data."""
    if isinstance(target, nn.Module):
        if data is None:
            raise ValueError("data is required when a model is given")
        return HessianOperator(target, data, **kwargs)
    if all(hasattr(target, a) for a in ("dim", "dtype", "device", "matvec")):
        if data is not None or kwargs:
            raise ValueError("data and operator options apply only when a model is given")
        return target
    raise TypeError(f"expected an nn.Module or an operator with dim/dtype/device/matvec, "
                    f"got {type(target).__name__}")


def _columns_matvec(op: LinearOperator, block: Tensor) -> Tensor:
    """Apply ``op`` to each column of a (dim, s) block (in blocks when it has ``matmat``)."""
    if hasattr(op, "matmat"):
        return op.matmat(block)
    return torch.stack([op.matvec(block[:, j]) for j in range(block.shape[1])], dim=1)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, eq=False)
class EigenResult:
    """Top eigenpairs: values in the requested order, vectors as rows of a (k, dim) tensor."""

    eigenvalues: list[float]
    eigenvectors: Tensor
    residuals: list[float]  # ||H v - lambda v||, unit v (Lanczos: from its recurrence, no extra products)
    num_matvecs: int
    converged: bool


@dataclass(frozen=True)
class TraceResult:
    """A trace estimate with the standard error of its stochastic part."""

    estimate: float
    std_error: float
    num_matvecs: int


@dataclass(frozen=True, eq=False)
class DensityResult:
    """Stochastic Lanczos quadrature: nodes/weights per run and the broadened density."""

    grid: Tensor
    density: Tensor
    nodes: Tensor  # (runs, steps) Ritz values
    weights: Tensor  # (runs, steps) squared first components; each row sums to 1
    sigma: float
    num_matvecs: int

    def moment(self, p: int) -> float:
        """``sum_i w_i theta_i**p`` averaged over runs: an estimate of ``trace(H**p) / dim``."""
        return float((self.weights * self.nodes ** p).sum(dim=1).mean())


# --------------------------------------------------------------------------- Lanczos


class _Krylov:
    """An orthonormal Krylov basis V (rows) with projected matrix H = V A V^T.

    Full reorthogonalization (classical Gram-Schmidt, twice) keeps V orthonormal, so
    ``A V_m^T = V_m^T H_m + beta * V[m]^T e_m^T`` after each :meth:`step`; the residual
    of a Ritz pair ``(theta, V_m^T s)`` is ``beta * |s[-1]|``. On breakdown (an invariant
    subspace) the basis continues with a random orthogonal vector and ``beta = 0``.
    """

    def __init__(self, op: LinearOperator, capacity: int, v0: Tensor, gen: torch.Generator) -> None:
        self.op, self.gen = op, gen
        self.V = torch.zeros(capacity + 1, op.dim, dtype=op.dtype, device=op.device)
        self.H = torch.zeros(capacity, capacity, dtype=torch.float64)
        self.V[0] = v0 / v0.norm()
        self.size = 0
        self.beta = 0.0
        self.anorm = 0.0
        self.matvecs = 0
        self.eps = torch.finfo(op.dtype).eps

    def _orthogonalize(self, w: Tensor, m: int) -> Tensor:
        basis = self.V[:m]
        coeffs = basis @ w
        w -= coeffs @ basis
        again = basis @ w
        w -= again @ basis
        return (coeffs + again).to(dtype=torch.float64, device="cpu")

    def step(self) -> None:
        j = self.size
        w = self.op.matvec(self.V[j]).to(dtype=self.op.dtype, device=self.op.device).clone()
        self.matvecs += 1
        self.anorm = max(self.anorm, float(w.norm()))
        h = self._orthogonalize(w, j + 1)
        self.H[: j + 1, j] = h
        self.H[j, : j + 1] = h
        self.size = j + 1
        beta = float(w.norm())
        if beta > 100 * self.eps * self.anorm:
            self.V[self.size] = w / beta
        else:
            beta = 0.0
            if self.size < self.op.dim:
                fresh = _gaussian(self.op.dim, self.gen, self.op.dtype, self.op.device)
                self._orthogonalize(fresh, self.size)
                self.V[self.size] = fresh / fresh.norm()
        self.beta = beta

    def ritz(self) -> tuple[Tensor, Tensor]:
        """Eigenvalues (ascending) and eigenvectors of the current projected matrix."""
        m = self.size
        return torch.linalg.eigh(self.H[:m, :m])

    def restart(self, coeffs: Tensor, values: Tensor) -> None:
        """Keep the Ritz vectors ``V^T coeffs`` (thick restart) plus the residual direction."""
        p, m = coeffs.shape[1], self.size
        kept = coeffs.T.to(dtype=self.op.dtype, device=self.op.device) @ self.V[:m]
        self.V[p] = self.V[m].clone()
        self.V[:p] = kept
        self.H.zero_()
        self.H[:p, :p] = torch.diag(values)
        self.size = p


def _order(theta: Tensor, which: Which) -> Tensor:
    if which == "LA":
        return torch.argsort(theta, descending=True)
    if which == "SA":
        return torch.argsort(theta)
    return torch.argsort(theta.abs(), descending=True)


def _lanczos(op: LinearOperator, k: int, which: Which, tol: float, max_iter: int,
             krylov_dim: int, gen: torch.Generator, callback: EigenCallback | None = None) -> EigenResult:
    kry = _Krylov(op, krylov_dim, _gaussian(op.dim, gen, op.dtype, op.device), gen)
    while True:
        kry.step()
        if callback is not None:
            theta, _ = kry.ritz()
            callback(kry.matvecs, theta[_order(theta, which)[:k]].tolist())
        if kry.size >= k:
            theta, s = kry.ritz()
            order = _order(theta, which)
            wanted = order[:k]
            residuals = kry.beta * s[-1, wanted].abs()
            floor = 100 * kry.eps * float(theta.abs().max())
            converged = bool((residuals <= torch.clamp(tol * theta[wanted].abs(), min=floor)).all())
            if converged or kry.size == op.dim or kry.matvecs >= max_iter:
                break
            if kry.size == krylov_dim:
                keep = order[: min(krylov_dim - 1, k + (krylov_dim - k) // 2)]
                kry.restart(s[:, keep], theta[keep])
    vectors = s[:, wanted].T.to(dtype=op.dtype, device=op.device) @ kry.V[: kry.size]
    return EigenResult(eigenvalues=theta[wanted].tolist(), eigenvectors=vectors,
                       residuals=residuals.tolist(), num_matvecs=kry.matvecs, converged=converged)


# --------------------------------------------------------------------------- power iteration


def _deflated_power(op: LinearOperator, k: int, tol: float, max_iter: int, gen: torch.Generator,
                    shift: float = 0.0, which: Which = "LM", callback: EigenCallback | None = None,
                    offset: int = 0) -> tuple[list[float], list[Tensor], list[float], int, bool]:
    """Largest-magnitude eigenpairs of ``op + shift I``, one at a time (PyHessian's scheme).

    Each pair iterates ``v <- (H v) / ||H v||`` with ``v`` kept orthogonal to the pairs
    already found, until the Rayleigh quotient changes by at most ``tol`` relative.
    ``callback`` gets ``offset`` plus the products so far and the values found so far with
    the current Rayleigh quotient (shift removed), ordered as ``which`` asks.
    """
    values: list[float] = []
    vectors: list[Tensor] = []
    residuals: list[float] = []
    matvecs, all_converged = 0, True
    for _ in range(k):
        found = torch.stack(vectors) if vectors else None
        v = _gaussian(op.dim, gen, op.dtype, op.device)
        value, converged = math.nan, False
        for _ in range(max_iter):
            if found is not None:
                v = v - (found @ v) @ found
            v = v / v.norm()
            w = op.matvec(v).to(dtype=op.dtype, device=op.device) + shift * v
            matvecs += 1
            new = float(v @ w)
            residual = float((w - new * v).norm())
            # A zero product means v lies in the null space: the eigenvalue left is 0.
            converged = abs(new - value) <= tol * abs(value) or float(w.norm()) == 0.0
            value, vector = new, v
            if callback is not None:
                current = [x - shift for x in values] + [value - shift]
                callback(offset + matvecs, [current[i] for i in _order(torch.tensor(current), which)])
            if converged:
                break
            v = w
        values.append(value - shift)
        vectors.append(vector)
        residuals.append(residual)
        all_converged &= converged
    return values, vectors, residuals, matvecs, all_converged


def _power(op: LinearOperator, k: int, which: Which, tol: float, max_iter: int,
           gen: torch.Generator, callback: EigenCallback | None = None) -> EigenResult:
    values, vectors, residuals, matvecs, converged = _deflated_power(op, k, tol, max_iter, gen,
                                                                     which=which, callback=callback)
    wrong_sign = {"LA": any(v < 0 for v in values), "SA": any(v > 0 for v in values), "LM": False}
    if wrong_sign[which]:
        # The largest magnitudes include the other end of the spectrum: shift it so the
        # wanted end has the largest magnitude (|shift| >= spectral radius) and restart.
        radius = max(abs(v) for v in values)
        shift = radius if which == "LA" else -radius
        values, vectors, residuals, more, converged = _deflated_power(op, k, tol, max_iter, gen, shift,
                                                                      which, callback, matvecs)
        matvecs += more
    key = {"LA": lambda i: -values[i], "SA": lambda i: values[i], "LM": lambda i: -abs(values[i])}
    order = sorted(range(k), key=key[which])
    return EigenResult(eigenvalues=[values[i] for i in order],
                       eigenvectors=torch.stack([vectors[i] for i in order]),
                       residuals=[residuals[i] for i in order], num_matvecs=matvecs,
                       converged=converged)


# --------------------------------------------------------------------------- public estimators


def top_eigenvalues(operator: Any, data: Any = None, k: int = 1, *,
                    method: Literal["lanczos", "power"] = "lanczos", which: Which = "LA",
                    tol: float = 1e-6, max_iter: int | None = None, krylov_dim: int | None = None,
                    seed: int = 0, callback: EigenCallback | None = None,
                    **operator_kwargs: Any) -> EigenResult:
    """Top-``k`` eigenpairs of the Hessian (or of any symmetric operator).

    ``operator`` is an operator, or a model (then ``data`` and ``operator_kwargs`` build
    a :class:`HessianOperator`). ``which``: ``"LA"`` largest algebraic (default, the
    sharpness), ``"LM"`` largest magnitude, ``"SA"`` smallest algebraic.

    * ``method="lanczos"`` (default): thick-restart Lanczos with full reorthogonalization
      and a basis of ``krylov_dim`` vectors (default ``max(2k + 1, 20)``, at most ``dim``).
      Stops when every wanted Ritz pair has residual ``||Hv - theta v|| <= tol * |theta|``
      (or below ``100 * eps * ||H||``, the rounding floor of the operator's dtype).
      ``max_iter`` bounds the total number of products (default ``max(300, 30 k)``).
      A single start vector sees one copy of an exactly repeated eigenvalue.
    * ``method="power"``: deflated power iteration as in PyHessian; each eigenvalue stops
      when its Rayleigh quotient changes by at most ``tol`` relative between iterations,
      after at most ``max_iter`` products (default 1000). It finds the largest
      magnitudes; for ``"LA"``/``"SA"`` it reruns on a shifted operator when the other
      end of the spectrum shows up.

    Eigenvalues come in the order ``which`` asks for; eigenvectors are unit rows of a
    ``(k, dim)`` tensor. ``converged`` tells whether every pair met the tolerance.

    ``callback(num_matvecs, estimates)``, if given, is called after every product with
    the products spent so far and the current estimates, in the order ``which`` asks
    for: the (at most ``k``) wanted Ritz values for Lanczos; for power iteration the
    eigenvalues already found plus the current Rayleigh quotient. It records
    convergence histories at no extra products (see ``hessian_diagnostics``).
    """
    if method not in ("lanczos", "power"):
        raise ValueError(f"method must be 'lanczos' or 'power', got {method!r}")
    if which not in ("LA", "LM", "SA"):
        raise ValueError(f"which must be 'LA', 'LM' or 'SA', got {which!r}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    if max_iter is not None and max_iter < (k if method == "lanczos" else 1):
        raise ValueError(f"max_iter must be at least {k if method == 'lanczos' else 1} "
                         f"for method={method!r}, got {max_iter}")
    op = _operator(operator, data, operator_kwargs)
    if k > op.dim:
        raise ValueError(f"k={k} exceeds the operator dimension {op.dim}")
    gen = _generator(seed)
    if method == "power":
        return _power(op, k, which, tol, max_iter or 1000, gen, callback)
    basis = min(op.dim, krylov_dim or max(2 * k + 1, 20))
    if basis <= k and basis < op.dim:
        raise ValueError(f"krylov_dim must exceed k={k}, got {krylov_dim}")
    return _lanczos(op, k, which, tol, max_iter or max(300, 30 * k), basis, gen, callback)


def trace(operator: Any, data: Any = None, *, method: Literal["hutchinson", "hutch++"] = "hutchinson",
          num_matvecs: int = 100, seed: int = 0, **operator_kwargs: Any) -> TraceResult:
    """Estimate ``trace(H)`` with at most ``num_matvecs`` products, using Rademacher probes.

    * ``"hutchinson"``: the mean of ``z^T H z`` over ``num_matvecs`` probes; ``std_error``
      is the sample standard deviation over ``sqrt(num_matvecs)`` (NaN for one probe).
    * ``"hutch++"`` (Meyer, Musco, Musco & Woodruff 2021): a third of the budget sketches
      ``Q = qr(H S)``, a third computes ``trace(Q^T H Q)`` exactly, the last third runs
      Hutchinson on ``(I - QQ^T) H (I - QQ^T)``; ``std_error`` is that part's. When the
      sketch spans the whole space the answer is exact (``std_error = 0``) and the unused
      products are not spent. Needs ``num_matvecs >= 3``.
    """
    if method not in ("hutchinson", "hutch++"):
        raise ValueError(f"method must be 'hutchinson' or 'hutch++', got {method!r}")
    least = 3 if method == "hutch++" else 1
    if num_matvecs < least:
        raise ValueError(f"num_matvecs must be at least {least} for {method}, got {num_matvecs}")
    op = _operator(operator, data, operator_kwargs)
    gen = _generator(seed)
    n, dtype, device = op.dim, op.dtype, op.device
    exact, used = 0.0, 0
    basis: Tensor | None = None
    if method == "hutch++":
        sketch = _columns_matvec(op, _rademacher((n, num_matvecs // 3), gen, dtype, device))
        basis = torch.linalg.qr(sketch).Q
        exact = float((basis * _columns_matvec(op, basis)).sum())
        used = sketch.shape[1] + basis.shape[1]
        if basis.shape[1] == n:
            return TraceResult(estimate=exact, std_error=0.0, num_matvecs=used)
    probes = _rademacher((n, num_matvecs - used), gen, dtype, device)
    if basis is not None:
        probes = probes - basis @ (basis.T @ probes)
    samples = (probes * _columns_matvec(op, probes)).sum(dim=0).to(torch.float64)
    std_error = float(samples.std() / math.sqrt(samples.numel())) if samples.numel() > 1 else math.nan
    return TraceResult(estimate=exact + float(samples.mean()), std_error=std_error, num_matvecs=num_matvecs)


def spectral_density(operator: Any, data: Any = None, *, num_runs: int = 10, num_steps: int = 80,
                     grid: Tensor | int | None = None, sigma: float | None = None,
                     start: Literal["rademacher", "gaussian"] = "rademacher", seed: int = 0,
                     **operator_kwargs: Any) -> DensityResult:
    """Eigenvalue density of the Hessian by stochastic Lanczos quadrature.

    Each of ``num_runs`` runs starts Lanczos (full reorthogonalization) from a normalized
    random vector and takes ``num_steps`` steps (at most ``dim``); its nodes are the Ritz
    values and its weights the squared first components of the tridiagonal's
    eigenvectors, so ``sum_i w_i f(theta_i)`` estimates ``trace(f(H)) / dim`` exactly for
    polynomials ``f`` of degree below ``2 * num_steps`` (see :meth:`DensityResult.moment`).
    The density is the run average of Gaussians of width ``sigma`` (default 1% of the
    node range) centred on the nodes, evaluated on ``grid``: a tensor, or a number of
    points (default 1000) spanning the nodes +- 5 sigma, over which it integrates to ~1.
    """
    if num_runs < 1 or num_steps < 1:
        raise ValueError(f"num_runs and num_steps must be at least 1, got {num_runs} and {num_steps}")
    if sigma is not None and not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    if start not in ("rademacher", "gaussian"):
        raise ValueError(f"start must be 'rademacher' or 'gaussian', got {start!r}")
    grid = 1000 if grid is None else grid
    if isinstance(grid, int) and grid < 2:
        raise ValueError(f"grid needs at least 2 points, got {grid}")
    op = _operator(operator, data, operator_kwargs)
    gen = _generator(seed)
    steps = min(num_steps, op.dim)
    nodes, weights, matvecs = [], [], 0
    for _ in range(num_runs):
        v0 = (_rademacher((op.dim,), gen, op.dtype, op.device) if start == "rademacher"
              else _gaussian(op.dim, gen, op.dtype, op.device))
        kry = _Krylov(op, steps, v0, gen)
        for _ in range(steps):
            kry.step()
        theta, s = kry.ritz()
        nodes.append(theta)
        weights.append(s[0] ** 2)
        matvecs += kry.matvecs
    node_t, weight_t = torch.stack(nodes), torch.stack(weights)
    width = float(node_t.max() - node_t.min())
    if sigma is None:
        sigma = 0.01 * width if width > 0 else 1e-3 * max(1.0, float(node_t.abs().max()))
    if isinstance(grid, int):
        grid = torch.linspace(float(node_t.min()) - 5 * sigma, float(node_t.max()) + 5 * sigma, grid,
                              dtype=torch.float64)
    points = grid.to(torch.float64).reshape(-1, 1, 1)
    kernel = torch.exp(-0.5 * ((points - node_t) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    density = (kernel * weight_t).sum(dim=2).mean(dim=1)
    return DensityResult(grid=grid, density=density, nodes=node_t, weights=weight_t, sigma=sigma,
                         num_matvecs=matvecs)


# --------------------------------------------------------------------------- dense reference


def exact_hessian(model: nn.Module, data: Any, loss_fn: LossFn = F.cross_entropy,
                  params: ParamSelection = None, dtype: torch.dtype | None = torch.float64,
                  eval_mode: bool = True) -> Tensor:
    """Dense Hessian ``(dim, dim)`` of the mean loss, for small models.

    Differentiates the loss twice as a function of the flattened parameters
    (``torch.func.functional_call`` + ``torch.autograd.functional.hessian``), an
    independent route from the operator's Hessian-vector products.

    Same parameters, ordering, flattening, batch weighting, eval-mode handling and
    ``dtype`` semantics as :class:`HessianOperator` (``dtype=None`` keeps the model's).
    """
    batches, _ = _batch_source(data)
    work = _working_model(model, dtype)
    chosen = _select_parameters(work, params)
    names = [n for n, _ in chosen]
    shapes = [p.shape for _, p in chosen]
    sizes = [p.numel() for _, p in chosen]
    flat = torch.cat([p.detach().reshape(-1) for _, p in chosen])
    buffers = dict(work.named_buffers())
    total = torch.zeros(flat.numel(), flat.numel(), dtype=flat.dtype, device=flat.device)
    count = 0
    with _training_flags(work, eval_mode):
        for batch in batches:
            inputs, targets, n = _prepare(batch, flat.device, dtype)
            if n == 0:
                continue

            def loss_of(theta: Tensor) -> Tensor:
                tensors = {name: t.view(shape) for name, t, shape
                           in zip(names, torch.split(theta, sizes), shapes)}
                if not eval_mode:  # cloned buffers: BatchNorm statistics stay untouched
                    tensors.update({name: b.clone() for name, b in buffers.items()})
                return _scalar_loss(loss_fn(functional_call(work, tensors, (inputs,)), targets))

            # Reverse-over-reverse autograd: torch.func's transforms give wrong second
            # derivatives for train-mode batch_norm (torch 2.13; cf. pytorch#196699).
            total += n * torch.autograd.functional.hessian(loss_of, flat, vectorize=True)
            count += n
    if count == 0:
        raise ValueError("data is empty: no samples were found in the batches")
    return total / count


def exact_eigenvalues(model: nn.Module, data: Any, **kwargs: Any) -> Tensor:
    """Eigenvalues of :func:`exact_hessian` (same keyword arguments), largest first."""
    return torch.linalg.eigvalsh(exact_hessian(model, data, **kwargs)).flip(0)
