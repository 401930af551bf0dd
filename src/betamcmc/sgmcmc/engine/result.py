"""What a run reports: communication, staleness, per-worker counters and lost workers.

:func:`run_result` aggregates the master's records into a :class:`RunResult`;
:func:`require_complete` is the one rule for a run that lost workers: fewer samples than
configured fail the stage (one line, the samples kept are named) unless the user opted in to
partial results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from betamcmc.core.errors import BetamcmcError
from betamcmc.sgmcmc.engine.master import Master


class IncompleteRun(BetamcmcError):
    """Fewer samples than configured (workers lost) and partial results not allowed."""


@dataclass
class RunResult:
    protocol: str
    workers: int
    samples: int
    samples_wanted: int
    wall_s: float
    setup_s: float
    dim: int
    messages: int
    heartbeats: int
    bytes_total: float
    bytes_to_master: int
    bytes_from_master: int
    bytes_collective: float
    grad_evals: int
    master_busy_s: float
    staleness_mean: float | None
    staleness_max: int | None
    dead: list[dict[str, Any]]
    per_worker: dict[str, dict[str, Any]]
    # The master's parameters when the run ended (downpour: its chain; elastic: the centre
    # variable; single/sync: the initial parameters, which the master never moves). Not part of
    # ``as_dict`` (a tensor, not a metric); the RL stage evaluates it as the final policy.
    final_theta: torch.Tensor | None = field(default=None, repr=False)
    # On a step budget (``EngineConfig.on_budget``): did every chain take its budget (the run's
    # end, not a sample count)? None when the run ends on the sample count.
    budget_reached: bool | None = None

    @property
    def complete(self) -> bool:
        if self.budget_reached is not None:
            return self.budget_reached
        return self.samples >= self.samples_wanted

    def as_dict(self) -> dict[str, Any]:
        skip = {"final_theta"} | ({"budget_reached"} if self.budget_reached is None else set())
        return {k: v for k, v in self.__dict__.items() if k not in skip}


def budget_reached(master: Master) -> bool | None:
    """On a step budget: downpour's master chain took its budget; in the other protocols every
    worker's chain did (none was lost). None when the run ends on the sample count."""
    if not master.cfg.on_budget:
        return None
    if master.protocol == "downpour":
        return master.stopping
    return not master.dead and all(r.status == "done" for r in master.records.values())


def run_result(master: Master, protocol: str, wall_s: float, setup_s: float) -> RunResult:
    recs = master.records
    to_master = sum(r.bytes_received for r in recs.values())
    from_master = sum(r.bytes_sent for r in recs.values())
    collective = float(sum(r.collective_bytes for r in recs.values()))
    messages = sum(r.messages + r.replies for r in recs.values())
    if protocol == "sync":  # ring all-reduce: 2 (W - 1) messages per worker per step
        messages += sum(r.steps * 2 * (master.workers - 1) for r in recs.values())
    st = master.staleness
    per_worker = {
        str(w): {
            "status": r.status,
            "steps": r.steps,
            "grads": r.grads,
            "messages_to_master": r.messages,
            "heartbeats": r.heartbeats,
            "compute_s": round(r.compute_s, 4),
            "comm_s": round(r.comm_s, 4),
            "wait_s": round(r.wait_s, 4),
            "steps_per_s": round(r.steps / r.compute_s, 2) if r.compute_s > 0 else None,
        }
        for w, r in recs.items()
    }
    return RunResult(
        protocol=protocol,
        workers=master.workers,
        samples=master.samples,
        samples_wanted=master.cfg.samples,
        wall_s=round(wall_s, 4),
        setup_s=round(setup_s, 4),
        dim=master.dim,
        messages=int(messages),
        heartbeats=sum(r.heartbeats for r in recs.values()),
        bytes_total=float(to_master + from_master + collective),
        bytes_to_master=int(to_master),
        bytes_from_master=int(from_master),
        bytes_collective=collective,
        grad_evals=master.grads_total(),
        master_busy_s=round(master.busy_s, 4),
        staleness_mean=float(np.mean(st)) if st else None,
        staleness_max=int(max(st)) if st else None,
        dead=master.dead,
        per_worker=per_worker,
        final_theta=master.theta.detach().cpu().clone(),
        budget_reached=budget_reached(master),
    )


class NoSamples(BetamcmcError):
    """The run ended without a sample although no worker was lost: no step past burn-in that
    reached the master fell in a sampling stage of a cyclical step size. ``result`` is the
    run's own (gradients, time, counters): a study that counts an empty run (the cyclical
    benchmark: no mode visited) takes it from there; every other caller fails on this line."""

    def __init__(self, result: RunResult, burn_in: int) -> None:
        super().__init__(
            f"the run ended without a sample (no worker lost): no step past burn-in {burn_in} "
            "that reached the master fell in a sampling stage of the step-size cycle; take "
            "more steps or exchange more often"
        )
        self.result = result


def require_complete(
    result: RunResult, allow_partial: bool, flag: str, kept: str, what: str = "samples"
) -> None:
    """Fail (one line) when workers were lost and the run collected fewer samples than
    configured, unless ``allow_partial`` (the params key ``flag``) says partial results do;
    ``kept`` says what became of the samples collected."""
    if result.complete or allow_partial:
        return
    lost = ", ".join(f"worker {d['worker']} ({d['reason']})" for d in result.dead) or "none"
    if result.budget_reached is not None:
        raise IncompleteRun(
            f"the chains did not take their step budgets ({result.samples} {what} collected; "
            f"lost: {lost}); {kept}; set {flag}: true to accept partial results"
        )
    raise IncompleteRun(
        f"only {result.samples} of {result.samples_wanted} {what} collected (lost: {lost}); "
        f"{kept}; set {flag}: true to accept partial results"
    )
