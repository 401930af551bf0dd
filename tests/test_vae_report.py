"""Pretrain statistics: the seeds' aggregate (ddof = 1, t-interval), each schedule's learning-rate
cycles, and the paired schedule comparisons of pretrain_report (JSON shape, verdicts)."""

from __future__ import annotations

import json
import statistics

import pytest

from betamcmc.core import stats
from betamcmc.params import Params
from betamcmc.results.verdict import comparison_json, verdict
from betamcmc.vae.seeds import aggregate

from conftest import tiny_params


def test_aggregate_is_mean_sample_std_and_the_stats_interval():
    per_seed = [{"kl": 1.0, "nll": 30.0, "mi_se": 0.1}, {"kl": 2.0, "nll": 31.0, "mi_se": 0.2},
                {"kl": 4.0, "nll": 29.5, "mi_se": 0.3}]  # fmt: skip
    out = aggregate(per_seed)
    for key in ("kl", "nll"):
        values = [m[key] for m in per_seed]
        s = stats.mean_std_ci(values)
        assert out[key] == pytest.approx(statistics.fmean(values))
        assert out[f"{key}_std"] == pytest.approx(statistics.stdev(values))  # ddof = 1
        assert out[f"{key}_std"] != pytest.approx(statistics.pstdev(values))
        assert (out[f"{key}_ci_low"], out[f"{key}_ci_high"]) == (s["ci_low"], s["ci_high"])
    # 4.303 = t_{0.975, 2}: the half-width of the mean's interval
    assert out["kl_ci_high"] - out["kl"] == pytest.approx(4.303 * 1.5275 / 3**0.5, rel=1e-3)
    assert "mi_se_std" not in out and out["mi_se"] == pytest.approx(0.2)
    single = aggregate(per_seed[:1])
    assert single["kl"] == 1.0 and single["kl_std"] is None and single["kl_ci_low"] is None


def _params(**train: object) -> Params:
    raw = tiny_params()
    raw["pretrain"]["train"].update(train)
    return Params.model_validate(raw)


def test_each_schedule_gets_its_own_or_the_shared_lr_cycles():
    shipped = _params().pretrain
    assert shipped.train.lr_cycles == 1  # the headline arms: one cosine decay each
    assert {n: shipped.lr_cycles_of(n) for n in shipped.schedules} == {
        "constant": 1, "monotonic": 1, "cyclical": 1, "cyclical-restart": 4}  # fmt: skip
    # the reference recipe differs from the headline cyclical arm in its lr cycles alone
    restart, cyclical = shipped.schedules["cyclical-restart"], shipped.schedules["cyclical"]
    assert restart.model_copy(update={"lr_cycles": None}) == cyclical
    null = _params(lr_cycles=None).pretrain  # null: the beta schedule's cycles
    assert [null.lr_cycles_of(n) for n in ("constant", "monotonic", "cyclical")] == [1, 1, 4]
    assert null.lr_cycles_of("cyclical-restart") == 4
    raw = tiny_params()
    raw["pretrain"]["schedules"]["constant"]["lr_cycles"] = 3
    assert Params.model_validate(raw).pretrain.lr_cycles_of("constant") == 3


def _metrics(kl: dict[str, list[float]], nll: dict[str, list[float]]) -> dict:
    """Hand-made metrics files: per-seed test KL / NLL per schedule (MI = KL, AU = 2)."""
    out = {}
    for name in kl:
        per = {str(s): {"test": {"kl": k, "mi": k, "au": 2.0, "nll": n}}
               for s, (k, n) in enumerate(zip(kl[name], nll[name], strict=True))}  # fmt: skip
        out[name] = {"kind": name.split("-")[0], "lr_cycles": 4 if "-" in name else 1,
                     "per_seed": per, "test": aggregate([p["test"] for p in per.values()])}  # fmt: skip
    return out


METRICS = _metrics(
    kl={"constant": [0.0, 0.01, 0.0, 0.02, 0.0], "monotonic": [1.0, 0.0, 2.0, 0.0, 0.5],
        "cyclical": [3.0, 2.5, 3.2, 2.8, 3.1], "cyclical-restart": [3.1, 2.4, 3.0, 3.0, 3.3]},
    nll={"constant": [30.0, 30.1, 30.2, 30.0, 30.1], "monotonic": [30.0, 30.2, 29.9, 30.1, 30.0],
         "cyclical": [29.0, 29.1, 29.2, 29.0, 29.1], "cyclical-restart": [29.5, 29.3, 29.4, 29.6, 29.4]},
)  # fmt: skip


def test_comparison_json_shape_and_verdicts():
    out = json.loads(json.dumps(comparison_json(METRICS, [0, 1, 2, 3, 4])))
    assert out["seeds"] == [0, 1, 2, 3, 4]
    pairs = [(c["a"], c["b"]) for c in out["comparisons"]]
    assert list(dict.fromkeys(pairs)) == [("cyclical", "constant"), ("cyclical", "monotonic"),
                                          ("monotonic", "constant"), ("cyclical-restart", "cyclical")]  # fmt: skip
    assert len(pairs) == 4 * 4  # test KL, MI, AU, NLL per pair
    by = {(c["a"], c["b"], c["metric"]): c for c in out["comparisons"]}
    for c in out["comparisons"]:
        assert set(c) == {"a", "b", "metric", "higher_is_better", "wins", "ties", "losses", "n",
                          "diff", "verdict"}  # fmt: skip
        assert set(c["diff"]) == {"mean", "std", "ci_low", "ci_high", "n"}
        assert c["wins"] + c["ties"] + c["losses"] == c["n"] == 5
        assert c["higher_is_better"] == (c["metric"] != "test.nll")
    kl = by[("cyclical", "constant", "test.kl")]
    assert (kl["wins"], kl["verdict"]) == (5, "better") and kl["diff"]["ci_low"] > 0
    nll = by[("cyclical", "constant", "test.nll")]  # lower NLL on every seed: better
    assert (nll["wins"], nll["verdict"]) == (5, "better") and nll["diff"]["mean"] < 0
    assert by[("monotonic", "constant", "test.kl")]["verdict"] == "indistinguishable"
    assert by[("cyclical", "constant", "test.au")]["ties"] == 5
    assert by[("cyclical-restart", "cyclical", "test.nll")]["verdict"] == "worse"


def test_verdict_calls_an_ordering_only_where_stats_does():
    lines = verdict(METRICS, latent_dim=8)
    text = "\n".join(lines)
    assert "What the β schedule alone does" in text and "What the learning-rate restarts" in text
    (mono,) = [s for s in lines if s.startswith("- monotonic vs constant")]
    assert "KL Δ" in mono and "not distinguishable at 5 seeds" in mono.split(";")[0]
    (cyc,) = [s for s in lines if s.startswith("- cyclical vs constant")]
    assert "**cyclical better**" in cyc.split(";")[0] and "ahead on 5/5 seeds" in cyc
    (restart,) = [s for s in lines if s.startswith("- cyclical-restart vs cyclical")]
    assert "**cyclical better**" in restart.split(";")[-1]  # NLL: the restarts cost likelihood
    assert verdict({n: METRICS[n] for n in ("constant",)}, 8)[0].startswith("- constant (")
