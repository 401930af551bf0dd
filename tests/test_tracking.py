"""The MLflow store: where it lives, what every stage run carries, and what a stage does when
the store cannot be used at its start or goes away during it."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
from pathlib import Path
from typing import Any

import mlflow
import pytest

from betamcmc import tracking
from betamcmc.core.errors import ParamsError
from betamcmc.core.pipeline import StageItem
from betamcmc.params import load_params
from betamcmc.tracking import sender

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
    stage = StageItem("demo", {"schedule": "cyclical", "bow": True}, params=["seed", "data"])
    with tracking.stage_run(params, stage, identity={"protocol": "elastic"}) as run:
        tracking.log_metrics({"loss": 1.5, "bad": float("nan")}, step=3)
        tracking.log_series({"beta": [0.0, 0.5, 1.0]}, steps=[0, 1, 2])
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    got = client.get_run(run.run_id)
    assert got.info.run_name == "demo@cyclical-true"  # DVC's item name
    tags = got.data.tags
    assert tags["dvc_exp_name"] == "lucky-exp" == tags["pipeline_run"]
    assert tags["dvc_exp_baseline"] == "abc123"
    assert tags["params_hash"] == params.digest(["seed", "data"])
    assert (tags["stage"], tags["item"]) == ("demo", "cyclical-true")
    # the identity: tags and params under the same names
    for name, value in (("schedule", "cyclical"), ("bow", "true"), ("protocol", "elastic")):
        assert tags[name] == got.data.params[name] == value
    assert got.data.params["data.max_len"] == "20" and "tracking.experiment" not in got.data.params
    assert got.data.metrics == {"loss": 1.5, "beta": 1.0}
    assert [m.value for m in client.get_metric_history(run.run_id, "beta")] == [0.0, 0.5, 1.0]
    exp = client.get_experiment(got.info.experiment_id)
    assert exp.name == "betamcmc" and exp.artifact_location.startswith(
        (tmp_path / "mlartifacts").as_uri()
    )


def test_failed_body_marks_run_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path)
    params = load_params(write_params(tmp_path / "params.yaml", tiny_params()))
    with pytest.raises(RuntimeError), tracking.stage_run(params, StageItem("boom")) as run:
        raise RuntimeError("x")
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert client.get_run(run.run_id).info.status == "FAILED"


def test_parallel_first_runs_do_not_race(tmp_path: Path) -> None:
    """Two processes opening the first runs of a fresh store at once (dvc queue start -j 2)."""
    import subprocess
    import sys

    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    write_params(tmp_path / "params.yaml", tiny_params())
    code = (
        "import sys\n"
        "from betamcmc import tracking\n"
        "from betamcmc.params import load_params\n"
        "p = load_params('params.yaml')\n"
        "from betamcmc.core.pipeline import StageItem\n"
        "with tracking.stage_run(p, StageItem('par', {'n': sys.argv[1]}, params=['seed'])):\n"
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
        for i in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exps = [e for e in client.search_experiments() if e.name == "betamcmc"]
    assert len(exps) == 1
    runs = client.search_runs([exps[0].experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["par@0", "par@1"]


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
        with tracking.stage_run(params, StageItem("s", {"n": name})):
            pass
        client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
        exp = client.get_experiment_by_name("betamcmc")
        assert [r.info.run_name for r in client.search_runs([exp.experiment_id])] == [f"s@{name}"]


def test_the_users_store_takes_every_stage_of_a_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's MLFLOW_TRACKING_URI equal to what MLflow exports is still the user's: the
    second stage run in the process logs there too (it went to the project's own store)."""
    store = tmp_path / "user" / "mlflow.db"
    store.parent.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(repo)
    params = load_params(write_params(repo / "params.yaml", tiny_params()))
    for n in ("1", "2"):
        with tracking.stage_run(params, StageItem("s", {"n": n})):
            pass
    client = mlflow.MlflowClient(f"sqlite:///{store}")
    exp = client.get_experiment_by_name("betamcmc")
    assert sorted(r.info.run_name for r in client.search_runs([exp.experiment_id])) == [
        "s@1",
        "s@2",
    ]
    assert not (repo / "mlflow.db").exists()


def test_item_params_line_up_across_items(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``pretrain.schedules.<schedule>`` is logged as ``schedule.<key>`` for every schedule."""
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path)
    params = load_params(write_params(tmp_path / "params.yaml", tiny_params()))
    got = {}
    for name in ("constant", "cyclical"):
        key = f"pretrain.schedules.{name}"
        stage = StageItem(
            "pretrain", {"schedule": name}, params=["seed", key], item_params={key: "schedule"}
        )
        got[name] = tracking.run_params(params, stage)
    assert got["cyclical"]["schedule.cycles"] == params.pretrain.schedules["cyclical"].cycles
    assert (
        got["constant"]["schedule.kind"] == "constant" and got["constant"]["schedule"] == "constant"
    )
    assert not any(k.startswith("pretrain.") for names in got.values() for k in names)


def test_log_result_dotted_names_counts_as_params(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path)
    params = load_params(write_params(tmp_path / "params.yaml", tiny_params()))
    result = {
        "schedule": "x",
        "workers": 2,
        "test": {"kl": 1.5, "au": 3},
        "per_seed": {"0": {"kl": 9.0}},
        "fractions": {"10pct": {"labeled": 30, "vae": {"mean": 0.5}}},
        "flag": True,
    }
    with tracking.stage_run(params, StageItem("r")) as run:
        tracking.log_result(result, as_params=["workers", "labeled"], skip=["per_seed"])
    got = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(run.run_id)
    assert got.data.metrics == {"test.kl": 1.5, "test.au": 3.0, "fractions.10pct.vae.mean": 0.5}
    assert got.data.params["workers"] == "2" and got.data.params["fractions.10pct.labeled"] == "30"


def test_pipeline_run_groups_one_dvc_invocation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DVC_EXP_NAME", "tidy-yawl")
    assert tracking.pipeline_run() == "tidy-yawl"
    monkeypatch.delenv("DVC_EXP_NAME")
    assert tracking.pipeline_run().startswith("manual-")  # pytest runs under no dvc process


def test_pipeline_run_is_the_dvc_process_of_every_stage(tmp_path: Path) -> None:
    """Two stage processes started by one (stand-in) ``dvc repro`` share one pipeline_run."""
    import os
    import subprocess
    import sys

    child = "from betamcmc import tracking; print(tracking.pipeline_run())"
    fake = tmp_path / "dvc"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import subprocess, sys\n"
        f"for _ in range(2):\n"
        f"    subprocess.run([sys.executable, '-c', {child!r}], check=True)\n"
    )
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "DVC_EXP_NAME"}
    out = subprocess.run([str(fake), "repro"], capture_output=True, text=True, env=env, check=True)
    ids = out.stdout.split()
    assert len(ids) == 2 and ids[0] == ids[1] and ids[0].startswith("repro-"), ids


# --------------------------------------------------------------------------- outages
def _project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path)
    params = load_params(write_params(tmp_path / "params.yaml", tiny_params()))
    return params, f"sqlite:///{tmp_path / 'mlflow.db'}"


def _unwritable(tmp_path: Path) -> Path:
    """A store path this process cannot write: a read-only folder, or for root (who writes
    anywhere a mode forbids) a folder in sysfs."""
    if os.geteuid() == 0:
        return Path("/sys/betamcmc-test/mlflow.db")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    return folder / "mlflow.db"


def test_store_checks_name_the_cause(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_text("this is not a database\n")
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    cases = {
        f"sqlite:///{corrupt}": "not an SQLite database (the file starts with b'this is not '",
        f"sqlite:///{_unwritable(tmp_path)}": "cannot write ",
        f"sqlite:///{tmp_path}": "is a folder, not an SQLite file",
        f"http://127.0.0.1:{port}": "cannot reach the server (Connection refused)",
    }
    for uri, cause in cases.items():
        with pytest.raises(tracking.TrackingError) as info:
            tracking.check_store(uri)
        assert info.value.cause.startswith(cause), (uri, info.value.cause)
        assert str(info.value) == f"tracking store {uri}: {info.value.cause}; {tracking.HINT}"
    tracking.check_store(f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}")  # a new store is fine


def test_corrupt_store_fails_the_stage_or_runs_untracked_when_optional(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    params, uri = _project(tmp_path, monkeypatch)
    (tmp_path / "mlflow.db").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(tracking.TrackingError, match="not an SQLite database"):
        with tracking.stage_run(params, StageItem("s")):
            raise AssertionError("the body must not run")
    monkeypatch.setenv("BETAMCMC_TRACKING", "optional")
    with tracking.stage_run(params, StageItem("s")) as run:
        tracking.log_metrics({"x": 1.0})  # untracked: a no-op
        tracking.log_artifact(tmp_path / "params.yaml")
    assert run.run_id is None and run.link is None
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"warning: tracking store {uri}: not an SQLite database (the file starts with "
        "b'\\x00garbage\\x00gar'); BETAMCMC_TRACKING=optional, so s runs untracked"
    ]
    monkeypatch.setenv("BETAMCMC_TRACKING", "sometimes")
    with pytest.raises(ParamsError, match="BETAMCMC_TRACKING: must be 'required' or 'optional'"):
        tracking.tracking_mode()


def _runs_by_name(uri: str) -> dict[str, Any]:
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("betamcmc")
    return {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}


def test_lost_store_spools_and_the_next_stage_sends_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The store goes away after the run is opened: one warning, the body is never held up,
    every call is spooled; the next stage on the store sends them before its own run."""
    params, uri = _project(tmp_path, monkeypatch)
    real = sender.apply_call

    def down(client: Any, op: Any, base: Any = None) -> None:
        raise ConnectionError("[Errno 111] Connection refused")

    monkeypatch.setattr(sender, "apply_call", down)
    original = (tmp_path / "params.yaml").read_text()
    with tracking.stage_run(params, StageItem("lost")) as run:
        tracking.log_series({"train.kl": [3.0, 2.0, 1.0]}, [1, 2, 3])
        tracking.log_result({"test": {"kl": 1.5}, "n": 2}, as_params=["n"])
        tracking.log_artifact(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("replaced since\n")  # the spool kept its own copy
    err = capsys.readouterr().err.splitlines()
    warnings = [line for line in err if line.startswith("warning:")]  # MLflow logs its own INFO
    assert len(warnings) == 1 and warnings[0].startswith(
        f"warning: tracking store {uri} lost "
        "during lost (cannot reach the server (Connection refused)); "
    )
    assert _runs_by_name(uri)["lost"].info.status == "RUNNING"  # nothing arrived
    (spooled,) = (tmp_path / "mlflow-spool").glob("*.jsonl")
    assert not list((tmp_path / "mlflow-spool").glob("*.lost"))  # the stage's marker is gone

    monkeypatch.setattr(sender, "apply_call", real)
    with tracking.stage_run(params, StageItem("next")):
        pass
    assert f"tracking: sent 5 spooled call(s) to {uri} ({spooled.name})" in capsys.readouterr().out
    got = _runs_by_name(uri)["lost"]
    assert got.info.status == "FINISHED" and got.data.metrics == {"train.kl": 1.0, "test.kl": 1.5}
    assert got.data.params["n"] == "2"
    client = mlflow.MlflowClient(uri)
    history = client.get_metric_history(run.run_id, "train.kl")
    assert [(m.step, m.value) for m in history] == [(1, 3.0), (2, 2.0), (3, 1.0)]
    local = Path(client.download_artifacts(run.run_id, "params.yaml", str(tmp_path / "dl")))
    assert local.read_text() == original
    assert not list((tmp_path / "mlflow-spool").iterdir())


def test_store_that_never_answers_is_left_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A call that hangs (a server that takes the connection and never answers): the stage
    waits DRAIN_S at its end, no longer, and spools the rest; a live spool is not replayed."""
    params, uri = _project(tmp_path, monkeypatch)
    real, release = sender.apply_call, threading.Event()

    def hangs(client: Any, op: Any, base: Any = None) -> None:
        release.wait(30)
        raise ConnectionError("too late")

    monkeypatch.setattr(sender, "apply_call", hangs)
    monkeypatch.setattr(sender, "DRAIN_S", 0.3)
    with tracking.stage_run(params, StageItem("hung")) as run:
        tracking.log_metrics({"a": 1.0}, step=4)
    assert "lost during hung (no answer within 0 s)" in capsys.readouterr().err
    (spooled,) = (tmp_path / "mlflow-spool").glob("*.jsonl")
    release.set()
    monkeypatch.setattr(sender, "apply_call", real)
    with spooled.open() as fh:  # a live process holds its spool: a replay leaves it alone
        fcntl.flock(fh, fcntl.LOCK_EX)
        assert tracking.replay(uri) == []
    (outcome,) = tracking.replay(uri)
    assert (outcome.sent, outcome.left) == (2, 0)  # the metric, the end (no params listed)
    got = mlflow.MlflowClient(uri).get_run(run.run_id)
    assert got.info.status == "FINISHED" and got.data.metrics == {"a": 1.0}


def test_replay_command_keeps_what_a_store_still_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from betamcmc.cli import main

    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path)
    assert main(["tracking", "replay"]) == 0
    assert capsys.readouterr().out == f"tracking: nothing spooled in {tmp_path / 'mlflow-spool'}\n"
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    uri = f"http://127.0.0.1:{free.getsockname()[1]}"
    free.close()
    spooled = tmp_path / "mlflow-spool" / "20260101-000000.000-1-abcdef.jsonl"
    spooled.parent.mkdir()
    end = {"op": "end", "run": "r1", "status": "FINISHED", "time": 1}
    spooled.write_text(json.dumps({"uri": uri}) + "\n" + json.dumps(end) + "\n")
    assert main(["tracking", "replay"]) == 1
    out, err = capsys.readouterr()
    assert out == (
        f"tracking: 1 spooled call(s) for {uri} kept in {spooled.name} "
        "(cannot reach the server (Connection refused))\n"
    )
    assert err == (
        f"error: 1 tracking call(s) stay in {spooled.parent}: rerun once the store answers\n"
    )
    assert spooled.read_text().count("\n") == 2  # kept whole
