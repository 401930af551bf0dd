"""What one engine run needs: the sampler and chain settings (:class:`EngineConfig`) and the run
itself (:class:`RunSpec`: protocol, worker count, seed, device, task).

The engine reads nothing else. Stages build an :class:`EngineConfig` from their own params section
(:meth:`EngineConfig.from_params` for ``sgmcmc``, with the fields the consistency study and the
VAE head set themselves replaced; the RL stage fills in every field from ``rl``), so the engine
never sees a whole ``params.yaml``. No field has a default: the numbers live in ``params.yaml``
only. Both classes are plain frozen dataclasses: they are pickled once per worker process at
start-up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch

from betamcmc.sgmcmc.sghmc import SGHMC
from betamcmc.sgmcmc.sgld import SGLD

if TYPE_CHECKING:  # typing only: the engine does not need pydantic's params at run time
    from betamcmc.params import RuntimeParams
    from betamcmc.sgmcmc.params import SgmcmcParams
    from betamcmc.sgmcmc.tasks import Task

StalenessRule = Literal["none", "inverse", "inverse_square"]


@dataclass(frozen=True)
class SamplerConfig:
    """SGLD or SGHMC on the flat parameters (equations in ``sgld.py`` / ``sghmc.py``)."""

    kind: Literal["sgld", "sghmc"]
    step_size: float
    friction: float
    temperature: float
    decay: float
    decay_steps: int

    def build(self, generator: torch.Generator) -> SGLD | SGHMC:
        if self.kind == "sgld":
            return SGLD(self.step_size, self.temperature, self.decay, self.decay_steps, generator)
        return SGHMC(
            self.step_size,
            self.friction,
            self.temperature,
            self.decay,
            self.decay_steps,
            generator,
        )


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

    @classmethod
    def from_params(
        cls, sg: SgmcmcParams, runtime: RuntimeParams, **overrides: Any
    ) -> EngineConfig:
        """The engine settings of the ``sgmcmc`` params section and of ``runtime`` (threads,
        worker timeout; ``overrides`` replace fields)."""
        s = sg.sampler
        fields: dict[str, Any] = {
            "sampler": SamplerConfig(
                s.kind, s.step_size, s.friction, s.temperature, s.decay, s.decay_steps
            ),
            "prior_std": sg.prior_std,
            "period": sg.period,
            "alpha": sg.alpha,
            "overlap": sg.overlap,
            "burn_in": sg.burn_in,
            "thinning": sg.thinning,
            "samples": sg.samples,
            "straggler_delay": sg.straggler_delay,
            "threads": runtime.threads,
            "worker_timeout": runtime.worker_timeout,
            "staleness": sg.staleness,
            "step_size_key": "sgmcmc.sampler.step_size",
        }
        fields.update(overrides)
        return cls(**fields)

    def replace(self, **changes: Any) -> EngineConfig:
        return dataclasses.replace(self, **changes)

    def with_sampler(self, **changes: Any) -> EngineConfig:
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
