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
# verdicts, with the numbers behind them, to a file beside its executed notebook
# (`<chapter>.verdicts.json`). This page reads those files; nothing in the table below is
# typed by hand, and building the book from another profile's executed notebooks changes
# it. A claim whose chapter did not run says *not run*. The number is the value the
# verdict rests on, with one standard error over seeds where it has one; per-setting
# values are listed when a claim is judged in several settings. The link leads to the
# claim's figure in its chapter.

# %% tags=["parameters"]
verdicts_dir: str = ""  # folder of the verdict files ("": $LARGEBATCH_VERDICTS_DIR, else here)

# %% tags=["remove-input"]
from largebatch import claims, notebook

notebook.check_parameters(globals())

# %%
table = claims.summary_table(verdicts_dir or None)

# %% tags=["remove-input"]
shown = table[["claim", "measured", "number", "verdict", "profile", "seeds", "figure"]]
text_columns = [c for c in shown.columns if c != "figure"]  # the figure column is a link
shown.style.hide(axis="index").format(escape="html", subset=text_columns)

# %% [markdown]
# How many claims got each verdict:

# %% tags=["remove-input"]
counts = table["verdict"].value_counts().rename_axis("verdict").reset_index(name="claims")
counts.style.hide(axis="index")

# %% [markdown]
# *Reproduced* means the pre-registered criterion held, *partly reproduced* that it held in
# some settings (or for some of its parts) only, *not reproduced at this scale* that it
# failed on these small networks and data sets, *inconclusive* that the effect was within
# the noise of the seeds. The statements, measurements and criteria of every claim are
# listed below (`largebatch.claims.CLAIMS`).

# %% tags=["remove-input"]
import pandas as pd

registry = pd.DataFrame(
    [
        {
            "claim": c.id,
            "paper": c.paper,
            "statement": c.statement,
            "criterion": c.criterion,
        }
        for c in claims.CLAIMS.values()
    ]
)
registry.style.hide(axis="index")
