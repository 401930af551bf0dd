"""Plot data that overlays the items of a stage: one long CSV per comparison, the item in a
``series`` column, drawn by the top-level ``plots:`` of dvc.yaml with the ``series`` template
(``.dvc/plots/series.json``: one line per series, line style per revision), so ``dvc plots show``
compares the schedules, protocols and RL methods, and ``dvc plots diff`` two experiments.

* ``pretrain_train.csv``: iteration, series (schedule), beta, recon, kl (training curves, mean
  over seeds);
* ``sgmcmc_bma.csv``: sample, wall_s, grad_evals, series (protocol-W), bma_accuracy,
  bma_log_likelihood (the running Bayesian model average);
* ``rl_return.csv``: env_steps, series (method-W), return_mean (evaluation return, mean over
  seeds).
"""

from __future__ import annotations

from typing import Any

from betamcmc.core import pipeline
from betamcmc.core.io import csv_text, read_csv


def _cell(value: Any) -> str:
    """A cell of an overlay: the series name as it is, every number (the first column too) to
    6 significant figures."""
    return value if isinstance(value, str) else f"{value:.6g}"


def _long(series: dict[str, dict[str, list[float]]], columns: tuple[str, ...]) -> str:
    """``first column, series, other columns`` rows of every series' table."""
    head = [columns[0], "series", *columns[1:]]
    rows = [
        {"series": name, **{c: table[c][i] for c in columns}}
        for name, table in series.items()
        for i in range(len(table[columns[0]]))
    ]
    return csv_text(head, rows, cell=_cell)


def overlay_tables(found: dict[str, dict[str, pipeline.StageItem]]) -> dict[str, str]:
    """File name -> CSV text of every overlay (``found``: :func:`results.collect.items`)."""
    train = {k: read_csv(s.path("_train.csv")) for k, s in found["pretrain"].items()}
    bma = {}
    for key, stage in found["sgmcmc"].items():
        acc = read_csv(stage.path("_bma_accuracy.csv"))
        loglik = read_csv(stage.path("_bma_log_likelihood.csv"))
        bma[key] = {**acc, "bma_log_likelihood": loglik["bma_log_likelihood"]}
    returns = {k: read_csv(s.path("_curve.csv")) for k, s in found["rl"].items()}
    return {
        "pretrain_train.csv": _long(train, ("iteration", "beta", "recon", "kl")),
        "sgmcmc_bma.csv": _long(
            bma, ("sample", "wall_s", "grad_evals", "bma_accuracy", "bma_log_likelihood")
        ),
        "rl_return.csv": _long(returns, ("env_steps", "return_mean")),
    }
