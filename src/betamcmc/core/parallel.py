"""Run independent jobs (e.g. one VAE per seed) in worker processes, stoppable by a signal.

A stage that trains several independent models uses the machine's cores with one process per
job, at most ``processes`` at a time (forkserver children: no state inherited from the parent
but what is passed). Each child runs ``fn(job)`` under :func:`betamcmc.vae.train.stop_on_signals`-
style handling of its own; the parent forwards a stop request (SIGTERM/SIGINT it received) to
the running children as SIGTERM, so each can save a resumable state before it exits.

Errors keep their meaning across the process boundary: a :class:`BetamcmcError` raised in a
child (bad input, divergence, interruption) is raised again in the parent with the same message
and exit code, after the other children were stopped. With ``processes <= 1`` the jobs
run one after another in the calling process (same results: each job seeds itself).

``preload`` names modules the fork server imports once before it forks the children (torch, the
job's own modules): each child then starts with them loaded instead of importing them again,
which on 2 cores saved several seconds of CPU per child (5 seeds importing torch at once). The
server also imports the package's modules the caller has loaded (:func:`loaded_modules`): a
child re-imports the script that started it (``__mp_main__``), and a stage script's imports
cost each child ~0.3 s otherwise (also used by the sampling engine's workers).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import wait
from typing import Any

from betamcmc.core.errors import BetamcmcError


def loaded_modules() -> list[str]:
    """The modules of this package this process has imported so far, for a fork server to
    preload: with them loaded, a child's re-import of the caller's script costs nothing."""
    return sorted(name for name in sys.modules if name.startswith("betamcmc."))


def _child(fn: Callable[[Any], Any], job: Any, conn: Any) -> None:
    flag = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: flag.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; it forwards SIGTERM
    try:
        conn.send(("ok", fn(job, flag)))
    except BetamcmcError as err:
        conn.send(("error", type(err).__name__, str(err), err.exit_code))
    except BaseException:  # noqa: BLE001 - a crash must reach the parent, not vanish
        conn.send(("crash", traceback.format_exc()))
    finally:
        conn.close()


def start_server(fn: Callable[..., Any], preload: Sequence[str] = ()) -> None:
    """Start the fork server of :func:`run_jobs` now, with ``fn``'s module and ``preload``
    imported, so that its imports (seconds: torch) overlap the caller's own set-up on another
    core instead of delaying the first job. Optional: ``run_jobs`` starts it otherwise."""
    from multiprocessing import forkserver

    mp.get_context("forkserver").set_forkserver_preload(
        [fn.__module__, *preload, *loaded_modules()]
    )
    forkserver.ensure_running()


def run_jobs(
    fn: Callable[[Any, threading.Event], Any],
    jobs: Sequence[Any],
    processes: int,
    stop: threading.Event,
    preload: Sequence[str] = (),
) -> list[Any]:
    """``[fn(job, stop_flag) for job in jobs]``, ``processes`` at a time; results in job order.

    ``fn`` must be importable (a module-level function) and ``jobs`` picklable.
    """
    if processes <= 1 or len(jobs) <= 1:
        return [fn(job, stop) for job in jobs]
    ctx = mp.get_context("forkserver")
    if preload:  # takes effect when this process starts its fork server (the first job)
        ctx.set_forkserver_preload([fn.__module__, *preload, *loaded_modules()])
    results: dict[int, Any] = {}
    pending = list(enumerate(jobs))
    running: dict[Any, tuple[int, Any]] = {}  # connection -> (job index, process)
    failure: tuple | None = None
    forwarded = False
    try:
        while pending or running:
            if failure is None and not stop.is_set():
                _start_jobs(ctx, fn, pending, running, processes)
            if not running:
                break
            if stop.is_set() and not forwarded:
                _forward_stop(running)
                forwarded = True
            for index, message in _finished(running):
                if message[0] == "ok":
                    results[index] = message[1]
                elif failure is None:
                    failure = message
                    stop.set()  # stop the others: the stage fails as a whole
    finally:
        _end_all(running)
    if failure is not None:
        raise _failure_error(failure)
    if len(results) != len(jobs):
        raise BetamcmcError("interrupted before every job was done")
    return [results[i] for i in range(len(jobs))]


def _start_jobs(
    ctx: Any,
    fn: Callable[[Any, threading.Event], Any],
    pending: list[tuple[int, Any]],
    running: dict[Any, tuple[int, Any]],
    processes: int,
) -> None:
    """Start pending jobs (in order) until ``processes`` run; each reports through a pipe."""
    while pending and len(running) < processes:
        index, job = pending.pop(0)
        parent_end, child_end = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(fn, job, child_end), daemon=True)
        proc.start()
        child_end.close()
        running[parent_end] = (index, proc)


def _forward_stop(running: dict[Any, tuple[int, Any]]) -> None:
    """Pass a stop request on to the running children as SIGTERM."""
    for _, proc in running.values():
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGTERM)


def _finished(running: dict[Any, tuple[int, Any]]) -> Iterator[tuple[int, tuple]]:
    """``(job index, message)`` of every child that reported within 0.2 s (removed from
    ``running``); a child that died without a word reports a crash."""
    for conn in wait(list(running), timeout=0.2):
        index, proc = running.pop(conn)
        try:
            message = conn.recv()
        except EOFError:
            proc.join()
            message = ("crash", f"worker process exited with code {proc.exitcode}")
        proc.join()
        yield index, message


def _end_all(running: dict[Any, tuple[int, Any]]) -> None:
    """Terminate and reap the children still running (after a failure or an interruption)."""
    for _index, proc in running.values():
        if proc.is_alive():
            proc.terminate()
        proc.join()


ProcessId = tuple[int, "str | None"]  # a pid and its process_identity


def process_identity(pid: int) -> str | None:
    """``pid``'s start time as ``/proc/<pid>/stat`` gives it (with the pid, it names one process:
    pids are reused); None once the process has exited (gone or a zombie), or without ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()  # after the command name
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]  # state, starttime (fields 3, 22)


def is_running(pid: int, identity: str | None) -> bool:
    """Does process ``pid`` (started at ``identity``, :func:`process_identity`) still run?
    Without ``/proc`` (``identity`` None): whether the pid exists."""
    if identity is not None:
        return process_identity(pid) == identity
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def kill_processes(identities: dict[int, str], wait_s: float = 5.0) -> None:
    """SIGKILL the processes of ``identities`` (pid -> :func:`process_identity`) that still run;
    return once they are gone (``wait_s`` at most)."""
    alive = [pid for pid, ident in identities.items() if process_identity(pid) == ident]
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + wait_s
    while alive and time.monotonic() < deadline:
        time.sleep(0.01)
        alive = [pid for pid in alive if process_identity(pid) == identities[pid]]


def _failure_error(failure: tuple) -> Exception:
    """A child's failure as the parent raises it: a crash with its traceback, a
    :class:`BetamcmcError` with the child's message and exit code (2 bad input, 3 divergence,
    143 stopped)."""
    if failure[0] == "crash":
        return RuntimeError(f"a worker process failed:\n{failure[1]}")
    _, _name, message, exit_code = failure
    err = BetamcmcError(message)
    err.exit_code = exit_code
    return err
