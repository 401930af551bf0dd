"""The ``pretrain`` params section: beta schedules, model sizes, optimisation, evaluation.

``schedules`` maps a name (used as the DVC ``foreach`` key, the output directory and the MLflow
tag) to a schedule, a union discriminated on ``kind``::

    pretrain:
      schedules:
        constant:  {kind: constant}
        monotonic: {kind: monotonic, ratio: 0.25}
        cyclical:  {kind: cyclical, cycles: 4, ratio: 0.5, shape: linear}
        cyclical-restart: {kind: cyclical, cycles: 4, ratio: 0.5, lr_cycles: 4}

Every kind takes ``lr_cycles`` (int | null): the number of cosine learning-rate restarts of that
schedule's run; null uses ``pretrain.train.lr_cycles`` (:meth:`PretrainParams.lr_cycles_of`), so
the headline schedules share one learning-rate schedule and a named variant (Fu et al.'s recipe:
one restart per beta cycle) differs from its arm in that one setting.

Each schedule class evaluates itself: ``schedule.beta(t, T)`` (the pure functions of
:mod:`betamcmc.vae.schedules`). A user adds a schedule by adding an entry;
``dvc exp run -S pretrain.schedules.cyclical.cycles=8`` changes one. The paper's PTB setting: 1-layer LSTMs, 256 hidden, 256 embedding, latent 32,
dropout 0.5, batch 32, Adam 1e-3, gradient clipping; params.yaml (the only place for the values)
shrinks them for a fast pipeline.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from betamcmc.core.schema import Section, Seeds
from betamcmc.vae.schedules import (  # the ramp shapes and beta functions: where ramp() is
    Shape,
    constant_beta,
    cyclical_beta,
    monotonic_beta,
    schedule_cycles,
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class _ScheduleBase(Section):
    lr_cycles: int | None = Field(
        None,
        ge=1,
        description="cosine learning-rate restarts of this schedule's run; "
        "null: pretrain.train.lr_cycles",
    )


class ConstantSchedule(_ScheduleBase):
    """beta fixed at ``value`` (1.0: the plain VAE, which tends to collapse the KL term)."""

    kind: Literal["constant"]
    value: float = Field(1.0, ge=0.0)

    def beta(self, iteration: int, total: int) -> float:
        return constant_beta(iteration, total, self.value)


class _RampSchedule(_ScheduleBase):
    ratio: float = Field(0.5, gt=0.0, le=1.0, description="share of a cycle spent ramping")
    start: float = Field(0.0, ge=0.0, description="beta at the start of a ramp")
    stop: float = Field(1.0, ge=0.0, description="beta at the end of a ramp (then held)")
    shape: Shape = "linear"


class MonotonicSchedule(_RampSchedule):
    """Ramp from start to stop over the first ``ratio`` of all iterations, then hold (Bowman et al.)."""

    kind: Literal["monotonic"]
    ratio: float = Field(0.25, gt=0.0, le=1.0, description="share of all iterations spent ramping")

    def beta(self, iteration: int, total: int) -> float:
        return monotonic_beta(iteration, total, self.ratio, self.start, self.stop, self.shape)


class CyclicalSchedule(_RampSchedule):
    """``cycles`` repetitions of a ramp (first ``ratio`` of each cycle) then hold (Fu et al.)."""

    kind: Literal["cyclical"]
    cycles: int = Field(4, ge=1)
    zero: float = Field(
        0.0, ge=0.0, lt=1.0, description="share of each cycle held at `start` before the ramp"
    )
    restart_lr: bool = Field(
        False, description="reset the learning rate and Adam moments at the start of every cycle"
    )

    def beta(self, iteration: int, total: int) -> float:
        return cyclical_beta(
            iteration,
            total,
            cycles=self.cycles,
            ratio=self.ratio,
            start=self.start,
            stop=self.stop,
            shape=self.shape,
            zero=self.zero,
        )

    @model_validator(mode="after")
    def _fits_in_cycle(self) -> CyclicalSchedule:
        if self.zero + self.ratio > 1.0:
            raise ValueError(f"zero + ratio must be <= 1 (got {self.zero + self.ratio:g})")
        return self


Schedule = Annotated[
    ConstantSchedule | MonotonicSchedule | CyclicalSchedule, Field(discriminator="kind")
]


class VAEModelParams(Section):
    """Sizes of the LSTM VAE (the paper's PTB setting: 256 / 256 / 32)."""

    emb_dim: int = Field(ge=1)
    hidden_dim: int = Field(ge=1)
    latent_dim: int = Field(ge=1)
    bidirectional: bool = Field(description="bidirectional encoder LSTM")
    z_to_decoder: Literal["init", "concat", "both"] = Field(
        description="z sets the decoder's initial state, is concatenated to every input, or both"
    )
    dropout: float = Field(ge=0.0, lt=1.0, description="dropout on embeddings and decoder outputs")
    word_dropout: float = Field(
        ge=0.0, le=1.0, description="share of decoder input words replaced by <unk> (Bowman et al.)"
    )


class VAETrainParams(Section):
    """Optimisation: Adam, gradient clipping, a fixed number of iterations (minibatches)."""

    iterations: int = Field(ge=1, description="total training iterations (minibatches)")
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0.0)
    clip: float = Field(gt=0.0, description="max global gradient norm")
    eval_every: int = Field(
        ge=1, description="validate (and keep the best model) every N iterations"
    )
    lr_schedule: Literal["constant", "cosine"] = Field(
        description="constant, or cosine decay restarted every lr cycle (SGDR)"
    )
    lr_cycles: int | None = Field(
        ge=1,
        description="cosine restarts over the run, for every schedule without its own "
        "lr_cycles; null: the beta schedule's cycles (cyclical: its M, else 1)",
    )


class VAEEvalParams(Section):
    """Held-out evaluation (valid and test)."""

    importance_samples: int = Field(ge=1, description="k for the importance-sampled NLL")
    batch_size: int = Field(ge=1)
    active_threshold: float = Field(gt=0.0, description="Cov_x(E_q[z_d]) above this = active unit")


class VAEReportParams(Section):
    """The ``pretrain_report`` stage (comparison table and figures)."""

    toy_iterations: int = Field(
        ge=1, description="training steps of the toy experiment per schedule"
    )


class PretrainParams(Section):
    seeds: Seeds = Field(
        description="one VAE per seed and schedule (init, batch order); metrics: mean, std, CI",
    )
    schedules: dict[str, Schedule] = Field(min_length=1)
    model: VAEModelParams
    train: VAETrainParams
    eval: VAEEvalParams
    report: VAEReportParams

    def lr_cycles_of(self, name: str) -> int:
        """Cosine learning-rate cycles of schedule ``name``'s run: its own ``lr_cycles``, else
        ``train.lr_cycles``, else its beta cycles (cyclical: M; constant, monotonic: 1)."""
        schedule = self.schedules[name]
        if schedule.lr_cycles is not None:
            return schedule.lr_cycles
        if self.train.lr_cycles is not None:
            return self.train.lr_cycles
        return schedule_cycles(schedule)

    @field_validator("schedules", mode="after")
    @classmethod
    def _names_are_paths(cls, schedules: dict[str, object]) -> dict[str, object]:
        for name in schedules:
            if not _NAME.match(name):
                raise ValueError(
                    "schedule names must be letters, digits, '_', '-', '.' "
                    f"(they name output directories) (got {name!r})"
                )
        return schedules
