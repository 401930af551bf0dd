"""Commands on what the stages trained and on the schedules: ``betamcmc sample`` and
``respond`` (the text VAE and the dialog CVAE), ``rl play`` (a saved policy) and
``schedule plot``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from betamcmc.cli.app import ParamsFile, friendly
from betamcmc.core.errors import InputError

rl_app = typer.Typer(help="Saved policies of the rl stage.", no_args_is_help=True)


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


schedule_app = typer.Typer(help="Beta schedules of the pretrain stage.", no_args_is_help=True)


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
    from betamcmc.core.io import atomic_path  # lazy: json/tempfile stay out of --help
    from betamcmc.params import load_params  # lazy: pydantic stays out of --help

    loaded = load_params(params)
    if out.is_dir():
        raise InputError("expected a PNG file to write, found a directory", out)
    total = iterations or loaded.pretrain.train.iterations
    from betamcmc.results.vae_figures import (
        plot_schedules,  # lazy: matplotlib after the params check
    )

    with atomic_path(out) as tmp:
        plot_schedules(loaded.pretrain.schedules, total, tmp)
    typer.echo(f"wrote {out} ({len(loaded.pretrain.schedules)} schedules, {total} iterations)")


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
    from betamcmc.core import pipeline
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
    from betamcmc.core import pipeline
    from betamcmc.finetune.cvae import load_cvae
    from betamcmc.finetune.dialog import respond as sample_responses

    model = model or pipeline.stage_item("dialog", schedule="cyclical", bow="bow").out
    cvae, vocab = load_cvae(model)
    for i, reply in enumerate(sample_responses(cvae, vocab, context, n, max_len, seed), 1):
        typer.echo(f"{i}. {reply}")
