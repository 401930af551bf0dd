"""Shared mechanics of a stage entry point: error reporting, seeding, device and precision choice.

A stage script is::

    def main(argv: list[str] | None = None) -> None:
        args = parse_args(argv)
        params = load_params(args.params)
        ...

    if __name__ == "__main__":
        run_stage(main)

:func:`run_stage` turns a :class:`~betamcmc.core.errors.BetamcmcError` into one line on stderr
(``error: <message>``) and its exit code (2 for bad params / input), with no traceback.
"""

from __future__ import annotations

import errno
import os
import random
import sys
from collections.abc import Callable

from betamcmc.core.errors import BetamcmcError, ParamsError
from betamcmc.core.stopping import Stopped, stop_on_signals

# Every stage imports this module before it loads torch: OpenMP worker threads that spin while
# waiting steal the cores of a shared machine (2 threads ran ~6x slower than 1); passive waiting
# costs little on an idle one. Set here once instead of before the imports of every stage script.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def run_stage(main: Callable[[], object], *, hard_exit: bool = False) -> None:
    """Run ``main()``; report a :class:`BetamcmcError` as one line and exit with its code; a full
    disk, a read-only or forbidden output folder likewise (exit 1). A SIGTERM / SIGINT (unless the
    stage handles them itself) unwinds the stage, so no temporary output is left behind.

    ``hard_exit``: for the ``__main__`` of the stages that run the SG-MCMC engine, which leave
    by ``os._exit`` after an error or a stop (see :func:`_exit`); never inside a test process."""
    try:
        with stop_on_signals():  # SIGTERM / SIGINT unwind (temp outputs removed), exit 143 / 130
            main()
    except Stopped as err:
        detail = ""
        if str(err) == f"stopped by {err.signame}":
            detail = "; outputs are replaced whole or not at all, so the previous ones are kept"
        print(f"error: {err}{detail}", file=sys.stderr)
        _exit(err.exit_code, hard_exit)
    except BetamcmcError as err:
        print(f"error: {err}", file=sys.stderr)
        _exit(err.exit_code, hard_exit)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        _exit(130, hard_exit)
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
            raise
        where = f"{err.filename}: " if err.filename else ""
        print(
            f"error: {where}{err.strerror}; outputs are replaced whole or not at all, so the "
            "previous ones are kept (free space or fix the permissions, then rerun)",
            file=sys.stderr,
        )
        _exit(1, hard_exit)


def _exit(code: int, hard: bool) -> None:
    """``sys.exit(code)``; with ``hard`` (a stage process that runs the SG-MCMC engine, i.e.
    torch.distributed), ``os._exit(code)`` once the streams are flushed.

    A stage stopped or failed while a gloo receive was in flight leaves gloo threads that C++
    destructors find joinable at interpreter exit: the process then aborts (SIGABRT, ``terminate
    called without an active exception``) after its one line, about one stop in three. By then
    every ``finally`` has run: outputs, workers and the MLflow run are closed."""
    if not hard:
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, and ask torch for deterministic CPU kernels."""
    # lazy: every stage imports this module first, before torch (OMP_WAIT_POLICY above, and a
    # bad params file fails before torch's second of start-up)
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))


# CPU features with native bf16 arithmetic (/proc/cpuinfo flag names): AVX-512 BF16 (dot products
# of bf16 pairs, Zen 4, Cooper Lake) and AMX-BF16 (tile matrix multiplies, Sapphire Rapids). Without
# one, PyTorch still runs bf16 by converting to fp32 around every kernel: slower than fp32.
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_native_bf16(flags: frozenset[str] | None = None) -> str | None:
    """The first of :data:`NATIVE_BF16_FLAGS` this CPU has, or None. ``flags``: the CPU's flags
    (default: read from ``/proc/cpuinfo``, else from torch's cpuinfo where there is no such
    file), so a test can ask about any CPU."""
    found = _cpu_flags() if flags is None else flags
    return next((f for f in NATIVE_BF16_FLAGS if f in found), None)


def _cpu_flags() -> frozenset[str]:
    """The flags of ``/proc/cpuinfo``'s first processor; torch's own CPUID probe elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    import torch  # lazy: see seed_everything; only where /proc/cpuinfo is missing (macOS)

    caps = torch.cpu.get_capabilities()
    return frozenset(k for k, v in caps.items() if v is True)


def resolve_precision(precision: str, device: str, flags: frozenset[str] | None = None) -> str:
    """``runtime.precision`` for ``device`` (a resolved ``cpu`` / ``cuda``): ``fp32`` or
    ``bf16``. ``auto`` picks bf16 only where the device computes it natively (a CUDA card with
    bf16, a CPU with :data:`NATIVE_BF16_FLAGS`), since emulated bf16 is slower than fp32 and
    changes the numbers for nothing; ``bf16`` on a CUDA card without it is an error."""
    if precision == "fp32":
        return "fp32"
    native = _device_native_bf16(device, flags)
    if precision == "auto":
        return "bf16" if native else "fp32"
    if device.startswith("cuda") and not native:
        raise ParamsError("runtime.precision: this CUDA card has no bf16 (got 'bf16')")
    return "bf16"


def _device_native_bf16(device: str, flags: frozenset[str] | None) -> bool:
    if device.startswith("cuda"):
        import torch  # lazy: see seed_everything

        return bool(torch.cuda.is_bf16_supported())
    return cpu_native_bf16(flags) is not None


def describe_precision(precision: str, resolved: str, device: str) -> str:
    """What a stage's first line says: the precision, and why (``auto``'s choice, or an
    explicit bf16 on a CPU that only emulates it)."""
    if device.startswith("cuda"):
        why = "CUDA bf16" if resolved == "bf16" else "CUDA"
    else:
        why = cpu_native_bf16() or "no native bf16 on this CPU"
    if precision == "auto":
        return f"precision {resolved} (runtime.precision auto: {why})"
    if resolved == "bf16" and not device.startswith("cuda") and cpu_native_bf16() is None:
        return "precision bf16 (emulated: no native bf16 on this CPU, slower than fp32)"
    return f"precision {resolved}"


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cuda`` without a GPU is an error."""
    import torch  # lazy: see seed_everything

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ParamsError("device: 'cuda' requested but torch sees no CUDA device (got 'cuda')")
    return device
