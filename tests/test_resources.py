"""Settings that start more processes than the machine has cores warn (or, far beyond, fail
with the override named) at `betamcmc params check` and at every stage start
(betamcmc.core.resources.check_resources; docs/robustness.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from betamcmc.cli import main
from betamcmc.core import resources
from betamcmc.core.errors import ParamsError
from betamcmc.params import load_params

from conftest import REPO, copy_repo, tiny_params, write_params


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(resources, "CGROUP_CPU_MAX", Path("/nonexistent/cpu.max"))
    monkeypatch.delenv(resources.OVERSUBSCRIBE_ENV, raising=False)


def _params_file(tmp_path: Path, **sections: dict) -> Path:
    return write_params(tmp_path / "params.yaml", tiny_params(sections))


def _line_of(path: Path, text: str) -> int:
    return next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if text in ln)


def test_512_rl_workers_on_2_cores_fail_naming_setting_cores_and_override(
    tmp_path: Path, two_cores: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _params_file(tmp_path, rl={"workers": [512]})
    assert main(["params", "check", str(path)]) == 2
    err = capsys.readouterr().err
    line = _line_of(path, "- 512")
    assert err.count("\n") == 1, err
    assert err.startswith(f"error: {path}:{line}: rl.workers.0: 512 worker processes per run, "
                          "but this machine has 2 core(s)")  # fmt: skip
    assert "BETAMCMC_OVERSUBSCRIBE=1" in err


def test_the_override_turns_the_error_into_a_warning(
    tmp_path: Path, two_cores: None, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv(resources.OVERSUBSCRIBE_ENV, "1")
    path = _params_file(tmp_path, rl={"workers": [512]})
    assert main(["params", "check", str(path)]) == 0
    captured = capsys.readouterr()
    assert "rl.workers.0: 512 worker processes per run" in captured.err
    assert captured.err.startswith("warning: ") and "ok (" in captured.out


@pytest.mark.parametrize(
    ("sections", "named"),
    [
        ({"sgmcmc": {"items": {"downpour-3": {"protocol": "downpour", "workers": 3}}}},
         "sgmcmc.items.downpour-3.workers: 3 worker processes per run"),
        ({"sgmcmc": {"consistency": {"workers": 4}}},
         "sgmcmc.consistency.workers: 4 worker processes per run"),
        ({"finetune": {"vae_head": {"workers": 3, "protocol": "downpour"}}},
         "finetune.vae_head.workers: 3 worker processes per run"),
        ({"runtime": {"processes": 5}}, "runtime.processes: 5 pretrain seeds trained at once"),
        ({"runtime": {"threads": 8}}, "runtime.threads: 8 threads per process"),
    ],
)  # fmt: skip
def test_every_process_setting_above_the_cores_warns(
    tmp_path: Path, two_cores: None, sections: dict, named: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    load_params(_params_file(tmp_path, **sections))
    err = capsys.readouterr().err
    assert named in err and "this machine has 2 core(s)" in err, err
    assert err.startswith("warning: ") and err.count("\n") == 1


def test_within_the_cores_nothing_is_said(
    tmp_path: Path, two_cores: None, capsys: pytest.CaptureFixture[str]
) -> None:
    load_params(REPO / "params.yaml")  # the shipped pipeline: 2 workers, processes 0 (all seeds)
    load_params(_params_file(tmp_path))
    assert capsys.readouterr().err == ""


def test_the_core_count_is_the_affinity_capped_by_the_cgroup_quota(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    quota = tmp_path / "cpu.max"
    monkeypatch.setattr(resources, "CGROUP_CPU_MAX", quota)
    quota.write_text("max 100000\n")
    assert resources.machine_cores() == 16
    quota.write_text("150000 100000\n")
    assert resources.machine_cores() == 2
    with pytest.raises(ParamsError, match="this machine has 2 core"):
        resources.check_resources(load_params_quiet(tmp_path, rl={"workers": [9]}), str)


def test_a_stage_start_refuses_it_before_writing_anything(tmp_path: Path) -> None:
    """The same check at stage start, in a real stage process (cores from the environment:
    sched_getaffinity cannot be patched there, so the request is far above any machine), on a
    setting the stage reads (a stage loads only its sections: ``runtime`` is read by all)."""
    repo = copy_repo(tmp_path / "repo")
    write_params(repo / "params.yaml", tiny_params({"runtime": {"threads": 100000}}))
    env = {k: v for k, v in os.environ.items() if k != resources.OVERSUBSCRIBE_ENV}
    proc = subprocess.run(
        [sys.executable, "stages/prepare.py"],
        cwd=repo,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "runtime.threads: 100000 threads" in proc.stderr
    assert not (repo / "data" / "prepared").exists()


def load_params_quiet(tmp_path: Path, **sections: dict) -> object:
    """Validated params without the resource check (it is what the caller tests)."""
    from betamcmc.params import validate_params

    return validate_params(tiny_params(sections))
