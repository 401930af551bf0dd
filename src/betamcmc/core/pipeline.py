"""dvc.yaml is the map: what a stage item reads (params) and writes (outputs), read from it.

Each stage script looks up its item here instead of repeating dvc.yaml in Python::

    stage = pipeline.stage_item("sgmcmc", protocol="downpour", workers=2)
    stage.name             # 'sgmcmc@downpour-2'   (DVC's item name = the MLflow run name)
    stage.key              # 'downpour-2'          (names the item's outputs too)
    stage.params           # ['seed', 'device', 'sgmcmc.sampler', ...]  (MLflow params, hashes)
    stage.out              # Path('models/sgmcmc/downpour-2')
    stage.path("_bma_accuracy.csv")   # the declared output whose name ends so

Per-item stages are DVC ``matrix`` stages; the matrix dimensions (``schedule``, ``protocol``,
``workers``, ``method``, ``bow``) are the item's identity: :attr:`StageItem.identity`, logged to
MLflow as tags and params under the same names in every stage. DVC names an item
``<stage>@<value>-<value>...`` (booleans as ``true``/``false``); :attr:`StageItem.key` is that
suffix, and dvc.yaml names every output of an item with it, so an item, its outputs and its
MLflow run share one name.

The ``sgmcmc`` stage is a ``foreach`` over ``sgmcmc.items`` (a mapping ``<protocol>-<W>`` ->
``{protocol, workers}``: not every protocol x W pair is run); :func:`load_stages` flattens its
``do`` body and the item's dimensions are the ``${item.<field>}`` of its command.

Only ``${item.<dimension>}`` is interpolated (the stage script gets the values on its command
line); the matrix lists themselves (``${pretrain.schedules}``) are DVC's business.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from betamcmc.core.errors import InputError

DVC_YAML = "dvc.yaml"
FILE_SUFFIXES = (".json", ".csv", ".md")  # outputs that are files (the other outs are folders)
_ITEM = re.compile(r"\$\{\s*item\.([A-Za-z_][A-Za-z0-9_]*)\s*\}")


def dvc_str(value: Any) -> str:
    """A value as DVC writes it into names and interpolated strings (``true``, not ``True``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class StageItem:
    """One stage (or one item of a matrix stage) as dvc.yaml declares it, resolved."""

    stage: str
    identity: dict[str, Any] = field(default_factory=dict)
    params: list[str] = field(default_factory=list)
    deps: list[str] = field(default_factory=list)
    outs: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    # params entries that name the item (``pretrain.schedules.${item.schedule}``): key -> dimension
    item_params: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str | None:
        """DVC's item key (``cyclical``, ``downpour-2``, ``cyclical-true``); None for a plain stage."""
        if not self.identity:
            return None
        return "-".join(dvc_str(v) for v in self.identity.values())

    @property
    def name(self) -> str:
        """DVC's stage name, e.g. ``sgmcmc@downpour-2``: also the MLflow run name."""
        return f"{self.stage}@{self.key}" if self.key is not None else self.stage

    @property
    def out(self) -> Path:
        """The stage's one folder output (``data/prepared``, a model or report folder): the
        ``outs`` entry that is not a metrics, plot-data or page file."""
        folders = [p for p in self.outs if not p.endswith(FILE_SUFFIXES)]
        if len(folders) != 1:
            raise InputError(
                f"stage {self.name} declares {len(folders)} folder outs, expected 1", DVC_YAML
            )
        return Path(folders[0])

    def path(self, suffix: str) -> Path:
        """The one declared output (out, metrics or plots file) whose path ends with ``suffix``."""
        hits = [p for p in (*self.outs, *self.metrics, *self.plots) if p.endswith(suffix)]
        if len(hits) != 1:
            raise InputError(
                f"stage {self.name} declares {len(hits)} outputs ending in {suffix!r}, expected 1",
                DVC_YAML,
            )
        return Path(hits[0])

    @property
    def outputs(self) -> list[str]:
        return [*self.outs, *self.metrics, *self.plots]


def load_stages(dvc_yaml: str | Path = DVC_YAML) -> dict[str, Any]:
    """The ``stages:`` mapping of dvc.yaml (in the working directory: DVC runs commands there)."""
    path = Path(dvc_yaml)
    try:
        stages = yaml.safe_load(path.read_text(encoding="utf-8"))["stages"]
    except FileNotFoundError:
        raise InputError("no dvc.yaml here (run stages from the project root)", path) from None
    return {name: flatten(spec) for name, spec in stages.items()}


def flatten(spec: dict[str, Any]) -> dict[str, Any]:
    """A ``foreach``/``do`` stage as a plain spec (the ``do`` body plus ``foreach``)."""
    return {**spec["do"], "foreach": spec["foreach"]} if "do" in spec else spec


def dimensions(spec: dict[str, Any]) -> list[str]:
    """The item's identity fields: the ``matrix`` keys, or for a ``foreach`` over a mapping of
    mappings the ``${item.<field>}`` its command names, in order (the foreach key must be their
    values joined by ``-``, as DVC names the item by it)."""
    if "matrix" in spec:
        return list(spec["matrix"])
    if "foreach" in spec:
        return list(dict.fromkeys(_ITEM.findall(spec.get("cmd", ""))))
    return []


def stage_item(stage: str, dvc_yaml: str | Path = DVC_YAML, **values: Any) -> StageItem:
    """Resolve ``stage`` (and, for a matrix stage, the item given by its dimension ``values``)."""
    stages = load_stages(dvc_yaml)
    if stage not in stages:
        raise InputError(f"dvc.yaml has no stage {stage!r}", dvc_yaml)
    spec = stages[stage]
    dims = dimensions(spec)
    if sorted(dims) != sorted(values):
        raise InputError(
            f"stage {stage!r} is identified by {dims or 'nothing'} (got {sorted(values)})", dvc_yaml
        )
    identity = {d: values[d] for d in dims}

    def resolve(text: str) -> str:
        return _ITEM.sub(lambda m: dvc_str(identity[m.group(1)]), text)

    item_params = {}
    for key in spec.get("params", []):
        if isinstance(key, str) and (m := _ITEM.search(key)):
            item_params[resolve(key)] = m.group(1)
    return StageItem(
        stage=stage,
        identity=identity,
        params=[resolve(k) for k in spec.get("params", []) if isinstance(k, str)],
        deps=[resolve(d) for d in spec.get("deps", [])],
        outs=[resolve(p) for p in _paths(spec.get("outs", []))],
        metrics=[resolve(p) for p in _paths(spec.get("metrics", []))],
        plots=[resolve(p) for p in _paths(spec.get("plots", []))],
        item_params=item_params,
    )


def _paths(entries: list[Any]) -> list[str]:
    """Output entries are a path or ``{path: {options}}``."""
    return [e if isinstance(e, str) else next(iter(e)) for e in entries]
