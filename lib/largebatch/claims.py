"""The claims the book tests, and reading back the verdict files the chapters write about them.

:data:`CLAIMS` holds every claim of ``PAPERS.md`` (A1-A5, B1-B4, C1-C3, D1-D2, E1),
Jastrzebski's lr/B claim (J1) and the book's own question on ABSA's cost (D3): the
paper, the statement, the measurement that tests it, the criterion fixed before the
runs, the chapter that measures it, the label of the figure showing it, the statement in
plain words and the settings it is tested in (the book's networks and data beside the
paper's). Chapters write their verdicts with :func:`largebatch.analysis.record_verdicts`;
:func:`read_verdicts` reads those files back (checked against the registry) for the
reproduction summary (:mod:`largebatch.summary`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from largebatch.user_input import env_folder

__all__ = ["CLAIMS", "Claim", "NOT_RUN", "claim", "read_verdicts", "verdicts_dir"]

NOT_RUN = "not run"
VERDICTS_DIR_ENV = "LARGEBATCH_VERDICTS_DIR"


@dataclass(frozen=True)
class Claim:
    """One claim of a paper, as the book tests it."""

    id: str
    paper: str
    statement: str
    measurement: str  # what is measured to test it
    criterion: str  # the pre-registered criterion
    chapter: str  # notebook name (file stem) that measures it
    figure: str  # MyST label of the section showing its figure, in that chapter
    plain: str  # the statement in plain words, short enough for a table cell
    book_setting: str  # the networks and data the book tests it on (default profile)
    paper_setting: str  # the networks and data of the paper

    @property
    def link(self) -> str:
        """Relative link to the figure's anchor in the built book (chapters are siblings)."""
        return f"{self.chapter}.html#{self.figure}"


_YAO18 = "Yao et al. 2018 (arXiv 1802.08241)"
_HOFFER = "Hoffer et al. 2017 (arXiv 1705.08741)"
_KAMATH = "Kamath et al. 2020 (arXiv 2006.11604)"
_ABSA = "Yao et al. 2018, ABSA (arXiv 1810.01021)"
_YAO18_SETTING = "five CNNs and ResNets; MNIST, CIFAR-10/100"
_HOFFER_SETTING = "CNNs, VGG, ResNet-44, WRN; MNIST, CIFAR-10/100, ImageNet"
_KAMATH_SETTING = "image CNNs, natural training"
_ABSA_SETTING = "ResNets and CNNs; CIFAR-10/100, SVHN, TinyImageNet"
_ACCURACY_Z = "mean per-seed difference of test accuracy beyond 2 standard errors (paired test by seed)"

CLAIMS: dict[str, Claim] = {c.id: c for c in [
    Claim("A1", _YAO18, "The top eigenvalues of the loss Hessian grow with the batch size.",
          "Spearman rho between batch size and top Hessian eigenvalue (full training set), "
          "per network and stopping rule",
          "rho >= 0.5 with p < 0.05 in every setting (partly: in some)",
          "02_sharp_minima", "fig-a1",
          "Larger batches end in sharper minima (larger top Hessian eigenvalues).",
          "MLP and CNN, MNIST-1D", _YAO18_SETTING),
    Claim("A2", _YAO18, "Larger batches give lower test accuracy and less robust models.",
          "largest minus smallest batch: test accuracy and area under the FGSM and PGD curves",
          "each difference negative beyond 2 standard errors (paired test by seed; partly: some)",
          "04_adversarial", "fig-a2",
          "Larger batches generalize worse and are easier to attack.",
          "CNN, MNIST-1D", _YAO18_SETTING),
    Claim("A3", _YAO18, "Finding an adversarial perturbation is saddle-free for piecewise-linear "
          "networks; smooth activations break this.",
          "input Hessian spectrum and convexity along the input gradient, ReLU vs smooth networks",
          "ReLU: PSD, rank <= C-1, convex inside the linear region at every point; smooth: "
          "indefinite at a share >= indefinite_fraction of the points",
          "04_adversarial", "fig-a3",
          "Attacking a ReLU network is a saddle-free problem; smooth activations break this.",
          "MLP: ReLU vs tanh, softplus, GELU; MNIST-1D", _YAO18_SETTING),
    Claim("A4", _YAO18, "Adversarial training drives the model to a smaller Hessian spectrum.",
          "log top Hessian eigenvalue, adversarial minus natural training, at two batch sizes",
          "negative beyond 2 standard errors at both batch sizes (paired test by seed; partly: one)",
          "04_adversarial", "fig-a4",
          "Adversarial training leads to flatter minima.",
          "CNN, MNIST-1D", _YAO18_SETTING),
    Claim("A5", _YAO18, "Saddle points are not the cause of the gap, even at full batch.",
          "|smallest| / top Hessian eigenvalue of the largest-batch runs at the loss threshold",
          "<= 0.1 for every such run", "02_sharp_minima", "fig-a5",
          "Saddle points do not explain the large-batch gap.",
          "MLP and CNN, MNIST-1D", _YAO18_SETTING),
    Claim("B1", _HOFFER, "The distance from the initialization grows logarithmically with the "
          "number of updates.",
          "log-law and power-law fits of ||w_t - w_0|| against the step",
          "log-law R^2 >= 0.95 for every batch size and power-law exponent < 0.5",
          "03_train_longer", "fig-b1",
          "Weights drift from their start like the log of the number of steps.",
          "MLP with batch norm, MNIST-1D", _HOFFER_SETTING),
    Claim("B2", _HOFFER, "Regime adaptation (as many updates as the small batch) closes the gap.",
          "test accuracy: small batch, large batch, large batch with adapted regime",
          "a gap beyond 2 standard errors, closed to within 2 standard errors "
          "(partly: better than no adaptation by that margin; paired test by seed)",
          "03_train_longer", "fig-gap",
          "Training longer (as many updates) closes the large-batch gap.",
          "MLP with batch norm, MNIST-1D", _HOFFER_SETTING),
    Claim("B3", _HOFFER, "Ghost batch normalization reduces the gap without extra updates.",
          "test accuracy of the large batch with and without ghost batch norm",
          f"ghost batch norm higher: {_ACCURACY_Z}", "03_train_longer", "fig-gap",
          "Ghost batch norm narrows the gap at no extra updates.",
          "MLP with batch norm, MNIST-1D", _HOFFER_SETTING),
    Claim("B4", _HOFFER, "Scaling the learning rate by sqrt(B / B_base) helps large batches.",
          "test accuracy of the large batch with sqrt-scaled and with unscaled learning rate",
          f"sqrt scaling higher: {_ACCURACY_Z}", "03_train_longer", "fig-gap",
          "A sqrt(B)-scaled learning rate helps large batches.",
          "MLP with batch norm, MNIST-1D", _HOFFER_SETTING),
    Claim("C1", _KAMATH, "A constant lr / batch ratio gives almost constant robustness and "
          "accuracy whatever the batch size.",
          "range over batch sizes of the mean area under the PGD curve and of the clean accuracy "
          "(lr/B fixed)",
          "both ranges <= constant_tolerance (partly: one)", "04_adversarial", "fig-c",
          "With lr / batch fixed, accuracy and robustness barely change with the batch.",
          "CNN, MNIST-1D", _KAMATH_SETTING),
    Claim("C2", _KAMATH, "At a fixed learning rate, growing the batch lowers robustness.",
          "largest minus smallest batch: area under the PGD curve at fixed lr, two momenta",
          "negative beyond 2 standard errors at both momenta (paired test by seed; partly: one)",
          "04_adversarial", "fig-c",
          "At a fixed learning rate, larger batches are less robust.",
          "CNN, MNIST-1D", _KAMATH_SETTING),
    Claim("C3", _KAMATH, "Momentum helps more when the batch varies at a fixed learning rate "
          "than under a constant lr / batch ratio.",
          "momentum gain in PGD area at the largest batch, fixed lr minus lr/B fixed",
          "positive beyond 2 standard errors (paired test by seed)", "04_adversarial", "fig-c",
          "Momentum helps robustness more at a fixed lr than at fixed lr / batch.",
          "CNN, MNIST-1D", _KAMATH_SETTING),
    Claim("D1", _ABSA, "An adaptive batch size driven by the top Hessian eigenvalue with "
          "adversarial training (ABSA) reaches the small-batch accuracy with at least 3x fewer "
          "parameter updates.",
          "test accuracy and parameter updates of ABSA against the small-batch baseline",
          "accuracy not lower by 1 point or more beyond 2 standard errors (paired test by seed), and "
          "the baseline makes at least 3x as many updates (partly: one of the two)",
          "05_adaptive_batch", "fig-d1",
          "ABSA matches small-batch accuracy with 3x fewer updates.",
          "CNN, MNIST-1D", _ABSA_SETTING),
    Claim("D2", _ABSA, "The adaptive batch size alone (ABS) already saves updates; the "
          "adversarial part lowers the final top Hessian eigenvalue and raises robust accuracy.",
          "ABS against the baseline (accuracy, updates); ABSA against ABS (log final top "
          "eigenvalue, PGD robust accuracy)",
          "ABS within 1 point with at least 2x fewer updates; ABSA's eigenvalue lower and robust "
          "accuracy higher beyond 2 standard errors (paired test by seed; partly: some of the four)",
          "05_adaptive_batch", "fig-d2",
          "ABS alone saves updates; the adversarial part flattens and robustifies.",
          "CNN, MNIST-1D", _ABSA_SETTING),
    Claim("D3", "this book, after Smith et al. 2017 and McCandlish et al. 2018",
          "Counting the gradient evaluations spent on Hessian-vector products and adversarial "
          "examples, ABSA beats cheaper ways to grow the batch (a fixed growth schedule, a "
          "gradient-noise-scale controller).",
          "test accuracy and gradient evaluations of ABSA, at its cheapest eigenvalue estimate that "
          "makes the whole-training-set estimate's doubling decision >= 90% of the time, against "
          "each cheaper controller",
          "against each: accuracy not lower by 1 point or more beyond 2 standard errors (paired "
          "test by seed), "
          "and fewer gradient evaluations (partly: some of the four parts)",
          "05_adaptive_batch", "fig-d1",
          "Counting its extra gradients, ABSA beats cheaper batch-growth rules.",
          "CNN, MNIST-1D", "none: the book's own question"),
    Claim("E1", "Keskar et al. 2017 (ICLR)", "Large-batch methods converge to sharp minimizers, "
          "small-batch methods to flat ones.",
          "Spearman rho between batch size and Keskar sharpness, per network and stopping rule",
          "rho >= 0.5 with p < 0.05 in every setting (partly: in some)",
          "02_sharp_minima", "fig-e1",
          "Large batches find sharp minima, small batches flat ones (Keskar sharpness).",
          "MLP and CNN, MNIST-1D", "F1, F2, C1-C4; MNIST, TIMIT, CIFAR-10/100"),
    Claim("J1", "Jastrzebski et al. 2017 (arXiv 1711.04623)", "The ratio lr / batch size sets "
          "the noise scale of SGD; a higher ratio gives wider minima.",
          "Spearman rho between batch / lr and the top Hessian eigenvalue",
          "rho >= 0.5 with p < 0.05", "03_train_longer", "fig-lr-over-b",
          "A higher lr / batch ratio gives flatter minima.",
          "MLP with batch norm, MNIST-1D", "VGG-11, ResNet-32; CIFAR-10"),
]}


def claim(claim_id: str) -> Claim:
    """The registered claim ``claim_id``; ``KeyError`` naming the known ids otherwise."""
    try:
        return CLAIMS[claim_id]
    except KeyError:
        raise KeyError(f"unknown claim {claim_id!r}; registered: {', '.join(CLAIMS)}") from None


def verdicts_dir() -> Path:
    """Where verdict files go: ``$LARGEBATCH_VERDICTS_DIR``, else the working directory (absolute;
    an empty value or a file is a :class:`largebatch.config.ConfigError`)."""
    return env_folder(VERDICTS_DIR_ENV, Path.cwd())


def read_verdicts(folder: str | os.PathLike | None = None) -> dict[str, dict]:
    """Every ``*.verdicts.json`` file in ``folder`` (default :func:`verdicts_dir`), by chapter.

    Fails (``ValueError``) on a file naming an unknown claim or a claim of another chapter.
    """
    folder = Path(folder) if folder is not None else verdicts_dir()
    files = {}
    for path in sorted(folder.glob("*.verdicts.json")):
        content = json.loads(path.read_text())
        for row in content["verdicts"]:
            if row["claim"] not in CLAIMS:
                raise ValueError(f"{path}: unknown claim {row['claim']!r}")
            if CLAIMS[row["claim"]].chapter != content["chapter"]:
                raise ValueError(f"{path}: claim {row['claim']} belongs to chapter "
                                 f"{CLAIMS[row['claim']].chapter}, not {content['chapter']}")
        files[content["chapter"]] = content
    return files
