"""Settings that start more processes than this machine has cores: warn, or refuse far beyond.

Processes beyond the cores time-share them: slower, and wall-clock timings
(`time_to_acc95_s`, ...) no longer measure the protocol. Far beyond (`workers: [512]` on 2
cores) each process still loads torch, which can exhaust a shared machine's memory before the
first sample. So a setting above the core count gets one warning line (at `params check` and
every stage start: `load_params`), and one above OVERSUBSCRIBE_LIMIT per core a ParamsError
naming the override BETAMCMC_OVERSUBSCRIBE=1 (an environment variable: it is about the
machine, not the experiment). Cores: the CPU affinity capped by a cgroup v2 quota, not the
host's os.cpu_count() (docs/robustness.md).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from betamcmc.core.errors import ParamsError

OVERSUBSCRIBE_ENV = "BETAMCMC_OVERSUBSCRIBE"
OVERSUBSCRIBE_LIMIT = 4  # processes per core above which a setting is refused without the override
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


@dataclass(frozen=True)
class ProcessRequest:
    """One setting that starts ``count`` busy processes (or threads) at once."""

    loc: tuple[Any, ...]  # its key path in the params file
    count: int
    what: str  # what the count is, for the message


def machine_cores() -> int:
    """Cores this process may use: the CPU affinity mask, capped by a cgroup v2 quota; >= 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cores, quota) if quota else cores)


def _cgroup_quota() -> int | None:
    """Whole cores allowed by ``/sys/fs/cgroup/cpu.max`` (``"200000 100000"`` -> 2); None when
    there is no quota (``max``) or no cgroup v2 file."""
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        return None


def process_requests(params: Any) -> list[ProcessRequest]:
    """Every setting that starts processes (threads) at once, with how many, in the sections
    ``params`` holds (a stage loads only the sections it reads)."""
    per_run = "worker processes per run"
    found = [ProcessRequest(("runtime", "threads"), params.runtime.threads, "threads per process")]
    if params.runtime.processes:  # 0: every seed at once, by design (docs/robustness.md)
        seeds = "pretrain seeds trained at once"
        found.append(ProcessRequest(("runtime", "processes"), params.runtime.processes, seeds))
    if hasattr(params, "sgmcmc"):
        found += [
            ProcessRequest(("sgmcmc", "items", name, "workers"), item.workers, per_run)
            for name, item in params.sgmcmc.items.items()
        ]
        consistency = params.sgmcmc.consistency.workers
        found.append(ProcessRequest(("sgmcmc", "consistency", "workers"), consistency, per_run))
        cyclical = params.sgmcmc.cyclical.workers
        found.append(ProcessRequest(("sgmcmc", "cyclical", "workers"), cyclical, per_run))
    if hasattr(params, "rl"):
        found += [
            ProcessRequest(("rl", "workers", i), w, per_run)
            for i, w in enumerate(params.rl.workers)
        ]
    if hasattr(params, "finetune"):
        head = params.finetune.vae_head.workers
        found.append(ProcessRequest(("finetune", "vae_head", "workers"), head, per_run))
    return found


def check_resources(
    params: Any, cite: Callable[[tuple[Any, ...]], str], cores: int | None = None
) -> list[str]:
    """Warnings (one line each) for the settings above the core count; a :class:`ParamsError`
    for the first one above ``OVERSUBSCRIBE_LIMIT`` per core, unless the override is set.

    ``cite(loc)`` names a setting as ``params.yaml:LINE: key.path``.
    """
    cores = cores or machine_cores()
    allowed = os.environ.get(OVERSUBSCRIBE_ENV, "") not in ("", "0")
    warnings = []
    for request in process_requests(params):
        if request.count <= cores:
            continue
        said = f"{cite(request.loc)}: {request.count} {request.what}, but this machine has {cores} "
        if request.count > OVERSUBSCRIBE_LIMIT * cores and not allowed:
            raise ParamsError(
                f"{said}core(s) (more than {OVERSUBSCRIBE_LIMIT} per core: each process loads "
                f"torch); lower it, or set {OVERSUBSCRIBE_ENV}=1 to run it anyway"
            )
        warnings.append(
            f"{said}core(s): they will share the cores (slower, and timings are not comparable)"
        )
    return warnings
