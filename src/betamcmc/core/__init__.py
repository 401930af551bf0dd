"""What every stage runs, whatever its family: params.yaml read and validated (``paramfile``,
``schema``), dvc.yaml read as the map (``pipeline``), the stage entry point (``runner``), atomic
writes and the one CSV / JSON helpers (``io``), the errors and their exit codes (``errors``),
signals (``stopping``) and the check of processes against cores (``resources``).

dvc.yaml lists this folder as one dependency of every stage: a module here is one that every
stage imports (``tests/test_dvc_deps.py``), and nothing here imports a stage family's package.
"""
