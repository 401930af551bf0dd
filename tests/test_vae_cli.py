"""`betamcmc schedule plot` and `betamcmc sample` on a tiny saved model."""

from __future__ import annotations

from pathlib import Path

import torch
from typer.testing import CliRunner

from betamcmc.cli import app
from betamcmc.vae.model import TextVAE, save_vae

from conftest import tiny_params, vae_config, write_params

TOKENS = ["<pad>", "<unk>", "<bos>", "<eos>", "the", "cat", "sat", "dog", "ran", "."]


def _model_dir(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = TextVAE(vae_config(len(TOKENS), emb_dim=8, hidden_dim=8, latent_dim=2))
    d = tmp_path / "m"
    d.mkdir()
    save_vae(model.eval(), d / "model.pt")
    (d / "vocab.txt").write_text("\n".join(TOKENS) + "\n")
    return d


def test_schedule_plot(tmp_path: Path):
    params = write_params(tmp_path / "params.yaml", tiny_params())
    out = tmp_path / "s.png"
    res = CliRunner().invoke(app, ["schedule", "plot", "--params", str(params), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "4 schedules, 40 iterations" in res.output


def test_sample_prior_reconstruct_interpolate(tmp_path: Path):
    d = _model_dir(tmp_path)
    args = ["sample", "-m", str(d), "-n", "2", "-r", "the cat sat .", "--max-len", "6",
            "-i", "the cat sat", "the dog ran", "--steps", "4"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith("# 2 samples") and lines[1].startswith("1. ")
    assert "the cat sat .\n  -> " in res.output
    interp = [ln for ln in lines if ln.startswith("t=")]
    assert [ln.split()[0] for ln in interp] == ["t=0.00", "t=0.33", "t=0.67", "t=1.00"]
    assert all(len(ln.split()) - 1 <= 6 for ln in interp)
    assert all(w in TOKENS for ln in interp for w in ln.split()[1:])
    again = CliRunner().invoke(app, args)
    assert again.output == res.output  # seeded


def test_sample_errors(tmp_path: Path):
    res = CliRunner().invoke(app, ["sample", "-m", str(tmp_path / "none")])
    assert res.exit_code == 2
    assert "VAE checkpoint not found" in res.output
    d = _model_dir(tmp_path)
    (d / "vocab.txt").write_text("\n".join(TOKENS[:6]) + "\n")
    res = CliRunner().invoke(app, ["sample", "-m", str(d)])
    assert res.exit_code == 2 and "vocabulary has 6 entries but the model expects 10" in res.output
