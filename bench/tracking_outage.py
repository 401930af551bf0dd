"""A tracking server that dies during ``pretrain``: the stage's wall time with and without the
outage, and whether the MLflow run is complete once the server is back and the spool replayed.

Setup: a temporary copy of the project (its git-tracked files) with the shipped ``params.yaml``
(``--iterations`` overrides ``pretrain.train.iterations``; ``--seeds`` ``pretrain.seeds``),
``prepare`` run once, and a real ``mlflow server`` on 127.0.0.1 (SQLite backend and artifacts
destination in the temporary folder). Each repeat runs ``stages/pretrain.py <schedule>`` twice
with ``MLFLOW_TRACKING_URI`` pointing at the server, in alternating order:

* ``normal``: the server stays up;
* ``outage``: the server is killed (SIGKILL, its process group) when the first seed prints its
  10 % progress line, and restarted after the stage ended; then ``betamcmc tracking replay``.

Wall time is from starting the stage process to its exit. After every run the script checks the
run on the server: status FINISHED, the final metrics, every step of every seed's curves
(``train.*`` every ``runtime.log_every`` iterations, ``valid_curve.*`` every evaluation), the
schedule's own series and its artifacts. ``ratio`` = outage / normal wall time of one repeat.

Usage::

    python bench/tracking_outage.py                       # cyclical, shipped params, 3 repeats
    python bench/tracking_outage.py --iterations 400 --repeats 2 --out /tmp/x.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from machine import code_version, facts, loadavg  # noqa: E402

BIN = Path(sys.executable).parent
PROGRESS = re.compile(r"\d+/\d+ \((\d+)%\)")  # a seed's progress line: "80/800 (10%)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--schedule", default="cyclical")
    ap.add_argument("--iterations", type=int, help="pretrain.train.iterations (default: shipped)")
    ap.add_argument("--seeds", type=int, nargs="+", help="pretrain.seeds (default: shipped)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--kill-at", type=int, default=10, help="percent of a seed's iterations")
    ap.add_argument("--out", default="bench/results/tracking_outage.json")
    return ap.parse_args(argv)


# --------------------------------------------------------------------------- the project
def make_project(dest: Path, args: argparse.Namespace) -> dict[str, Any]:
    """A copy of the project's tracked files with the shipped params (and the overrides)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
    for rel in listed.stdout.decode().split("\0"):
        src = REPO / rel
        if rel and src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    if args.iterations:
        params["pretrain"]["train"]["iterations"] = args.iterations
    if args.seeds:
        params["pretrain"]["seeds"] = args.seeds
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run([sys.executable, "stages/prepare.py"], dest, env(None))
    return params


def env(uri: str | None) -> dict[str, str]:
    out = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    out.pop("MLFLOW_TRACKING_URI", None)
    if uri:
        out["MLFLOW_TRACKING_URI"] = uri
    return out


def run(command: list[str], cwd: Path, environ: dict[str, str]) -> str:
    proc = subprocess.run(command, cwd=cwd, env=environ, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout + proc.stderr


# --------------------------------------------------------------------------- the server
class Server:
    """A real ``mlflow server`` on a free loopback port; killed and restarted on that port."""

    def __init__(self, root: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.root, self.uri = root, f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start it; returns the seconds until ``/health`` answered."""
        started = time.monotonic()
        command = [str(BIN / "mlflow"), "server", "--backend-store-uri",
                   f"sqlite:///{self.root / 'server.db'}", "--artifacts-destination",
                   str(self.root / "artifacts"), "--host", "127.0.0.1", "--port", str(self.port),
                   "--workers", "1"]  # fmt: skip
        log = (self.root / "server.log").open("ab")
        self.proc = subprocess.Popen(command, env={**env(None),
                                     "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                                     stdout=log, stderr=log, start_new_session=True)  # fmt: skip
        while time.monotonic() - started < 180 and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=2):
                    return time.monotonic() - started
            except OSError:
                time.sleep(0.2)
        raise SystemExit(f"mlflow server did not start; see {self.root / 'server.log'}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=60)
        self.proc = None


# --------------------------------------------------------------------------- one run
def run_stage(project: Path, server: Server, schedule: str, outage: bool,
              kill_at: int) -> dict[str, Any]:  # fmt: skip
    """One ``pretrain`` run against the server; with ``outage`` the server dies at the first
    seed's ``kill_at`` % line. Wall time from start to exit."""
    load_before = loadavg()
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "stages/pretrain.py", schedule], cwd=project,
                            env=env(server.uri), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    killed_at = None
    assert proc.stdout is not None
    out_lines = []
    for line in proc.stdout:
        out_lines.append(line)
        done = PROGRESS.search(line) if " seed " in line else None
        if outage and killed_at is None and done and int(done.group(1)) >= kill_at:
            server.kill()
            killed_at = time.monotonic() - started
    out, err = proc.communicate()
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"pretrain failed ({proc.returncode}):\n{''.join(out_lines)}{out}{err}")
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    return {"kind": "outage" if outage else "normal", "wall_s": round(wall, 2),
            "server_killed_at_s": None if killed_at is None else round(killed_at, 2),
            "warnings": warnings, "load_before": load_before, "load_after": loadavg()}  # fmt: skip


def check_run(
    server: Server, project: Path, schedule: str, params: dict[str, Any]
) -> dict[str, Any]:
    """Is the latest ``pretrain@<schedule>`` run on the server complete: every point of the
    curves the stage wrote (``metrics/pretrain/<schedule>_{train,valid}.csv``) in every seed's
    run and the schedule's, its final metrics, its model?"""
    from betamcmc import tracking  # lazy: mlflow, only for the check after the runs

    client = tracking.store_client(server.uri)
    exp = client.get_experiment_by_name(params["tracking"]["experiment"])
    runs = client.search_runs([exp.experiment_id], order_by=["start_time DESC"], max_results=200)
    name = f"pretrain@{schedule}"
    parent = next(r for r in runs if r.info.run_name == name)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    curves = project / "metrics" / "pretrain"
    points = len((curves / f"{schedule}_train.csv").read_text().splitlines()) - 1
    evals = len((curves / f"{schedule}_valid.csv").read_text().splitlines()) - 1
    problems = []
    if parent.info.status != "FINISHED" or "test.nll" not in parent.data.metrics:
        problems.append(f"{name}: {parent.info.status}, metrics {sorted(parent.data.metrics)}")
    if len(client.get_metric_history(parent.info.run_id, "train.kl")) != points:
        problems.append(f"{name}: train.kl series incomplete")
    if "model" not in {a.path for a in client.list_artifacts(parent.info.run_id)}:
        problems.append(f"{name}: no model artifact")
    if len(children) != len(params["pretrain"]["seeds"]):
        problems.append(f"{name}: {len(children)} seed runs")
    for child in children:
        got = {k: len(client.get_metric_history(child.info.run_id, k))
               for k in ("train.kl", "train.loss", "valid_curve.mi")}  # fmt: skip
        want = {"train.kl": points, "train.loss": points, "valid_curve.mi": evals}
        if got != want or child.info.status != "FINISHED" or "test.nll" not in child.data.metrics:
            problems.append(f"{child.info.run_name}: {child.info.status} {got} (want {want})")
    return {"complete": not problems, "problems": problems, "train_points_per_seed": points}


def replay(project: Path) -> dict[str, Any]:
    started = time.monotonic()
    text = run([sys.executable, "-m", "betamcmc.cli", "tracking", "replay"], project, env(None))
    return {"replay_s": round(time.monotonic() - started, 2), "replay_output": text.splitlines()}


# --------------------------------------------------------------------------- the measurement
def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    project, srv_root = work / "project", work / "server"
    project.mkdir()
    srv_root.mkdir()
    params = make_project(project, args)
    server = Server(srv_root)
    start_s = server.start()
    runs: list[dict[str, Any]] = []
    try:
        for repeat in range(args.repeats):
            order = (False, True) if repeat % 2 == 0 else (True, False)
            for outage in order:
                result = run_stage(project, server, args.schedule, outage, args.kill_at)
                if outage:
                    result["restart_s"] = round(server.start(), 2)
                    result.update(replay(project))
                result.update(check_run(server, project, args.schedule, params), repeat=repeat)
                runs.append(result)
                print(json.dumps({k: result[k] for k in ("repeat", "kind", "wall_s", "complete")}),
                      flush=True)  # fmt: skip
    finally:
        server.kill(signal.SIGTERM)
    return {"params": params, "server_start_s": round(start_s, 2), "runs": runs}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    by = {k: [r["wall_s"] for r in runs if r["kind"] == k] for k in ("normal", "outage")}
    ratios = [o / n for n, o in zip(by["normal"], by["outage"], strict=True)]
    return {
        "normal_wall_s": by["normal"],
        "outage_wall_s": by["outage"],
        "normal_median_s": statistics.median(by["normal"]),
        "outage_median_s": statistics.median(by["outage"]),
        "ratio_per_repeat": [round(r, 3) for r in ratios],
        "ratio_of_medians": round(statistics.median(by["outage"]) / statistics.median(by["normal"]), 3),
        "ratio_max": round(max(ratios), 3),
        "within_1_1x": statistics.median(by["outage"]) <= 1.1 * statistics.median(by["normal"]),
        "all_runs_complete": all(r["complete"] for r in runs),
        "one_warning_per_outage": all(len(r["warnings"]) == 1 for r in runs if r["kind"] == "outage"),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_at_start = loadavg()
    with tempfile.TemporaryDirectory(prefix="tracking-outage-") as tmp:
        measured = measure(args, Path(tmp))
    p = measured.pop("params")
    result = {
        "what": "pretrain wall time with a tracking server that dies at ~10 % (then restarted "
        "and replayed) vs one that stays up",
        "schedule": args.schedule,
        "config": {
            "iterations": p["pretrain"]["train"]["iterations"],
            "seeds": p["pretrain"]["seeds"],
            "log_every": p["runtime"]["log_every"],
            "model": p["pretrain"]["model"],
            "threads": p["runtime"]["threads"],
            "kill_at_percent": args.kill_at,
        },  # fmt: skip
        "summary": summarize(measured["runs"]),
        **measured,
        "load_at_start": load_at_start,
        "load_at_end": loadavg(),
        "machine": facts(),
        "code": code_version(),
    }
    out = REPO / args.out if not Path(args.out).is_absolute() else Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=2))
    print(f"written {out}")
    return 0 if result["summary"]["all_runs_complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
