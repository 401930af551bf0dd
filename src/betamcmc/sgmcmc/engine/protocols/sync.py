"""``sync``: synchronous data parallelism, the gradient all-reduced among the workers every step.

Every worker computes ``grad U~`` on its own minibatch (batch ``batch_size`` each, so the estimate
averages ``W x batch_size`` points), the workers all-reduce (average) it, and every replica applies
the same sampler step with the same noise stream, so the W replicas stay one chain. Worker 1 sends
the thinned samples (chain 0) to the master. This is what a user would pick without the paper:
each step costs one gradient plus one all-reduce of all D parameters (ring: ``2 (W-1)/W D`` floats
sent per worker), whatever the compute/communication ratio. A lost worker breaks the collective,
so ``sync`` stops with an error instead of going on (use downpour or elastic for that).
"""

from __future__ import annotations

import torch

from betamcmc.sgmcmc.engine import wire
from betamcmc.sgmcmc.engine.config import chain_steps
from betamcmc.sgmcmc.engine.master import Master, WorkerLost
from betamcmc.sgmcmc.engine.protocols.base import SamplingProtocol
from betamcmc.sgmcmc.engine.worker import WorkerContext


class Sync(SamplingProtocol):
    def worker(self, ctx: WorkerContext) -> None:
        cfg = ctx.cfg
        for _ in range(chain_steps(cfg.burn_in, cfg.thinning, cfg.samples)):
            ctx.gradient()
            if ctx.workers > 1:
                ctx.all_reduce_gradient()
            ctx.update()
            if ctx.sample_due() and ctx.index == 1:
                ctx.check_finite()
                ctx.post(wire.SAMPLE, ctx.theta)
        ctx.close()
        ctx.send(wire.DONE)

    def on_message(
        self, master: Master, src: int, kind: int, header: wire.WorkerHeader, payload: torch.Tensor
    ) -> wire.Message | None:
        if kind == wire.SAMPLE:
            master.record_sample(0, int(header.step), payload)
        return None

    def after_message(self, master: Master) -> None:
        if master.dead:
            self.on_abort(master, master.dead[0]["worker"])

    def on_abort(self, master: Master, src: int) -> None:
        raise WorkerLost(
            f"sync: worker {src} was lost and an all-reduce needs every worker; "
            "the run stops (downpour and elastic go on without a lost worker)"
        )
