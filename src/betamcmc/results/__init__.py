"""Everything that turns metrics into reports: the reports of each area and the one page.

The area reports: :mod:`vae` (with :mod:`vae_figures`, :mod:`vae_study`, :mod:`vae_study_render`
and :mod:`verdict`; stage ``pretrain_report``), :mod:`rl`, :mod:`sgmcmc` and :mod:`finetune`
(stage ``report``). The page (stage ``report``): :mod:`collect` reads every area's metrics files
(paths from dvc.yaml), :mod:`summary` picks the headline numbers (``metrics/summary.json``, the
pipeline's only DVC metrics file), :mod:`page` writes ``reports/index.md``, :mod:`overlays` the
plot data that compares the items of a stage, and :mod:`run` is the stage's work. The pages under
``docs/results/`` are rendered by :mod:`docs` (``betamcmc results docs``).

No computing package imports this one: an edit here reruns the report stages only
(``tests/test_dvc_deps.py``).
"""
