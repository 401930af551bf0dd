"""``single``: one SG-MCMC chain per worker, nothing exchanged but samples (the baseline).

With W = 1 this is the plain single chain every speedup is measured against. With W > 1 it is W
independent chains (different minibatch and noise streams, same start) that share the sample
budget: worker ``i`` sends ``samples / W`` thinned samples, taken at its chain steps
``burn_in, burn_in + thinning, ...``; each chain pays its own burn-in, so parallel chains shorten
only the collection phase. The master only writes what arrives (chain = worker - 1). On a step
budget (``EngineConfig.on_budget``) each chain instead runs its budget
(``EngineConfig.chain_budget``) and sends its due samples (under a cyclical step size those that
fall in sampling stages).
"""

from __future__ import annotations

import torch

from betamcmc.sgmcmc.engine import wire
from betamcmc.sgmcmc.engine.config import quota
from betamcmc.sgmcmc.engine.master import Master
from betamcmc.sgmcmc.engine.protocols.base import SamplingProtocol
from betamcmc.sgmcmc.engine.worker import WorkerContext


class Single(SamplingProtocol):
    def worker(self, ctx: WorkerContext) -> None:
        wanted = quota(ctx.cfg.samples, ctx.workers, ctx.index)
        taken = 0
        while not ctx.chain_done(taken, wanted):
            ctx.step()
            if ctx.sample_due():
                ctx.check_finite()
                ctx.post(wire.SAMPLE, ctx.theta)
                taken += 1
        ctx.close()
        ctx.send(wire.DONE)

    def on_message(
        self, master: Master, src: int, kind: int, header: wire.WorkerHeader, payload: torch.Tensor
    ) -> wire.Message | None:
        if kind == wire.SAMPLE:
            master.record_sample(src - 1, int(header.step), payload)
        return None
