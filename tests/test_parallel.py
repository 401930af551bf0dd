"""Independent jobs in worker processes: results in order, errors keep their meaning, stop works."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

from betamcmc.core.errors import BetamcmcError, InputError
from betamcmc.core.parallel import is_running, kill_processes, process_identity, run_jobs


def square(job: int, stop: threading.Event) -> int:
    return job * job


def fail_on_two(job: int, stop: threading.Event) -> int:
    if job == 2:
        raise InputError("bad thing", "file.txt", 3)
    return job


def wait_for_stop(job: int, stop: threading.Event) -> int:
    deadline = time.time() + 60
    while not stop.is_set() and time.time() < deadline:
        time.sleep(0.02)
    if stop.is_set():
        err = BetamcmcError(f"job {job} stopped")
        err.exit_code = 143
        raise err
    return job


def test_results_in_job_order_in_processes_and_inline():
    assert run_jobs(square, [3, 1, 2], 2, threading.Event()) == [9, 1, 4]
    assert run_jobs(square, [3, 1, 2], 1, threading.Event()) == [9, 1, 4]


def test_a_child_error_is_raised_with_its_message_and_exit_code():
    with pytest.raises(BetamcmcError) as err:
        run_jobs(fail_on_two, [1, 2, 3], 2, threading.Event())
    assert str(err.value) == "file.txt:3: bad thing" and err.value.exit_code == 2


def test_stop_is_forwarded_to_the_children():
    stop = threading.Event()
    threading.Timer(3.0, stop.set).start()
    with pytest.raises(BetamcmcError) as err:
        run_jobs(wait_for_stop, [0, 1], 2, stop)
    assert err.value.exit_code == 143 and "stopped" in str(err.value)


def test_kill_processes_kills_by_pid_and_start_time_only() -> None:
    """A stopped process is killed; a pid whose start time differs (a reused pid) is left
    alone; an exited process has no identity."""
    stopped = subprocess.Popen(["sleep", "60"])
    other = subprocess.Popen(["sleep", "60"])
    try:
        os.kill(stopped.pid, signal.SIGSTOP)
        ident = process_identity(stopped.pid)
        assert ident is not None and process_identity(other.pid) is not None
        kill_processes({stopped.pid: ident, other.pid: "not its start time"})
        assert process_identity(stopped.pid) is None  # gone (a zombie) on return
        assert stopped.wait(timeout=1) == -signal.SIGKILL and other.poll() is None
    finally:
        for proc in (stopped, other):
            proc.kill()
            proc.wait()


def test_a_worker_watches_its_master_by_pid_and_start_time() -> None:
    """What a local sampling worker's heartbeat thread checks (it leaves once the master is
    gone): the master's process by pid and start time, not the worker's parent (the fork
    server, which a SIGTERM to the whole job ends while the master still runs)."""
    child = subprocess.Popen(["sleep", "60"])
    ident = process_identity(child.pid)
    assert is_running(child.pid, ident) and is_running(child.pid, None)
    assert not is_running(child.pid, "another start time")  # the pid of another process
    child.kill()
    child.wait()
    assert not is_running(child.pid, ident) and not is_running(child.pid, None)
