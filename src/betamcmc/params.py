"""params.yaml as a whole: the root settings and every section, validated together.

``betamcmc params check`` (which ``make repro`` runs before DVC), the tests and the benchmarks
load the whole file with :func:`load_params`; a stage loads only the sections it reads
(:func:`betamcmc.core.paramfile.load_stage_params`), so that editing one section's schema reruns only
the stages that read it. Reading, validation and the one-line errors (``params.yaml:14:
pretrain.schedules.cyclical.cycles: must be >= 1 (got 0)``) are in :mod:`betamcmc.core.paramfile`.

Sections: ``seed``, ``device``, ``tracking``, ``runtime`` (:mod:`betamcmc.core.paramfile`) and one
per stage family, each in the module of that concept (``betamcmc.data.params``,
``betamcmc.vae.params``, ...), subclassing the leaf :class:`betamcmc.core.schema.Section`; adding a
section is one import and one field here, and its name in ``paramfile.SECTIONS``. Every value
lives in ``params.yaml``: the fields it sets are required (see ``betamcmc.core.schema``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from betamcmc.core.paramfile import (
    DEFAULT_PARAMS_FILE,
    ParamsFile,
    RuntimeParams,
    TrackingParams,
    read_params,
    validate,
)
from betamcmc.core.schema import Seed
from betamcmc.data.params import DataParams
from betamcmc.finetune.params import FinetuneParams
from betamcmc.rl.params import RlParams
from betamcmc.sgmcmc.params import SgmcmcParams
from betamcmc.vae.params import PretrainParams

__all__ = ["Params", "RuntimeParams", "TrackingParams", "load_params", "validate_params"]


class Params(ParamsFile):
    """The whole file, in its order."""

    seed: Seed
    device: Literal["auto", "cpu", "cuda"]
    data: DataParams
    tracking: TrackingParams
    runtime: RuntimeParams
    pretrain: PretrainParams
    finetune: FinetuneParams
    sgmcmc: SgmcmcParams
    rl: RlParams


def load_params(path: str | Path = DEFAULT_PARAMS_FILE) -> Params:
    """Read and validate the whole params file; raise :class:`ParamsError` with one clear line."""
    return read_params(path, Params)


def validate_params(raw: dict[str, Any], source: str = "<params>", node: Any = None) -> Params:
    """Validate an already-parsed params mapping as a whole (``node``: its YAML node tree)."""
    return validate(raw, Params, source, node)
