"""Communication protocols between the master and the workers, one module each.

A protocol module provides the worker's loop and the master's message handler::

    worker(ctx: worker.WorkerContext) -> None
    on_message(master: master.Master, src, kind, header, payload) -> master.reply(...) | None
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

from types import ModuleType

from betamcmc.sgmcmc.protocols import downpour, elastic, single, sync

PROTOCOLS: dict[str, ModuleType] = {
    "single": single,
    "sync": sync,
    "downpour": downpour,
    "elastic": elastic,
}


def get(name: str) -> ModuleType:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r} (one of {sorted(PROTOCOLS)})") from None
