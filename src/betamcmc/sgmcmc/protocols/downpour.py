"""``downpour``: asynchronous pushes of accumulated updates to the master's chain (Li et al. 2019).

Worker loop (local sampler state, e.g. SGHMC momentum, stays on the worker)::

    base <- theta <- (pulled) theta_c
    repeat: take tau local sampler steps on theta
            push delta = theta - base          (tau steps of drift + injected noise)
            pull theta_c, version;  theta <- base <- theta_c

Master, on each push as it arrives, from whichever worker: ``theta_c <- theta_c + delta``, its chain
advances by tau steps, version + 1; staleness = versions applied between that worker's pull and its
push. The master samples its own chain every ``thinning`` chain steps after ``burn_in`` (chain 0)
and answers STOP instead of parameters once ``samples`` are collected. With W workers the master's
chain advances about W tau steps per tau-step round, at the price of stale gradients.

With ``overlap: true`` the worker does not wait for the reply: it goes on sampling while the push
and the pull travel (a helper thread does the blocking send/recv) and rebases the steps it took
meanwhile onto the pulled parameters; the round-trip latency is hidden behind compute, at the
price of up to one more version of staleness.
"""

from __future__ import annotations

from typing import Any

import torch

from betamcmc.sgmcmc import engine


def worker(ctx: engine.WorkerContext) -> None:
    if ctx.cfg.overlap:
        return _worker_overlapped(ctx)
    tau = ctx.cfg.period
    base = ctx.theta.clone()
    while True:
        for _ in range(tau):
            ctx.step()
        ctx.check_finite()
        ctx.send(engine.PUSH, ctx.theta - base)
        kind, version, payload = ctx.recv()
        if kind == engine.STOP:
            return
        ctx.theta.copy_(payload)
        base.copy_(ctx.theta)
        ctx.version = version


def _worker_overlapped(ctx: engine.WorkerContext) -> None:
    """Push, then keep sampling while the reply travels; rebase the steps taken meanwhile::

    theta <- theta_c + (theta - theta_at_push);   base <- theta_c
    so the next push carries exactly the steps not yet pushed."""
    tau = ctx.cfg.period
    base = ctx.theta.clone()
    at_push = ctx.theta.clone()
    pending = False

    def take_reply() -> bool:
        kind, version, payload = ctx.finish_exchange()
        if kind == engine.STOP:
            return False
        centre = ctx.to_device(payload)
        ctx.theta.sub_(at_push).add_(centre)
        base.copy_(centre)
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
        at_push.copy_(ctx.theta)
        ctx.start_exchange(engine.PUSH, ctx.theta - base)
        pending = True


def on_message(
    master: engine.Master, src: int, kind: int, header: list[float], payload: torch.Tensor
) -> Any:
    master.staleness.append(master.version - int(header[2]))
    master.theta.add_(payload)
    master.version += 1
    master.chain_steps += master.cfg.period
    if not master.stopping and master.due(0, master.chain_steps):
        master.record_sample(0, master.chain_steps, master.theta)
        master.stopping = master.samples >= master.cfg.samples
    if master.stopping:
        master.records[src].status = "done"
        return master.reply(engine.STOP)
    return master.reply(engine.PARAMS, master.theta)


def after_message(master: engine.Master) -> None:
    return None


def on_abort(master: engine.Master, src: int) -> None:
    return None
