"""``reports/index.md``: what the pipeline found, on one page, generated from the metrics files.

One section per area: the comparison the area exists for, as paired per-seed comparisons
(:mod:`betamcmc.core.stats`: wins per seed and the 95 % interval of the difference; an ordering only
where that interval excludes 0), one table of mean ± sample std [95 % CI] over the seeds, the key
figure (from the area's report, linked relative to ``reports/``) and a link to the full report.
Then every posterior whose chains fail the convergence thresholds (R-hat, bulk and tail ESS), and
how to open the runs in MLflow. Every number is read from the metrics files
(``results.collect``); nothing is written by hand, so the page is as true as the run that made it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from betamcmc.core import stats
from betamcmc.results.cells import (
    DASH,
    against,
    ci_cell,
    convergence_cell,
    fixed,
    paired_line,
    table,
)
from betamcmc.results.collect import number
from betamcmc.results.verdict import verdict  # the pretrain report's own reading of the numbers
from betamcmc.sgmcmc.coverage_report import TABLE_HEAD, table_rows, verdict_lines

if TYPE_CHECKING:
    from betamcmc.params import Params

REFERENCE_CHAIN = "single-1"  # the sgmcmc item every protocol is compared with
BASELINE_METHOD = "sgd"  # the noise-free RL update the samplers are compared with
SGMCMC_COMPARED = [
    ("accuracy", "accuracy", True),
    ("log_likelihood", "log-likelihood", True),
    ("time_to_acc95_s", "s to 0.95", False),
]


def _figure(alt: str, path: str, available: set[str]) -> list[str]:
    return [f"![{alt}]({path})", ""] if path in available else []


def pretrain_section(params: Params, res: dict[str, Any], figures: set[str]) -> list[str]:
    metrics = res["pretrain"]
    rows = [
        [name, str(m.get("kind", DASH)), str(m.get("lr_cycles", DASH)),
         *(ci_cell(m.get("test", {}), k) for k in ("kl", "mi", "au", "nll"))]
        for name, m in metrics.items()
    ]  # fmt: skip
    try:
        said = verdict(metrics, params.pretrain.model.latent_dim)
    except (KeyError, TypeError, ZeroDivisionError):  # a metrics file of another shape
        said = []
    return [
        "## Text VAE: does the β schedule keep the latent code in use?",
        "",
        f"Test split, best-validation model of each seed, evaluated at β = 1; mean ± sample std "
        f"[95 % t-interval] over seeds {list(params.pretrain.seeds)}; "
        f"{params.pretrain.train.iterations} iterations per seed. The headline schedules share "
        "one learning-rate schedule; a schedule with its own `lr cycles` is a named variant "
        "(the reference recipe's restarts). KL and NLL in nats per sentence, MI in nats, AU: "
        f"active units of {params.pretrain.model.latent_dim}.",
        "",
        *said,
        "",
        *table(["schedule", "kind", "lr cycles", "KL", "MI", "AU", "NLL"], rows),
        "",
        *_figure("training curves per schedule", "pretrain/curves.png", figures),
        *_figure("validation KL, MI and AU per schedule", "pretrain/codes.png", figures),
        "Full report: [pretrain/comparison.md](pretrain/comparison.md).",
        "",
    ]


def _schedule_pairs(names: list[str]) -> list[tuple[str, str]]:
    """Each later schedule against each earlier one (params order: constant, monotonic, ...)."""
    return [(a, b) for i, a in enumerate(names) for b in names[:i]]


def classify_lines(classify: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The accuracy table (codes per schedule, the two baselines) and the paired comparisons of
    the schedules at the fewest labels, by VAE seed."""
    first = next(iter(classify.values()), {})
    fracs = list(first.get("fractions") or {})
    head = [
        "codes of",
        *[f"{100 * (number(first, f'fractions.{f}.fraction') or 0):g}% labels" for f in fracs],
    ]
    rows = [
        [f"VAE, {n}", *[ci_cell(m, f"fractions.{f}.vae") for f in fracs]]
        for n, m in classify.items()
    ]
    for method, label in (("random_encoder", "random-init encoder"), ("bow", "bag-of-words")):
        rows.append([label, *[ci_cell(first, f"fractions.{f}.{method}") for f in fracs]])
    lines = []
    if fracs:
        f = fracs[0]
        for a, b in _schedule_pairs(list(classify)):
            va = (classify[a]["fractions"][f].get("vae") or {}).get("per_seed") or []
            vb = (classify[b]["fractions"][f].get("vae") or {}).get("per_seed") or []
            lines.append(paired_line(a, b, va, vb, f"accuracy at {f} labels", True))
    return table(head, rows), lines


def finetune_section(res: dict[str, Any], figures: set[str]) -> list[str]:
    accuracy_table, compared = classify_lines(res["classify"])
    label = next(iter(res["classify"].values()), {}).get("label", "?")
    dialog_rows = [
        [
            name,
            ci_cell(m, "test_kl"),
            ci_cell(m, f"bleu{_bleu_order(m)}_f1"),
            ci_cell(m, "distinct2"),
        ]
        for name, m in res["dialog"].items()
    ]
    head_rows = [
        [name, ci_cell(m, "sgmcmc.accuracy"), ci_cell(m, "point_estimate.accuracy"),
         fixed(number(m, "majority_baseline"), ".3f"), convergence_cell(m)]
        for name, m in res["vae_head"].items()
    ]  # fmt: skip
    return [
        "## Downstream: are the codes useful?",
        "",
        f"Semi-supervised classification of `{label}` from the frozen codes: test accuracy, "
        "mean ± sample std [95 % CI] between VAE seeds (one value per VAE seed; classifier "
        "seeds are averaged within it, never pooled). Schedules compared by VAE seed at the "
        "fewest labels:",
        "",
        *compared,
        "",
        *accuracy_table,
        "",
        *_figure("accuracy against label fraction", "finetune/classify_accuracy.png", figures),
        "Dialog CVAE whose KL weight follows each schedule, over its seeds (test KL in nats, "
        "BLEU F1 of sampled responses, distinct-2):",
        "",
        *table(["item", "KL", "BLEU F1", "distinct-2"], dialog_rows),
        "",
        "Bayesian classifier head (SG-MCMC, one chain per seed) on the codes against its MAP "
        "point estimate (test accuracy over the seeds):",
        "",
        *table(["schedule", "BMA accuracy", "MAP accuracy", "majority class", "chains"], head_rows),
        "",
        "Full reports: [finetune/classify.md](finetune/classify.md), "
        "[finetune/dialog.md](finetune/dialog.md).",
        "",
    ]


def _bleu_order(m: dict[str, Any]) -> int:
    return max((int(k[4]) for k in m if k.startswith("bleu") and k.endswith("_f1")), default=0)


def sgmcmc_lines(items: dict[str, Any]) -> list[str]:
    """Every item against the single reference chain, paired by seed, on the BMA's quality and on
    the time to accuracy 0.95 (seeds that never reached it are left out of that comparison)."""
    ref = items.get(REFERENCE_CHAIN)
    if ref is None:
        return []
    return [
        line
        for name, m in items.items()
        if name != REFERENCE_CHAIN
        for line in against(name, REFERENCE_CHAIN, m, ref, SGMCMC_COMPARED)
    ]


def sgmcmc_section(res: dict[str, Any], figures: set[str]) -> list[str]:
    items = res["sgmcmc"]
    rows = [
        [name, ci_cell(m, "accuracy", 4), ci_cell(m, "log_likelihood"), ci_cell(m, "time_to_acc95_s"),
         ci_cell(m, "grad_evals", 4), fixed((number(m, "bytes_per_sample") or 0) / 1e6, ".3f"),
         convergence_cell(m)]
        for name, m in items.items()
    ]  # fmt: skip
    for m in res["sgmcmc_sgd"].values():
        rows.append([f"SGD ({m.get('steps', '?')} steps)", ci_cell(m, "accuracy", 4),
                     ci_cell(m, "log_likelihood"), DASH, DASH, DASH, "point estimate"])  # fmt: skip
    first = next(iter(items.values()), {})
    lines = [
        "## Asynchronous SG-MCMC: which protocol reaches a good posterior first?",
        "",
        "Bayesian model average of the samples on the test split, mean ± sample std [95 % CI] "
        f"over {first.get('n_seeds', '?')} seeds; seconds to BMA accuracy 0.95 (wall-clock, "
        "burn-in included, on whatever else the machine ran; over the seeds that reached it), "
        "gradient evaluations, MB sent per collected sample, and the chains' diagnostics "
        "pooled over the seeds. Each item against the single chain, paired by seed:",
        "",
        *sgmcmc_lines(items),
        "",
        *table(
            ["item", "accuracy", "log-lik", "s to 0.95", "gradients", "MB/sample", "chains"], rows
        ),
        "",
        *_figure("BMA accuracy against wall-clock", "sgmcmc/accuracy_vs_time.png", figures),
    ]
    for m in res["consistency"].values():
        lines += consistency_lines(m, figures)
    for m in res.get("cyclical", {}).values():
        lines += cyclical_lines(m, figures)
    lines += [
        "Full reports: [sgmcmc/table.md](sgmcmc/table.md), "
        "[sgmcmc_consistency/table.md](sgmcmc_consistency/table.md)"
        + (
            ", [sgmcmc_cyclical/table.md](sgmcmc_cyclical/table.md)."
            if res.get("cyclical")
            else "."
        ),
        "",
    ]
    return lines


def consistency_lines(m: dict[str, Any], figures: set[str]) -> list[str]:
    runs = m.get("runs") or {}
    calls = [
        f"- {c['protocol']}: τ = {c['tau']} against τ = {c['against_tau']}: error "
        f"**{c['error_is']}**" + (f" ({stats.fmt_paired(c)})" if "diff" in c else "") + "."
        for c in m.get("tau_comparisons") or []
    ]
    return [
        "Bias against staleness (Bayesian logistic regression against a full-batch MALA "
        "reference; relative error of the posterior mean and variance at the end, over "
        f"{m.get('n_seeds', '?')} seeds). Larger τ against the smallest, paired by seed:",
        "",
        *calls,
        "",
        *table(
            ["protocol, τ", "mean error", "variance error"],
            [[n, ci_cell(r, "mean_error"), ci_cell(r, "var_error")] for n, r in runs.items()],
        ),
        "",
        *_figure("error against wall-clock", "sgmcmc_consistency/consistency.png", figures),
    ]


def cyclical_lines(m: dict[str, Any], figures: set[str]) -> list[str]:
    """The 25-Gaussian benchmark: cyclical against constant steps per protocol (the verdict
    read from the paired comparisons), the table over seeds and the figure."""
    k = (m.get("settings") or {}).get("chain_steps", "?")
    return [
        "Mode coverage on the 25-Gaussian target of cSG-MCMC (Zhang et al. 2020): each protocol "
        f"with constant and with cyclical steps, the same step budget ({k} steps per chain "
        f"block), over {len(m.get('seeds') or [])} seeds. Cyclical against constant steps per "
        "protocol, then the asynchronous cyclical arms against the single cyclical chain, paired "
        "by seed:",
        "",
        *verdict_lines(m),
        "",
        *table(TABLE_HEAD, table_rows(m)),
        "",
        *_figure(
            "samples over the 25 modes, coverage against gradients",
            "sgmcmc_cyclical/mixture.png",
            figures,
        ),
    ]


def rl_section(res: dict[str, Any], figures: set[str]) -> list[str]:
    items = res["rl"]

    def final(m: dict[str, Any]) -> dict[str, Any]:
        return {k: number(m, f"final_return_{k}") for k in ("mean", "std", "ci_low", "ci_high")}

    rows = [
        [name, fixed(number(m, "temperature"), "g"), ci_cell({"r": final(m)}, "r", 4),
         f"{m.get('solved_runs', DASH)}/{m.get('seeds', DASH)}",
         fixed(number(m, "steps_to_threshold_median"), ".0f")]
        for name, m in items.items()
    ]  # fmt: skip
    base = next((n for n, m in items.items() if m.get("update") == BASELINE_METHOD), None)
    lines = []
    for name, m in items.items():
        if base is None or name == base:
            continue
        ours, theirs = (
            {s: v["final_return"] for s, v in (x.get("per_seed") or {}).items()}
            for x in (m, items[base])
        )
        both = sorted(set(ours) & set(theirs), key=int)
        lines.append(
            paired_line(
                name, base, [ours[s] for s in both], [theirs[s] for s in both], "final return", True
            )
        )
    first = next(iter(items.values()), {})
    return [
        f"## Reinforcement learning: does SG-MCMC noise help exploration? ({first.get('env', '?')})",
        "",
        "Final return of the master's policy, mean ± sample std [95 % CI] over the seeds; runs "
        f"that reached the solve threshold ({first.get('reward_threshold', '?')}); median "
        "environment steps to it. Each sampler against the noise-free update, paired by seed:",
        "",
        *lines,
        "",
        *table(["item", "T", "final return", "solved", "steps to solve"], rows),
        "",
        *_figure("return against environment steps", "rl/curves.png", figures),
        "Full report: [rl/table.md](rl/table.md).",
        "",
    ]


def convergence_section(res: dict[str, Any]) -> list[str]:
    """Every posterior whose chains fail the thresholds: no posterior conclusion from them."""
    runs = [(f"sgmcmc@{n}", m) for n, m in res["sgmcmc"].items()]
    runs += [(f"sgmcmc_vae_head@{n}", m) for n, m in res["vae_head"].items()]
    failed = [f"- **{name}**: {convergence_cell(m)}" for name, m in runs if not m.get("converged")]
    first = next((m for _, m in runs if m.get("thresholds")), {})
    rule = first.get("thresholds") or {"rhat_max": 1.05, "ess_min": 100}
    verdict_line = (
        f"{len(failed)} of {len(runs)} posteriors are **unconverged**: read their accuracy and "
        "log-likelihood as those of an ensemble of samples, not as posterior estimates."
        if failed
        else f"All {len(runs)} posteriors pass."
    )
    return [
        "## Convergence of the chains",
        "",
        f"A posterior counts as converged when its worst rank-normalized split R̂ is at most "
        f"{rule.get('rhat_max')} and its smallest bulk and tail ESS are at least "
        f"{rule.get('ess_min')} (Vehtari et al. 2021), over the log-likelihoods of test points "
        "and the chains of all seeds of an item. " + verdict_line,
        "",
        *failed,
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
        + convergence_section(res)
    )
    return "\n".join(head + body) + "\n" + MLFLOW
