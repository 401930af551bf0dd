"""Turn a raw corpus into the prepared format: vocabulary on train, length limit, ids, stats.

The vocabulary is built on the training split only, from the text the prepared corpus keeps
(after the length limit: :func:`build_vocab`), with ``data.min_count``, ``data.max_vocab`` and
ties broken alphabetically so it is deterministic; ``<pad> <unk> <bos> <eos>`` come first.
``<pad>``, ``<bos>`` and ``<eos>`` written in the text itself read as ``<unk>``.
Sentences longer than ``data.max_len`` tokens are truncated or dropped
(``data.long_sentences``). Dialog turns become context/response examples: every turn after
the first is a response, the ``data.dialog_context`` turns before it its context.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from betamcmc import tracking
from betamcmc.core.errors import InputError
from betamcmc.core.io import write_json
from betamcmc.core.pipeline import StageItem
from betamcmc.core.stopping import signals_deferred
from betamcmc.data.corpora import load_corpus
from betamcmc.data.params import DataParams
from betamcmc.data.prepared import (
    SPECIALS,
    SPLITS,
    UNK,
    Dialog,
    PreparedCorpus,
    Sentence,
    Vocab,
    write_prepared,
)
from betamcmc.data.raw import RawCorpus

if TYPE_CHECKING:
    from betamcmc.params import Params


def build_vocab(corpus: RawCorpus, data: DataParams) -> Vocab:
    """The vocabulary of the training text as the prepared corpus keeps it: sentences after
    ``data.max_len`` (truncated, or dropped by ``filter``) and dialog turns cut to
    ``data.max_len``. Counting the raw text instead would give ids to words that only occur in
    dropped or cut-off text: embeddings never trained, and test words that should count as
    ``<unk>`` (the OOV rate) encoded as known."""
    counts: Counter[str] = Counter()
    for tokens, _ in corpus.sentences["train"]:
        counts.update(_limit(tokens, data) or [])
    if corpus.dialog_text_separate:
        for dialog in corpus.dialogs["train"]:
            for turn in dialog.turns:
                counts.update(turn[: data.max_len])
    for special in SPECIALS:
        counts.pop(special, None)
    ranked = sorted(
        (tok for tok, c in counts.items() if c >= data.min_count),
        key=lambda tok: (-counts[tok], tok),
    )
    return Vocab([*SPECIALS, *ranked[: data.max_vocab - len(SPECIALS)]])


RESERVED = frozenset(SPECIALS) - {UNK}  # markers a text must not produce: <pad> <bos> <eos>


def _plain_text(raw: RawCorpus) -> int:
    """Read ``<pad>``, ``<bos>`` and ``<eos>`` written in the corpus text as ``<unk>`` (in
    place); returns how many there were. Encoded as themselves they would end a sentence early
    (``<eos>``) or vanish from the loss (``<pad>``). ``<unk>`` keeps its meaning (PTB marks its
    rare words with it)."""
    replaced = 0
    rows = [tokens for split in raw.sentences.values() for tokens, _ in split]
    rows += [turn for split in raw.dialogs.values() for d in split for turn in d.turns]
    for tokens in rows:
        for i, tok in enumerate(tokens):
            if tok in RESERVED:
                tokens[i] = UNK
                replaced += 1
    return replaced


def _limit(tokens: list[str], data: DataParams) -> list[str] | None:
    if len(tokens) <= data.max_len:
        return tokens
    return tokens[: data.max_len] if data.long_sentences == "truncate" else None


def prepare(data: DataParams, seed: int) -> tuple[PreparedCorpus, dict[str, Any]]:
    """Load, split, build the vocabulary and encode. Returns the corpus and its statistics."""
    raw = load_corpus(data, seed)
    reserved = _plain_text(raw)
    if reserved:
        raw.notes.append(f"{reserved} <pad>/<bos>/<eos> token(s) in the text read as <unk>")
    vocab = build_vocab(raw, data)
    sentences, dropped, truncated = build_sentences(raw, vocab, data)
    _check_splits(raw, sentences, dropped, data)
    dialogs = {split: build_dialog_examples(raw, split, vocab, data) for split in SPLITS}
    corpus = PreparedCorpus(
        meta=_meta(raw, data), vocab=vocab, sentences=sentences, dialogs=dialogs
    )
    return corpus, statistics(corpus, dropped, truncated)


def build_sentences(
    raw: RawCorpus, vocab: Vocab, data: DataParams
) -> tuple[dict[str, list[Sentence]], dict[str, int], dict[str, int]]:
    """Every split's sentences under the length limit, encoded; with the number dropped (too long
    under ``filter``, or empty) and truncated per split."""
    sentences: dict[str, list[Sentence]] = {}
    dropped: dict[str, int] = {}
    truncated: dict[str, int] = {}
    for split in SPLITS:
        rows, dropped[split], truncated[split] = [], 0, 0
        for tokens, labels in raw.sentences[split]:
            limited = _limit(tokens, data)
            if limited is None or not limited:
                dropped[split] += 1
                continue
            truncated[split] += len(limited) < len(tokens)
            rows.append(Sentence(vocab.encode(limited), dict(labels)))
        sentences[split] = rows
    return sentences, dropped, truncated


def _check_splits(
    raw: RawCorpus, sentences: dict[str, list[Sentence]], dropped: dict[str, int], data: DataParams
) -> None:
    """Every split must keep a sentence: training needs one, the later stages evaluate on the
    others."""
    if not sentences["train"]:
        raise InputError(
            f"no training sentence is left after data.max_len={data.max_len} "
            f"with data.long_sentences={data.long_sentences}",
            data.path or raw.source,
        )
    for split in ("valid", "test"):
        if not sentences[split]:
            raise InputError(
                _empty_split(split, len(raw.sentences[split]), dropped[split], data),
                data.path or raw.source,
            )


def build_dialog_examples(
    raw: RawCorpus, split: str, vocab: Vocab, data: DataParams
) -> list[Dialog]:
    """One example per non-empty turn after the first of every dialog of ``split``: that turn is
    the response, the ``data.dialog_context`` turns before it (cut to ``data.max_len``) its
    context; the act is an index into ``raw.act_names`` (None when unknown)."""
    act_index = {a: i for i, a in enumerate(raw.act_names)}
    examples = []
    for d in raw.dialogs[split]:
        turns = [(t[: data.max_len] or ["<unk>"]) for t in d.turns]
        for i in range(1, len(turns)):
            if not d.turns[i]:
                continue
            lo = max(0, i - data.dialog_context)
            act = d.acts[i]
            examples.append(
                Dialog(
                    context=[vocab.encode(t) for t in turns[lo:i]],
                    speakers=d.speakers[lo:i],
                    response=vocab.encode(turns[i]),
                    response_speaker=d.speakers[i],
                    act=act_index[act] if act is not None and act in act_index else None,
                )
            )
    return examples


def _meta(raw: RawCorpus, data: DataParams) -> dict[str, Any]:
    """The prepared corpus's ``meta.json``: its format, origin, label names and settings."""
    return {
        "format": "betamcmc.prepared/1",
        "corpus": raw.name,
        "source": raw.source,
        "label_names": raw.label_names,
        "act_names": raw.act_names,
        "specials": list(SPECIALS),
        "max_len": data.max_len,
        "long_sentences": data.long_sentences,
        "dialog_context": data.dialog_context,
        "notes": raw.notes,
    }


def _empty_split(split: str, read: int, dropped: int, data: DataParams) -> str:
    """Why split ``split`` is empty, and what to change (later stages evaluate on it)."""
    if read and dropped == read:
        why = (
            f"all {read} of its sentences are longer than data.max_len={data.max_len} "
            "and data.long_sentences=filter drops them"
        )
        fix = "raise data.max_len or use data.long_sentences: truncate"
    else:
        why = "the corpus gives it no sentence (an empty split file, or too few sentences to split)"
        fix = "give that split non-empty text or a larger corpus"
    return f"the {split} split is empty: {why}; the later stages evaluate on it ({fix})"


def statistics(
    corpus: PreparedCorpus, dropped: dict[str, int], truncated: dict[str, int]
) -> dict[str, Any]:
    """Sentences, tokens, vocabulary size, OOV rates, length quantiles, label counts per split."""
    unk = corpus.vocab.unk_id
    stats: dict[str, Any] = {"corpus": corpus.meta["corpus"], "vocab_size": len(corpus.vocab)}
    for split in SPLITS:
        rows = corpus.sentences[split]
        lengths = np.array([len(s.ids) for s in rows]) if rows else np.zeros(1)
        n_tokens = int(sum(len(s.ids) for s in rows))
        n_unk = int(sum(i == unk for s in rows for i in s.ids))
        entry: dict[str, Any] = {
            "sentences": len(rows),
            "tokens": n_tokens,
            "oov_rate": round(n_unk / n_tokens, 6) if n_tokens else 0.0,
            "length_mean": round(float(lengths.mean()), 3),
            "length_p50": float(np.quantile(lengths, 0.5)),
            "length_p90": float(np.quantile(lengths, 0.9)),
            "length_max": int(lengths.max()),
            "dropped_long": dropped[split],
            "truncated": truncated[split],
            "dialog_examples": len(corpus.dialogs[split]),
        }
        for factor in corpus.label_names:
            counts = Counter(s.labels[factor] for s in rows if factor in s.labels)
            entry[f"labels_{factor}"] = {
                corpus.label_names[factor][k]: v for k, v in sorted(counts.items())
            }
        stats[split] = entry
    return stats


def run_prepare(params: Params, stage: StageItem) -> dict[str, Any]:
    """The ``prepare`` stage's work: prepare the corpus, write ``data/prepared/`` and the
    statistics file (both atomically, after everything loaded and validated), log the MLflow run
    (the statistics describe the data: logged as params). Returns the statistics."""
    corpus, stats = prepare(params.data, params.seed)
    with tracking.stage_run(params, stage, identity={"corpus": params.data.corpus}):
        with signals_deferred():  # the corpus and its statistics are written as a pair
            write_prepared(stage.out, corpus)
            write_json(stage.path(".json"), stats)
        tracking.log_result(stats, as_params=list(stats))
        tracking.log_artifact(stage.path(".json"))
    return stats
