"""The results of a pipeline run at a glance (the final ``report`` stage).

:mod:`collect` reads every area's metrics files (paths from dvc.yaml), :mod:`summary` picks the
headline numbers (``metrics/summary.json``, the pipeline's only DVC metrics file), :mod:`page`
writes ``reports/index.md``, :mod:`overlays` the plot data that compares the items of a stage,
and :mod:`run` is the stage's work.
"""
