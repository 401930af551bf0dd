"""The corpora ``data.corpus`` selects, each loaded into one raw form (:mod:`betamcmc.data.raw`).

============  ===========================================================================
``synthetic`` the embedded grammar corpus (:mod:`betamcmc.data.synthetic`), sizes from params
``ptb``       one tokenized sentence per line (Mikolov's PTB); a file, or a directory with
              ``ptb.{train,valid,test}.txt`` or ``{train,valid,test}.txt``
``yelp``      Shen et al. layout: ``sentiment.{train,dev,test}.{0,1}``, label = file suffix
``swda``      Zhao et al. Switchboard JSONL (:mod:`betamcmc.data.swda`)
``text``      any file or directory of plain text, one sentence per non-empty line
============  ===========================================================================

A loader is ``(data: DataParams, seed: int) -> RawCorpus``, registered in :data:`LOADERS`. The
real corpora read their files strictly and cut them into splits by one rule
(:mod:`betamcmc.data.files`); malformed input raises :class:`InputError` naming file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from betamcmc.core.errors import InputError
from betamcmc.data import synthetic
from betamcmc.data.files import assign_splits, read_lines, require_path, standard_files, tokenize
from betamcmc.data.params import DataParams
from betamcmc.data.prepared import SPLITS
from betamcmc.data.raw import RawCorpus, RawDialog
from betamcmc.data.swda import load_swda


# --------------------------------------------------------------------------- loaders
def load_synthetic(data: DataParams, seed: int) -> RawCorpus:
    cfg = data.synthetic
    sentences = {}
    for offset, split in enumerate(SPLITS):
        n = getattr(cfg, split)
        rows = synthetic.generate_sentences(n, seed=seed * 1000 + offset, sharpness=cfg.sharpness)
        sentences[split] = [
            ([t.lower() if data.lowercase else t for t in r.tokens], r.labels) for r in rows
        ]
    dialogs = {}
    for offset, split in enumerate(SPLITS):
        n = getattr(cfg.dialogs, split)
        dialogs[split] = [
            RawDialog([t.speaker for t in turns], [t.tokens for t in turns], [t.act for t in turns])
            for turns, _topic in synthetic.generate_dialogs(
                n, seed=seed * 1000 + 100 + offset, sharpness=cfg.sharpness
            )
        ]
    return RawCorpus(
        name="synthetic",
        source=f"grammar(seed={seed})",
        sentences=sentences,
        dialogs=dialogs,
        label_names={
            "register": list(synthetic.REGISTERS),
            "topic": list(synthetic.TOPICS),
            "sentiment": list(synthetic.SENTIMENTS),
            "length": list(synthetic.LENGTHS),
        },
        act_names=list(synthetic.ACTS),
        dialog_text_separate=True,
    )


def _plain_sentences(
    files: dict[str, Path], data: DataParams, seed: int, name: str, source: Path
) -> RawCorpus:
    found = {}
    for split, path in files.items():
        found[split] = [(tokenize(text, data.lowercase), {}) for _, text in read_lines(path)]
    notes: list[str] = []
    sentences = assign_splits(found, data.split, seed, name, notes)
    return RawCorpus(name=name, source=str(source), sentences=sentences, notes=notes)


def load_ptb(data: DataParams, seed: int) -> RawCorpus:
    path = require_path(data)
    if path.is_file():
        return _plain_sentences({"pool": path}, data, seed, "ptb", path)
    files = standard_files(path, {s: [f"ptb.{s}.txt", f"{s}.txt"] for s in SPLITS})
    if not files:
        raise InputError(
            "no PTB split files (ptb.{train,valid,test}.txt or {train,valid,test}.txt)", path
        )
    return _plain_sentences(files, data, seed, "ptb", path)


def load_text(data: DataParams, seed: int) -> RawCorpus:
    path = require_path(data)
    if path.is_file():
        return _plain_sentences({"pool": path}, data, seed, "text", path)
    files = standard_files(path, {s: [f"{s}.txt"] for s in SPLITS})
    if files:
        return _plain_sentences(files, data, seed, "text", path)
    all_files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not all_files:
        raise InputError("no text files in directory", path)
    rows = []
    for f in all_files:
        rows += [(tokenize(text, data.lowercase), {}) for _, text in read_lines(f)]
    notes: list[str] = []
    sentences = assign_splits({"pool": rows}, data.split, seed, "text", notes)
    return RawCorpus(name="text", source=str(path), sentences=sentences, notes=notes)


def load_yelp(data: DataParams, seed: int) -> RawCorpus:
    path = require_path(data)
    if not path.is_dir():
        raise InputError("yelp corpus must be a directory with sentiment.<split>.<0|1> files", path)
    found: dict[str, list[Any]] = {}
    for split, file_split in (("train", "train"), ("valid", "dev"), ("test", "test")):
        parts = [path / f"sentiment.{file_split}.{label}" for label in (0, 1)]
        present = [p for p in parts if p.is_file()]
        if not present:
            continue
        if len(present) == 1:
            raise InputError(f"found {present[0].name} but not its pair (need .0 and .1)", path)
        rows = []
        for label, p in enumerate(parts):
            lines = read_lines(p)
            if not lines:
                raise InputError("labeled file has no sentences", p)
            rows += [(tokenize(text, data.lowercase), {"sentiment": label}) for _, text in lines]
        found[split] = rows
    if not found:
        raise InputError("no sentiment.{train,dev,test}.{0,1} files", path)
    notes: list[str] = []
    sentences = assign_splits(found, data.split, seed, "yelp", notes)
    return RawCorpus(
        name="yelp",
        source=str(path),
        sentences=sentences,
        label_names={"sentiment": ["negative", "positive"]},
        notes=notes,
    )


LOADERS = {
    "synthetic": load_synthetic,
    "ptb": load_ptb,
    "yelp": load_yelp,
    "swda": load_swda,
    "text": load_text,
}


def load_corpus(data: DataParams, seed: int) -> RawCorpus:
    """Load the corpus ``data.corpus`` selects; raise :class:`InputError` on bad input."""
    corpus = LOADERS[data.corpus](data, seed)
    total = sum(len(v) for v in corpus.sentences.values())
    if total == 0:
        raise InputError("corpus is empty (no sentences found)", data.path or corpus.source)
    if not corpus.sentences["train"]:
        raise InputError(
            "corpus has no training sentences after splitting", data.path or corpus.source
        )
    return corpus
