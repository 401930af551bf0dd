"""The ``betamcmc`` console script: what lives outside the DVC stage graph.

Commands import what they need beyond typer (pydantic, yaml, torch, matplotlib, MLflow through
:mod:`betamcmc.tracking`) inside the function, so that ``betamcmc --help`` loads only typer and
``betamcmc params check`` answers in a fraction of a second. One module per command group:
:mod:`~betamcmc.cli.params`, :mod:`~betamcmc.cli.study`, :mod:`~betamcmc.cli.results`,
:mod:`~betamcmc.cli.runs` (tracking replay, ui), :mod:`~betamcmc.cli.models` (sample, respond,
rl play, schedule plot); :mod:`~betamcmc.cli.app` holds the root app and the one-line errors.
"""

from __future__ import annotations

import os
import sys

import typer
from typer._click.exceptions import NoArgsIsHelpError, UsageError  # typer (pinned) vendors click
from typer.exceptions import Abort, Exit

from betamcmc.cli.app import app, friendly
from betamcmc.cli.models import respond, rl_app, sample, schedule_app
from betamcmc.cli.params import params_app
from betamcmc.cli.results import results_app
from betamcmc.cli.runs import tracking_app, ui
from betamcmc.cli.study import study_app

__all__ = ["app", "console", "friendly", "main"]

# registered in the order ``betamcmc --help`` lists them
app.add_typer(params_app, name="params")
app.add_typer(study_app, name="study")
app.add_typer(results_app, name="results")
app.add_typer(rl_app, name="rl")
app.add_typer(tracking_app, name="tracking")
app.add_typer(schedule_app, name="schedule")
app.command()(sample)
app.command()(ui)
app.command()(respond)


def main(argv: list[str] | None = None) -> int:
    """The console script: every mistake on the command line is one line on stderr and exit 2.

    Click would print a usage box over several lines; an empty or blank argument (``-m ""``)
    would silently mean the current directory. Returns the exit code (raises ``SystemExit``
    from the console script).
    """
    args = sys.argv[1:] if argv is None else list(argv)
    for i, arg in enumerate(args):
        if not arg.strip():
            after = f" (the value of {args[i - 1]})" if i and args[i - 1].startswith("-") else ""
            typer.echo(f"error: argument {i + 1}{after} is empty or only whitespace", err=True)
            return 2
    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name="betamcmc", standalone_mode=False)
    except NoArgsIsHelpError as err:
        typer.echo(err.ctx.get_help() if err.ctx else "", err=True)
        return 2
    except UsageError as err:
        where = f"{err.ctx.command_path}: " if err.ctx else "betamcmc: "
        message = " ".join(err.format_message().split())
        typer.echo(f"error: {where}{message} (see --help)", err=True)
        return 2
    except Exit as err:
        return err.exit_code
    except Abort:
        typer.echo("error: interrupted", err=True)
        return 130
    except OSError as err:  # a file the command writes or reads: one line naming it
        typer.echo(f"error: {_os_error(err)}", err=True)
        return 1
    except Exception as err:  # noqa: BLE001 - every failure is one line; the traceback on request
        if os.environ.get("BETAMCMC_TRACEBACK"):
            raise
        typer.echo(f"error: {_unexpected(err)}", err=True)
        return 1
    return result if isinstance(result, int) else 0


def _os_error(err: OSError) -> str:
    """One line for an operating-system error: the file it concerns and why."""
    where = f"{err.filename}: " if err.filename else ""
    return f"{where}{err.strerror or err}"


def _unexpected(err: Exception) -> str:
    """One line for an error no check foresaw (a bug): its type and first line, and how to see
    the traceback, so a user gets no wall of text and a developer still gets the details."""
    text = " ".join(str(err).split())[:300]
    return (
        f"unexpected {type(err).__name__}: {text} (a bug: rerun with BETAMCMC_TRACEBACK=1 "
        "and report the traceback)"
    )


def console() -> None:  # pragma: no cover - the installed ``betamcmc`` script
    sys.exit(main())
