"""What ``betamcmc ui`` serves and prints: the command that serves MLflow's UI over the project
store (MLflow's own CLI, in a process of its own) and the links into it
(:mod:`betamcmc.uilinks`), whose saved views it writes to the store as experiment tags
(``mlflow.sharedViewState.betamcmc-<hash>``, one per comparison and pipeline run). The store is
reached through :mod:`betamcmc.tracking`, the one package that imports MLflow."""

from __future__ import annotations

import sys

from betamcmc.tracking import store_client
from betamcmc.uilinks import comparison_links


def ui_server_command(uri: str, host: str, port: int) -> list[str]:
    """The ``mlflow ui`` command line over the store ``uri`` on ``host:port`` (one worker)."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def ui_links(uri: str, experiment_id: str | None, base: str) -> list[str]:
    """The links ``betamcmc ui`` prints (:func:`betamcmc.uilinks.comparison_links`, which also
    tags the experiment with one saved view per comparison); the UI still starts if the store
    cannot be searched or tagged, with one line saying why (none without an experiment id)."""
    if experiment_id is None:
        return []
    try:
        return comparison_links(store_client(uri), experiment_id, base)
    except Exception as err:  # noqa: BLE001 - any failure of the store (MLflow, REST, DB): one line
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        return [f"(no comparison links: {first})"]
