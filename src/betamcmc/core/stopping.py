"""Stopping a long stage on SIGTERM or SIGINT: one error and one handler for every stage that
uses them (``sgmcmc``, ``sgmcmc_sgd``, ``rl``, the Bayesian head).

Inside :func:`stop_on_signals` a SIGTERM or SIGINT raises :class:`Stopped` in the main thread,
so ``finally`` blocks run (worker processes are terminated, files closed) and the stage ends with
one line and exit code 143 (SIGTERM) or 130 (SIGINT). The stage catches it once more to say what
was kept (:meth:`Stopped.saying`). Inside :func:`signals_deferred` (the few lines that write the
outputs) a signal is held until the block ends, so the outputs are never half written.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from betamcmc.core.errors import BetamcmcError

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(BetamcmcError):
    """The stage got SIGTERM or SIGINT; the message says what was kept."""

    def __init__(self, signum: int, detail: str = "", outputs_complete: bool = False):
        self.signum = signum
        self.signame = signal.Signals(signum).name
        self.exit_code = 128 + signum
        self.outputs_complete = outputs_complete  # it arrived while the outputs were written
        super().__init__(f"stopped by {self.signame}" + (f"; {detail}" if detail else ""))

    def saying(self, detail: str) -> Stopped:
        """The same stop, with what was kept."""
        return Stopped(self.signum, detail, self.outputs_complete)


def _raise(signum: int, frame: Any) -> None:
    raise Stopped(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGINT raise :class:`Stopped` inside the block (the previous handlers come
    back afterwards). Outside the main thread (signals cannot be caught there) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGTERM / SIGINT while the block writes outputs; raise :class:`Stopped` after it if
    one arrived (the outputs are then complete, and the stage still ends as stopped)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if caught:
        raise Stopped(
            caught[0], "it arrived while the outputs were written; they are complete", True
        )
