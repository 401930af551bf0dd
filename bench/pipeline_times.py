"""Where the time of ``dvc repro`` goes: per stage item, and start-up overhead (issue 10, item 3).

Runs ``dvc repro`` (all stages, or ``--targets``) in a project and times every stage command DVC
starts: a ``python`` shim placed first on ``PATH`` records each command's wall-clock, user and
system CPU time (of the command and all its children: worker processes included), then hands
over to the real interpreter. What ``dvc repro`` takes beyond the sum of its commands is DVC's
own overhead (hashing, lock file, cache). Separately, ``--startup`` times what every stage
process pays before it does any work: the interpreter, ``import torch``, ``import mlflow``, the
stage script's own imports (``python stages/<s>.py --help``) and opening the MLflow store.

Run it on a quiet machine (take ``flock -x /work/cpu.lock`` where the machine is shared) in a
fresh clone, so that every stage runs::

    git clone /path/to/betamcmc /tmp/b && cd /tmp/b && make .venv/.installed
    .venv/bin/python bench/pipeline_times.py            # dvc repro of everything, then start-up
    .venv/bin/python bench/pipeline_times.py --startup-only --repeats 5

Prints a table per stage item and writes ``bench/results/pipeline_times.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHIM = """#!/bin/sh
# Records wall, user and system seconds of one stage command (children it waited for included)
# and the seconds its processes spent importing modules (python -X importtime, top-level entries
# summed over every process of the command); the stage's own stderr passes through.
err=$(mktemp)
"$BENCH_TIME" -a -o "$BENCH_LOG" -f "%e %U %S $*" "$BENCH_PYTHON" -X importtime "$@" 2>"$err"
rc=$?
grep -v '^import time:' "$err" >&2
awk -F'|' '/^import time:/ && $3 ~ /^ [^ ]/ {s += $2} END {printf "%.3f\\n", s / 1e6}' "$err" \\
    >> "$BENCH_LOG.imports"
rm -f "$err"
exit $rc
"""

STARTUP_PROBES = {
    "python -c pass": ["-c", "pass"],
    "import numpy": ["-c", "import numpy"],
    "import torch": ["-c", "import torch"],
    "import mlflow": ["-c", "import mlflow"],
    "import sklearn.linear_model": ["-c", "import sklearn.linear_model"],
    "import matplotlib.pyplot": ["-c", "import matplotlib.pyplot"],
    "betamcmc params check": ["-m", "betamcmc.cli", "params", "check"],
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repo", type=Path, default=Path.cwd(), help="the project (default: here)")
    ap.add_argument("--targets", nargs="*", default=[], help="dvc repro targets (default: all)")
    ap.add_argument("--force", action="store_true", help="dvc repro --force (rerun everything)")
    ap.add_argument("--startup-only", action="store_true", help="only the start-up probes")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of each start-up probe")
    ap.add_argument("--out", type=Path, default=Path("bench/results/pipeline_times.json"))
    return ap.parse_args(argv)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def time_repro(repo: Path, targets: list[str], force: bool) -> dict:
    gnu_time = shutil.which("time") or "/usr/bin/time"
    if not Path(gnu_time).exists():
        raise SystemExit("error: GNU time (/usr/bin/time) is needed to time stage commands")
    with tempfile.TemporaryDirectory() as tmp:
        shim_dir = Path(tmp)
        (shim_dir / "python").write_text(SHIM)
        (shim_dir / "python").chmod(0o755)
        log = shim_dir / "times.log"
        venv_bin = Path(sys.executable).parent
        env = {
            **os.environ,
            "PATH": f"{shim_dir}{os.pathsep}{venv_bin}{os.pathsep}{os.environ['PATH']}",
            "BENCH_TIME": gnu_time,
            "BENCH_LOG": str(log),
            "BENCH_PYTHON": sys.executable,
        }
        cmd = [str(venv_bin / "dvc"), "repro", *(["--force"] if force else []), *targets]
        load_before = loadavg()
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
        total = time.perf_counter() - start
        load_after = loadavg()
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout + proc.stderr)
            raise SystemExit(f"error: dvc repro failed ({proc.returncode})")
        lines = log.read_text().splitlines() if log.exists() else []
        imports_log = Path(f"{log}.imports")
        imports = imports_log.read_text().split() if imports_log.exists() else []
    items = []
    lines = [ln for ln in lines if not ln.startswith("Command ")]  # GNU time's exit-status note
    for line, import_s in zip(lines, imports, strict=True):
        wall, user, system, *args = line.split(" ")
        script = next((a for a in args if a.startswith("stages/")), " ".join(args))
        extra = args[args.index(script) + 1 :] if script in args else []
        name = Path(script).stem + (f"@{'-'.join(extra)}" if extra else "")
        items.append(
            {
                "item": name,
                "wall_s": float(wall),
                "user_s": float(user),
                "sys_s": float(system),
                "import_s": float(import_s),
            }
        )
    stages_wall = sum(i["wall_s"] for i in items)
    return {
        "command": " ".join(cmd[1:]),
        "total_wall_s": round(total, 2),
        "stage_commands_wall_s": round(stages_wall, 2),
        "dvc_overhead_s": round(total - stages_wall, 2),
        "cpu_s": round(sum(i["user_s"] + i["sys_s"] for i in items), 2),
        "import_s": round(sum(i["import_s"] for i in items), 2),
        "items": items,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }


def time_startup(repo: Path, repeats: int) -> dict:
    probes = dict(STARTUP_PROBES)
    for script in sorted((repo / "stages").glob("*.py")):
        probes[f"stages/{script.name} --help"] = [str(script.relative_to(repo)), "--help"]
    results = {}
    for name, args in probes.items():
        walls = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run([sys.executable, *args], cwd=repo, capture_output=True, check=False)
            walls.append(time.perf_counter() - start)
        results[name] = {
            "median_s": round(statistics.median(walls), 3),
            "min_s": round(min(walls), 3),
            "max_s": round(max(walls), 3),
        }
    return {"repeats": repeats, "probes": results}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    repo = args.repo.resolve()
    git = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True
    )
    result: dict = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "commit": git.stdout.strip() or None,
        "loadavg_start": loadavg(),
    }
    if not args.startup_only:
        repro = time_repro(repo, args.targets, args.force)
        result["repro"] = repro
        print(f"{repro['command']}: {repro['total_wall_s']:.1f} s wall "
              f"(stage commands {repro['stage_commands_wall_s']:.1f} s, "
              f"DVC {repro['dvc_overhead_s']:.1f} s), {repro['cpu_s']:.1f} CPU-s; "
              f"load {repro['loadavg_before']} -> {repro['loadavg_after']}")  # fmt: skip
        print("| stage item | wall s | CPU s (user + sys) | imports s (all its processes) |")
        print("|---|---|---|---|")
        for item in repro["items"]:
            cpu = item["user_s"] + item["sys_s"]
            print(f"| {item['item']} | {item['wall_s']:.1f} | {cpu:.1f} | {item['import_s']:.1f} |")
    startup = time_startup(repo, args.repeats)
    result["startup"] = startup
    print(f"\nstart-up (median of {args.repeats} [min-max], s):")
    for name, r in startup["probes"].items():
        print(f"  {name}: {r['median_s']:.2f} [{r['min_s']:.2f}-{r['max_s']:.2f}]")
    result["loadavg_end"] = loadavg()
    out = args.out if args.out.is_absolute() else repo / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
