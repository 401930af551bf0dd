"""Communication protocols between the master and the workers, one module each.

A protocol module defines one :class:`~betamcmc.sgmcmc.engine.protocols.base.SamplingProtocol` (the
worker's loop, the master's message handler and two hooks that default to doing nothing)::

    worker(ctx: worker.WorkerContext) -> None
    on_message(master, src, kind, header: wire.WorkerHeader, payload) -> master.reply(...) | None
    after_message(master) -> None          # checks after each message (e.g. sync: no worker lost)
    on_abort(master, src) -> None          # a worker reported a failed collective or a signal

``single``: independent chains, no exchange but samples. ``sync``: gradient all-reduce every step.
``downpour``: tau local steps, push the accumulated update, pull the master's parameters.
``elastic``: each worker's own chain, elastic exchange with the master's centre every tau steps.
``downpour`` and ``elastic`` share their worker loop (``exchange.py``) and differ in what they send
and how a reply is applied. Protocols import the engine's worker, master and wire modules; the
engine's launcher imports this registry (no import cycle).
"""

from __future__ import annotations

from betamcmc.sgmcmc.engine.protocols.base import SamplingProtocol
from betamcmc.sgmcmc.engine.protocols.downpour import Downpour
from betamcmc.sgmcmc.engine.protocols.elastic import Elastic
from betamcmc.sgmcmc.engine.protocols.single import Single
from betamcmc.sgmcmc.engine.protocols.sync import Sync

PROTOCOLS: dict[str, SamplingProtocol] = {
    "single": Single(),
    "sync": Sync(),
    "downpour": Downpour(),
    "elastic": Elastic(),
}


def get(name: str) -> SamplingProtocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r} (one of {sorted(PROTOCOLS)})") from None
