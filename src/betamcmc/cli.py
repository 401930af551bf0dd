"""The ``betamcmc`` console script: what lives outside the DVC stage graph.

Commands import what they need beyond typer (pydantic, yaml, torch, matplotlib) inside the
function, so that ``betamcmc --help`` loads only typer and ``betamcmc params check`` answers in a
fraction of a second.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from typer._click.exceptions import NoArgsIsHelpError, UsageError  # typer (pinned) vendors click
from typer.exceptions import Abort, Exit

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

study_app = typer.Typer(
    help="Studies of the text VAE as DVC experiments (studies/*.yaml): queue, collect.",
    no_args_is_help=True,
)
app.add_typer(study_app, name="study")


@study_app.command("queue")
@friendly
def study_queue(
    spec: Annotated[Path, typer.Argument(help="a study file, e.g. studies/pretrain_sweep.yaml")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only print the commands")] = False,
) -> None:
    """Queue every experiment of a study (`dvc exp run --queue ...`); then `dvc queue start`."""
    from betamcmc.vae.study import load_spec, queue  # lazy: yaml, pipeline only for `study`

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
    from betamcmc.io import write_json
    from betamcmc.vae.study import STUDIES, collect, keep_earlier, load_spec, read_collection

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


results_app = typer.Typer(help="The committed results pages (docs/results).", no_args_is_help=True)
app.add_typer(results_app, name="results")


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
    writes metrics/studies/labels.json, shown in docs/results/protocol.md."""
    from betamcmc.finetune.labels import OUT, run_labels  # lazy: torch, sklearn
    from betamcmc.params import load_params

    result = run_labels(load_params(params))
    calls = sum(c["verdict"] != "indistinguishable" for c in result["pairs"])
    typer.echo(f"wrote {OUT}: {len(result['labels'])} labels x {len(result['schedules'])} "
               f"schedules on validation; {calls} of {len(result['pairs'])} pairs call an ordering")  # fmt: skip


rl_app = typer.Typer(help="Saved policies of the rl stage.", no_args_is_help=True)
app.add_typer(rl_app, name="rl")


@rl_app.command("play")
@friendly
def rl_play(
    run: Annotated[str, typer.Argument(help="models/rl/<item> directory, item name or policy.pt")],
    episodes: Annotated[int, typer.Option("-n", "--episodes", min=1)] = 5,
    seed: Annotated[int | None, typer.Option(help="training seed (default: the first)")] = None,
    env_seed: Annotated[int, typer.Option(help="seed of the first episode's environment")] = 0,
    sample: Annotated[bool, typer.Option(help="sample actions instead of greedy")] = False,
    strip: Annotated[
        Path | None, typer.Option(help="CartPole frame strip PNG (default rl-play-<item>.png)")
    ] = None,
    no_strip: Annotated[bool, typer.Option("--no-strip", help="write no frame strip")] = False,
) -> None:
    """Run episodes of a saved rl policy and print their returns (CartPole: and a frame strip)."""
    from betamcmc.rl.play import play  # lazy: torch, gymnasium only for `rl play`

    name = Path(run).name.removesuffix(".pt")
    out = None if no_strip else (strip or Path(f"rl-play-{name}.png"))
    returns, meta, written = play(run, episodes, seed, env_seed, not sample, out)
    typer.echo(
        f"{meta['policy']}: {meta.get('env')} {meta.get('method', '')} seed {meta.get('seed')}"
    )
    for i, r in enumerate(returns):
        typer.echo(f"episode {i} (env seed {env_seed + i}): return {r:g}")
    typer.echo(f"mean return {sum(returns) / len(returns):.1f} over {len(returns)} episodes")
    if written is not None:
        typer.echo(f"frame strip: {written}")


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


# --------------------------------------------------------------------------- text VAE (issue 4)
schedule_app = typer.Typer(help="Beta schedules of the pretrain stage.", no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")


@schedule_app.command("plot")
@friendly
def schedule_plot(
    params: ParamsFile = Path("params.yaml"),
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG to write")] = Path("schedules.png"),
    iterations: Annotated[
        int | None,
        typer.Option(min=1, help="iterations to draw (default pretrain.train.iterations)"),
    ] = None,
) -> None:
    """Draw beta over the iterations for every schedule in pretrain.schedules to a PNG."""
    from betamcmc.io import atomic_path  # lazy: json/tempfile stay out of --help
    from betamcmc.params import load_params  # lazy: pydantic stays out of --help

    loaded = load_params(params)
    total = iterations or loaded.pretrain.train.iterations
    from betamcmc.vae.figures import plot_schedules  # lazy: matplotlib after the params check

    with atomic_path(out) as tmp:
        plot_schedules(loaded.pretrain.schedules, total, tmp)
    typer.echo(f"wrote {out} ({len(loaded.pretrain.schedules)} schedules, {total} iterations)")


@app.command()
@friendly
def sample(
    model: Annotated[
        Path | None,
        typer.Option(
            "--model", "-m", help="a trained VAE: models/pretrain/<schedule> (default: cyclical)"
        ),
    ] = None,
    n: Annotated[int, typer.Option("-n", min=0, help="sentences to sample from the prior")] = 5,
    reconstruct: Annotated[
        list[str] | None,
        typer.Option("--reconstruct", "-r", help="sentence to reconstruct (repeatable)"),
    ] = None,
    interpolate: Annotated[
        tuple[str, str] | None,
        typer.Option(
            "--interpolate", "-i", help="two sentences: decode points between their codes"
        ),
    ] = None,
    steps: Annotated[int, typer.Option(min=2, help="interpolation points incl. both ends")] = 5,
    greedy: Annotated[
        bool, typer.Option(help="greedy decoding (--no-greedy: sample words)")
    ] = True,
    max_len: Annotated[int, typer.Option(min=1, help="max words per sentence")] = 30,
    seed: Annotated[int, typer.Option(help="seed of z and word sampling")] = 0,
) -> None:
    """Print prior samples, reconstructions of given sentences and a latent interpolation."""
    # lazy: yaml (pipeline) and torch load only for this command, not for --help
    from betamcmc import pipeline
    from betamcmc.vae.sample import (
        interpolation,
        load_model_and_vocab,
        prior_samples,
        reconstructions,
    )

    model = model or pipeline.stage_item("pretrain", schedule="cyclical").out
    vae, vocab = load_model_and_vocab(model)
    if n:
        typer.echo(f"# {n} samples from the prior (z ~ N(0, I))")
        for i, text in enumerate(prior_samples(vae, vocab, n, seed, greedy, max_len), 1):
            typer.echo(f"{i}. {text}")
    if reconstruct:
        typer.echo("# reconstructions (decoded posterior mean)")
        for src, text in zip(
            reconstruct,
            reconstructions(vae, vocab, reconstruct, greedy, max_len, seed),
            strict=True,
        ):
            typer.echo(f"{src}\n  -> {text}")
    if interpolate:
        typer.echo(f"# interpolation in latent space ({steps} points)")
        for t, text in interpolation(
            vae, vocab, interpolate[0], interpolate[1], steps, greedy, max_len, seed
        ):
            typer.echo(f"t={t:.2f}  {text}")


@app.command()
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
    otherwise) and print its URL."""
    # lazy: pydantic (params, tracking) stays out of --help; mlflow runs in its own process
    from betamcmc import tracking
    from betamcmc.params import load_params

    loaded = load_params(params) if params.exists() else None
    uri = tracking.tracking_uri(loaded)
    tracking.setup(loaded)  # create the store once, so the UI does not race a stage
    url = f"http://{host}:{port}"
    typer.echo(f"MLflow UI for {uri}\n  -> {url}   (Ctrl-C to stop; it takes ~20 s to start)")
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(
            f"warning: --host {host} serves the runs, params and artifacts to every machine that "
            "can reach this one, without a password",
            err=True,
        )
    cmd = [
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
    raise typer.Exit(subprocess.call(cmd))


@app.command()
@friendly
def respond(
    context: Annotated[
        list[str], typer.Argument(help="context utterances, oldest first (quote each one)")
    ],
    model: Annotated[
        Path | None,
        typer.Option(
            "--model", "-m", help="a trained dialog model directory (default: cyclical-bow)"
        ),
    ] = None,
    n: Annotated[int, typer.Option("-n", min=1, help="responses to sample")] = 5,
    max_len: Annotated[int, typer.Option(min=1, help="max tokens per response")] = 30,
    seed: Annotated[int, typer.Option(help="seed of the z samples")] = 0,
) -> None:
    """Print N responses sampled from a dialog CVAE (z ~ p(z|c), greedy decoding) for a context."""
    # lazy: yaml (pipeline) and torch load only for this command, not for --help
    from betamcmc import pipeline
    from betamcmc.finetune.cvae import load_cvae
    from betamcmc.finetune.dialog import respond as sample_responses

    model = model or pipeline.stage_item("dialog", schedule="cyclical", bow="bow").out
    cvae, vocab = load_cvae(model)
    for i, reply in enumerate(sample_responses(cvae, vocab, context, n, max_len, seed), 1):
        typer.echo(f"{i}. {reply}")


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
    return result if isinstance(result, int) else 0


def console() -> None:  # pragma: no cover - the installed ``betamcmc`` script
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    console()
