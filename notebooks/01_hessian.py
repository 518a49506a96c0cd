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

# %% tags=["parameters", "hide-input"]
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

# %%
import torch

from largebatch import hessian, notebook, plots
from largebatch import hessian_diagnostics as diag
from largebatch.studies import hessian_tour as tour

design = tour.design(globals())  # the parameters above, checked
print(design.describe())

# %% [markdown]
# ## The two networks
#
# Both are trained once by `experiments.run` (cached: a second execution reads them from
# disk) by SGD with momentum at the same learning rate and batch size; the CNN for
# {glue:text}`cnn_epochs` epochs, the tiny MLP only briefly ({glue:text}`tiny_epochs` epochs).

# %%
nets = tour.train_networks(design)  # experiments.sweep, then the run cache
tiny_net, tiny_data, cnn = nets.tiny, nets.tiny_data, nets.cnn
train_set = design.hessian_set  # the CNN's num_hessian training samples
full_data = diag.chunks(train_set.tensors, chunk_size)  # a batch or chunks
nets.table()

# %% tags=["remove-input"]
notebook.glue_all(tour.networks_prose(nets))

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

# %%
timings = tour.product_timings(nets)  # diag.product_timings on each network
tour.timing_table(timings)

# %% tags=["remove-input"]
notebook.glue_all(tour.timing_prose(design, timings))

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
dense = hessian.exact_hessian(tiny_net, tiny_data)  # float64, eval mode
eigenvalues = torch.linalg.eigvalsh(dense).flip(0)  # largest first
tiny_op = hessian.HessianOperator(tiny_net, tiny_data, dtype=torch.float64)
generator = torch.Generator().manual_seed(seeds[0])
probe = torch.randn(tiny_op.dim, dtype=torch.float64, generator=generator)
exact = dense @ probe
product_gap = float((tiny_op.matvec(probe) - exact).norm() / exact.norm())
figure = plots.hessian_spectrum(eigenvalues.tolist())
plots.save_figure(figure, "hessian_tiny_spectrum")

# %% tags=["remove-input"]
notebook.glue_all(tour.spectrum_prose(design, dense, eigenvalues, product_gap))

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
threshold = 1e-3  # the error target of the table below
convergence = {
    (k, method): diag.eigen_convergence(
        tiny_matrix, eigenvalues[:k].tolist(), method=method, seeds=seeds,
        tol=1e-10, max_iter=None if method == "lanczos" else 1000)
    for k in (1, top_k) for method in ("lanczos", "power")
}
tour.eigen_convergence_figure(convergence, threshold)

# %%
needed = tour.products_needed(convergence, threshold)
notebook.show(needed)

# %% tags=["remove-input"]
notebook.glue_all(tour.eigen_prose(design, needed, eigenvalues, threshold))

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
trace_frame = diag.trace_convergence(
    tiny_matrix, float(dense.trace()), trace_budgets, seeds=seeds)
tour.trace_figure(trace_frame)

# %%
trace_table = tour.trace_table(trace_frame)  # median error per budget
notebook.show(trace_table)

# %% tags=["remove-input"]
notebook.glue_all(tour.trace_prose(design, trace_table))

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
    tiny_matrix, num_runs=slq_runs, num_steps=slq_steps, seed=seeds[0])
exact_density = diag.broadened_density(
    eigenvalues, density.grid, density.sigma)
tour.density_figure(density, exact_density, eigenvalues)

# %%
moments = tour.slq_moments(density, eigenvalues)
notebook.show(moments)

# %% tags=["remove-input"]
notebook.glue_all(tour.slq_prose(nets, density, exact_density, moments))

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
full_top = hessian.top_eigenvalues(
    cnn, full_data, k=1, tol=tol, seed=seeds[0])
spread = diag.batch_eigenvalue_spread(
    cnn, train_set, probe_batch_sizes, seeds, tol=tol, chunk_size=chunk_size)
tour.spread_figure(design, spread, full_top.eigenvalues[0])

# %%
spread_table = tour.spread_table(spread, full_top.eigenvalues[0])
notebook.show(spread_table)

# %% tags=["remove-input"]
notebook.glue_all(tour.spread_prose(design, spread_table, full_top))

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
rows = {}  # mode -> (top eigenvalue result, mean training loss)
for label, (samples, eval_mode) in tour.bn_modes(design, full_data).items():
    result = full_top if eval_mode else hessian.top_eigenvalues(
        cnn, samples, k=1, tol=tol, seed=seeds[0], eval_mode=False)
    loss = diag.mean_loss(cnn, samples, eval_mode=eval_mode)
    rows[label] = result, loss
bn_table = tour.bn_table(rows)
notebook.show(bn_table)

# %% tags=["remove-input"]
notebook.glue_all(tour.bn_prose(nets, bn_table))

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
reference = hessian.top_eigenvalues(  # a tight reference for the errors
    cnn, full_data, k=top_k, tol=1e-6, seed=seeds[-1])
costs = diag.estimator_costs(
    cnn, full_data, k=top_k, tol=tol, trace_matvecs=trace_matvecs,
    seed=seeds[0], reference=reference.eigenvalues)
tour.cost_table(costs)

# %% tags=["remove-input"]
notebook.glue_all(tour.cost_prose(design, costs, reference))

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
