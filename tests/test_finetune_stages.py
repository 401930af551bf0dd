"""End to end: the real `classify`, `dialog` and `report` (its fine-tuning report) stages on the
tiny synthetic corpus, after the real `prepare` and `pretrain` stages: their outputs in the shared
pipeline run (``dvc repro``, conftest ``pipeline``). Further runs (determinism, bad input) call the
stage mains in-process (the same ``main(argv)`` DVC calls) on a copy, to spare ~7 s of imports per
stage; one bad-input case runs as a subprocess to check the exit code and the one-line message."""

from __future__ import annotations

import importlib.util
import json
import statistics
from pathlib import Path
from typing import Any

import mlflow
import pytest
import torch

from betamcmc.core.errors import BetamcmcError, InputError, ParamsError

from conftest import PipelineRun, copy_pipeline, copy_repo, run_stage, tiny_params, write_params

SCHEDULES = ("constant", "monotonic", "cyclical")  # the tiny params' finetune.schedules
BOWS = ("nobow", "bow")


def _params(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    raw = tiny_params(overrides)
    assert tuple(raw["finetune"]["schedules"]) == SCHEDULES
    return raw


def _main(repo: Path, stage: str):
    spec = importlib.util.spec_from_file_location(f"stage_{stage}", repo / "stages" / f"{stage}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def repo(pipeline: PipelineRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shared pipeline project (prepare, pretrain, classify, dialog and
    report ran there under `dvc repro`); the tests below write into it."""
    return copy_pipeline(pipeline, tmp_path_factory.mktemp("finetune") / "repo")


def _declared(repo: Path) -> list[Path]:
    """Every out/metric/plot path dvc.yaml declares for classify and dialog, and the report
    stage's fine-tuning folder."""
    from betamcmc.core.pipeline import stage_item

    dvc_yaml = repo / "dvc.yaml"
    items = [stage_item("classify", dvc_yaml, schedule=s) for s in SCHEDULES]
    items += [stage_item("dialog", dvc_yaml, schedule=s, bow=b) for s in SCHEDULES for b in BOWS]
    paths = [repo / p for item in items for p in item.outputs]
    return [*paths, repo / stage_item("report", dvc_yaml).path("reports/finetune")]


def _runs(repo: Path, stage: str) -> list:
    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("betamcmc")
    return client.search_runs([exp.experiment_id], filter_string=f"tags.stage = '{stage}'")


@pytest.mark.slow
def test_every_declared_output_and_mlflow_run(repo: Path) -> None:
    declared = _declared(repo)
    assert len(declared) == 3 * 2 + 3 * 2 * 3 + 1
    for path in declared:
        assert path.exists(), path
    for name in SCHEDULES:
        m = json.loads((repo / f"metrics/classify/{name}.json").read_text())
        assert m["label"] == "register" and m["schedule"] == name
        for row in m["fractions"].values():
            for method in ("vae", "random_encoder", "bow"):
                cell, per = row[method], row[method]["per_seed"]
                assert len(per) == cell["n_seeds"] == m["n_seeds"]
                # the summary is that of the per-VAE-seed accuracies (mean, sample std)
                assert cell["mean"] == pytest.approx(statistics.fmean(per))
                assert cell["std"] == pytest.approx(statistics.stdev(per))
        assert set(m["valid"]) == {"sample", "mean"}
        assert set(m["valid"]["mean"]) == set(m["fractions"])
        for bow in BOWS:
            item = f"{name}-{bow}"
            d = json.loads((repo / f"metrics/dialog/{item}.json").read_text())
            assert d["bow"] is (bow == "bow") and d["test_kl"] >= 0
            assert d["test_elbo"] == pytest.approx(-(d["test_rec"] + d["test_kl"]))
            # one CVAE per finetune.dialog.seeds seed: mean, std (ddof 1), CI, per-seed values
            per = d["per_seed"]["bleu4_precision"]
            assert d["n_seeds"] == len(per) == len(d["seeds"]) >= 2
            assert d["bleu4_precision"] == pytest.approx(sum(per) / len(per))
            assert d["bleu4_precision_std"] == pytest.approx(statistics.stdev(per))
            assert (
                d["bleu4_precision_ci_low"] <= d["bleu4_precision"] <= d["bleu4_precision_ci_high"]
            )
            distinct = d["per_seed"]["distinct2"]
            assert d["distinct2"] == pytest.approx(statistics.fmean(distinct))
            assert d["act_agreement"] is not None  # the synthetic dialogs have acts
            assert (d["test_bow"] > 0) is (bow == "bow")
            csv = (repo / f"metrics/dialog/{item}_train.csv").read_text().splitlines()
            assert csv[0] == "step,beta,loss,rec,kl,bow" and len(csv) == 1 + d["iterations"]
            assert (repo / f"models/dialog/{item}/model.pt").exists()
    report = (repo / "reports/finetune/classify.md").read_text()
    assert all(f"VAE code, {name}" in report for name in SCHEDULES)
    assert (repo / "reports/finetune/classify_accuracy.png").stat().st_size > 1000
    dialog_md = (repo / "reports/finetune/dialog.md").read_text()
    assert all(f"| {s}-{b} |" in dialog_md for s in SCHEDULES for b in BOWS)  # every pair row
    assert "| cyclical-bow |" in dialog_md and "indistinguishable" in dialog_md
    head_md = (repo / "reports/finetune/vae_head.md").read_text()
    assert all(f"| {name} | accuracy |" in head_md for name in SCHEDULES)
    classify_runs = _runs(repo, "classify")
    assert sorted(r.data.tags["schedule"] for r in classify_runs) == sorted(SCHEDULES)
    dialog_runs = _runs(repo, "dialog")
    assert sorted(r.info.run_name for r in dialog_runs) == sorted(
        f"dialog@{s}-{b}" for s in SCHEDULES for b in BOWS
    )
    assert all(r.info.status == "FINISHED" for r in classify_runs + dialog_runs)
    # the same metric and param names in every item of a stage (columns line up in the UI)
    for runs in (classify_runs, dialog_runs):
        assert len({tuple(sorted(r.data.metrics)) for r in runs}) == 1
        # (params too, but for the knobs of the schedule's kind: constant has no cycles)
        same = {
            tuple(sorted(k for k in r.data.params if not k.startswith("schedule."))) for r in runs
        }
        assert len(same) == 1
    assert "bleu4_precision" in dialog_runs[0].data.metrics
    assert "fractions.100pct.vae.mean" in classify_runs[0].data.metrics
    assert dialog_runs[0].data.params["schedule.kind"] == dialog_runs[0].data.params["schedule"]
    assert {"iterations", "schedule", "bow"} <= set(dialog_runs[0].data.params)
    # the live training curve (batched while training) has every iteration
    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    d = json.loads((repo / "metrics/dialog/cyclical-bow.json").read_text())
    run = next(r for r in dialog_runs if r.info.run_name == "dialog@cyclical-bow")
    history = client.get_metric_history(run.info.run_id, "train.kl")
    assert len(history) == d["iterations"] * d["n_seeds"]  # every iteration of every seed
    assert len(_runs(repo, "report")) == 1


@pytest.mark.slow
def test_same_params_same_metrics(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    before = torch.get_num_threads()
    rels = ("classify/cyclical.json", "dialog/cyclical-bow.json")
    first = {rel: (repo / "metrics" / rel).read_text() for rel in rels}
    _main(repo, "classify")(["cyclical"])
    _main(repo, "dialog")(["cyclical", "--bow", "bow"])
    torch.set_num_threads(before)
    for rel in rels:
        assert (repo / "metrics" / rel).read_text() == first[rel]


@pytest.mark.slow
def test_respond_cli_prints_samples(repo: Path) -> None:
    from typer.testing import CliRunner

    from betamcmc.cli import app

    result = CliRunner().invoke(
        app, ["respond", "hi there", "-m", str(repo / "models/dialog/cyclical-bow"), "-n", "3"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert [line.split(".")[0] for line in lines] == ["1", "2", "3"]


def _nothing_new(repo: Path, before: set[Path]) -> None:
    after = {p for p in repo.rglob("*") if p.is_file() and "mlflow" not in p.name}
    assert after == before, sorted(after - before)


@pytest.mark.slow
def test_bad_input_one_line_exit_2_nothing_written(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo)
    files = {p for p in repo.rglob("*") if p.is_file() and "mlflow" not in p.name}
    # a label fraction outside (0, 1]: the real subprocess, as DVC runs it
    bad = write_params(repo / "bad.yaml", _params({"finetune": {"label_fractions": [0.5, 1.5]}}))
    proc = run_stage(repo, "classify", "cyclical", "--params", str(bad), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "finetune.label_fractions.1: must be in (0, 1] (got 1.5)" in proc.stderr
    bad.unlink()
    # an unknown schedule
    with pytest.raises(ParamsError, match=r"finetune.schedules: must be one of .* \(got 'nope'\)"):
        _main(repo, "dialog")(["nope", "--bow", "bow"])
    # a pretrained encoder whose vocabulary differs from the prepared one
    vocab = repo / "models/pretrain/cyclical/vocab.txt"
    original = vocab.read_text()
    vocab.write_text("\n".join(original.splitlines()[:-1] + ["zzz"]) + "\n")
    try:
        with pytest.raises(InputError, match="vocabulary mismatch") as err:
            _main(repo, "dialog")(["cyclical", "--bow", "bow"])
    finally:
        vocab.write_text(original)
    assert err.value.exit_code == 2 and "\n" not in str(err.value)
    _nothing_new(repo, files)


@pytest.mark.slow
def test_wrong_vocabulary_or_corpus_one_line_exit_2(tmp_path: Path) -> None:
    """A corpus without labels and dialogs, in a project of its own (the stages read dvc.yaml's
    paths)."""
    repo = copy_repo(tmp_path / "repo")
    text = repo / "plain.txt"
    text.write_text("".join(f"the cat sat on mat number {i % 7}\n" for i in range(60)))
    write_params(repo / "params.yaml", _params({"data": {"corpus": "text", "path": str(text)}}))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(repo)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        _main(repo, "prepare")([])  # a corpus without labels and without dialogs
        files = {p for p in repo.rglob("*") if p.is_file() and "mlflow" not in p.name}
        with pytest.raises(InputError, match="has no sentence labels") as err:
            _main(repo, "classify")(["cyclical"])
        assert err.value.exit_code == 2 and str(err.value).startswith("data/prepared: ")
        with pytest.raises(InputError, match="has no dialog responses") as err:
            _main(repo, "dialog")(["cyclical", "--bow", "nobow"])
        assert isinstance(err.value, BetamcmcError) and err.value.exit_code == 2
        _nothing_new(repo, files)
