"""The sgmcmc stages end to end on a tiny config: an item through the real stage script (with its
MLflow run), then the SGD baseline, the report and the consistency study in-process."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from betamcmc.params import load_params
from betamcmc.sgmcmc.samples import read_samples

from conftest import run_stage

pytestmark = pytest.mark.slow


def check_item(repo: Path, protocol: str, workers: int) -> None:
    item = f"{protocol}-w{workers}"
    m = json.loads((repo / "metrics" / "sgmcmc" / f"{item}.json").read_text())
    assert m["protocol"] == protocol and m["workers"] == workers and m["samples"] == 12
    assert 0.0 <= m["accuracy"] <= 1.0 and m["log_likelihood"] <= 0.0 and 0.0 <= m["ece"] <= 1.0
    assert m["bytes_total"] > 0 and m["dead_workers"] == 0
    rows = (repo / "metrics" / "sgmcmc" / f"{item}_bma_accuracy.csv").read_text().splitlines()
    assert rows[0] == "sample,wall_s,grad_evals,bma_accuracy" and len(rows) == 13
    out = repo / "models" / "sgmcmc" / item
    assert len(read_samples(out)) == 12 and (out / "run.json").exists()
    assert not (repo / "models" / "sgmcmc" / f"{item}.partial").exists()


def test_sgmcmc_stages_write_every_output(tiny_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_stage(tiny_repo, "sgmcmc", "elastic", "2")
    check_item(tiny_repo, "elastic", 2)
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tiny_repo / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.run_name for r in runs] == ["sgmcmc@elastic-w2"]
    assert runs[0].data.metrics["accuracy"] >= 0.0 and runs[0].data.params["sgmcmc.period"] == "2"

    from betamcmc.sgmcmc.baseline import run_sgd
    from betamcmc.sgmcmc.consistency import run_study
    from betamcmc.sgmcmc.experiment import run_item
    from betamcmc.sgmcmc.report import write_report

    monkeypatch.chdir(tiny_repo)
    params = load_params("params.yaml")
    run_item(params, "single", 1, track=False)
    check_item(tiny_repo, "single", 1)
    sgd = run_sgd(params, track=False)
    assert sgd["steps"] == 40 and 0.0 <= sgd["accuracy"] <= 1.0
    assert json.loads((tiny_repo / "metrics" / "sgmcmc_sgd.json").read_text()) == sgd
    write_report(Path("metrics/sgmcmc"), Path("metrics/sgmcmc_sgd.json"), Path("reports/sgmcmc"))
    table = (tiny_repo / "reports" / "sgmcmc" / "table.md").read_text()
    assert "| single-w1 |" in table and "| elastic-w2 |" in table and "SGD (40 steps)" in table
    for fig in (
        "accuracy_vs_time.png",
        "loglik_vs_time.png",
        "speedup_vs_workers.png",
        "bytes.png",
    ):
        assert (tiny_repo / "reports" / "sgmcmc" / fig).stat().st_size > 1000
    c = run_study(
        params, Path("reports/sgmcmc_consistency"), Path("metrics/sgmcmc_consistency.json")
    )
    assert set(c["runs"]) == {"single-tau1", "downpour-tau1", "downpour-tau4"}
    assert all(r["mean_error"] >= 0 and r["samples"] == 20 for r in c["runs"].values())
    assert 0.2 < c["reference"]["acceptance"] <= 1.0
    assert (tiny_repo / "reports" / "sgmcmc_consistency" / "consistency.png").exists()
    assert sorted(os.listdir(tiny_repo / "models" / "sgmcmc")) == ["elastic-w2", "single-w1"]
