"""The worker side of a run: a model replica, its sampler, and its line to the master.

A worker (ranks ``1..W``) builds the task and the model (same seed everywhere, so the same
initial parameters), computes minibatch gradients of ``U~(theta) = N x mean NLL + theta /
prior_std^2`` and applies its sampler; *when* it talks to the master is its protocol's business
(``protocols/``).

* **Exchanges without a helper thread** (``overlap: true``): the push goes out with ``isend`` and
  the reply's receive is posted at once with ``irecv``; the sampler keeps stepping and checks
  after each step whether the reply has landed by reading its stamp (``wire.py``: gloo's work
  objects cannot be polled, the received memory can). So no thread wakes up and no GIL changes
  hands per message. With ``overlap: false`` the worker waits for the reply right away.
* **Samples** of ``single``/``sync`` are posted without waiting for the master to take them
  (:meth:`WorkerContext.post`); a gloo send completes only when received.
* **The heartbeat thread** sends a header-only HEARTBEAT whenever the worker has sent nothing for
  ``heartbeat_interval`` seconds (burn-in of ``single``/``sync``, a slow gradient, a straggler),
  so the master can tell a silent healthy worker from a lost one without any timeout on the
  computation. It also ends the process once the master's is gone (by pid and start time, not
  by its parent: a SIGTERM to the whole job ends the fork server while the master goes on).

A non-finite loss is reported to the master as an ERROR message (the master ends the run with a
:class:`~betamcmc.core.errors.DivergenceError`); a failed collective, SIGTERM or SIGINT as an ABORT
with its reason, so the master can say on the console what happened.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from betamcmc.core.errors import DivergenceError
from betamcmc.core.parallel import ProcessId, is_running
from betamcmc.sgmcmc.engine import wire
from betamcmc.sgmcmc.engine.config import RunSpec
from betamcmc.sgmcmc.engine.flat import FlatModel, all_finite, seed_for

if TYPE_CHECKING:  # typing only: the protocols import this module
    from betamcmc.sgmcmc.engine.protocols.base import SamplingProtocol

REPORT_WAIT_S = 1.0  # how long a leaving worker waits for the master to take its last word


def heartbeat_interval(worker_timeout: float) -> float:
    """Heartbeats come every second, more often when the timeout is short (at least 4 per timeout)."""
    return min(1.0, worker_timeout / 4.0)


class WorkerStopped(Exception):
    """SIGTERM or SIGINT reached a worker: it reports an ABORT and leaves quietly."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class WorkerContext:
    """A worker's model, sampler, gradient and its line to the master (counting bytes)."""

    def __init__(self, spec: RunSpec, rank: int, worker_group: Any = None):
        self.spec, self.cfg, self.rank = spec, spec.config, rank
        self.index = rank  # 1..W
        self.workers = spec.workers
        self.device = spec.worker_device(rank)
        self.task = spec.make_task()
        if self.device != "cpu":
            self.task.to(self.device)
        torch.manual_seed(spec.seed)  # same initial parameters in every process
        self.flat = FlatModel(self.task.build_model(), self.device)
        self.batch_gen = torch.Generator().manual_seed(seed_for(spec.seed, 1, rank))
        shared_noise = spec.protocol == "sync"  # replicas must stay identical
        noise_seed = seed_for(spec.seed, 2, 0 if shared_noise else rank)
        self.noise_gen = torch.Generator(device=self.device).manual_seed(noise_seed)
        # the step budget (EngineConfig.on_budget) and, for cyclical steps (stepsize.py), this
        # chain's cycle over it (None otherwise)
        self.budget = self.cfg.chain_budget(spec.protocol, spec.workers, rank)
        self.cycle = self.cfg.worker_cycle(spec.protocol, spec.workers, rank)
        self.sampler = self.cfg.sampler.build(self.noise_gen, self.cycle)
        self.base_step_size = self.sampler.step_size
        self.worker_group = worker_group
        self.prior_precision = 1.0 / self.cfg.prior_std**2
        self.n_train = float(self.task.n_train)
        last = spec.workers >= 2 and rank == spec.workers
        self.delay = self.cfg.straggler_delay if last else 0.0
        self.steps = 0
        self.grads = 0
        self.loss = 0.0
        self.comm_s = 0.0
        self.wait_s = 0.0  # time the sampler waited for an overlapped reply
        self.compute_s = 0.0
        self.collective_bytes = 0.0
        self.version = 0
        self.staleness_mean: float | None = None
        self.step_scale = 1.0  # staleness-aware step size: eta = base step size x step_scale
        self.push_steps = 0  # local steps the next push carries (set by the exchange loop)
        self.out = wire.Message(self.flat.dim)
        self.inbox = wire.Message(self.flat.dim)
        self._send_lock = threading.Lock()
        self._last_sent = time.monotonic()
        self._closing = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._master: ProcessId | None = None  # see start
        self._posted: Any = None  # a message sent without waiting (see post)
        self._pushed: Any = None  # an exchange in flight (see start_exchange)
        self._pulled: Any = None
        self._exchange_started = 0.0
        self.exchanges = 0

    def start(self, master: ProcessId | None = None) -> None:
        """Start the heartbeat thread (once sampling starts; tests drive the sampler without),
        which ends the worker once ``master`` (a local run's master process) is gone."""
        self._master = master
        self._heartbeat = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self._heartbeat.start()

    @property
    def theta(self) -> torch.Tensor:
        return self.flat.theta

    # ------------------------------------------------------------------ sampling
    def gradient(self) -> None:
        """``grad <- grad U~(theta)``: N x minibatch mean NLL + theta / prior_std^2."""
        t0 = time.perf_counter()
        self.flat.grad.zero_()
        nll = self.task.minibatch_nll(self.flat.model, self.batch_gen)
        nll.backward()
        self.loss = nll.item()
        if not math.isfinite(self.loss):
            raise DivergenceError(
                f"worker {self.index}: minibatch loss is {self.loss} at step {self.steps} "
                f"(lower {self.cfg.step_size_key}, now {self.sampler.step_size:g})"
            )
        self.flat.grad.mul_(self.n_train).add_(self.flat.theta, alpha=self.prior_precision)
        if self.delay:
            time.sleep(self.delay)
        self.grads += 1
        self.compute_s += time.perf_counter() - t0

    def update(self) -> None:
        """Apply the sampler to the current gradient."""
        t0 = time.perf_counter()
        self.sampler.step(self.flat.theta, self.flat.grad)
        self.steps += 1
        self.compute_s += time.perf_counter() - t0

    def step(self) -> None:
        """One local sampler step (gradient + update)."""
        self.gradient()
        self.update()

    def sample_due(self) -> bool:
        """Chain steps ``burn_in, burn_in + thinning, ...`` are sampled (first at step >= 1),
        under a cyclical schedule only those whose step was in a sampling stage."""
        first = max(self.cfg.burn_in, 1)
        due = self.steps >= first and (self.steps - first) % self.cfg.thinning == 0
        return due and (self.cycle is None or self.cycle.sampling(self.steps - 1))

    def chain_done(self, taken: int, wanted: int) -> bool:
        """Has this worker's chain done its share: ``wanted`` samples, or on a step budget
        (``EngineConfig.on_budget``) its budget (its samples: the due steps it held)?"""
        return self.steps >= self.budget if self.cfg.on_budget else taken >= wanted

    def all_reduce_gradient(self) -> None:
        """Average the gradient over the workers (``sync``)."""
        t0 = time.perf_counter()
        dist.all_reduce(self.flat.grad, group=self.worker_group)
        self.flat.grad.div_(self.workers)
        w = self.workers
        self.collective_bytes += 2.0 * (w - 1) / w * self.flat.dim * wire.BYTES_PER_FLOAT
        self.comm_s += time.perf_counter() - t0

    def check_finite(self) -> None:
        if not all_finite(self.flat.theta):
            raise DivergenceError(
                f"worker {self.index}: parameters became non-finite at step {self.steps} "
                f"(lower {self.cfg.step_size_key}, now {self.sampler.step_size:g})"
            )

    def to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor if self.device == "cpu" else tensor.to(self.device)

    # ------------------------------------------------------------------ messages
    def _write(self, kind: int, payload: torch.Tensor | None) -> torch.Tensor:
        self._settle()  # the buffer is free only once the master took the last message
        fields = (
            self.steps,
            self.version,
            self.grads,
            self.comm_s,
            self.compute_s,
            self.collective_bytes,
            self.loss,
            self.step_scale,
            self.push_steps,
            self.wait_s,
        )
        return self.out.write(kind, fields, payload)

    def _send(self, message: torch.Tensor) -> None:
        with self._send_lock:
            dist.send(message, dst=0)
            self._last_sent = time.monotonic()

    def send(self, kind: int, payload: torch.Tensor | None = None) -> None:
        """Send and wait until the master has received it (a gloo send completes only then)."""
        t0 = time.perf_counter()
        self._send(self._write(kind, payload))
        self.comm_s += time.perf_counter() - t0

    def post(self, kind: int, payload: torch.Tensor | None = None) -> None:
        """Send without waiting for the master to take it (samples of ``single``/``sync``): the
        sampler goes on; the next message waits for this one first, so order is kept."""
        t0 = time.perf_counter()
        message = self._write(kind, payload)
        with self._send_lock:
            self._posted = dist.isend(message, dst=0)
            self._last_sent = time.monotonic()
        self.comm_s += time.perf_counter() - t0

    def _settle(self) -> None:
        if self._posted is not None:
            posted, self._posted = self._posted, None
            posted.wait()

    def _take_reply(self) -> tuple[int, torch.Tensor]:
        h = self.inbox.header
        kind = int(h[wire.KIND])
        if kind == wire.PARAMS:
            self.version = int(h[wire.REPLY_VERSION])
            self._observe_staleness(float(h[wire.REPLY_STALENESS]))
        return kind, self.inbox.payload

    def _observe_staleness(self, staleness: float) -> None:
        """Running mean (over about the last 10 replies) of the master-measured staleness of
        this worker's pushes."""
        s = self.staleness_mean
        self.staleness_mean = staleness if s is None else 0.9 * s + 0.1 * staleness

    def scale_step_for_staleness(self) -> None:
        """The staleness-aware step size (``EngineConfig.staleness``): ``eta / (1 + s)`` or
        ``eta / (1 + s)^2`` with ``s`` the running mean staleness; the factor goes into every
        push's header so that the master counts the chain steps the push is worth."""
        rule, s = self.cfg.staleness, self.staleness_mean or 0.0
        if rule == "none":
            return
        self.step_scale = 1.0 / (1.0 + s) ** (2 if rule == "inverse_square" else 1)
        self.sampler.step_size = self.base_step_size * self.step_scale

    # -- exchanges: the push and the pull travel while the sampler goes on (overlap), or
    # the worker waits for the reply right away
    def start_exchange(self, kind: int, payload: torch.Tensor) -> None:
        """Send ``payload`` (copied now: the sampler goes on changing theta) and post the receive
        of the master's reply; with ``overlap: false`` wait for it here."""
        message = self._write(kind, payload)
        self._exchange_started = time.perf_counter()
        self.inbox.expect()
        with self._send_lock:
            self._pushed = dist.isend(message, dst=0)
            self._last_sent = time.monotonic()
        self._pulled = dist.irecv(self.inbox.tensor, src=0)
        if not self.cfg.overlap:
            self._complete_exchange()

    def exchange_done(self) -> bool:
        """Has the reply arrived? (one float read: see ``wire.Message.arrived``)"""
        return self._pulled is None or self.inbox.arrived()

    def finish_exchange(self) -> tuple[int, torch.Tensor]:
        """The reply to :meth:`start_exchange` (waits for it): ``(kind, payload view)``."""
        if self._pulled is not None:
            t0 = time.perf_counter()
            self._complete_exchange()
            self.wait_s += time.perf_counter() - t0
        return self._take_reply()

    def _complete_exchange(self) -> None:
        assert self._pushed is not None and self._pulled is not None
        self._pulled.wait()  # the reply came, so the master had taken the push: both complete
        self._pushed.wait()
        self._pushed = self._pulled = None
        self.exchanges += 1
        self.comm_s += time.perf_counter() - self._exchange_started

    # ------------------------------------------------------------------ heartbeats
    def _beat(self) -> None:
        interval = heartbeat_interval(self.cfg.worker_timeout)
        beat = wire.Message(self.flat.dim)
        while not self._closing.wait(interval / 2):
            if self._master is not None and not is_running(*self._master):
                _leave("the master process is gone")
            if time.monotonic() - self._last_sent < interval:
                continue
            beat.write(wire.HEARTBEAT, (self.steps, self.version, self.grads))
            try:
                self._send(beat.tensor)
            except Exception:  # noqa: BLE001 - the master is gone (or we are closing)
                if not self._closing.is_set():
                    _leave("lost the connection to the master")
                return

    def close(self) -> None:
        """Stop the helper threads (before the last message, so no heartbeat follows it)."""
        self._closing.set()
        # a heartbeat in flight completes first; a stop signal can interrupt the thread's start,
        # and joining a thread whose start did not complete raises
        if self._heartbeat is not None and self._heartbeat.is_alive():
            self._heartbeat.join(timeout=REPORT_WAIT_S)


def _leave(why: str) -> None:
    """End a worker whose master is gone (from a helper thread: no cleanup is possible)."""
    print(f"sgmcmc worker: {why}; exiting", file=sys.stderr, flush=True)
    os._exit(1)


def run_worker(
    spec: RunSpec,
    rank: int,
    worker_group: Any,
    protocol: SamplingProtocol,
    master: ProcessId | None = None,
) -> None:
    """Build this worker and run ``protocol.worker`` until the master says stop; report a
    divergence, a lost peer or a stop signal to the master before leaving. ``master``: the
    master's process on this machine (see :meth:`WorkerContext.start`), None under torchrun."""
    signal.signal(signal.SIGTERM, _on_stop_signal)
    signal.signal(signal.SIGINT, _on_stop_signal)
    ctx: WorkerContext | None = None
    try:
        try:
            ctx = WorkerContext(spec, rank, worker_group)
            dist.barrier()  # every process has built its model: sampling starts now
            ctx.start(master)
            protocol.worker(ctx)
            ctx.close()
        except DivergenceError as err:
            _report(ctx, wire.ERROR, float("nan"))
            raise SystemExit(f"error: {err}") from None
        except RuntimeError as err:  # a peer is gone (the master stopped, the sync all-reduce)
            _report(ctx, wire.ABORT, wire.ABORT_PEER_LOST)
            raise SystemExit(f"worker {rank}: {str(err).splitlines()[0][:200]}") from None
    except WorkerStopped as stop:  # also while reporting one of the above: the signal wins
        reason = wire.ABORT_SIGTERM if stop.signum == signal.SIGTERM else wire.ABORT_SIGINT
        _report(ctx, wire.ABORT, reason)
        raise SystemExit(128 + stop.signum) from None
    finally:  # done: being terminated now is the normal way out
        _quiet_signals()


def _on_stop_signal(signum: int, frame: Any) -> None:
    _quiet_signals()  # a second signal (the master terminating us) ends us without a word
    raise WorkerStopped(signum)


def _quiet_signals() -> None:
    """From now on SIGTERM ends this worker at once and SIGINT is ignored, without a word.

    Python handlers, not SIG_DFL / SIG_IGN: a signal that arrived while ``_on_stop_signal`` was
    still installed is only flagged, and Python runs the handler installed when it gets to the flag;
    finding SIG_DFL there raises ``OSError: Signal 15 ignored due to race condition`` in the
    middle of the report (seen when SIGINT reaches the whole job and the master's SIGTERM
    follows at once)."""
    signal.signal(signal.SIGTERM, _exit_now)
    signal.signal(signal.SIGINT, _ignore)


def _exit_now(signum: int, frame: Any) -> None:
    os._exit(128 + signum)


def _ignore(signum: int, frame: Any) -> None:
    return None


def _report(ctx: WorkerContext | None, kind: int, loss_slot: float) -> None:
    """Tell the master why this worker leaves, if it is still listening: a gloo send completes
    only when the master receives it, so wait a moment at most (the master may be gone or be
    terminating this worker). ``loss_slot``: NaN for an ERROR, the reason (``wire.ABORT_*``,
    read back as ``WorkerHeader.abort_reason``) for an ABORT."""
    if ctx is None:
        return
    ctx.close()
    ctx.loss = loss_slot

    def send() -> None:
        try:
            ctx.send(kind)
        except Exception:  # noqa: BLE001 - the master may be gone already
            pass

    courier = threading.Thread(target=send, daemon=True)
    courier.start()
    courier.join(timeout=REPORT_WAIT_S)
