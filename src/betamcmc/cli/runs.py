"""``betamcmc tracking replay`` and ``betamcmc ui``: the MLflow store (docs/tracking.md). MLflow
itself is reached only through :mod:`betamcmc.tracking` (the UI runs in a process of its own)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Annotated

import typer

from betamcmc.cli.app import ParamsFile, friendly
from betamcmc.core.errors import BetamcmcError

tracking_app = typer.Typer(
    help="The MLflow tracking store (docs/tracking.md).", no_args_is_help=True
)


@tracking_app.command("replay")
@friendly
def tracking_replay() -> None:
    """Send the tracking calls spooled while the store was unreachable (mlflow-spool/) to it;
    one line per spool file. Exits 1 while some stay spooled (the store still does not answer)."""
    from betamcmc import tracking  # lazy: pydantic and MLflow stay out of --help

    outcomes = tracking.replay()
    for outcome in outcomes:
        typer.echo(outcome.line())
    left = sum(o.left for o in outcomes)
    if left:
        raise BetamcmcError(
            f"{left} tracking call(s) stay in {tracking.spool_dir()}: rerun once the store answers"
        )
    if not outcomes:
        typer.echo(f"tracking: nothing spooled in {tracking.spool_dir()}")


@friendly
def ui(
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = 5000,
    host: Annotated[
        str,
        typer.Option(help="address to bind; anything but 127.0.0.1 / localhost exposes the runs"),
    ] = "127.0.0.1",
    params: ParamsFile = Path("params.yaml"),
) -> None:
    """Start the MLflow UI over the project's tracking store (on 127.0.0.1 unless --host says
    otherwise) and print links that open the runs table and the README's comparisons (each a
    saved view with exactly its metric columns, stored as an experiment tag)."""
    # lazy: pydantic (params, tracking) stays out of --help; mlflow runs in its own process
    from betamcmc import tracking
    from betamcmc.cli.ui import ui_links, ui_server_command
    from betamcmc.params import load_params

    loaded = load_params(params) if params.exists() else None
    busy = _cannot_bind(host, port)
    if busy:  # before the store is touched: mlflow would log it and exit 0 after ~20 s
        raise BetamcmcError(
            f"port {port} on {host} is not free ({busy}): stop what serves it "
            "or choose another with --port"
        )
    uri = tracking.tracking_uri(loaded)
    experiment_id = tracking.setup(loaded)  # create the store once: the UI does not race a stage
    url = f"http://{host}:{port}"
    typer.echo(f"MLflow UI for {uri}\n  -> {url}   (Ctrl-C to stop; it takes ~20 s to start)")
    for line in ui_links(uri, experiment_id, url):
        typer.echo(line)
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(
            f"warning: --host {host} serves the runs, params and artifacts to every machine that "
            "can reach this one, without a password",
            err=True,
        )
    raise typer.Exit(subprocess.call(ui_server_command(uri, host, port)))


def _cannot_bind(host: str, port: int) -> str | None:
    """Why the UI could not listen on ``host:port`` (None when it can): a probe bound the way
    the server binds (SO_REUSEADDR, so a port in TIME_WAIT counts as free), then closed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as err:
        return f"cannot resolve {host}: {err.strerror or err}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as err:
            return err.strerror or str(err)
    return None
