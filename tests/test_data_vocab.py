"""The vocabulary and statistics of `prepare` count exactly the text the prepared corpus keeps.

Before: the vocabulary counted the raw training text, so words that only occurred in sentences
that `data.long_sentences: filter` drops, or after `data.max_len` where `truncate` cuts, got ids
(untrained embeddings; the test OOV rate understated), and `<eos>` / `<pad>` written in a corpus
were encoded as the special ids themselves.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from betamcmc.data.prepare import prepare
from betamcmc.data.prepared import SPECIALS, PreparedCorpus

from conftest import shipped_section, tiny_params

TRAIN = [
    "the cat sat",
    "the dog sat down",
    "a very long sentence with rareword inside it",  # 9 tokens
    "the cat ran away quickly tailword",  # 6 tokens: tailword is the 6th
]


def _corpus(tmp_path: Path, train: list[str]) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "train.txt").write_text("\n".join(train) + "\n", encoding="utf-8")
    (folder / "valid.txt").write_text("the cat sat\n", encoding="utf-8")
    (folder / "test.txt").write_text("rareword tailword sat\n", encoding="utf-8")
    return folder


def _prepare(folder: Path, **data: Any) -> tuple[PreparedCorpus, dict[str, Any]]:
    params = shipped_section("data", corpus="text", path=str(folder), min_count=1, **data)
    return prepare(params, 0)


def _kept_train_words(corpus: PreparedCorpus) -> Counter[str]:
    words: Counter[str] = Counter()
    for s in corpus.sentences["train"]:
        words.update(corpus.vocab.tokens[i] for i in s.ids)
    return words


def _assert_consistent(corpus: PreparedCorpus, stats: dict[str, Any]) -> None:
    kept = _kept_train_words(corpus)
    assert set(corpus.vocab.tokens[len(SPECIALS) :]) <= set(kept), "a word with no kept use"
    unk = corpus.vocab.unk_id
    for split in ("train", "valid", "test"):
        rows = corpus.sentences[split]
        tokens = sum(len(s.ids) for s in rows)
        assert stats[split]["sentences"] == len(rows)
        assert stats[split]["tokens"] == tokens
        n_unk = sum(i == unk for s in rows for i in s.ids)
        assert stats[split]["oov_rate"] == pytest.approx(n_unk / tokens, abs=1e-6)


def test_filtered_sentences_give_the_vocabulary_nothing(tmp_path: Path) -> None:
    corpus, stats = _prepare(_corpus(tmp_path, TRAIN), max_len=6, long_sentences="filter")
    assert stats["train"]["dropped_long"] == 1
    assert "rareword" not in corpus.vocab.index  # only in the dropped sentence
    assert "tailword" in corpus.vocab.index  # 6 tokens: kept whole
    test_ids = corpus.sentences["test"][0].ids
    assert test_ids[0] == corpus.vocab.unk_id  # so the test sentence counts it as OOV
    _assert_consistent(corpus, stats)


def test_truncated_words_give_the_vocabulary_nothing(tmp_path: Path) -> None:
    corpus, stats = _prepare(_corpus(tmp_path, TRAIN), max_len=5, long_sentences="truncate")
    assert stats["train"]["truncated"] == 2
    assert "tailword" not in corpus.vocab.index and "rareword" not in corpus.vocab.index
    assert "quickly" in corpus.vocab.index  # the 5th token of a 6-token sentence: kept
    assert stats["test"]["oov_rate"] == pytest.approx(2 / 3, abs=1e-6)
    _assert_consistent(corpus, stats)


def test_special_markers_in_the_text_read_as_unk(tmp_path: Path) -> None:
    train = ["the cat <eos> sat", "<pad> the dog", "the <unk> sat <bos>"]
    corpus, stats = _prepare(_corpus(tmp_path, train), max_len=10, long_sentences="truncate")
    vocab = corpus.vocab
    reserved = {vocab.pad_id, vocab.bos_id, vocab.eos_id}
    ids = [i for s in corpus.sentences["train"] for i in s.ids]
    assert not reserved & set(ids)
    assert ids.count(vocab.unk_id) == 4  # three markers and the literal <unk>
    assert any("3 <pad>/<bos>/<eos>" in note for note in corpus.meta["notes"])
    _assert_consistent(corpus, stats)


def test_synthetic_vocabulary_is_the_kept_text() -> None:
    """On the embedded corpus every word of the vocabulary occurs in a kept training sentence or
    a kept (cut to max_len) training dialog turn, and every such word has an id."""
    data = shipped_section("data", **tiny_params()["data"])
    corpus, stats = prepare(data, 0)
    words = _kept_train_words(corpus)
    for d in corpus.dialogs["train"]:
        for turn in [*d.context, d.response]:
            words.update(corpus.vocab.tokens[i] for i in turn)
    assert set(corpus.vocab.tokens[len(SPECIALS) :]) == set(words) - set(SPECIALS)
    assert stats["train"]["oov_rate"] == 0.0  # min_count 1: the kept train text is all known
