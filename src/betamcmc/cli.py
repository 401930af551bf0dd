"""The ``betamcmc`` console script: what lives outside the DVC stage graph.

Commands import what they need beyond typer (pydantic, yaml, torch, matplotlib) inside the
function, so that ``betamcmc --help`` loads only typer and ``betamcmc params check`` answers in a
fraction of a second.
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from typer._click.exceptions import NoArgsIsHelpError, UsageError  # typer (pinned) vendors click
from typer.exceptions import Abort, Exit

from betamcmc.errors import BetamcmcError, InputError

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


def _study_transfer(spec: Path, direction: str, remote: str) -> None:
    """Push or pull every experiment of a study (``betamcmc.vae.study.transfer``)."""
    from betamcmc.vae.study import load_spec, transfer  # lazy: yaml, pipeline only for `study`

    loaded = load_spec(spec)
    moved, missing = transfer(loaded, direction, remote)
    typer.echo(f"{direction}ed {len(moved)} experiment(s) of study '{loaded['name']}' "
               f"({'to' if direction == 'push' else 'from'} {remote}): {', '.join(moved)}"
               + (f"; not found there: {', '.join(missing)}" if missing else ""))  # fmt: skip


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
    writes metrics/labels.json, shown in docs/results/protocol.md."""
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


# --------------------------------------------------------------------------- tracking
tracking_app = typer.Typer(
    help="The MLflow tracking store (docs/tracking.md).", no_args_is_help=True
)
app.add_typer(tracking_app, name="tracking")


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
    if out.is_dir():
        raise InputError("expected a PNG file to write, found a directory", out)
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
    otherwise) and print links that open the runs table and the README's comparisons."""
    # lazy: pydantic (params, tracking) stays out of --help; mlflow runs in its own process
    from betamcmc import tracking
    from betamcmc.params import load_params

    loaded = load_params(params) if params.exists() else None
    busy = _cannot_bind(host, port)
    if busy:  # before the store is touched: mlflow would log it and exit 0 after ~20 s
        raise BetamcmcError(f"port {port} on {host} is not free ({busy}): stop what serves it "
                            f"or choose another with --port")  # fmt: skip
    uri = tracking.tracking_uri(loaded)
    experiment_id = tracking.setup(loaded)  # create the store once: the UI does not race a stage
    url = f"http://{host}:{port}"
    typer.echo(f"MLflow UI for {uri}\n  -> {url}   (Ctrl-C to stop; it takes ~20 s to start)")
    for line in _ui_links(uri, experiment_id, url):
        typer.echo(line)
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


def _ui_links(uri: str, experiment_id: str | None, base: str) -> list[str]:
    """The links `betamcmc ui` prints (betamcmc.uilinks); the UI still starts if the store cannot
    be searched, with one line saying why (none without an experiment id)."""
    if experiment_id is None:
        return []
    import mlflow  # lazy: only `ui` pays MLflow's import, after the port and store checks

    from betamcmc.uilinks import comparison_links  # lazy: with MLflow, only for `ui`

    try:
        return comparison_links(mlflow.MlflowClient(uri), experiment_id, base)
    except mlflow.exceptions.MlflowException as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        return [f"(no comparison links: {first})"]


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
    return (f"unexpected {type(err).__name__}: {text} (a bug: rerun with BETAMCMC_TRACEBACK=1 "
            "and report the traceback)")  # fmt: skip


def console() -> None:  # pragma: no cover - the installed ``betamcmc`` script
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    console()
