"""The benchmark scripts run end to end on a few steps and write their JSON (no timing asserted:
speed targets live in the scripts' figures, docs/development.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, SHARED_DATA, register_job, shared_data

pytestmark = pytest.mark.slow
PTB_VALID = SHARED_DATA / "ptb" / "valid.txt"


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "bench" / script), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def _job(script: str, *args: str, out: str) -> None:
    """The bench run of the test ``bench-<script>``: ``python bench/<script> --data
    <ptb valid> args... --out <its folder>/<out>`` in the background (conftest.register_job),
    as ``_run`` would run it (timeout 300 s); it cannot run without the corpus (the test
    skips)."""

    def command(dest: Path) -> list[str] | None:
        if not PTB_VALID.exists():
            return None
        return [sys.executable, str(REPO / "bench" / script), "--data", str(PTB_VALID), *args,
                "--out", str(dest / out)]  # fmt: skip

    register_job(f"bench-{script}", command, timeout_s=300)


_job("pretrain_throughput.py", "--threads", "2", "1", "--iterations", "2", "--warmup", "1",
     "--repeats", "1", "--emb", "16", "--hidden", "16", "--latent", "4", "--native-lstm",
     "--batch-split", "--gemm-size", "256", out="throughput.json")  # fmt: skip
_job("pretrain_heap.py", "--threads", "2", "--iterations", "5", "--skip", "2", "--repeats", "1",
     "--emb", "16", "--hidden", "16", "--latent", "4", "--gemm-size", "256",
     out="heap.json")  # fmt: skip
_job("pretrain_profile.py", "--iterations", "2", "--warmup", "1", "--repeats", "1",
     out="profile.json")  # fmt: skip


@pytest.mark.background("bench-pretrain_throughput.py")
def test_pretrain_throughput_writes_its_figures(background_job) -> None:
    shared_data("ptb", "valid.txt")
    proc, dest = background_job("bench-pretrain_throughput.py")
    out = dest / "throughput.json"
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    # oneDNN's LSTM kernels, PyTorch's own, and the batch split (2+ threads only)
    for mode, threads in (("fp32", "1"), ("fp32", "2"), ("fp32_native_lstm", "1"),
                          ("fp32_batch_split", "2")):  # fmt: skip
        run = res[mode][f"threads_{threads}"]
        assert run["tokens_per_s"]["median"] > 0 and run["gemm_gflops"]["median"] > 0
        assert 0 < run["utilization"]["median"] < 1.5
    assert "threads_1" not in res["fp32_batch_split"]
    assert res["scaling_2_over_1_threads_batch_split"] > 0
    assert res["machine"]["cpu_count"] >= 1 and "load_at_start" in res
    assert res["fp32"]["threads_1"]["page_faults_per_step"]["median"] >= 0
    assert res["heap"]["requested"] == "keep"


@pytest.mark.background("bench-pretrain_heap.py")
def test_pretrain_heap_compares_kept_and_default_heap(background_job) -> None:
    shared_data("ptb", "valid.txt")
    proc, dest = background_job("bench-pretrain_heap.py")
    out = dest / "heap.json"
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads(out.read_text())["threads"]["2"]
    for heap in ("keep", "default"):
        (run,) = row["runs"][heap]  # train_vae in its own process, timed after --skip steps
        assert run["tokens_per_s"] > 0 and run["steps"] == 2 and run["threads"] == 2
    assert row["keep_over_default"]["median"] > 0 and row["gemm_before"]["gflops"] > 0


@pytest.mark.background("bench-pretrain_profile.py")
def test_pretrain_profile_names_the_operators(background_job) -> None:
    shared_data("ptb", "valid.txt")
    proc, dest = background_job("bench-pretrain_profile.py")
    out = dest / "profile.json"
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    ops = {row["op"]: row for row in res["operators"]}
    assert "aten::mm" in ops and ops["aten::mm"]["ms_1t"] > 0
    assert abs(sum(row["share_1t"] for row in res["operators"]) - 1.0) < 1e-6
    assert set(res["threads"]) == {"1", "2"}
    assert res["summary"]["wall_speedup_2_over_1"] > 0


def test_bench_refuses_a_missing_corpus(tmp_path: Path) -> None:
    proc = _run("pretrain_profile.py", "--data", str(tmp_path / "nope.txt"),
                "--out", str(tmp_path / "p.json"))  # fmt: skip
    assert proc.returncode == 2 and "not found" in proc.stderr
    assert not (tmp_path / "p.json").exists()


def test_machine_facts_name_the_code_measured() -> None:
    """Every benchmark's JSON says which commit of betamcmc it measured (A/B runs import the
    older code from another checkout)."""
    import importlib.util

    import betamcmc

    spec = importlib.util.spec_from_file_location("bench_machine", REPO / "bench" / "machine.py")
    assert spec is not None and spec.loader is not None
    machine = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(machine)
    code = machine.facts()["code"]
    assert code["source"] == str(Path(betamcmc.__file__).resolve().parent)
    if not (REPO / ".git").exists():
        assert code["commit"] is None
        return
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    assert len(code["commit"]) >= 7 and head.startswith(code["commit"])
    assert isinstance(code["dirty"], bool)


def _metrics(root: Path, name: str, content: dict) -> None:
    path = root / "metrics" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))


def test_compare_outputs_sorts_what_may_differ_from_what_may_not(tmp_path: Path) -> None:
    """bench/compare_outputs.py: wall-clock keys and asynchronous arms (also inside a list of
    paired comparisons, keyed by their arms) may differ between two runs of the same code; a
    single chain's number may not; a file no stage writes is not compared."""
    before, after = tmp_path / "before", tmp_path / "after"

    def study(single_tv: float, async_tv: float, wall: float) -> dict:
        return {
            "arms": {"single-1-constant": {"mode_tv": single_tv, "wall_s": wall},
                     "downpour-2-constant": {"mode_tv": async_tv, "wall_s": wall}},
            "comparisons": [{"arm": "downpour-2-cyclical", "against": "downpour-2-constant",
                             "metric": "mode_tv", "diff": {"mean": async_tv}}],
        }  # fmt: skip

    _metrics(before, "same.json", {"a": 1})
    _metrics(after, "same.json", {"a": 1})
    _metrics(before, "timing.json", {"a": 1, "wall_s": 1.0})
    _metrics(after, "timing.json", {"a": 1, "wall_s": 2.0})
    _metrics(before, "study.json", study(0.5, 0.3, 1.0))
    _metrics(after, "study.json", study(0.5, 0.4, 2.0))
    _metrics(before, "changed.json", study(0.5, 0.3, 1.0))
    _metrics(after, "changed.json", study(0.6, 0.3, 1.0))
    _metrics(before, "studies/input.json", {"a": 1})  # a tracked input, not a stage's output
    _metrics(after, "studies/input.json", {"a": 2})
    outs = ["same.json", "timing.json", "study.json", "changed.json"]
    lock = {"stages": {"s": {"outs": [{"path": f"metrics/{name}"} for name in outs]}}}
    (before / "dvc.lock").write_text(json.dumps(lock))  # JSON is YAML
    out = tmp_path / "identity.json"
    proc = _run("compare_outputs.py", str(before), str(after), "--out", str(out))
    assert proc.returncode == 1, proc.stderr
    result = json.loads(out.read_text())
    assert result["identical"] == ["metrics/same.json"]
    assert result["timing_only"] == ["metrics/timing.json"]
    assert result["asynchronous"] == ["metrics/study.json"]
    assert result["unexpected"] == ["metrics/changed.json"]
    assert result["inputs_skipped"] == ["metrics/studies/input.json"]
