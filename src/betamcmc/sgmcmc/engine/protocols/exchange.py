"""The worker loop that downpour and elastic share: tau local steps, one exchange, repeat.

::

    repeat: take local sampler steps until tau were taken since the last send
                 and the previous exchange is complete
            theta_sent <- theta;  send payload()          (downpour: theta - base; elastic: theta)
            wait for the master's reply (overlap: false)  or  keep stepping until it arrives
            apply(reply, theta_sent)                      (the protocol's update rule)
    until the master answers STOP

With ``overlap: true`` the exchange travels (``isend`` + ``irecv``) while the sampler keeps
stepping; the reply is applied at the first step boundary after it arrived, and the rule
receives ``theta_sent`` so that it can rebase the steps taken meanwhile (downpour) or compute the
elastic pull against what was sent (elastic). A late reply (a busy master, a loaded machine) does
not stop the sampler: it keeps stepping and sends as soon as the reply is in, so a round then
carries more than tau steps (the message says how many); only after ``LATE_ROUNDS`` x tau steps
without a reply does it wait. With ``overlap: false`` the reply is applied right after the send,
where ``theta == theta_sent``, so both rules reduce to their textbook form.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from betamcmc.sgmcmc.engine import wire
from betamcmc.sgmcmc.engine.worker import WorkerContext

Apply = Callable[[torch.Tensor, torch.Tensor], None]
LATE_ROUNDS = 3  # a reply later than this many rounds of tau steps is waited for


def exchange_loop(
    ctx: WorkerContext, kind: int, payload: Callable[[], torch.Tensor], apply: Apply
) -> None:
    """Run the loop above until STOP; ``apply(reply payload on the worker's device, theta_sent)``."""
    sent = ctx.theta.clone()
    pending = False

    def take_reply() -> bool:
        reply_kind, reply = ctx.finish_exchange()
        if reply_kind == wire.STOP:
            return False
        apply(ctx.to_device(reply), sent)
        return True

    since = 0  # steps since the last send
    while True:
        ctx.step()
        since += 1
        if pending and (ctx.exchange_done() or since >= LATE_ROUNDS * ctx.cfg.period):
            pending = False  # arrived, or so late that running further ahead would hurt
            if not take_reply():
                return
        if pending or since < ctx.cfg.period:
            continue
        ctx.check_finite()
        sent.copy_(ctx.theta)
        ctx.push_steps, since = since, 0
        ctx.start_exchange(kind, payload())
        pending = True
        if not ctx.cfg.overlap:
            pending = False
            if not take_reply():
                return
