"""Beta schedules: values at known iterations, cycle boundaries, ratio edges, shapes; params errors."""

from __future__ import annotations

import math

import pytest
import yaml

from betamcmc.core.errors import ParamsError
from betamcmc.params import load_params
from betamcmc.vae.schedules import (
    beta_at,
    beta_curve,
    constant_beta,
    cycle_index,
    cyclical_beta,
    monotonic_beta,
    ramp,
)

from conftest import tiny_params, write_params


def test_constant():
    assert constant_beta(0, 10) == 1.0
    assert constant_beta(9, 10, value=0.3) == 0.3


def test_cyclical_linear_boundaries():
    # 100 iterations, 4 cycles of 25, ramp over the first 50% (12.5 iterations), then hold at 1.
    total = 100
    for c in range(4):
        assert cyclical_beta(25 * c, total, 4, 0.5) == 0.0  # every cycle starts at `start`
        assert cyclical_beta(25 * c + 24, total, 4, 0.5) == 1.0  # ... and ends held at `stop`
    assert cyclical_beta(5, total, 4, 0.5) == pytest.approx(5 / 12.5)
    assert cyclical_beta(12, total, 4, 0.5) == pytest.approx(12 / 12.5)
    assert cyclical_beta(13, total, 4, 0.5) == 1.0
    assert cyclical_beta(30, total, 4, 0.5) == pytest.approx(5 / 12.5)
    assert [cycle_index(t, total, 4) for t in (0, 24, 25, 74, 75, 99)] == [0, 0, 1, 2, 3, 3]


def test_cyclical_uneven_period_and_start_stop():
    # 10 iterations in 3 cycles: period 10/3; cycle starts at t=0, 4 (3.33..), 7 (6.67..)
    values = [cyclical_beta(t, 10, 3, 1.0, start=0.2, stop=0.8) for t in range(10)]
    assert values[0] == pytest.approx(0.2)
    assert all(0.2 <= v <= 0.8 for v in values)
    assert values[3] > values[4] < values[5]  # a new cycle starts at t=4 (drop back down)
    assert values[6] > values[7]  # and at t=7


def test_ratio_edges():
    # ratio = 1: the ramp takes the whole cycle, so stop is never quite reached
    assert cyclical_beta(24, 100, 4, 1.0) == pytest.approx(24 / 25)
    assert max(beta_curve_fn(lambda t: cyclical_beta(t, 100, 4, 1.0), 100)) < 1.0
    # tiny ratio: stop right after the first iteration of each cycle
    assert cyclical_beta(0, 100, 4, 1e-6) == 0.0
    assert cyclical_beta(1, 100, 4, 1e-6) == 1.0
    # monotonic = one cycle
    assert monotonic_beta(0, 100, 0.25) == 0.0
    assert monotonic_beta(10, 100, 0.25) == pytest.approx(0.4)
    assert monotonic_beta(25, 100, 0.25) == 1.0
    assert monotonic_beta(99, 100, 0.25) == 1.0
    assert monotonic_beta(99, 100, 1.0) == pytest.approx(0.99)


def beta_curve_fn(fn, total):
    return [fn(t) for t in range(total)]


@pytest.mark.parametrize("shape", ["linear", "sigmoid", "cosine"])
def test_ramp_shapes(shape):
    assert ramp(0.0, shape) == pytest.approx(0.0, abs=1e-12)
    assert ramp(1.0, shape) == pytest.approx(1.0)
    assert ramp(0.5, shape) == pytest.approx(0.5)
    assert ramp(-1.0, shape) == pytest.approx(0.0, abs=1e-12) and ramp(2.0, shape) == pytest.approx(
        1.0
    )
    xs = [i / 20 for i in range(21)]
    ys = [ramp(x, shape) for x in xs]
    assert all(b >= a for a, b in zip(ys, ys[1:], strict=False))  # monotone non-decreasing


def test_shape_values():
    assert ramp(0.25, "cosine") == pytest.approx(0.5 - 0.5 * math.cos(math.pi / 4))
    assert ramp(0.25, "sigmoid") < 0.25 < ramp(0.25, "cosine") + 0.2  # sigmoid is flat early
    assert cyclical_beta(5, 100, 4, 0.5, shape="cosine") == pytest.approx(ramp(0.4, "cosine"))


def test_iteration_out_of_range():
    with pytest.raises(ValueError, match="iteration"):
        cyclical_beta(100, 100)
    with pytest.raises(ValueError, match="total"):
        constant_beta(0, 0)


def test_beta_at_from_params(tmp_path):
    params = load_params(write_params(tmp_path / "params.yaml", tiny_params()))
    scheds = params.pretrain.schedules
    assert beta_curve(scheds["constant"], 5) == [1.0] * 5
    curve = beta_curve(scheds["cyclical"], 40)
    assert curve[0] == 0.0 and curve[10] == 0.0 and max(curve) == 1.0
    assert beta_at(scheds["monotonic"], 39, 40) == 1.0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"cyclical": {"kind": "cyclical", "cycles": 0}},
            "pretrain.schedules.cyclical.cycles: must be >= 1 (got 0)",
        ),
        (
            {"cyclical": {"kind": "cyclical", "ratio": 0}},
            "pretrain.schedules.cyclical.ratio: must be > 0.0 (got 0)",
        ),
        (
            {"m": {"kind": "monotonic", "ratio": 1.5}},
            "pretrain.schedules.m.ratio: must be <= 1.0 (got 1.5)",
        ),
        (
            {"c": {"kind": "cyclical", "shape": "square"}},
            "pretrain.schedules.c.shape: must be one of",
        ),
        ({"x": {"kind": "exponential"}}, "pretrain.schedules.x: 'kind' must be one of"),
        ({"x": {"ratio": 0.5}}, "pretrain.schedules.x: missing required key 'kind'"),
        ({"c": {"kind": "constant", "cycles": 2}}, "pretrain.schedules.c.cycles: unknown key"),
        ({"bad/name": {"kind": "constant"}}, "pretrain.schedules: schedule names must be"),
        (
            {"c": {"kind": "constant", "lr_cycles": 0}},
            "pretrain.schedules.c.lr_cycles: must be >= 1 (got 0)",
        ),
        (
            {"r": {"kind": "cyclical", "lr_cycles": 1.5}},
            "pretrain.schedules.r.lr_cycles: must be an integer",
        ),
    ],
)
def test_bad_schedule_params(tmp_path, override, message):
    raw = tiny_params()
    raw["pretrain"]["schedules"] = override
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ParamsError) as err:
        load_params(path)
    text = str(err.value)
    assert message in text
    assert text.startswith(f"{path}:")
    line = int(text.split(":")[1])
    cited = path.read_text().splitlines()[line - 1].strip()
    # the cited line is the offending key's own line
    last_key = text.split(": ")[1].split(".")[-1]
    assert cited.startswith(f"{last_key}:"), (cited, text)


def test_bad_params_cli_exit_2(tmp_path):
    import subprocess
    import sys

    raw = tiny_params()
    raw["pretrain"]["schedules"]["cyclical"]["cycles"] = 0
    path = write_params(tmp_path / "params.yaml", raw)
    proc = subprocess.run(
        [sys.executable, "-m", "betamcmc.cli", "params", "check", str(path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("pretrain.schedules.cyclical.cycles: must be >= 1 (got 0)")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_cosine_lr_restarts_every_cycle():
    from betamcmc.vae.schedules import cosine_lr

    total, base = 400, 0.01
    lrs = [cosine_lr(t, total, base, cycles=4) for t in range(total)]
    for start in (0, 100, 200, 300):  # full rate at every cycle start, half way at its middle
        assert lrs[start] == pytest.approx(base)
        assert lrs[start + 50] == pytest.approx(base / 2)
        assert lrs[start + 99] < 0.01 * base
        assert all(a > b for a, b in zip(lrs[start : start + 99], lrs[start + 1 : start + 100]))
    assert [cosine_lr(t, total, base) for t in (0, 200)] == pytest.approx([base, base / 2])


@pytest.mark.parametrize(("name", "cycles"), [("cyclical", 1), ("cyclical-restart", 4)])
def test_training_follows_the_lr_schedule(name, cycles):
    """The optimizer's rate at every iteration is the schedule's: the shared pretrain.train
    lr_cycles (1) for the headline cyclical arm, its own 4 for cyclical-restart."""
    import torch

    from betamcmc.params import Params
    from betamcmc.vae import train as train_mod
    from betamcmc.vae.schedules import cosine_lr

    params = Params.model_validate(tiny_params())
    pp = params.pretrain.model_copy(
        update={
            "train": params.pretrain.train.model_copy(
                update={"lr_schedule": "cosine", "iterations": 40}
            )
        }
    )
    seen: list[float] = []
    real_step = train_mod.train_step

    def spy(model, optimizer, *args, **kwargs):
        seen.append(optimizer.param_groups[0]["lr"])
        return real_step(model, optimizer, *args, **kwargs)

    train_mod.train_step = spy
    try:
        sents = [[4, 5, 6], [7, 8], [9, 4, 4, 5]] * 10
        torch.set_num_threads(1)
        train_mod.train_vae(sents, sents[:4], 12, pp, params.runtime, name, 0)
    finally:
        train_mod.train_step = real_step
    assert pp.lr_cycles_of(name) == cycles
    assert seen == pytest.approx([cosine_lr(t, 40, pp.train.lr, cycles) for t in range(40)])
