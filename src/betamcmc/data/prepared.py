"""The prepared-corpus format: what ``prepare`` writes and every later stage reads.

Layout of the folder (the ``prepare`` stage's out in dvc.yaml; all UTF-8 text, token ids already
assigned)::

    meta.json               corpus name, source, label and dialog-act names, settings, counts
    vocab.txt               one token per line; line i (0-based) is id i;
                            ids 0-3 are <pad> <unk> <bos> <eos>
    sentences.<split>.jsonl one sentence per line: {"ids": [...], "labels": {"topic": 2, ...}}
    dialogs.<split>.jsonl   one example per line: {"context": [[...], ...], "speakers": [...],
                            "response": [...], "response_speaker": "B", "act": 3}

``<split>`` is ``train``, ``valid`` and ``test``. ``ids`` exclude ``<bos>``/``<eos>`` (models add
them when batching). ``labels`` maps a factor name to an integer class; its class names are in
``meta.json["label_names"]`` (empty for unlabeled corpora such as PTB). ``act`` indexes
``meta.json["act_names"]`` (null when the data has no dialog acts). A corpus without dialogs has
empty ``dialogs.*.jsonl`` files; one without sentences (never: dialogs' utterances are sentences)
would have empty sentence files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from betamcmc.core.errors import InputError
from betamcmc.core.io import atomic_path

SPLITS = ("train", "valid", "test")
PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = (PAD, UNK, BOS, EOS)


class Vocab:
    """Token <-> id mapping; ids 0..3 are the special tokens."""

    pad_id, unk_id, bos_id, eos_id = 0, 1, 2, 3

    def __init__(self, tokens: list[str]):
        if tuple(tokens[:4]) != SPECIALS:
            raise ValueError(f"vocabulary must start with {SPECIALS}")
        self.tokens = list(tokens)
        self.index = {tok: i for i, tok in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: list[str]) -> list[int]:
        return [self.index.get(tok, self.unk_id) for tok in tokens]

    def decode(self, ids: list[int], strip: bool = True) -> str:
        """Ids to text; with ``strip`` stop at ``<eos>`` and drop ``<pad>``/``<bos>``."""
        words = []
        for i in ids:
            if strip and i == self.eos_id:
                break
            if strip and i in (self.pad_id, self.bos_id):
                continue
            words.append(self.tokens[i] if 0 <= i < len(self.tokens) else UNK)
        return " ".join(words)


@dataclass
class Sentence:
    ids: list[int]
    labels: dict[str, int] = field(default_factory=dict)


@dataclass
class Dialog:
    context: list[list[int]]
    speakers: list[str]
    response: list[int]
    response_speaker: str
    act: int | None = None


@dataclass
class PreparedCorpus:
    meta: dict[str, Any]
    vocab: Vocab
    sentences: dict[str, list[Sentence]]
    dialogs: dict[str, list[Dialog]]
    path: Path | None = None  # the folder it was loaded from (errors name it); None: in memory

    @property
    def label_names(self) -> dict[str, list[str]]:
        return self.meta.get("label_names", {})

    @property
    def act_names(self) -> list[str]:
        return self.meta.get("act_names", [])


def write_prepared(path: str | Path, corpus: PreparedCorpus) -> None:
    """Write the corpus directory atomically (a temp dir renamed into place)."""
    with atomic_path(path) as tmp:
        tmp.mkdir(parents=True)
        (tmp / "meta.json").write_text(json.dumps(corpus.meta, indent=2) + "\n", encoding="utf-8")
        (tmp / "vocab.txt").write_text("\n".join(corpus.vocab.tokens) + "\n", encoding="utf-8")
        for split in SPLITS:
            with open(tmp / f"sentences.{split}.jsonl", "w", encoding="utf-8") as fh:
                for s in corpus.sentences.get(split, []):
                    fh.write(json.dumps(vars(s), separators=(",", ":")) + "\n")
            with open(tmp / f"dialogs.{split}.jsonl", "w", encoding="utf-8") as fh:
                for d in corpus.dialogs.get(split, []):
                    fh.write(json.dumps(vars(d), separators=(",", ":")) + "\n")


def load_vocab(path: str | Path) -> Vocab:
    path = Path(path)
    try:
        tokens = path.read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        raise InputError("vocabulary not found (run the prepare stage first)", path) from None
    except IsADirectoryError:
        raise InputError("expected a vocabulary file, found a directory", path) from None
    except UnicodeDecodeError:
        raise InputError("vocabulary is not UTF-8 text", path) from None
    if tokens and tokens[-1] == "":
        tokens.pop()
    if tuple(tokens[:4]) != SPECIALS:
        raise InputError(f"not a vocabulary: it must start with {' '.join(SPECIALS)}", path, 1)
    return Vocab(tokens)


def load_prepared(path: str | Path) -> PreparedCorpus:
    """Load a prepared corpus directory written by :func:`write_prepared`."""
    path = Path(path)
    meta_file = path / "meta.json"
    if not meta_file.exists():
        raise InputError("prepared corpus not found (run `dvc repro prepare` first)", path)
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    vocab = load_vocab(path / "vocab.txt")
    sentences = {
        s: [Sentence(**row) for row in _jsonl(path / f"sentences.{s}.jsonl")] for s in SPLITS
    }
    dialogs = {s: [Dialog(**row) for row in _jsonl(path / f"dialogs.{s}.jsonl")] for s in SPLITS}
    return PreparedCorpus(meta=meta, vocab=vocab, sentences=sentences, dialogs=dialogs, path=path)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
