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
# # Large batches find sharp minima?
#
# **Question.** Trained with the same hyper-parameters, do networks trained with large
# batches end in *sharper* regions of the training loss than networks trained with small
# batches, and is that why they generalize worse? Three claims are tested here:
#
# * **A1** {cite}`yao2018hessian`: the top eigenvalues of the Hessian of the training loss,
#   computed over the whole training set at the end of training, grow with the batch size.
# * **E1** {cite}`keskar2017large`: large-batch methods converge to sharp minimizers and
#   small-batch methods to flat ones, measured by Keskar's $\epsilon$-sharpness (the largest
#   relative rise of the training loss in a small box around the solution) and seen in the
#   loss along the line joining a small-batch and a large-batch solution.
# * **A5** {cite}`yao2018hessian`: saddle points are not the cause of the gap, even at full
#   batch: the large-batch solutions have no significant negative curvature.
#
# **Setting.** Two networks, by default (the `quick` profile) on MNIST-1D
# {cite}`greydanus2024mnist1d`: an MLP without normalization and a small CNN with batch
# normalization. A sweep of batch sizes from a small one to the full training set, the same
# learning rate, momentum and schedule for every batch size, no scaling rule, no ghost batch
# norm, five seeds (every verdict is also recomputed with each seed left out). To keep the
# chapter's time at the `quick` profile, the sweep has three batch sizes (50, 200 and 4000;
# a fourth, 1000, was dropped) and the loss planes 17 points per axis instead of 21. Each run stops by
# one of two rules, and every result is shown for both:
#
# * **fixed epochs**, as in the papers: every batch size makes the same number of passes over
#   the data (so large batches make far fewer updates);
# * **training-loss threshold**: each run trains until its training loss (evaluated over the
#   whole training set) is at most a target, so an under-trained network is not mistaken for
#   a sharp one; runs that miss the target within an epoch budget are reported and left out
#   of that rule's verdicts.
#
# Curvature is measured with `largebatch.hessian` (Lanczos on exact Hessian-vector products
# over the full training set, in evaluation mode; Hutchinson's estimator for the trace;
# stochastic Lanczos quadrature for the spectral density {cite}`ghorbani2019investigation`)
# and with `largebatch.landscape` (Keskar sharpness, interpolation and loss planes with
# filter-normalized directions {cite}`li2018visualizing`).

# %% tags=["parameters", "hide-input"]
dataset: str = "mnist1d"  # data set: mnist1d (generated locally), mnist, fashion_mnist, cifar10, cifar100, svhn
models: list[str] = ["mnist1d_mlp", "mnist1d_cnn"]  # networks of the batch-size sweep, from largebatch.models.MODELS
model: str = "mnist1d_mlp"  # network compared in detail (interpolation, planes, spectra, smallest eigenvalue); one of models
num_samples: int = 5000  # MNIST-1D only: samples generated, 80% for training
batch_sizes: list[int] = [50, 200, 4000]  # increasing batch sizes; 4000 is the whole MNIST-1D training set
epochs: int = 20  # fixed-epoch rule: passes over the training data, the same for every batch size
target_train_loss: float = 0.1  # loss-threshold rule: stop once the full training loss is at most this
max_epochs: int = 1500  # loss-threshold rule: epoch budget; runs that miss the target are reported
lr: float = 0.05  # learning rate, the same for every batch size (no scaling rule)
momentum: float = 0.9  # SGD momentum
seeds: list[int] = [0, 1, 2, 3, 4]  # seeds of initialization and data order (one run per batch size and seed)
eval_every: int = 5  # epochs between evaluations; the loss threshold is checked at these
hessian_top_k: int = 1  # top Hessian eigenvalues per run (Lanczos, full training set); the figures use the largest
hessian_tol: float = 1e-3  # relative tolerance of the eigenvalue solver
trace_probes: int = 10  # Hutchinson probes per Hessian trace estimate
keskar_eps: float = 1e-3  # Keskar's box half-width relative to |w_i| + 1
keskar_iterations: int = 10  # L-BFGS-B iterations of the sharpness maximization
landscape_points: int = 17  # grid points per axis of the loss planes
landscape_radius: float = 1.0  # extent of the random planes, in filter-normalized direction units
eigen_radius: float = 2.0  # extent along the Hessian eigenvectors (Euclidean distance in weight space)
density_runs: int = 3  # stochastic Lanczos quadrature: random start vectors
density_steps: int = 40  # stochastic Lanczos quadrature: Lanczos steps per start vector
detail_rule: str = "threshold"  # stopping rule of the solutions compared in detail: epochs or threshold
num_threads: int = 1  # torch CPU threads (0: torch's default); these small networks run best on one
augmentation: str = "none"  # training batches: none, or crop_flip (pad 4, random crop, flip)

# %% [markdown]
# ## The design
#
# The parameters above (collapsed; papermill replaces them) make the runs below. Every
# configuration is trained once and cached; the record of each run holds its final
# training and test metrics and the curvature of its final weights (top eigenvalue,
# smallest eigenvalue for the network compared in detail, trace). Keskar's sharpness is
# measured afterwards on each saved network and cached beside its record, and so are the
# landscapes and spectral densities of the two solutions compared in detail.

# %%
from largebatch import notebook
from largebatch.studies import sharp_minima as study

design = study.design(globals())
design.table()

# %%
tables = study.tables(design)

# %% [markdown]
# Under the loss-threshold rule every run stops at the first evaluation where its
# training loss is at most the target; the table below says how many epochs and updates
# that took, and whether the target was reached within the budget.

# %%
study.reach_table(tables)

# %% [markdown]
# ## Accuracy and generalization gap
#
# Each point is the mean over seeds; error bars are one standard error. Under the
# loss-threshold rule only runs that reached the target are shown.

# %%
study.accuracy_table(tables)

# %%
study.accuracy_figure(tables)

# %% [markdown]
# (fig-a1)=
# ## Curvature against batch size (A1)
#
# The largest eigenvalue and the trace of the Hessian of the mean training loss over the
# whole training set, at the end of every run (log axes).

# %%
study.hessian_figure(tables)

# %% [markdown]
# (fig-e1)=
# ## Keskar sharpness against batch size (E1)
#
# $100\,(\max_{|y_i| \le \epsilon(|x_i|+1)} f(x+y) - f(x)) / (1 + f(x))$ in the full
# parameter space, maximized approximately with L-BFGS-B from a random point of the box; the
# value is a lower bound of the exact maximum.

# %%
study.keskar_figure(tables)

# %% [markdown]
# ## A small-batch and a large-batch solution, in detail
#
# The two ends of the sweep (smallest and largest batch, first seed) for the network
# compared in detail, under the stopping rule named by the `detail_rule` parameter. First
# the loss and accuracy along the straight line
# $\theta(\alpha) = \alpha\,\theta_{LB} + (1-\alpha)\,\theta_{SB}$, $\alpha \in [-1, 2]$
# (Keskar et al., Fig. 3): a sharp minimum shows as a narrow valley around its end.

# %%
study.interpolation_figure(tables)

# %% [markdown]
# Next, the training loss on a plane through each solution spanned by two random,
# filter-normalized directions {cite}`li2018visualizing` (the same random draw for both, each
# rescaled to its own network's filters), and on the plane of its two top Hessian
# eigenvectors, whose coordinates are plain Euclidean distances in weight space, so both
# solutions are seen at the same absolute scale.

# %%
study.random_planes_figure(tables)

# %%
study.eigen_planes_figure(tables)

# %%
study.eigen_lines_figure(tables)

# %% [markdown]
# ## Spectral densities
#
# The density of the Hessian eigenvalues of both solutions, by stochastic Lanczos
# quadrature {cite}`ghorbani2019investigation` (log density axis: a bulk near zero and a few
# outliers).

# %%
study.density_figure(tables)

# %% [markdown]
# (fig-a5)=
# ## Negative curvature (A5)
#
# For the network compared in detail every run of the loss-threshold rule also records the
# smallest (most negative) eigenvalue of the same full-data Hessian. A saddle point would show a negative eigenvalue
# comparable in size to the top one; the ratio $|\lambda_{\min}| / \lambda_{\max}$ (0 when no
# eigenvalue is negative) says how much negative curvature there is relative to the positive.

# %%
study.saddle_table(tables)

# %% [markdown]
# ## Verdicts
#
# Criteria, fixed before the runs:
#
# * **A1**: for each network and stopping rule, the Spearman rank correlation between batch
#   size and top Hessian eigenvalue over all usable runs (seeds pooled) is at least 0.5 with a
#   two-sided p-value below 0.05. The claim is *reproduced* if that holds in every setting,
#   *partly* if in some.
# * **E1**: the same test with Keskar's sharpness in place of the eigenvalue.
# * **A5**: under the loss-threshold rule (the only one whose solutions are near stationary
#   points, where "saddle" has a meaning), every run of the largest batch size has
#   $|\lambda_{\min}| \le 0.1\,\lambda_{\max}$. It is *inconclusive* if no such run reached the
#   target.

# %%
study.record_verdicts(tables)

# %% tags=["remove-input"]
notebook.glue_all(study.prose(tables))

# %% [markdown]
# ## What we measured
#
# **Runs.** {glue:text}`num_runs` runs on {glue:text}`dataset_name`: batch sizes {glue:text}`small_batch` to
# {glue:text}`large_batch` ({glue:text}`largest_share`), seeds per setting:
# {glue:text}`num_seeds`, learning rate {glue:text}`lr:.3f` for every batch size. Under the fixed-epoch rule every run made
# {glue:text}`epochs` passes over the data; under the loss-threshold rule every run trained
# until its training loss was at most {glue:text}`target_loss:.3f`, within at most
# {glue:text}`max_epochs` epochs ({glue:text}`missed_target` runs missed the target and are
# left out of that rule's figures and verdicts).
#
# **Accuracy.** For {glue:text}`m0_epochs_name` with fixed epochs, the test accuracy goes
# from {glue:text}`m0_epochs_test_small:.3f` at batch {glue:text}`small_batch`
# ({glue:text}`m0_epochs_steps_small:.0f` updates) to {glue:text}`m0_epochs_test_large:.3f` at
# batch {glue:text}`large_batch` ({glue:text}`m0_epochs_steps_large:.0f` updates); trained to
# the loss threshold, from {glue:text}`m0_threshold_test_small:.3f` to
# {glue:text}`m0_threshold_test_large:.3f` ({glue:text}`m0_threshold_steps_large:.0f` updates
# at the largest batch). For {glue:text}`m1_epochs_name` the same numbers are
# {glue:text}`m1_epochs_test_small:.3f` to {glue:text}`m1_epochs_test_large:.3f` (fixed
# epochs) and {glue:text}`m1_threshold_test_small:.3f` to
# {glue:text}`m1_threshold_test_large:.3f` (loss threshold). Under fixed epochs a larger
# batch also makes fewer updates and may stop at a higher training loss; the
# loss-threshold rule compares solutions at (about) the same training loss.
#
# **A1 (top eigenvalue): {glue:text}`verdict_a1`** ({glue:text}`a1_evidence`). The mean top
# eigenvalue goes from {glue:text}`m0_epochs_eig_small:.3f` to
# {glue:text}`m0_epochs_eig_large:.3f` ({glue:text}`m0_epochs_name`, fixed epochs;
# {glue:text}`m0_epochs_a1`) and from {glue:text}`m0_threshold_eig_small:.3f` to
# {glue:text}`m0_threshold_eig_large:.3f` (loss threshold; {glue:text}`m0_threshold_a1`);
# for {glue:text}`m1_epochs_name` from {glue:text}`m1_epochs_eig_small:.3f` to
# {glue:text}`m1_epochs_eig_large:.3f` (fixed epochs; {glue:text}`m1_epochs_a1`) and from
# {glue:text}`m1_threshold_eig_small:.3f` to {glue:text}`m1_threshold_eig_large:.3f`
# (loss threshold; {glue:text}`m1_threshold_a1`).
#
# **E1 (Keskar sharpness): {glue:text}`verdict_e1`** ({glue:text}`e1_evidence`). The mean
# sharpness goes from {glue:text}`m0_epochs_keskar_small:.3f` to
# {glue:text}`m0_epochs_keskar_large:.3f` ({glue:text}`m0_epochs_name`, fixed epochs;
# {glue:text}`m0_epochs_e1`) and from {glue:text}`m0_threshold_keskar_small:.3f` to
# {glue:text}`m0_threshold_keskar_large:.3f` (loss threshold; {glue:text}`m0_threshold_e1`);
# for {glue:text}`m1_epochs_name` from {glue:text}`m1_epochs_keskar_small:.3f` to
# {glue:text}`m1_epochs_keskar_large:.3f` (fixed epochs; {glue:text}`m1_epochs_e1`) and from
# {glue:text}`m1_threshold_keskar_small:.3f` to {glue:text}`m1_threshold_keskar_large:.3f`
# (loss threshold; {glue:text}`m1_threshold_e1`). The interpolation and the loss planes above show the same
# two solutions of {glue:text}`detail_model` ({glue:text}`detail_rule` rule; their runs ended
# with status {glue:text}`detail_small_status` and {glue:text}`detail_large_status`).
#
# **A5 (saddles): {glue:text}`verdict_a5`** ({glue:text}`a5_evidence`). For
# {glue:text}`detail_model` trained to the loss threshold, the smallest eigenvalue is on
# average {glue:text}`lmin_small:.4f` at batch {glue:text}`small_batch` and
# {glue:text}`lmin_large:.4f` at batch {glue:text}`large_batch`, that is
# {glue:text}`ratio_small:.4f` and {glue:text}`ratio_large:.4f` of the top eigenvalue. The
# spectral densities put a share of {glue:text}`negative_mass_small:.4f` (small batch) and
# {glue:text}`negative_mass_large:.4f` (large batch) of their mass on eigenvalues below
# -1% of the solution's top eigenvalue (the bulk near zero straddles zero by less).
#
# **Caveats.** These are two small networks on a small data set, a handful of seeds and one
# learning rate; the papers used CIFAR-10/100 and MNIST with larger networks (rerun with
# `--profile paper` on a GPU). Keskar's sharpness is a lower bound found by a few L-BFGS-B
# iterations, and both it and the Hessian depend on the parametrization: batch
# normalization makes the CNN's loss invariant to the scale of most weights, so its
# curvature can change without any change of the function. Whether a sharper solution is
# *why* the large batch generalizes worse is not settled by a correlation; the next chapter
# tests the competing explanation, too few updates {cite}`hoffer2017train`.
