"""End-to-end runs of every protocol with 2 worker processes on localhost, and the faults.

Each run spawns real worker processes (gloo over loopback, a private file store, so tests never
share a port); ``run_local`` terminates them on every way out, and the tests check that too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from betamcmc.core.errors import DivergenceError
from betamcmc.params import validate_params
from betamcmc.sgmcmc.engine import launch
from betamcmc.sgmcmc.engine.config import RunSpec
from betamcmc.sgmcmc.engine.launch import forkserver_preload, run_local
from betamcmc.sgmcmc.engine.protocols.exchange import LATE_ROUNDS
from betamcmc.sgmcmc.engine.result import RunResult
from betamcmc.sgmcmc.engine.samples import read_samples
from betamcmc.sgmcmc.experiment import make_spec

from conftest import REPO, tiny_params, wait_gone, write_params

pytestmark = pytest.mark.slow


def spec(protocol: str, workers: int = 2, **sgmcmc: Any) -> RunSpec:
    params = validate_params(tiny_params({"sgmcmc": sgmcmc}))
    return make_spec(params, protocol, workers)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[RunResult, Path]]:
    out: dict[str, tuple[RunResult, Path]] = {}
    for protocol in ("single", "sync", "downpour", "elastic"):
        d = tmp_path_factory.mktemp(protocol)
        out[protocol] = (run_local(spec(protocol), d), d)
    for protocol in ("downpour", "elastic"):  # the blocking variants (no overlap)
        d = tmp_path_factory.mktemp(protocol + "-blocking")
        out[protocol + "-blocking"] = (run_local(spec(protocol, overlap=False), d), d)
    return out


@pytest.mark.parametrize(
    "name", ["single", "sync", "downpour", "elastic", "downpour-blocking", "elastic-blocking"]
)
def test_protocol_end_to_end(runs: dict[str, tuple[RunResult, Path]], name: str) -> None:
    result, d = runs[name]
    protocol = name.split("-")[0]
    s = read_samples(d)
    assert result.samples == len(s) == 12
    assert np.isfinite(s.theta).all() and (np.diff(s.wall_s) >= 0).all()
    assert result.dead == [] and result.bytes_total > 0 and result.messages > 0
    assert all(w["status"] == "done" for w in result.per_worker.values())
    procs = json.loads((d / "processes.json").read_text())["workers"]
    assert len(procs) == 2 and wait_gone(procs)
    if protocol == "single":  # two independent chains sharing the budget, each past burn-in
        assert sorted(set(s.chain.tolist())) == [0, 1] and (s.step >= 20).all()
    if protocol == "sync":  # one chain, steps 20, 22, ...; all-reduce traffic counted
        assert s.chain.tolist() == [0] * 12 and s.step.tolist() == list(range(20, 44, 2))
        assert result.bytes_collective > 0
    if protocol in ("downpour", "elastic"):
        assert result.staleness_mean is not None and result.bytes_from_master > 0
        # a push/exchange every tau = 2 steps, up to (LATE_ROUNDS + 1) tau when a reply is late
        w1 = result.per_worker["1"]
        assert w1["messages_to_master"] >= w1["steps"] // (2 * (LATE_ROUNDS + 1))
    if protocol == "downpour":
        assert (s.chain == 0).all() and (np.diff(s.step) >= 2).all() and s.step[0] >= 20


@pytest.mark.parametrize("protocol", ["single", "sync"])
def test_deterministic_protocols_repeat_exactly(
    runs: dict[str, tuple[RunResult, Path]], protocol: str, tmp_path: Path
) -> None:
    run_local(spec(protocol), tmp_path)
    first, again = read_samples(runs[protocol][1]), read_samples(tmp_path)
    order = np.lexsort((first.step, first.chain)), np.lexsort((again.step, again.chain))
    np.testing.assert_array_equal(first.theta[order[0]], again.theta[order[1]])


@pytest.mark.parametrize("protocol", ["downpour", "elastic"])
def test_one_worker_is_never_stale(tmp_path: Path, protocol: str) -> None:
    """Staleness = master versions applied between a worker's pull and its push: with W = 1
    there is nobody else, so every push has staleness 0 (also overlapped: the rebase keeps the
    pulled version); the worker sees the same count in the replies."""
    result = run_local(spec(protocol, 1), tmp_path)
    assert result.staleness_mean == 0.0 and result.staleness_max == 0


@pytest.mark.parametrize(
    ("rule", "factor"), [("none", 1.0), ("inverse", 0.25), ("inverse_square", 1 / 16)]
)
def test_staleness_aware_step_size(rule: str, factor: float) -> None:
    """A downpour worker whose pushes arrive 3 versions stale steps with eta / (1 + 3)^p and
    tells the master so in every push (the master then counts tau x factor chain steps)."""
    from betamcmc.sgmcmc.engine import wire
    from betamcmc.sgmcmc.engine.worker import WorkerContext

    ctx = WorkerContext(spec("downpour", 4, staleness=rule), rank=1)
    eta = ctx.sampler.step_size
    for _ in range(50):
        ctx._observe_staleness(3.0)
    ctx.scale_step_for_staleness()
    assert ctx.sampler.step_size == pytest.approx(eta * factor)
    assert float(ctx._write(wire.PUSH, ctx.theta)[wire.STEP_SCALE]) == pytest.approx(factor)


def test_master_counts_a_scaled_push_as_fewer_chain_steps(tmp_path: Path) -> None:
    """downpour's master: a push of 2 steps scaled by 0.25 advances its chain by 0.5."""
    import torch

    from betamcmc.sgmcmc.engine import protocols, wire
    from betamcmc.sgmcmc.engine.master import Master
    from betamcmc.sgmcmc.engine.samples import SampleWriter

    s = spec("downpour", 2)
    writer = SampleWriter(tmp_path, [("w", [3])], {})
    master = Master(s.config, 2, 3, writer, torch.zeros(3))
    values = [0.0] * wire.HEADER
    values[wire.STEP_SCALE], values[wire.PUSH_STEPS] = 0.25, 2
    header = wire.WorkerHeader(*values)
    assert (header.step_scale, header.push_steps) == (0.25, 2)
    for pushes in range(1, 5):
        reply = protocols.get("downpour").on_message(master, 1, wire.PUSH, header, torch.ones(3))
        assert master.chain_steps == pytest.approx(0.5 * pushes) and master.version == pushes
        assert reply.kind == wire.PARAMS and reply.header[wire.REPLY_VERSION] == pushes
    writer.close()
    assert torch.equal(master.theta, torch.full((3,), 4.0))


def test_staleness_aware_downpour_runs_to_the_end(tmp_path: Path) -> None:
    result = run_local(spec("downpour", 2, staleness="inverse_square"), tmp_path)
    s = read_samples(tmp_path)
    assert result.complete and len(s) == 12 and (np.diff(s.step) >= 2).all() and s.step[0] >= 20


def test_killed_worker_is_detected_and_run_completes(tmp_path: Path) -> None:
    """SIGKILL worker 2 mid-run: the master records it and finishes with worker 1."""
    killed: list[int] = []

    def killer(procs: list[Any]) -> None:
        def watch() -> None:
            data = tmp_path / "samples.bin"
            deadline = time.time() + 60
            while time.time() < deadline:
                if data.exists() and data.stat().st_size > 3 * 8 * 1000:
                    os.kill(procs[1].pid, signal.SIGKILL)
                    killed.append(procs[1].pid)
                    return
                time.sleep(0.005)

        threading.Thread(target=watch, daemon=True).start()

    s = spec("downpour", samples=150, thinning=4, straggler_delay=0.002)
    result = run_local(s, tmp_path, on_spawn=killer)
    assert killed, "the run ended before the worker could be killed"
    assert result.samples == 150 == len(read_samples(tmp_path))
    assert [d["worker"] for d in result.dead] == [2]
    assert result.per_worker["2"]["status"] == "dead" and result.per_worker["1"]["status"] == "done"


def test_divergence_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DivergenceError, match="step_size"):
        run_local(spec("downpour", sampler={"step_size": 50.0}), tmp_path)
    procs = json.loads((tmp_path / "processes.json").read_text())["workers"]
    assert wait_gone(procs)


def test_sigterm_leaves_samples_readable(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "stages").mkdir(parents=True)
    (repo / "stages" / "sgmcmc.py").write_text((REPO / "stages" / "sgmcmc.py").read_text())
    (repo / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())  # where the outputs go
    write_params(
        repo / "params.yaml", tiny_params({"sgmcmc": {"samples": 100000, "straggler_delay": 0.001}})
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen(
        [sys.executable, "stages/sgmcmc.py", "elastic", "2", "--no-track"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    partial = repo / "models" / "sgmcmc" / "elastic-2.partial" / "seed-0"  # the first seed's
    try:
        deadline = time.time() + 90
        while time.time() < deadline and proc.poll() is None:
            data = partial / "samples.bin"
            if data.exists() and data.stat().st_size > 5 * (32 + 4 * 1000):
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert err.strip().startswith("error: stopped by SIGTERM") and err.strip().count("\n") == 0
    s = read_samples(partial)
    assert len(s) >= 5 and np.isfinite(s.theta).all()
    workers = json.loads((partial / "processes.json").read_text())["workers"]
    assert wait_gone(workers)
    assert not (repo / "models" / "sgmcmc" / "elastic-2").exists()


def test_the_forkserver_preloads_what_the_calling_script_imported() -> None:
    """A worker re-imports the script that started the run (``__mp_main__``): every module of
    the package the caller has loaded is imported once by the forkserver, not by each worker."""
    import betamcmc.core.paramfile  # noqa: F401 - what every stage script imports at the top
    import betamcmc.core.runner  # noqa: F401

    preload = forkserver_preload()
    assert preload[0] == "betamcmc.sgmcmc.engine.launch"
    assert {"betamcmc.core.paramfile", "betamcmc.core.runner", "betamcmc.sgmcmc.params"} <= set(
        preload
    )
    assert all(name.startswith("betamcmc.") for name in preload)


def test_start_forkserver_starts_the_workers_server_except_under_torchrun(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The engine stages start the workers' fork server before they open their MLflow run (its
    imports then overlap that set-up); a torchrun rank forks no workers, so it starts none."""
    started: list[Any] = []
    monkeypatch.setattr(launch, "start_server", lambda fn, preload=(): started.append(fn))
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    launch.start_forkserver()
    assert started == [launch._worker_entry]
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "3")
    launch.start_forkserver()
    assert started == [launch._worker_entry]
