"""Progress of long loops: lines off a terminal, a bar on one, live batched MLflow step metrics."""

from __future__ import annotations

import io
from pathlib import Path

import mlflow
import pytest

from betamcmc import tracking
from betamcmc.core.pipeline import StageItem
from betamcmc.params import load_params
from betamcmc.tracking.progress import Progress

from conftest import tiny_params, write_params


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_when_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BETAMCMC_PROGRESS", raising=False)
    out = io.StringIO()
    with Progress("pretrain@cyclical", stream=out) as progress:
        for i in range(1, 1001):
            progress(i, 1000, {"kl": 2.0, "beta": i / 1000})
    lines = out.getvalue().splitlines()
    assert 10 <= len(lines) <= 11  # one per tenth of the total (and the end), not one per step
    assert lines[-1].startswith("pretrain@cyclical 1000/1000 (100%) kl 2 beta 1 ")
    assert "ETA" in lines[0] and lines[0].startswith("pretrain@cyclical 100/1000 (10%)")


def test_one_line_per_step_when_a_loop_reports_twice_at_it() -> None:
    """pretrain reports the training values and, at an evaluation, the validation values at the
    same iteration: the end is printed once, not twice."""
    out = io.StringIO()
    with Progress("p", stream=out, mode="lines") as progress:
        for i in range(1, 41):
            progress(i, 40, {"kl": 1.0})
            if i % 20 == 0:
                progress(i, 40, {"valid_kl": 2.0})
    ends = [line for line in out.getvalue().splitlines() if line.startswith("p 40/40")]
    assert len(ends) == 1, out.getvalue()


def test_a_bar_on_a_terminal_and_off_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BETAMCMC_PROGRESS", raising=False)
    monkeypatch.delenv("CI", raising=False)
    tty = Tty()
    with Progress("dialog@cyclical-bow", stream=tty) as progress:
        for i in range(1, 51):
            progress(i, 50, {"loss": 3.25})
    assert "dialog@cyclical-bow" in tty.getvalue() and "50/50" in tty.getvalue()
    assert "loss=3.25" in tty.getvalue()
    monkeypatch.setenv("CI", "true")  # CI: plain lines even on a terminal
    assert Progress("x", stream=Tty()).mode == "lines"
    monkeypatch.setenv("BETAMCMC_PROGRESS", "off")
    quiet = io.StringIO()
    with Progress("x", stream=quiet) as progress:
        progress(1, 1, {"a": 1.0})
    assert quiet.getvalue() == ""


def test_mlflow_receives_step_metrics_while_running_in_few_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path)
    params = load_params(write_params(tmp_path / "params.yaml", tiny_params()))
    calls: list[int] = []
    real = tracking.send_metrics

    def counted(link: tracking.Link | None, points: list) -> None:
        calls.append(len(points))
        real(link, points)

    monkeypatch.setattr(tracking, "send_metrics", counted)
    with tracking.stage_run(params, StageItem("progress")) as run:
        progress = Progress("x", mlflow=True, prefix="train.", stream=io.StringIO(), flush_s=3600)
        for i in range(1, 601):
            progress(i, 600, {"kl": float(i), "beta": 0.5})
        # 1200 points: one batch of 1000 went out during the loop, the rest at the end
        assert calls == [1000]
        progress.close()
    assert calls == [1000, 200]
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    history = client.get_metric_history(run.run_id, "train.kl")
    assert [m.step for m in history] == list(range(1, 601))
    assert [m.value for m in history][-1] == 600.0
    assert history[0].timestamp <= history[-1].timestamp


def test_no_mlflow_import_for_untracked_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.delitem(sys.modules, "mlflow")
    progress = Progress("x", mlflow=True, stream=io.StringIO())
    progress(1, 2, {"a": 1.0})
    progress.close()
    assert "mlflow" not in sys.modules and progress.link is None
