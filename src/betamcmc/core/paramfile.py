"""params.yaml read and validated, with one-line errors; the root settings every stage reads.

A stage loads the root (``seed``, ``device``, ``tracking``, ``runtime``: here) plus only the
sections it reads, each a class from the module of its concept::

    params = load_stage_params(args.params, data=DataParams)

so a stage's code deps (dvc.yaml) are the modules it runs, not every section's schema: editing
``rl/params.py`` reruns the RL stages only. ``betamcmc.params`` assembles every section
(``betamcmc params check``, tests, benchmarks). A mistake (unknown key, wrong type, value out of
range) raises :class:`ParamsError` whose message is one line naming the file, the line, the key
path and the bad value, e.g.::

    params.yaml:14: pretrain.schedules.cyclical.cycles: must be >= 1 (got 0)

A top-level key that names no section at all is refused by every stage (a misspelt section
would otherwise be read by none); a section a stage does not load is not validated by it
(``betamcmc params check``, which ``make repro`` runs first, validates the whole file).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import sys
from collections.abc import Collection
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import Field, ValidationError, create_model

from betamcmc.core.errors import ParamsError
from betamcmc.core.io import flatten
from betamcmc.core.resources import check_resources
from betamcmc.core.schema import Section, Seed

DEFAULT_PARAMS_FILE = "params.yaml"


# --------------------------------------------------------------------------- tracking
class TrackingParams(Section):
    uri: str | None = Field(
        description="MLflow tracking URI; default sqlite:///<repo>/mlflow.db; "
        "the MLFLOW_TRACKING_URI environment variable overrides both"
    )
    experiment: str = Field(min_length=1)


# --------------------------------------------------------------------------- runtime
class RuntimeParams(Section):
    """How the stages use the machine. No result depends on these (up to float noise from thread
    counts), so no stage lists them in dvc.yaml: changing one reruns nothing. ``precision`` moves
    results within their seed spread (docs/results/pretrain-speed.md); it lives here because
    ``auto`` resolves per machine, which a dvc.yaml params hash could not see either."""

    threads: int = Field(
        ge=0, description="torch (and BLAS) CPU threads per process (0: the library's default)"
    )
    processes: int = Field(ge=0, description="pretrain: seeds trained at once (0: all of them)")
    worker_timeout: float = Field(
        gt=0.0,
        description="sgmcmc / rl: seconds without any message or heartbeat (sent every second "
        "even while a worker computes) before the master counts a worker as lost",
    )
    checkpoint_every: int = Field(
        ge=1, description="pretrain: write a resumable checkpoint every N iterations"
    )
    log_every: int = Field(
        ge=1, description="pretrain: one training-curve point (window mean) every N iterations"
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        description="pretrain: the training step's arithmetic: fp32, bf16 autocast, or auto "
        "(bf16 where the device computes it natively: AVX-512 BF16 / AMX CPUs, CUDA cards with "
        "bf16; fp32 elsewhere). The exception in this section: bf16 changes the numbers (within "
        "the seed spread), so the resolved precision is recorded in the metrics file and MLflow"
    )


# --------------------------------------------------------------------------- root
SECTIONS = ("data", "pretrain", "finetune", "sgmcmc", "rl")  # the stage families' sections


ALL_KEYS = ("seed", "device", "data", "tracking", "runtime", *SECTIONS[1:])  # the file's order


class ParamsFile(Section):
    """What every params model can do: read a value by its dotted key, flatten, hash."""

    def section(self, dotted: str) -> Any:
        """Return the value at a dotted key path, e.g. ``pretrain.schedules.cyclical``."""
        node: Any = self
        for part in dotted.split("."):
            node = node[part] if isinstance(node, dict) else getattr(node, part)
        return node

    def flat(self, keys: list[str] | tuple[str, ...] | None = None) -> dict[str, Any]:
        """Flatten (the given key paths of) the params to ``{"section.key": value}``."""
        dumped = self.model_dump(mode="json")
        if keys:
            dumped = {k: _get_dotted(dumped, k) for k in keys}
        return flatten(dumped, keep_empty=True)

    def digest(self, keys: list[str] | tuple[str, ...] | None = None) -> str:
        """A short stable hash of (the given key paths of) the params."""
        blob = json.dumps(self.flat(keys), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


class RootParams(ParamsFile):
    """The settings every stage reads; a stage's params model adds the sections it loads."""

    seed: Seed
    device: Literal["auto", "cpu", "cuda"]
    tracking: TrackingParams
    runtime: RuntimeParams

    def __reduce__(self) -> Any:
        """Pickle a stage's params (they cross into the seeds' worker processes) as its sections'
        classes and its state: the model class itself is made at run time, not importable."""
        sections = _SECTIONS_OF.get(type(self))
        if sections is None:
            return super().__reduce__()
        return _restore, (sections, self.__getstate__())


P = TypeVar("P", bound=ParamsFile)


def stage_model(**sections: type[Section]) -> type[RootParams]:
    """The params model of a stage: the root plus the named sections (``data=DataParams``)."""
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise ValueError(f"not a params section: {', '.join(unknown)} (sections: {SECTIONS})")
    key = tuple(sorted((name, id(cls)) for name, cls in sections.items()))
    if key not in _STAGE_MODELS:
        fields: dict[str, Any] = {name: (cls, ...) for name, cls in sections.items()}
        model = create_model("StageParams", __base__=RootParams, **fields)
        _STAGE_MODELS[key], _SECTIONS_OF[model] = model, dict(sections)
    return _STAGE_MODELS[key]


def _restore(sections: dict[str, type[Section]], state: dict[str, Any]) -> RootParams:
    """A pickled stage's params back (:meth:`RootParams.__reduce__`)."""
    model = stage_model(**sections)
    params = model.__new__(model)
    params.__setstate__(state)
    return params


_STAGE_MODELS: dict[tuple[tuple[str, int], ...], type[RootParams]] = {}
_SECTIONS_OF: dict[type[RootParams], dict[str, type[Section]]] = {}


def _get_dotted(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        node = node[part]
    return node


# --------------------------------------------------------------------------- loading
def load_stage_params(path: str | Path, **sections: type[Section]) -> RootParams:
    """Read ``path`` and validate its root settings and the ``sections`` a stage reads."""
    return read_params(path, stage_model(**sections))


def read_params(path: str | Path, model: type[P]) -> P:
    """Read and validate a params file as ``model``; raise :class:`ParamsError` with one line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(f"{path}: params file not found") from None
    except IsADirectoryError:
        raise ParamsError(f"{path}: expected a params file, found a directory") from None
    except PermissionError:
        raise ParamsError(f"{path}: permission denied") from None
    except UnicodeDecodeError as err:
        raise ParamsError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    try:
        raw = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ParamsError(f"{path}{line}: invalid YAML: {problem}") from None
    if raw is None:
        raise ParamsError(
            f"{path}: params file is empty (expected the sections {', '.join(ALL_KEYS)})"
        )
    duplicate = _duplicate_key(root)
    if duplicate is not None:
        key, line = duplicate
        raise ParamsError(f"{path}:{line}: {key}: duplicate key (it is already set above)")
    if not isinstance(raw, dict):
        raise ParamsError(
            f"{path}:1: top level must be a mapping of sections (got {type(raw).__name__})"
        )
    params = validate(raw, model, source=str(path), node=root)
    # settings asking for more processes than this machine has cores: warn, or refuse far beyond
    for warning in check_resources(params, lambda loc: _cite(raw, root, str(path), loc)):
        print(f"warning: {warning}", file=sys.stderr)
    return params


def _cite(raw: dict[str, Any], node: Any, source: str, loc: tuple[Any, ...]) -> str:
    """``source:LINE: key.path`` of a setting, as the validation errors name it."""
    keys, cite = _resolve(raw, node, loc)
    line = f":{cite.start_mark.line + 1}" if cite is not None else ""
    return f"{source}{line}: {'.'.join(str(k) for k in keys)}"


# --------------------------------------------------------------------------- stage arguments
WORKER_COUNTS = range(1, sys.maxsize)  # what a stage's worker-count argument may be: >= 1


def require_item(source: str | Path, key: str, value: Any, allowed: Collection[Any]) -> None:
    """Refuse a stage argument that names no item (a schedule, bow setting, protocol, method or
    worker count not in ``allowed``), before anything is written: one line naming the params key
    and file, in the shape of a bad value inside the file, exit 2 (:class:`ParamsError`)::

        params.yaml: pretrain.schedules: must be one of 'constant' or 'cyclical' (got 'warmup')
        params.yaml: sgmcmc.workers: must be >= 1 (got 0)
    """
    if value in allowed:
        return
    if isinstance(allowed, range):
        expected = f">= {allowed.start}"
    else:
        names = [repr(a) for a in allowed]
        expected = "one of " + (
            f"{', '.join(names[:-1])} or {names[-1]}" if names[1:] else names[0]
        )
    raise ParamsError(f"{source}: {key}: must be {expected} (got {value!r})")


def validate(raw: dict[str, Any], model: type[P], source: str = "<params>", node: Any = None) -> P:
    """Validate an already-parsed params mapping as ``model`` (``node``: its YAML node tree, for
    line numbers). The sections ``model`` does not hold are left to the stages that read them."""
    loaded = {k: v for k, v in raw.items() if k not in SECTIONS or k in model.model_fields}
    try:
        params = model.model_validate(loaded)
    except ValidationError as err:
        errors = err.errors(include_url=False)
        # a misspelt key is both unknown and a missing one: name the key the user wrote
        first = min(errors, key=lambda e: e["type"] == "missing")
        keys, value_node = _resolve(raw, node, first["loc"])
        line = value_node.start_mark.line + 1 if value_node is not None else None
        where = f"{source}:{line}" if line is not None else source
        key = ".".join(str(k) for k in keys) or "<root>"
        message = _describe(first)
        if first["type"] == "extra_forbidden":
            siblings = first["loc"][:-1]
            missing = [
                e["loc"][-1] for e in errors if e["type"] == "missing" and e["loc"][:-1] == siblings
            ]
            close = difflib.get_close_matches(str(first["loc"][-1]), map(str, missing), n=1)
            message += f"; did you mean {close[0]}?" if close else ""
        raise ParamsError(f"{where}: {key}: {message}") from None
    _cross_section(params, raw, source, node)
    return params


def _cross_section(params: Any, raw: dict[str, Any], source: str, node: Any) -> None:
    """Checks that span sections (one line naming the file and line, like a schema error), where
    both sections are loaded."""
    if not (hasattr(params, "pretrain") and hasattr(params, "finetune")):
        return
    known = list(params.pretrain.schedules)
    for i, name in enumerate(params.finetune.schedules):
        if name not in known:
            keys, cite = _resolve(raw, node, ("finetune", "schedules", i))
            line = f":{cite.start_mark.line + 1}" if cite is not None else ""
            key = ".".join(str(k) for k in keys)
            raise ParamsError(
                f"{source}{line}: {key}: must be a key of pretrain.schedules "
                f"({', '.join(map(repr, known))}) (got {name!r})"
            )


def _resolve(raw: Any, node: Any, loc: tuple[Any, ...]) -> tuple[list[Any], Any]:
    """Map a pydantic error location onto the data's key path and the YAML node to cite.

    Location parts that are not keys of the data (the tag of a discriminated union, e.g.
    ``cyclical`` in ``schedules.x.cyclical.cycles``) are skipped; a missing key is reported at
    its parent mapping. The node cited is the key's own node, so the line is the key's line.
    """
    keys: list[Any] = []
    data, cite = raw, node
    for i, part in enumerate(loc):
        if isinstance(data, dict) and part in data:
            key_node, value_node = _pair(node, part)
            keys.append(part)
            data, node = data[part], value_node
            cite = key_node if key_node is not None else cite
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            keys.append(part)
            data = data[part]
            node = node.value[part] if isinstance(node, yaml.SequenceNode) else None
            cite = node if node is not None else cite
        elif i == len(loc) - 1:
            keys.append(part)  # a missing key: cite the mapping that should hold it
    return keys, cite


def _duplicate_key(node: Any, prefix: str = "") -> tuple[str, int] | None:
    """The dotted path and line of the first key set twice in one mapping (YAML forbids it;
    PyYAML would silently keep the last value)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key, value in node.value:
            name = getattr(key, "value", None)
            if name in seen:
                return f"{prefix}{name}", key.start_mark.line + 1
            seen.add(name)
            found = _duplicate_key(value, f"{prefix}{name}.")
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found = _duplicate_key(item, f"{prefix}{i}.")
            if found:
                return found
    return None


def _pair(node: Any, key: Any) -> tuple[Any, Any]:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if k.value == str(key):
                return k, v
    return None, None


_MESSAGES = {
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}",
    "less_than": "must be < {lt}",
    "extra_forbidden": "unknown key",
    "missing": "missing required key",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "string_too_short": "must not be empty",
    "too_short": "must have at least {min_length} item(s)",
    "finite_number": "must be a finite number",
}


def _describe(error: dict[str, Any]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind in _MESSAGES:
        message = _MESSAGES[kind].format(**ctx)
    elif kind == "literal_error":
        message = f"must be one of {ctx.get('expected', '')}"
    elif kind == "union_tag_invalid":
        message = (
            f"{ctx.get('discriminator', 'kind')} must be one of {ctx.get('expected_tags', '')}"
            f" (got {ctx.get('tag')!r})"
        )
    elif kind == "union_tag_not_found":
        message = f"missing required key {ctx.get('discriminator', 'kind')}"
    elif kind == "value_error":
        message = str(ctx.get("error", error["msg"]))
    else:
        message = error["msg"][0].lower() + error["msg"][1:]
    if kind in ("missing", "union_tag_not_found") or isinstance(error.get("input"), dict):
        return message
    return f"{message} (got {_show(error.get('input'))})"


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, str):
        return repr(value)
    return json.dumps(value) if value is None or isinstance(value, bool) else repr(value)
