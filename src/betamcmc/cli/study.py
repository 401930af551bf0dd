"""``betamcmc study``: studies of the text VAE as DVC experiments (studies/*.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from betamcmc.cli.app import friendly

study_app = typer.Typer(
    help="Studies of the text VAE as DVC experiments (studies/*.yaml): queue, collect.",
    no_args_is_help=True,
)


@study_app.command("queue")
@friendly
def study_queue(
    spec: Annotated[Path, typer.Argument(help="a study file, e.g. studies/pretrain_sweep.yaml")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only print the commands")] = False,
) -> None:
    """Queue every experiment of a study (`dvc exp run --queue ...`); then `dvc queue start`."""
    from betamcmc.results.vae_study import load_spec, queue  # lazy: yaml, pipeline only for `study`

    for line in queue(load_spec(spec), dry_run=dry_run):
        typer.echo(line)
    if not dry_run:
        typer.echo(
            "queued; run them with `dvc queue start` (-j 1 on 2 cores), then `betamcmc study collect`"
        )


@study_app.command("collect")
@friendly
def study_collect(
    spec: Annotated[Path, typer.Argument(help="the study file the experiments were queued from")],
    out: Annotated[Path | None, typer.Option(help="default metrics/studies/<name>.json")] = None,
    keep: Annotated[
        bool,
        typer.Option(
            "--keep",
            help="keep the rows already in the output file for experiments this repository "
            "lacks (run in another clone, or removed by `dvc exp gc`)",
        ),
    ] = False,
) -> None:
    """Gather what the study's finished experiments measured into metrics/studies/<name>.json."""
    # lazy: yaml (study) and json/tempfile (io) stay out of --help
    from betamcmc.core.io import write_json
    from betamcmc.results.vae_study import (
        STUDIES,
        collect,
        keep_earlier,
        load_spec,
        read_collection,
    )

    study = collect(load_spec(spec))
    study["file"] = spec.as_posix()  # the study file, for the report's "reproduce" line
    target = out or STUDIES / f"{study['name']}.json"
    if keep and target.exists():
        study = keep_earlier(study, read_collection(target))
    write_json(target, study)
    n = len(study["experiments"])
    typer.echo(
        f"{target}: {n} experiment(s)"
        + (f" ({len(study['kept'])} kept from before)" if study.get("kept") else "")
        + (f"; missing: {', '.join(study['missing'])}" if study["missing"] else "")
    )
    typer.echo("draw it with `dvc repro pretrain_report` (reports/pretrain/study_<name>.md, .png)")


def _study_transfer(spec: Path, direction: str, remote: str) -> None:
    """Push or pull every experiment of a study (``betamcmc.results.vae_study.transfer``)."""
    from betamcmc.results.vae_study import (  # lazy: yaml, pipeline only for `study`
        load_spec,
        transfer,
    )

    loaded = load_spec(spec)
    moved, missing = transfer(loaded, direction, remote)
    towards = "to" if direction == "push" else "from"
    typer.echo(
        f"{direction}ed {len(moved)} experiment(s) of study '{loaded['name']}' "
        f"({towards} {remote}): {', '.join(moved)}"
        + (f"; not found there: {', '.join(missing)}" if missing else "")
    )


GitRemote = Annotated[str, typer.Option("--remote", "-r", help="git remote of the experiments")]


@study_app.command("push")
@friendly
def study_push(
    spec: Annotated[Path, typer.Argument(help="the study file the experiments were queued from")],
    remote: GitRemote = "origin",
) -> None:
    """Push the study's experiments (git refs to --remote, models to the DVC remote)."""
    _study_transfer(spec, "push", remote)


@study_app.command("pull")
@friendly
def study_pull(
    spec: Annotated[Path, typer.Argument(help="the study file the experiments were queued from")],
    remote: GitRemote = "origin",
) -> None:
    """Pull the study's experiments pushed from another clone; then `betamcmc study collect`."""
    _study_transfer(spec, "pull", remote)
