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
# # Large batches are easier to attack
#
# **Question.** Are networks trained with large batches more vulnerable to small,
# deliberately chosen input perturbations, and does the curvature of the loss tell us why?
# This chapter measures six claims from the literature on the same small problem:
#
# * **A2** {cite}`yao2018hessian`: with the same hyper-parameters for every batch size,
#   larger batches give lower test accuracy and lower robust accuracy, under the one-step
#   fast gradient sign method (FGSM, {cite}`goodfellow2015explaining`) and under iterated
#   projected gradient descent (PGD, {cite}`madry2018towards`).
# * **C1** {cite}`kamath2020sgd`: keeping the ratio learning rate / batch size constant
#   keeps the robustness almost constant whatever the batch size.
# * **C2** {cite}`kamath2020sgd`: at a fixed learning rate, growing the batch lowers the
#   robustness. The ratio lr/B sets the noise scale of SGD {cite}`jastrzebski2017three`.
# * **C3** {cite}`kamath2020sgd`: momentum helps robustness more when the batch grows at a
#   fixed learning rate than when the ratio lr/B is held constant.
# * **A4** {cite}`yao2018hessian`: adversarial training drives the model to regions with a
#   smaller Hessian spectrum.
# * **A3** {cite}`yao2018hessian`: for a network that is piecewise linear in its input (ReLU)
#   and a softmax cross-entropy loss, the Hessian with respect to the input is
#   $J^\top(\mathrm{diag}(p) - pp^\top)J$ inside each linear region: positive semi-definite
#   with at most $C-1$ nonzero eigenvalues, so finding an adversarial perturbation is a
#   saddle-free ascent; smooth activations (tanh, softplus, GELU) break this.
#
# Each claim gets a criterion stated before the numbers, a figure and a verdict computed from
# this run's measurements. The defaults below are the `quick` profile (MNIST-1D, a small CNN,
# a few minutes on a laptop CPU); the `paper` profile runs CIFAR-10 and MNIST on a GPU.

# %% tags=["parameters", "hide-input"]
dataset: str = "mnist1d"  # data set of the batch-size study: mnist1d (generated locally), mnist, fashion_mnist, cifar10, cifar100, svhn
model: str = "mnist1d_cnn"  # network of the batch-size study, one of largebatch.models.MODELS
model_options: dict = {"width": 16}  # keyword options of that network (largebatch.models; {} for its defaults)
num_samples: int = 5000  # MNIST-1D only: samples generated, 80% for training
epochs: int = 20  # passes over the training data, the same for every batch size
lr: float = 0.05  # learning rate at the smallest batch size (and at every batch size when it is fixed)
momentum: float = 0.9  # SGD momentum of the main comparisons (A2, C1, C2, A4)
low_momentum: float = 0.0  # the second momentum that C2 and C3 compare with
batch_sizes: list[int] = [32, 128, 512]  # batch sizes; the smallest is the reference of the lr/B ratio
seeds: list[int] = [0, 1, 2, 3, 4]  # seeds of initialization and data order; one run per seed and setting
epsilons: list[float] = [0.0, 0.05, 0.1, 0.15, 0.2, 0.3]  # L-inf attack radii in raw input units, must include 0
reference_eps: float = 0.1  # the epsilon quoted in the prose, one of epsilons
pgd_steps: int = 10  # PGD iterations (step 2.5 eps / steps, one random start)
attack_samples: int = 500  # test points attacked (the first ones of the test set)
hessian_tol: float = 1e-3  # relative tolerance of each run's final top Hessian eigenvalue (Lanczos, full training set)
adversarial_fraction: float = 0.5  # A4: share of each batch replaced by FGSM examples
adversarial_eps: float = 0.1  # A4: FGSM radius of the adversarial training examples (input units)
curvature_dataset: str = "mnist1d"  # A3: data set of the input-curvature study
curvature_model: str = "mnist1d_mlp"  # A3: network with an `activation` option
curvature_activations: list[str] = ["relu", "tanh", "softplus", "gelu"]  # A3: activations compared, relu first
curvature_points: int = 60  # A3: test points at which the dense input Hessian is computed
line_length: float = 1.0  # A3: L2 length of the segments along the input gradient (input units)
z_threshold: float = 2.0  # a difference counts when it is this many standard errors from zero
constant_tolerance: float = 0.03  # C1: largest spread across batch sizes still "almost constant" (accuracy units)
indefinite_fraction: float = 0.5  # A3: share of test points with negative curvature that counts as "breaking" PSD
num_threads: int = 1  # CPU threads for torch (1 is fastest for these small models; 0 keeps torch's default)
augmentation: str = "none"  # training batches: none, or crop_flip (pad 4, random crop, flip)

# %% [markdown]
# ## The design
#
# The parameters above (collapsed; papermill replaces them) make the runs below: the
# batch-size grid under both learning-rate regimes and both momenta (the runs at the
# smallest batch are the same run in both regimes, trained once), its two ends in the main
# setting trained again adversarially, and the small MLPs of the input-curvature study.

# %%
from largebatch import notebook
from largebatch.studies import adversarial as study

design = study.design(globals())
design.table()

# %%
tables = study.tables(design)

# %% tags=["remove-input"]
notebook.glue_all(study.prose(tables))

# %% [markdown]
# ## What an epsilon means here
#
# Attacks perturb the raw input; the model normalizes it in its first layer, so every
# epsilon is in the units of the data. An L-inf perturbation of size $\epsilon$ moves every
# coordinate by at most $\epsilon$. To say how large that is, we measure the inputs of the
# attacked test points:

# %%
study.scale_table(tables)

# %% [markdown]
# On average a test input has an RMS value of {glue:text}`input_rms:.3f` and a largest
# coordinate of {glue:text}`input_linf:.3f` (in absolute value). The reference radius
# $\epsilon =$ {glue:text}`reference_eps:.3f` quoted below is therefore
# {glue:text}`reference_eps_rms:.3f` of the RMS signal and {glue:text}`reference_eps_linf:.3f` of
# the largest coordinate; the largest radius tried, {glue:text}`largest_eps:.3f`, is
# {glue:text}`largest_eps_rms:.3f` of the RMS. MNIST-1D inputs are standardized and unbounded,
# so the attacks do not clip to a value range.
#
# ## Training the networks
#
# Every setting is trained once per seed through the cached `experiments.sweep`; the top
# eigenvalue of the Hessian of the training loss (full training set, Lanczos, eval mode) is
# measured at the end of each run. The batch sizes are {glue:text}`small_batch` to
# {glue:text}`large_batch`, every run makes {glue:text}`epochs` passes over the data. Two
# learning-rate regimes share the run at the smallest batch: *fixed lr* keeps
# lr = {glue:text}`lr:.3f` everywhere; *lr/B fixed* scales it linearly with the batch size,
# up to {glue:text}`large_lr_linear:.3f` at the largest batch.

# %%
study.status_table(tables)

# %% [markdown]
# ## Robust accuracy
#
# Each trained network is attacked on the first {glue:text}`attack_samples` test points with
# FGSM and with PGD ({glue:text}`pgd_steps` steps, one random start) at every epsilon. A point
# counts as robust if it is classified correctly clean and at every radius up to epsilon.
# The area under the robust-accuracy curve (mean robust accuracy over the epsilon range,
# `studies.adversarial.area_under_curve`) summarizes a curve in one number. Curves are cached next to
# each run.

# %%
study.robustness_summary(tables)

# %% [markdown]
# (fig-a2)=
# ## A2: same hyper-parameters, growing batch
#
# **Criterion.** With the fixed learning rate and momentum {glue:text}`momentum:.2f`, compare the
# largest batch with the smallest over seeds: test accuracy, and the area under the FGSM and
# the PGD robust-accuracy curves. Each difference must be negative by at least `z_threshold`
# standard errors of the paired test by seed: at a seed both batch sizes start from the same
# initial weights and draw the same training-set permutations (cut into batches of their own
# size), and every PGD attack starts from the same random draw, so the difference is taken
# seed by seed and its error is that of the per-seed differences. All three: *reproduced*,
# some: *partly reproduced*. The top Hessian eigenvalue is shown beside them.

# %%
study.a2_figure(tables)

# %%
study.a2_table(tables)

# %% [markdown]
# **Measured.** From batch {glue:text}`small_batch` to {glue:text}`large_batch` the test accuracy
# goes from {glue:text}`a2_acc_small:.3f` to {glue:text}`a2_acc_large:.3f`
# ({glue:text}`a2_acc_z:.3f` standard errors), the area under the FGSM curve from
# {glue:text}`a2_fgsm_small:.3f` to {glue:text}`a2_fgsm_large:.3f` (z = {glue:text}`a2_fgsm_z:.3f`)
# and under the PGD curve from {glue:text}`a2_pgd_small:.3f` to {glue:text}`a2_pgd_large:.3f`
# (z = {glue:text}`a2_pgd_z:.3f`). At $\epsilon =$ {glue:text}`reference_eps:.3f` the PGD robust
# accuracy is {glue:text}`a2_ref_small:.3f` against {glue:text}`a2_ref_large:.3f`. The top Hessian
# eigenvalue (geometric mean over seeds) is {glue:text}`a2_eig_small:.3f` at the small batch and
# {glue:text}`a2_eig_large:.3f` at the large one, a factor {glue:text}`a2_eig_ratio:.3f`.
# **Verdict on A2: {glue:text}`a2_verdict`.**
#
# Part of a robust-accuracy drop is inherited from the clean accuracy (the curves start at
# it), so the figures below also show the clean accuracy of every setting.
#
# Does the top eigenvalue track robustness beyond this one comparison? Every naturally trained
# run of the grid (both regimes, both momenta, all batch sizes) gives one point:

# %%
study.eigenvalue_figure(tables)

# %% [markdown]
# Over the {glue:text}`eigen_runs` runs, Spearman's rank correlation between the top Hessian
# eigenvalue and the area under the PGD curve is {glue:text}`eigen_rho:.3f` (with the clean
# test accuracy: {glue:text}`eigen_rho_clean:.3f`); $-1$ would mean that a sharper minimum
# always comes with a less robust model, 0 no monotone relation. This is a description of
# these runs, not a verdict: sharpness, accuracy and robustness all change with the
# learning-rate regime at once.
#
# (fig-c)=
# ## C1, C2, C3: the ratio lr/B and momentum
#
# The same grid under both regimes and both momenta: clean test accuracy, area under the PGD
# curve and top Hessian eigenvalue against the batch size (error bars: one standard error
# over seeds).

# %%
study.c_figure(tables)

# %% [markdown]
# **Criteria.**
# *C1*: with lr/B fixed and momentum {glue:text}`momentum:.2f`, the mean area under the PGD curve
# and the mean clean accuracy each vary by at most `constant_tolerance` across batch sizes
# (largest minus smallest mean).
# *C2*: with the fixed learning rate, the area under the PGD curve at the largest batch is
# below that at the smallest batch by at least `z_threshold` standard errors, at both
# momenta ({glue:text}`low_momentum:.2f` and {glue:text}`momentum:.2f`).
# *C3*: at the largest batch, the gain from momentum (area under the PGD curve with momentum
# {glue:text}`momentum:.2f` minus with {glue:text}`low_momentum:.2f`) is larger under the fixed
# learning rate than under lr/B fixed, by at least `z_threshold` standard errors of that
# difference of differences.
# C2 and C3 use the paired test by seed, as A2: every run of the grid at a seed starts from
# the seed's initial weights and data order, whatever its batch size, learning rate or
# momentum (C3: the two momentum gains are differences at each seed, then compared seed by
# seed).

# %%
study.c_table(tables)

# %% [markdown]
# **Measured.** *C1*: with lr/B fixed the mean area under the PGD curve spreads by
# {glue:text}`c1_auc_spread:.3f` across batch sizes and the clean accuracy by
# {glue:text}`c1_acc_spread:.3f` (tolerance {glue:text}`constant_tolerance:.3f`); with the fixed
# learning rate the PGD area spreads by {glue:text}`c1_auc_spread_fixed:.3f`.
# **Verdict on C1: {glue:text}`c1_verdict`.**
#
# *C2*: at the fixed learning rate the area under the PGD curve changes by
# {glue:text}`c2_low_change:.3f` (z = {glue:text}`c2_low_z:.3f`) from the smallest to the
# largest batch with momentum {glue:text}`low_momentum:.2f`, and by {glue:text}`c2_main_change:.3f`
# (z = {glue:text}`c2_main_z:.3f`) with momentum {glue:text}`momentum:.2f`.
# **Verdict on C2: {glue:text}`c2_verdict`.**
#
# *C3*: at the largest batch, momentum changes the area under the PGD curve by
# {glue:text}`c3_gain_fixed:.3f` under the fixed learning rate and by
# {glue:text}`c3_gain_linear:.3f` under lr/B fixed (difference of the two: z =
# {glue:text}`c3_z:.3f`, threshold {glue:text}`z_threshold:.3f`).
# **Verdict on C3: {glue:text}`c3_verdict`.**
#
# Note that momentum also multiplies the effective step size (by about $1/(1-\mu)$), so
# "momentum 0.9 at lr" and "momentum 0 at lr" differ in their noise scale as well; the
# comparison follows the claim's setting (same lr, momentum switched on or off).
#
# (fig-a4)=
# ## A4: adversarial training and the Hessian spectrum
#
# At the smallest and the largest batch (fixed learning rate, momentum
# {glue:text}`momentum:.2f`) we train again with part of every batch replaced by FGSM examples
# and compare with the natural runs above.
#
# **Criterion.** The log of the top Hessian eigenvalue of the adversarially trained network is
# below that of the naturally trained one by at least `z_threshold` standard errors, at each
# of the two batch sizes (both: *reproduced*, one: *partly reproduced*), by the paired test
# by seed: an adversarially trained network starts from the same initial weights and data
# order as its natural twin of the same seed. Clean and robust accuracy are reported beside
# it.

# %%
study.a4_curves_figure(tables)

# %%
study.a4_figure(tables)

# %% [markdown]
# **Measured.** With a fraction {glue:text}`adversarial_fraction:.3f` of each batch replaced by
# FGSM examples of radius {glue:text}`adversarial_eps:.3f`, the top Hessian eigenvalue (geometric
# mean over seeds) goes from {glue:text}`a4_small_eig_natural:.3f` to
# {glue:text}`a4_small_eig_adv:.3f` at batch {glue:text}`small_batch` (z of the log =
# {glue:text}`a4_small_eig_z:.3f`) and from {glue:text}`a4_large_eig_natural:.3f` to
# {glue:text}`a4_large_eig_adv:.3f` at batch {glue:text}`large_batch` (z =
# {glue:text}`a4_large_eig_z:.3f`). Clean accuracy: {glue:text}`a4_small_acc_natural:.3f` →
# {glue:text}`a4_small_acc_adv:.3f` (small batch), {glue:text}`a4_large_acc_natural:.3f` →
# {glue:text}`a4_large_acc_adv:.3f` (large batch); area under the PGD curve:
# {glue:text}`a4_small_auc_natural:.3f` → {glue:text}`a4_small_auc_adv:.3f` and
# {glue:text}`a4_large_auc_natural:.3f` → {glue:text}`a4_large_auc_adv:.3f`.
# **Verdict on A4: {glue:text}`a4_verdict`.**
#
# (fig-a3)=
# ## A3: is the attack a saddle-free problem?
#
# We train the same small MLP with ReLU and with smooth activations, then compute at
# {glue:text}`curvature_points` test points the dense Hessian of the loss with respect to the
# input, in float64 (`largebatch.input_curvature`). The ReLU CNNs of the batch-size study
# (seed {glue:text}`first_seed`, smallest and largest batch; batch norm in eval mode and
# max-pooling are piecewise linear too) join the comparison. An eigenvalue counts as zero when
# its magnitude is below $10^{-8}$ times the largest one, or below the float64 round-off of
# $J^\top A J$ (100 machine epsilons times the squared norm of the logit Jacobian $J$), whichever
# is larger: at points the network classifies with near certainty every eigenvalue is itself
# of the order of round-off (`studies.adversarial.input_curvature_table`).
#
# **Criterion.** Reproduced when (i) every ReLU network has a positive semi-definite input
# Hessian with at most $C-1$ nonzero eigenvalues at every point, (ii) along the input gradient,
# on the segment that stays inside the point's linear region, the ReLU networks' loss is
# convex (no negative second difference beyond round-off) at every point, and (iii) every
# smooth network has a negative eigenvalue at a share of at least `indefinite_fraction` of the
# points.

# %%
study.a3_figure(tables)

# %%
study.curvature_table(tables)

# %%
study.convexity_summary(tables)

# %% [markdown]
# For one test point, the loss of each MLP along its own normalized input gradient, over the
# same length: a ReLU network's curve is convex between kinks (each kink is a region
# boundary), a smooth network's curve can bend either way anywhere.

# %%
study.gradient_line_figure(tables)

# %% [markdown]
# **Measured.** Over the ReLU networks, the input Hessian is positive semi-definite at a share
# {glue:text}`relu_psd_share:.3f` of the points and has at most $C-1 =$
# {glue:text}`num_classes_minus_one` nonzero eigenvalues at a share {glue:text}`relu_rank_share:.3f`
# (largest count seen: {glue:text}`relu_max_nonzero`). Along the input gradient the loss is
# convex inside the linear region at a share {glue:text}`relu_convex_share:.3f` of the points
# (median length of the segment that stays in the region: {glue:text}`relu_region_length:.3f`
# in L2 input units; for comparison, a corner of the L-inf ball of radius
# {glue:text}`reference_eps:.3f` lies {glue:text}`reference_ball_l2:.3f` from its centre). The
# smooth networks ({glue:text}`smooth_names`) have a negative
# eigenvalue at between {glue:text}`smooth_indefinite_min:.3f` and
# {glue:text}`smooth_indefinite_max:.3f` of the points (threshold
# {glue:text}`indefinite_fraction:.3f`). **Verdict on A3: {glue:text}`a3_verdict`.**
#
# Over a fixed segment of length {glue:text}`line_length:.3f`, which crosses many linear
# regions, the ReLU networks' loss is convex at a share {glue:text}`relu_fixed_convex_share:.3f`
# of the points, {glue:text}`fixed_segment_reading`; the smooth networks' loss is convex there at
# a share {glue:text}`smooth_fixed_convex_share:.3f`. The property the claim proves holds inside
# one linear region; how far such a region reaches compared with the attack radius is what the
# segment lengths above measure.
#
# ## Verdicts
#
# Every verdict of this chapter, per setting and overall (the overall one is what the
# reproduction summary shows); diverged runs are left out and counted.

# %%
study.record_verdicts(tables)

# %% [markdown]
# These verdicts come from {glue:text}`num_seeds` seeds of small networks on MNIST-1D; the
# `paper` profile reruns the same cells on CIFAR-10 (batch-size study) and MNIST (input
# curvature).
