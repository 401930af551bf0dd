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
draws every collected study into ``reports/pretrain/study_<name>.md`` and ``.png``
(:mod:`betamcmc.results.vae_study_render`).
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

from betamcmc.core import pipeline
from betamcmc.core.errors import InputError, ParamsError
from betamcmc.core.paramfile import stage_model, validate
from betamcmc.vae.params import PretrainParams

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
                raise InputError(f"{where}: grid.{param} must be a non-empty list of values", path)
        return
    found = block["experiments"]
    if not isinstance(found, dict) or not found:
        raise InputError(f"{where}: 'experiments' must map names to their settings", path)
    for key, sets in found.items():
        if sets is not None and not isinstance(sets, dict):
            raise InputError(
                f"{where}: experiments.{key} must be a mapping of param: value "
                "(or empty for the baseline)",
                path,
            )


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
    have = set(
        _dvc_out(["dvc", "exp", "list", "--all-commits", "--name-only", *source], repo).split()
    )
    moved = [n for n in wanted if n in have]
    if not moved:
        where = "this repository" if direction == "push" else f"the git remote {remote!r}"
        raise InputError(
            f"none of the {len(wanted)} experiment(s) of study '{spec['name']}' is in {where}"
        )
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
            missing.append(
                f"{exp['name']} (its params.yaml does not validate against this "
                "version's schema: collect it with the version it ran)"
            )
            continue
        row: dict[str, Any] = {
            "name": exp["name"],
            "rev": rev["rev"],
            "set": exp["set"],
            "schedules": {},
        }
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
    return {
        **study,
        "experiments": [rows[n] for n in order if n in rows],
        "missing": missing,
        "kept": sorted(kept),
    }


def _read_at(repo: str | Path, rev: str, path: str) -> str | None:
    """A file as committed at an experiment's revision (None when that revision lacks it)."""
    import dvc.api  # lazy: see collect
    from dvc.exceptions import DvcException

    try:
        return dvc.api.read(path, repo=str(repo), rev=rev)
    except (FileNotFoundError, DvcException):
        return None


def _params_of(rev: dict[str, Any]) -> Any:
    """The experiment's validated root and ``pretrain`` params, what the pretrain stage's hash
    covers (None when they cannot be read: an older version of the file)."""
    raw = rev["data"].get("params", {}).get("params.yaml", {}).get("data")
    try:
        return validate(raw, stage_model(pretrain=PretrainParams)) if raw else None
    except (ParamsError, ValueError):
        return None


def _measured_under(data: dict[str, Any], params: Any, keys: list[str]) -> bool:
    """Were these metrics written by a run with this experiment's settings (``keys``: the
    stage's params)? An experiment that did not rerun the stage carries its baseline's metrics,
    which must not be collected."""
    if params is None or "params_hash" not in data:
        return True  # nothing to check against (metrics of an older version): trust them
    return data["params_hash"] == params.digest(keys)


def load_studies(directory: Path = STUDIES) -> list[dict[str, Any]]:
    """Every collected study of ``directory`` (``metrics/studies/*.json``), in name order."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))]
