"""The root ``betamcmc`` app and what every command shares: one-line errors (:func:`friendly`)
and the ``--params`` option."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from betamcmc.core.errors import BetamcmcError

app = typer.Typer(
    help="Cyclical beta-annealed text VAEs and asynchronous SG-MCMC: tools around the DVC pipeline.",
    no_args_is_help=True,
    add_completion=False,
)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Report a BetamcmcError as one line on stderr with its exit code (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BetamcmcError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(err.exit_code) from None

    return wrapper


ParamsFile = Annotated[Path, typer.Option("--params", "-p", help="params file")]
