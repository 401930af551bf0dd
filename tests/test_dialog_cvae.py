"""The dialog CVAE on a tiny batch: shapes, KL, loss, sampling, checkpoints, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from betamcmc.core.errors import DivergenceError, InputError
from betamcmc.data.prepared import Dialog, PreparedCorpus, Vocab
from betamcmc.finetune.cvae import (
    DialogCVAE,
    collate,
    gaussian_kl,
    load_cvae,
    save_cvae,
)
from betamcmc.finetune.dialog import build_model, check_dialog_corpus, respond, train_cvae
from betamcmc.vae.params import CyclicalSchedule

from conftest import cvae_config, shipped_section

TOKENS = ["<pad>", "<unk>", "<bos>", "<eos>", "hi", "there", "how", "are", "you", "fine", "?"]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _dialogs() -> list[Dialog]:
    return [
        Dialog(
            context=[[4, 5]], speakers=["A"], response=[6, 7, 8, 10], response_speaker="B", act=0
        ),
        Dialog(
            context=[[4, 5], [6, 7, 8, 10]],
            speakers=["A", "B"],
            response=[9],
            response_speaker="A",
            act=1,
        ),
        Dialog(
            context=[[4], [], [9]],
            speakers=["A", "B", "A"],
            response=[4, 8],
            response_speaker="B",
            act=0,
        ),
    ]


def _corpus(dialogs: list[Dialog] | None = None) -> PreparedCorpus:
    d = _dialogs() if dialogs is None else dialogs
    return PreparedCorpus(
        meta={"corpus": "toy"},
        vocab=Vocab(TOKENS),
        sentences={},
        dialogs={"train": d, "valid": d, "test": d},
    )


def test_collate_shapes_and_speaker_flags() -> None:
    batch = collate(_dialogs(), max_context=2)
    assert batch.ctx_ids.shape == (3, 2, 4)
    assert batch.ctx_turns.tolist() == [1, 2, 2]  # third example keeps its last 2 turns
    assert batch.ctx_lens[2].tolist() == [0, 1]  # an empty utterance stays empty
    assert batch.ctx_same_speaker[1].tolist() == [1.0, 0.0]  # responder A spoke first
    assert batch.resp_lens.tolist() == [4, 1, 2]


def test_gaussian_kl_zero_for_equal_and_known_value() -> None:
    mu, lv = torch.randn(4, 3), torch.randn(4, 3)
    assert torch.allclose(gaussian_kl(mu, lv, mu, lv), torch.zeros(4), atol=1e-6)
    # KL(N(1, 1) || N(0, 1)) = 0.5 per dimension
    one = torch.ones(1, 2)
    assert torch.allclose(gaussian_kl(one, 0 * one, 0 * one, 0 * one), torch.tensor([1.0]))


@pytest.mark.parametrize("bow", [False, True])
def test_forward_and_sampling(bow: bool) -> None:
    torch.manual_seed(0)
    model = DialogCVAE(
        cvae_config(
            len(TOKENS),
            emb_dim=8,
            utt_hidden=8,
            ctx_hidden=8,
            latent_dim=4,
            dec_hidden=8,
            prior_hidden=8,
            bow=bow,
            max_context=2,
        )
    )
    out = model(collate(_dialogs(), 2), beta=0.5)
    assert all(torch.isfinite(v) for v in out.values())
    assert out["kl"] >= 0 and out["rec"] > 0
    assert torch.allclose(out["loss"], out["rec"] + 0.5 * out["kl"] + out["bow"])
    assert (out["bow"] > 0) == bow
    out["loss"].backward()
    samples = model.sample(collate(_dialogs(), 2), n=3, max_len=5)
    assert len(samples) == 3 and all(len(per) == 3 for per in samples)
    assert all(len(s) <= 5 and 3 not in s for per in samples for s in per)


def test_training_reduces_loss_is_deterministic_and_round_trips(tmp_path: Path) -> None:
    params = shipped_section(
        "finetune.dialog",
        epochs=3,
        batch_size=2,
        emb_dim=8,
        utt_hidden=8,
        ctx_hidden=8,
        latent_dim=4,
        dec_hidden=16,
        prior_hidden=8,
    )
    schedule = CyclicalSchedule(kind="cyclical", cycles=2)
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model(params, True, Vocab(TOKENS), 2)
        results.append(train_cvae(model, _corpus(), schedule, params, seed=0))
    a, b = results
    assert a.series == b.series
    assert a.series["beta"][0] == 0.0 and max(a.series["beta"]) == 1.0
    assert a.epochs[-1]["rec"] < a.epochs[0]["rec"]
    save_cvae(tmp_path / "m", model, Vocab(TOKENS))
    loaded, vocab = load_cvae(tmp_path / "m")
    assert vocab.tokens == TOKENS
    replies = respond(loaded, vocab, ["hi there"], n=2, max_len=4, seed=0)
    assert len(replies) == 2 and replies == respond(
        loaded, vocab, ["hi there"], n=2, max_len=4, seed=0
    )


def test_non_finite_loss_stops_with_divergence_error() -> None:
    params = shipped_section(
        "finetune.dialog",
        epochs=1,
        batch_size=3,
        emb_dim=4,
        utt_hidden=4,
        ctx_hidden=4,
        latent_dim=2,
        dec_hidden=4,
        prior_hidden=4,
    )
    model = build_model(params, False, Vocab(TOKENS), 2)
    with torch.no_grad():
        model.out.bias.fill_(float("nan"))
    with pytest.raises(DivergenceError, match="iteration 0"):
        train_cvae(model, _corpus(), CyclicalSchedule(kind="cyclical"), params, seed=0)


def test_corpus_without_responses_and_vocab_mismatch(tmp_path: Path) -> None:
    empty = PreparedCorpus(
        meta={"corpus": "ptb"},
        vocab=Vocab(TOKENS),
        sentences={},
        dialogs={"train": [], "valid": [], "test": []},
    )
    with pytest.raises(InputError, match="has no dialog responses"):
        check_dialog_corpus(empty)
    check_dialog_corpus(_corpus())
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "vocab.txt").write_text("\n".join(TOKENS[:-1] + ["!"]) + "\n")
    with pytest.raises(InputError, match="vocabulary mismatch.*first difference at id 10"):
        build_model(
            shipped_section("finetune.dialog"),
            False,
            Vocab(TOKENS),
            2,
            pretrained_dir=tmp_path / "vae",
        )
