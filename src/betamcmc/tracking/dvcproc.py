"""The ``dvc`` process a stage runs under, found by walking up the parent processes in /proc
(Linux; elsewhere, or by hand, there is none). Every stage of one ``dvc repro`` shares it, so
its pid and start time name the pipeline run (:func:`betamcmc.tracking.runs.pipeline_run`).
"""

from __future__ import annotations

import os
from pathlib import Path


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks after boot) of a process, from /proc (Linux)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces
    return int(fields[1]), int(fields[19])


def dvc_ancestor() -> tuple[int, float] | None:
    """(pid, start time) of the ``dvc`` process this stage runs under, if any (Linux /proc)."""
    pid = os.getpid()
    for _ in range(12):
        stat = _proc_stat(pid)
        if stat is None or stat[0] <= 1:
            return None
        pid = stat[0]
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            return None
        if any(Path(a).name == "dvc" for a in argv[:2]) or argv[1:3] == ["-m", "dvc"]:
            ticks = _proc_stat(pid)
            boot = next(
                float(line.split()[1])
                for line in Path("/proc/stat").read_text().splitlines()
                if line.startswith("btime")
            )
            started = boot + (ticks[1] if ticks else 0) / os.sysconf("SC_CLK_TCK")
            return pid, started
    return None
