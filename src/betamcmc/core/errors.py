"""Errors that end a stage with one clear line and a non-zero exit code.

Every user-facing failure (bad params, bad input files, a diverging run) is raised as a
subclass of :class:`BetamcmcError`; :func:`betamcmc.core.runner.run_stage` and the CLI turn it into
``error: <message>`` on stderr and ``exit_code``. Nothing else should print tracebacks at users.
"""

from __future__ import annotations


class BetamcmcError(Exception):
    """Base class: a failure the user can act on. ``str(err)`` is the one line we print."""

    exit_code = 1


class ParamsError(BetamcmcError):
    """params.yaml (or a -S override) is invalid: unknown key, wrong type, out of range."""

    exit_code = 2


class InputError(BetamcmcError):
    """An input file is missing or malformed. The message names the file and, when known, the line."""

    exit_code = 2

    def __init__(self, message: str, path: object | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}")
        self.path = path
        self.line = line


class DivergenceError(BetamcmcError):
    """A loss or parameter became NaN/inf during training or sampling."""

    exit_code = 3
