"""End to end: the real `pretrain` and `pretrain_report` stages on the tiny synthetic corpus."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import torch
import yaml

from betamcmc.core import stats
from betamcmc.vae.model import load_vae

from conftest import PipelineRun, run_stage, tiny_params, write_params

SCHEDULES = ("constant", "monotonic", "cyclical", "cyclical-restart")


@pytest.fixture(scope="module")
def prepared_repo(pipeline: PipelineRun) -> Path:
    """The shared pipeline's project: `prepare`, every `pretrain@<schedule>` and
    `pretrain_report` ran there under `dvc repro`. Read only (copy it to write)."""
    return pipeline.repo


def _runs(repo: Path, stage: str) -> list:
    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("betamcmc")
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.stage = '{stage}'")
    return runs


@pytest.mark.slow
def test_pretrain_every_schedule_and_report(pipeline: PipelineRun):
    repo = pipeline.repo
    for name in SCHEDULES:
        assert f"pretrain[{name}]: 2 seed(s), test (mean +- std) kl" in pipeline.output
        assert f"pretrain@{name} seed 1 40/40 (100%)" in pipeline.output  # progress per seed
        model_dir = repo / "models" / "pretrain" / name
        assert (model_dir / "vocab.txt").read_text() == (
            repo / "data/prepared/vocab.txt"
        ).read_text()
        assert json.loads((model_dir / "meta.json").read_text())["seeds"] == [0, 1]
        metrics = json.loads((repo / "metrics" / "pretrain" / f"{name}.json").read_text())
        assert metrics["seeds"] == [0, 1] and set(metrics["per_seed"]) == {"0", "1"}
        assert metrics["n_seeds"] == 2
        assert metrics["lr_cycles"] == (4 if name == "cyclical-restart" else 1)
        weights = []
        for seed in (0, 1):
            ckpt = torch.load(model_dir / f"seed{seed}" / "model.pt", weights_only=True)
            assert ckpt["meta"]["schedule"] == name and ckpt["meta"]["seed"] == seed
            weights.append(ckpt["model"]["output.weight"])
            per = metrics["per_seed"][str(seed)]
            assert per["best_iteration"] == ckpt["meta"]["best_iteration"]
        assert not torch.equal(*weights)  # the seeds really are different models
        assert load_vae(model_dir).config.latent_dim == 4  # the folder loads its first seed
        for split in ("valid", "test"):
            m = metrics[split]
            assert set(m) >= {"recon", "kl", "elbo", "nll", "ppl", "mi", "mi_se", "au", "kl_std"}
            for key in ("kl", "nll", "mi", "au"):  # the mean over the seeds' own numbers
                seeds = [metrics["per_seed"][s][split][key] for s in ("0", "1")]
                assert m[key] == pytest.approx(sum(seeds) / 2)
                assert m[f"{key}_std"] == pytest.approx(abs(seeds[0] - seeds[1]) / 2**0.5)
                s = stats.mean_std_ci(seeds)  # ddof = 1 and the t-interval of the mean
                assert (m[f"{key}_ci_low"], m[f"{key}_ci_high"]) == pytest.approx(
                    (s["ci_low"], s["ci_high"])
                )
            for s in ("0", "1"):
                own = metrics["per_seed"][s][split]
                assert own["nll"] <= -own["elbo"] + 1e-6  # IS bound is tighter than the ELBO
        csv = (repo / "metrics" / "pretrain" / f"{name}_train.csv").read_text().splitlines()
        assert csv[0] == "iteration,beta,recon,kl,elbo,loss"
        assert len(csv) == 1 + 40 // 5 and csv[-1].startswith("40,")
        valid_csv = (repo / "metrics" / "pretrain" / f"{name}_valid.csv").read_text().splitlines()
        assert valid_csv[0] == "iteration,neg_elbo,kl,mi,au" and len(valid_csv) == 1 + 40 // 20
        assert not list((repo / "models" / ".resume" / "pretrain" / name).rglob("resume.pt"))

    parents, children = _runs(repo, "pretrain"), _runs(repo, "pretrain_seed")
    assert all("mlflow.parentRunId" in r.data.tags for r in children)
    assert sorted(r.data.tags["schedule"] for r in parents) == sorted(SCHEDULES)
    assert len(children) == 2 * len(SCHEDULES)
    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    for run in parents:
        assert run.info.status == "FINISHED"
        assert {"test.nll", "test.kl", "test.mi", "test.au", "valid.elbo"} <= set(run.data.metrics)
        assert run.data.params["pretrain.train.iterations"] == "40"
        # the schedule's params under one name in every item: columns line up across schedules
        assert run.data.params["schedule"] == run.data.tags["schedule"]
        # shipped names: the kind, or the kind and a variant (cyclical-restart)
        assert run.data.params["schedule.kind"] == run.data.params["schedule"].split("-")[0]
        assert not any(k.startswith("pretrain.schedules") for k in run.data.params)
        assert len(client.get_metric_history(run.info.run_id, "train.kl")) == 8  # per-step series
        arts = [a.path for a in client.list_artifacts(run.info.run_id, "model")]
        assert arts == ["model/model.pt"]
    for run in children:  # live per-seed curves, then the seed's final metrics
        assert run.info.status == "FINISHED" and run.data.params["seed"] in ("0", "1")
        assert len(client.get_metric_history(run.info.run_id, "train.kl")) == 8
        assert len(client.get_metric_history(run.info.run_id, "valid_curve.mi")) == 2
        assert "test.nll" in run.data.metrics
        parent = next(p for p in parents if p.info.run_id == run.data.tags["mlflow.parentRunId"])
        assert run.data.tags["pipeline_run"] == parent.data.tags["pipeline_run"]

    report = repo / "reports" / "pretrain"
    names = {"comparison.md", "schedules.png", "curves.png", "toy.png"} | {
        f"latent_{n}.png" for n in SCHEDULES
    }
    assert names <= {p.name for p in report.iterdir()}
    table = (report / "comparison.md").read_text()
    for name in SCHEDULES:
        metrics = json.loads((repo / "metrics/pretrain" / f"{name}.json").read_text())
        nll, kind = metrics["test"]["nll"], metrics["kind"]
        assert f"| {name} | {kind} |" in table and f"{nll:.2f}" in table
    (report_run,) = _runs(repo, "pretrain_report")
    assert "cyclical.test.nll" in report_run.data.metrics
    assert (
        "What the learning-rate restarts add" in table and "| cyclical | constant | KL |" in table
    )
    compared = json.loads((repo / "metrics" / "pretrain_comparison.json").read_text())
    assert compared["seeds"] == [0, 1]
    pairs = {(c["a"], c["b"]) for c in compared["comparisons"]}
    assert pairs == {("cyclical", "constant"), ("cyclical", "monotonic"),
                     ("monotonic", "constant"), ("cyclical-restart", "cyclical")}  # fmt: skip
    assert all(c["n"] == 2 and c["verdict"] in ("better", "worse", "indistinguishable")
               for c in compared["comparisons"])  # fmt: skip


@pytest.mark.slow
def test_sigterm_then_resume_reaches_same_metrics(tiny_repo: Path, _prepared_baseline: Path):
    """On its own project (only ``prepare`` run first: its outputs for the tiny ``data`` params
    are the session's, conftest), so it runs while the shared pipeline's ``dvc repro`` does."""
    repo = tiny_repo
    over = {
        "pretrain": {"train": {"iterations": 200, "eval_every": 100}},
        "runtime": {"checkpoint_every": 10},
    }
    prepared_with = yaml.safe_load((_prepared_baseline / "params.yaml").read_text())
    assert all(tiny_params(over)[k] == prepared_with[k] for k in ("seed", "data"))  # its params
    write_params(repo / "params.yaml", tiny_params(over))
    shutil.copytree(_prepared_baseline / "data" / "prepared", repo / "data" / "prepared")
    run_stage(repo, "pretrain", "cyclical")
    reference = json.loads((repo / "metrics/pretrain/cyclical.json").read_text())
    shutil.rmtree(repo / "models")
    (repo / "metrics/pretrain/cyclical.json").unlink()

    resume = {s: repo / f"models/.resume/pretrain/cyclical/seed{s}/resume.pt" for s in (0, 1)}
    proc = subprocess.Popen([sys.executable, "stages/pretrain.py", "cyclical"], cwd=repo,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 300
    # the first checkpoint of either seed: under load the seeds' processes start seconds apart
    while (
        not any(p.exists() for p in resume.values())
        and proc.poll() is None
        and time.time() < deadline
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # the stage forwards it to the seeds' processes
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    assert "checkpoint saved, rerun to resume" in err.strip().splitlines()[-1]
    assert not (repo / "metrics/pretrain/cyclical.json").exists()  # nothing half-written
    assert not (repo / "models/pretrain/cyclical").exists()
    kept = {s: torch.load(p, weights_only=True)["iteration"] for s, p in resume.items()
            if p.exists()}  # fmt: skip
    assert kept and all(it > 0 for it in kept.values()), kept

    run_stage(repo, "pretrain", "cyclical")
    resumed = json.loads((repo / "metrics/pretrain/cyclical.json").read_text())
    starts = {int(s): per.pop("resumed_from") for s, per in resumed["per_seed"].items()}
    assert {s: it for s, it in starts.items() if it > 0} == kept  # each from its checkpoint
    for per in reference["per_seed"].values():
        per.pop("resumed_from")
    assert resumed == reference
    parents = [r for r in _runs(repo, "pretrain") if "mlflow.parentRunId" not in r.data.tags]
    assert sorted(r.info.status for r in parents) == ["FAILED", "FINISHED", "FINISHED"]


def test_unknown_schedule_is_one_line_exit_2(tiny_repo: Path):
    proc = run_stage(tiny_repo, "pretrain", "warmup", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: params.yaml: pretrain.schedules: must be one of 'constant', 'monotonic', "
        "'cyclical' or 'cyclical-restart' (got 'warmup')"
    )
    assert not (tiny_repo / "models").exists() and not (tiny_repo / "metrics" / "pretrain").exists()


def test_bad_schedule_params_exit_2_before_any_output(tiny_repo: Path):
    raw = tiny_params()
    raw["pretrain"]["schedules"]["cyclical"]["cycles"] = 0
    write_params(tiny_repo / "params.yaml", raw)
    proc = run_stage(tiny_repo, "pretrain", "cyclical", check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: params.yaml:")
    assert lines[0].endswith("pretrain.schedules.cyclical.cycles: must be >= 1 (got 0)")
    assert not (tiny_repo / "models").exists()


def test_missing_prepared_data_is_one_line(tiny_repo: Path):
    proc = run_stage(tiny_repo, "pretrain", "constant", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: data/prepared: prepared corpus not found (run `dvc repro prepare` first)"
    ]
