"""Starting a run: W worker processes on this machine (:func:`run_local`) or one rank of a
``torchrun`` launch across machines (:func:`run_torchrun`). Rank 0 is always the master.

Locally the master runs in the calling process and the workers are forked from a forkserver (one
server imports torch and the engine once, then forks each worker: no per-worker re-import, which
costs seconds on a loaded machine, and unlike plain fork no copy of the parent's threads or
process group). The server also imports every module of this package the calling process has
imported (:func:`forkserver_preload`): a forked worker re-imports the calling script
(``__mp_main__``), and a stage script's imports would otherwise cost each worker of each run
~0.3 s before it joins. They meet through a file store in a private temporary directory with gloo bound
to loopback, so runs never compete for a port. Across machines the stage script is the entry
point of every rank, e.g. two machines with 2 + 2 processes (1 master + 3 workers)::

    torchrun --nnodes 2 --nproc-per-node 2 --node-rank {0|1} \\
        --rdzv-backend c10d --rdzv-endpoint HOST0:29500 stages/sgmcmc.py downpour 3

Backends: gloo carries every master-worker message (also on CUDA, staged through CPU buffers:
a dead worker fails only its own gloo connection, the master goes on with the others, whereas
nccl aborts a communicator as a whole on an error); ``sync`` all-reduces among the
workers with nccl only when each worker has a GPU of its own (``RunSpec.nccl_workers``).

Timeouts: one gloo operation of a worker (a ``sync`` all-reduce, a reply) may take up to
``OPERATION_TIMEOUT_S``; the master waits at most :func:`startup_timeout` for the workers to
start (a worker that dies before it joins would otherwise hold it that long); once sampling
runs, whether a worker is still there is decided by heartbeats (``master.py``).
"""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed import distributed_c10d

from betamcmc.core.errors import BetamcmcError, ParamsError
from betamcmc.core.io import limit_threads, write_json
from betamcmc.core.parallel import (
    ProcessId,
    kill_processes,
    loaded_modules,
    process_identity,
    start_server,
)
from betamcmc.sgmcmc.engine import protocols
from betamcmc.sgmcmc.engine.config import RunSpec
from betamcmc.sgmcmc.engine.master import WorkerLost, run_master
from betamcmc.sgmcmc.engine.receivers import join_receivers
from betamcmc.sgmcmc.engine.result import NoSamples, RunResult, run_result
from betamcmc.sgmcmc.engine.worker import run_worker

OPERATION_TIMEOUT_S = 600.0
Report = Callable[[int, int, dict[str, float]], None]  # progress: (samples, of samples, values)


def forkserver_preload() -> list[str]:
    """What the forkserver imports before it forks any worker (only the first run of a process
    starts the server): the engine and the modules of this package imported here so far."""
    return ["betamcmc.sgmcmc.engine.launch", *loaded_modules()]


def start_forkserver() -> None:
    """Start the workers' fork server now, so that its imports (torch, the engine: about a
    second) overlap the caller's own set-up (its MLflow run, its data) instead of delaying the
    first run's workers. Optional (:func:`run_local` starts it otherwise); none under torchrun."""
    if torchrun_rank() is None:
        start_server(_worker_entry)


def startup_timeout(worker_timeout: float) -> float:
    """Seconds the master gives the workers to join and build their models."""
    return max(60.0, 4.0 * worker_timeout)


def _init(
    rank: int, world: int, init_method: str, loopback: bool, timeout: float = OPERATION_TIMEOUT_S
) -> None:
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
    backend = "nccl" if spec.nccl_workers() else "gloo"
    return dist.new_group(ranks=list(range(1, world)), backend=backend)


def _master(
    spec: RunSpec,
    samples_dir: Path,
    info: dict[str, Any],
    exitcode: Callable[[int], int | None] | None,
    started: float,
    report: Report | None = None,
) -> RunResult:
    _worker_group(spec, spec.workers + 1)
    master = run_master(spec, protocols.get(spec.protocol), samples_dir, info, exitcode, report)
    result = run_result(master, spec.protocol, master.now(), master.t0 - started)
    if master.samples == 0:
        if result.dead:
            raise WorkerLost("the run ended without a single sample (workers lost)")
        raise NoSamples(result, spec.config.burn_in)
    return result


def _worker_entry(
    rank: int, world: int, init_method: str, spec: RunSpec, master: ProcessId
) -> None:
    limit_threads(spec.config.threads)
    _init(rank, world, init_method, loopback=True)
    group = _worker_group(spec, world)
    try:
        run_worker(spec, rank, group, protocols.get(spec.protocol), master)
    finally:
        _leave_group()


def _leave_group() -> None:
    if dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - a peer may be gone already
            pass
    else:
        # A failed init_process_group leaves torch's group counter advanced, so this process's
        # next default group would look for its peers under another name and never find them
        # (destroy_process_group resets it, but only after a successful init).
        distributed_c10d._world.group_count = 0  # private: no public reset exists


def run_local(
    spec: RunSpec,
    samples_dir: str | os.PathLike[str],
    info: dict[str, Any] | None = None,
    on_spawn: Callable[[list[Any]], None] | None = None,
    report: Report | None = None,
) -> RunResult:
    """Spawn ``spec.workers`` worker processes on this machine, run the master here, clean up.
    ``report(samples, of samples, values)``: called by the master after every sample.

    Workers are always terminated (and joined) on the way out, also on errors and signals.
    """
    world = spec.workers + 1
    started = time.perf_counter()
    store_dir = tempfile.mkdtemp(prefix="sgmcmc-store-")
    init_method = f"file://{store_dir}/store"
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(forkserver_preload())
    master = (os.getpid(), process_identity(os.getpid()))  # what the workers watch
    procs = [
        ctx.Process(
            target=_worker_entry, args=(rank, world, init_method, spec, master), daemon=True
        )
        for rank in range(1, world)
    ]
    samples_dir = Path(samples_dir)
    samples_dir.mkdir(parents=True, exist_ok=True)
    identities: dict[int, str | None] = {}  # pid -> start time: see _stop_workers
    try:
        for p in procs:
            p.start()
            identities[p.pid] = process_identity(p.pid)
        write_json(
            samples_dir / "processes.json",
            {"master": os.getpid(), "workers": [p.pid for p in procs]},
        )
        if on_spawn is not None:
            on_spawn(procs)
        limit_threads(spec.config.threads)
        wait = startup_timeout(spec.config.worker_timeout)
        try:
            _init(0, world, init_method, True, wait)
        except RuntimeError:
            raise WorkerLost(
                f"the workers did not join within {wait:g} s (see their errors above)"
            ) from None
        result = _master(
            spec, samples_dir, info or {}, lambda w: procs[w - 1].exitcode, started, report
        )
        _leave_group()
        for p in procs:
            p.join(timeout=10)
        return result
    finally:
        _stop_workers(procs, identities)
        _leave_group()
        join_receivers()  # the workers are gone: no receive thread may wake up during exit
        shutil.rmtree(store_dir, ignore_errors=True)


def _stop_workers(procs: list[Any], identities: dict[int, str | None]) -> None:
    """Terminate (after 5 s: kill) and join the workers that still run.

    The fork server reports each worker's exit. A SIGTERM to the whole process group ends the
    server at once, and then every handle reads as exited (code 255) whether its worker runs or
    not: the workers still running are then killed by pid (``identities``: pid -> start time,
    taken at spawn), so that none outlives the run. They have nothing left to say: the master
    no longer listens. (Once in CI, a job stopped by a SIGTERM to its group kept its stderr open
    over two minutes after the master's last line.)"""
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=5)
        if p.is_alive():
            p.kill()
            p.join(timeout=5)
    kill_processes({pid: ident for pid, ident in identities.items() if ident is not None})


def torchrun_rank() -> tuple[int, int] | None:
    """``(rank, world size)`` when this process was started by ``torchrun``, else None."""
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return None


def run_torchrun(
    spec: RunSpec, samples_dir: Path, info: dict[str, Any], report: Report | None = None
) -> RunResult | None:
    """Under ``torchrun``: rank 0 runs the master and returns the result, the other ranks work
    and return None. The world size must be ``spec.workers + 1``."""
    where = torchrun_rank()
    if where is None:
        raise BetamcmcError("run_torchrun needs the RANK and WORLD_SIZE of a torchrun launch")
    rank, world = where
    if world < 2:
        raise BetamcmcError("torchrun needs at least 2 processes (1 master + 1 worker)")
    if world != spec.workers + 1:
        raise ParamsError(
            f"torchrun started {world - 1} workers but the item asks for {spec.workers} "
            "(world size must be workers + 1)"
        )
    limit_threads(spec.config.threads)
    started = time.perf_counter()
    timeout = startup_timeout(spec.config.worker_timeout) if rank == 0 else OPERATION_TIMEOUT_S
    _init(rank, world, "env://", False, timeout)
    try:
        if rank == 0:
            return _master(spec, samples_dir, info, None, started, report)
        group = _worker_group(spec, world)
        run_worker(spec, rank, group, protocols.get(spec.protocol))
        return None
    finally:
        _leave_group()
        if rank == 0:  # receives from workers that are still there end with the connections
            join_receivers()
