"""Where a run's logging calls go (:class:`Link`), the run of a stage item (:class:`StageRun`),
and the stage runs open in this process, innermost last (:func:`current_link`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Link:
    """Where the logging calls of one run go. Picklable: a seed's process gets the link of its
    nested run and logs to it. ``scope`` (the stage run's id) and ``stage`` (its name) make the
    stage's processes print one warning between them when the store goes away."""

    uri: str
    run_id: str
    spool: str
    scope: str
    stage: str


@dataclass(frozen=True)
class StageRun:
    """The MLflow run of one stage item; untracked (``run_id`` and ``link`` None) when the store
    could not be used and ``BETAMCMC_TRACKING=optional``."""

    name: str
    tags: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None
    experiment_id: str | None = None
    link: Link | None = None


OPEN_RUNS: list[StageRun] = []  # the stage runs open in this process, innermost last


def current_link() -> Link | None:
    """The link of the innermost stage run open in this process (None: untracked or none)."""
    return OPEN_RUNS[-1].link if OPEN_RUNS else None
