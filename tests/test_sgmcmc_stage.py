"""The sgmcmc stages end to end on a tiny config: every item of the protocol x workers matrix,
the SGD baseline, the report and the consistency study, as the shared pipeline run
(``dvc repro``, conftest ``pipeline``) left them."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import pytest

from betamcmc.params import load_params
from betamcmc.sgmcmc.engine.samples import read_samples

from conftest import PipelineRun

pytestmark = pytest.mark.slow


def check_item(repo: Path, protocol: str, workers: int) -> None:
    item = f"{protocol}-{workers}"
    m = json.loads((repo / "metrics" / "sgmcmc" / f"{item}.json").read_text())
    assert m["protocol"] == protocol and m["workers"] == workers and m["samples"] == 12
    for key in ("accuracy", "log_likelihood", "ece"):  # the seed mean of what each seed measured
        per = [s[key] for s in m["per_seed"]]
        assert m[key] == pytest.approx(sum(per) / len(per)), key
    assert m["bytes_total"] > 0 and m["dead_workers"] == 0
    # two seeds (tiny params): the mean, its spread and the per-seed values
    assert m["n_seeds"] == 2 and [s["seed"] for s in m["per_seed"]] == [0, 1]
    accs = [s["accuracy"] for s in m["per_seed"]]
    assert m["accuracy"] == pytest.approx(sum(accs) / 2)
    assert m["accuracy_ci_low"] <= m["accuracy"] <= m["accuracy_ci_high"]
    assert m["accuracy_std"] == pytest.approx(abs(accs[0] - accs[1]) / 2**0.5)
    assert isinstance(m["converged"], bool)
    # every seed's chains pooled: the workers' chains (single, elastic) or the master's
    per_seed_chains = workers if protocol in ("single", "elastic") else 1
    assert m["chains"] + m["chains_left_out"] == 2 * per_seed_chains
    assert {"rhat_max", "ess_bulk_min", "ess_tail_min"} <= set(m)
    rows = (repo / "metrics" / "sgmcmc" / f"{item}_bma_accuracy.csv").read_text().splitlines()
    assert rows[0] == "sample,wall_s,grad_evals,bma_accuracy" and len(rows) == 13
    out = repo / "models" / "sgmcmc" / item
    assert (out / "run.json").exists()
    assert all(len(read_samples(out / f"seed-{s}")) == 12 for s in (0, 1))
    assert not (repo / "models" / "sgmcmc" / f"{item}.partial").exists()


def test_sgmcmc_stages_write_every_output(pipeline: PipelineRun) -> None:
    repo = pipeline.repo
    params = load_params(repo / "params.yaml")
    items = params.sgmcmc.item_pairs()
    assert len(items) == 4  # single-1, single-2, downpour-2, elastic-2 (the tiny params)
    for protocol, workers in items:
        check_item(repo, protocol, workers)
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], "tags.stage = 'sgmcmc'"
    )
    assert sorted(r.info.run_name for r in runs) == sorted(f"sgmcmc@{p}-{w}" for p, w in items)
    for run in runs:
        item = run.info.run_name.split("@")[1]
        m = json.loads((repo / "metrics" / "sgmcmc" / f"{item}.json").read_text())
        assert run.data.metrics["accuracy"] == m["accuracy"]
        assert run.data.params["sgmcmc.period"] == "2"
        assert run.data.tags["protocol"] == run.data.params["protocol"] == m["protocol"]
        assert run.data.params["workers"] == str(m["workers"]) and "workers" not in run.data.metrics
        assert run.data.tags["pipeline_run"] == runs[0].data.tags["pipeline_run"]

    sgd = json.loads((repo / "metrics" / "sgmcmc_sgd.json").read_text())
    assert sgd["steps"] == 40 and sgd["n_seeds"] == 2
    sgd_accs = [s["accuracy"] for s in sgd["per_seed"]]
    assert sgd["accuracy"] == pytest.approx(sum(sgd_accs) / 2)
    assert sgd["accuracy_std"] == pytest.approx(statistics.stdev(sgd_accs))
    assert sgd["accuracy_std"] is not None and len(sgd["per_seed"]) == 2
    table = (repo / "reports" / "sgmcmc" / "table.md").read_text()
    for protocol, workers in items:
        assert f"| {protocol}-{workers} |" in table
    assert "SGD (40 steps)" in table
    assert "R-hat is at most 1.05" in table and "at least 100" in table
    for protocol, workers in items:  # every unconverged item is flagged
        m = json.loads((repo / "metrics" / "sgmcmc" / f"{protocol}-{workers}.json").read_text())
        flag = f"- {protocol}-{workers}: **unconverged: no posterior conclusion**"
        assert (flag in table) == (not m["converged"])
    comparisons = json.loads((repo / "reports" / "sgmcmc" / "comparisons.json").read_text())
    assert set(comparisons["downpour-2"]) == {"single-1", "SGD"}
    verdicts = ("better", "worse", "indistinguishable")
    assert comparisons["downpour-2"]["single-1"]["accuracy"]["verdict"] in verdicts
    assert "reproduces" not in table and "match or beat" not in table
    for fig in (
        "accuracy_vs_time.png",
        "loglik_vs_time.png",
        "speedup_vs_workers.png",
        "bytes.png",
    ):
        assert (repo / "reports" / "sgmcmc" / fig).stat().st_size > 1000
    c = json.loads((repo / "metrics" / "sgmcmc_consistency.json").read_text())
    assert set(c["runs"]) == {"single-tau1", "downpour-tau1", "downpour-tau4"}
    assert all(r["mean_error"] >= 0 and r["samples"] == 20 for r in c["runs"].values())
    assert 0.2 < c["reference"]["acceptance"] <= 1.0
    assert c["seeds"] == [0, 1] and all(r["n_seeds"] == 2 for r in c["runs"].values())
    assert all(r["mean_error_ci_low"] <= r["mean_error"] for r in c["runs"].values())
    (cmp,) = c["tau_comparisons"]  # downpour tau 4 against tau 1, paired by seed
    assert (cmp["protocol"], cmp["tau"], cmp["against_tau"], cmp["n"]) == ("downpour", 4, 1, 2)
    assert cmp["grows"] == (cmp["error_is"] == "larger")
    consistency_table = (repo / "reports" / "sgmcmc_consistency" / "table.md").read_text()
    assert "## Does the bias grow with tau?" in consistency_table
    assert (repo / "reports" / "sgmcmc_consistency" / "consistency.png").exists()
    assert sorted(os.listdir(repo / "models" / "sgmcmc")) == sorted(f"{p}-{w}" for p, w in items)
