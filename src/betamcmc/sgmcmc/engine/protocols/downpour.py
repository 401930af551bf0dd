"""``downpour``: asynchronous pushes of accumulated updates to the master's chain (Li et al. 2019).

Worker loop (local sampler state, e.g. SGHMC momentum, stays on the worker; the loop itself is
``exchange.py``'s)::

    base <- theta <- (pulled) theta_c
    repeat: take tau local sampler steps on theta
            push delta = theta - base          (tau steps of drift + injected noise)
            pull theta_c, version;  theta <- base <- theta_c

Master, on each push as it arrives, from whichever worker: ``theta_c <- theta_c + delta``, its chain
advances by tau steps, version + 1; staleness = versions applied between that worker's pull and its
push. The master samples its own chain every ``thinning`` chain steps after ``burn_in`` (chain 0)
and answers STOP instead of parameters once ``samples`` are collected. With W workers the master's
chain advances about W tau steps per tau-step round, at the price of stale gradients. With a
staleness-aware step size (``staleness: inverse | inverse_square``) a worker scales its step by
its measured staleness after every reply, and a push counts as ``tau x factor`` chain steps.

With ``overlap: true`` the worker does not wait for the reply: it goes on sampling while the push
and the pull travel and rebases the steps it took meanwhile onto the pulled parameters
(``theta <- theta_c + (theta - theta_sent)``, ``base <- theta_c``), so the next push carries
exactly the steps not yet pushed; the round-trip latency is hidden behind compute, at the price
of up to one more version of staleness.

On a step budget (``EngineConfig.on_budget``: ``stop: budget`` or a cyclical step size) the
master answers STOP once its chain has taken ``EngineConfig.master_budget`` steps, whatever the
samples. Under a cyclical step size each worker runs its own cycles over its share of that budget
(``EngineConfig.chain_budget``, phase-shifted by ``phase`` per worker) and the master keeps a due
sample only when the push that made it was taken in the pushing worker's sampling stage.
"""

from __future__ import annotations

import torch

from betamcmc.sgmcmc.engine import wire
from betamcmc.sgmcmc.engine.master import Master
from betamcmc.sgmcmc.engine.protocols.base import SamplingProtocol
from betamcmc.sgmcmc.engine.protocols.exchange import exchange_loop
from betamcmc.sgmcmc.engine.worker import WorkerContext


class Downpour(SamplingProtocol):
    def worker(self, ctx: WorkerContext) -> None:
        base = ctx.theta.clone()

        def rebase(centre: torch.Tensor, sent: torch.Tensor) -> None:
            ctx.theta.sub_(sent).add_(centre)
            base.copy_(centre)
            ctx.scale_step_for_staleness()

        exchange_loop(ctx, wire.PUSH, lambda: ctx.theta - base, rebase)

    def on_message(
        self, master: Master, src: int, kind: int, header: wire.WorkerHeader, payload: torch.Tensor
    ) -> wire.Message | None:
        staleness = master.version - int(header.version)
        master.staleness.append(staleness)
        master.theta.add_(payload)
        master.version += 1
        # the steps the push carries (tau, more when a reply was late), scaled if staleness-aware
        master.chain_steps += header.push_steps * header.step_scale
        step = round(master.chain_steps)
        if (
            not master.stopping
            and master.due(0, step)
            and master.in_sampling_stage(src, int(header.step))
        ):
            master.record_sample(0, step, master.theta)
            master.stopping = not master.cfg.on_budget and master.samples >= master.cfg.samples
        master.stopping = master.stopping or master.budget_spent(src, step)
        if master.stopping:
            master.records[src].status = "done"
            return master.reply(src, wire.STOP)
        return master.reply(src, wire.PARAMS, master.theta, staleness)
