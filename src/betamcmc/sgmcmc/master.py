"""The master side of a run (rank 0): the chain(s) samples are taken from, and fault recovery.

The master receives from whichever worker is ready (a receive from any source, no lock-step),
hands the message to the protocol (``protocols/``), replies, and streams thinned samples to disk
(``samples.py``). Between messages it does as little as possible: a header read, the protocol's
few vector operations, at most one sample record.

**Liveness** comes from the workers' heartbeats and, locally, from their process handles, never
from a timeout on the computation: every worker sends something at least every second (its
heartbeat thread covers burn-in, slow gradients and stragglers), so

* a worker silent for ``worker_timeout`` seconds, or whose process exited, is lost: the master
  says so on stderr at once, records it, and goes on with the others (``sync`` cannot: an
  all-reduce needs everyone, its protocol ends the run);
* locally the master also looks at the process handles while no message comes (every
  ``IDLE_CHECK_S``): gloo never fails a receive from any source when a peer dies, and a timed-out
  one cannot be retried, so a master blocked in it would learn that its last running workers
  died only after ``worker_timeout``. The blocking receive therefore runs on a helper thread
  (:class:`ReceiveThread`) and the master waits for its answer with a short timeout; under
  ``torchrun`` (no handles) the master waits in the receive itself. A process seen gone counts
  as lost ``EXIT_GRACE_S`` later, so that what it sent last (an ABORT naming the signal that
  stopped it) is handled first;
* a receive that fails because a worker died mid-message is retried (gloo keeps serving the other
  workers); the death shows in the liveness check;
* a receive that times out (every worker silent for ``worker_timeout``) ends the loop: all are
  lost, and gloo must not be asked again (a timed-out receive-from-any leaves a buffer behind
  that would swallow the next message).
"""

from __future__ import annotations

import datetime
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from betamcmc.errors import BetamcmcError, DivergenceError
from betamcmc.sgmcmc import wire
from betamcmc.sgmcmc.config import EngineConfig, RunSpec
from betamcmc.sgmcmc.flat import FlatModel, all_finite
from betamcmc.sgmcmc.samples import SampleWriter

ABORT_REASONS = {
    wire.ABORT_PEER_LOST: "a collective with a lost peer failed",
    wire.ABORT_SIGTERM: "stopped by SIGTERM",
    wire.ABORT_SIGINT: "stopped by SIGINT",
}
FAILED_RECEIVES = 50  # consecutive failed receives that no lost worker explains: give up
IDLE_CHECK_S = 0.1  # local runs: how often a master with no message looks at the process handles
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

    def __post_init__(self) -> None:
        now = time.monotonic()
        self.records = {w: WorkerRecord(last_seen=now) for w in range(1, self.workers + 1)}
        self.outboxes = {w: wire.Message(self.dim) for w in self.records}
        self.sending = {}

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


def _receive_once(inbox: wire.Message, timeout: float) -> int | str:
    """Receive one message from any worker into ``inbox``: its sender, or gloo's error as text.

    Only the text: the exception's traceback would keep the failed receive's buffer alive, and
    gloo hands the next message to a receive from any source still registered (nobody reads it:
    a worker's ABORT, then its heartbeats, vanished that way until it counted as silent).
    """
    try:
        work = dist.irecv(inbox.tensor, src=None)
        work.wait(timeout=datetime.timedelta(seconds=timeout))
        return int(work._source_rank())
    except RuntimeError as err:
        return str(err)


class ReceiveThread:
    """Local runs: the blocking receive from any worker, on a helper thread, so that the master
    can look at its workers' process handles while it waits (see the module docstring).

    One receive is posted at a time and only when the master asks for the next message; a
    receive the master stopped waiting for (its last workers are gone) stays posted until it
    times out, and the thread then ends (:meth:`close`).
    """

    def __init__(self, inbox: wire.Message, timeout: float) -> None:
        self._inbox, self._timeout = inbox, timeout
        self._asks: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._answers: queue.SimpleQueue[int | str] = queue.SimpleQueue()
        self._posted = False
        threading.Thread(target=self._serve, name="sgmcmc-receive", daemon=True).start()

    def _serve(self) -> None:
        while self._asks.get():
            self._answers.put(_receive_once(self._inbox, self._timeout))

    def next(self, wait_s: float) -> int | str | None:
        """The sender of the next message (or the receive's error); None when nothing came
        within ``wait_s`` (the receive stays posted: ask again)."""
        if not self._posted:
            self._asks.put(True)
            self._posted = True
        try:
            answer = self._answers.get(timeout=wait_s)
        except queue.Empty:
            return None
        self._posted = False
        return answer

    def close(self) -> None:
        self._asks.put(False)


def receive(master: Master, inbox: wire.Message, thread: ReceiveThread | None) -> int | None:
    """Receive the next message from any worker into ``inbox``; its sender, or None when no
    live worker is left: their processes exited (``thread``: local runs), or every one stayed
    silent for ``worker_timeout`` (all of them are then marked lost)."""
    failures = 0
    while master.live():
        if thread is None:
            got = _receive_once(inbox, master.cfg.worker_timeout)
        else:
            got = thread.next(IDLE_CHECK_S)
            if got is None:  # nothing yet: a worker whose process exited is lost now
                master.check_liveness()
                continue
        if isinstance(got, int):
            return got
        text = got
        if "Timed out" in text:
            for w in master.live():
                master.mark_dead(w, f"silent for {master.cfg.worker_timeout:g} s")
            return None
        # A worker killed mid-message fails this receive before its process is reaped: the
        # liveness check sees the death within a moment; gloo keeps serving the others.
        failures += 1
        if failures > FAILED_RECEIVES:
            raise WorkerLost(
                f"receiving from the workers keeps failing ({text.splitlines()[0][:120]})"
            ) from None
        time.sleep(0.05)
        master.check_liveness()
    return None


def master_loop(master: Master, protocol: Any) -> None:
    """Serve whichever worker is ready until the protocol is finished or every worker is lost."""
    inbox = wire.Message(master.dim)
    thread = None if master.exitcode is None else ReceiveThread(inbox, master.cfg.worker_timeout)
    try:
        _serve(master, protocol, inbox, thread)
    finally:
        if thread is not None:
            thread.close()


def _serve(
    master: Master, protocol: Any, inbox: wire.Message, thread: ReceiveThread | None
) -> None:
    last_check = time.monotonic()
    while master.live():
        src = receive(master, inbox, thread)
        if src is None:
            break
        handled = time.perf_counter()
        rec = master.records[src]
        rec.last_seen = now = time.monotonic()
        if now - last_check > 0.25:  # process handles: a few times a second is plenty
            master.check_liveness()
            last_check = now
        if rec.status != "running":  # a late heartbeat of a finished or lost worker
            continue
        h = inbox.fields()
        kind = int(h[wire.KIND])
        if kind == wire.HEARTBEAT:
            rec.heartbeats += 1
            continue
        rec.messages += 1
        rec.bytes_received += inbox.nbytes
        rec.steps, rec.grads = int(h[wire.STEP]), int(h[wire.GRADS])
        rec.comm_s, rec.compute_s, rec.wait_s = h[wire.COMM_S], h[wire.COMPUTE_S], h[wire.WAIT_S]
        rec.collective_bytes = h[wire.COLLECTIVE_BYTES]
        if kind == wire.ERROR:
            raise DivergenceError(
                f"worker {src} diverged at step {int(h[wire.STEP])} (loss {h[wire.LOSS]:g}): "
                f"non-finite values; lower {master.cfg.step_size_key} "
                f"(now {master.cfg.sampler.step_size:g})"
            )
        if kind == wire.ABORT:
            master.mark_dead(src, ABORT_REASONS.get(h[wire.LOSS], "aborted"))
            protocol.on_abort(master, src)
            continue
        if kind == wire.DONE:
            rec.status = "done"
            continue
        reply = protocol.on_message(master, src, kind, h, inbox.payload)
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
    protocol: Any,
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
        spec.config,
        spec.workers,
        flat.dim,
        writer,
        flat.theta.clone(),
        exitcode=exitcode,
        report=report,
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
