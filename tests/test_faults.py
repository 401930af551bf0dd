"""Faults (docs/robustness.md): SIGTERM / SIGINT at any point of a stage leaves the previous
outputs or complete new ones (never a half-written output), and says which; a full disk gives one
clear line and keeps the previous outputs.

The signals are sent by the stage's own process from inside the step named (a patched library
call), so each test hits the moment it names every time; the stages run in-process under
``run_stage``, as ``python stages/<stage>.py`` runs them.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from betamcmc.core import io
from betamcmc.core.runner import run_stage

from conftest import REPO, tiny_params, vae_config


def _stage(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(name: str, args: list[str]) -> int:
    module = _stage(name)
    try:
        run_stage(lambda: module.main(args))
    except SystemExit as done:
        return int(done.code or 0)
    return 0


def _signal_then(fn: Callable[..., Any], signum: int = signal.SIGTERM) -> Callable[..., Any]:
    """``fn`` that first sends ``signum`` to this process (as ``kill`` or Ctrl-C would)."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        os.kill(os.getpid(), signum)
        return fn(*args, **kwargs)

    return wrapped


def _tree(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow store for the module (its schema is created once, not per test)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: str) -> Path:
    """An empty project folder with the tiny params."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    (tmp_path / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())  # the outputs' paths
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    return tmp_path


def _prepare(project: Path) -> dict[str, bytes]:
    assert _run("prepare", []) == 0
    return {
        **_tree(project / "data"),
        "prepare.json": (project / "metrics/prepare.json").read_bytes(),
    }


def _outputs(project: Path) -> dict[str, bytes]:
    return {
        **_tree(project / "data"),
        "prepare.json": (project / "metrics/prepare.json").read_bytes(),
    }


def _errors(capsys: pytest.CaptureFixture[str]) -> str:
    """The stage's error lines (MLflow logs INFO lines to stderr when it creates a store)."""
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "mlflow.store.db" not in ln]
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    return lines[0] + "\n"


def _no_temp(project: Path) -> None:
    left = [str(p) for p in project.rglob("*.tmp")]
    assert not left, f"temporary outputs left behind: {left}"


# --------------------------------------------------------------------------- prepare
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_prepare_signal_while_loading_keeps_previous_outputs(project, monkeypatch, capsys, signum):
    previous = _prepare(project)
    params = tiny_params({"data": {"synthetic": {"train": 150}}})
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    module = _stage("prepare")
    import betamcmc.data.prepare as work  # the stage's work (run_prepare) calls these

    monkeypatch.setattr(work, "prepare", _signal_then(work.prepare, signum))
    capsys.readouterr()
    try:
        run_stage(lambda: module.main([]))
    except SystemExit as done:
        code = done.code
    assert code == 128 + signum
    name = signal.Signals(signum).name
    assert _errors(capsys) == (f"error: stopped by {name}; outputs are replaced whole or "
                                       "not at all, so the previous ones are kept\n")  # fmt: skip
    assert _outputs(project) == previous
    _no_temp(project)


def test_prepare_sigterm_while_writing_completes_the_pair(project, monkeypatch, capsys):
    previous = _prepare(project)
    params = tiny_params({"data": {"synthetic": {"train": 150}}})
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    module = _stage("prepare")
    import betamcmc.data.prepare as work  # the stage's work (run_prepare) calls these

    monkeypatch.setattr(work, "write_prepared", _signal_then(work.write_prepared))
    capsys.readouterr()
    try:
        run_stage(lambda: module.main([]))
    except SystemExit as done:
        assert done.code == 143
    err = _errors(capsys)
    assert err == ("error: stopped by SIGTERM; it arrived while the outputs were written; they are "
                   "complete\n")  # fmt: skip
    new = _outputs(project)
    assert new != previous
    stats = json.loads(new["prepare.json"])
    assert stats["train"]["sentences"] == 150
    lines = (project / "data/prepared/sentences.train.jsonl").read_text().splitlines()
    assert len(lines) == 150  # the corpus matches its statistics
    _no_temp(project)


# --------------------------------------------------------------------------- classify, dialog
def _pretrained(project: Path) -> None:
    import torch

    from betamcmc.data.prepared import load_vocab
    from betamcmc.vae.model import TextVAE, save_vae

    vocab = load_vocab(project / "data/prepared/vocab.txt")
    torch.manual_seed(0)
    out = project / "models/pretrain/constant"
    out.mkdir(parents=True)
    save_vae(TextVAE(vae_config(len(vocab), emb_dim=8, hidden_dim=8, latent_dim=2)),
             out / "model.pt")  # fmt: skip
    (out / "vocab.txt").write_bytes((project / "data/prepared/vocab.txt").read_bytes())


def test_classify_sigterm_keeps_previous_metrics(project, monkeypatch, capsys):
    _prepare(project)
    _pretrained(project)
    metrics = project / "metrics/classify"
    metrics.mkdir(parents=True)
    (metrics / "constant.json").write_text('{"previous": true}\n')
    (metrics / "constant_accuracy.csv").write_text("previous\n")
    import betamcmc.finetune.classify as classify

    monkeypatch.setattr(classify, "classify_vaes", _signal_then(classify.classify_vaes))
    capsys.readouterr()
    assert _run("classify", ["constant"]) == 143
    assert "error: stopped by SIGTERM; outputs are replaced whole" in _errors(capsys)
    assert (metrics / "constant.json").read_text() == '{"previous": true}\n'
    assert (metrics / "constant_accuracy.csv").read_text() == "previous\n"
    _no_temp(project)


def test_dialog_sigterm_during_training_and_during_writing(project, monkeypatch, capsys):
    _prepare(project)
    _pretrained(project)
    import betamcmc.finetune.cvae as cvae
    import betamcmc.finetune.dialog as dialog

    real_train = dialog.train_cvae
    monkeypatch.setattr(dialog, "train_cvae", _signal_then(real_train))
    capsys.readouterr()
    assert _run("dialog", ["constant", "--bow", "bow"]) == 143
    assert "outputs are replaced whole or not at all" in _errors(capsys)
    assert not (project / "models/dialog").exists() and not (project / "metrics/dialog").exists()
    _no_temp(project)

    # during the writes: the model folder and its metrics both land (a pair); exit 143 says so
    monkeypatch.setattr(dialog, "train_cvae", real_train)
    monkeypatch.setattr(cvae, "save_cvae", _signal_then(cvae.save_cvae))
    assert _run("dialog", ["constant", "--bow", "bow"]) == 143
    assert _errors(capsys).endswith("they are complete\n")
    assert (project / "models/dialog/constant-bow/model.pt").is_file()
    metrics = json.loads((project / "metrics/dialog/constant-bow.json").read_text())
    assert metrics["schedule"] == "constant" and metrics["bow"] is True
    _no_temp(project)


# --------------------------------------------------------------------------- pretrain
def test_pretrain_stop_during_final_evaluation_saves_nothing(project, monkeypatch):
    """A SIGTERM that arrives while the final evaluation runs: no model is saved, the resumable
    checkpoint is kept, the run ends as interrupted."""
    import betamcmc.vae.evaluate as evaluate
    from betamcmc.params import validate_params
    from betamcmc.vae.pretrain_seed import RESUME, SeedJob, train_seed
    from betamcmc.vae.train import TrainingInterrupted

    params = validate_params(tiny_params({"pretrain": {"train": {"iterations": 20}}}))
    sentences = [[4 + (i % 5), 5 + (i % 3), 6] for i in range(40)]
    stop = threading.Event()
    real = evaluate.evaluate_split
    calls: list[int] = []

    def evaluate_then_stop(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        result = real(*args, **kwargs)
        if len(calls) == 2:  # the signal arrives while the test split is evaluated
            stop.set()
        return result

    monkeypatch.setattr(evaluate, "evaluate_split", evaluate_then_stop)
    model_path = project / "staged/seed0/model.pt"
    job = SeedJob(params, "constant", 0, sentences, sentences[:10], sentences[:10], 12, "fp",
                  model_path, "cpu")  # fmt: skip
    with pytest.raises(TrainingInterrupted, match="interrupted during the final evaluation; no "
                       "model or metrics written, the resumable checkpoint is kept"):  # fmt: skip
        train_seed(job, stop)
    assert len(calls) == 2 and not model_path.exists()
    assert (project / RESUME / "constant/seed0/resume.pt").exists()


# --------------------------------------------------------------------------- full disk
def test_atomic_path_keeps_the_previous_output_when_the_disk_fills(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "a.txt").write_text("previous")
    with pytest.raises(OSError) as info, io.atomic_path(target) as staged:
        staged.mkdir()
        (staged / "a.txt").write_text("new, half")
        raise OSError(errno.ENOSPC, "No space left on device", str(staged / "b.txt"))
    assert info.value.errno == errno.ENOSPC
    assert _tree(target) == {"a.txt": b"previous"} and sorted(os.listdir(tmp_path)) == ["out"]


def test_atomic_path_puts_the_previous_folder_back_if_the_rename_fails(tmp_path, monkeypatch):
    target = tmp_path / "out"
    target.mkdir()
    (target / "a.txt").write_text("previous")
    real, calls = os.replace, []

    def replace(src: Any, dst: Any) -> None:
        calls.append(dst)
        if len(calls) == 2:  # the new folder's rename into place fails
            raise OSError(errno.EIO, "Input/output error")
        real(src, dst)

    monkeypatch.setattr(io.os, "replace", replace)
    with pytest.raises(OSError), io.atomic_path(target) as staged:
        staged.mkdir()
        (staged / "a.txt").write_text("new")
    assert _tree(target) == {"a.txt": b"previous"} and sorted(os.listdir(tmp_path)) == ["out"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Path:
    """A 96 KiB tmpfs (needs root and mount rights; skipped where the machine refuses)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mnt)],
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({proc.stderr.strip()[:80]})")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_is_one_line_and_keeps_previous_outputs(project, small_disk, capsys):
    # data/ and metrics/ (where dvc.yaml puts prepare's outputs) live on the small disk
    for name in ("data", "metrics"):
        (small_disk / name).mkdir()
        (project / name).symlink_to(small_disk / name)
    out, metrics = Path("data/prepared"), Path("metrics/prepare.json")
    args: list[str] = []
    assert _run("prepare", args) == 0
    previous = {**_tree(out), "m": metrics.read_bytes()}
    params = tiny_params({"data": {"synthetic": {"train": 3000}}})  # does not fit in 96 KiB
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    capsys.readouterr()
    assert _run("prepare", args) == 1
    err = _errors(capsys).strip()
    assert err == (
        f"error: {out}: No space left on device; outputs are replaced whole or not at all, "
        "so the previous ones are kept (free space or fix the permissions, then rerun)"
    )
    assert {**_tree(out), "m": metrics.read_bytes()} == previous
    assert sorted(p.name for d in ("data", "metrics") for p in (small_disk / d).iterdir()) == [
        "prepare.json",
        "prepared",
    ]


@pytest.mark.parametrize(
    "raise_",
    [
        "OSError(errno.ENOSPC, 'No space left on device', 'out.json')",
        "InputError('bad corpus', 'x.txt')",
    ],
)
def test_hard_exit_leaves_by_os_exit_from_every_error_branch(raise_: str) -> None:
    """``run_stage(main, hard_exit=True)`` (the engine stages) ends by ``os._exit`` after its one
    line, a full disk included: an ``atexit`` hook, which ``sys.exit`` would run, never runs."""
    child = f"""
import atexit, errno, sys
from betamcmc.core.errors import InputError
from betamcmc.core.runner import run_stage
atexit.register(lambda: print("atexit ran", file=sys.stderr))
def main():
    raise {raise_}
run_stage(main, hard_exit=True)
"""
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert done.returncode in (1, 2), done.stderr
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr, done.stderr
    assert "atexit ran" not in done.stderr
