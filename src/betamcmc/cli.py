"""The ``betamcmc`` console script: what lives outside the DVC stage graph.

Commands import their heavy dependencies (torch, mlflow) inside the function, so that
``betamcmc params check`` answers in a fraction of a second.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from betamcmc.errors import BetamcmcError

app = typer.Typer(
    help="Cyclical beta-annealed text VAEs and asynchronous SG-MCMC: tools around the DVC pipeline.",
    no_args_is_help=True,
    add_completion=False,
)
params_app = typer.Typer(help="Inspect and validate params.yaml.", no_args_is_help=True)
app.add_typer(params_app, name="params")


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


@params_app.command("check")
@friendly
def params_check(
    file: Annotated[Path, typer.Argument(help="params file to validate")] = Path("params.yaml"),
) -> None:
    """Validate a params file exactly as the stages do; exit 2 with one line on the first error."""
    from betamcmc.params import load_params

    params = load_params(file)
    typer.echo(f"{file}: ok ({len(params.flat())} settings)")


@params_app.command("show")
@friendly
def params_show(
    file: Annotated[Path, typer.Argument(help="params file")] = Path("params.yaml"),
) -> None:
    """Print the validated params, flattened, defaults filled in."""
    from betamcmc.params import load_params

    for key, value in load_params(file).flat().items():
        typer.echo(f"{key} = {value}")


@app.command()
@friendly
def ui(
    port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 5000,
    params: ParamsFile = Path("params.yaml"),
) -> None:
    """Start the MLflow UI on 127.0.0.1 over the project's tracking store and print its URL."""
    import subprocess

    from betamcmc import tracking
    from betamcmc.params import load_params

    loaded = load_params(params) if params.exists() else None
    uri = tracking.tracking_uri(loaded)
    tracking.setup(loaded)  # create the store once, so the UI does not race a stage
    url = f"http://127.0.0.1:{port}"
    typer.echo(f"MLflow UI for {uri}\n  -> {url}   (Ctrl-C to stop; it takes ~20 s to start)")
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    raise typer.Exit(subprocess.call(cmd))


def main() -> None:  # pragma: no cover - console script entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
