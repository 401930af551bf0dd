"""The ``sgmcmc_vae_head`` stage end to end on the tiny synthetic corpus, after the real ``prepare``
and ``pretrain`` stages: its outputs in the shared pipeline run (``dvc repro``, conftest
``pipeline``; checked for one schedule). Further runs go through the library in-process on a copy,
to spare the imports; the bad-label case runs as a subprocess to check the exit code and the
one-line message.

A 40-iteration VAE's codes carry little about the labels, so the accuracies are only checked to
be valid numbers, not to beat chance."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import mlflow
import pytest
import yaml

from betamcmc.core.errors import ParamsError
from betamcmc.params import load_params

from conftest import PipelineRun, copy_pipeline, run_stage, tiny_params, write_params

SCHEDULE = "constant"


@pytest.fixture(scope="module")
def repo(pipeline: PipelineRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shared pipeline project (every ``sgmcmc_vae_head@<schedule>`` ran there
    under `dvc repro`); the tests below write into it."""
    return copy_pipeline(pipeline, tmp_path_factory.mktemp("vae_head") / "repo")


PREDICTIVE = ("accuracy", "log_likelihood", "log_likelihood_median", "log_likelihood_worst", "ece")


def _check_predictive(m: dict, per_seed: list[dict], n_test: int) -> None:
    """Each predictive number is the seed mean of what the seeds measured; a seed's accuracy is
    a count of the ``n_test`` test sentences; its worst test point is no better than its median."""
    for key in PREDICTIVE:
        values = [r[key] for r in per_seed]
        assert m[key] == pytest.approx(sum(values) / len(values)), key
    for r in per_seed:
        assert r["accuracy"] * n_test == pytest.approx(round(r["accuracy"] * n_test))
        assert r["log_likelihood_worst"] <= r["log_likelihood_median"]


@pytest.mark.slow
def test_stage_writes_metrics_samples_and_mlflow_run(repo: Path) -> None:
    from betamcmc.sgmcmc.engine.samples import read_samples

    m = json.loads((repo / f"metrics/sgmcmc_vae_head/{SCHEDULE}.json").read_text())
    assert m["schedule"] == SCHEDULE and m["label"] == "register" and m["classes"] == 2
    assert m["train_sentences"] == 120 and m["test_sentences"] == 30 and m["code_dim"] == 4
    assert m["head"] == "softmax regression" and m["samples"] == 12
    for method in ("sgmcmc", "point_estimate"):
        _check_predictive(m[method], m["per_seed"][method], m["test_sentences"])
    logreg = m["sklearn_logreg_accuracy"] * m["test_sentences"]
    assert logreg == pytest.approx(round(logreg))  # a count of the test sentences
    assert m["delta"]["accuracy"] == pytest.approx(
        m["sgmcmc"]["accuracy"] - m["point_estimate"]["accuracy"]
    )
    out = repo / "models/sgmcmc_vae_head" / SCHEDULE
    assert m["n_seeds"] == len(m["seeds"]) >= 2
    for seed in m["seeds"]:  # one independent chain per seed
        assert len(read_samples(out / f"seed{seed}")) == 12
    assert (out / "run.json").exists()
    assert m["diagnostics"]["chains"] == m["n_seeds"]
    assert m["rhat_max"] == m["sgmcmc"]["rhat_max"] and isinstance(m["converged"], bool)
    for key in ("ess_bulk_min", "ess_tail_min"):
        assert m[key] is None or m[key] > 0
    accs = [r["accuracy"] for r in m["per_seed"]["sgmcmc"]]
    assert m["sgmcmc"]["accuracy"] == pytest.approx(sum(accs) / len(accs))
    assert m["sgmcmc"]["accuracy_std"] == pytest.approx(statistics.stdev(accs))  # ddof 1
    assert m["comparison"]["accuracy"]["verdict"] in ("better", "worse", "indistinguishable")
    assert not (repo / "models/sgmcmc_vae_head" / f"{SCHEDULE}.partial").exists()

    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("betamcmc")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.stage = 'sgmcmc_vae_head'")
    assert sorted(r.info.run_name for r in runs) == [
        f"sgmcmc_vae_head@{s}" for s in ("constant", "cyclical", "monotonic")
    ]
    (run,) = [r for r in runs if r.info.run_name == f"sgmcmc_vae_head@{SCHEDULE}"]
    assert run.info.status == "FINISHED" and run.data.tags["schedule"] == SCHEDULE
    assert run.data.params["finetune.vae_head.label"] == "register"
    assert run.data.metrics["sgmcmc.accuracy"] == pytest.approx(m["sgmcmc"]["accuracy"])
    assert run.data.metrics["point_estimate.ece"] == pytest.approx(m["point_estimate"]["ece"])
    tags, logged = run.data.tags, run.data.params
    assert tags["protocol"] == logged["protocol"] == "single" and logged["workers"] == "1"
    assert "classes" in logged and "classes" not in run.data.metrics  # counts are params


@pytest.mark.slow
def test_mlp_head_on_topic_with_two_workers(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another label factor, an MLP head and an asynchronous protocol, through the library."""
    from betamcmc.data.prepared import load_prepared
    from betamcmc.finetune.vae_head import encode_codes, run_head
    from betamcmc.vae.model import load_vae

    monkeypatch.chdir(repo)
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    raw["finetune"]["vae_head"].update(
        {"label": "topic", "hidden": 4, "protocol": "elastic", "workers": 2}
    )
    params = load_params(write_params(repo / "mlp.yaml", raw))
    corpus = load_prepared("data/prepared")
    data = encode_codes(load_vae(f"models/pretrain/{SCHEDULE}"), corpus, params.finetune.vae_head)
    s = run_head(params, data, SCHEDULE, Path("again/models"), Path("again/metrics.json"))
    assert s["label"] == "topic" and s["classes"] == len(corpus.label_names["topic"]) > 2
    assert s["head"] == "MLP (hidden 4)" and s["protocol"] == "elastic" and s["workers"] == 2
    for method in ("sgmcmc", "point_estimate"):
        _check_predictive(s[method], s["per_seed"][method], s["test_sentences"])
    assert json.loads(Path("again/metrics.json").read_text()) == s


@pytest.mark.slow
def test_unknown_label_one_line_exit_2_nothing_written(repo: Path) -> None:
    before = {p for p in repo.rglob("*") if p.is_file() and "mlflow" not in p.name}
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    raw["finetune"]["vae_head"]["label"] = "mood"
    bad = write_params(repo / "bad.yaml", raw)
    proc = run_stage(repo, "sgmcmc_vae_head", SCHEDULE, "--params", "bad.yaml", check=False)
    bad.unlink()
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert "finetune.vae_head.label 'mood' is not a label of corpus 'synthetic'" in proc.stderr
    assert "topic, sentiment, length" in proc.stderr
    after = {p for p in repo.rglob("*") if p.is_file() and "mlflow" not in p.name}
    assert after == before, sorted(after - before)


def test_bad_head_params_are_rejected(tmp_path: Path) -> None:
    for bad, message in (
        ({"workers": 0}, "finetune.vae_head.workers"),
        ({"protocol": "gossip"}, "finetune.vae_head.protocol"),
        ({"hidden": -1}, "finetune.vae_head.hidden"),
        ({"step_size": 0.0}, "finetune.vae_head.step_size"),
    ):
        path = write_params(tmp_path / "p.yaml", tiny_params({"finetune": {"vae_head": bad}}))
        with pytest.raises(ParamsError, match=message):
            load_params(path)


def test_head_seeds_aggregate_ddof1_and_paired_comparison() -> None:
    """BMA and MAP metrics over the chains: mean, std (ddof = 1), CI; BMA vs MAP is a paired
    comparison with a verdict (never a bare "matches")."""
    from betamcmc.finetune.vae_head import aggregate, compare

    bma = [{"accuracy": a, "log_likelihood": -0.7, "ece": 0.05} for a in (0.50, 0.51, 0.49)]
    point = [{"accuracy": 0.55, "log_likelihood": -0.69, "ece": 0.01}] * 3
    agg = aggregate(bma)
    assert agg["accuracy"] == pytest.approx(0.50)
    assert agg["accuracy_std"] == pytest.approx(statistics.stdev([0.50, 0.51, 0.49]))
    assert agg["accuracy_ci_low"] < 0.50 < agg["accuracy_ci_high"]
    assert agg["log_likelihood_std"] == pytest.approx(0.0, abs=1e-12)
    c = compare(bma, point)
    assert c["accuracy"]["verdict"] == "worse" and c["accuracy"]["losses"] == 3
    assert c["ece"]["verdict"] == "worse"  # lower ECE is better: the MAP's 0.01 wins
