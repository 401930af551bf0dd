"""The worker loop that downpour and elastic share: tau local steps, one exchange, repeat.

::

    repeat: take tau local sampler steps
            theta_sent <- theta;  send payload()          (downpour: theta - base; elastic: theta)
            wait for the master's reply (overlap: false)  or  keep stepping until it arrives
            apply(reply, theta_sent)                      (the protocol's update rule)
    until the master answers STOP

With ``overlap: true`` the exchange travels (``isend`` + ``irecv``) while the sampler keeps
stepping; the reply is applied at the first step boundary after it arrived, and the rule
receives ``theta_sent`` so that it can rebase the steps taken meanwhile (downpour) or compute the
elastic pull against what was sent (elastic). With ``overlap: false`` the reply is applied right
after the send, where ``theta == theta_sent``, so both rules reduce to their textbook form.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from betamcmc.sgmcmc import wire
from betamcmc.sgmcmc.worker import WorkerContext

Apply = Callable[[torch.Tensor, torch.Tensor], None]


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

    while True:
        for _ in range(ctx.cfg.period):
            ctx.step()
            if pending and ctx.exchange_done():
                pending = False
                if not take_reply():
                    return
        if pending:  # the reply is late: wait for it rather than run ahead of the master
            pending = False
            if not take_reply():
                return
        ctx.check_finite()
        sent.copy_(ctx.theta)
        ctx.start_exchange(kind, payload())
        pending = True
        if not ctx.cfg.overlap:
            pending = False
            if not take_reply():
                return
