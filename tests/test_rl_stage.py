"""The rl stage end to end on tiny budgets, its report and ``betamcmc rl play``, and bad input.

Runs call the stage's library entry point in-process (the worker processes are real: the SG-MCMC
engine spawns them per seed and ``run_local`` always terminates them; the tests check that), and
the stage script once as a subprocess for the exit code and the one-line error.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from betamcmc.core.errors import ParamsError
from betamcmc.core.pipeline import stage_item
from betamcmc.params import load_params, validate_params
from betamcmc.rl.experiment import engine_spec, run_item
from betamcmc.rl.params import UPDATES
from betamcmc.sgmcmc.engine.launch import run_local
from betamcmc.sgmcmc.engine.samples import read_samples

from conftest import REPO, PipelineRun, copy_repo, tiny_params, wait_gone, write_params

RUNTIME = validate_params(tiny_params()).runtime

ALL_METHODS = [f"{u}-{p}" for p in ("downpour", "elastic") for u in UPDATES]


def worker_pids(item_dir: Path) -> list[int]:
    pids = []
    for path in item_dir.glob("seed*/samples/processes.json"):
        pids += json.loads(path.read_text())["workers"]
    return pids


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"temperature": -0.1}, "rl.temperature: must be >= 0"),
        ({"workers": [0]}, "rl.workers.0: must be >= 1"),
        ({"seeds": []}, "rl.seeds: must have at least 1 item"),
        ({"methods": ["sgld-sync"]}, "rl.methods.0: must be one of"),
        ({"eval_every": 8}, "eval_every must be >= envs_per_worker * rollout_length = 16"),
    ],
)
def test_bad_params_one_line(tmp_path: Path, override: dict, message: str) -> None:
    path = write_params(tmp_path / "params.yaml", tiny_params({"rl": override}))
    with pytest.raises(ParamsError) as err:
        load_params(path)
    text = str(err.value)
    assert message in text and "\n" not in text and text.startswith(f"{path}:")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ("NoSuchEnv-v0", "unknown gymnasium environment id"),
        ("Pendulum-v1", "the policy needs discrete actions, Pendulum-v1 has Box actions"),
    ],
)
def test_bad_environment_nothing_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: str, message: str
) -> None:
    import stages_rl  # noqa: F401 - see the fixture below

    monkeypatch.chdir(tmp_path)
    write_params(tmp_path / "params.yaml", tiny_params({"rl": {"env": env}}))
    with pytest.raises(ParamsError, match=message) as err:
        stages_rl.main(["sgd-downpour", "1"])
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing written


@pytest.mark.slow
def test_stage_exit_2_one_line(tmp_path: Path) -> None:
    write_params(tmp_path / "params.yaml", tiny_params({"rl": {"env": "Pendulum-v1"}}))
    proc = subprocess.run(
        [sys.executable, str(REPO / "stages" / "rl.py"), "sgld-downpour", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: rl.env: the policy needs discrete")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


@pytest.fixture(autouse=True)
def _stage_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``stages/rl.py`` importable as ``stages_rl`` (the script is not a package module)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("stages_rl", REPO / "stages" / "rl.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "stages_rl", module)


# --------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def rl_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy where every method ran (W = 2, one seed; sgld-downpour with 3 seeds and
    MLflow tracking), then the report stage."""
    repo = copy_repo(tmp_path_factory.mktemp("rl") / "repo")
    write_params(
        repo / "params.yaml", tiny_params({"rl": {"methods": ALL_METHODS, "workers": [2]}})
    )
    with pytest.MonkeyPatch.context() as mp:  # this project's store, whatever ran before
        mp.chdir(repo)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        params = load_params("params.yaml")
        for method in ALL_METHODS:
            if method == "sgld-downpour":
                three = params.model_copy(
                    update={"rl": params.rl.model_copy(update={"seeds": [0, 1, 2]})}
                )
                run_item(three, stage_item("rl", method=method, workers=2), track=True)
            else:
                run_item(params, stage_item("rl", method=method, workers=2), track=False)
        from betamcmc.results import rl

        rl.write_area(rl.read_area(params), Path("reports/rl"))
    return repo


@pytest.mark.slow
@pytest.mark.parametrize("method", ALL_METHODS)
def test_each_method_writes_all_outputs(rl_repo: Path, method: str) -> None:
    item = f"{method}-2"
    summary = json.loads((rl_repo / "metrics" / "rl" / f"{item}.json").read_text())
    assert summary["method"] == method and summary["workers"] == 2
    assert summary["env"] == "CartPole-v1" and summary["reward_threshold"] == 475.0
    assert summary["temperature"] == (0.0 if method.split("-")[0] in ("sgd", "sgdm") else 0.001)
    assert 0 < summary["final_return_mean"] <= 500 and summary["env_steps_mean"] > 0
    assert summary["dead_workers"] == 0
    rows = (rl_repo / "metrics" / "rl" / f"{item}_curve.csv").read_text().splitlines()
    assert rows[0].startswith("level,seeds,env_steps,wall_s,return_mean,return_std")
    assert len(rows) >= 3  # the initial policy and at least one snapshot
    steps = [float(r.split(",")[2]) for r in rows[1:]]
    assert steps[0] == 0 and steps == sorted(steps)
    item_dir = rl_repo / "models" / "rl" / item
    for seed in summary["per_seed"]:
        assert (item_dir / f"seed{seed}" / "policy.pt").stat().st_size > 0
        assert len(read_samples(item_dir / f"seed{seed}" / "samples")) >= 1
    run = json.loads((item_dir / "run.json").read_text())
    assert [r["seed"] for r in run["runs"]] == [int(s) for s in summary["per_seed"]]
    assert wait_gone(worker_pids(item_dir))  # every worker process is gone
    assert not list((rl_repo / "models" / "rl").glob(".*.tmp"))  # no half-written output


@pytest.mark.slow
def test_three_seeds_mean_std_and_mlflow_run(rl_repo: Path) -> None:
    summary = json.loads((rl_repo / "metrics" / "rl" / "sgld-downpour-2.json").read_text())
    assert summary["seeds"] == 3 and summary["final_return_std"] is not None
    finals = [s["final_return"] for s in summary["per_seed"].values()]
    assert summary["final_return_mean"] == pytest.approx(np.mean(finals))
    assert summary["final_return_std"] == pytest.approx(np.std(finals, ddof=1))
    half = 4.302653 * summary["final_return_std"] / 3**0.5  # t_{0.975, 2}
    assert summary["final_return_ci_low"] == pytest.approx(np.mean(finals) - half, rel=1e-5)
    assert summary["final_return_ci_high"] == pytest.approx(np.mean(finals) + half, rel=1e-5)
    assert summary["n_seeds"] == 3 and summary["curve_return_std"] is not None
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{rl_repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("betamcmc")
    runs = client.search_runs([exp.experiment_id], "tags.stage = 'rl'")
    assert [r.data.tags["item"] for r in runs] == ["sgld-downpour-2"]
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.params["rl.temperature"] == "0.001"
    assert run.data.metrics["final_return_mean"] == pytest.approx(summary["final_return_mean"])
    assert run.data.params["workers"] == "2" and "workers" not in run.data.metrics
    assert run.data.tags["method"] == run.data.params["method"] == "sgld-downpour"
    assert run.data.tags["protocol"] == run.data.params["protocol"] == "downpour"
    history = client.get_metric_history(run.info.run_id, "curve.return_mean")
    assert (
        len(history)
        == len((rl_repo / "metrics" / "rl" / "sgld-downpour-2_curve.csv").read_text().splitlines())
        - 1
    )


@pytest.mark.slow
def test_report_table_and_figure(rl_repo: Path) -> None:
    table = (rl_repo / "reports" / "rl" / "table.md").read_text()
    main, against = table.split("## Against sgd-downpour (paired by seed)")
    rows = [line for line in main.splitlines() if line.startswith("| ") and "-2" in line]
    assert [r.split("|")[1].strip() for r in rows] == [f"{m}-2" for m in ALL_METHODS]
    # every SG-MCMC method against the baseline, with a verdict the interval gives
    compared = [line for line in against.splitlines() if line.startswith("| ") and "-2" in line]
    assert [r.split("|")[1].strip() for r in compared] == [
        f"{m}-2" for m in ALL_METHODS if m != "sgd-downpour"
    ]
    assert all(("better" in r) or ("worse" in r) or ("indistinguishable" in r) for r in compared)
    assert "solves" not in table
    assert (rl_repo / "reports" / "rl" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_play_prints_returns_and_writes_a_strip(rl_repo: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from betamcmc.cli import app

    strip = tmp_path / "strip.png"
    item_dir = rl_repo / "models" / "rl" / "sgd-elastic-2"
    result = CliRunner().invoke(
        app, ["rl", "play", str(item_dir), "-n", "3", "--strip", str(strip)]
    )
    assert result.exit_code == 0, result.output
    returns = [
        float(line.rsplit(" ", 1)[1])
        for line in result.output.splitlines()
        if "return " in line and line.startswith("episode")
    ]
    # CartPole pays 1 per step: whole returns; the mean line is their mean
    assert len(returns) == 3 and all(r == int(r) for r in returns)
    assert f"mean return {sum(returns) / 3:.1f} over 3 episodes" in result.output
    assert strip.read_bytes()[:4] == b"\x89PNG"
    # greedy actions on seeded environments: episode 0 plays the same again
    again = CliRunner().invoke(app, ["rl", "play", str(item_dir), "-n", "1", "--no-strip"])
    assert f"episode 0 (env seed 0): return {returns[0]:g}" in again.output
    missing = CliRunner().invoke(app, ["rl", "play", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such run" in missing.output


@pytest.mark.slow
def test_temperature_zero_reproduces_the_baseline_exactly(tmp_path: Path) -> None:
    """sgld at T = 0 and the sgd baseline through the engine (W = 1, ``rl.overlap: false``, so
    the protocol is deterministic): the same policy snapshots bit for bit, also across separate
    runs; T > 0 moves them by the injected noise."""
    rl = validate_params(tiny_params()).rl
    assert rl.overlap is False
    thetas = {}
    for name, method, temperature in (
        ("sgd", "sgd-downpour", 0.001),
        ("sgd_again", "sgd-downpour", 0.001),
        ("sgld0", "sgld-downpour", 0.0),
        ("sgld", "sgld-downpour", 0.001),
    ):
        spec = engine_spec(
            rl.model_copy(update={"temperature": temperature}), RUNTIME, method, 1, 7
        )
        result = run_local(spec, tmp_path / name)
        thetas[name] = read_samples(tmp_path / name).theta
        assert result.final_theta is not None  # the engine extension: the master's parameters
        assert np.array_equal(result.final_theta.numpy(), thetas[name][-1])  # downpour, W = 1
    assert len(thetas["sgd"]) >= 2
    assert np.array_equal(thetas["sgd"], thetas["sgd_again"])
    assert np.array_equal(thetas["sgd"], thetas["sgld0"])
    assert np.abs(thetas["sgd"] - thetas["sgld"]).max() > 1e-3


@pytest.mark.slow
def test_killed_worker_is_survived(tmp_path: Path) -> None:
    params = validate_params(
        # period 8: a message every 8 gradients, so the kill almost always lands while worker 2
        # computes (a kill mid-message can make the master's receive-from-any fail: see report)
        tiny_params(
            {
                "rl": {"total_steps": 8000, "eval_every": 512, "period": 8},
                "runtime": {"worker_timeout": 20.0},
            }
        )
    )
    spec = engine_spec(params.rl, params.runtime, "sgld-downpour", 2, 0)
    killed: list[int] = []

    def killer(procs: list[Any]) -> None:
        def watch() -> None:
            data = tmp_path / "samples.bin"
            deadline = time.time() + 60
            while time.time() < deadline and (not data.exists() or data.stat().st_size == 0):
                time.sleep(0.05)
            procs[-1].kill()
            killed.append(procs[-1].pid)

        threading.Thread(target=watch, daemon=True).start()

    result = run_local(spec, tmp_path, on_spawn=killer)
    assert killed and [d["worker"] for d in result.dead] == [2]
    assert result.samples == spec.config.samples  # the other worker finished the budget
    assert wait_gone(json.loads((tmp_path / "processes.json").read_text())["workers"])


@pytest.mark.slow
def test_divergence_is_a_clear_error(tmp_path: Path) -> None:
    from betamcmc.core.errors import DivergenceError
    from betamcmc.rl.experiment import run_seed

    rl = validate_params(tiny_params({"rl": {"step_size": 1e9}})).rl
    (tmp_path / "seed0").mkdir()
    with pytest.raises(DivergenceError, match="diverged.*lower rl.step_size") as err:
        run_seed(rl, RUNTIME, "sgd-downpour", 1, 0, tmp_path / "seed0", {})
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_pipeline_rl_items_and_report(pipeline: PipelineRun) -> None:
    """The `rl` items and the report stage's RL report as the shared `dvc repro` run (conftest) left
    them."""
    repo = pipeline.repo
    rl = load_params(repo / "params.yaml").rl
    items = [f"{m}-{w}" for m in rl.methods for w in rl.workers]
    for item in items:
        summary = json.loads((repo / "metrics" / "rl" / f"{item}.json").read_text())
        finals = [s["final_return"] for s in summary["per_seed"].values()]
        assert sorted(summary["per_seed"]) == [str(s) for s in rl.seeds]
        assert summary["final_return_mean"] == pytest.approx(np.mean(finals))
        assert summary["dead_workers"] == 0 and summary["env_steps_mean"] > 0
        rows = (repo / "metrics" / "rl" / f"{item}_curve.csv").read_text().splitlines()
        assert len(rows) >= 3 and float(rows[1].split(",")[2]) == 0
        for seed in rl.seeds:
            assert (repo / "models" / "rl" / item / f"seed{seed}" / "policy.pt").is_file()
    table = (repo / "reports" / "rl" / "table.md").read_text().split("## Against")[0]
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")]
    assert [r for r in rows if r in items] == items
    assert (repo / "reports" / "rl" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
