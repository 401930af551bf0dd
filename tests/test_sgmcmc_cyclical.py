"""The 25-Gaussian benchmark (stage ``sgmcmc_cyclical``): the engine task's gradient, the coverage
metrics and curves on known samples, the verdict read from the numbers, and the stage's outputs
as the shared tiny pipeline run (``dvc repro``, conftest ``pipeline``) left them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from betamcmc.core.io import read_csv_rows
from betamcmc.sgmcmc.coverage import (
    CURVE_COLUMNS,
    SUMMARISED,
    Arm,
    arm_curves,
    compared_pairs,
    comparisons,
    coverage,
)
from betamcmc.sgmcmc.coverage_report import verdict_lines
from betamcmc.sgmcmc.engine.samples import Samples
from betamcmc.sgmcmc.mixture import Mixture
from betamcmc.sgmcmc.mixture_task import MixtureTask
from betamcmc.sgmcmc.seeds import aggregate

from conftest import PipelineRun

TASK = MixtureTask(per_side=5, spacing=2.0, variance=0.03, noise_std=1.0, init_box=10.0)


def test_the_task_gradient_is_grad_u_plus_the_generators_noise() -> None:
    torch.manual_seed(3)
    model = TASK.build_model()
    x = model.x.detach().numpy().astype(np.float64).copy()
    assert np.all(np.abs(x) <= 10.0)
    loss = TASK.minibatch_nll(model, torch.Generator().manual_seed(7))
    loss.backward()
    xi = torch.randn(2, generator=torch.Generator().manual_seed(7)).numpy()
    expected = TASK.mixture.grad_potential(x)[0] + 1.0 * xi
    np.testing.assert_allclose(model.x.grad.numpy(), expected, rtol=1e-4, atol=1e-4)
    # the loss value is U(x) + noise_std xi . x, U = -log p
    u = -TASK.mixture.log_density(x)[0]
    assert float(loss.detach()) == pytest.approx(u + float(xi @ x), rel=1e-4, abs=1e-3)


def test_the_closed_form_matches_autograd_of_the_torch_potential() -> None:
    for point in ([0.1, -0.2], [1.0, 1.0], [3.7, -5.2], [12.0, 9.0]):
        x = torch.tensor(point, dtype=torch.float64, requires_grad=True)
        TASK.potential(x).backward()
        u, grad = TASK.potential_and_grad(np.array(point))
        np.testing.assert_allclose(grad, x.grad.numpy(), rtol=1e-9, atol=1e-9)
        assert u == pytest.approx(float(TASK.potential(x.detach())), rel=1e-12)


def test_every_process_builds_the_same_start() -> None:
    starts = []
    for _ in range(2):
        torch.manual_seed(11)
        starts.append(TASK.build_model().x.detach().clone())
    assert torch.equal(starts[0], starts[1]) and TASK() is TASK and TASK.n_train == 1


def test_coverage_of_known_samples() -> None:
    mixture = Mixture()
    # three modes hit once each, one point between modes
    theta = np.array([[-4.0, -4.0], [0.05, 0.0], [4.0, 4.0], [1.0, 1.0]])
    c = coverage(theta, mixture, radius=3 * math.sqrt(0.03))
    assert c["modes_visited"] == 3 and c["off_mode"] == 0.25
    # 0.5 x (3 |0.25 - 0.04| + 22 x 0.04 + 0.25): shares 1/4 in 3 modes and off-mode
    assert c["mode_tv"] == pytest.approx(0.88)
    assert coverage(np.zeros((0, 2)), mixture, 0.5) == {
        "modes_visited": 0,
        "mode_tv": 1.0,
        "off_mode": 0.0,
    }


def _samples(theta: list[list[float]], grads: list[int]) -> Samples:
    n = len(theta)
    return Samples(
        header={},
        chain=np.zeros(n, dtype=np.int64),
        step=np.arange(n, dtype=np.int64),
        wall_s=np.linspace(0.1, 1.0, n),
        grad_evals=np.array(grads, dtype=np.int64),
        theta=np.array(theta, dtype=np.float32),
    )


def test_curves_count_the_modes_reached_within_each_budget() -> None:
    means = Mixture().means
    s = _samples([list(means[i]) for i in (0, 1, 1, 2)], [10, 20, 30, 40])
    grids = {"grads": np.array([10.0, 25.0, 40.0]), "wall_s": np.array([1.0])}
    rows = arm_curves(Arm("single", 1, "constant"), [s, s], grids, Mixture(), 0.5)
    assert set(CURVE_COLUMNS) == set(rows[0])
    assert [r["modes_visited"] for r in rows if r["axis"] == "grads"] == [1, 2, 3]
    assert rows[0]["mode_tv"] == pytest.approx(0.96)  # all in one of 25 equal modes
    assert rows[0]["modes_visited_ci_low"] == rows[0]["modes_visited"]  # identical seeds


def _arm(protocol: str, schedule: str, modes: list[float], tv: list[float]) -> dict:
    per_seed = [
        {"seed": i, "modes_visited": m, "mode_tv": t, "off_mode": 0.0, "grads": 100,
         "wall_s": 1.0, "samples_kept": 10}
        for i, (m, t) in enumerate(zip(modes, tv, strict=True))
    ]  # fmt: skip
    return {"protocol": protocol, "workers": 1, "schedule": schedule,
            **aggregate(per_seed, SUMMARISED)}  # fmt: skip


def test_the_verdict_is_read_from_the_paired_interval() -> None:
    arms = {
        "single-1-constant": _arm("single", "constant", [3, 4, 5, 4, 3], [0.8, 0.8, 0.7, 0.8, 0.8]),
        "single-1-cyclical": _arm("single", "cyclical", [9, 11, 10, 12, 10], [0.5, 0.8, 0.3, 0.9, 0.6]),
    }  # fmt: skip
    cmp = {c["metric"]: c for c in comparisons(arms)}
    assert cmp["modes_visited"]["verdict"] == "better" and cmp["modes_visited"]["wins"] == 5
    assert not cmp["modes_visited"]["intervals_overlap"]
    assert cmp["mode_tv"]["verdict"] == "indistinguishable"
    assert {(c["arm"], c["against"]) for c in cmp.values()} == {
        ("single-1-cyclical", "single-1-constant")
    }
    lines = verdict_lines({"comparisons": list(cmp.values())})
    assert lines[0].startswith(
        "- single-1-cyclical vs single-1-constant: **more modes** for single-1-cyclical (5/5"
    )
    assert "no difference in TV distance shown at 5 seeds" in lines[1]


def test_asynchronous_cyclical_arms_are_compared_with_the_single_cyclical_chain() -> None:
    arms = {
        f"{p}-{w}-{s}": {"protocol": p, "schedule": s}
        for p, w in (("single", 1), ("downpour", 2), ("elastic", 2))
        for s in ("constant", "cyclical")
    }
    assert compared_pairs(arms) == [
        ("single-1-cyclical", "single-1-constant"),
        ("downpour-2-cyclical", "downpour-2-constant"),
        ("elastic-2-cyclical", "elastic-2-constant"),
        ("downpour-2-cyclical", "single-1-cyclical"),
        ("elastic-2-cyclical", "single-1-cyclical"),
    ]


@pytest.mark.slow
def test_the_stage_writes_its_outputs(pipeline: PipelineRun) -> None:
    repo = pipeline.repo
    m = json.loads((repo / "metrics" / "sgmcmc_cyclical.json").read_text())
    assert set(m) == {"settings", "seeds", "arms", "comparisons"} and m["seeds"] == [10, 11]
    assert m["settings"]["chain_steps"] == 220 and m["settings"]["modes"] == 25
    names = [f"{p}-{w}-{s}" for p, w in (("single", 1), ("downpour", 2), ("elastic", 2))
             for s in ("constant", "cyclical")]  # fmt: skip
    assert list(m["arms"]) == names
    for arm in m["arms"].values():
        assert arm["n_seeds"] == 2 and [r["seed"] for r in arm["per_seed"]] == [10, 11]
        assert set(SUMMARISED) <= set(arm) and 0 <= arm["mode_tv"] <= 1
        assert all(0 <= r["modes_visited"] <= 25 for r in arm["per_seed"])
        kept = [r["samples_kept"] for r in arm["per_seed"]]
        if arm["protocol"] == "single":  # due steps 20, 25, .., 220 (41); cyclical: 4 cycles of
            # 55 steps, sampling where (step - 1) mod 55 >= 27.5: 24 of them
            assert kept == ([41, 41] if arm["schedule"] == "constant" else [24, 24])
        else:  # every arm ends on its step budget: an exchange may pass a due step
            assert max(kept) <= 41
    for schedule in ("constant", "cyclical"):  # the step budget K in both
        single = m["arms"][f"single-1-{schedule}"]["per_seed"]
        assert [r["grads"] for r in single] == [220, 220]
    assert len(m["comparisons"]) == 5 * 2  # 5 pairs x (modes visited, TV)
    rows = read_csv_rows(repo / "metrics" / "sgmcmc_cyclical_curves.csv")
    assert list(rows[0]) == list(CURVE_COLUMNS) and len(rows) == 6 * 2 * 5
    out = repo / "reports" / "sgmcmc_cyclical"
    assert (out / "mixture.png").stat().st_size > 1000
    assert "## Does the cyclical schedule visit more modes?" in (out / "table.md").read_text()
    page = (repo / "reports" / "index.md").read_text()
    assert "Mode coverage on the 25-Gaussian target" in page and "| single-1-cyclical |" in page


def test_the_results_page_section_reads_the_metrics() -> None:
    from betamcmc.results.page import cyclical_lines

    arms = {
        "single-1-constant": _arm("single", "constant", [3, 4, 5], [0.8, 0.7, 0.8]),
        "single-1-cyclical": _arm("single", "cyclical", [3, 5, 4], [0.8, 0.8, 0.7]),
    }
    m = {"settings": {"chain_steps": 5000}, "seeds": [10, 11, 12], "arms": arms,
         "comparisons": comparisons(arms)}  # fmt: skip
    text = "\n".join(cyclical_lines(m, {"sgmcmc_cyclical/mixture.png"}))
    assert "(5000 steps per chain block), over 3 seeds" in text
    assert "- single-1-cyclical vs single-1-constant: no difference in modes visited shown" in text
    assert "| single-1-cyclical | 4 ± 1 [1.52, 6.48] |" in text
    assert "![samples over the 25 modes" in text


def test_a_run_without_a_sample_is_empty_here_and_an_error_elsewhere(tmp_path, monkeypatch) -> None:
    """An asynchronous cyclical run whose exchanges all fall in exploration stages ends without
    a sample though no worker was lost: the engine says so (``NoSamples``, not "workers lost"),
    and the benchmark counts that arm-run as empty (no mode visited) with its gradients."""
    from types import SimpleNamespace

    from betamcmc.sgmcmc import coverage as cov
    from betamcmc.sgmcmc.engine import launch
    from betamcmc.sgmcmc.engine.master import WorkerLost
    from betamcmc.sgmcmc.engine.result import NoSamples
    from betamcmc.sgmcmc.engine.samples import SampleWriter

    spec = SimpleNamespace(protocol="downpour", workers=2, config=SimpleNamespace(burn_in=20))
    master = SimpleNamespace(samples=0, now=lambda: 1.0, t0=0.0)
    for dead, error in (([], NoSamples), ([{"worker": 2, "reason": "exit 1"}], WorkerLost)):
        fake = SimpleNamespace(dead=dead, grad_evals=220, wall_s=1.0)
        monkeypatch.setattr(launch, "run_master", lambda *a, **k: master)
        monkeypatch.setattr(launch, "run_result", lambda *a, fake=fake, **k: fake)
        with pytest.raises(error) as err:
            launch._master(spec, tmp_path, {}, None, 0.0)
        assert ("no worker lost" in str(err.value)) is (error is NoSamples)
    empty = NoSamples(SimpleNamespace(grad_evals=220, wall_s=1.0), burn_in=20)

    def sample(spec, sdir, info):  # the engine's empty samples file, then the error
        SampleWriter(sdir, [("theta", [2])], info).close()
        raise empty

    monkeypatch.setattr(cov, "sample", sample)
    run, s = cov.one_run(SimpleNamespace(seed=10), tmp_path / "s", Mixture(), radius=0.5)
    assert len(s) == 0
    assert run == {"seed": 10, "modes_visited": 0, "mode_tv": 1.0, "off_mode": 0.0,
                   "grads": 220, "wall_s": 1.0, "samples_kept": 0}  # fmt: skip
