"""The results page and the headline numbers, from metrics files shaped as the stages write them
(the end-to-end test checks them on a real tiny pipeline run)."""

from __future__ import annotations

from typing import Any

from betamcmc.params import load_params
from betamcmc.results.page import render
from betamcmc.results.summary import headline

from conftest import REPO


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


def test_page_has_every_area_its_numbers_and_the_mlflow_filters() -> None:
    params = load_params(REPO / "params.yaml")
    page = render(params, _results(), {"pretrain/curves.png", "rl/curves.png"})
    for heading in ("## Text VAE", "## Downstream", "## Asynchronous SG-MCMC",
                    "## Reinforcement learning", "## The runs in MLflow"):  # fmt: skip
        assert heading in page
    assert "| cyclical | cyclical | 2.50 ± 0.10 |" in page  # KL mean ± std over seeds
    assert "best schedule is **cyclical**" in page  # 0.52 > 0.31 with the fewest labels
    assert "Fastest to 0.95 here: **downpour-2** (2.00 s)" in page
    assert "![training curves per schedule](pretrain/curves.png)" in page
    assert "sgmcmc/accuracy_vs_time.png" not in page  # a figure that does not exist: no link
    assert "tags.stage = 'pretrain' and tags.pipeline_run = '<id>'" in page
    assert "| sgld-downpour-2 | 0.001 | 120.5 ± 10.0 | 0/3 | – |" in page


def test_page_survives_metrics_of_another_shape() -> None:
    results = _results()
    results["pretrain"]["cyclical"] = {"test": {"kl": 1.0}}  # an older or newer file
    results["classify"] = {}
    page = render(load_params(REPO / "params.yaml"), results, set())
    assert "| cyclical | – | 1.00 | – |" in page
