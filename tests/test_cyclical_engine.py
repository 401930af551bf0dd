"""Cyclical step sizes (cSG-MCMC) in the engine: the samplers, the step budgets per protocol,
and end-to-end runs of every protocol, checked against hand-computed steps and samples.

The tiny params (``conftest.TINY``): burn_in 20, thinning 2, samples 12, so a chain block is
``chain_steps = 20 + 11 x 2 = 42`` steps; with ``cycles: 2`` and ``exploration: 0.5``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from betamcmc.core.errors import ParamsError
from betamcmc.params import validate_params
from betamcmc.sgmcmc.engine.config import EngineConfig, RunSpec, chain_steps, quota
from betamcmc.sgmcmc.engine.launch import run_local
from betamcmc.sgmcmc.engine.result import RunResult
from betamcmc.sgmcmc.engine.samples import read_samples
from betamcmc.sgmcmc.engine.sghmc import SGHMC
from betamcmc.sgmcmc.engine.sgld import SGLD
from betamcmc.sgmcmc.engine.stepsize import Cycle
from betamcmc.sgmcmc.experiment import make_spec

from conftest import tiny_params

CYCLICAL = {"schedule": "cyclical", "cycles": 2, "exploration": 0.5, "phase": 0.0}


def config(**sampler: Any) -> EngineConfig:
    params = validate_params(tiny_params({"sgmcmc": {"sampler": {**CYCLICAL, **sampler}}}))
    return make_spec(params, "single", 1).config


def spec(protocol: str, workers: int = 2, **sampler: Any) -> RunSpec:
    params = validate_params(tiny_params({"sgmcmc": {"sampler": {**CYCLICAL, **sampler}}}))
    return make_spec(params, protocol, workers)


# ----------------------------------------------------------------------------- samplers
def test_sgld_follows_the_cycle_and_explores_without_noise() -> None:
    # 4 steps in one cycle, half explored: r = 0, 1/4 explore; r = 1/2, 3/4 sample
    sgld = SGLD(0.4, generator=torch.Generator().manual_seed(0), cycle=Cycle(4, 1, 0.5))
    theta, grad = torch.zeros(3), torch.zeros(3)
    sizes, moved = [], []
    for _ in range(4):
        sizes.append(sgld.current_step_size())
        before = theta.clone()
        sgld.step(theta, grad)
        moved.append(bool((theta != before).any()))
    half = math.cos(math.pi / 4) / 2  # alpha_0/2 (cos(pi r) + 1) at r = 1/4 and 3/4
    assert sizes == pytest.approx([0.4, 0.4 * (0.5 + half), 0.2, 0.4 * (0.5 - half)])
    assert moved == [False, False, True, True]  # a zero gradient moves theta only by noise


def test_sghmc_explores_as_momentum_sgd() -> None:
    sghmc = SGHMC(0.1, friction=0.5, generator=torch.Generator(), cycle=Cycle(4, 1, 0.5))
    theta, grad = torch.zeros(1), torch.ones(1)
    sghmc.step(theta, grad)  # v = -0.1, theta = -0.1: no noise in exploration
    assert theta.item() == pytest.approx(-0.1)
    sghmc.step(theta, grad)  # eta = 0.1 (0.5 + cos(pi/4)/2); v = 0.5 v - eta
    eta = 0.1 * (0.5 + math.cos(math.pi / 4) / 2)
    assert theta.item() == pytest.approx(-0.1 + (-0.05 - eta))


def test_constant_and_decay_samplers_have_no_cycle() -> None:
    assert config(schedule="constant").worker_cycle("single", 1, 1) is None
    cfg = config(schedule="decay", decay=0.5)
    assert cfg.worker_cycle("elastic", 2, 2) is None and not cfg.on_budget


# ----------------------------------------------------------------------------- budgets
def test_chain_budgets_per_protocol() -> None:
    cfg = config()
    assert cfg.on_budget  # a cyclical run always ends on its step budget
    assert chain_steps(20, 2, 12) == 42 and [quota(12, 2, w) for w in (1, 2)] == [6, 6]
    assert [cfg.chain_budget("single", 2, w) for w in (1, 2)] == [30, 30]  # 20 + 5 x 2 each
    assert [cfg.chain_budget("elastic", 2, w) for w in (1, 2)] == [30, 30]
    assert cfg.chain_budget("sync", 2, 1) == 42
    assert [cfg.chain_budget("downpour", 2, w) for w in (1, 2)] == [21, 21]  # ceil(42 / 2)
    assert cfg.master_budget() == 42


def test_worker_phases() -> None:
    cfg = config(phase=0.5)
    assert [cfg.worker_cycle("elastic", 2, w).phase for w in (1, 2)] == [0.0, 0.5]
    assert [cfg.worker_cycle("sync", 2, w).phase for w in (1, 2)] == [0.0, 0.0]  # one chain
    assert cfg.worker_cycle("downpour", 2, 2) == Cycle(21, 2, 0.5, 0.5)


@pytest.mark.parametrize(
    ("sampler", "message"),
    [
        ({"schedule": "constant", "decay": 0.5}, "decay is used only with schedule: decay"),
        ({"schedule": "decay", "decay": 0.0}, "decay must be > 0 when schedule is 'decay'"),
        ({"exploration": 1.0}, "sgmcmc.sampler.exploration"),
        ({"cycles": 0}, "sgmcmc.sampler.cycles"),
    ],
)
def test_bad_schedules_are_clear_errors(sampler: dict[str, Any], message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        config(**sampler)


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[RunResult, Path]]:
    out = {}
    for protocol in ("single", "sync", "downpour", "elastic"):
        d = tmp_path_factory.mktemp(protocol)
        out[protocol] = (run_local(spec(protocol), d), d)
    return out


def worker_steps(result: RunResult) -> list[int]:
    return [result.per_worker[w]["steps"] for w in ("1", "2")]


@pytest.mark.slow
def test_single_chains_run_their_budgets_and_sample_in_sampling_stages(runs: Any) -> None:
    # each chain: 30 steps in 2 cycles of 15; due steps 20, 22, .., 30 (t = step - 1); sampling
    # where t mod 15 >= 7.5: steps 24, 26, 28, 30 (t = 23 .. 29 -> 8 .. 14)
    result, d = runs["single"]
    s = read_samples(d)
    assert result.complete and result.budget_reached and worker_steps(result) == [30, 30]
    for chain in (0, 1):
        assert s.step[s.chain == chain].tolist() == [24, 26, 28, 30]
    assert result.samples == 8 and result.grad_evals == 60  # as the constant chains: 2 x 30


@pytest.mark.slow
def test_sync_runs_one_budget(runs: Any) -> None:
    # 42 steps in 2 cycles of 21: due steps 20, 22, .., 42; sampling where (step - 1) mod 21
    # >= 10.5: 20 (t 19), 34 .. 42 (t 33 .. 41 -> 12 .. 20)
    result, d = runs["sync"]
    assert result.complete and worker_steps(result) == [42, 42]
    assert read_samples(d).step.tolist() == [20, 34, 36, 38, 40, 42]


@pytest.mark.slow
def test_downpour_master_chain_stops_on_its_budget(runs: Any) -> None:
    result, d = runs["downpour"]
    s = read_samples(d)
    assert result.complete and result.budget_reached and result.dead == []
    assert sum(worker_steps(result)) >= 42  # the master's chain took its 42 steps
    assert 0 < result.samples < 12 and (s.chain == 0).all() and (np.diff(s.step) >= 2).all()


@pytest.mark.slow
def test_elastic_chains_sample_only_in_sampling_stages(runs: Any) -> None:
    result, d = runs["elastic"]
    s = read_samples(d)
    assert result.complete and result.budget_reached and min(worker_steps(result)) >= 30
    cycle = Cycle(30, 2, 0.5)
    assert len(s) > 0 and all(cycle.sampling(int(step) - 1) for step in s.step)
    assert (s.step >= 20).all()


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["single", "downpour"])
def test_a_constant_step_can_end_on_the_budget(tmp_path: Path, protocol: str) -> None:
    base = spec(protocol, schedule="constant")
    run = dataclasses.replace(base, config=dataclasses.replace(base.config, stop="budget"))
    result = run_local(run, tmp_path)
    assert result.complete and result.budget_reached
    if protocol == "single":  # 30 steps each, due at 20, 22, .., 30: 6 samples per chain
        assert worker_steps(result) == [30, 30] and result.samples == 12
    else:  # the master's chain took its 42 steps; a push may carry past a due step
        assert sum(worker_steps(result)) >= 42 and 0 < result.samples <= 12
