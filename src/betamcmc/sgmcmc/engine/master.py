"""The master side of a run (rank 0): the chain(s) samples are taken from, and fault recovery.

The master serves whichever worker is ready (no lock-step): one receive is posted per
worker, each waited for on its own helper thread (:class:`Receivers`), and the master takes the
messages in the order they arrive. It hands each to the protocol (``protocols/``), replies, and
streams thinned samples to disk (``samples.py``). Between messages it does as little as possible:
a header read, the protocol's few vector operations, at most one sample record.

Receiving is :mod:`betamcmc.sgmcmc.engine.receivers`'s job. **Liveness** comes from the workers' heartbeats and, locally, from their process handles, never
from a timeout on the computation: every worker sends something at least every second (its
heartbeat thread covers burn-in, slow gradients and stragglers), so

* a worker silent for ``worker_timeout`` seconds, or whose process exited, is lost: the master
  says so on stderr at once, records it, and goes on with the others (``sync`` cannot: an
  all-reduce needs everyone, its protocol ends the run);
* while no message comes the master looks at its workers every ``IDLE_CHECK_S``, so it learns
  that its last running workers died without waiting for a message. A process seen gone counts
  as lost ``EXIT_GRACE_S`` later, so that what it sent last (an ABORT naming the signal that
  stopped it) is handled first;
* a receive from a worker fails when that worker's connection closes (it died): no more is
  posted to it; locally its exit code then says why, under ``torchrun`` it is lost at once
  ("connection lost"). The other workers' receives are untouched.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from betamcmc.core.errors import BetamcmcError, DivergenceError
from betamcmc.sgmcmc.engine import wire
from betamcmc.sgmcmc.engine.config import EngineConfig, RunSpec
from betamcmc.sgmcmc.engine.flat import FlatModel, all_finite
from betamcmc.sgmcmc.engine.receivers import Receivers
from betamcmc.sgmcmc.engine.samples import SampleWriter

if TYPE_CHECKING:  # typing only: the protocols import this module
    from betamcmc.sgmcmc.engine.protocols.base import SamplingProtocol
    from betamcmc.sgmcmc.engine.stepsize import Cycle

ABORT_REASONS = {
    wire.ABORT_PEER_LOST: "a collective with a lost peer failed",
    wire.ABORT_SIGTERM: "stopped by SIGTERM",
    wire.ABORT_SIGINT: "stopped by SIGINT",
}
IDLE_CHECK_S = 0.1  # how often a master with no message looks at its workers' liveness
# A worker's last message (an ABORT saying it was stopped by SIGTERM) can still be on its way
# when its process is already gone: it is handled first, and its reason recorded.
EXIT_GRACE_S = 1.0
# ... and when that message is later still (a loaded machine), the exit code says the same: a
# worker's stop handler exits with 128 + the signal, an unhandled signal shows as its negative
EXIT_REASONS = {
    code: reason
    for signum, reason in (
        (signal.SIGTERM, "stopped by SIGTERM"),
        (signal.SIGINT, "stopped by SIGINT"),
    )
    for code in (128 + signum, -signum)
}


class WorkerLost(BetamcmcError):
    """The run cannot go on without the workers it lost."""


@dataclass
class WorkerRecord:
    messages: int = 0
    heartbeats: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0
    replies: int = 0
    steps: int = 0
    grads: int = 0
    comm_s: float = 0.0
    compute_s: float = 0.0
    wait_s: float = 0.0
    collective_bytes: float = 0.0
    last_seen: float = 0.0
    status: str = "running"  # running | done | dead


@dataclass
class Master:
    """The master's state: chain(s), samples file, counters. Protocols update it."""

    cfg: EngineConfig
    workers: int
    dim: int
    writer: SampleWriter
    theta: torch.Tensor  # the master's chain / centre variable
    t0: float = 0.0
    version: int = 0
    chain_steps: float = 0.0  # downpour: steps of the master's chain (scaled steps count less)
    samples: int = 0
    last_sample_step: dict[int, int] = field(default_factory=dict)
    staleness: list[int] = field(default_factory=list)
    records: dict[int, WorkerRecord] = field(default_factory=dict)
    dead: list[dict[str, Any]] = field(default_factory=list)
    stopping: bool = False
    protocol: str = ""  # the run's protocol (on a step budget: whose budget counts)
    busy_s: float = 0.0  # time spent handling messages (not waiting for them)
    # a worker's process exit code, None while it runs (local runs: the process handles)
    exitcode: Callable[[int], int | None] | None = None
    exited: dict[int, float] = field(default_factory=dict)  # worker -> when seen gone
    # progress callback report(samples, of samples, values) after every sample (the stage's bar)
    report: Callable[[int, int, dict[str, float]], None] | None = None
    # one reply buffer per worker: a reply is sent without waiting (isend), so the buffer must
    # stay untouched until that worker has received it
    outboxes: dict[int, wire.Message] = field(init=False)
    sending: dict[int, Any] = field(init=False)
    # each worker's cycle (None unless the step size is cyclical) and step budget (None unless
    # cfg.on_budget; downpour: the master's chain's), derived once from cfg
    cycles: dict[int, Cycle | None] = field(init=False)
    budgets: dict[int, int | None] = field(init=False)

    def __post_init__(self) -> None:
        now = time.monotonic()
        self.records = {w: WorkerRecord(last_seen=now) for w in range(1, self.workers + 1)}
        self.outboxes = {w: wire.Message(self.dim) for w in self.records}
        self.sending = {}
        self.cycles = {
            w: self.cfg.worker_cycle(self.protocol, self.workers, w) for w in self.records
        }
        self.budgets = {w: self._step_budget(w) for w in self.records}

    def _step_budget(self, worker: int) -> int | None:
        if not self.cfg.on_budget:
            return None
        if self.protocol == "downpour":
            return self.cfg.master_budget()
        return self.cfg.chain_budget(self.protocol, self.workers, worker)

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def live(self) -> list[int]:
        return [w for w, r in self.records.items() if r.status == "running"]

    def grads_total(self) -> int:
        return sum(r.grads for r in self.records.values())

    def record_sample(self, chain: int, step: int, theta: torch.Tensor) -> None:
        if not all_finite(theta):
            raise DivergenceError(
                f"chain {chain}: parameters became non-finite by step {step} "
                f"(lower {self.cfg.step_size_key}, now {self.cfg.sampler.step_size:g})"
            )
        self.writer.append(chain, step, self.now(), self.grads_total(), theta.numpy())
        self.samples += 1
        self.last_sample_step[chain] = step
        if self.report is not None:
            values = {"grad_evals": float(self.grads_total()), "live_workers": len(self.live())}
            self.report(self.samples, self.cfg.samples, values)

    def due(self, chain: int, step: int) -> bool:
        """Is a sample of ``chain`` at ``step`` due (past burn-in, ``thinning`` after the last)?"""
        if step < max(self.cfg.burn_in, 1):
            return False
        last = self.last_sample_step.get(chain)
        return last is None or step - last >= self.cfg.thinning

    def in_sampling_stage(self, worker: int, step: int) -> bool:
        """Was worker ``worker``'s last step (it has taken ``step``) in a sampling stage of its
        cycle? Always true unless the step size is cyclical."""
        cycle = self.cycles[worker]
        return cycle is None or step < 1 or cycle.sampling(step - 1)

    def budget_spent(self, worker: int, step: int) -> bool:
        """On a step budget (``EngineConfig.on_budget``): has worker ``worker``'s chain taken it
        (``step`` steps; downpour: the master's chain, ``step`` its chain steps)?"""
        budget = self.budgets[worker]
        return budget is not None and step >= budget

    def reply(
        self, worker: int, kind: int, payload: torch.Tensor | None = None, staleness: int = 0
    ) -> wire.Message:
        """Worker ``worker``'s reply buffer, filled (header slots ``REPLY_*``)."""
        self.settle(worker)
        box = self.outboxes[worker]
        box.write(kind, (self.version, staleness), payload)
        return box

    def settle(self, worker: int) -> None:
        """Wait until the reply in flight to ``worker`` (if any) was received; a failure there
        means the worker is gone."""
        work = self.sending.pop(worker, None)
        if work is None:
            return
        try:
            work.wait()
        except RuntimeError:
            self.mark_dead(worker, "send failed")

    def mark_dead(self, worker: int, reason: str) -> None:
        """Record a lost worker and say so on the console now (not only in run.json)."""
        rec = self.records[worker]
        if rec.status != "running":
            return
        rec.status = "dead"
        at = round(self.now(), 3)
        self.dead.append({"worker": worker, "at_s": at, "reason": reason, "steps": rec.steps})
        left = len(self.live())
        print(
            f"sgmcmc: worker {worker} lost after {at:.1f} s of sampling ({reason}); "
            f"{left} of {self.workers} workers go on, {self.samples} samples so far",
            file=sys.stderr,
            flush=True,
        )

    def unreachable(self, worker: int, error: str) -> None:
        """The receive from ``worker`` failed: its connection is closed. Locally its process
        handle then says why (:meth:`check_liveness`, once the process is gone); under
        ``torchrun`` there is no handle, so it is lost now."""
        if self.exitcode is None:
            self.mark_dead(worker, f"connection lost: {gloo_text(error)}")
        else:
            self.check_liveness()

    def check_liveness(self) -> None:
        """A worker is lost when its process exited (local runs; ``EXIT_GRACE_S`` after the
        master first saw it gone) or nothing, not even a heartbeat, came from it for
        ``worker_timeout`` seconds."""
        now = time.monotonic()
        for w in self.live():
            code = None if self.exitcode is None else self.exitcode(w)
            if code is not None:
                if now - self.exited.setdefault(w, now) >= EXIT_GRACE_S:
                    self.mark_dead(w, EXIT_REASONS.get(code, "process exited"))
            elif now - self.records[w].last_seen > self.cfg.worker_timeout:
                self.mark_dead(w, f"no message or heartbeat for {self.cfg.worker_timeout:g} s")


def gloo_text(error: str) -> str:
    """The first line of a gloo error without its source location (``[.../pair.cc:553] ``)."""
    line = error.splitlines()[0] if error else "no message"
    if line.startswith("[") and "] " in line:
        line = line.split("] ", 1)[1]
    return line[:160]


def master_loop(master: Master, protocol: SamplingProtocol) -> None:
    """Serve whichever worker is ready until the protocol is finished or every worker is lost."""
    receivers = Receivers(master.live(), master.dim)
    try:
        _serve(master, protocol, receivers)
    finally:
        receivers.close()


def _serve(master: Master, protocol: SamplingProtocol, receivers: Receivers) -> None:
    last_check = time.monotonic()
    while master.live():
        got = receivers.next(IDLE_CHECK_S)
        if got is None:  # nothing yet: a worker whose process exited, or silent, is lost now
            master.check_liveness()
            continue
        src, error = got
        if error is not None:
            master.unreachable(src, error)
            continue
        _handle(master, protocol, src, receivers.inboxes[src])
        receivers.again(src)  # its inbox is free again
        now = time.monotonic()
        if now - last_check > 0.25:  # process handles: a few times a second is plenty
            master.check_liveness()
            last_check = now


def _handle(master: Master, protocol: SamplingProtocol, src: int, inbox: wire.Message) -> None:
    handled = time.perf_counter()
    rec = master.records[src]
    rec.last_seen = time.monotonic()
    if rec.status != "running":  # a late heartbeat of a finished or lost worker
        return
    header = inbox.worker_header()
    kind = int(header.kind)
    if kind == wire.HEARTBEAT:
        rec.heartbeats += 1
        return
    rec.messages += 1
    rec.bytes_received += inbox.nbytes
    rec.steps, rec.grads = int(header.step), int(header.grads)
    rec.comm_s, rec.compute_s, rec.wait_s = header.comm_s, header.compute_s, header.wait_s
    rec.collective_bytes = header.collective_bytes
    if kind == wire.ERROR:
        raise DivergenceError(
            f"worker {src} diverged at step {int(header.step)} (loss {header.loss:g}): "
            f"non-finite values; lower {master.cfg.step_size_key} "
            f"(now {master.cfg.sampler.step_size:g})"
        )
    if kind == wire.ABORT:
        master.mark_dead(src, ABORT_REASONS.get(header.abort_reason, "aborted"))
        protocol.on_abort(master, src)
        return
    if kind == wire.DONE:
        rec.status = "done"
        return
    reply = protocol.on_message(master, src, kind, header, inbox.payload)
    if reply is not None:  # sent without waiting: the master goes back to receiving
        try:
            master.sending[src] = dist.isend(reply.tensor, dst=src)
            rec.bytes_sent += reply.nbytes
            rec.replies += 1
        except RuntimeError:
            master.mark_dead(src, "send failed")
    protocol.after_message(master)
    master.busy_s += time.perf_counter() - handled


def run_master(
    spec: RunSpec,
    protocol: SamplingProtocol,
    samples_dir: Path,
    info: dict[str, Any],
    exitcode: Callable[[int], int | None] | None,
    report: Callable[[int, int, dict[str, float]], None] | None = None,
) -> Master:
    """The master's side of a run, inside an initialised process group (rank 0): returns the
    master's final state (see ``result.py``); the samples file is closed on every way out."""
    task = spec.make_task()  # bad task input fails here, before the workers wait on us
    torch.manual_seed(spec.seed)
    flat = FlatModel(task.build_model())
    writer = SampleWriter(
        samples_dir,
        flat.param_layout(),
        {**info, "protocol": spec.protocol, "workers": spec.workers},
    )
    master = Master(
        cfg=spec.config,
        workers=spec.workers,
        dim=flat.dim,
        writer=writer,
        theta=flat.theta.clone(),
        exitcode=exitcode,
        report=report,
        protocol=spec.protocol,
    )
    try:
        try:
            dist.barrier()  # every worker has built its model: sampling starts now
        except RuntimeError as err:
            raise WorkerLost(
                f"the workers did not all start ({str(err).splitlines()[0][:120]}); "
                "see their errors above"
            ) from None
        master.t0 = time.perf_counter()
        for rec in master.records.values():
            rec.last_seen = time.monotonic()
        master_loop(master, protocol)
        for w in list(master.sending):  # the last replies (STOP) reach their workers
            master.settle(w)
    finally:
        writer.close()
    return master
