"""The master's receives: one per running worker, each waited for on its own helper thread.

The master takes the messages in the order they arrive (:class:`Receivers`), and a leaving
process waits for the threads to end (:func:`join_receivers`) before the interpreter exits.
"""

from __future__ import annotations

import datetime
import queue
import threading
import time
from typing import Any

import torch.distributed as dist

from betamcmc.sgmcmc.engine import wire

# a receive from a worker waits this long at most: far longer than any run goes on after that
# worker went silent (gloo closes every connection when a receive times out; see Receivers)
RECEIVE_TIMEOUT = datetime.timedelta(days=7)
JOIN_RECEIVERS_S = 5.0  # how long a leaving process waits for its receive threads to end
_RECEIVING: set[threading.Thread] = set()  # this process's receive threads still running


class Receivers:
    """One receive per running worker, from that worker only, each waited for on a helper thread;
    the master takes whichever message arrives first (:meth:`next`).

    Why not one receive from any source: gloo matches such a receive to the first announced send,
    and a send that a worker announced just before it died (its ABORT, say) stays announced; its
    connection is closed, so every later receive from any source would fail on it, whoever else
    sends. A receive from one worker fails only with that worker's connection, at once when its
    process dies, also under ``torchrun``.

    The main thread posts every receive (``irecv``) and only the waiting happens on the threads,
    which put ``(worker, None)`` or ``(worker, gloo's error as text)`` on one queue. A worker's
    next receive is posted only once the master has handled its last message (:meth:`again`):
    each worker has its own inbox, free again at that point. Receives are posted to a worker until
    its connection closes, also once it is done or lost: a late heartbeat is taken and ignored
    rather than left blocking its sender (a gloo send completes only when received). The waits have no practical timeout
    (``RECEIVE_TIMEOUT``): a gloo receive that times out closes every connection of the process,
    and whether a worker is there is decided by heartbeats and process handles instead.
    """

    def __init__(self, workers: list[int], dim: int) -> None:
        self.inboxes = {w: wire.Message(dim) for w in workers}
        self._answers: queue.SimpleQueue[tuple[int, str | None]] = queue.SimpleQueue()
        self._works: dict[int, queue.SimpleQueue[Any]] = {}
        for w in workers:
            self._works[w] = queue.SimpleQueue()
            thread = threading.Thread(
                target=self._wait, args=(w,), name=f"sgmcmc-receive-{w}", daemon=True
            )
            _RECEIVING.add(thread)
            thread.start()
            self.again(w)

    def again(self, worker: int) -> None:
        """Post the next receive from ``worker`` (its inbox is free)."""
        try:
            work = dist.irecv(self.inboxes[worker].tensor, src=worker)
        except RuntimeError as err:  # its connection is closed already
            self._answers.put((worker, str(err)))
            return
        self._works[worker].put(work)

    def _wait(self, worker: int) -> None:
        works = self._works[worker]
        while (work := works.get()) is not None:
            try:
                work.wait(timeout=RECEIVE_TIMEOUT)
            except RuntimeError as err:  # only the text: the traceback would hold the buffer
                self._answers.put((worker, str(err)))
                return
            self._answers.put((worker, None))

    def next(self, wait_s: float) -> tuple[int, str | None] | None:
        """``(worker, None)``: a message from ``worker`` is in its inbox; ``(worker, error)``:
        the receive from ``worker`` failed (its connection is gone, no more receives from it);
        None: nothing within ``wait_s``."""
        try:
            return self._answers.get(timeout=wait_s)
        except queue.Empty:
            return None

    def close(self) -> None:
        """End the threads that are not waiting; a posted receive stays until its worker's
        connection closes (see :func:`join_receivers`)."""
        for works in self._works.values():
            works.put(None)


def join_receivers(timeout: float = JOIN_RECEIVERS_S) -> None:
    """Wait, ``timeout`` at most, until this process's receive threads have ended: call it once
    the workers are gone (their connections are closed, so every receive still posted fails at
    once). A thread that comes back from gloo while the interpreter shuts down aborts the process:
    Python 3.11 ends such a daemon thread with ``pthread_exit``, which pybind11's GIL guard turns
    into ``std::terminate`` ("terminate called without an active exception", exit 134).
    A thread is done only once it has ended: dropping its last work object runs C++ code
    without the GIL too (torch releases it while destroying a work object)."""
    deadline = time.monotonic() + timeout
    for thread in list(_RECEIVING):
        thread.join(max(0.0, deadline - time.monotonic()))
        if not thread.is_alive():
            _RECEIVING.discard(thread)
