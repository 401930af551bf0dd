"""What a communication protocol provides: the worker's loop and the master's message handler.

:class:`SamplingProtocol` is a :class:`typing.Protocol`; each protocol module defines one class
that subclasses it (so it inherits the no-op hooks) and implements ``worker`` and
``on_message``::

    worker(ctx)                                   the worker's whole loop (rank >= 1)
    on_message(master, src, kind, header, payload) -> reply | None
    after_message(master)                         checks after each message (sync: none lost)
    on_abort(master, src)                         a worker reported a failed collective or a signal

The master calls ``on_message`` for every message but heartbeats, ABORT, DONE and ERROR (it
handles those itself), then ``after_message``; ``on_abort`` after recording an ABORT.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # typing only: the master and worker modules import the protocols' registry
    import torch

    from betamcmc.sgmcmc.engine.master import Master
    from betamcmc.sgmcmc.engine.wire import Message, WorkerHeader
    from betamcmc.sgmcmc.engine.worker import WorkerContext


class SamplingProtocol(Protocol):
    """A protocol's two sides; ``after_message`` and ``on_abort`` default to doing nothing."""

    def worker(self, ctx: WorkerContext) -> None:
        """Run worker ``ctx.index``'s loop until its share of the run is done."""
        ...

    def on_message(
        self, master: Master, src: int, kind: int, header: WorkerHeader, payload: torch.Tensor
    ) -> Message | None:
        """Handle worker ``src``'s message on the master; return the reply to send, if any."""
        ...

    def after_message(self, master: Master) -> None:
        """Checks after each handled message (default: none)."""
        return None

    def on_abort(self, master: Master, src: int) -> None:
        """Worker ``src`` aborted and was recorded as lost (default: go on without it)."""
        return None
