"""The block renderers of ``docs/results`` templates: ``{{> name args }}`` (see :mod:`betamcmc.results.docs`).

Each takes a :class:`docs_values.Source` and the placeholder's words and returns Markdown. Tables of
several repeats show the median and range computed here, never typed by hand. Add one with
``@block("name")``; keep it reading committed files only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from betamcmc.results.docs_values import LookupFailed, Source, format_value

BLOCKS: dict[str, Callable[..., str]] = {}


def block(name: str) -> Callable[[Callable[..., str]], Callable[..., str]]:
    """Register ``fn(src: Source, *words) -> str`` as ``{{> name words... }}``."""

    def register(fn: Callable[..., str]) -> Callable[..., str]:
        BLOCKS[name] = fn
        return fn

    return register


def table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _rng(d: Any, spec: str = ",.0f") -> str:
    return format_value(d, f"range:{spec}")


def _files(src: Source, patterns: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for p in patterns:
        if any(c in p for c in "*?["):
            out += src.glob(p)
        else:
            src.load(p)  # a missing file is an error here, not a missing row
            out.append(p)
    return out


def _label(rel: str) -> str:
    return f"`{rel.rsplit('/', 1)[-1]}`"


@block("repeats")
def repeats(src: Source, keypath: str, spec: str, *patterns: str) -> str:
    """``median (min–max) over n runs`` of one number over the files (globs allowed)."""
    files = _files(src, patterns)
    values = [src.get(f, keypath) for f in files]
    return f"{_rng(values, spec)} over {len(values)} runs"


@block("machine")
def machine(src: Source, rel: str) -> str:
    """A bench JSON's conditions in one line: CPU, Python, torch, when and load at the start."""
    data = src.load(rel)
    m = data.get("machine", {})
    parts = [
        f"{m.get('cpu_count', '?')}-core {m.get('cpu_model', 'x86-64')}",
        m.get("torch_cpu_capability") or m.get("cpu_capability") or "",
        f"Python {m['python']}" if "python" in m else "",
        f"torch {m['torch']}" if "torch" in m else "",
    ]
    if "started" in data:
        parts.append(f"started {data['started']}")
    load = data.get("load_at_start") or data.get("loadavg_start")
    load = load or (data.get("machine_quiet") or {}).get("start_loadavg")
    if load:
        parts.append(f"load average {load[0]} at the start")
    quiet = data.get("machine_quiet")
    if quiet is not None:
        parts.append("quiet" if quiet.get("quiet") else "not quiet by the bench's own check")
    return ", ".join(p for p in parts if p)


def _throughput_cell(mode: dict[str, Any] | None) -> str:
    """Tokens/s (median and range of the repeats) and utilization of one thread mode."""
    if not mode:
        return "–"
    return f"{_rng(mode['tokens_per_s'])}, {format_value(mode['utilization']['median'], 'pct:.0f')}"


@block("throughput")
def throughput(src: Source, *patterns: str) -> str:
    """``bench/pretrain_throughput.py`` runs: tokens/s (median, range of repeats), utilization."""
    rows = []
    for rel in _files(src, patterns):
        d = src.load(rel)
        fp32, split = d.get("fp32", {}), d.get("fp32_batch_split", {})
        ratio = d.get("scaling_2_over_1_threads_batch_split") or d.get("scaling_2_over_1_threads")
        rows.append(
            [
                _label(rel),
                _throughput_cell(fp32.get("threads_1")),
                _throughput_cell(fp32.get("threads_2")),
                _throughput_cell(split.get("threads_2")),
                format_value(ratio, "x") if ratio else "–",
            ]
        )
    head = ["run", "1 thread", "2 threads, intra-op", "2 threads, batch split", "2 / 1 threads"]
    return table(head, rows)


@block("heap")
def heap(src: Source, *patterns: str) -> str:
    """``bench/pretrain_heap.py`` runs: kept heap against glibc's default, per thread count."""
    rows = []
    for rel in _files(src, patterns):
        for t, d in sorted(src.get(rel, "threads").items(), reverse=True):
            rows.append(
                [
                    _label(rel),
                    t,
                    _rng(d["keep_over_default"], ".2f"),
                    f"{_rng(d['keep_tokens_per_s'])} vs {_rng(d['default_tokens_per_s'])}",
                    f"{d['keep_page_faults_per_step']['median']:,.0f} vs "
                    f"{d['default_page_faults_per_step']['median']:,.0f}",
                ]
            )
    head = ["run", "threads", "kept / default", "tokens/s kept vs default", "page faults/step"]
    return table(head, rows)


@block("profile")
def profile(src: Source, *patterns: str) -> str:
    """``bench/pretrain_profile.py`` runs: the speedups from a second thread and the ceiling."""
    keys = [
        ("wall_speedup_2_over_1", "x"),
        ("output_gemm_speedup_2_over_1", "x"),
        ("gemm_2048_speedup_2_over_1", "x"),
        ("utilization_1t_profiled", "pct:.0f"),
        ("utilization_2t_ceiling_if_all_ops_scale_like_output_gemms", "pct:.0f"),
    ]
    rows = []
    for rel in _files(src, patterns):
        s = src.get(rel, "summary")
        rows.append([_label(rel), *(format_value(s[k], f) for k, f in keys)])
    head = ["run", "whole step", "output-layer GEMMs", "2048² GEMM", "util. 1 thread", "ceiling"]
    return table(head, rows)


def _group(item: str) -> str:
    name = item.split("@", 1)[0]
    return f"`{name}@…`" if "@" in item else f"`{name}`"


@block("pipeline_groups")
def pipeline_groups(src: Source, rel: str) -> str:
    """``bench/pipeline_times.py``: wall and import seconds summed per stage group."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for it in src.get(rel, "repro.items"):
        groups.setdefault(_group(it["item"]), []).append(it)
    rows = []
    for g, items in sorted(groups.items(), key=lambda kv: -sum(i["wall_s"] for i in kv[1])):
        walls = [i["wall_s"] for i in items]
        each = _rng(walls, ".0f") if len(walls) > 1 else "–"
        imports = sum(i.get("import_s", 0.0) for i in items)
        rows.append([g, str(len(items)), f"{sum(walls):.1f}", each, f"{imports:.1f}"])
    total = src.get(rel, "repro")
    rows.append(
        [
            "**all**",
            str(len(total["items"])),
            f"**{total['stage_commands_wall_s']:.1f}**",
            "",
            f"{total['import_s']:.1f}",
        ]
    )
    return table(["stage group", "items", "wall s", "each: median (range)", "imports s"], rows)


@block("startup")
def startup(src: Source, rel: str) -> str:
    """``bench/pipeline_times.py``: start-up probes, median and range of the repeats."""
    rows = [
        [f"`{name}`", _rng({"median": p["median_s"], "min": p["min_s"], "max": p["max_s"]}, ".2f")]
        for name, p in src.get(rel, "startup.probes").items()
    ]
    return table(["probe", "seconds: median (range)"], rows)


SG_COLS = {
    "t95": ("time to 95 % (s)", lambda a: _rng(a["time_to_0.95"], ".3f")),
    "reached": (
        "seeds at 95 %",
        lambda a: f"{a['time_to_0.95']['reached']}/{a['time_to_0.95']['n']}",
    ),
    "acc": ("accuracy", lambda a: format_value(a["accuracy_median"], "pct")),
    "ll": ("LL", lambda a: f"{a['log_likelihood_median_over_seeds']:.3f}"),
    "ece": ("ECE", lambda a: f"{a['ece_median']:.3f}"),
    "stale": ("staleness", lambda a: f"{a['staleness_median']:.2f}"),
    "gps": ("grads/s", lambda a: f"{a['grad_evals_per_s_median']:,.0f}"),
    "ratio": ("time / single", lambda a: _opt(a.get("time_ratio_0.95"), ".2f")),
    "llgap": ("LL gap", lambda a: _opt(a.get("log_likelihood_gap"), "+.3f")),
}


def _opt(v: Any, spec: str) -> str:
    return "–" if v is None else format(v, spec)


@block("sgmcmc_arms")
def sgmcmc_arms(src: Source, rel: str, keypath: str, cols: str, *arms: str) -> str:
    """A summary dict of ``bench/sgmcmc_speedup.py``-style JSON: one row per arm.

    ``cols`` is a comma list of :data:`SG_COLS` keys; no arms means every arm."""
    summ = src.get(rel, keypath)
    names = list(arms) or list(summ)
    picked = [SG_COLS[c] for c in cols.split(",")]
    rows = []
    for arm in names:
        if arm not in summ:
            raise LookupFailed(f"{rel}: no arm {arm!r} under {keypath!r}")
        rows.append([f"`{arm}`", *(fn(summ[arm]) for _, fn in picked)])
    return table(["arm", *(h for h, _ in picked)], rows)


@block("sgmcmc_repeats")
def sgmcmc_repeats(src: Source, rel: str, *arms: str) -> str:
    """A study JSON with ``repeats``: per arm, time ratio and LL gap to single over repeats."""
    reps = src.get(rel, "repeats")
    names = list(arms) or list(reps[0]["summary"])
    rows = []
    for arm in names:
        cells = [r["summary"][arm] for r in reps if arm in r["summary"]]
        if not cells:
            raise LookupFailed(f"{rel}: no arm {arm!r}")
        ratios = [c["time_ratio_0.95"] for c in cells if c.get("time_ratio_0.95") is not None]
        gaps = [c["log_likelihood_gap"] for c in cells if c.get("log_likelihood_gap") is not None]
        rows.append(
            [
                f"`{arm}`",
                _rng(ratios, ".2f") if ratios else "–",
                _rng(gaps, "+.3f") if gaps else "–",
                f"{len(cells)}",
            ]
        )
    head = ["arm", "time to 95 % / single", "LL gap to single", "repeats"]
    return table(head, rows)


@block("sgmcmc_targets")
def sgmcmc_targets(src: Source, *patterns: str) -> str:
    """The ``targets`` of several speedup runs: the value's range and in how many runs it is met."""
    files = _files(src, patterns)
    seen: dict[str, list[dict[str, Any]]] = {}
    for rel in files:
        for name, t in src.get(rel, "targets").items():
            seen.setdefault(name, []).append(t)
    rows = []
    for name, ts in seen.items():
        rows.append(
            [
                re.sub(r"\s*\((<=|>=|all)\)$", "", name),
                ("≤ " if "(<=)" in name else "≥ ") + f"{ts[0]['target']:g}",
                _rng([t["value"] for t in ts], ".3g"),
                f"{sum(bool(t['met']) for t in ts)}/{len(ts)}",
            ]
        )
    return table(["target", "bound", "value: median (range)", "met"], rows)


@block("study")
def study(src: Source, rel: str) -> str:
    """A ``metrics/studies/<name>.json``: per experiment and schedule, test metrics ± std (as
    stored: the study files keep no per-seed values, so no interval can be computed here)."""
    rows = []
    for exp in src.get(rel, "experiments"):
        for name, s in exp["schedules"].items():
            t = s["test"]

            def pm(k: str, spec: str = ".2f", t: dict[str, Any] = t) -> str:
                std = t.get(f"{k}_std")
                return format(t[k], spec) + (f" ± {format(std, spec)}" if std is not None else "")

            seeds = s.get("seeds") or []
            rows.append(
                [
                    f"`{exp['name']}`",
                    name,
                    f"{s['iterations']:,}",
                    str(len(seeds)) if seeds else "–",
                    pm("kl"),
                    pm("mi"),
                    pm("au", ".1f"),
                    pm("nll"),
                    f"{t['ppl']:.2f}",
                ]
            )
    head = ["experiment", "schedule", "iterations", "seeds", "KL", "MI", "AU", "NLL (IS)", "PPL"]
    return table(head, rows)


def _ratio(summ: dict[str, Any], arm: str) -> float | None:
    t, ref = summ[arm]["time_to_0.95"]["median"], summ["single-w1"]["time_to_0.95"]["median"]
    return None if t is None or not ref else t / ref


@block("sgmcmc_runs")
def sgmcmc_runs(src: Source, task: str, arms: str, *patterns: str) -> str:
    """Several ``bench/sgmcmc_speedup.py`` runs of one code: per arm (comma list), the range
    over runs of the time to 95 % over single's (medians over seeds), accuracy and LL gap."""
    files = _files(src, patterns)
    summs = [src.get(f, f"{task}.summary") for f in files]
    rows = []
    for arm in arms.split(","):
        cells = [s for s in summs if arm in s]
        if not cells:
            raise LookupFailed(f"no arm {arm!r} in {task}.summary of {', '.join(files)}")
        ratios = [r for s in cells if (r := _ratio(s, arm)) is not None]
        reached = sum(s[arm]["time_to_0.95"]["reached"] for s in cells)
        seeds = sum(s[arm]["time_to_0.95"]["n"] for s in cells)
        gaps = [
            s[arm]["log_likelihood_median_over_seeds"]
            - s["single-w1"]["log_likelihood_median_over_seeds"]
            for s in cells
        ]
        rows.append(
            [
                f"`{arm}`",
                _rng(ratios, ".2f") if ratios else "never",
                f"{reached}/{seeds}",
                _rng([s[arm]["accuracy_median"] for s in cells], ".3f"),
                _rng(gaps, "+.3f"),
                _rng([s[arm]["ece_median"] for s in cells], ".3f"),
                f"{cells[0][arm]['staleness_median']:.1f}",
            ]
        )
    head = [
        "arm",
        "time to 95 % / single",
        "seed-runs reaching 95 %",
        "BMA accuracy",
        "LL gap to single",
        "ECE",
        "staleness",
    ]
    return f"{table(head, rows)}\n\n({len(files)} runs: {', '.join(_label(f) for f in files)})"


@block("sgmcmc_scaling")
def sgmcmc_scaling(src: Source, rel: str, task: str) -> str:
    """``bench/sgmcmc_scaling.py``: predicted against measured seconds to 95 % per W and arm."""
    arms = ["downpour_none", "downpour_inverse", "downpour_inverse_square", "elastic"]
    rows = []
    for r in src.get(rel, f"this_machine.{task}"):
        cells = [f"{r['W']}"]
        for a in arms:
            pred, meas = r.get(f"{a}_predicted"), r.get(f"{a}_measured")
            cells.append(f"{_opt(pred, '.2f')} / {_opt(meas, '.2f')}")
        rows.append(cells)
    return table(["W", *(f"`{a}`: predicted / measured s" for a in arms)], rows)


@block("stage_wall")
def stage_wall(src: Source, rel: str, prefix: str) -> str:
    """``bench/pipeline_times.py``: wall seconds of the items whose name starts with ``prefix``."""
    walls = [i["wall_s"] for i in src.get(rel, "repro.items") if i["item"].startswith(prefix)]
    if not walls:
        raise LookupFailed(f"{rel}: no item starts with {prefix!r}")
    return f"{_rng(walls, '.0f')} s over {len(walls)} items"
