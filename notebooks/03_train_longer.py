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
# # Train longer, generalize better?
#
# **Question.** Is the large-batch generalization gap a property of the batch size itself,
# or of the *number of updates* a large batch makes in a fixed number of epochs? Hoffer,
# Hubara and Soudry {cite}`hoffer2017train` argue the second and close the gap with three
# changes to the large-batch run. The claims tested here:
#
# * **B1**: in the initial high-learning-rate phase, the distance of the weights from their
#   initialization, $\|w_t - w_0\|$, grows logarithmically with the number of updates $t$
#   ("ultra-slow diffusion"), not like the $\sqrt{t}$ of a random walk on a flat landscape;
# * **B2**: *regime adaptation* (multiply the epochs and every learning-rate milestone by
#   $B/B_0$, so the large batch makes as many updates as the small one) closes the gap;
# * **B3**: *ghost batch normalization* (normalize each chunk of the large batch, of the small
#   batch's size, with its own statistics) reduces the gap without extra updates;
# * **B4**: scaling the learning rate by $\sqrt{B/B_0}$ (which keeps the covariance of the
#   update constant) reduces the gap; Hoffer et al.'s code also clips the gradient norm, at 5,
#   and so do all runs of this chapter.
#
# A related claim {cite}`jastrzebski2017three`: the ratio of learning rate to batch size
# sets the noise scale of SGD, and a higher ratio leads to wider minima. We compare a fixed
# learning rate with a learning rate scaled linearly with the batch size (constant ratio,
# as in {cite}`goyal2017accurate`).
#
# **Setting.** By default (the `quick` profile) MNIST-1D {cite}`greydanus2024mnist1d` with an
# MLP with batch normalization (the counterpart of Hoffer et al.'s fully connected F1, which
# the `paper` profile trains on MNIST), SGD with momentum, a multistep
# schedule (learning rate divided by 10 at each milestone), several seeds. Every run records
# $\|w_t - w_0\|$ over all trainable parameters at log-spaced updates and the top eigenvalue
# of the full-data Hessian of its final weights.

# %% tags=["parameters", "hide-input"]
dataset: str = "mnist1d"  # data set: mnist1d (generated locally), mnist, fashion_mnist, cifar10, cifar100, svhn
model: str = "mnist1d_mlp"  # network, one of largebatch.models.MODELS; it needs batch norm for ghost batch norm
model_options: dict = {"batch_norm": True}  # keyword options of the network (largebatch.models)
num_samples: int = 5000  # MNIST-1D only: samples generated, 80% for training
small_batch: int = 50  # batch size B0 of the small-batch baseline (the base of every scaling rule)
large_batch: int = 1000  # batch size B of the large-batch runs
batch_sizes: list[int] = [50, 200, 1000]  # batch sizes of the distance and learning-rate/batch-size study
ghost_batch_size: int = 50  # ghost batch size of the ghost-batch-norm runs
epochs: int = 20  # epochs of every run without regime adaptation
milestones: list[float] = [10.0, 15.0]  # epochs at which the learning rate is divided by 10
lr: float = 0.05  # learning rate at batch B0
momentum: float = 0.9  # SGD momentum
clip_grad_norm: float = 5.0  # gradient-norm clipping of every run, as in Hoffer et al.'s code
seeds: list[int] = [0, 1, 2, 3, 4]  # seeds of initialization and data order
fit_start: int = 10  # first update of the log-law fit window (before it the walk is still ballistic)
hessian_tol: float = 1e-3  # relative tolerance of the top-eigenvalue solver
eval_every: int = 5  # epochs between evaluations
num_threads: int = 1  # torch CPU threads (0: torch's default); these small networks run best on one

# %% [markdown]
# ## The design
#
# The parameters above (collapsed; papermill replaces them) make the runs below: Hoffer et
# al.'s table, one change per row, and the learning-rate/batch-size study. Each row is
# trained once per seed and cached (a configuration that appears in both studies is
# trained once); every run records $\|w_t - w_0\|$ at log-spaced updates and the top
# eigenvalue of the full-data Hessian of its final weights.

# %%
from largebatch import notebook
from largebatch.studies import train_longer as study

design = study.design(globals())
design.table()

# %%
tables = study.tables(design)

# %% [markdown]
# (fig-b1)=
# ## Distance from initialization (B1)
#
# $\|w_t - w_0\|$ against the number of updates on a log axis, averaged over seeds, for the
# fixed-learning-rate runs of every batch size and the large-batch run with regime
# adaptation. A logarithmic law is a straight line here. The dashed lines are least-squares
# fits of $a + b \ln t$ over the initial high-learning-rate phase: from update
# `fit_start` to the first milestone.

# %%
study.distance_figure(tables)

# %%
study.distance_fits(tables)

# %% [markdown]
# (fig-gap)=
# ## Closing the gap (B2, B3, B4)
#
# Hoffer et al.'s table for this setting: each row adds one change to the row above it.
# Mean and standard error over seeds of the final accuracies, the number of updates and the
# top Hessian eigenvalue of the final weights (full training set).

# %%
study.gap_table(tables)

# %%
study.gap_figure(tables)

# %% [markdown]
# (fig-lr-over-b)=
# ## Learning rate / batch size (Jastrzebski et al.)
#
# The same network at every batch size with a fixed learning rate (the ratio lr/B falls as
# B grows) or with the learning rate scaled linearly with B (the ratio stays at its value
# for B0), the same number of epochs for all. Diverged runs are left out.

# %%
study.ratio_figure(tables)

# %%
study.ratio_table(tables)

# %% [markdown]
# ## Verdicts
#
# Criteria, fixed before the runs. B2-B4 compare rows of the table with the paired test by
# seed: at a seed every row starts from the same initial weights and draws the same sequence
# of training-set permutations (cut into batches of its own size), so each comparison is the
# mean over seeds of the per-seed difference, and its standard error is that of those
# differences.
#
# * **B1**: over the high-learning-rate window, the log law fits the seed-averaged distance
#   of every fixed-learning-rate batch size with $R^2 \ge 0.95$, and the fitted power-law
#   exponent is below 1/2 (slower than a random walk).
# * **B2**: the large-batch gap (baseline minus "no fix") exceeds two standard errors, and
#   with all fixes and regime adaptation the large batch is within two standard errors of
#   the baseline (*partly* if it beats "no fix" by two standard errors but stays below).
# * **B3**: adding ghost batch norm raises the test accuracy over the row above it by more
#   than two standard errors.
# * **B4**: the $\sqrt{B/B_0}$ learning rate (with clipping) raises the test accuracy over "no
#   fix" by more than two standard errors.
# * **J1** (Jastrzebski et al.): the top eigenvalue falls as lr/B rises: Spearman rho between B/lr
#   and the top eigenvalue, over all non-diverged runs of the ratio study, at least 0.5 with
#   p < 0.05.
#
# Diverged runs are left out of every mean (in B2-B4 with the run of the same seed they pair
# with) and counted in the verdicts' evidence.

# %%
study.record_verdicts(tables)

# %% tags=["remove-input"]
notebook.glue_all(study.prose(tables))

# %% [markdown]
# ## What we measured
#
# **B1 (logarithmic distance): {glue:text}`verdict_b1`** ({glue:text}`b1_evidence`). For the
# baseline batch {glue:text}`small_batch`, the fit over updates {glue:text}`fit_start` to the
# first milestone gives a slope of {glue:text}`fit_b_small:.3f` per unit of $\ln t$ with
# $R^2 =$ {glue:text}`fit_r2_small:.3f`; a power law fitted to the same points has exponent
# {glue:text}`fit_exp_small:.3f` (a random walk would have 0.5). At the end of its
# high-learning-rate phase the baseline is at distance {glue:text}`distance_small:.2f` from its
# initialization, the large batch at {glue:text}`distance_large:.2f` (the same learning rate,
# fewer updates) and, with all fixes and regime adaptation, at
# {glue:text}`distance_adapted:.2f` (as many updates as the baseline).
#
# **The gap.** With batch {glue:text}`small_batch` the baseline reaches a test accuracy of
# {glue:text}`row0_test:.3f` in {glue:text}`row0_steps:.0f` updates; batch
# {glue:text}`large_batch` ({glue:text}`batch_ratio:.0f` times larger) with the same
# {glue:text}`epochs` epochs makes {glue:text}`row1_steps:.0f` updates and reaches
# {glue:text}`row1_test:.3f`.
#
# **B4 (square-root learning rate): {glue:text}`verdict_b4`** ({glue:text}`b4_evidence`):
# {glue:text}`row2_test:.3f` with the learning rate multiplied by
# $\sqrt{B/B_0}$ and the gradient norm clipped at {glue:text}`clip:.1f` (as every run here).
#
# **B3 (ghost batch norm): {glue:text}`verdict_b3`** ({glue:text}`b3_evidence`):
# {glue:text}`row3_test:.3f` with ghost batches of {glue:text}`ghost_batch_size` samples, at
# the same {glue:text}`row3_steps:.0f` updates.
#
# **B2 (regime adaptation): {glue:text}`verdict_b2`** ({glue:text}`b2_evidence`):
# {glue:text}`row4_test:.3f` after {glue:text}`ra_epochs:.0f` epochs
# ({glue:text}`row4_steps:.0f` updates, as many as the baseline's). The top Hessian eigenvalue
# of the final weights is {glue:text}`row0_eig:.3f` for the baseline,
# {glue:text}`row1_eig:.3f` for the large batch without fixes and {glue:text}`row4_eig:.3f`
# with all of them. These eigenvalues are taken at different training losses (see the
# table): the Hessian of the cross-entropy shrinks as the loss goes to zero, so a run
# trained to a lower loss looks flatter for that reason alone; the previous chapter
# compares curvature at equal training loss.
#
# **Learning rate / batch size: {glue:text}`verdict_ratio`** ({glue:text}`ratio_evidence`).
# From batch {glue:text}`ratio_small_batch` to {glue:text}`ratio_large_batch`, the test
# accuracy goes from {glue:text}`fixed_test_small:.3f` to {glue:text}`fixed_test_large:.3f`
# with a fixed learning rate and from {glue:text}`const_test_small:.3f` to
# {glue:text}`const_test_large:.3f` with lr/B constant; the top eigenvalue from
# {glue:text}`fixed_eig_small:.3f` to {glue:text}`fixed_eig_large:.3f` (fixed lr) and from
# {glue:text}`const_eig_small:.3f` to {glue:text}`const_eig_large:.3f` (lr/B constant).
# {glue:text}`diverged_ratio_runs` runs of this study diverged.
#
# **Caveats.** One small network on a small data set and {glue:text}`num_seeds` seeds;
# Hoffer et al. used MNIST, CIFAR-10/100 and ImageNet (rerun with `--profile paper` on a
# GPU). Regime adaptation costs {glue:text}`batch_ratio:.0f` times the epochs, so it "closes
# the gap" by spending the same number of updates, not by making large batches cheaper. With
# batch norm, most weights only matter through their direction, so the weight norm, and
# with it the distance from initialization and the Hessian's scale, can drift without
# changing the function.
