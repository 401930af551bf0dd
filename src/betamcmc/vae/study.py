"""Studies of the text VAE as DVC experiments: queue them, collect what they measured, draw it.

A study is a YAML file under ``studies/`` that names a set of DVC experiments::

    name: sweep                                   # experiments are named <name>-<key>
    targets: [pretrain@cyclical]                  # the stages each experiment reruns
    grid:                                         # every combination is one experiment
      pretrain.schedules.cyclical.cycles: [1, 2, 4, 8]
      pretrain.train.iterations: [1000, 2000, 4000]
    extra:                                        # more experiments, each with its own targets
      - targets: [pretrain@constant]
        prefix: constant                          # names <name>-constant-<key>
        grid: {pretrain.train.iterations: [1000, 2000, 4000]}

or, instead of ``grid``, ``experiments: {key: {param: value, ...}, ...}`` (one experiment per key,
an empty mapping is the baseline; a ``targets`` entry there overrides the study's targets). ``betamcmc study queue`` prints and runs
``dvc exp run --queue -n <name>-<key> -S param=value ... <targets>`` for each (then
``dvc queue start``); every experiment is an ordinary DVC experiment and its stages' MLflow runs
carry its name (tag ``dvc_exp_name``). ``betamcmc study collect`` reads the finished experiments
from ``dvc exp show --json`` and their commits: the settings, the test metrics of the schedules
it trained (``metrics/pretrain/<schedule>.json``) and their validation curves
(``metrics/pretrain/<schedule>_valid.csv``), into ``metrics/studies/<name>.json`` (small, committed
to git). ``betamcmc study collect --keep`` collects a study piece by piece (experiments run in
different clones): it keeps the rows of the earlier ``metrics/studies/<name>.json`` for the
experiments this repository does not have (:func:`keep_earlier`). The ``pretrain_report`` stage
draws every collected study into ``reports/pretrain/study_<name>.md`` and ``.png``.
``betamcmc study push`` / ``pull`` move a study's experiments (git refs and cached outputs)
through a git remote and the DVC remote, so another clone collects them (docs/remote.md).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from betamcmc import pipeline
from betamcmc.errors import InputError
from betamcmc.params import Params

STUDIES = Path("metrics/studies")
TEST_KEYS = ("kl", "kl_std", "mi", "mi_std", "au", "au_std", "nll", "nll_std", "ppl")


# --------------------------------------------------------------------------- the study file
def load_spec(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("study file not found", path) from None
    except yaml.YAMLError as err:
        raise InputError(f"not valid YAML ({err.__class__.__name__})", path) from None
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise InputError("a study file is a mapping with a non-empty 'name'", path)
    if not (("grid" in spec) ^ ("experiments" in spec)):
        raise InputError("a study has either 'grid' or 'experiments' (exactly one)", path)
    _check_block(spec, "the study", path)
    extra = spec.get("extra") or []
    if not isinstance(extra, list):
        raise InputError(f"'extra' must be a list of blocks (got {type(extra).__name__})", path)
    for i, block in enumerate(extra):
        if not isinstance(block, dict) or not (("grid" in block) ^ ("experiments" in block)):
            raise InputError(f"extra[{i}] must be a mapping with 'grid' or 'experiments'", path)
        _check_block(block, f"extra[{i}]", path)
    return spec


def _check_block(block: dict[str, Any], where: str, path: Path) -> None:
    """The shapes :func:`experiments` relies on, so a malformed study file is one line naming
    the part that is wrong (not a traceback from deep inside the expansion)."""
    targets = block.get("targets", [])
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise InputError(f"{where}: 'targets' must be a list of stage names", path)
    if "grid" in block:
        grid = block["grid"]
        if not isinstance(grid, dict) or not grid:
            raise InputError(f"{where}: 'grid' must map params to lists of values", path)
        for param, values in grid.items():
            if not isinstance(values, list) or not values:
                raise InputError(f"{where}: grid.{param} must be a non-empty list of values",
                                 path)  # fmt: skip
        return
    found = block["experiments"]
    if not isinstance(found, dict) or not found:
        raise InputError(f"{where}: 'experiments' must map names to their settings", path)
    for key, sets in found.items():
        if sets is not None and not isinstance(sets, dict):
            raise InputError(f"{where}: experiments.{key} must be a mapping of param: value "
                             "(or empty for the baseline)", path)  # fmt: skip


def _key(value: Any) -> str:
    return str(value).replace(".", "p").replace("-", "m")


def _expand(block: dict[str, Any], default_targets: list[str]) -> list[dict[str, Any]]:
    targets = list(block.get("targets", default_targets))
    prefix = f"{block['prefix']}-" if block.get("prefix") else ""
    if "grid" in block:
        names, values = zip(*block["grid"].items(), strict=True)
        out = []
        for combo in itertools.product(*values):
            sets = dict(zip(names, combo, strict=True))
            short = "-".join(f"{n.split('.')[-1][:4]}{_key(v)}" for n, v in sets.items())
            out.append({"key": prefix + short, "set": sets, "targets": targets})
        return out
    out = []
    for key, sets in block["experiments"].items():
        sets = dict(sets or {})
        own = sets.pop("targets", targets)  # an experiment may rerun other stages
        out.append({"key": prefix + key, "set": sets, "targets": list(own)})
    return out


def experiments(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every experiment of a study: ``{name, set: {param: value}, targets: [stage, ...]}``."""
    targets = list(spec.get("targets", []))
    found = _expand(spec, targets)
    for extra in spec.get("extra", []) or []:
        found += _expand(extra, targets)
    for exp in found:
        exp["name"] = f"{spec['name']}-{exp['key']}"
    names = [e["name"] for e in found]
    if len(set(names)) != len(names):
        raise InputError(f"study '{spec['name']}' names two experiments alike: {names}")
    return found


def queue_commands(spec: dict[str, Any]) -> list[list[str]]:
    """The ``dvc exp run --queue`` command line of every experiment of the study."""
    commands = []
    for exp in experiments(spec):
        cmd = ["dvc", "exp", "run", "--queue", "-n", exp["name"]]
        for param, value in exp["set"].items():
            cmd += ["-S", f"{param}={json.dumps(value) if not isinstance(value, str) else value}"]
        commands.append(cmd + list(exp["targets"]))
    return commands


def _dvc(cmd: list[str]) -> list[str]:
    """``dvc ...`` run by this interpreter's DVC (``python -m dvc``): the one installed beside
    betamcmc, also when the virtual environment's bin is not on PATH."""
    return [sys.executable, "-m", *cmd]


def queue(spec: dict[str, Any], dry_run: bool = False) -> list[str]:
    lines = []
    for cmd in queue_commands(spec):
        lines.append(shlex.join(cmd))
        if not dry_run:
            proc = subprocess.run(_dvc(cmd), capture_output=True, text=True)
            if proc.returncode != 0:
                raise InputError(f"`{shlex.join(cmd)}` failed: {proc.stderr.strip()[-300:]}")
    return lines


# --------------------------------------------------------------------------- sharing
def transfer(
    spec: dict[str, Any], direction: str, remote: str, repo: str | Path = "."
) -> tuple[list[str], list[str]]:
    """``dvc exp push|pull <remote> <the study's experiments>``: their git refs go to (come
    from) the git remote ``remote``, their cached outputs (models) to (from) the default DVC
    remote, so ``betamcmc study collect`` and ``dvc exp apply`` work in another clone
    (docs/remote.md). Only the experiments the source has (this clone for a push, ``remote``
    for a pull) are moved: a study run piece by piece in several clones is pushed from each.
    Returns (moved, missing) names."""
    wanted = [e["name"] for e in experiments(spec)]
    source = [] if direction == "push" else [remote]
    have = set(_dvc_out(["dvc", "exp", "list", "--all-commits", "--name-only", *source], repo)
               .split())  # fmt: skip
    moved = [n for n in wanted if n in have]
    if not moved:
        where = "this repository" if direction == "push" else f"the git remote {remote!r}"
        raise InputError(f"none of the {len(wanted)} experiment(s) of study '{spec['name']}' "
                         f"is in {where}")  # fmt: skip
    _dvc_out(["dvc", "exp", direction, remote, *moved], repo)
    return moved, [n for n in wanted if n not in have]


def _dvc_out(cmd: list[str], repo: str | Path) -> str:
    """Run a DVC command in ``repo``; its stdout, or one :class:`InputError` line naming it."""
    proc = subprocess.run(_dvc(cmd), cwd=repo, capture_output=True, text=True)
    if proc.returncode != 0:
        said = " ".join((proc.stderr or proc.stdout).split())[-300:]
        raise InputError(f"`{shlex.join(cmd)}` failed: {said}")
    return proc.stdout


# --------------------------------------------------------------------------- collecting
def _schedules_of(targets: list[str], params: Any = None) -> list[str]:
    """Schedules an experiment trained: ``pretrain@<name>`` targets, or every schedule of its
    params for the whole ``pretrain`` group."""
    names = [t.split("@", 1)[1] for t in targets if t.startswith("pretrain@")]
    if "pretrain" in targets and params is not None:
        names += [n for n in params.pretrain.schedules if n not in names]
    return names


def _read_curve(text: str) -> dict[str, list[float]]:
    rows = list(csv.DictReader(io.StringIO(text)))
    return {k: [float(r[k]) for r in rows] for k in (rows[0] if rows else {})}


def collect(spec: dict[str, Any], repo: str | Path = ".") -> dict[str, Any]:
    """What every finished experiment of the study measured (see the module docstring)."""
    import dvc.api  # lazy: dvc's API costs ~0.5 s: only collecting pays it, not `study queue`

    proc = subprocess.run(
        _dvc(["dvc", "exp", "show", "--json"]), cwd=repo, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise InputError(f"`dvc exp show --json` failed: {proc.stderr.strip()[-300:]}", repo)
    found: dict[str, dict[str, Any]] = {}
    for commit in json.loads(proc.stdout):
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs", []):
                if rev.get("name"):
                    found.setdefault(rev["name"], rev)
    rows, missing = [], []
    for exp in experiments(spec):
        rev = found.get(exp["name"])
        if rev is None or not rev.get("data"):
            missing.append(exp["name"])
            continue
        params = _params_of(rev)
        if params is None and "pretrain" in exp["targets"]:  # which schedules it ran is unknown
            missing.append(f"{exp['name']} (its params.yaml does not validate against this "
                           "version's schema: collect it with the version it ran)")  # fmt: skip
            continue
        row: dict[str, Any] = {"name": exp["name"], "rev": rev["rev"], "set": exp["set"],
                               "schedules": {}}  # fmt: skip
        for schedule in _schedules_of(exp["targets"], params):
            item = pipeline.stage_item("pretrain", Path(repo) / "dvc.yaml", schedule=schedule)
            # an item's metrics file is an output committed with the experiment, not a DVC
            # metric (`dvc exp show` lists only metrics/summary.json): read it at the revision
            text = _read_at(repo, rev["rev"], str(item.path(".json")))
            data = json.loads(text) if text else None
            if not data or not _measured_under(data, params, item.params):
                missing.append(f"{exp['name']}:{schedule}")
                continue
            curve = dvc.api.read(str(item.path("_valid.csv")), repo=str(repo), rev=rev["rev"])
            row["schedules"][schedule] = {
                "kind": data.get("kind"),
                "iterations": data.get("iterations"),
                "seeds": data.get("seeds"),
                "test": {k: data["test"][k] for k in TEST_KEYS if k in data["test"]},
                "curve": _read_curve(curve),
            }
        if row["schedules"]:
            rows.append(row)
    return {"name": spec["name"], "spec": spec, "experiments": rows, "missing": missing}


def read_collection(path: Path) -> dict[str, Any]:
    """An earlier ``betamcmc study collect`` output (``metrics/studies/<name>.json``)."""
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise InputError(f"not JSON ({err})", path) from None
    if not isinstance(found, dict) or not isinstance(found.get("experiments"), list):
        raise InputError("not a collected study (no 'experiments' list)", path)
    return found


def keep_earlier(study: dict[str, Any], earlier: dict[str, Any]) -> dict[str, Any]:
    """``study`` with the rows of an ``earlier`` collection of the same study for the experiments
    this collection did not find (run in another clone, or removed by ``dvc exp gc``), so that a
    study can be collected piece by piece. A row found now replaces the earlier one; the rows
    keep the study file's order; ``kept`` names the rows taken from the earlier collection."""
    if earlier.get("name") != study["name"]:
        raise InputError(
            f"the earlier collection is of study '{earlier.get('name')}', not '{study['name']}'"
        )
    order = [e["name"] for e in experiments(study["spec"])]
    rows = {r["name"]: r for r in study["experiments"]}
    kept = {
        r["name"]: r
        for r in earlier.get("experiments", [])
        if r["name"] in order and r["name"] not in rows
    }
    rows |= kept
    missing = [m for m in study["missing"] if m.split(":")[0].split(" (")[0] not in kept]
    return {**study, "experiments": [rows[n] for n in order if n in rows], "missing": missing,
            "kept": sorted(kept)}  # fmt: skip


def _read_at(repo: str | Path, rev: str, path: str) -> str | None:
    """A file as committed at an experiment's revision (None when that revision lacks it)."""
    import dvc.api  # lazy: see collect
    from dvc.exceptions import DvcException

    try:
        return dvc.api.read(path, repo=str(repo), rev=rev)
    except (FileNotFoundError, DvcException):
        return None


def _params_of(rev: dict[str, Any]) -> Any:
    """The experiment's validated params (None when they cannot be read)."""
    raw = rev["data"].get("params", {}).get("params.yaml", {}).get("data")
    try:
        return Params.model_validate(raw) if raw else None
    except ValueError:
        return None


def _measured_under(data: dict[str, Any], params: Any, keys: list[str]) -> bool:
    """Were these metrics written by a run with this experiment's settings (``keys``: the
    stage's params)? An experiment that did not rerun the stage carries its baseline's metrics,
    which must not be collected."""
    if params is None or "params_hash" not in data:
        return True  # nothing to check against (metrics of an older version): trust them
    return data["params_hash"] == params.digest(keys)


# --------------------------------------------------------------------------- drawing
def render(study: dict[str, Any], out_dir: Path) -> dict[str, float]:
    """``study_<name>.md`` and ``study_<name>.png``: a grid study (two varying params) as lines
    against the first, one per value of the second; any other study as a table and bars."""
    grid = study["spec"].get("grid")
    if grid and len(grid) == 2:
        return _render_grid(study, out_dir)
    return _render_list(study, out_dir)


def _fmt(test: dict[str, float], key: str) -> str:
    std = test.get(f"{key}_std")
    return f"{test[key]:.2f} ± {std:.2f}" if std is not None else f"{test[key]:.2f}"


def _table(study: dict[str, Any]) -> list[str]:
    lines = [
        "| experiment | settings | schedule | KL | MI | AU | NLL (IS) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in study["experiments"]:
        name = row["name"]
        sets = ", ".join(f"`{k}={v}`" for k, v in row["set"].items()) or "(defaults)"
        for schedule, m in row["schedules"].items():
            t = m["test"]
            lines.append(f"| {name} | {sets} | {schedule} | {_fmt(t, 'kl')} | "
                         f"{_fmt(t, 'mi')} | {_fmt(t, 'au')} | {_fmt(t, 'nll')} |")  # fmt: skip
            name = sets = ""  # named once per experiment
    return lines


def _write(study: dict[str, Any], out_dir: Path, intro: list[str]) -> None:
    name = study["name"]
    missing = study.get("missing") or []
    text = [f"# Study `{name}` ({len(study['experiments'])} DVC experiments)", "", *intro, "",
            *_table(study), ""]  # fmt: skip
    if missing:
        text += [f"Not (yet) collected: {', '.join(missing)}.", ""]
    file = study.get("file", f"studies/{name}.yaml")
    text += [f"Figure: study_{name}.png. Reproduce: `betamcmc study queue {file}`, "
             f"`dvc queue start`, `betamcmc study collect {file}` (docs/pretrain.md).", ""]  # fmt: skip
    (out_dir / f"study_{name}.md").write_text("\n".join(text), encoding="utf-8")


def _render_grid(study: dict[str, Any], out_dir: Path) -> dict[str, float]:
    import matplotlib  # lazy: a plotting import costs a second: only drawing pays it, not the CLI

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (x_param, xs), (s_param, series) = list(study["spec"]["grid"].items())
    refs = {}  # reference schedules (from `extra`) by the series value
    points: dict[Any, list[tuple[Any, dict[str, float]]]] = {s: [] for s in series}
    for row in study["experiments"]:
        for schedule, m in row["schedules"].items():
            if x_param in row["set"]:
                points[row["set"][s_param]].append((row["set"][x_param], m["test"]))
            elif s_param in row["set"]:
                refs[row["set"][s_param]] = (schedule, m["test"])
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
    for ax, key, title in zip(axes, ("kl", "mi", "au", "nll"),
                              ("KL (nats)", "MI", "active units", "NLL (IS, nats)"), strict=True):  # fmt: skip
        for k, s in enumerate(series):
            pts = sorted(points[s], key=lambda p: p[0])
            if pts:
                ax.errorbar([p[0] for p in pts], [p[1][key] for p in pts],
                            yerr=[p[1].get(f"{key}_std") or 0.0 for p in pts], marker="o",
                            capsize=3, color=f"C{k}", label=f"{s_param.split('.')[-1]}={s}")  # fmt: skip
            if s in refs:
                ax.axhline(refs[s][1][key], color=f"C{k}", ls="--", lw=1,
                           label=f"{refs[s][0]} ({s_param.split('.')[-1]}={s})")  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(xs), [str(x) for x in xs])
        ax.set_xlabel(x_param.split(".")[-1])
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / f"study_{study['name']}.png", dpi=110)
    plt.close(fig)
    intro = [f"Test metrics (mean ± std over seeds) against `{x_param}`, one line per `{s_param}`; "
             "dashed: the reference schedule at the same setting."]  # fmt: skip
    _write(study, out_dir, intro)
    return {f"{study['name']}_points": float(sum(len(p) for p in points.values()))}


# one line style per schedule of a listed study, in sorted order: matplotlib's code -> its name
_LINESTYLES = {"-": "solid", "--": "dashed", ":": "dotted", "-.": "dash-dot"}


def _render_list(study: dict[str, Any], out_dir: Path) -> dict[str, float]:
    import matplotlib  # lazy: see _render_grid (numpy with it)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = study["experiments"]
    schedules = sorted({s for r in rows for s in r["schedules"]})
    fig = plt.figure(figsize=(15, 6.8))
    bars = [fig.add_subplot(2, 3, i + 1) for i in range(3)]
    x = np.arange(len(rows))
    width = 0.8 / max(1, len(schedules))
    for k, schedule in enumerate(schedules):
        for ax, key in zip(bars, ("kl", "mi", "nll"), strict=True):
            vals = [r["schedules"].get(schedule, {}).get("test", {}).get(key, np.nan) for r in rows]
            errs = [
                r["schedules"].get(schedule, {}).get("test", {}).get(f"{key}_std") or 0.0
                for r in rows
            ]
            ax.bar(x + k * width, vals, width, yerr=errs, capsize=2, label=schedule, color=f"C{k}")
    for ax, title in zip(bars, ("test KL (nats)", "test MI", "test NLL (IS, nats)"), strict=True):
        ax.set_xticks(x + 0.4 - width / 2, [r["name"].split("-", 1)[1] for r in rows],
                      rotation=40, ha="right", fontsize=7)  # fmt: skip
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    bars[2].set_ylim(bottom=min([v for r in rows for s in r["schedules"].values()
                                 for v in [s["test"]["nll"]]] or [0]) * 0.97)  # fmt: skip
    bars[0].legend(fontsize=8)
    # curves: colour = experiment, line style = schedule (the same in all three panels)
    codes = list(_LINESTYLES)
    style = {s: codes[k % len(codes)] for k, s in enumerate(schedules)}
    styles = ", ".join(f"{_LINESTYLES[style[s]]}: {s}" for s in schedules)
    for i, key in enumerate(("kl", "mi", "au")):  # validation curves of every experiment
        ax = fig.add_subplot(2, 3, 4 + i)
        for j, row in enumerate(rows):
            label = row["name"].split("-", 1)[1]  # on the experiment's first curve only
            for schedule in schedules:
                c = row["schedules"].get(schedule, {}).get("curve")
                if c:
                    ax.plot(c["iteration"], c[key], color=f"C{j % 10}", ls=style[schedule], lw=1,
                            label=label)  # fmt: skip
                    label = None
        if i == 0:  # the legend's key to the line styles
            for schedule in schedules:
                ax.plot([], [], color="0.3", ls=style[schedule], lw=1, label=schedule)
        ax.set_title(f"validation {key.upper()} during training ({styles})", fontsize=8)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    fig.axes[-3].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(out_dir / f"study_{study['name']}.png", dpi=110)
    plt.close(fig)
    _write(
        study, out_dir, ["Test metrics (mean ± std over seeds) of every experiment of the study."]
    )
    return {f"{study['name']}_experiments": float(len(rows))}


def load_studies(directory: Path = STUDIES) -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))]
