# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% tags=["remove-cell"]
# On Google Colab, install the largebatch library first (elsewhere it is installed already).
import sys

if "google.colab" in sys.modules:
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                    "largebatch @ git+https://github.com/largebatch/largebatch@main"], check=True)

# %% [markdown]
# # Computing the Hessian
#
# **Question.** The papers this book reproduces measure *sharpness* by the largest
# eigenvalues of the Hessian of the training loss {cite}`yao2018hessian,yao2018absa`. A
# network has thousands to millions of parameters, so that matrix is never written down.
# How do we compute its eigenvalues, its trace and its spectrum from Hessian-vector
# products alone, how many products does each estimate need, how accurate is it, and on
# how much data must the Hessian be taken for the number to mean something?
#
# We answer with two networks trained on MNIST-1D {cite}`greydanus2024mnist1d`: a *tiny*
# MLP whose Hessian is small enough to form densely (the exact answer to check every
# estimator against) and the book's small CNN with batch normalization (the kind of
# network the later chapters measure). Every estimator comes from `largebatch.hessian`,
# which follows PyHessian {cite}`yao2020pyhessian` where that is the right choice.

# %% tags=["parameters"]
dataset: str = "mnist1d"  # data set of the trained network (sections 1, 6-8), one of largebatch.data.DATASETS
model: str = "mnist1d_cnn"  # the trained network of sections 1 and 6-8, one of largebatch.models.MODELS
num_samples: int = 5000  # MNIST-1D only: samples generated, 80% for training
epochs: int = 30  # passes over the training data for the trained network
lr: float = 0.05  # learning rate of both trainings (SGD with momentum 0.9)
batch_size: int = 128  # training batch size of both networks
seeds: list[int] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]  # seeds of start vectors, probes, batch draws; first: training
tiny_dataset: str = "mnist1d"  # data set of the tiny MLP whose Hessian is formed densely (keep it small)
tiny_width: int = 8  # hidden width of the tiny MLP (mnist1d_mlp): 490 parameters on MNIST-1D
tiny_epochs: int = 10  # passes over the training data for the tiny MLP
hessian_samples: int = 0  # training samples the trained network's Hessian is taken over (0: all of them)
chunk_size: int = 4000  # at most this many samples per forward pass in a Hessian product
top_k: int = 10  # k of the top-k eigenvalue tasks
tol: float = 1e-3  # stopping tolerance of the eigenvalue estimates on the trained network
trace_budgets: list[int] = [3, 6, 12, 24, 48, 96, 192, 384]  # products per trace estimate in the convergence study
trace_matvecs: int = 30  # products per trace estimate in the cost table
slq_runs: int = 10  # stochastic Lanczos quadrature: random start vectors
slq_steps: int = 80  # stochastic Lanczos quadrature: Lanczos steps per start vector
probe_batch_sizes: list[int] = [32, 64, 128, 256, 512, 1024, 2048]  # batch sizes of the one-batch estimates
timing_samples: int = 1024  # batch size of the gradient / Hessian-vector product timing
timing_repeats: int = 10  # repetitions of that timing (the median is reported)
num_threads: int = 1  # torch CPU threads (0: torch's default); these small kernels run best on one
augmentation: str = "none"  # training batches: none, or crop_flip (pad 4, random crop, flip)

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import pandas as pd
import torch
from torch.utils.data import TensorDataset

from largebatch import data, experiments, hessian, models, notebook, plots
from largebatch import hessian_diagnostics as diag

notebook.check_parameters(globals())
notebook.check_choice("dataset", dataset, data.DATASETS)
notebook.check_choice("tiny_dataset", tiny_dataset, data.DATASETS)
notebook.check_choice("model", model, list(models.MODELS))
notebook.require(
    bool(seeds) and min(seeds) >= 0,
    f"parameter seeds must be a non-empty list of integers >= 0, " f"got {seeds!r}",
)
for name in (
    "tiny_width",
    "tiny_epochs",
    "chunk_size",
    "top_k",
    "tol",
    "trace_budgets",
    "slq_runs",
    "slq_steps",
    "probe_batch_sizes",
    "timing_samples",
    "timing_repeats",
):
    notebook.check_positive(name, globals()[name])
for name in (
    "hessian_samples",
    "num_threads",
):  # 0 means "all samples" and "torch's default"
    notebook.require(
        globals()[name] >= 0, f"parameter {name} must be >= 0, got {globals()[name]!r}"
    )
notebook.require(
    trace_matvecs >= 3 and min(trace_budgets) >= 3,
    "parameters trace_matvecs and trace_budgets "
    f"must be >= 3 (Hutch++ needs 3 products), got {trace_matvecs} and {trace_budgets}",
)
tiny_config = experiments.RunConfig(
    dataset=tiny_dataset,
    model="mnist1d_mlp",
    model_options={"width": tiny_width},
    num_samples=num_samples,
    epochs=tiny_epochs,
    lr=lr,
    batch_size=batch_size,
    seed=seeds[0],
)
cnn_config = experiments.RunConfig(
    dataset=dataset,
    model=model,
    num_samples=num_samples,
    epochs=epochs,
    lr=lr,
    batch_size=batch_size,
    seed=seeds[0],
    augmentation=augmentation,
)
tiny_bundle = experiments.validate(tiny_config)
bundle = experiments.validate(cnn_config)
num_hessian = hessian_samples or bundle.num_train
notebook.require(
    num_hessian <= bundle.num_train,
    f"parameter hessian_samples must be <= the training set size "
    f"{bundle.num_train}, got {hessian_samples}",
)
for name, sizes, limit in (
    ("probe_batch_sizes", probe_batch_sizes, num_hessian),
    ("timing_samples", [timing_samples], min(num_hessian, tiny_bundle.num_train)),
):
    notebook.require(
        max(sizes) <= limit,
        f"parameter {name} must be <= {limit} (the samples the Hessians are "
        f"taken over), got {sizes}",
    )
if num_threads:
    torch.set_num_threads(num_threads)
print(
    f"tiny MLP on {tiny_bundle.name} ({tiny_bundle.num_train} training samples); "
    f"{model} on {bundle.name}, Hessian over {num_hessian} of {bundle.num_train} "
    "training samples"
)

# %% [markdown]
# ## The two networks
#
# Both are trained once by `experiments.run` (cached: a second execution reads them from
# disk) by SGD with momentum at the same learning rate and batch size; the CNN for
# {glue:text}`cnn_epochs` epochs, the tiny MLP only briefly ({glue:text}`tiny_epochs` epochs).

# %%
tiny_record, cnn_record = experiments.sweep([tiny_config, cnn_config])
tiny_net = experiments.load_model(tiny_config)
cnn = experiments.load_model(cnn_config)
tiny_x, tiny_y = tiny_bundle.train.tensors
train_set = TensorDataset(*(t[:num_hessian] for t in bundle.train.tensors))
full_data = diag.chunks(
    train_set.tensors, chunk_size
)  # one batch, or chunks of chunk_size
networks = pd.DataFrame(
    [
        {
            "network": "tiny MLP",
            "model": tiny_config.model,
            "parameters": models.num_parameters(tiny_net),
            "epochs": tiny_config.epochs,
            "train accuracy": tiny_record["final"]["train_accuracy"],
            "test accuracy": tiny_record["final"]["test_accuracy"],
            "train loss": tiny_record["final"]["train_loss"],
        },
        {
            "network": "CNN",
            "model": cnn_config.model,
            "parameters": models.num_parameters(cnn),
            "epochs": cnn_config.epochs,
            "train accuracy": cnn_record["final"]["train_accuracy"],
            "test accuracy": cnn_record["final"]["test_accuracy"],
            "train loss": cnn_record["final"]["train_loss"],
        },
    ]
).set_index("network")
notebook.show(networks)

# %% tags=["remove-input"]
tiny_params, cnn_params = int(networks.loc["tiny MLP", "parameters"]), int(
    networks.loc["CNN", "parameters"]
)
notebook.glue_all(
    {
        "cnn_epochs": cnn_config.epochs,
        "tiny_epochs": tiny_config.epochs,
        "tiny_params": tiny_params,
        "cnn_params": cnn_params,
        "cnn_entries": float(cnn_params) ** 2,
        "cnn_dense_gib": 4 * float(cnn_params) ** 2 / 2**30,
        "num_hessian": num_hessian,
        "tiny_train": tiny_bundle.num_train,
    }
)

# %% [markdown]
# ## 1. Multiplying by the Hessian costs about one gradient
#
# For the mean training loss $L(w) = \frac1n \sum_i \ell(f(x_i; w), y_i)$ over $p$
# parameters, the Hessian $H = \nabla^2 L(w)$ is a symmetric $p \times p$ matrix. The
# CNN has $p =$ {glue:text}`cnn_params` parameters, so $H$ has
# {glue:text}`cnn_entries:.3g` entries ({glue:text}`cnn_dense_gib:.2g` GiB in float32)
# and each of them costs a second derivative. Every estimator in this chapter needs
# only products $Hv$, and Pearlmutter {cite}`pearlmutter1994fast` observed that a
# product is itself a gradient: for a fixed vector $v$,
#
# $$
# Hv = \nabla_w \left( \nabla_w L(w)^\top v \right),
# $$
#
# the gradient of the scalar $g(w) = \nabla_w L(w) \cdot v$. Automatic differentiation
# computes $\nabla_w L$ while keeping the graph of that computation, takes the dot product
# with $v$ and differentiates once more through the graph ("double back-propagation"). Each
# pass costs a small constant times a forward pass, so a Hessian-vector product costs a
# small constant times a gradient, whatever $p$. When many products are taken on the same
# data, the gradient graph can be kept (`cache_graph`, the default for a single batch) and
# each product is then one backward pass through it.
#
# We time one gradient and one product on the same {glue:text}`timing_samples` training
# samples (median of {glue:text}`timing_repeats` interleaved repetitions, eval mode,
# {glue:text}`threads_used` CPU thread(s)).

# %% tags=["hide-input"]
timings = pd.DataFrame(
    {
        name: diag.product_timings(
            net, diag.random_batch(samples, timing_samples, seeds[0]), timing_repeats
        )
        for name, net, samples in (
            ("tiny MLP", tiny_net, tiny_bundle.train),
            ("CNN", cnn, train_set),
        )
    }
).T
timings_ms = (1e3 * timings).rename(columns=lambda c: f"{c} (ms)")
ratios = (
    timings.drop(columns="gradient")
    .div(timings["gradient"], axis=0)
    .rename(columns=lambda c: f"{c} / gradient")
)
notebook.show(pd.concat([timings_ms, ratios], axis=1))

# %% tags=["remove-input"]
notebook.glue_all(
    {
        "timing_samples": timing_samples,
        "timing_repeats": timing_repeats,
        "threads_used": torch.get_num_threads(),
        "ratio_cnn_fresh": float(ratios.loc["CNN", "hvp (recomputed graph) / gradient"]),
        "ratio_cnn_cached": float(ratios.loc["CNN", "hvp (cached graph) / gradient"]),
        "ratio_tiny_fresh": float(
            ratios.loc["tiny MLP", "hvp (recomputed graph) / gradient"]
        ),
        "ratio_tiny_cached": float(
            ratios.loc["tiny MLP", "hvp (cached graph) / gradient"]
        ),
        "cnn_gradient_ms": float(1e3 * timings.loc["CNN", "gradient"]),
    }
)

# %% [markdown]
# On the CNN a product from scratch (forward pass, gradient with its graph, backward
# through it) costs {glue:text}`ratio_cnn_fresh:.1f` gradients, and
# {glue:text}`ratio_cnn_cached:.1f` gradients through a cached graph (tiny MLP:
# {glue:text}`ratio_tiny_fresh:.1f` and {glue:text}`ratio_tiny_cached:.1f`). The
# constant is small, as Pearlmutter's argument says; what follows therefore counts
# **Hessian-vector products** (HVPs) as the unit of cost of every estimate.

# %% [markdown]
# ## 2. A Hessian small enough to write down
#
# The tiny MLP (two hidden layers of {glue:text}`tiny_width` units) has
# {glue:text}`tiny_params` parameters, so its Hessian over all
# {glue:text}`tiny_train` training samples can be formed densely
# (`hessian.exact_hessian`, which differentiates the loss twice by another route than the
# products) and diagonalized exactly, in float64.

# %%
dense = hessian.exact_hessian(tiny_net, (tiny_x, tiny_y))  # float64, eval mode
eigenvalues = torch.linalg.eigvalsh(dense).flip(0)  # largest first
tiny_op = hessian.HessianOperator(tiny_net, (tiny_x, tiny_y), dtype=torch.float64)
probe = torch.randn(
    tiny_op.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(seeds[0])
)
product_gap = float(
    (tiny_op.matvec(probe) - dense @ probe).norm() / (dense @ probe).norm()
)
figure = plots.hessian_spectrum(eigenvalues.tolist())
plots.save_figure(figure, "hessian_tiny_spectrum")

# %% tags=["remove-input"]
top = float(eigenvalues[0])
dense_trace = float(dense.trace())
zero_level = 1e-10 * float(
    eigenvalues.abs().max()
)  # as in the figure: rounding-level eigenvalues
notebook.glue_all(
    {
        "tiny_width": tiny_width,
        "product_gap": product_gap,
        "tiny_top": top,
        "tiny_second": float(eigenvalues[1]),
        "tiny_min": float(eigenvalues[-1]),
        "tiny_negative": int((eigenvalues < -zero_level).sum()),
        "tiny_negative_share": float((eigenvalues < -zero_level).float().mean()),
        "tiny_zero": int((eigenvalues.abs() <= zero_level).sum()),
        "tiny_flat": tiny_width + 1,
        "tiny_bulk_share": float((eigenvalues.abs() < 0.01 * top).float().mean()),
        "tiny_trace": dense_trace,
        "tiny_top10_share": float(eigenvalues[:10].sum() / dense_trace),
    }
)

# %% [markdown]
# A product with the dense matrix and a Hessian-vector product from the operator agree to
# a relative difference of {glue:text}`product_gap:.1e`: the two routes compute the same
# matrix. The spectrum has the shape reported for trained networks
# {cite}`ghorbani2019investigation,yao2020pyhessian`:
#
# * a few **outliers**: the largest eigenvalue is {glue:text}`tiny_top:.3g`, the second
#   {glue:text}`tiny_second:.3g`; the ten largest carry
#   {glue:text}`tiny_top10_share:.0%` of the trace ({glue:text}`tiny_trace:.3g`);
# * a **bulk near zero**: {glue:text}`tiny_bulk_share:.0%` of the eigenvalues are smaller
#   in magnitude than 1% of the largest;
# * **negative eigenvalues**: {glue:text}`tiny_negative` of them
#   ({glue:text}`tiny_negative_share:.0%`), down to {glue:text}`tiny_min:.3g`. After a
#   short training the point is not a minimum; the negative ones are small compared with
#   the outliers, which is why "sharpness" looks at the top of the spectrum;
# * {glue:text}`tiny_zero` eigenvalues are zero up to rounding: exactly flat directions.
#   Softmax cross-entropy does not change when the same number is added to every logit, so
#   shifting the last layer's bias, or the weights from one hidden unit, equally across all
#   classes changes nothing: {glue:text}`tiny_flat` such directions (the hidden width plus one).
#
# Because this matrix is exact, sections 3 to 5 run the estimators on it
# (`hessian.MatrixOperator`, the same interface as the Hessian operator): the estimators
# see nothing but products, which we just saw are the same, and products with a stored
# matrix are cheap enough to run every method to full convergence over several seeds.

# %% [markdown]
# ## 3. Top eigenvalues: power iteration or Lanczos
#
# **Power iteration** (used by {cite}`yao2018hessian,yao2018absa` and PyHessian) repeats
# $v \leftarrow Hv / \lVert Hv \rVert$ and reads the Rayleigh quotient $v^\top H v$; its
# error shrinks like $(\lambda_2/\lambda_1)^{2t}$ after $t$ products. The next eigenvalues
# come one after the other, each restarted and kept orthogonal to those already found
# (*deflation*), so top-$k$ costs about $k$ separate runs. **Lanczos** keeps *all* the
# products it has made: it builds an orthonormal basis of the Krylov space
# $\{v, Hv, H^2v, \dots\}$ and takes the eigenvalues of $H$ restricted to it (Ritz values).
# After $t$ products the Ritz values are the best the Krylov space allows, at least as good
# as power iteration's, and all $k$ wanted values improve together. Below, the largest
# relative error over the top-1 and top-{glue:text}`top_k` eigenvalues against the exact
# ones, after every product (median over {glue:text}`num_seeds` random start vectors,
# band: min to max); power iteration has no top-$k$ error until it has found $k$ values.

# %%
tiny_matrix = hessian.MatrixOperator(dense)
exact_top = eigenvalues[:top_k].tolist()
threshold = 1e-3  # the error target of the table below
convergence = {}
for k in (1, top_k):
    for method in ("lanczos", "power"):
        convergence[(k, method)] = diag.eigen_convergence(
            tiny_matrix,
            exact_top[:k],
            method=method,
            seeds=seeds,
            tol=1e-10,
            max_iter=None if method == "lanczos" else 1000,
        )
figure, axes = plt.subplots(1, 2, figsize=(10, 3.6))
for axis, k in zip(axes, (1, top_k)):
    plots.error_vs_matvecs(
        {m: convergence[(k, m)] for m in ("lanczos", "power")},
        axis=axis,
        log_x=True,
        ylabel="largest relative eigenvalue error",
        title=f"top-{k}",
        hline=threshold,
    )
plots.save_figure(figure, "hessian_eigen_convergence")

# %% tags=["hide-input"]
products_needed = pd.DataFrame(
    {
        f"top-{k} {method}": diag.matvecs_to_reach(frame, threshold)
        for (k, method), frame in convergence.items()
    }
).T.rename(columns=lambda s: f"seed {s}")
products_needed.insert(0, "median", products_needed.median(axis=1))
notebook.show(products_needed)

# %% tags=["remove-input"]
needed = products_needed["median"]
notebook.glue_all(
    {
        "top_k": top_k,
        "num_seeds": len(seeds),
        "eig_threshold": threshold,
        "need_top1_lanczos": float(needed["top-1 lanczos"]),
        "need_top1_power": float(needed["top-1 power"]),
        "need_topk_lanczos": float(needed[f"top-{top_k} lanczos"]),
        "need_topk_power": float(needed[f"top-{top_k} power"]),
        "topk_power_over_lanczos": float(
            needed[f"top-{top_k} power"] / needed[f"top-{top_k} lanczos"]
        ),
        "tiny_gap_ratio": float(eigenvalues[1] / eigenvalues[0]),
    }
)

# %% [markdown]
# To reach a relative error of {glue:text}`eig_threshold:.0e`, the median run needs
# {glue:text}`need_top1_lanczos:.0f` products with Lanczos and
# {glue:text}`need_top1_power:.0f` with power iteration for the top eigenvalue (here
# $\lambda_2/\lambda_1 =$ {glue:text}`tiny_gap_ratio:.2f`), and
# {glue:text}`need_topk_lanczos:.0f` against {glue:text}`need_topk_power:.0f` products for
# the top {glue:text}`top_k`: power iteration spends
# {glue:text}`topk_power_over_lanczos:.1f` times as many. The library therefore uses
# Lanczos (with full reorthogonalization and thick restarts) by default and keeps power
# iteration to compare with the papers.

# %% [markdown]
# ## 4. The trace: Hutchinson or Hutch++
#
# For a random vector $z$ with independent $\pm 1$ entries, $\mathbb E[z^\top H z] =
# \operatorname{tr} H$; **Hutchinson's** estimator averages $m$ such products, and its
# error falls like $1/\sqrt m$. **Hutch++** {cite}`meyer2021hutch` spends a third of the
# products on a sketch $Q$ of the top eigenspace, computes $\operatorname{tr}(Q^\top H Q)$
# exactly and runs Hutchinson only on what is left; for a spectrum dominated by a few
# outliers the error falls like $1/m$. Relative error against the dense trace, over
# {glue:text}`num_seeds` seeds of the probes:

# %%
trace_frame = diag.trace_convergence(tiny_matrix, dense_trace, trace_budgets, seeds=seeds)
figure = plots.error_vs_matvecs(
    {m: trace_frame[trace_frame.method == m] for m in ("hutchinson", "hutch++")},
    x="budget",
    log_x=True,
    ylabel="relative error of the trace",
    xlabel="Hessian-vector products",
    slopes={"∝ 1/√m": -0.5, "∝ 1/m": -1.0},
)
plots.save_figure(figure, "hessian_trace_convergence")
trace_table = trace_frame.pivot_table(
    index="budget", columns="method", values="error", aggfunc="median"
)
notebook.show(trace_table)

# %% tags=["remove-input"]
small_budget, large_budget = min(trace_budgets), max(trace_budgets)
notebook.glue_all(
    {
        "trace_small_budget": small_budget,
        "trace_large_budget": large_budget,
        "hutch_err_small": float(trace_table.loc[small_budget, "hutchinson"]),
        "hutchpp_err_small": float(trace_table.loc[small_budget, "hutch++"]),
        "hutch_err_large": float(trace_table.loc[large_budget, "hutchinson"]),
        "hutchpp_err_large": float(trace_table.loc[large_budget, "hutch++"]),
        "hutch_gain_large": float(
            trace_table.loc[large_budget, "hutchinson"]
            / trace_table.loc[large_budget, "hutch++"]
        ),
    }
)

# %% [markdown]
# With {glue:text}`trace_large_budget` products the median relative error is
# {glue:text}`hutch_err_large:.2g` for Hutchinson and {glue:text}`hutchpp_err_large:.2g`
# for Hutch++ ({glue:text}`hutch_gain_large:.1f` times smaller); with only
# {glue:text}`trace_small_budget` products both are crude
# ({glue:text}`hutch_err_small:.2g` and {glue:text}`hutchpp_err_small:.2g`): Hutch++ gains
# little while its sketch is too small to capture the outliers. Beyond that,
# Hutchinson's error follows the $1/\sqrt m$ guide line, while Hutch++ falls at least as
# fast as $1/m$, faster here because a larger sketch captures more of a spectrum that
# decays quickly.

# %% [markdown]
# ## 5. The whole spectrum: stochastic Lanczos quadrature
#
# The density of eigenvalues $\frac1p \sum_i \delta(\lambda - \lambda_i)$ is estimated by
# stochastic Lanczos quadrature (SLQ) {cite}`ghorbani2019investigation,yao2020pyhessian`:
# each of {glue:text}`slq_runs` runs takes {glue:text}`slq_steps` Lanczos steps from a
# random vector; the Ritz values are the nodes and the squared first components of the
# tridiagonal's eigenvectors the weights of a quadrature rule, and the density is the
# average over runs of Gaussians of width $\sigma$ centred on the nodes. Against it, the
# histogram of the exact eigenvalues and the exact eigenvalues broadened with the same
# $\sigma$ (log scale: the bulk near zero is orders of magnitude denser than the outliers).

# %%
density = hessian.spectral_density(
    tiny_matrix, num_runs=slq_runs, num_steps=slq_steps, seed=seeds[0]
)
exact_density = diag.broadened_density(eigenvalues, density.grid, density.sigma)
figure = plots.density_vs_histogram(
    density.grid,
    {
        "SLQ estimate": density.density,
        "exact eigenvalues, same broadening": exact_density,
    },
    eigenvalues.tolist(),
)
plots.save_figure(figure, "hessian_slq_density")
moments = pd.DataFrame(
    {
        "SLQ": [density.moment(1), density.moment(2)],
        "exact": [float(eigenvalues.mean()), float((eigenvalues**2).mean())],
    },
    index=["trace(H) / p", "trace(H²) / p"],
)
notebook.show(moments)

# %% tags=["remove-input"]
grid_step = float(density.grid[1] - density.grid[0])
notebook.glue_all(
    {
        "slq_runs": slq_runs,
        "slq_steps": min(slq_steps, tiny_params),
        "slq_matvecs": density.num_matvecs,
        "slq_sigma": density.sigma,
        "slq_l1": float((density.density - exact_density).abs().sum() * grid_step),
        "slq_moment1_err": float(
            abs(
                moments.loc["trace(H) / p", "SLQ"] / moments.loc["trace(H) / p", "exact"]
                - 1
            )
        ),
        "slq_moment2_err": float(
            abs(
                moments.loc["trace(H²) / p", "SLQ"]
                / moments.loc["trace(H²) / p", "exact"]
                - 1
            )
        ),
    }
)

# %% [markdown]
# With {glue:text}`slq_matvecs` products (width $\sigma =$ {glue:text}`slq_sigma:.2g`) the
# estimate follows the exact broadened density: the two curves differ by
# {glue:text}`slq_l1:.2g` in $L^1$ (each has area 1). The outliers come out as peaks at the
# right places and the bulk with the right shape; what SLQ gets only roughly is *how much*
# mass each outlier carries, because that weight is measured by the overlap of a few random
# start vectors with its eigenvector. The same randomness shows in the quadrature's
# estimates of $\operatorname{tr}(H)/p$ and $\operatorname{tr}(H^2)/p$ (the table), off by
# {glue:text}`slq_moment1_err:.0%` and {glue:text}`slq_moment2_err:.0%`: with
# {glue:text}`slq_runs` start vectors they are Hutchinson estimates with
# {glue:text}`slq_runs` probes. SLQ is the tool for the *shape* of the spectrum; for the top
# eigenvalues and the trace the dedicated estimators above are more accurate per product.

# %% [markdown]
# ## 6. The variance problem: a top eigenvalue from one batch
#
# The papers' adaptive batch size {cite}`yao2018absa` decides when to grow the batch from
# the top eigenvalue of the Hessian of *one* batch of 128 samples. That is the top
# eigenvalue of $H_B = \frac1b \sum_{i \in B} \nabla^2 \ell_i$, a random matrix whose mean
# is the full-data Hessian. Two things go wrong for small $b$: the estimate is noisy, and it
# is biased upwards ($\lambda_{\max}$ is a convex function of the matrix, so
# $\mathbb E\,\lambda_{\max}(H_B) \ge \lambda_{\max}(H)$). On the trained CNN, one Lanczos
# estimate (tolerance {glue:text}`tol:.0e`) per batch size and seed, each seed drawing a
# different random batch:

# %%
full_top = hessian.top_eigenvalues(cnn, full_data, k=1, tol=tol, seed=seeds[0])
spread = diag.batch_eigenvalue_spread(
    cnn, train_set, probe_batch_sizes, seeds, tol=tol, chunk_size=chunk_size
)
figure = plots.estimate_spread(
    spread,
    full_top.eigenvalues[0],
    reference_label=f"all {num_hessian} training samples",
    highlight=128 if 128 in probe_batch_sizes else None,
)
plots.save_figure(figure, "hessian_batch_spread")
spread_table = spread.groupby("batch_size")["eigenvalue"].agg(
    ["min", "median", "max", "std"]
)
spread_table["max / min"] = spread_table["max"] / spread_table["min"]
spread_table["median / full"] = spread_table["median"] / full_top.eigenvalues[0]
notebook.show(spread_table)

# %% tags=["remove-input"]
smallest_b, largest_b = min(probe_batch_sizes), max(probe_batch_sizes)
ref_b = 128 if 128 in probe_batch_sizes else smallest_b
notebook.glue_all(
    {
        "full_top": full_top.eigenvalues[0],
        "full_top_matvecs": full_top.num_matvecs,
        "tol": tol,
        "ref_b": ref_b,
        "smallest_b": smallest_b,
        "largest_b": largest_b,
        "ref_min": float(spread_table.loc[ref_b, "min"]),
        "ref_max": float(spread_table.loc[ref_b, "max"]),
        "ref_ratio": float(spread_table.loc[ref_b, "max / min"]),
        "ref_bias": float(spread_table.loc[ref_b, "median / full"]),
        "small_ratio": float(spread_table.loc[smallest_b, "max / min"]),
        "small_bias": float(spread_table.loc[smallest_b, "median / full"]),
        "large_ratio": float(spread_table.loc[largest_b, "max / min"]),
        "large_bias": float(spread_table.loc[largest_b, "median / full"]),
    }
)

# %% [markdown]
# On all {glue:text}`num_hessian` training samples the top eigenvalue is
# {glue:text}`full_top:.3g` ({glue:text}`full_top_matvecs` products). On batches of
# {glue:text}`ref_b` samples the {glue:text}`num_seeds` estimates range from
# {glue:text}`ref_min:.3g` to {glue:text}`ref_max:.3g` (a factor
# {glue:text}`ref_ratio:.1f`), with a median {glue:text}`ref_bias:.1f` times the
# full-data value; at {glue:text}`smallest_b` samples the factor is
# {glue:text}`small_ratio:.1f` and the median {glue:text}`small_bias:.1f` times the full value,
# while at {glue:text}`largest_b` samples the estimates agree within a factor
# {glue:text}`large_ratio:.1f` (median {glue:text}`large_bias:.1f` times the full value).
# A single small-batch estimate cannot tell a change of sharpness from a change of batch.
# This is why the later chapters take every eigenvalue over the whole training set
# (`RunConfig.hessian_top_k`), and why the adaptive batch size chapter does not copy the
# reference code's 128-sample estimate.

# %% [markdown]
# ## 7. Batch normalization: eval mode or train mode
#
# A network with batch normalization computes two different functions. In **train mode**
# each BN layer normalizes with the mean and variance of the current batch, which depend
# on the weights; in **eval mode** it uses running statistics, constants for the Hessian.
# `largebatch.hessian` uses eval mode by default (`eval_mode=True`, as PyHessian does): the
# curvature of the function the trained network computes at test time. With
# `eval_mode=False` the products run in train mode, normalizing each chunk of data with its
# own statistics; we take chunks of the training batch size {glue:text}`batch_size`, the
# objective SGD actually descended, and the whole set as one batch.

# %%
per_batch = diag.chunks(train_set.tensors, batch_size)
modes = {
    "eval mode (running statistics)": (full_data, True),
    f"train mode, batches of {batch_size}": (per_batch, False),
}
if num_hessian <= chunk_size:
    modes[f"train mode, one batch of {num_hessian}"] = (train_set.tensors, False)
bn_rows = []
for label, (samples, eval_mode) in modes.items():
    result = (
        full_top
        if eval_mode
        else hessian.top_eigenvalues(
            cnn, samples, k=1, tol=tol, seed=seeds[0], eval_mode=False
        )
    )
    bn_rows.append(
        {
            "mode": label,
            "top eigenvalue": result.eigenvalues[0],
            "products": result.num_matvecs,
            "mean training loss": diag.mean_loss(cnn, samples, eval_mode=eval_mode),
        }
    )
bn_table = pd.DataFrame(bn_rows).set_index("mode")
notebook.show(bn_table)

# %% tags=["remove-input"]
train_label = f"train mode, batches of {batch_size}"
bn_layers = sum(
    isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in cnn.modules()
)
notebook.glue_all(
    {
        "batch_size": batch_size,
        "bn_layers": bn_layers,
        "bn_eval_top": float(bn_table.iloc[0]["top eigenvalue"]),
        "bn_train_top": float(bn_table.loc[train_label, "top eigenvalue"]),
        "bn_factor": float(
            bn_table["top eigenvalue"].iloc[:2].max()
            / bn_table["top eigenvalue"].iloc[:2].min()
        ),
        "bn_direction": (
            "larger"
            if bn_table.iloc[0]["top eigenvalue"]
            > bn_table.loc[train_label, "top eigenvalue"]
            else "smaller"
        ),
        "bn_eval_loss": float(bn_table.iloc[0]["mean training loss"]),
        "bn_train_loss": float(bn_table.loc[train_label, "mean training loss"]),
    }
)

# %% [markdown]
# The network has {glue:text}`bn_layers` BN layers. Its mean training loss is
# {glue:text}`bn_eval_loss:.3g` in eval mode and {glue:text}`bn_train_loss:.3g` in train
# mode (batches of {glue:text}`batch_size`), but the top eigenvalue is
# {glue:text}`bn_eval_top:.3g` in eval mode and {glue:text}`bn_train_top:.3g` in train
# mode: a factor {glue:text}`bn_factor:.1f` between them. The same weights, two
# curvatures. In train mode the normalization absorbs any change of the mean or scale of a
# BN layer's inputs, so the loss is invariant to rescaling the weights before each BN
# layer and flat along those directions, and moving a weight also moves the statistics that
# normalize it. In eval mode the statistics are frozen and those compensations are gone;
# here the eval-mode curvature is the {glue:text}`bn_direction` one. Neither number is
# wrong, but they are not comparable: a sharpness measured in eval mode cannot be compared
# with one measured in train mode, or with one taken on batches of another size. The book
# reports eval-mode values throughout, like the papers' code.

# %% [markdown]
# ## 8. What each estimate costs on the trained network
#
# Products and seconds on all {glue:text}`num_hessian` training samples of the CNN, each
# estimate with its own stopping rule at tolerance {glue:text}`tol:.0e` (Lanczos: residual
# $\lVert Hv - \theta v\rVert \le$ tol $\cdot |\theta|$; power iteration: relative change of
# the Rayleigh quotient, as in PyHessian, at most 100 products per eigenvalue); the trace
# with {glue:text}`trace_matvecs` products. The error column compares with a Lanczos
# reference run at tolerance $10^{-6}$.

# %%
reference = hessian.top_eigenvalues(cnn, full_data, k=top_k, tol=1e-6, seed=seeds[-1])
costs = diag.estimator_costs(
    cnn,
    full_data,
    k=top_k,
    tol=tol,
    trace_matvecs=trace_matvecs,
    seed=seeds[0],
    reference=reference.eigenvalues,
)
costs["seconds per product"] = costs["seconds"] / costs["matvecs"]
costs.set_index(["task", "method"]).rename(
    columns={
        "matvecs": "products",
        "value": "top eigenvalue / trace",
        "last_value": "k-th eigenvalue",
        "std_error": "trace std. error",
        "error": "relative error",
    }
).style.format(precision=3, na_rep="").format(
    "{:.1e}", subset=["relative error"], na_rep=""
)

# %% tags=["remove-input"]
cost = costs.set_index(["task", "method"])
topk = f"top-{top_k}"
notebook.glue_all(
    {
        "trace_matvecs": trace_matvecs,
        "reference_matvecs": reference.num_matvecs,
        "cost_top1_lanczos": int(cost.loc[("top-1", "lanczos"), "matvecs"]),
        "cost_top1_power": int(cost.loc[("top-1", "power"), "matvecs"]),
        "cost_topk_lanczos": int(cost.loc[(topk, "lanczos"), "matvecs"]),
        "cost_topk_power": int(cost.loc[(topk, "power"), "matvecs"]),
        "sec_topk_lanczos": float(cost.loc[(topk, "lanczos"), "seconds"]),
        "sec_topk_power": float(cost.loc[(topk, "power"), "seconds"]),
        "err_topk_lanczos": float(cost.loc[(topk, "lanczos"), "error"]),
        "err_topk_power": float(cost.loc[(topk, "power"), "error"]),
        "sec_per_product": float(costs["seconds per product"].median()),
        "cnn_trace": float(cost.loc[("trace", "hutch++"), "value"]),
        "cnn_trace_se": float(cost.loc[("trace", "hutch++"), "std_error"]),
        "cnn_trace_hutch": float(cost.loc[("trace", "hutchinson"), "value"]),
        "cnn_trace_hutch_se": float(cost.loc[("trace", "hutchinson"), "std_error"]),
    }
)

# %% [markdown]
# A product over the whole training set takes about {glue:text}`sec_per_product:.2g` s
# here. The top {glue:text}`top_k` eigenvalues cost {glue:text}`cost_topk_lanczos`
# products with Lanczos ({glue:text}`sec_topk_lanczos:.2g` s, largest relative error
# {glue:text}`err_topk_lanczos:.1e`) and {glue:text}`cost_topk_power` with power iteration
# ({glue:text}`sec_topk_power:.2g` s, error {glue:text}`err_topk_power:.1e`); the top one
# {glue:text}`cost_top1_lanczos` and {glue:text}`cost_top1_power`. Power iteration's error
# can exceed its tolerance: its stopping rule (a small change between iterations) is not an
# error bound, and when two eigenvalues are close it stops early. Lanczos stops on the
# residual $\lVert Hv - \theta v \rVert$, which does bound the error. The
# trace is {glue:text}`cnn_trace:.3g` ± {glue:text}`cnn_trace_se:.2g` by Hutch++ and
# {glue:text}`cnn_trace_hutch:.3g` ± {glue:text}`cnn_trace_hutch_se:.2g` by Hutchinson
# with {glue:text}`trace_matvecs` products (± one standard error of the random part).

# %% [markdown]
# ## What we measured
#
# * A Hessian-vector product cost {glue:text}`ratio_cnn_fresh:.1f` gradients on the CNN
#   from scratch and {glue:text}`ratio_cnn_cached:.1f` through a cached graph
#   (Pearlmutter's trick), so the number of products is the cost of every estimate.
# * The dense Hessian of a {glue:text}`tiny_params`-parameter MLP has a few outliers, a bulk
#   near zero ({glue:text}`tiny_bulk_share:.0%` of eigenvalues below 1% of the largest) and
#   {glue:text}`tiny_negative` negative eigenvalues.
# * Lanczos reached a relative error of {glue:text}`eig_threshold:.0e` on the top
#   {glue:text}`top_k` eigenvalues in {glue:text}`need_topk_lanczos:.0f` products, power
#   iteration with deflation in {glue:text}`need_topk_power:.0f`; on the CNN,
#   {glue:text}`cost_topk_lanczos` against {glue:text}`cost_topk_power` products.
# * With {glue:text}`trace_large_budget` products, Hutch++ estimated the trace
#   {glue:text}`hutch_gain_large:.1f` times more accurately than Hutchinson; SLQ
#   reproduced the spectral density of the dense Hessian, outliers and bulk.
# * The top eigenvalue of one {glue:text}`ref_b`-sample batch varied by a factor
#   {glue:text}`ref_ratio:.1f` between batches, and its median was
#   {glue:text}`ref_bias:.1f` times the full-data value: sharpness must be measured on
#   much more data, and the book uses the whole training set.
# * With batch normalization, train-mode and eval-mode Hessians differ by a factor
#   {glue:text}`bn_factor:.1f` in their top eigenvalue; the book reports eval mode.
