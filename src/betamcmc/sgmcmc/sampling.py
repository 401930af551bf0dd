"""Running the engine for a stage: locally or as one ``torchrun`` rank, with the rules every
stage that samples shares.

* SIGTERM / SIGINT end the run with one line that says how many samples were kept and where
  (:class:`~betamcmc.core.stopping.Stopped`, exit 143 / 130); the worker processes are terminated.
* A run that lost workers and collected fewer samples than configured fails the stage (one line,
  exit 1) unless the stage's ``allow_partial`` flag is set (:func:`result.require_complete`).
* Samples stream into ``<output>.partial/``, which becomes the output directory only once the
  run and its evaluation are complete (:func:`finalize_dir`): DVC never sees a half-made output,
  and a stopped or failed run leaves readable samples there (not an output).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from betamcmc.core.stopping import Stopped, stop_on_signals
from betamcmc.sgmcmc.engine.config import RunSpec
from betamcmc.sgmcmc.engine.launch import Report, run_local, run_torchrun, torchrun_rank
from betamcmc.sgmcmc.engine.result import RunResult, require_complete
from betamcmc.sgmcmc.engine.samples import count_samples


def is_worker_rank() -> bool:
    """A torchrun rank other than 0: it computes gradients and writes nothing (no MLflow run)."""
    where = torchrun_rank()
    return where is not None and where[0] != 0


def sample(
    spec: RunSpec,
    samples_dir: Path,
    info: dict[str, Any],
    allow_partial: bool = False,
    partial_flag: str = "sgmcmc.allow_partial",
    report: Report | None = None,
) -> RunResult | None:
    """Sample into ``samples_dir``; the result on the master, None on a torchrun worker rank.
    ``report``: the master's progress callback (:func:`betamcmc.sgmcmc.engine.launch.run_local`)."""
    try:
        with stop_on_signals():
            if torchrun_rank() is not None:
                result = run_torchrun(spec, samples_dir, info, report)
            else:
                result = run_local(spec, samples_dir, info, report=report)
    except Stopped as stop:
        if is_worker_rank():
            raise stop.saying("this worker rank stopped; the master keeps the samples") from None
        kept = count_samples(samples_dir)
        raise stop.saying(
            f"{kept} of {spec.config.samples} samples kept in {samples_dir} "
            "(not an output: rerun the stage to sample again)"
        ) from None
    if result is not None:
        kept = f"they are kept in {samples_dir} (not an output), no output was written"
        require_complete(result, allow_partial, partial_flag, kept)
    return result


def finalize_dir(partial: Path, final: Path) -> None:
    """Replace ``final`` with the completed ``partial`` directory (rename, old one removed)."""
    if final.exists():
        old = final.with_name(final.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(partial, final)


def fresh_partial(final: Path) -> Path:
    """``<final>.partial``, emptied: where a new run streams its samples."""
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    return partial
