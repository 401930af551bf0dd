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

from betamcmc.vae.model import load_vae

from conftest import copy_repo, run_stage, tiny_params, write_params

SCHEDULES = ("constant", "monotonic", "cyclical")


@pytest.fixture(scope="module")
def prepared_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = copy_repo(tmp_path_factory.mktemp("vae") / "repo")
    write_params(repo / "params.yaml", tiny_params())
    run_stage(repo, "prepare")
    return repo


def _runs(repo: Path, stage: str) -> list:
    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("betamcmc")
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.stage = '{stage}'")
    return runs


@pytest.mark.slow
def test_pretrain_every_schedule_and_report(prepared_repo: Path):
    repo = prepared_repo
    for name in SCHEDULES:
        proc = run_stage(repo, "pretrain", name)
        assert f"pretrain[{name}]: best iteration" in proc.stdout
        model_dir = repo / "models" / "pretrain" / name
        assert (model_dir / "vocab.txt").read_text() == (
            repo / "data/prepared/vocab.txt"
        ).read_text()
        ckpt = torch.load(model_dir / "model.pt", weights_only=True)
        assert ckpt["meta"]["schedule"] == name
        model = load_vae(model_dir)
        assert model.config.latent_dim == 4
        metrics = json.loads((repo / "metrics" / "pretrain" / f"{name}.json").read_text())
        for split in ("valid", "test"):
            m = metrics[split]
            assert set(m) >= {"recon", "kl", "elbo", "nll", "ppl", "mi", "au"}
            assert m["nll"] <= -m["elbo"] and m["ppl"] > 1 and m["kl"] >= 0
        csv = (repo / "metrics" / "pretrain" / f"{name}_train.csv").read_text().splitlines()
        assert csv[0] == "iteration,beta,recon,kl,elbo,loss"
        assert len(csv) == 1 + 40 // 5 and csv[-1].startswith("40,")
        assert not (repo / "models" / ".resume" / "pretrain" / name / "resume.pt").exists()

    runs = _runs(repo, "pretrain")
    assert sorted(r.data.tags["schedule"] for r in runs) == sorted(SCHEDULES)
    for run in runs:
        assert run.info.status == "FINISHED"
        assert {"test_nll", "test_kl", "test_mi", "test_au", "valid_elbo"} <= set(run.data.metrics)
        assert run.data.params["pretrain.train.iterations"] == "40"
        client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
        assert len(client.get_metric_history(run.info.run_id, "kl")) == 8  # per-step series
        arts = [a.path for a in client.list_artifacts(run.info.run_id, "model")]
        assert arts == ["model/model.pt"]

    run_stage(repo, "pretrain_report")
    report = repo / "reports" / "pretrain"
    names = {"comparison.md", "schedules.png", "curves.png", "toy.png"} | {
        f"latent_{n}.png" for n in SCHEDULES
    }
    assert names <= {p.name for p in report.iterdir()}
    table = (report / "comparison.md").read_text()
    for name in SCHEDULES:
        nll = json.loads((repo / "metrics/pretrain" / f"{name}.json").read_text())["test"]["nll"]
        assert f"| {name} | {name} |" in table and f"{nll:.2f}" in table
    (report_run,) = _runs(repo, "pretrain_report")
    assert "cyclical_test_nll" in report_run.data.metrics


@pytest.mark.slow
def test_sigterm_then_resume_reaches_same_metrics(prepared_repo: Path, tmp_path: Path):
    repo = shutil.copytree(prepared_repo, tmp_path / "repo")
    for d in ("models", "metrics/pretrain", "mlflow.db", "mlartifacts"):
        p = repo / d
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    over = {"pretrain": {"train": {"iterations": 150, "checkpoint_every": 10, "eval_every": 50}}}
    write_params(repo / "params.yaml", tiny_params(over))
    run_stage(repo, "pretrain", "cyclical")
    reference = json.loads((repo / "metrics/pretrain/cyclical.json").read_text())
    shutil.rmtree(repo / "models")
    (repo / "metrics/pretrain/cyclical.json").unlink()

    resume = repo / "models/.resume/pretrain/cyclical/resume.pt"
    proc = subprocess.Popen([sys.executable, "stages/pretrain.py", "cyclical"], cwd=repo,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 300
    while not resume.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    assert "checkpoint saved, rerun to resume" in err.strip().splitlines()[-1]
    assert not (repo / "metrics/pretrain/cyclical.json").exists()  # nothing half-written
    assert not (repo / "models/pretrain/cyclical").exists()
    assert torch.load(resume, weights_only=True)["iteration"] > 0

    run_stage(repo, "pretrain", "cyclical")
    resumed = json.loads((repo / "metrics/pretrain/cyclical.json").read_text())
    assert resumed.pop("resumed_from") > 0
    reference.pop("resumed_from")
    assert resumed == reference
    statuses = sorted(r.info.status for r in _runs(repo, "pretrain"))
    assert statuses == ["FAILED", "FINISHED", "FINISHED"]


def test_unknown_schedule_is_one_line_exit_2(tiny_repo: Path):
    proc = run_stage(tiny_repo, "pretrain", "warmup", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: params.yaml: pretrain.schedules: no schedule named 'warmup' "
        "(have ['constant', 'monotonic', 'cyclical'])"
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


def test_stage_keys_match_dvc_yaml():
    import yaml

    from betamcmc.vae.pretrain import stage_keys

    stage = yaml.safe_load((Path(__file__).parents[1] / "dvc.yaml").read_text())["stages"][
        "pretrain"
    ]
    assert stage["foreach"] == "${pretrain.schedules}"
    declared = [p.replace("${key}", "cyclical") for p in stage["do"]["params"]]
    assert declared == stage_keys("cyclical")
    assert stage["do"]["outs"] == ["models/pretrain/${key}"]
