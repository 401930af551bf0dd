"""The base class of every params section (a leaf module: it imports nothing of the package).

Each stage family defines its section in its own ``params`` module (``betamcmc.vae.params``,
``betamcmc.sgmcmc.params``, ...) by subclassing :class:`Section`; ``betamcmc.params`` imports
those modules and assembles the root. Section modules import this module, never
``betamcmc.params``, so the import graph has no cycle.

One place for numbers: a field that ``params.yaml`` sets carries no default here (it is
required), so a value lives only in ``params.yaml``. Defaults remain only for the optional knobs
of a user-named entry (a beta schedule's ``start`` / ``stop``, ...), which ``params.yaml`` may
leave out. ``tests/test_params.py`` checks both rules.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

SEED_MAX = 2**32 - 1  # NumPy's legacy seeding takes seeds below 2**32
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]


def _distinct(values: list[Any]) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError("must be distinct")
    return values


# a list of seeds (one run each): at least one, every one a valid seed, no seed twice
Seeds = Annotated[list[Seed], Field(min_length=1), AfterValidator(_distinct)]


class Section(BaseModel):
    """Base for every params section: unknown keys are errors, no silent type coercion, numbers
    finite (no ``.inf`` / ``.nan``), strings not empty or blank."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _no_blank_strings(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty or only whitespace")
        return value
