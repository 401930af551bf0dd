"""Shared test fixtures: tiny configs and temporary copies of the repository.

Tests run the real stages (the same entry points as ``dvc repro``) on a tiny ``params.yaml``:
``tiny_params()`` is the shipped params.yaml with the ``TINY`` overrides (and any extra ones)
merged in, so every test exercises the real schema and code paths in seconds.
"""

from __future__ import annotations

import copy
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Tiny sizes per section; each stage family adds its own section here.
TINY: dict[str, Any] = {
    "device": "cpu",
    "runtime": {"threads": 1, "worker_timeout": 30.0, "checkpoint_every": 10, "log_every": 5},
    "data": {
        "max_len": 20,
        "synthetic": {
            "train": 120,
            "valid": 30,
            "test": 30,
            "dialogs": {"train": 20, "valid": 6, "test": 6},
        },
    },
    "pretrain": {
        "seeds": [0, 1],
        "model": {"emb_dim": 16, "hidden_dim": 32, "latent_dim": 4},
        "train": {
            "iterations": 40,
            "batch_size": 16,
            "eval_every": 20,
        },
        "eval": {"importance_samples": 10, "batch_size": 32},
        "report": {"toy_iterations": 60},
    },
    "sgmcmc": {
        # sync runs in test_sgmcmc_engine / _faults; the pipeline items keep the other three
        "items": {
            f"{p}-{w}": {"protocol": p, "workers": w}
            for p, w in (("single", 1), ("single", 2), ("downpour", 2), ("elastic", 2))
        },
        "seeds": [0, 1],
        "task": {"hidden": 8},
        "burn_in": 20,
        "thinning": 2,
        "samples": 12,
        "period": 2,
        "batch_size": 16,
        "sgd": {"steps": 40},
        "consistency": {
            "seeds": [0, 1],
            "protocols": ["single", "downpour"],
            "periods": [1, 4],
            "burn_in": 20,
            "samples": 20,
            "thinning": 2,
            "reference_steps": 400,
        },
        "cyclical": {  # 6 arms x 2 seeds, K = 220 steps per chain block
            "seeds": [10, 11],
            "burn_in": 20,
            "thinning": 5,
            "samples": 41,
            "cycles": 4,
            "exploration": 0.5,  # the tests count the samples of half-explored cycles
            "curve_points": 5,
        },
    },
    "finetune": {
        "vae_head": {"burn_in": 20, "thinning": 2, "samples": 12, "map_steps": 50, "seeds": [0, 1]},
        "label_fractions": [0.2, 1.0],
        "seeds": [0, 1],
        "max_train": 60,
        "dialog": {
            "epochs": 2,
            "batch_size": 16,
            "ctx_hidden": 16,
            "latent_dim": 4,
            "dec_hidden": 16,
            "prior_hidden": 16,
            "samples": 2,
            "eval_contexts": 8,
            "seeds": [0, 1],
            "bow": ["nobow", "bow"],  # both arms (the default runs bow only, for time)
        },
    },
    "rl": {
        "workers": [1],
        "seeds": [0],
        "hidden": [16],
        "envs_per_worker": 2,
        "rollout_length": 8,
        "period": 2,
        "total_steps": 384,
        "eval_every": 128,
        "eval_episodes": 2,
        "final_episodes": 2,
    },
}


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def tiny_params(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    shipped = yaml.safe_load((REPO / "params.yaml").read_text())
    merged = deep_merge(deep_merge(shipped, TINY), overrides or {})
    # sgmcmc.items names the stage items: the tiny (or overriding) mapping replaces the shipped one
    items = (overrides or {}).get("sgmcmc", {}).get("items", TINY["sgmcmc"]["items"])
    merged["sgmcmc"]["items"] = items
    return merged


def shipped_section(dotted: str, **overrides: Any) -> Any:
    """A validated params section with the shipped params.yaml values (``overrides`` merged in),
    for unit tests that build one section: the schema has no defaults (values live in params.yaml)."""
    from betamcmc.params import validate_params

    shipped = yaml.safe_load((REPO / "params.yaml").read_text())
    node: dict[str, Any] = {}
    leaf = node
    *parents, last = dotted.split(".")
    for part in parents:
        leaf = leaf.setdefault(part, {})
    leaf[last] = overrides
    return validate_params(deep_merge(shipped, node)).section(dotted)


def vae_config(vocab_size: int, **fields: Any) -> Any:
    """A ``VAEConfig`` with the tiny params' ``pretrain.model`` values (``fields`` replace some):
    the model config has no defaults, its numbers live in params.yaml."""
    from betamcmc.vae.model import VAEConfig

    return VAEConfig(vocab_size=vocab_size, **{**tiny_params()["pretrain"]["model"], **fields})


def cvae_config(vocab_size: int, **fields: Any) -> Any:
    """A ``CVAEConfig`` with the tiny params' ``finetune.dialog`` sizes (``fields`` replace some),
    ``bow`` off and ``data.dialog_context`` context turns."""
    from betamcmc.finetune.cvae import CVAEConfig

    p = tiny_params()
    d = p["finetune"]["dialog"]
    keys = "emb_dim utt_hidden bidirectional ctx_hidden latent_dim dec_hidden prior_hidden dropout"
    values = {k: d[k] for k in keys.split()}
    values.update(bow=False, max_context=p["data"]["dialog_context"])
    return CVAEConfig(vocab_size=vocab_size, **{**values, **fields})


def write_params(path: Path, params: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def shared_data(*parts: str) -> Path:
    """Path under ../shared/data; skip the test with a clear reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data sample not available: {path} (see ../shared/data/README.md)")
    return path


def gone(pid: int) -> bool:
    """Has process ``pid`` exited (reaped, or a zombie)?"""
    try:
        with open(f"/proc/{pid}/status") as fh:
            return any(line.startswith("State:") and "Z" in line for line in fh)
    except FileNotFoundError:
        return True


def wait_gone(pids: list[int], timeout: float = 10.0) -> bool:
    """Wait until every process in ``pids`` has exited; False on timeout (a leaked process)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if all(gone(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


def dvc_output_paths(repo: Path = REPO) -> list[str]:
    """What ``dvc repro`` writes, as repo-relative paths or prefixes (ending in ``/``).

    Every ``outs`` / ``metrics`` / ``plots`` path of every stage in ``dvc.yaml``, plus
    ``dvc.lock``. A templated path (``metrics/pretrain/${key}.json``) becomes the folder before
    its first ``${`` (``metrics/pretrain``), which covers every item of a foreach/matrix stage;
    a folder stands for everything under it.
    """
    stages = (yaml.safe_load((repo / "dvc.yaml").read_text()) or {}).get("stages", {})
    paths = {"dvc.lock"}
    for stage in stages.values():
        body = stage.get("do", stage)
        for key in ("outs", "metrics", "plots"):
            for entry in body.get(key) or []:
                path = next(iter(entry)) if isinstance(entry, dict) else entry
                if "${" in path:
                    path = path[: path.index("${")].rpartition("/")[0]
                paths.add(path.rstrip("/"))
    return sorted(paths)


def project_files(source: Path = REPO) -> list[str]:
    """The files a temporary test project is built from: git-tracked files, minus DVC outputs.

    Tracked only, so whatever a ``make repro`` / ``dvc exp run`` / a manual run left in the
    checkout (``data/``, ``models/``, ``metrics/``, ``dvc.lock``, ``mlflow.db``, stray files)
    never leaks into a test. DVC outputs are left out even when they are committed (the
    ``metrics/`` + ``dvc.lock`` baseline), so every test project starts before its first stage.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached"], cwd=source, capture_output=True, check=True
    ).stdout.decode()
    outputs = dvc_output_paths(source)

    def is_output(rel: str) -> bool:
        return any(rel == out or rel.startswith(out + "/") for out in outputs)

    return [rel for rel in listed.split("\0") if rel and not is_output(rel)]


def copy_repo(dest: Path, source: Path = REPO) -> Path:
    """A temporary copy of the project at ``dest``: its git-tracked files (``project_files``)
    with their working-tree content, so uncommitted edits to tracked files are tested too."""
    for rel in project_files(source):
        src = source / rel
        if not src.is_file():  # deleted in the working tree, or a submodule
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    return dest


def git_init(repo: Path) -> None:
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True, capture_output=True)
    git_commit_all(repo, "test baseline")


def git_commit_all(repo: Path, message: str) -> None:
    """``git add -A`` and commit everything in ``repo`` as the test identity ``t <t@t>``."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    for cmd in (["git", "add", "-A"], ["git", "commit", "-q", "-m", message]):
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"{' '.join(cmd)}: {proc.stdout}{proc.stderr}"


def run_stage(
    repo: Path,
    script: str,
    *args: str,
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    """Run ``python stages/<script>.py args...`` in ``repo`` the way dvc does."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(
        [sys.executable, f"stages/{script}.py", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"stage {script} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def dvc_command(*args: str) -> tuple[list[str], dict[str, str]]:
    """``dvc args...`` of this venv and its environment: the venv first on PATH (stage commands
    call ``python``) and no MLflow URI inherited (each project uses its own store)."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return [str(bin_dir / "dvc"), *args], env


def dvc(repo: Path, *args: str, timeout: float = 900, check: bool = True) -> str:
    """Run ``dvc args...`` in ``repo`` with this venv first on PATH (stage commands call
    ``python``); returns stdout + stderr, and fails the test with both when ``check``."""
    command, env = dvc_command(*args)
    proc = subprocess.run(
        command,
        cwd=repo,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout + proc.stderr


@dataclass(frozen=True)
class PipelineRun:
    """The one real ``dvc repro`` of the whole tiny pipeline that the suite shares.

    ``repo`` is a git + DVC project with the ``TINY`` params where every stage has run once;
    ``output`` is what ``dvc repro`` printed (every stage's own output included). Read it, never
    write to it: a test that writes (another stage run, a bad params file) works on
    ``copy_pipeline(pipeline, tmp_path)``.
    """

    repo: Path
    output: str


PIPELINE_TIMEOUT_S = 1500


class BackgroundRepro:
    """The shared pipeline's ``dvc repro``, started when the session's first test starts and
    waited for by the first test that needs it (:func:`pipeline`).

    Stage commands run one after another and mostly on one core (start-up, imports); the tests
    that do not need the pipeline run meanwhile on the other (``pytest_collection_modifyitems``
    puts the pipeline's tests last). Its output goes to files, so no pipe fills up.
    """

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        command, env = dvc_command("repro")
        # in a session of its own: stop() ends its whole process group (stage workers too)
        self.command = BackgroundCommand(
            command, repo.parent, PIPELINE_TIMEOUT_S, cwd=repo, env=env, label="dvc repro"
        )
        self.proc = self.command.proc
        self.run: PipelineRun | None = None

    def wait(self) -> PipelineRun:
        if self.run is None:
            done = self.command.wait()
            output = done.stdout + done.stderr
            if done.returncode != 0:
                raise AssertionError(f"dvc repro failed ({done.returncode}):\n{output}")
            self.run = PipelineRun(repo=self.repo, output=output)
        return self.run

    def stop(self) -> None:
        self.command.stop()


def _uses_pipeline(item: pytest.Item) -> bool:
    return "pipeline" in getattr(item, "fixturenames", ())


def _uses_ui_check(item: pytest.Item) -> bool:
    return "ui_check" in getattr(item, "fixturenames", ())


def _background_job(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("background")
    return marker.args[0] if marker else None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "background(name): the test reads the background job ``name`` (see register_job)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests on the shared pipeline run last (otherwise in their order), so that the other
    tests run while its ``dvc repro`` does (:class:`BackgroundRepro`); the ones that read a
    background job (the UI check, ``register_job``) run at the very end, so that their jobs
    run while the others do."""
    items.sort(key=lambda item: (_uses_pipeline(item) or bool(_background_job(item)),
                                 _uses_ui_check(item) or bool(_background_job(item))))  # fmt: skip


class BackgroundCommand:
    """A command run in the background, its output in files (no pipe fills up); ``wait``
    returns what ``subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)``
    would have returned, and fails the test when it ran over ``timeout_s``."""

    def __init__(self, command: list[str], dest: Path, timeout_s: float, cwd: Path | None = None,
                 env: dict[str, str] | None = None, label: str | None = None) -> None:  # fmt: skip
        self.timeout_s, self.started = timeout_s, time.monotonic()
        self.label = label or " ".join(command)  # named when it runs over timeout_s
        self._out, self._err = (open(dest / name, "w+") for name in ("out.log", "err.log"))  # noqa: SIM115
        if env is None:
            env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        self.proc = subprocess.Popen(command, stdout=self._out, stderr=self._err, text=True,
                                     env=env, cwd=cwd, start_new_session=True)  # fmt: skip
        self.result: subprocess.CompletedProcess | None = None

    def done(self) -> bool:
        return self.proc.poll() is not None

    def wait(self) -> subprocess.CompletedProcess:
        if self.result is None:
            left = self.timeout_s - (time.monotonic() - self.started)
            try:
                code = self.proc.wait(timeout=max(left, 1))
            except subprocess.TimeoutExpired:
                self.stop()
                raise AssertionError(f"{self.label} took over {self.timeout_s:g} s") from None
            self._out.seek(0)
            self._err.seek(0)
            self.result = subprocess.CompletedProcess(
                self.proc.args, code, self._out.read(), self._err.read()
            )
            self._out.close()
            self._err.close()
        return self.result

    def stop(self) -> None:
        if self.proc.poll() is None:
            for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
                try:
                    os.killpg(self.proc.pid, sig)
                    self.proc.wait(timeout=wait_s)
                    break
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    continue
        self._out.close()
        self._err.close()


class BackgroundUICheck(BackgroundCommand):
    """``bench/ui_check.py`` (``betamcmc ui`` in headless Chromium) on a copy of the shared
    pipeline, started as soon as that pipeline's ``dvc repro`` has succeeded (checked after
    every test, :func:`pytest_runtest_logfinish`) and read by ``tests/test_ui_browser.py``.

    The check is mostly waiting (server start, page renders), on one core at most: the tests
    that run meanwhile use the other one. The command and what is asserted on its result are
    the test's; only when it starts changes.
    """

    def __init__(self, run: PipelineRun, dest: Path) -> None:
        self.repo = copy_pipeline(run, dest / "repo")
        self.shots = dest / "shots"
        command = [sys.executable, str(REPO / "bench" / "ui_check.py"), "--repo", str(self.repo),
                   "--out", str(self.shots)]  # fmt: skip
        super().__init__(command, dest, timeout_s=900)


# name -> (the command, given its own empty folder; None when it cannot run here, timeout in s)
JOBS: dict[str, tuple[Callable[[Path], list[str] | None], float]] = {}


def register_job(name: str, command: Callable[[Path], list[str] | None], timeout_s: float) -> None:
    """A one-command test's command, run in the background once the shared pipeline is done
    (one job at a time, after the UI check: the core the pipeline used is free then), or
    right away when the session runs no pipeline; the test (marked ``background(name)``, so it
    runs at the end) asserts on ``background_job(name)``: the command's result and folder."""
    JOBS[name] = (command, timeout_s)


def _browser() -> str | None:
    if str(REPO / "bench") not in sys.path:
        sys.path.insert(0, str(REPO / "bench"))
    from ui_check import find_browser

    return find_browser()


class _Background:
    """The session's background jobs: the shared ``dvc repro``, then the UI check and the
    registered jobs the selected tests read, one at a time."""

    repro: BackgroundRepro | None = None
    ui_dest: Path | None = None  # where the UI check goes, when a selected test reads it
    ui: BackgroundUICheck | None = None
    queued: list[tuple[str, Path]] = []  # registered jobs not started yet, and their folders
    jobs: dict[str, tuple[BackgroundCommand | None, Path]] = {}

    @classmethod
    def start_ui_check(cls, wait: bool) -> BackgroundUICheck | None:
        """Start the UI check once the pipeline succeeded (waiting for it when ``wait``)."""
        if cls.ui is None and cls.ui_dest is not None and cls.repro is not None:
            if wait or cls.repro.proc.poll() == 0:
                cls.ui = BackgroundUICheck(cls.repro.wait(), cls.ui_dest)
        return cls.ui

    @classmethod
    def start_job(cls, name: str, dest: Path) -> None:
        command, timeout_s = JOBS[name]
        argv = command(dest)
        cls.jobs[name] = (BackgroundCommand(argv, dest, timeout_s, cwd=REPO) if argv else None,
                          dest)  # fmt: skip

    @classmethod
    def advance(cls) -> None:
        """Start the next job when the pipeline succeeded and no job of this queue runs."""
        if cls.repro is None or cls.repro.proc.poll() != 0:
            return
        cls.start_ui_check(wait=False)
        running = [j for j, _ in cls.jobs.values() if j is not None and not j.done()]
        if cls.queued and (cls.ui is None or cls.ui.done()) and not running:
            cls.start_job(*cls.queued.pop(0))

    @classmethod
    def stop(cls) -> None:
        for job in [cls.ui, *(j for j, _ in cls.jobs.values())]:
            if job is not None:
                job.stop()
        cls.repro = cls.ui_dest = cls.ui = None
        cls.queued, cls.jobs = [], {}


def pytest_runtest_logfinish() -> None:
    _Background.advance()


@pytest.fixture
def background_job(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], tuple[subprocess.CompletedProcess | None, Path]]:
    """``background_job(name)``: the registered job's result (None when its command said it
    cannot run here) and its folder; started now when it was not yet (no pipeline ran)."""

    def get(name: str) -> tuple[subprocess.CompletedProcess | None, Path]:
        if name not in _Background.jobs:
            queued = dict(_Background.queued)
            dest = queued.pop(name, None) or tmp_path_factory.mktemp(name)
            _Background.queued = list(queued.items())
            _Background.start_job(name, dest)
        job, dest = _Background.jobs[name]
        return (job.wait() if job is not None else None), dest

    return get


@pytest.fixture(scope="session", autouse=True)
def _pipeline_repro(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BackgroundRepro | None]:
    """Start the shared ``dvc repro`` with the session when a selected test needs it."""
    if not any(_uses_pipeline(item) for item in request.session.items):
        yield None
        return
    repo = copy_repo(tmp_path_factory.mktemp("pipeline") / "repo")
    write_params(repo / "params.yaml", tiny_params())
    git_init(repo)
    repro = BackgroundRepro(repo)
    _Background.repro = repro
    if any(_uses_ui_check(item) for item in request.session.items) and _browser() is not None:
        _Background.ui_dest = tmp_path_factory.mktemp("ui-check")
    names = [name for item in request.session.items if (name := _background_job(item))]
    _Background.queued = [(name, tmp_path_factory.mktemp(name)) for name in dict.fromkeys(names)]
    try:
        yield repro
    finally:
        _Background.stop()
        repro.stop()


@pytest.fixture(scope="session")
def pipeline(_pipeline_repro: BackgroundRepro | None) -> PipelineRun:
    """Every stage of dvc.yaml, run for real once per test session by ``dvc repro`` (the way
    ``make repro`` runs them) on the tiny params; the stage tests assert on its outputs."""
    assert _pipeline_repro is not None  # started for every session that has a test using it
    return _pipeline_repro.wait()


@pytest.fixture(scope="session")
def ui_check(pipeline: PipelineRun) -> BackgroundUICheck | None:
    """``bench/ui_check.py`` on a copy of the shared pipeline, run in the background since the
    pipeline finished; None without a headless browser (the test then skips, saying why)."""
    return _Background.start_ui_check(wait=True)


def copy_pipeline(run: PipelineRun, dest: Path) -> Path:
    """A writable copy of the shared pipeline project (outputs, MLflow store, git, DVC cache)."""
    return Path(shutil.copytree(run.repo, dest, symlinks=True))


@pytest.fixture(scope="session")
def _prepared_baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git + DVC project with the tiny params whose ``dvc repro prepare`` ran and whose
    outputs (``metrics/``, ``dvc.lock``) are committed, as the repository commits its baseline.
    Built once; read it through :func:`prepared_baseline` (a copy), never write to it."""
    repo = copy_repo(tmp_path_factory.mktemp("prepared") / "repo")
    (repo / "dvc.lock").unlink(missing_ok=True)
    write_params(repo / "params.yaml", tiny_params())
    git_init(repo)
    dvc(repo, "repro", "prepare")
    git_commit_all(repo, "baseline")
    return repo


@pytest.fixture
def prepared_baseline(_prepared_baseline: Path, tmp_path: Path) -> Path:
    """A writable copy of :func:`_prepared_baseline` (git, DVC cache and state, MLflow store with
    the baseline's ``prepare`` run): the project right after its committed ``dvc repro prepare``."""
    return Path(shutil.copytree(_prepared_baseline, tmp_path / "repo", symlinks=True))


@pytest.fixture
def tiny_repo(tmp_path: Path) -> Path:
    """A copy of the project with the tiny params.yaml (no git history, no DVC state)."""
    repo = copy_repo(tmp_path / "repo")
    write_params(repo / "params.yaml", tiny_params())
    return repo


@pytest.fixture(autouse=True)
def _no_user_tracking_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
