"""The real pipeline end to end in a temporary git + DVC repo on the tiny params.

The shared ``pipeline`` fixture (conftest) runs ``dvc repro`` of every stage once per session; each
area's tests assert on its stages' outputs (``test_data``, ``test_vae_pretrain``,
``test_finetune_stages``, ``test_finetune_vae_head``, ``test_sgmcmc_stage``, ``test_rl_stage``).
Here, what holds for the pipeline as a whole: every stage item ran once and is up to date, each
tracked stage left one finished MLflow run per item in the store at the repo's root, and a second
``dvc repro`` is a no-op. DVC experiments (``dvc exp run -S``, the queue) are in
``test_dvc_failures`` on a project where only ``prepare`` ran.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import mlflow
import pytest
import yaml

from conftest import PipelineRun, dvc

pytestmark = pytest.mark.slow


def _runs(repo: Path) -> list:
    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("betamcmc")
    return client.search_runs([exp.experiment_id], max_results=5000)


def _items(repo: Path) -> list[str]:
    """Every stage item of the pipeline (``pretrain@cyclical``, ``sgmcmc@single-1``, ...)."""
    return list(yaml.safe_load((repo / "dvc.lock").read_text())["stages"])


def test_every_stage_item_ran_once_and_is_up_to_date(pipeline: PipelineRun) -> None:
    repo = pipeline.repo
    items = _items(repo)
    declared = set(yaml.safe_load((repo / "dvc.yaml").read_text())["stages"])
    assert {item.split("@")[0] for item in items} == declared  # every stage has run
    ran = Counter(
        line.split("'")[1] for line in pipeline.output.splitlines() if line.startswith("Running")
    )
    assert ran == Counter(items), "each stage item runs exactly once"
    assert "Data and pipelines are up to date." in dvc(repo, "status")
    for item, lock in yaml.safe_load((repo / "dvc.lock").read_text())["stages"].items():
        for out in lock.get("outs", []):
            assert (repo / out["path"]).exists(), f"{item}: {out['path']} missing"

    parents = [r for r in _runs(repo) if "mlflow.parentRunId" not in r.data.tags]
    assert all(r.info.status == "FINISHED" for r in parents)
    # one MLflow run per stage item (report stages too), named as DVC names the item
    assert sorted(r.info.run_name for r in parents) == sorted(items)
    for run in parents:
        assert run.data.tags["git_commit"] and run.data.tags["params_hash"]
        assert "dvc_exp_name" not in run.data.tags
    # ... and all the runs of this one `dvc repro` share a pipeline_run tag
    assert len({r.data.tags["pipeline_run"] for r in _runs(repo)}) == 1
    assert parents[0].data.tags["pipeline_run"].startswith("repro-")
    # the store is at the repo's root, never inside a stage's working area
    assert not list((repo / ".dvc").rglob("mlflow.db"))


def test_results_page_headline_numbers_and_overlays(pipeline: PipelineRun) -> None:
    """The final `report` stage: one page of results, the only DVC metrics file, the overlays."""
    repo = pipeline.repo
    page = (repo / "reports" / "index.md").read_text()
    assert all(f"| {s} | {s} |" in page for s in ("constant", "monotonic", "cyclical"))
    for link in (
        "pretrain/comparison.md",
        "finetune/classify.md",
        "sgmcmc/table.md",
        "rl/table.md",
    ):
        assert f"]({link})" in page and (repo / "reports" / link).exists()
    text = dvc(repo, "metrics", "show", "--json")
    shown = json.loads(text[text.index("{") : text.rindex("}") + 1])
    files = [f for rev in shown.values() for f in rev.get("data", {})]
    assert files == ["metrics/summary.json"], files
    summary = json.loads((repo / "metrics" / "summary.json").read_text())
    cyclical = json.loads((repo / "metrics" / "pretrain" / "cyclical.json").read_text())
    assert summary["pretrain.cyclical.kl"] == cyclical["test"]["kl"]
    assert all(isinstance(v, float) for v in summary.values()) and len(summary) < 120
    # the overlays: one series per schedule in one plot, rendered by `dvc plots show`
    overlay = (repo / "metrics" / "plots" / "pretrain_train.csv").read_text().splitlines()
    schedules = {"constant", "monotonic", "cyclical", "cyclical-restart"}  # every pretrain schedule
    assert {row.split(",")[1] for row in overlay[1:]} == schedules
    plots = dvc(repo, "plots", "show", "--json")
    for name in ("kl_by_schedule", "bma_accuracy_by_protocol", "return_by_rl_method"):
        assert f'"{name}"' in plots


def test_second_repro_is_a_no_op(pipeline: PipelineRun) -> None:
    again = dvc(pipeline.repo, "repro")
    assert "Running stage" not in again and "up to date" in again
