"""``elastic``: every worker runs its own chain, elastically coupled to the master's centre.

Every ``tau`` local sampler steps worker ``w`` sends its parameters and receives the centre, and
both move towards each other with coupling ``alpha`` (Li et al. 2019; EASGD, Zhang et al. 2015)::

    theta_c <- theta_c + alpha (theta_w - theta_c)        (master)
    theta_w <- theta_w - alpha (theta_w - theta_c)        (worker, with the centre before the update)

The master keeps the W worker chains' samples: worker ``w``'s parameters as received, every
``thinning`` of its chain steps after ``burn_in`` (chain ``w - 1``), until ``samples`` in total; then
it answers STOP. Staleness = centre versions between a worker's two exchanges.

With ``overlap: true`` the worker keeps sampling while the exchange travels (helper thread) and
applies the elastic pull, computed against the parameters it sent, when the centre arrives.
"""

from __future__ import annotations

from typing import Any

import torch

from betamcmc.sgmcmc import engine


def worker(ctx: engine.WorkerContext) -> None:
    tau, alpha = ctx.cfg.period, ctx.cfg.alpha
    if ctx.cfg.overlap:
        return _worker_overlapped(ctx, tau, alpha)
    while True:
        for _ in range(tau):
            ctx.step()
        ctx.check_finite()
        ctx.send(engine.EXCHANGE, ctx.theta)
        kind, version, centre = ctx.recv()
        if kind == engine.STOP:
            return
        ctx.theta.add_(ctx.to_device(centre) - ctx.theta, alpha=alpha)
        ctx.version = version


def _worker_overlapped(ctx: engine.WorkerContext, tau: int, alpha: float) -> None:
    """Send theta_w and keep sampling; when the centre arrives apply the elastic pull computed
    against the parameters that were sent: ``theta_w <- theta_w - alpha (theta_sent - theta_c)``."""
    sent = ctx.theta.clone()
    pending = False

    def take_reply() -> bool:
        kind, version, centre = ctx.finish_exchange()
        if kind == engine.STOP:
            return False
        ctx.theta.add_(ctx.to_device(centre) - sent, alpha=alpha)
        ctx.version = version
        return True

    while True:
        for _ in range(tau):
            ctx.step()
            if pending and ctx.exchange_done():
                pending = False
                if not take_reply():
                    return
        if pending:
            pending = False
            if not take_reply():
                return
        ctx.check_finite()
        sent.copy_(ctx.theta)
        ctx.start_exchange(engine.EXCHANGE, ctx.theta)
        pending = True


def on_message(
    master: engine.Master, src: int, kind: int, header: list[float], payload: torch.Tensor
) -> Any:
    master.staleness.append(master.version - int(header[2]))
    step = int(header[1])
    if not master.stopping and master.due(src - 1, step):
        master.record_sample(src - 1, step, payload)
        master.stopping = master.samples >= master.cfg.samples
    if master.stopping:
        master.records[src].status = "done"
        return master.reply(engine.STOP)
    reply = master.reply(engine.PARAMS, master.theta)  # the centre before this exchange
    master.theta.add_(payload - master.theta, alpha=master.cfg.alpha)
    master.version += 1
    reply[1] = master.version  # the version this worker has now seen
    return reply


def after_message(master: engine.Master) -> None:
    return None


def on_abort(master: engine.Master, src: int) -> None:
    return None
