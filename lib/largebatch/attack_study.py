"""Moved to :mod:`largebatch.studies.adversarial` (chapter 04's study module).

Kept as an alias while chapter 05 still imports it; it goes once that chapter is on the
study pattern.
"""

from largebatch.studies.adversarial import (  # noqa: F401 - re-exported
    ROUNDOFF_FACTOR,
    area_under_curve,
    check_epsilons,
    check_study,
    convexity_table,
    gradient_line,
    input_curvature_table,
    input_scale,
    per_run,
    robust_curve,
    robustness_table,
    saddle_free_verdict,
    scaling_grid,
)
from largebatch.studies.common import LabelledRun as GridRun, unique_configs  # noqa: F401 - re-exported
