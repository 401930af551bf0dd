"""``reports/index.md``: what the pipeline found, on one page, generated from the metrics files.

One section per area: a sentence computed from the numbers, one table, the key figure (from the
area's report, linked relative to ``reports/``) and a link to the area's full report; then how to
open the runs in MLflow. Every number is read from the metrics files (``results.collect``);
nothing is written by hand, so the page is as true as the run that made it.
"""

from __future__ import annotations

from typing import Any

from betamcmc.params import Params
from betamcmc.results.collect import number
from betamcmc.vae.report import verdict  # the pretrain report's own reading of the numbers

DASH = "–"


def _f(value: float | None, fmt: str = ".2f") -> str:
    return DASH if value is None else format(value, fmt)


def _pm(tree: Any, key: str, fmt: str = ".2f") -> str:
    """``mean ± std`` of ``key`` and ``key_std`` (std left out when absent or zero)."""
    mean, std = number(tree, key), number(tree, f"{key}_std")
    return _f(mean, fmt) + (f" ± {format(std, fmt)}" if std else "")


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def _figure(alt: str, path: str, available: set[str]) -> list[str]:
    return [f"![{alt}]({path})", ""] if path in available else []


def pretrain_section(params: Params, res: dict[str, Any], figures: set[str]) -> list[str]:
    metrics = res["pretrain"]
    seeds = params.pretrain.seeds
    rows = [
        [
            name,
            m.get("kind", DASH),
            _pm(m, "test.kl"),
            _pm(m, "test.mi"),
            _pm(m, "test.au", ".1f"),
            _pm(m, "test.nll"),
        ]  # fmt: skip
        for name, m in metrics.items()
    ]
    try:
        said = verdict(metrics, params.pretrain.model.latent_dim)
    except (KeyError, TypeError, ZeroDivisionError):  # a metrics file of another shape
        said = []
    return [
        "## Text VAE: does the β schedule keep the latent code in use?",
        "",
        f"Test split, best-validation model of each seed, evaluated at β = 1; mean ± std over "
        f"seeds {list(seeds)}; {params.pretrain.train.iterations} iterations per seed. KL and "
        "NLL in nats per sentence, MI in nats, AU: active units of "
        f"{params.pretrain.model.latent_dim}.",
        "",
        *said,
        "",
        *_table(["schedule", "kind", "KL", "MI", "AU", "NLL"], rows),
        "",
        *_figure("training curves per schedule", "pretrain/curves.png", figures),
        *_figure("validation KL, MI and AU per schedule", "pretrain/codes.png", figures),
        "Full report: [pretrain/comparison.md](pretrain/comparison.md).",
        "",
    ]


def finetune_section(res: dict[str, Any], figures: set[str]) -> list[str]:
    classify = res["classify"]
    first = next(iter(classify.values()), {})
    fracs = list(first.get("fractions") or {})
    head = ["codes of", *[f"{100 * (number(first, f'fractions.{f}.fraction') or 0):g}% labels"
                          for f in fracs]]  # fmt: skip
    rows = [
        [f"VAE, {name}", *[_pm(m, f"fractions.{f}.vae.mean", ".3f") for f in fracs]]
        for name, m in classify.items()
    ]
    for method, label in (("random_encoder", "random-init encoder"), ("bow", "bag-of-words")):
        rows.append(
            [label, *[_f(number(first, f"fractions.{f}.{method}.mean"), ".3f") for f in fracs]]
        )
    best = _best_schedule(classify, fracs[0] if fracs else None)
    dialog_rows = [
        [name, _f(number(m, "test_kl")), _f(_bleu_f1(m), ".3f"), _f(number(m, "distinct2"), ".3f")]
        for name, m in res["dialog"].items()
    ]
    head_rows = [
        [
            name,
            _f(number(m, "sgmcmc.accuracy"), ".3f"),
            _f(number(m, "point_estimate.accuracy"), ".3f"),
            _f(number(m, "majority_baseline"), ".3f"),
        ]  # fmt: skip
        for name, m in res["vae_head"].items()
    ]
    label = first.get("label", "?")
    return [
        "## Downstream: are the codes useful?",
        "",
        f"Semi-supervised classification of `{label}` from the frozen codes (test accuracy, mean "
        f"over label seeds and VAE seeds)"
        + (f"; with the fewest labels the best schedule is **{best}**." if best else "."),
        "",
        *_table(head, rows),
        "",
        *_figure("accuracy against label fraction", "finetune/classify_accuracy.png", figures),
        "Dialog CVAE whose KL weight follows each schedule (test KL in nats, BLEU F1 of sampled "
        "responses, distinct-2):",
        "",
        *_table(["item", "KL", "BLEU F1", "distinct-2"], dialog_rows),
        "",
        "Bayesian classifier head (SG-MCMC) on the codes against its MAP point estimate:",
        "",
        *_table(["schedule", "BMA accuracy", "MAP accuracy", "majority class"], head_rows),
        "",
        "Full reports: [finetune/classify.md](finetune/classify.md), "
        "[finetune/dialog.md](finetune/dialog.md).",
        "",
    ]


def _bleu_f1(m: dict[str, Any]) -> float | None:
    order = max((int(k[4]) for k in m if k.startswith("bleu") and k.endswith("_f1")), default=0)
    return number(m, f"bleu{order}_f1") if order else None


def _best_schedule(classify: dict[str, Any], frac: str | None) -> str | None:
    scored = (
        {n: number(m, f"fractions.{frac}.vae.mean") for n, m in classify.items()} if frac else {}
    )
    scored = {n: v for n, v in scored.items() if v is not None}
    return max(scored, key=scored.__getitem__) if scored else None


def sgmcmc_section(res: dict[str, Any], figures: set[str]) -> list[str]:
    items = res["sgmcmc"]
    rows = [
        [
            name,
            _f(number(m, "accuracy"), ".4f"),
            _f(number(m, "log_likelihood"), ".3f"),
            _f(number(m, "time_to_acc95_s"), ".2f"),
            _f(number(m, "grads_to_acc95"), ".0f"),
            _f(
                (number(m, "bytes_per_sample") or 0) / 1e6 if "bytes_per_sample" in m else None,
                ".3f",
            ),
        ]  # fmt: skip
        for name, m in items.items()
    ]
    for m in res["sgmcmc_sgd"].values():
        rows.append([f"SGD ({m.get('steps', '?')} steps)", _f(number(m, "accuracy"), ".4f"),
                     _f(number(m, "log_likelihood"), ".3f"), DASH, DASH, DASH])  # fmt: skip
    timed = {n: number(m, "time_to_acc95_s") for n, m in items.items()}
    timed = {n: t for n, t in timed.items() if t is not None}
    fastest = min(timed, key=timed.__getitem__) if timed else None
    lines = [
        "## Asynchronous SG-MCMC: which protocol reaches a good posterior first?",
        "",
        "Bayesian model average of the samples on the test split; time to BMA accuracy 0.95 in "
        "wall-clock seconds (burn-in included, on whatever else the machine ran) and in gradient "
        "evaluations; MB sent per collected sample. "
        + (
            f"Fastest to 0.95 here: **{fastest}** ({timed[fastest]:.2f} s)."
            if fastest
            else "No item reached 0.95 within its budget."
        ),  # fmt: skip
        "",
        *_table(["item", "accuracy", "log-lik", "s to 0.95", "grads to 0.95", "MB/sample"], rows),
        "",
        *_figure("BMA accuracy against wall-clock", "sgmcmc/accuracy_vs_time.png", figures),
    ]
    for m in res["consistency"].values():
        runs = m.get("runs") or {}
        lines += [
            "Bias against staleness (Bayesian logistic regression against a full-batch MALA "
            "reference; relative error of the posterior mean and variance at the end):",
            "",
            *_table(
                ["protocol, tau", "mean error", "variance error"],
                [
                    [n, _f(number(r, "mean_error"), ".4f"), _f(number(r, "var_error"), ".4f")]
                    for n, r in runs.items()
                ],
            ),  # fmt: skip
            "",
            *_figure("error against wall-clock", "sgmcmc_consistency/consistency.png", figures),
        ]
    lines += [
        "Full reports: [sgmcmc/table.md](sgmcmc/table.md), "
        "[sgmcmc_consistency/table.md](sgmcmc_consistency/table.md).",
        "",
    ]
    return lines


def rl_section(res: dict[str, Any], figures: set[str]) -> list[str]:
    items = res["rl"]

    def final(m: dict[str, Any]) -> str:
        std = number(m, "final_return_std")
        return _f(number(m, "final_return_mean"), ".1f") + (f" ± {std:.1f}" if std else "")

    rows = [
        [
            name,
            _f(number(m, "temperature"), "g"),
            final(m),
            f"{m.get('solved_runs', DASH)}/{m.get('seeds', DASH)}",
            _f(number(m, "steps_to_threshold_median"), ".0f"),
        ]  # fmt: skip
        for name, m in items.items()
    ]
    first = next(iter(items.values()), {})
    ranked = sorted(
        ((number(m, "final_return_mean"), n) for n, m in items.items()),
        key=lambda t: -(t[0] if t[0] is not None else -1e300),
    )
    best = ranked[0][1] if ranked and ranked[0][0] is not None else None
    return [
        f"## Reinforcement learning: does SG-MCMC noise help exploration? ({first.get('env', '?')})",
        "",
        "Final return of the master's policy (mean over seeds), runs that reached the solve "
        f"threshold ({first.get('reward_threshold', '?')}), median environment steps to it. "
        + (f"Highest final return here: **{best}**." if best else ""),
        "",
        *_table(["item", "T", "final return", "solved", "steps to solve"], rows),
        "",
        *_figure("return against environment steps", "rl/curves.png", figures),
        "Full report: [rl/table.md](rl/table.md).",
        "",
    ]


MLFLOW = """## The runs in MLflow

Every stage item is one MLflow run named as DVC names it (`pretrain@cyclical`, `sgmcmc@downpour-2`);
all runs of one `dvc repro` / `dvc exp run` share the tag `pipeline_run`. Start the UI with
`betamcmc ui` (http://127.0.0.1:5000), open the `betamcmc` experiment and search:

- the schedules side by side: `tags.stage = 'pretrain' and tags.pipeline_run = '<id>'`
  (columns `test.kl`, `test.mi`, `test.au`, `test.nll`);
- the protocols at W = 2: `tags.stage = 'sgmcmc' and tags.workers = '2' and tags.pipeline_run = '<id>'`;
- everything of one run of the pipeline: `tags.pipeline_run = '<id>'` (group by `stage`).

`<id>` is the `pipeline_run` tag of any of its runs. More: [docs/tracking.md](../docs/tracking.md).
"""


def render(params: Params, res: dict[str, Any], figures: set[str]) -> str:
    """The page; ``figures``: the figure paths (relative to ``reports/``) that exist."""
    head = [
        "# Results",
        "",
        "What this run of the pipeline found, generated by the `report` stage from `metrics/` "
        "(headline numbers: `metrics/summary.json`, `dvc metrics show`). Corpus: "
        f"`{params.data.corpus}`; seed {params.seed}. Wall-clock figures are from the machine "
        "that ran the pipeline, under whatever load it had.",
        "",
    ]
    body = (
        pretrain_section(params, res, figures)
        + finetune_section(res, figures)
        + sgmcmc_section(res, figures)
        + rl_section(res, figures)
    )
    return "\n".join(head + body) + "\n" + MLFLOW
