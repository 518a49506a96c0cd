"""One study module per chapter, all of the same shape.

A chapter notebook is an argument: question, design, figure, verdict. What it computes
lives here, in a module named after the chapter (``sharp_minima``, ``train_longer``,
``adversarial``, ``adaptive_batch``), so that a reader who knows one knows all:

``CHAPTER``
    the chapter's name (its notebook and verdict file).
``Design`` and ``design(globals())``
    the chapter's parameters as a frozen dataclass, one field per notebook parameter,
    validated on construction (types against the notebook's hints, values, and the
    data: a largest batch that does not fit fails here, before any compute); every
    error names the notebook parameter. Its properties are the run configurations the
    design implies; ``Design.runs`` lists them as
    :class:`~largebatch.studies.common.LabelledRun` and ``Design.table()`` shows them
    (one row per setting, what differs, the seeds).
``tables(design) -> Tables``
    trains every run (or reads it from the run cache), makes the cached measurements,
    and returns the tables that the figures and verdicts read.
one function per figure, one per shown table
    ``*_figure(tables)`` draws a figure and saves it under its fixed name;
    ``*_table(tables)`` returns a table as the book shows it.
``verdicts(tables)``, ``restrict(tables, seeds)`` and ``record_verdicts(tables)``
    the claims' verdicts by the criteria the chapter states; the tables as if only
    ``seeds`` had been run (:func:`~largebatch.studies.common.restrict_to_seeds`: frames
    with a ``seed`` column filtered, seed statistics and fits recomputed from the kept
    runs, every other field named with the reason it does not depend on the seeds); and
    the chapter's verdict file written from ``lambda kept: verdicts(restrict(tables,
    kept))``, so that each verdict carries its leave-one-seed-out stability (a verdict
    on one run per network is marked :func:`~largebatch.analysis.seed_independent`).
``prose(tables)``
    the numbers the chapter's text quotes, glued by name.

The notebook then reads::

    from largebatch.studies import train_longer as study
    design = study.design(globals())
    design.table()
    tables = study.tables(design)
    study.gap_figure(tables)
    study.record_verdicts(tables)

and :mod:`largebatch.studies.common` holds what the modules share. Chapter 01 is the
exception: its code is what it teaches, so its calls to :mod:`largebatch.hessian` stay on
the page and :mod:`largebatch.studies.hessian_tour` holds only the rest (its checked
parameters, tables, figure assembly and glued numbers).

Putting a chapter on the pattern (as 02-05 were): move its checks into
``Design.__post_init__`` (same messages: they name the parameter) and its configuration
assembly into ``Design`` properties, keeping every ``RunConfig`` and every
:func:`largebatch.analysis.measure` name as it was, so that the cache keys and the
verdict files do not change; move the cells' computations into ``tables`` and the
functions below it; tag the parameters cell ``hide-input`` beside ``parameters``; leave
in the notebook the calls above and one ``notebook.glue_all(study.prose(tables))`` cell
tagged ``remove-input``. ``tests/test_studies.py`` then checks the fields against the
notebook's parameters and runs the study end to end on tiny runs (add the module to
``STUDIES``).
"""
