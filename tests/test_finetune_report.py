"""The finetune report: every arm on every metric, every ordering through stats.paired/verdict
with its win count and interval, and an unconverged Bayesian head flagged."""

from __future__ import annotations

from pathlib import Path

from betamcmc.core import stats
from betamcmc.results.finetune import write_report

SCHEDULES = ("constant", "monotonic", "cyclical")


def _cell(values: list[float]) -> dict:
    s = stats.mean_std_ci(values)
    return {"mean": s["mean"], "std": s["std"], "ci_low": s["ci_low"], "ci_high": s["ci_high"],
            "n_seeds": s["n"], "per_seed": values}  # fmt: skip


def _classify(shift: float) -> dict:
    row = {"fraction": 1.0, "labeled": 100, "vae": _cell([0.5 + shift, 0.52 + shift, 0.51 + shift]),
           "random_encoder": _cell([0.5, 0.49, 0.51]), "bow": _cell([0.9, 0.91, 0.9])}  # fmt: skip
    valid = {r: {"100pct": _cell([0.6, 0.62, 0.61])} for r in ("mean", "sample")}
    return {"label": "register", "classes": 2, "classifier": "logreg", "features": "sample",
            "seeds": [0], "vae_models": 3, "n_seeds": 3, "test_sentences": 500,
            "majority_baseline": 0.53, "fractions": {"100pct": row}, "valid": valid}  # fmt: skip


def _dialog(schedule: str, bow: bool, bleu: list[float]) -> dict:
    m = {"schedule": schedule, "bow": bow, "contexts_scored": 50, "samples_per_context": 5,
         "seeds": [0, 1, 2], "n_seeds": 3, "act_classifier_accuracy": 1.0}  # fmt: skip
    values = {"test_rec": [10.0, 10.1, 10.2], "test_kl": [0.3, 0.3, 0.4],
              "test_elbo": [-10.3, -10.4, -10.6], "bleu1_precision": [0.2, 0.21, 0.2],
              "bleu1_recall": [0.25, 0.24, 0.25], "bleu4_precision": bleu,
              "bleu4_recall": bleu, "bleu4_f1": bleu, "distinct1": [0.01, 0.01, 0.01],
              "distinct2": [0.02, 0.02, 0.02], "act_agreement": [0.3, 0.31, 0.3]}  # fmt: skip
    for key, v in values.items():
        s = stats.mean_std_ci(v)
        m |= {key: s["mean"], f"{key}_std": s["std"], f"{key}_ci_low": s["ci_low"],
              f"{key}_ci_high": s["ci_high"]}  # fmt: skip
    m["per_seed"] = values
    return m


def _head(converged: bool) -> dict:
    per = [{"accuracy": a, "log_likelihood": -0.7, "ece": 0.05} for a in (0.50, 0.51, 0.50)]
    pe = [{"accuracy": 0.55, "log_likelihood": -0.69, "ece": 0.01}] * 3
    agg = {k: _cell([r[k] for r in per]) for k in ("accuracy", "log_likelihood", "ece")}
    pagg = {k: _cell([r[k] for r in pe]) for k in ("accuracy", "log_likelihood", "ece")}
    flat = lambda a: {k: v["mean"] for k, v in a.items()} | {  # noqa: E731
        f"{k}_{x}": v[x] for k, v in a.items() for x in ("std", "ci_low", "ci_high")}  # fmt: skip
    return {"head": "softmax regression", "label": "register", "seeds": [0, 1, 2], "n_seeds": 3,
            "samples": 100, "sgmcmc": flat(agg), "point_estimate": flat(pagg),
            "per_seed": {"sgmcmc": per, "point_estimate": pe}, "rhat_max": 1.106,
            "ess_bulk_min": 18.0, "ess_tail_min": 30.0, "converged": converged}  # fmt: skip


def test_report_is_symmetric_and_orders_only_by_verdict(tmp_path: Path) -> None:
    classify = {s: _classify(0.01 * i) for i, s in enumerate(SCHEDULES)}
    bleu = {("monotonic", True): [0.09, 0.095, 0.097]}
    dialog = {f"{s}-{'bow' if b else 'nobow'}": _dialog(s, b, bleu.get((s, b), [0.06, 0.07, 0.065]))
              for s in SCHEDULES for b in (False, True)}  # fmt: skip
    head = {s: _head(converged=s != "constant") for s in SCHEDULES}
    write_report(tmp_path, classify, dialog, head)
    md = (tmp_path / "dialog.md").read_text()
    arms = list(dialog)
    # every arm is a column of the metrics table, every pair a row of every ordered metric
    assert all(f" {a} |" in md.splitlines()[4] for a in arms)
    ordered = 10  # the metrics with a direction (KL has none)
    for i, a in enumerate(arms):
        for b in arms[i + 1 :]:
            rows = [line for line in md.splitlines() if line.startswith(f"| {a} | {b} |")]
            assert len(rows) == ordered
    # the leader on BLEU-4 is stated with its verdict, win count and interval
    assert "| constant-bow | monotonic-bow | worse | 0/3 seeds, Δ" in md
    assert "| constant-nobow | cyclical-nobow | indistinguishable |" in md
    cmd = (tmp_path / "classify.md").read_text()
    assert "| VAE code, constant | bag-of-words logreg | worse | 0/3 seeds" in cmd
    assert "Readout on the validation split" in cmd
    hmd = (tmp_path / "vae_head.md").read_text()
    assert "matches" not in hmd and "| constant | accuracy |" in hmd
    assert (
        "| constant | 1.106 | 18 | 30 | **NO" in hmd
        and "| cyclical | 1.106 | 18 | 30 | yes |" in hmd
    )
    assert "worse (0/3 seeds" in hmd  # the BMA below the MAP, said so
