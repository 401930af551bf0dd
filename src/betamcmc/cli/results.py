"""``betamcmc results``: the committed results pages (docs/results)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from betamcmc.cli.app import friendly

results_app = typer.Typer(help="The committed results pages (docs/results).", no_args_is_help=True)


@results_app.command("docs")
@friendly
def results_docs(
    check: Annotated[
        bool, typer.Option("--check", help="exit 1 if a page differs from a fresh render")
    ] = False,
    root: Annotated[Path, typer.Option(help="repository root")] = Path("."),
) -> None:
    """Render docs/results/src/<page>.md into docs/results/<page>.md (numbers from files)."""
    from betamcmc.results import docs  # no torch: json and the templates only

    try:
        if check:
            stale = docs.stale(root)
            for page in stale:
                typer.echo(f"stale: {page} (run `betamcmc results docs`)", err=True)
            if stale:
                raise typer.Exit(1)
            typer.echo(f"{len(docs.templates(root))} pages up to date")
            return
        written = docs.write_all(root)
    except docs.TemplateError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {len(written)} pages: {', '.join(p.name for p in written)}")


@results_app.command("labels")
@friendly
def results_labels(
    params: Annotated[Path, typer.Option(help="params file")] = Path("params.yaml"),
) -> None:
    """Validation accuracy of every corpus label x schedule (after `dvc repro`; no test data):
    writes metrics/labels.json, shown in docs/results/protocol.md."""
    from betamcmc.finetune.labels import OUT, run_labels  # lazy: torch, sklearn
    from betamcmc.params import load_params

    result = run_labels(load_params(params))
    calls = sum(c["verdict"] != "indistinguishable" for c in result["pairs"])
    typer.echo(
        f"wrote {OUT}: {len(result['labels'])} labels x {len(result['schedules'])} "
        f"schedules on validation; {calls} of {len(result['pairs'])} pairs call an ordering"
    )
