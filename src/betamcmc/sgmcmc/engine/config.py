"""What one engine run needs: the sampler and chain settings (:class:`EngineConfig`) and the run
itself (:class:`RunSpec`: protocol, worker count, seed, device, task).

The engine reads nothing else. Every stage builds its :class:`EngineConfig` one way,
:meth:`EngineConfig.build`, from the params blocks its section shares
(:mod:`betamcmc.core.chainparams`: prior, exchange, chain) plus the settings named at the call, so
the engine never sees a whole ``params.yaml``::

    section = params.sgmcmc
    EngineConfig.build(
        sampler=SamplerConfig.of(section.sampler), prior=section, exchange=section, chain=section,
        runtime=params.runtime, staleness=section.staleness,
        straggler_delay=section.straggler_delay, step_size_key="sgmcmc.sampler.step_size",
    )

No field has a default: the numbers live in ``params.yaml`` only. The classes are plain frozen
dataclasses: they are pickled once per worker process at start-up.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch

from betamcmc.sgmcmc.engine.sghmc import SGHMC
from betamcmc.sgmcmc.engine.sgld import SGLD
from betamcmc.sgmcmc.engine.stepsize import Cycle, worker_phase

if TYPE_CHECKING:  # typing only: the engine does not need pydantic's params at run time
    from betamcmc.core.chainparams import Chain, Exchange, Prior
    from betamcmc.core.paramfile import RuntimeParams
    from betamcmc.sgmcmc.params import SamplerParams
    from betamcmc.sgmcmc.tasks import Task

StalenessRule = Literal["none", "inverse", "inverse_square"]
StopRule = Literal["samples", "budget"]


@dataclass(frozen=True)
class SamplerConfig:
    """SGLD or SGHMC on the flat parameters (equations in ``sgld.py`` / ``sghmc.py``)."""

    kind: Literal["sgld", "sghmc"]
    step_size: float
    friction: float
    temperature: float
    schedule: Literal["constant", "decay", "cyclical"]
    decay: float
    decay_steps: int
    cycles: int  # cyclical: M cycles over a chain's step budget
    exploration: float  # cyclical: share of a cycle explored (no noise, no samples)
    phase: float  # cyclical: worker w's cycle shifted by w x phase cycles

    def build(self, generator: torch.Generator, cycle: Cycle | None = None) -> SGLD | SGHMC:
        """The sampler; ``cycle``: this chain's cyclical schedule (:meth:`cycle_for`)."""
        common = dict(
            step_size=self.step_size,
            temperature=self.temperature,
            decay=self.decay,
            decay_steps=self.decay_steps,
            generator=generator,
            cycle=cycle,
        )
        if self.kind == "sgld":
            return SGLD(**common)
        return SGHMC(friction=self.friction, **common)

    def cycle_for(self, total: int, worker: int, workers: int) -> Cycle | None:
        """Worker ``worker``'s (1-based) cycle over ``total`` steps; None unless cyclical."""
        if self.schedule != "cyclical":
            return None
        phase = worker_phase(worker - 1, workers, self.phase)
        return Cycle(total, self.cycles, self.exploration, phase)

    @classmethod
    def of(
        cls,
        sampler: SamplerParams,
        *,
        step_size: float | None = None,
        temperature: float | None = None,
    ) -> SamplerConfig:
        """The ``sgmcmc.sampler`` settings; ``step_size`` / ``temperature`` replace its own
        (a section with its own step size, the temperature-0 SGD baseline)."""
        return cls(
            kind=sampler.kind,
            step_size=sampler.step_size if step_size is None else step_size,
            friction=sampler.friction,
            temperature=sampler.temperature if temperature is None else temperature,
            schedule=sampler.schedule,
            decay=sampler.decay,
            decay_steps=sampler.decay_steps,
            cycles=sampler.cycles,
            exploration=sampler.exploration,
            phase=sampler.phase,
        )


def chain_steps(burn_in: int, thinning: int, samples: int) -> int:
    """Steps a chain takes to collect ``samples`` at steps ``burn_in, burn_in + thinning, ...``
    (the first at step >= 1): the step budget of a chain block."""
    return max(burn_in, 1) + (samples - 1) * thinning


def quota(samples: int, workers: int, index: int) -> int:
    """Samples worker ``index`` (1-based) contributes: an even split, remainder to the first ones."""
    return samples // workers + (1 if index - 1 < samples % workers else 0)


@dataclass(frozen=True)
class ChainSteps:
    """The chain steps that become samples, where a stage computes them instead of reading a
    ``Chain`` block (the RL budget, the SGD baseline)."""

    burn_in: int
    thinning: int
    samples: int


@dataclass(frozen=True)
class EngineConfig:
    """Chain and communication settings of one run (units: chain steps; see ``params.py``).

    ``staleness`` names the step-size rule of downpour workers: ``"none"`` (every worker uses
    ``sampler.step_size``), ``"inverse"`` (a worker whose pushes arrive ``s`` master versions
    stale on average steps with ``step_size / (1 + s)``: with W workers s ~ W - 1, so the master's
    chain keeps the single chain's step, after Zhang et al. 2016's staleness-aware learning rate)
    or ``"inverse_square"`` (``step_size / (1 + s)^2``: also shrinks the step with the delay of
    the stale gradients, which grows with s; see docs/results/sgmcmc.md). ``s`` is measured by
    the master and sent back with every reply; the master counts each push as ``tau x factor``
    chain steps, so burn-in and thinning stay in single-chain steps.
    ``worker_timeout``: seconds without any message from a worker (a helper thread sends a
    heartbeat whenever the worker has been silent for a second) before the master counts it as
    lost. Nothing else times out: a slow gradient, a silent burn-in or a straggler never does.
    ``step_size_key``: the params key a divergence message tells the user to lower.
    """

    sampler: SamplerConfig
    prior_std: float
    period: int
    alpha: float
    overlap: bool
    burn_in: int
    thinning: int
    samples: int
    straggler_delay: float
    threads: int  # torch threads per process (0: torch's default)
    worker_timeout: float
    staleness: StalenessRule
    step_size_key: str  # named in a divergence's one-line error
    stop: StopRule  # end on the sample count, or on each chain's step budget (chain_budget)

    @classmethod
    def build(
        cls,
        *,
        sampler: SamplerConfig,
        prior: Prior,
        exchange: Exchange,
        chain: Chain | ChainSteps,
        runtime: RuntimeParams,
        staleness: StalenessRule,
        straggler_delay: float,
        step_size_key: str,
        stop: StopRule = "samples",
    ) -> EngineConfig:
        """The one way to make an engine config: the prior, exchange and chain blocks of a
        params section (or :class:`ChainSteps`), ``runtime``'s threads and worker timeout, and
        the settings a section may lack, named; ``stop``: see :attr:`on_budget`."""
        return cls(
            sampler=sampler,
            prior_std=prior.prior_std,
            period=exchange.period,
            alpha=exchange.alpha,
            overlap=exchange.overlap,
            burn_in=chain.burn_in,
            thinning=chain.thinning,
            samples=chain.samples,
            straggler_delay=straggler_delay,
            threads=runtime.threads,
            worker_timeout=runtime.worker_timeout,
            staleness=staleness,
            step_size_key=step_size_key,
            stop=stop,
        )

    @property
    def on_budget(self) -> bool:
        """Does every chain end on its step budget (:meth:`chain_budget`) instead of the sample
        count? Under ``stop: budget`` and always under a cyclical step size; the samples are then
        the due steps (in sampling stages) the budget holds, so a protocol that misses due
        steps (downpour) keeps fewer, and every arm takes the same gradients."""
        return self.stop == "budget" or self.sampler.schedule == "cyclical"

    def chain_budget(self, protocol: str, workers: int, worker: int) -> int:
        """The steps worker ``worker``'s (1-based) chain takes on a step budget
        (:attr:`on_budget`), the steps its cycles are laid over: ``single`` / ``elastic``: its own chain with its quota
        of the samples; ``sync``: the one chain; ``downpour``: its share of the master's chain
        (the master stops at :meth:`master_budget`). Every arm with the same chain block so
        takes the same gradients as the constant-step run (elastic: one burn-in per chain)."""
        whole = chain_steps(self.burn_in, self.thinning, self.samples)
        if protocol in ("single", "elastic"):
            return chain_steps(self.burn_in, self.thinning, quota(self.samples, workers, worker))
        if protocol == "downpour":
            return math.ceil(whole / workers)
        return whole

    def master_budget(self) -> int:
        """Steps of the master's chain (downpour) on a step budget."""
        return chain_steps(self.burn_in, self.thinning, self.samples)

    def worker_cycle(self, protocol: str, workers: int, worker: int) -> Cycle | None:
        """Worker ``worker``'s cycle (None unless cyclical); ``sync`` replicas share one."""
        budget = self.chain_budget(protocol, workers, worker)
        if protocol == "sync":
            return self.sampler.cycle_for(budget, 1, 1)
        return self.sampler.cycle_for(budget, worker, workers)

    def replace(self, **changes: Any) -> EngineConfig:
        """A copy with fields changed (the consistency study's period per arm)."""
        return dataclasses.replace(self, **changes)

    def with_sampler(self, **changes: Any) -> EngineConfig:
        """A copy with sampler fields changed."""
        return dataclasses.replace(self, sampler=dataclasses.replace(self.sampler, **changes))


@dataclass(frozen=True)
class RunSpec:
    """One run: W = ``workers`` worker processes plus the master, each building the task with
    ``task_factory`` (picklable: it crosses into every worker process)."""

    config: EngineConfig
    protocol: str
    workers: int
    seed: int
    task_factory: Callable[[], Task]
    device: str = "cpu"

    def make_task(self) -> Task:
        return self.task_factory()

    def worker_device(self, rank: int) -> str:
        """Where worker ``rank``'s model lives: on CUDA one GPU per worker, round robin."""
        if not self.device.startswith("cuda"):
            return self.device
        count = max(1, torch.cuda.device_count())
        return f"cuda:{(rank - 1) % count}"

    def nccl_workers(self) -> bool:
        """May ``sync`` all-reduce with NCCL? Only when every worker has a GPU of its own (NCCL
        refuses two ranks on one device); otherwise gloo all-reduces, also CUDA tensors."""
        return self.device.startswith("cuda") and self.workers <= torch.cuda.device_count()
