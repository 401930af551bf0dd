"""Sampler and chain settings that several params sections share, each field declared once.

A section that runs the SG-MCMC engine inherits the blocks it uses; the YAML keys stay flat in
their section (a block adds fields, not a nesting level)::

    block            fields                                   sections
    StepSize         step_size                                sgmcmc.sampler, sgmcmc.sgd,
                                                              sgmcmc.consistency, finetune.vae_head
    SamplerNoise     friction, temperature                    sgmcmc.sampler, rl
    Prior            prior_std                                sgmcmc, finetune.vae_head, rl
    Exchange         period, alpha, overlap                   sgmcmc, rl
    Chain            burn_in, thinning, samples, batch_size   sgmcmc, sgmcmc.consistency,
                                                              finetune.vae_head
    ProtocolRun      protocol, workers                        sgmcmc.items, finetune.vae_head

Units. ``burn_in`` and ``thinning`` count gradient steps of the chain that samples are taken
from: the worker's own chain for ``single``/``sync``/``elastic``, the master's chain for
``downpour`` (where one worker push of ``period`` local steps advances it by ``period``).
:meth:`betamcmc.sgmcmc.engine.config.EngineConfig.build` turns the blocks into the engine's settings.
This module is a leaf of the params graph: it imports only :mod:`betamcmc.core.schema`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from betamcmc.core.schema import Section

Protocol = Literal["single", "sync", "downpour", "elastic"]
PROTOCOLS: tuple[str, ...] = ("single", "sync", "downpour", "elastic")


class StepSize(Section):
    """The sampler's step size eta (the learning rate of the SGD(-momentum) form)."""

    step_size: float = Field(gt=0.0, description="eta (per-step learning rate on U)")


class SamplerNoise(Section):
    """SGHMC's friction and the posterior temperature of both samplers."""

    friction: float = Field(gt=0.0, le=1.0, description="SGHMC alpha = 1 - momentum")
    temperature: float = Field(
        ge=0.0, description="posterior temperature T (0 = SGD / SGD-momentum, the baseline)"
    )


class Prior(Section):
    """The isotropic Gaussian prior on every weight."""

    prior_std: float = Field(
        gt=0.0, description="std of the N(0, s^2) prior on every weight: weight decay 1/s^2"
    )


class Exchange(Section):
    """How downpour and elastic workers talk to the master."""

    period: int = Field(ge=1, description="tau: local steps between communications")
    alpha: float = Field(gt=0.0, le=1.0, description="elastic coupling strength")
    overlap: bool = Field(
        description="downpour/elastic: keep sampling while an exchange travels: faster, but a "
        "W = 1 run no longer repeats exactly (timing decides where the rebase happens)"
    )


class Chain(Section):
    """Which chain steps become samples, and the minibatch each step's gradient uses."""

    burn_in: int = Field(ge=0)
    thinning: int = Field(ge=1)
    samples: int = Field(ge=1, description="samples the master collects (all chains together)")
    batch_size: int = Field(ge=1)


class ProtocolRun(Section):
    """Where a chain runs: a protocol with W worker processes."""

    protocol: Protocol
    workers: int = Field(ge=1)
