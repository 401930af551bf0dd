"""``elastic``: every worker runs its own chain, elastically coupled to the master's centre.

Every ``tau`` local sampler steps worker ``w`` sends its parameters and receives the centre, and
both move towards each other with coupling ``alpha`` (Li et al. 2019; EASGD, Zhang et al. 2015)::

    theta_c <- theta_c + alpha (theta_w - theta_c)        (master)
    theta_w <- theta_w - alpha (theta_w - theta_c)        (worker, with the centre before the update)

The master keeps the W worker chains' samples: worker ``w``'s parameters as received, every
``thinning`` of its chain steps after ``burn_in`` (chain ``w - 1``), until ``samples`` in total; then
it answers STOP. Staleness = centre versions between a worker's two exchanges.

With ``overlap: true`` the worker keeps sampling while the exchange travels (``exchange.py``) and
applies the elastic pull, computed against the parameters it sent, when the centre arrives:
``theta_w <- theta_w - alpha (theta_sent - theta_c)``.

On a step budget (``EngineConfig.on_budget``: ``stop: budget`` or a cyclical step size) the master
answers STOP to each worker once its chain has taken its budget (``EngineConfig.chain_budget``).
Under a cyclical step size every worker's chain runs its own cycles over it (phase-shifted by
``phase`` per worker) and the master keeps the due samples from sampling stages only.
"""

from __future__ import annotations

import torch

from betamcmc.sgmcmc.engine import wire
from betamcmc.sgmcmc.engine.master import Master
from betamcmc.sgmcmc.engine.protocols.base import SamplingProtocol
from betamcmc.sgmcmc.engine.protocols.exchange import exchange_loop
from betamcmc.sgmcmc.engine.worker import WorkerContext


class Elastic(SamplingProtocol):
    def worker(self, ctx: WorkerContext) -> None:
        alpha = ctx.cfg.alpha

        def pull(centre: torch.Tensor, sent: torch.Tensor) -> None:
            ctx.theta.add_(centre - sent, alpha=alpha)

        exchange_loop(ctx, wire.EXCHANGE, lambda: ctx.theta, pull)

    def on_message(
        self, master: Master, src: int, kind: int, header: wire.WorkerHeader, payload: torch.Tensor
    ) -> wire.Message | None:
        staleness = master.version - int(header.version)
        master.staleness.append(staleness)
        step = int(header.step)
        if (
            not master.stopping
            and master.due(src - 1, step)
            and master.in_sampling_stage(src, step)
        ):
            master.record_sample(src - 1, step, payload)
            master.stopping = not master.cfg.on_budget and master.samples >= master.cfg.samples
        if master.stopping or master.budget_spent(src, step):
            master.records[src].status = "done"
            return master.reply(src, wire.STOP)
        # the centre before this exchange goes back; the version after it is the one this
        # worker saw
        reply = master.reply(src, wire.PARAMS, master.theta, staleness)
        master.theta.add_(payload - master.theta, alpha=master.cfg.alpha)
        master.version += 1
        reply.header[wire.REPLY_VERSION] = master.version
        return reply
