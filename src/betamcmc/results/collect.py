"""Read what every area's stages measured, from the files dvc.yaml says they wrote.

:func:`collect` returns one mapping per area (``pretrain``, ``classify``, ``dialog``,
``vae_head``, ``sgmcmc``, ``sgmcmc_sgd``, ``consistency``, ``cyclical``, ``rl``), each item's metrics file
parsed as it is. Readers of the result use ``.get`` and :func:`number`: metrics files grow keys
over time (the pretrain metrics gained ``_std`` and ``per_seed`` entries), and a missing file is
an input error naming it (run the stage first).
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Any

from betamcmc.core import pipeline
from betamcmc.core.errors import InputError
from betamcmc.core.io import read_json

if TYPE_CHECKING:
    from betamcmc.params import Params


def number(tree: Any, dotted: str) -> float | None:
    """The finite number at a dotted key path of a metrics mapping, else None."""
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if isinstance(node, bool) or not isinstance(node, int | float) or not math.isfinite(node):
        return None
    return float(node)


def read_metrics(stage: pipeline.StageItem) -> dict[str, Any]:
    path = stage.path(".json")
    try:
        return read_json(path)
    except FileNotFoundError:
        raise InputError(f"metrics of {stage.name} not found (run `dvc repro`)", path) from None
    except ValueError as err:
        raise InputError(f"metrics of {stage.name} are not JSON ({err})", path) from None


def items(params: Params) -> dict[str, dict[str, pipeline.StageItem]]:
    """Every stage item the results page reads, per area, keyed by its DVC item key."""
    schedules = list(params.pretrain.schedules)
    downstream = list(params.finetune.schedules)  # the schedules classify, dialog and the head run

    def each(stage: str, **dims: list[Any]) -> dict[str, pipeline.StageItem]:
        out = {}
        for values in itertools.product(*dims.values()):
            item = pipeline.stage_item(stage, **dict(zip(dims, values, strict=True)))
            out[item.key or stage] = item
        return out

    return {
        "pretrain": each("pretrain", schedule=schedules),
        "classify": each("classify", schedule=downstream),
        "dialog": each("dialog", schedule=downstream, bow=list(params.finetune.dialog.bow)),
        "vae_head": each("sgmcmc_vae_head", schedule=downstream),
        "sgmcmc": {
            key: pipeline.stage_item("sgmcmc", protocol=item.protocol, workers=item.workers)
            for key, item in params.sgmcmc.items.items()
        },
        "sgmcmc_sgd": each("sgmcmc_sgd"),
        "consistency": each("sgmcmc_consistency"),
        "cyclical": each("sgmcmc_cyclical"),
        "rl": each("rl", method=list(params.rl.methods), workers=list(params.rl.workers)),
    }


def collect(params: Params) -> dict[str, dict[str, dict[str, Any]]]:
    """``{area: {item key: metrics}}`` for every area (see the module docstring)."""
    return {
        area: {key: read_metrics(stage) for key, stage in found.items()}
        for area, found in items(params).items()
    }
