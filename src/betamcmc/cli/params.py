"""``betamcmc params``: inspect and validate params.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from betamcmc.cli.app import friendly

params_app = typer.Typer(help="Inspect and validate params.yaml.", no_args_is_help=True)


@params_app.command("check")
@friendly
def params_check(
    file: Annotated[Path, typer.Argument(help="params file to validate")] = Path("params.yaml"),
) -> None:
    """Validate a params file exactly as the stages do; exit 2 with one line on the first error."""
    from betamcmc.params import load_params  # lazy: pydantic (~0.15 s) stays out of --help

    params = load_params(file)
    typer.echo(f"{file}: ok ({len(params.flat())} settings)")


@params_app.command("show")
@friendly
def params_show(
    file: Annotated[Path, typer.Argument(help="params file")] = Path("params.yaml"),
) -> None:
    """Print the validated params, flattened (`section.key = value`)."""
    from betamcmc.params import load_params  # lazy: pydantic stays out of --help

    for key, value in load_params(file).flat().items():
        typer.echo(f"{key} = {value}")
