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
# # Quick start: one small batch, one large batch
#
# **Question.** With the same learning rate and the same number of passes over the data,
# does a network trained with large batches end up as accurate as one trained with small
# batches? This chapter is also a tour of the tools the book uses: a data set generated on
# your machine (MNIST-1D {cite}`greydanus2024mnist1d`), a model from the library, and
# cached runs through `largebatch.experiments`.
#
# The parameters below are the `quick` profile; papermill can replace them
# (`python -m largebatch.reproduce --profile smoke --only 00_quickstart`).

# %% tags=["parameters", "hide-input"]
dataset: str = "mnist1d"  # data set: mnist1d (generated locally), mnist, fashion_mnist, cifar10, cifar100, svhn
model: str = "mnist1d_cnn"  # network, one of largebatch.models.MODELS
num_samples: int = 5000  # MNIST-1D only: samples generated, 80% for training
small_batch: int = 32  # the small batch size
large_batch: int = 1024  # the large batch size
epochs: int = 30  # passes over the training data, the same for both batch sizes
lr: float = 0.05  # learning rate, the same for both batch sizes (no scaling rule)
momentum: float = 0.9  # SGD momentum
seed: int = 0  # seed of the initialization and of the data order
augmentation: str = "none"  # training batches: none, or crop_flip (pad 4, random crop, flip)

# %%
from largebatch import experiments, notebook, plots

notebook.check_parameters(globals())
base = experiments.RunConfig(
    dataset=dataset,
    model=model,
    num_samples=num_samples,
    epochs=epochs,
    lr=lr,
    momentum=momentum,
    seed=seed,
    augmentation=augmentation,
)
sizes = (small_batch, large_batch)
configs = {f"B = {b}": base.replace(batch_size=b) for b in sizes}
bundle = experiments.validate(configs[f"B = {large_batch}"])
print(
    f"{bundle.name}: {bundle.num_train} training and {bundle.num_test} test "
    f"samples of shape {bundle.input_shape}, {bundle.num_classes} classes"
)

# %% [markdown]
# ## Train both
# `experiments.sweep` trains each configuration once and caches the result under a hash of
# the configuration; running this cell again reads the records from disk.

# %%
records = dict(zip(configs, experiments.sweep(list(configs.values()))))
table = experiments.results(records.values())[
    ["batch_size", "epochs", "steps", "train_accuracy", "test_accuracy",
     "wall_time_s"]
]
notebook.show(table)

# %% [markdown]
# ## Learning curves

# %%
histories = {label: experiments.history(r) for label, r in records.items()}
figure = plots.learning_curves(
    histories, metrics=("train_loss", "test_accuracy")
)
plots.save_figure(figure, "quickstart_learning_curves")

# %% tags=["remove-input"]
small, large = (
    records[f"B = {small_batch}"]["final"],
    records[f"B = {large_batch}"]["final"],
)
gap = small["test_accuracy"] - large["test_accuracy"]
notebook.glue_all(
    {
        "small_batch": small_batch,
        "large_batch": large_batch,
        "small_updates": small["steps"],
        "large_updates": large["steps"],
        "small_test_accuracy": small["test_accuracy"],
        "large_test_accuracy": large["test_accuracy"],
        "accuracy_gap": 100 * abs(gap),
        "gap_direction": "lower" if gap > 0 else "higher or equal",
    }
)

# %% [markdown]
# ## What we measured
#
# With batch size {glue:text}`small_batch` the network made {glue:text}`small_updates`
# updates and reached a test accuracy of {glue:text}`small_test_accuracy:.1%`; with batch
# size {glue:text}`large_batch` it made only {glue:text}`large_updates` updates in the same
# number of epochs and reached {glue:text}`large_test_accuracy:.1%`, which is
# {glue:text}`gap_direction` by {glue:text}`accuracy_gap:.1f` percentage points.
#
# Whether this gap is a property of *sharp minima* {cite}`keskar2017large,yao2018hessian`
# or simply of *too few updates* {cite}`hoffer2017train` is what the following chapters
# measure.
