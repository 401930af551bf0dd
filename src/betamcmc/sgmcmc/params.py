"""The ``sgmcmc`` params section: samplers, protocols, workers, task, evaluation, consistency.

Every range check lives in a ``Field`` constraint or a validator here, so a bad value (e.g.
``workers: [0]``, ``period: 0``, ``alpha: 1.5``, ``step_size: -1``) ends the stage with one line::

    params.yaml:61: sgmcmc.period: must be >= 1 (got 0)

Units. ``burn_in`` and ``thinning`` count gradient steps of the chain that samples are taken
from: the worker's own chain for ``single``/``sync``/``elastic``, the master's chain for
``downpour`` (where one worker push of ``period`` local steps advances it by ``period``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from betamcmc.schema import Section, Seeds

Protocol = Literal["single", "sync", "downpour", "elastic"]
PROTOCOLS: tuple[str, ...] = ("single", "sync", "downpour", "elastic")


class SamplerParams(Section):
    """SG-MCMC update (see ``sgld.py`` / ``sghmc.py`` for the equations).

    ``step_size`` is the learning rate eta of the SGD(-momentum) form; ``temperature`` 0 turns
    SGLD into plain SGD and SGHMC into SGD with momentum ``1 - friction``, exactly.
    """

    kind: Literal["sgld", "sghmc"]
    step_size: float = Field(gt=0.0, description="eta (per-step learning rate on U)")
    friction: float = Field(gt=0.0, le=1.0, description="SGHMC alpha = 1 - momentum")
    temperature: float = Field(ge=0.0, description="posterior temperature T (0 = SGD)")
    decay: float = Field(
        ge=0.0, le=1.0, description="gamma in eta_t = eta (1+t/decay_steps)^-gamma"
    )
    decay_steps: int = Field(ge=1)


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


class SgdParams(Section):
    """The point-estimate baseline: the same sampler at temperature 0 (SGD / SGD-momentum on the MAP loss)."""

    steps: int = Field(ge=1)
    step_size: float = Field(gt=0.0)


class ConsistencyParams(Section):
    """Bias vs staleness on Bayesian logistic regression against a long full-batch MALA reference."""

    seeds: Seeds = Field(description="the study runs once per seed")
    protocols: list[Protocol] = Field(min_length=1)
    periods: list[Annotated[int, Field(ge=1)]] = Field(min_length=1)
    workers: int = Field(ge=1)
    step_size: float = Field(gt=0.0)
    burn_in: int = Field(ge=0)
    thinning: int = Field(ge=1)
    samples: int = Field(ge=2)
    batch_size: int = Field(ge=1)
    reference_steps: int = Field(ge=100, description="full-batch MALA steps of the reference")
    reference_step_size: float = Field(gt=0.0)


class ItemParams(Section):
    """One item of the ``sgmcmc`` stage: a protocol with W workers."""

    protocol: Protocol
    workers: int = Field(ge=1)


class SgmcmcParams(Section):
    sampler: SamplerParams
    prior_std: float = Field(gt=0.0, description="std of the N(0, s^2) prior on every weight")
    items: dict[str, ItemParams] = Field(
        min_length=1, description="the sgmcmc stage items, '<protocol>-<W>' -> protocol and W"
    )
    seeds: Seeds = Field(description="every item runs every seed")
    period: int = Field(ge=1, description="tau: local steps between communications")
    alpha: float = Field(gt=0.0, le=1.0, description="elastic coupling strength")
    overlap: bool = Field(description="downpour/elastic: keep sampling while an exchange travels")
    staleness: Literal["none", "inverse", "inverse_square"] = Field(
        description="downpour step size: none = step_size; inverse = step_size / (1 + s), "
        "inverse_square = step_size / (1 + s)^2 for a worker whose pushes arrive s master "
        "versions stale (measured, running mean); chain steps count the scaled steps",
    )
    burn_in: int = Field(ge=0)
    thinning: int = Field(ge=1)
    samples: int = Field(ge=1, description="samples the master collects (all chains together)")
    batch_size: int = Field(ge=1)
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
