"""The headline numbers of a pipeline run: ``metrics/summary.json``, the only DVC metrics file.

Flat (``area.item.metric``), numeric, and free of wall-clock figures (they change with the
machine's load, not with the settings), so ``dvc exp show --only-changed`` and ``dvc metrics
diff`` show what a change of settings did and fit a screen. The per-item metrics files keep every
detail (per seed, timings, counters); the results page (``reports/index.md``) shows both.

What is a headline, per area:

* pretrain: test KL, MI, active units, importance-sampled NLL (means over seeds) per schedule;
* classify: test accuracy from the codes per schedule and label fraction, and the two
  baselines (bag-of-words, random-init encoder) per fraction;
* dialog: test KL and BLEU-n F1 per schedule x bow setting;
* Bayesian head: BMA and MAP test accuracy per schedule;
* sgmcmc: BMA test accuracy and log-likelihood per protocol x workers, gradients to BMA accuracy
  0.95 (the time-free measure of speed), the SGD baseline's accuracy and log-likelihood;
* consistency: relative error of the posterior mean per protocol and tau;
* cyclical: modes visited and mode TV distance on the 25-Gaussian target per arm (protocol x
  step schedule);
* rl: final return (mean over seeds) per method x workers.
"""

from __future__ import annotations

from typing import Any

from betamcmc.results.collect import number

PRETRAIN = ("kl", "mi", "au", "nll")


def headline(results: dict[str, dict[str, dict[str, Any]]]) -> dict[str, float]:
    """The flat headline numbers of :func:`betamcmc.results.collect.collect`'s results."""
    out: dict[str, float | None] = {}
    for name, m in results["pretrain"].items():
        for key in PRETRAIN:
            out[f"pretrain.{name}.{key}"] = number(m, f"test.{key}")
    baselines_done = False
    for name, m in results["classify"].items():
        for frac, row in (m.get("fractions") or {}).items():
            out[f"classify.{name}.{frac}"] = number(row, "vae.mean")
            if not baselines_done:
                for method in ("bow", "random_encoder"):
                    out[f"classify.{method}.{frac}"] = number(row, f"{method}.mean")
        baselines_done = baselines_done or bool(m.get("fractions"))
    for name, m in results["dialog"].items():
        out[f"dialog.{name}.kl"] = number(m, "test_kl")
        order = max((int(k[4]) for k in m if k.startswith("bleu") and k.endswith("_f1")), default=0)
        if order:
            out[f"dialog.{name}.bleu{order}_f1"] = number(m, f"bleu{order}_f1")
    for name, m in results["vae_head"].items():
        out[f"vae_head.{name}.bma_accuracy"] = number(m, "sgmcmc.accuracy")
        out[f"vae_head.{name}.map_accuracy"] = number(m, "point_estimate.accuracy")
    for name, m in results["sgmcmc"].items():
        out[f"sgmcmc.{name}.accuracy"] = number(m, "accuracy")
        out[f"sgmcmc.{name}.log_likelihood"] = number(m, "log_likelihood")
        out[f"sgmcmc.{name}.grads_to_acc95"] = number(m, "grads_to_acc95")
    for m in results["sgmcmc_sgd"].values():
        out["sgmcmc.sgd.accuracy"] = number(m, "accuracy")
        out["sgmcmc.sgd.log_likelihood"] = number(m, "log_likelihood")
    for m in results["consistency"].values():
        for run, r in (m.get("runs") or {}).items():
            out[f"consistency.{run}.mean_error"] = number(r, "mean_error")
    for m in results.get("cyclical", {}).values():
        for arm, r in (m.get("arms") or {}).items():
            out[f"cyclical.{arm}.modes_visited"] = number(r, "modes_visited")
            out[f"cyclical.{arm}.mode_tv"] = number(r, "mode_tv")
    for name, m in results["rl"].items():
        out[f"rl.{name}.final_return"] = number(m, "final_return_mean")
    return {k: v for k, v in out.items() if v is not None}
