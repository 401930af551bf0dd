"""The results page and the headline numbers, from metrics files shaped as the stages write them
(the end-to-end test checks them on a real tiny pipeline run)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from betamcmc.params import load_params
from betamcmc.results.page import render
from betamcmc.results.summary import headline

from conftest import REPO, tiny_params, write_params


def _results() -> dict[str, dict[str, dict[str, Any]]]:
    def vae(kl: float) -> dict[str, Any]:
        test = {"recon": 30.0, "kl": kl, "kl_std": 0.1, "elbo": -31.0, "nll": 29.0 + kl,
                "nll_std": 0.2, "ppl": 9.0, "mi": kl / 2, "mi_std": 0.05, "au": 3.0, "au_std": 0.0}  # fmt: skip
        return {"schedule": "x", "kind": "cyclical" if kl > 1 else "constant", "seeds": [0, 1],
                "best_iteration": 40, "test": test, "valid": test, "per_seed": {"0": {"test": test}}}  # fmt: skip

    def fractions(vae_acc: float) -> dict[str, Any]:
        return {"1pct": {"fraction": 0.01, "labeled": 3, "vae": {"mean": vae_acc, "std": 0.01},
                         "random_encoder": {"mean": 0.3, "std": 0.0}, "bow": {"mean": 0.6, "std": 0.0}}}  # fmt: skip

    return {
        "pretrain": {"constant": vae(0.02), "cyclical": vae(2.5)},
        "classify": {
            "constant": {"label": "topic", "fractions": fractions(0.31)},
            "cyclical": {"label": "topic", "fractions": fractions(0.52)},
        },  # fmt: skip
        "dialog": {
            "cyclical-bow": {"test_kl": 1.5, "bleu4_f1": 0.2, "distinct2": 0.4, "bleu1_f1": 0.5}
        },  # fmt: skip
        "vae_head": {
            "cyclical": {
                "sgmcmc": {"accuracy": 0.7},
                "point_estimate": {"accuracy": 0.68},
                "majority_baseline": 0.5,
            }
        },  # fmt: skip
        "sgmcmc": {
            "single-1": {
                "accuracy": 0.97,
                "log_likelihood": -0.11,
                "time_to_acc95_s": 3.0,
                "grads_to_acc95": 900,
                "bytes_per_sample": 5e5,
                "wall_s": 9.0,
            },
            "downpour-2": {
                "accuracy": 0.96,
                "log_likelihood": -0.15,
                "time_to_acc95_s": 2.0,
                "grads_to_acc95": None,
                "bytes_per_sample": 2e6,
                "wall_s": 7.0,
            },
        },  # fmt: skip
        "sgmcmc_sgd": {"sgmcmc_sgd": {"accuracy": 0.95, "log_likelihood": -0.2, "steps": 40}},
        "consistency": {
            "sgmcmc_consistency": {"runs": {"single-tau1": {"mean_error": 0.1, "var_error": 0.3}}}
        },  # fmt: skip
        "rl": {
            "sgld-downpour-2": {
                "env": "CartPole-v1",
                "reward_threshold": 475.0,
                "temperature": 0.001,
                "final_return_mean": 120.5,
                "final_return_std": 10.0,
                "solved_runs": 0,
                "seeds": 3,
                "steps_to_threshold_median": None,
                "wall_s_mean": 30.0,
            }
        },  # fmt: skip
    }


def test_headline_numbers_are_flat_numeric_and_free_of_wall_clock() -> None:
    s = headline(_results())
    assert s["pretrain.cyclical.kl"] == 2.5 and s["pretrain.constant.au"] == 3.0
    assert s["classify.cyclical.1pct"] == 0.52 and s["classify.bow.1pct"] == 0.6
    assert s["dialog.cyclical-bow.bleu4_f1"] == 0.2 and s["vae_head.cyclical.map_accuracy"] == 0.68
    assert (
        s["sgmcmc.single-1.grads_to_acc95"] == 900 and "sgmcmc.downpour-2.grads_to_acc95" not in s
    )
    assert s["sgmcmc.sgd.accuracy"] == 0.95 and s["consistency.single-tau1.mean_error"] == 0.1
    assert s["rl.sgld-downpour-2.final_return"] == 120.5
    assert all(isinstance(v, float) for v in s.values())
    assert not any(word in k for k in s for word in ("wall", "time", "_s", "per_s"))


def _with_seeds(results: dict[str, Any]) -> dict[str, Any]:
    """The shapes the stages write over seeds: CI keys, per-seed values, diagnostics."""
    for name, m in results["pretrain"].items():
        m["test"].update(kl_ci_low=m["test"]["kl"] - 0.2, kl_ci_high=m["test"]["kl"] + 0.2)
        m["lr_cycles"] = 4 if name == "cyclical" else 1
    for m in results["classify"].values():
        base = m["fractions"]["1pct"]["vae"]["mean"]
        m["fractions"]["1pct"]["vae"].update(
            ci_low=base - 0.02, ci_high=base + 0.02, per_seed=[base - 0.01, base, base + 0.01]
        )
    for name, m in results["sgmcmc"].items():
        shift = 0.0 if name == "single-1" else 0.02
        m.update(accuracy_std=0.01, accuracy_ci_low=m["accuracy"] - 0.01,
                 accuracy_ci_high=m["accuracy"] + 0.01, converged=name == "single-1",
                 rhat_max=1.01 if name == "single-1" else 1.3, ess_bulk_min=150.0,
                 ess_tail_min=120.0, thresholds={"rhat_max": 1.05, "ess_min": 100.0},
                 per_seed=[{"accuracy": a - shift, "log_likelihood": -0.1,
                            "time_to_acc95_s": None} for a in (0.97, 0.975, 0.972)])  # fmt: skip
    results["vae_head"]["cyclical"].update(converged=False, rhat_max=1.2, ess_bulk_min=20.0,
                                           ess_tail_min=15.0)  # fmt: skip
    return results


def test_page_has_every_area_its_numbers_and_the_mlflow_filters() -> None:
    params = load_params(REPO / "params.yaml")
    page = render(params, _with_seeds(_results()), {"pretrain/curves.png", "rl/curves.png"})
    for heading in ("## Text VAE", "## Downstream", "## Asynchronous SG-MCMC",
                    "## Reinforcement learning", "## Convergence of the chains",
                    "## The runs in MLflow"):  # fmt: skip
        assert heading in page
    # mean ± sample std [95 % CI] over seeds, and the schedule's own lr cycles
    assert "| cyclical | cyclical | 4 | 2.5 ± 0.1 [2.3, 2.7] |" in page
    # schedules paired by VAE seed: +0.21 on every seed, interval clear of 0
    assert "- cyclical vs constant, accuracy at 1pct labels: 3/3 seeds, Δ 0.21 [0.21, 0.21]" in page
    assert "→ **cyclical better**." in page
    # downpour-2 is 0.02 behind single-1 on every seed; no seed reached 0.95: no timing claim
    assert "- downpour-2 vs single-1, accuracy: 0/3 seeds, Δ -0.02" in page
    assert "→ **single-1 better**." in page
    assert "- downpour-2 vs single-1, s to 0.95: no common seeds to compare." in page
    assert "Fastest" not in page and "best schedule" not in page  # no ordering without interval
    # every posterior failing the thresholds is flagged by name
    assert "2 of 3 posteriors are **unconverged**" in page
    assert "- **sgmcmc@downpour-2**: **UNCONVERGED** (R̂ 1.300, ESS bulk 150 / tail 120)" in page
    assert "- **sgmcmc_vae_head@cyclical**: **UNCONVERGED**" in page
    assert "sgmcmc@single-1**" not in page
    assert "![training curves per schedule](pretrain/curves.png)" in page
    assert "sgmcmc/accuracy_vs_time.png" not in page  # a figure that does not exist: no link
    assert "tags.stage = 'pretrain' and tags.pipeline_run = '<id>'" in page
    assert "| sgld-downpour-2 | 0.001 | 120.5 | 0/3 | – |" in page  # no CI in the file: mean


def test_page_survives_metrics_of_another_shape() -> None:
    results = _results()
    results["pretrain"]["cyclical"] = {"test": {"kl": 1.0}}  # an older or newer file
    results["classify"] = {}
    page = render(load_params(REPO / "params.yaml"), results, set())
    assert "| cyclical | – | – | 1 | – |" in page


def test_report_reads_every_area_input_before_its_mlflow_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing input of an area report (the learning-curve CSV of one rl item: the page itself
    reads only the metrics files) stops the report stage with an input error naming the file,
    before it opens its MLflow run or writes anything."""
    from betamcmc import tracking
    from betamcmc.core.errors import InputError
    from betamcmc.core.pipeline import stage_item
    from betamcmc.results import run

    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    params = load_params(write_params(tmp_path / "params.yaml", tiny_params()))
    monkeypatch.chdir(tmp_path)
    for key, stage in run.items(params)["rl"].items():  # the metrics are there, the curves not
        stage.path(".json").parent.mkdir(parents=True, exist_ok=True)
        stage.path(".json").write_text(json.dumps({"item": key, "reward_threshold": 195.0}))
    before = sorted(tmp_path.rglob("*"))
    opened: list[Any] = []
    monkeypatch.setattr(run, "collect", lambda _params: {})  # the page's inputs: not the point
    monkeypatch.setattr(run, "overlay_tables", lambda _items: {})
    monkeypatch.setattr(run, "headline", lambda _results: {})
    monkeypatch.setattr(tracking, "stage_run", lambda *args: opened.append(args))

    with pytest.raises(InputError, match="learning-curve CSV not found") as err:
        run.run_report(params, stage_item("report"))
    first = stage_item("rl", method=params.rl.methods[0], workers=params.rl.workers[0])
    assert str(first.path("_curve.csv")) in str(err.value)
    assert opened == []
    assert sorted(tmp_path.rglob("*")) == before
