"""The ``sgmcmc`` params section: samplers, protocols, workers, task, evaluation, consistency.

Every range check lives in a ``Field`` constraint or a validator, here or in the shared blocks
(:mod:`betamcmc.core.chainparams`: step size, sampler noise, prior, exchange, chain, protocol run;
units of ``burn_in`` and ``thinning`` there), so a bad value (e.g. ``workers: [0]``,
``period: 0``, ``alpha: 1.5``, ``step_size: -1``) ends the stage with one line::

    params.yaml:61: sgmcmc.period: must be >= 1 (got 0)
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from betamcmc.core.chainparams import (
    PROTOCOLS,
    Chain,
    Exchange,
    Prior,
    Protocol,
    ProtocolRun,
    SamplerNoise,
    StepSize,
)
from betamcmc.core.schema import Section, Seeds

__all__ = ["PROTOCOLS", "Protocol", "SamplerParams", "SgmcmcParams", "TaskParams"]


class SamplerParams(StepSize, SamplerNoise):
    """SG-MCMC update (see ``sgld.py`` / ``sghmc.py`` for the equations).

    ``step_size`` is the learning rate eta of the SGD(-momentum) form; ``temperature`` 0 turns
    SGLD into plain SGD and SGHMC into SGD with momentum ``1 - friction``, exactly.
    """

    kind: Literal["sgld", "sghmc"]
    schedule: Literal["constant", "decay", "cyclical"] = Field(
        description="step size over the run: constant eta; decay (polynomial, decay / "
        "decay_steps); cyclical (cSG-MCMC: cycles, exploration, phase; see stepsize.py)"
    )
    decay: float = Field(
        ge=0.0, le=1.0, description="gamma in eta_t = eta (1+t/decay_steps)^-gamma (decay)"
    )
    decay_steps: int = Field(ge=1)
    cycles: int = Field(ge=1, description="cyclical: M cycles over each chain's step budget")
    exploration: float = Field(
        ge=0.0, lt=1.0, description="cyclical: share of a cycle explored (no noise, no samples)"
    )
    phase: float = Field(
        ge=0.0, lt=1.0, description="cyclical: worker w's cycle is shifted by w x phase cycles"
    )

    @model_validator(mode="after")
    def _decay_only_when_decaying(self) -> SamplerParams:
        if self.schedule == "decay" and self.decay == 0.0:
            raise ValueError("decay must be > 0 when schedule is 'decay'")
        if self.schedule != "decay" and self.decay != 0.0:
            raise ValueError(
                f"decay is used only with schedule: decay (got decay {self.decay:g} with "
                f"schedule {self.schedule!r}; set decay: 0.0 or schedule: decay)"
            )
        return self


class TaskParams(Section):
    """What is sampled: ``digits`` (MLP on scikit-learn digits, embedded), ``mnist`` (CNN on IDX
    files under ``path``) or ``logreg`` (Bayesian logistic regression on a synthetic data set)."""

    kind: Literal["digits", "mnist", "logreg"]
    path: str | None = Field(description="directory with MNIST-format IDX files (mnist)")
    hidden: int = Field(ge=1, description="MLP hidden width (digits)")
    channels: int = Field(ge=1, description="first conv layer channels (mnist)")
    test_fraction: float = Field(gt=0.0, lt=1.0, description="held-out share (digits, logreg)")
    max_train: int | None = Field(ge=1, description="cap on training examples (mnist)")
    max_test: int | None = Field(ge=1, description="cap on test examples (mnist)")
    logreg_n: int = Field(ge=2, description="examples of the synthetic logreg data")
    logreg_dim: int = Field(ge=1, description="features of the synthetic logreg data")

    @model_validator(mode="after")
    def _path_for_mnist(self) -> TaskParams:
        if self.kind == "mnist" and not self.path:
            raise ValueError("path is required when kind is 'mnist' (directory of IDX files)")
        return self


class SgdParams(StepSize):
    """The point-estimate baseline: the same sampler at temperature 0 (SGD / SGD-momentum on the MAP loss)."""

    steps: int = Field(ge=1)


class ConsistencyParams(Chain, StepSize):
    """Bias vs staleness on Bayesian logistic regression against a long full-batch MALA reference."""

    seeds: Seeds = Field(description="the study runs once per seed")
    protocols: list[Protocol] = Field(min_length=1)
    periods: list[Annotated[int, Field(ge=1)]] = Field(min_length=1)
    workers: int = Field(ge=1)
    samples: int = Field(
        ge=2, description="samples per run (two at least: a variance is estimated)"
    )
    reference_steps: int = Field(ge=100, description="full-batch MALA steps of the reference")
    reference_step_size: float = Field(gt=0.0)


Schedule = Literal["constant", "cyclical"]


class CyclicalParams(Prior, Exchange, SamplerNoise, StepSize):
    """The 25-Gaussian benchmark of cSG-MCMC (stage ``sgmcmc_cyclical``): every protocol in
    ``protocols`` (``single`` with one worker, the others with ``workers``) under every step
    schedule in ``schedules``, with one chain block (``burn_in`` / ``thinning`` / ``samples``:
    the step budget K, so every arm takes the same gradients) and its own sampler settings
    (``step_size``: the constant arms' eta; ``cyclical_step_size``: alpha_0 of the cyclical
    arms). ``prior_std`` should be huge (the engine's prior pull ``x / prior_std^2``
    vanishes: the target is the mixture alone)."""

    seeds: Seeds = Field(
        min_length=2, description="every arm runs every seed (mean / CI over them)"
    )
    protocols: list[Protocol] = Field(min_length=1)
    workers: int = Field(ge=1, description="workers of every protocol but single (1)")
    schedules: list[Schedule] = Field(min_length=1, description="constant and / or cyclical")
    kind: Literal["sgld", "sghmc"]
    cyclical_step_size: float = Field(gt=0.0, description="alpha_0 of the cyclical arms")
    cycles: int = Field(ge=1, description="M cosine cycles over each chain's step budget")
    exploration: float = Field(
        ge=0.0, lt=1.0, description="share of each cycle explored (no noise, no samples)"
    )
    phase: float = Field(ge=0.0, lt=1.0, description="worker w's cycle shifted by w x phase cycles")
    burn_in: int = Field(ge=0, description="chain steps before the first due sample")
    thinning: int = Field(ge=1, description="chain steps between due samples")
    samples: int = Field(
        ge=2,
        description="due samples of a constant arm (cyclical arms keep those in sampling stages)",
    )
    init_box: float = Field(gt=0.0, description="start x0 uniform in [-init_box, init_box]^2")
    noise_std: float = Field(ge=0.0, description="std of the noise added to grad U")
    variance: float = Field(gt=0.0, description="s^2 of every mixture component")
    mode_radius: float = Field(
        gt=0.0, description="a sample within mode_radius x s of a mode counts for it"
    )
    curve_points: int = Field(ge=2, description="gradient budgets / times on the coverage curves")


class ItemParams(ProtocolRun):
    """One item of the ``sgmcmc`` stage: a protocol with W workers."""


class SgmcmcParams(Prior, Exchange, Chain):
    """The ``sgmcmc`` section: the stage items and everything they share; ``prior_std``,
    ``period`` / ``alpha`` / ``overlap`` and ``burn_in`` / ``thinning`` / ``samples`` /
    ``batch_size`` come from the blocks (:mod:`betamcmc.core.chainparams`)."""

    sampler: SamplerParams
    items: dict[str, ItemParams] = Field(
        min_length=1, description="the sgmcmc stage items, '<protocol>-<W>' -> protocol and W"
    )
    seeds: Seeds = Field(description="every item runs every seed")
    staleness: Literal["none", "inverse", "inverse_square"] = Field(
        description="downpour step size: none = step_size; inverse = step_size / (1 + s), "
        "inverse_square = step_size / (1 + s)^2 for a worker whose pushes arrive s master "
        "versions stale (measured, running mean); chain steps count the scaled steps",
    )
    straggler_delay: float = Field(
        ge=0.0, description="seconds added to each step of the last worker (W >= 2)"
    )
    allow_partial: bool = Field(
        description="accept a run that lost workers and collected fewer samples than configured "
        "(default: such a run fails the stage)"
    )
    eval_points: int = Field(
        ge=1, description="test points whose log-probabilities feed ESS / R-hat"
    )
    task: TaskParams
    sgd: SgdParams
    consistency: ConsistencyParams
    cyclical: CyclicalParams

    @model_validator(mode="after")
    def _items_named(self) -> SgmcmcParams:
        for name, item in self.items.items():
            if name != f"{item.protocol}-{item.workers}":
                raise ValueError(
                    f"items: {name!r} must be named '{item.protocol}-{item.workers}' "
                    "(<protocol>-<W>: DVC names the item and its outputs so)"
                )
        return self

    def item_pairs(self) -> list[tuple[str, int]]:
        """``(protocol, workers)`` of every item, in params order."""
        return [(i.protocol, i.workers) for i in self.items.values()]
