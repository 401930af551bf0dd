"""Master-worker SG-MCMC over ``torch.distributed`` point-to-point messages.

Processes. Rank 0 is the **master**: it holds the chain(s) samples are taken from, receives from
whichever worker is ready (``dist.recv(buf, src=None)``, no lock-step), replies, and streams thinned
samples to disk (``samples.py``). Ranks ``1..W`` are **workers**: each owns a model replica and a
sampler and computes stochastic gradients. What they exchange and when is the **protocol**
(``protocols/``: ``single``, ``sync``, ``downpour``, ``elastic``).

Launch. Locally :func:`run_local` (used by ``stages/sgmcmc.py``) spawns the W workers with
``torch.multiprocessing`` (a file store in a private temp dir, gloo bound to loopback) and runs
the master in the calling process. Across machines the same stage runs under ``torchrun``; rank 0
becomes the master and W = world size - 1, e.g. on two machines with 2 + 2 processes::

    torchrun --nnodes 2 --nproc-per-node 2 --node-rank {0|1} \
        --rdzv-backend c10d --rdzv-endpoint HOST0:29500 \
        stages/sgmcmc.py downpour 3

Backends. gloo on CPU. On CUDA the model, gradients and sampler run on the GPU and ``sync``
all-reduces gradients with nccl, but master messages stay on gloo (CPU staging): nccl has no
receive-from-any-source, which the master needs.

Messages. Every message is one float32 tensor ``[8-float header | D parameters]`` (D = number of
model parameters). Header from a worker: ``kind, chain step, master version it last pulled,
gradients so far, comm seconds, compute seconds, collective bytes, last minibatch loss``; from the
master: ``kind, master version``. Bytes and messages are counted on both sides.

Task API (pluggable; issue 7 builds its RL agent on it). A task (``tasks.Task``) provides
``build_model() -> nn.Module``, ``minibatch_nll(model, generator) -> Tensor`` (mean negative
log-likelihood of a minibatch; the engine scales it by ``n_train``, adds the N(0, prior_std^2)
prior and runs the sampler on the flat parameter vector), ``test_log_probs(model)`` and
``test_targets`` (evaluation on the master, ``evaluate.py``), and ``n_train``. Pass a task object
(or a factory) to :func:`run_local` to sample something else; temperature 0 turns the samplers
into SGD / SGD with momentum, i.e. a distributed optimiser.

Faults. The master notices a dead worker (its process gone, or ``worker_timeout`` seconds without a
message, or a failed send), records it in the result and goes on with the others; only ``sync``
cannot (an all-reduce needs every worker) and stops with a clear error. A worker's non-finite loss
or parameters reach the master as an ERROR message and end the run with :class:`DivergenceError`.
A SIGTERM to the master ends the run with every collected sample readable in the samples file.
"""

from __future__ import annotations

import datetime
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from betamcmc.errors import BetamcmcError, DivergenceError
from betamcmc.sgmcmc.params import SgmcmcParams
from betamcmc.sgmcmc.samples import SampleWriter
from betamcmc.sgmcmc.sghmc import SGHMC
from betamcmc.sgmcmc.sgld import SGLD
from betamcmc.sgmcmc.tasks import Task, build_task

HEADER = 8
# message kinds: worker -> master
SAMPLE, DONE, PUSH, EXCHANGE, ERROR, ABORT = 1, 2, 3, 4, 5, 6
# master -> worker
PARAMS, STOP = 10, 11
BYTES_PER_FLOAT = 4


class WorkerLost(BetamcmcError):
    """The run cannot go on without the workers it lost."""


# --------------------------------------------------------------------------- flat parameters
class FlatModel:
    """A model whose parameters and gradients are views into two flat tensors.

    The samplers and the messages then work on one vector (one kernel per update, one message per
    exchange) while the model's forward/backward are untouched: ``backward`` accumulates into the
    ``.grad`` views, i.e. into ``grad``.
    """

    def __init__(self, model: nn.Module, device: str = "cpu"):
        self.model = model.to(device)
        params = list(self.model.parameters())
        self.names = [name for name, _ in self.model.named_parameters()]
        self.shapes = [list(p.shape) for p in params]
        self.dim = sum(p.numel() for p in params)
        self.theta = torch.empty(self.dim, device=device)
        self.grad = torch.zeros(self.dim, device=device)
        offset = 0
        for p in params:
            n = p.numel()
            self.theta[offset : offset + n].copy_(p.detach().reshape(-1))
            p.data = self.theta[offset : offset + n].view_as(p)
            p.grad = self.grad[offset : offset + n].view_as(p)
            offset += n

    def param_layout(self) -> list[tuple[str, list[int]]]:
        return list(zip(self.names, self.shapes, strict=True))

    def load(self, flat: torch.Tensor) -> None:
        self.theta.copy_(flat)


def build_sampler(
    cfg: SgmcmcParams,
    generator: torch.Generator,
    temperature: float | None = None,
    step_size: float | None = None,
) -> SGLD | SGHMC:
    s = cfg.sampler
    temp = s.temperature if temperature is None else temperature
    eta = s.step_size if step_size is None else step_size
    if s.kind == "sgld":
        return SGLD(eta, temp, s.decay, s.decay_steps, generator)
    return SGHMC(eta, s.friction, temp, s.decay, s.decay_steps, generator)


def seed_for(seed: int, purpose: int, index: int) -> int:
    """Independent-looking generator seeds per (purpose, worker) from the run seed."""
    return (seed * 1_000_003 + purpose * 10_007 + index * 101) % (2**63 - 1)


# --------------------------------------------------------------------------- run description
@dataclass
class RunSpec:
    """Everything a worker process needs (picklable)."""

    cfg: SgmcmcParams
    protocol: str
    workers: int
    seed: int
    device: str = "cpu"
    temperature: float | None = None  # override (SGD baseline: 0)
    step_size: float | None = None
    task_factory: Callable[[], Task] | None = None

    def make_task(self) -> Task:
        if self.task_factory is not None:
            return self.task_factory()
        return build_task(self.cfg.task, self.cfg.batch_size)


# --------------------------------------------------------------------------- worker side
class WorkerContext:
    """A worker's model, sampler, gradient and its line to the master (counting bytes)."""

    def __init__(self, spec: RunSpec, rank: int, worker_group: Any = None):
        self.spec, self.cfg, self.rank = spec, spec.cfg, rank
        self.index = rank  # 1..W
        self.workers = spec.workers
        self.task = spec.make_task()
        self.device = spec.device
        if self.device != "cpu":
            self.task.to(self.device)
        torch.manual_seed(spec.seed)  # same initial parameters in every process
        self.flat = FlatModel(self.task.build_model(), self.device)
        self.batch_gen = torch.Generator().manual_seed(seed_for(spec.seed, 1, rank))
        shared_noise = spec.protocol == "sync"  # replicas must stay identical
        noise_seed = seed_for(spec.seed, 2, 0 if shared_noise else rank)
        self.noise_gen = torch.Generator(device=self.device).manual_seed(noise_seed)
        self.sampler = build_sampler(self.cfg, self.noise_gen, spec.temperature, spec.step_size)
        self.worker_group = worker_group
        self.prior_precision = 1.0 / self.cfg.prior_std**2
        self.n_train = float(self.task.n_train)
        self.delay = (
            self.cfg.straggler_delay if (spec.workers >= 2 and rank == spec.workers) else 0.0
        )
        self.steps = 0
        self.grads = 0
        self.loss = 0.0
        self.comm_s = 0.0
        self.wait_s = 0.0  # time the sampler waited for an overlapped reply
        self.compute_s = 0.0
        self.collective_bytes = 0.0
        self.version = 0
        self.parent = os.getppid()
        self.out = torch.empty(HEADER + self.flat.dim)
        self.inbuf = torch.empty(HEADER + self.flat.dim)

    @property
    def theta(self) -> torch.Tensor:
        return self.flat.theta

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
                f"(step_size {self.sampler.step_size:g} too large? lower sgmcmc.sampler.step_size)"
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

    def sample_due(self, n_taken: int) -> bool:
        """Chain steps ``burn_in, burn_in + thinning, ...`` are sampled (first at step >= 1)."""
        first = max(self.cfg.burn_in, 1)
        return self.steps >= first and (self.steps - first) % self.cfg.thinning == 0

    def all_reduce_gradient(self) -> None:
        """Average the gradient over the workers (``sync``)."""
        t0 = time.perf_counter()
        dist.all_reduce(self.flat.grad, group=self.worker_group)
        self.flat.grad.div_(self.workers)
        w = self.workers
        self.collective_bytes += 2.0 * (w - 1) / w * self.flat.dim * BYTES_PER_FLOAT
        self.comm_s += time.perf_counter() - t0

    def check_finite(self) -> None:
        if not bool(torch.isfinite(self.flat.theta).all()):
            raise DivergenceError(
                f"worker {self.index}: parameters became non-finite at step {self.steps} "
                f"(lower sgmcmc.sampler.step_size, now {self.sampler.step_size:g})"
            )

    def send(self, kind: int, payload: torch.Tensor | None = None) -> None:
        if os.getppid() != self.parent and "TORCHELASTIC_RUN_ID" not in os.environ:
            raise SystemExit(1)  # the master that spawned us is gone
        t0 = time.perf_counter()
        h = self.out[:HEADER]
        h[0], h[1], h[2], h[3] = kind, self.steps, self.version, self.grads
        h[4], h[5], h[6], h[7] = self.comm_s, self.compute_s, self.collective_bytes, self.loss
        if payload is not None:
            self.out[HEADER:].copy_(payload)
        dist.send(self.out, dst=0)
        self.comm_s += time.perf_counter() - t0

    def recv(self) -> tuple[int, int, torch.Tensor]:
        """Wait for the master's reply: ``(kind, master version, payload view)``."""
        t0 = time.perf_counter()
        dist.recv(self.inbuf, src=0)
        self.comm_s += time.perf_counter() - t0
        return int(self.inbuf[0]), int(self.inbuf[1]), self.inbuf[HEADER:]

    # -- overlapped exchange: a helper thread sends and waits for the reply (gloo's irecv cannot
    # be polled: its work only completes inside wait()), while the main thread keeps sampling.
    def start_exchange(self, kind: int, payload: torch.Tensor) -> None:
        """Send ``payload`` and wait for the master's reply in a helper thread."""
        import threading

        h = self.out[:HEADER]
        h[0], h[1], h[2], h[3] = kind, self.steps, self.version, self.grads
        h[4], h[5], h[6], h[7] = self.comm_s, self.compute_s, self.collective_bytes, self.loss
        self.out[HEADER:].copy_(payload)  # copied now: the main thread goes on changing theta
        self._exchange_error: BaseException | None = None

        def run() -> None:
            try:
                t0 = time.perf_counter()
                dist.send(self.out, dst=0)
                dist.recv(self.inbuf, src=0)
                self.comm_s += time.perf_counter() - t0
            except BaseException as err:  # noqa: BLE001 - re-raised in finish_exchange
                self._exchange_error = err

        if os.getppid() != self.parent and "TORCHELASTIC_RUN_ID" not in os.environ:
            raise SystemExit(1)
        self._exchange = threading.Thread(target=run, daemon=True)
        self._exchange.start()

    def exchange_done(self) -> bool:
        return not self._exchange.is_alive()

    def finish_exchange(self) -> tuple[int, int, torch.Tensor]:
        """Wait for the reply started by :meth:`start_exchange`: ``(kind, version, payload)``."""
        t0 = time.perf_counter()
        self._exchange.join()
        self.wait_s += time.perf_counter() - t0
        if self._exchange_error is not None:
            raise self._exchange_error
        return int(self.inbuf[0]), int(self.inbuf[1]), self.inbuf[HEADER:]

    def to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor if self.device == "cpu" else tensor.to(self.device)


# --------------------------------------------------------------------------- master side
@dataclass
class WorkerRecord:
    messages: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0
    replies: int = 0
    steps: int = 0
    grads: int = 0
    comm_s: float = 0.0
    compute_s: float = 0.0
    collective_bytes: float = 0.0
    last_seen: float = 0.0
    status: str = "running"  # running | done | dead


@dataclass
class Master:
    """The master's state: chain(s), samples file, counters. Protocols update it."""

    cfg: SgmcmcParams
    workers: int
    dim: int
    writer: SampleWriter
    theta: torch.Tensor  # the master's chain / centre variable
    t0: float = 0.0
    version: int = 0
    chain_steps: int = 0
    samples: int = 0
    last_sample_step: dict[int, int] = field(default_factory=dict)
    staleness: list[int] = field(default_factory=list)
    records: dict[int, WorkerRecord] = field(default_factory=dict)
    dead: list[dict[str, Any]] = field(default_factory=list)
    stopping: bool = False
    out: torch.Tensor | None = None
    alive: Callable[[int], bool] | None = None
    exchanges: bool = False  # workers talk every tau steps (downpour, elastic)

    def __post_init__(self) -> None:
        self.records = {
            w: WorkerRecord(last_seen=time.perf_counter()) for w in range(1, self.workers + 1)
        }
        self.out = torch.empty(HEADER + self.dim)

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def live(self) -> list[int]:
        return [w for w, r in self.records.items() if r.status == "running"]

    def grads_total(self) -> int:
        return sum(r.grads for r in self.records.values())

    def record_sample(self, chain: int, step: int, theta: torch.Tensor) -> None:
        if not bool(torch.isfinite(theta).all()):
            raise DivergenceError(
                f"chain {chain}: parameters became non-finite by step {step} "
                f"(lower sgmcmc.sampler.step_size, now {self.cfg.sampler.step_size:g})"
            )
        self.writer.append(chain, step, self.now(), self.grads_total(), theta.numpy())
        self.samples += 1
        self.last_sample_step[chain] = step

    def due(self, chain: int, step: int) -> bool:
        """Is a sample of ``chain`` at ``step`` due (past burn-in, ``thinning`` after the last)?"""
        if step < max(self.cfg.burn_in, 1):
            return False
        last = self.last_sample_step.get(chain)
        return last is None or step - last >= self.cfg.thinning

    def reply(self, kind: int, payload: torch.Tensor | None = None) -> torch.Tensor:
        assert self.out is not None
        self.out[:HEADER].zero_()
        self.out[0], self.out[1] = kind, self.version
        if payload is not None:
            self.out[HEADER:].copy_(payload)
        return self.out

    def mark_dead(self, worker: int, reason: str) -> None:
        rec = self.records[worker]
        if rec.status != "running":
            return
        rec.status = "dead"
        self.dead.append(
            {"worker": worker, "at_s": round(self.now(), 3), "reason": reason, "steps": rec.steps}
        )

    def check_liveness(self) -> None:
        """Local runs ask the process handles; under torchrun (no handles) a worker of a protocol
        that talks every tau steps counts as dead after ``worker_timeout`` seconds of silence
        (``single``/``sync`` workers are silent by design during burn-in: there a lost peer shows up
        as a failed collective or send instead)."""
        now = time.perf_counter()
        for w in self.live():
            rec = self.records[w]
            if self.alive is not None:
                if not self.alive(w):
                    self.mark_dead(w, "process exited")
            elif self.exchanges and now - rec.last_seen > self.cfg.worker_timeout:
                self.mark_dead(w, f"silent for more than {self.cfg.worker_timeout:g} s")


# --------------------------------------------------------------------------- the loops
def _protocol(name: str) -> Any:
    from betamcmc.sgmcmc import protocols

    return protocols.get(name)


def master_loop(master: Master, protocol: Any) -> None:
    """Serve whichever worker is ready until the protocol is finished."""
    inbuf = torch.empty(HEADER + master.dim)
    message_bytes = inbuf.numel() * BYTES_PER_FLOAT
    while master.live():
        try:
            src = dist.recv(inbuf, src=None)
        except RuntimeError as err:
            # A worker killed mid-message fails this receive before its process is reaped: give
            # the liveness check a few seconds to see the death, then go on with the rest.
            # Only a failure that no newly dead worker explains ends the run.
            before = len(master.dead)
            deadline = time.perf_counter() + 5.0
            while True:
                master.check_liveness()
                if len(master.dead) > before or time.perf_counter() > deadline:
                    break
                time.sleep(0.05)
            if not master.live():
                break
            if len(master.dead) > before:
                continue
            raise WorkerLost(
                f"no message from any worker ({str(err).splitlines()[0][:120]})"
            ) from None
        rec = master.records[src]
        rec.messages += 1
        rec.bytes_received += message_bytes
        rec.last_seen = time.perf_counter()
        h = inbuf[:HEADER].tolist()
        kind = int(h[0])
        rec.steps, rec.grads = int(h[1]), int(h[3])
        rec.comm_s, rec.compute_s, rec.collective_bytes = h[4], h[5], h[6]
        if kind == ERROR:
            raise DivergenceError(
                f"worker {src} diverged at step {int(h[1])} (loss {h[7]:g}): non-finite values; "
                f"lower sgmcmc.sampler.step_size (now {master.cfg.sampler.step_size:g})"
            )
        if kind == ABORT:
            master.mark_dead(src, "aborted")
            protocol.on_abort(master, src)
            continue
        if kind == DONE:
            rec.status = "done"
            continue
        reply = protocol.on_message(master, src, kind, h, inbuf[HEADER:])
        if reply is not None:
            try:
                dist.send(reply, dst=src)
                rec.bytes_sent += message_bytes
                rec.replies += 1
            except RuntimeError:
                master.mark_dead(src, "send failed")
        master.check_liveness()
        protocol.after_message(master)


def worker_loop(spec: RunSpec, rank: int, worker_group: Any) -> None:
    ctx = WorkerContext(spec, rank, worker_group)
    protocol = _protocol(spec.protocol)
    try:
        protocol.worker(ctx)
    except DivergenceError as err:
        try:
            ctx.loss = float("nan")
            ctx.send(ERROR)
        except Exception:  # noqa: BLE001 - the master may be gone already
            pass
        raise SystemExit(f"error: {err}") from None
    except RuntimeError as err:  # a peer is gone (e.g. sync all-reduce); tell the master if we can
        try:
            ctx.send(ABORT)
        except Exception:  # noqa: BLE001
            pass
        raise SystemExit(f"worker {rank}: {str(err).splitlines()[0][:200]}") from None


def _init(rank: int, world: int, init_method: str, timeout: float, loopback: bool) -> Any:
    if loopback:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group(
        "gloo",
        init_method=init_method,
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=timeout),
    )


def _worker_group(spec: RunSpec, world: int) -> Any:
    """Every rank must take part in creating the workers' group (``sync`` all-reduce)."""
    if spec.protocol != "sync":
        return None
    backend = "nccl" if spec.device.startswith("cuda") else "gloo"
    return dist.new_group(ranks=list(range(1, world)), backend=backend)


def _worker_entry(rank: int, world: int, init_method: str, spec: RunSpec) -> None:
    torch.set_num_threads(spec.cfg.threads)
    _init(rank, world, init_method, spec.cfg.worker_timeout, loopback=True)
    group = _worker_group(spec, world)
    dist.barrier()
    try:
        worker_loop(spec, rank, group)
    finally:
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001
            pass


@dataclass
class RunResult:
    protocol: str
    workers: int
    samples: int
    wall_s: float
    setup_s: float
    dim: int
    messages: int
    bytes_total: float
    bytes_to_master: int
    bytes_from_master: int
    bytes_collective: float
    grad_evals: int
    staleness_mean: float | None
    staleness_max: int | None
    dead: list[dict[str, Any]]
    per_worker: dict[str, dict[str, Any]]
    # The master's parameters when the run ended (downpour: its chain; elastic: the centre
    # variable; single/sync: the initial parameters, which the master never moves). Not part of
    # ``as_dict`` (a tensor, not a metric); the RL stage evaluates it as the final policy.
    final_theta: torch.Tensor | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "final_theta"}


def _result(master: Master, protocol: str, wall_s: float, setup_s: float) -> RunResult:
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
            "compute_s": round(r.compute_s, 4),
            "comm_s": round(r.comm_s, 4),
            "steps_per_s": round(r.steps / r.compute_s, 2) if r.compute_s > 0 else None,
        }
        for w, r in recs.items()
    }
    return RunResult(
        protocol=protocol,
        workers=master.workers,
        samples=master.samples,
        wall_s=round(wall_s, 4),
        setup_s=round(setup_s, 4),
        dim=master.dim,
        messages=int(messages),
        bytes_total=float(to_master + from_master + collective),
        bytes_to_master=int(to_master),
        bytes_from_master=int(from_master),
        bytes_collective=collective,
        grad_evals=master.grads_total(),
        staleness_mean=float(np.mean(st)) if st else None,
        staleness_max=int(max(st)) if st else None,
        dead=master.dead,
        per_worker=per_worker,
        final_theta=master.theta.detach().cpu().clone(),
    )


def run_master(
    spec: RunSpec,
    samples_dir: Path,
    info: dict[str, Any],
    alive: Callable[[int], bool] | None,
    setup_started: float,
) -> RunResult:
    """The master's side of a run, inside an initialised process group (rank 0)."""
    world = spec.workers + 1
    task = spec.make_task()  # while the workers start up
    torch.manual_seed(spec.seed)
    flat = FlatModel(task.build_model())
    _worker_group(spec, world)
    dist.barrier()
    setup_s = time.perf_counter() - setup_started
    writer = SampleWriter(
        samples_dir,
        flat.param_layout(),
        {**info, "protocol": spec.protocol, "workers": spec.workers},
    )
    master = Master(
        spec.cfg,
        spec.workers,
        flat.dim,
        writer,
        flat.theta.clone(),
        alive=alive,
        exchanges=spec.protocol in ("downpour", "elastic"),
    )
    master.t0 = time.perf_counter()
    protocol = _protocol(spec.protocol)
    try:
        master_loop(master, protocol)
    finally:
        writer.close()
    wall = master.now()
    if master.samples == 0:
        raise WorkerLost("the run ended without a single sample (all workers lost?)")
    return _result(master, spec.protocol, wall, setup_s)


def run_local(
    spec: RunSpec,
    samples_dir: str | os.PathLike[str],
    info: dict[str, Any] | None = None,
    on_spawn: Callable[[list[Any]], None] | None = None,
) -> RunResult:
    """Spawn ``spec.workers`` worker processes on this machine, run the master here, clean up.

    Workers are always terminated (and joined) on the way out, also on errors and SIGTERM.
    """
    import torch.multiprocessing as mp

    world = spec.workers + 1
    setup_started = time.perf_counter()
    store_dir = tempfile.mkdtemp(prefix="sgmcmc-store-")
    init_method = f"file://{store_dir}/store"
    # forkserver: one server process imports torch and this module once (per master process),
    # then forks the workers from it: no per-worker re-import (seconds on a loaded machine), and
    # unlike plain fork it never copies a parent's threads or process group.
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["betamcmc.sgmcmc.engine", "betamcmc.sgmcmc.protocols"])
    procs = [
        ctx.Process(target=_worker_entry, args=(rank, world, init_method, spec), daemon=True)
        for rank in range(1, world)
    ]
    samples_dir = Path(samples_dir)
    samples_dir.mkdir(parents=True, exist_ok=True)
    try:
        for p in procs:
            p.start()
        _write_processes(samples_dir, procs)
        if on_spawn is not None:
            on_spawn(procs)
        torch.set_num_threads(spec.cfg.threads)
        _init(0, world, init_method, spec.cfg.worker_timeout, loopback=True)
        result = run_master(
            spec, samples_dir, info or {}, lambda w: procs[w - 1].is_alive(), setup_started
        )
        dist.destroy_process_group()
        for p in procs:
            p.join(timeout=10)
        return result
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
        if dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:  # noqa: BLE001
                pass
        shutil.rmtree(store_dir, ignore_errors=True)


def _write_processes(samples_dir: Path, procs: list[Any]) -> None:
    from betamcmc.io import write_json

    write_json(
        samples_dir / "processes.json", {"master": os.getpid(), "workers": [p.pid for p in procs]}
    )


def run_torchrun(
    spec_factory: Callable[[int], RunSpec], samples_dir: Path, info: dict[str, Any]
) -> RunResult | None:
    """Under ``torchrun``: rank 0 runs the master and returns the result, other ranks work and return None."""
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    if world < 2:
        raise BetamcmcError("torchrun needs at least 2 processes (1 master + 1 worker)")
    spec = spec_factory(world - 1)
    torch.set_num_threads(spec.cfg.threads)
    started = time.perf_counter()
    _init(rank, world, "env://", spec.cfg.worker_timeout, loopback=False)
    try:
        if rank == 0:
            return run_master(spec, samples_dir, info, None, started)
        group = _worker_group(spec, world)
        dist.barrier()
        worker_loop(spec, rank, group)
        return None
    finally:
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001
            pass
