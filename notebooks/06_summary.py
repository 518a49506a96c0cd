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
# # Reproduction summary
#
# **Question.** Which claims of the papers hold in this book's runs, at the scale it was
# built with?
#
# Each chapter tests its claims against criteria fixed before the runs and writes its
# verdicts, with the numbers behind them, to a file beside its executed notebook. This page
# only reads those files (`largebatch.summary`): nothing below is typed by hand, and
# building the book from other runs changes it.

# %% tags=["parameters", "hide-input"]
verdicts_dir: str = ""  # verdict dir; "": $LARGEBATCH_VERDICTS_DIR or cwd

# %% tags=["remove-input"]
from IPython.display import HTML

from largebatch import notebook, summary

notebook.check_parameters(globals())
folder = verdicts_dir or None
rows = summary.claim_rows(folder)

# %% [markdown]
# ## Paper by paper

# %% tags=["remove-input"]
HTML(summary.papers_html(rows))

# %% [markdown]
# ## Claim by claim
#
# The verdict reads ✔ *reproduced* (the criterion held), ◐ *partly reproduced* (in some
# settings or parts only), ✘ *not reproduced at this scale*, ? *inconclusive* (within the
# seed noise) or – *not run*. Under it, its stability: *stable* if leaving out any one seed
# and deciding again gives the same verdict, *fragile* (naming the seed) if not,
# *untested* where it was not decided again (too few seeds to leave one out, or a chapter
# that passed its verdicts as values), *not applicable* where the verdict does not rest on
# the seed list (one run per network, as A3's input curvature). The key number carries one standard
# error over seeds; the link leads to the claim's figure.

# %% tags=["remove-input", "full-width"]
HTML(summary.claims_html(rows) + summary.settings_html(summary.setting_rows(folder))
     + summary.criteria_html())

# %% [markdown]
# ## Where these numbers come from
#
# Runs repeat bit for bit on one CPU, not across CPUs: a reader whose numbers differ from
# these compares the machine, the versions and the seeds first.

# %% tags=["remove-input"]
HTML(summary.provenance_html(summary.provenance_rows(folder)))
