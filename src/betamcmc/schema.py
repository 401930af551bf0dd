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

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Base for every params section: unknown keys are errors, no silent type coercion."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
