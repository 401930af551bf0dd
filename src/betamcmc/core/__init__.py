"""The base every stage runs, whatever its family: params.yaml read and validated (``paramfile``,
``schema``, the shared sampler and chain blocks in ``chainparams``), dvc.yaml read as the map
(``pipeline``), the stage entry point (``runner``), atomic writes and the one CSV / JSON helpers
(``io``), the errors and their exit codes (``errors``), signals (``stopping``), the check of
processes against cores (``resources``), statistics over seeds (``stats``), jobs in worker
processes (``parallel``), model files (``checkpoint``) and the allocator setting of training
(``heap``).

dvc.yaml lists this folder as one dependency of every stage, and nothing here imports another
package of betamcmc (``tests/test_imports.py``).
"""
