"""The MLflow store: where it lives, and what every stage run carries."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from betamcmc import tracking
from betamcmc.params import load_params

from conftest import tiny_params, write_params


def test_project_root_climbs_out_of_dvc_exp_workspace(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    ws = repo / ".dvc" / "tmp" / "exps" / "tmpabc123" / "stages"
    ws.mkdir(parents=True)
    (repo / "dvc.yaml").write_text("stages: {}\n")
    assert tracking.project_root(ws) == repo
    assert tracking.project_root(repo / ".dvc" / "tmp" / "exps" / "tmpabc123") == repo


def test_project_root_is_nearest_dvc_project(tmp_path: Path) -> None:
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "sub").mkdir()
    assert tracking.project_root(tmp_path / "sub") == tmp_path


def test_uri_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path)
    default = load_params(write_params(tmp_path / "params.yaml", tiny_params()))
    assert tracking.tracking_uri(default) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    rel = load_params(
        write_params(tmp_path / "p2.yaml", tiny_params({"tracking": {"uri": "sqlite:///x/t.db"}}))
    )
    assert tracking.tracking_uri(rel) == f"sqlite:///{tmp_path / 'x' / 't.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/m.db")
    assert tracking.tracking_uri(rel) == "sqlite:////elsewhere/m.db"


def test_stage_run_tags_params_and_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_EXP_NAME", "lucky-exp")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "abc123")
    params = load_params(write_params(tmp_path / "params.yaml", tiny_params()))
    with tracking.stage_run(params, stage="demo", item="x", keys=["seed", "data"]) as run:
        tracking.log_metrics({"loss": 1.5, "bad": float("nan")}, step=3)
        tracking.log_series({"beta": [0.0, 0.5, 1.0]}, steps=[0, 1, 2])
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    got = client.get_run(run.info.run_id)
    assert got.info.run_name == "demo@x"
    assert got.data.tags["dvc_exp_name"] == "lucky-exp"
    assert got.data.tags["dvc_exp_baseline"] == "abc123"
    assert got.data.tags["params_hash"] == params.digest(["seed", "data"])
    assert got.data.params["data.max_len"] == "20" and "tracking.experiment" not in got.data.params
    assert got.data.metrics == {"loss": 1.5, "beta": 1.0}
    assert [m.value for m in client.get_metric_history(run.info.run_id, "beta")] == [0.0, 0.5, 1.0]
    exp = client.get_experiment(got.info.experiment_id)
    assert exp.name == "betamcmc" and exp.artifact_location.startswith(
        (tmp_path / "mlartifacts").as_uri()
    )


def test_failed_body_marks_run_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path)
    params = load_params(write_params(tmp_path / "params.yaml", tiny_params()))
    with pytest.raises(RuntimeError), tracking.stage_run(params, stage="boom") as run:
        raise RuntimeError("x")
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert client.get_run(run.info.run_id).info.status == "FAILED"


def test_parallel_first_runs_do_not_race(tmp_path: Path) -> None:
    """Three processes opening the first runs of a fresh store at once (dvc queue start -j N)."""
    import subprocess
    import sys

    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    write_params(tmp_path / "params.yaml", tiny_params())
    code = (
        "import sys\n"
        "from betamcmc import tracking\n"
        "from betamcmc.params import load_params\n"
        "p = load_params('params.yaml')\n"
        "with tracking.stage_run(p, stage='par', item=sys.argv[1], keys=['seed']):\n"
        "    tracking.log_metrics({'x': float(sys.argv[1])}, step=0)\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(i)],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exps = [e for e in client.search_experiments() if e.name == "betamcmc"]
    assert len(exps) == 1
    runs = client.search_runs([exps[0].experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["par@0", "par@1", "par@2"]


def test_second_project_in_one_process_gets_its_own_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI; our own export must not stick."""
    for name in ("a", "b"):
        repo = tmp_path / name
        repo.mkdir()
        (repo / "dvc.yaml").write_text("stages: {}\n")
        monkeypatch.chdir(repo)
        params = load_params(write_params(repo / "params.yaml", tiny_params()))
        with tracking.stage_run(params, stage="s", item=name):
            pass
        client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
        exp = client.get_experiment_by_name("betamcmc")
        assert [r.info.run_name for r in client.search_runs([exp.experiment_id])] == [f"s@{name}"]
