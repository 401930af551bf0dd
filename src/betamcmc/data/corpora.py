"""Loaders for the corpora ``data.corpus`` selects, into one raw form (tokens + labels, dialogs).

============  ===========================================================================
``synthetic`` the embedded grammar corpus (:mod:`betamcmc.data.synthetic`), sizes from params
``ptb``       one tokenized sentence per line (Mikolov's PTB); a file, or a directory with
              ``ptb.{train,valid,test}.txt`` or ``{train,valid,test}.txt``
``yelp``      Shen et al. layout: ``sentiment.{train,dev,test}.{0,1}``, label = file suffix
``swda``      Zhao et al. Switchboard JSONL: ``{train,valid,test}.jsonl``, one dialog per line
              with ``utts``: ``[speaker, text, [dialog_act, [sentiment x4]]]``
``text``      any file or directory of plain text, one sentence per non-empty line
============  ===========================================================================

Split rule (all real corpora): the standard split files present are used as the splits. When a
``train`` file is present, a missing ``valid``/``test`` split is carved from it; when there is no
``train`` file (e.g. only a ``valid.txt`` sample), all files found are pooled and split
deterministically (seeded shuffle) by ``data.split``. A single file is split the same way.
Dialog corpora are split by dialog, never by turn.

Every read is strict UTF-8; malformed input raises :class:`InputError` naming file and line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from betamcmc.data import synthetic
from betamcmc.data.params import DataParams
from betamcmc.data.prepared import SPLITS
from betamcmc.errors import InputError
from betamcmc.tracking import project_root


@dataclass
class RawDialog:
    speakers: list[str]
    turns: list[list[str]]
    acts: list[str | None]


@dataclass
class RawCorpus:
    """Tokenized corpus before the vocabulary: what every loader returns."""

    name: str
    source: str
    sentences: dict[str, list[tuple[list[str], dict[str, int]]]]
    dialogs: dict[str, list[RawDialog]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    label_names: dict[str, list[str]] = field(default_factory=dict)
    act_names: list[str] = field(default_factory=list)
    # True when dialog turns are not already among the sentences (they then enter the vocabulary too)
    dialog_text_separate: bool = False
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- reading
_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)
UTF8_BOM = b"\xef\xbb\xbf"


def read_text(path: Path) -> str:
    """A corpus file as text: strict UTF-8, a UTF-8 byte-order mark dropped, NUL bytes refused.

    UTF-16/32 files (byte-order mark, or NUL bytes between ASCII letters) and binary files are
    rejected with one line naming the file and the first bad line.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except IsADirectoryError:
        raise InputError("expected a file, found a directory", path) from None
    except PermissionError:
        raise InputError("permission denied", path) from None
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            raise InputError(
                f"{encoding} text (byte-order mark {bom.hex(' ')}); save the file as UTF-8", path, 1
            )
    raw = raw.removeprefix(UTF8_BOM)
    nul = raw.find(b"\x00")
    if nul >= 0:
        line = raw[:nul].count(b"\n") + 1
        raise InputError(
            "NUL byte: a binary file or UTF-16/32 text; expected UTF-8 text", path, line
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise InputError(
            f"not valid UTF-8 ({err.reason}, byte 0x{raw[err.start]:02x})", path, line
        ) from None


def read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty stripped lines with their 1-based line numbers (see :func:`read_text`).

    Lines end at ``\\n``, ``\\r\\n`` or ``\\r`` only (as a text editor counts them), not at the
    other characters :meth:`str.splitlines` breaks on (U+2028, U+0085, form feed, ...), which are
    valid inside a sentence or a JSON string.
    """
    text = read_text(path)
    lines = _NEWLINE.split(text)
    return [(i, line.strip()) for i, line in enumerate(lines, start=1) if line.strip()]


_NEWLINE = re.compile(r"\r\n|\r|\n")


def tokenize(text: str, lowercase: bool) -> list[str]:
    return (text.lower() if lowercase else text).split()


def split_indices(n: int, split: Any, seed: int) -> dict[str, np.ndarray]:
    """Deterministic shuffle-and-cut of ``n`` items into train/valid/test by fractions."""
    order = np.random.default_rng(seed).permutation(n)
    n_valid = max(1, int(round(n * split.valid))) if n >= 3 else 0
    n_test = max(1, int(round(n * split.test))) if n >= 3 else 0
    return {
        "valid": order[:n_valid],
        "test": order[n_valid : n_valid + n_test],
        "train": order[n_valid + n_test :],
    }


def _assign_splits(
    found: dict[str, list[Any]], split: Any, seed: int, what: str, notes: list[str]
) -> dict[str, list[Any]]:
    """Apply the split rule (module docstring) to items grouped by the split file they came from."""
    if "train" in found:
        out = {s: list(found.get(s, [])) for s in SPLITS}
        missing = [s for s in ("valid", "test") if s not in found]
        if missing:
            pool = out["train"]
            idx = split_indices(len(pool), split, seed)
            out["train"] = [pool[i] for i in idx["train"]]
            for s in missing:
                out[s] = [pool[i] for i in idx[s]]
            notes.append(f"{what}: carved {', '.join(missing)} from train by data.split")
        return out
    pool = [item for key in sorted(found) for item in found[key]]
    idx = split_indices(len(pool), split, seed)
    notes.append(f"{what}: no train file; pooled {sorted(found)} and split by data.split")
    return {s: [pool[i] for i in idx[s]] for s in SPLITS}


def _require_path(data: DataParams) -> Path:
    """``data.path``; a relative one is relative to the project root, also when a queued DVC
    experiment runs in a temporary workspace under ``.dvc/tmp/exps/`` (where ``../shared``
    would otherwise point inside ``.dvc/tmp``)."""
    path = Path(data.path or "")
    if not path.is_absolute() and not path.exists():
        path = project_root() / path
    if not path.exists():
        raise InputError(f"data.path does not exist (data.corpus={data.corpus})", data.path or "")
    return path


def _standard_files(directory: Path, names: dict[str, list[str]]) -> dict[str, Path]:
    found = {}
    for split_name, candidates in names.items():
        for name in candidates:
            if (directory / name).is_file():
                found[split_name] = directory / name
                break
    return found


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
    sentences = _assign_splits(found, data.split, seed, name, notes)
    return RawCorpus(name=name, source=str(source), sentences=sentences, notes=notes)


def load_ptb(data: DataParams, seed: int) -> RawCorpus:
    path = _require_path(data)
    if path.is_file():
        return _plain_sentences({"pool": path}, data, seed, "ptb", path)
    files = _standard_files(path, {s: [f"ptb.{s}.txt", f"{s}.txt"] for s in SPLITS})
    if not files:
        raise InputError(
            "no PTB split files (ptb.{train,valid,test}.txt or {train,valid,test}.txt)", path
        )
    return _plain_sentences(files, data, seed, "ptb", path)


def load_text(data: DataParams, seed: int) -> RawCorpus:
    path = _require_path(data)
    if path.is_file():
        return _plain_sentences({"pool": path}, data, seed, "text", path)
    files = _standard_files(path, {s: [f"{s}.txt"] for s in SPLITS})
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
    sentences = _assign_splits({"pool": rows}, data.split, seed, "text", notes)
    return RawCorpus(name="text", source=str(path), sentences=sentences, notes=notes)


def load_yelp(data: DataParams, seed: int) -> RawCorpus:
    path = _require_path(data)
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
    sentences = _assign_splits(found, data.split, seed, "yelp", notes)
    return RawCorpus(
        name="yelp",
        source=str(path),
        sentences=sentences,
        label_names={"sentiment": ["negative", "positive"]},
        notes=notes,
    )


def _parse_swda(path: Path, lowercase: bool) -> list[RawDialog]:
    dialogs = []
    for lineno, text in read_lines(path):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(
                f"not valid JSON: {err.msg} (column {err.colno})", path, lineno
            ) from None
        except RecursionError:
            raise InputError("not valid JSON (nested too deeply)", path, lineno) from None
        try:
            dialogs.append(_swda_dialog(obj, lowercase))
        except ValueError as err:
            raise InputError(f"not a Switchboard dialog: {err}", path, lineno) from None
    return dialogs


def _swda_dialog(obj: Any, lowercase: bool) -> RawDialog:
    """One JSONL object -> a dialog; ``ValueError`` says which part has the wrong shape."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object with 'utts' (got {_json_kind(obj)})")
    if "utts" not in obj:
        raise ValueError("missing key 'utts'")
    utts = obj["utts"]
    if not isinstance(utts, list):
        raise ValueError(f"'utts' must be a list of utterances (got {_json_kind(utts)})")
    speakers, turns, acts = [], [], []
    for i, utt in enumerate(utts):
        shape = f"utts[{i}] must be [speaker, text, [dialog_act, ...]]"
        if not isinstance(utt, list) or len(utt) < 2:
            raise ValueError(f"{shape} (got {_json_kind(utt)})")
        speaker, words = utt[0], utt[1]
        if not isinstance(speaker, str) or not speaker.strip():
            raise ValueError(f"utts[{i}][0]: speaker must be a non-empty string (got {speaker!r})")
        if not isinstance(words, str):
            raise ValueError(f"utts[{i}][1]: text must be a string (got {_json_kind(words)})")
        act = None
        if len(utt) > 2 and utt[2] is not None:
            meta = utt[2]
            if not isinstance(meta, list):
                raise ValueError(f"utts[{i}][2] must be [dialog_act, ...] (got {_json_kind(meta)})")
            if meta:
                act = meta[0]
                if act is not None and not isinstance(act, str):
                    raise ValueError(
                        f"utts[{i}][2][0]: dialog act must be a string (got {_json_kind(act)})"
                    )
        speakers.append(speaker)
        turns.append(tokenize(words, lowercase))
        acts.append(act)
    return RawDialog(speakers, turns, acts)


def _json_kind(value: Any) -> str:
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if type(value) in kinds:
        return kinds[type(value)]
    return f"a number ({value!r})" if isinstance(value, int | float) else type(value).__name__


def load_swda(data: DataParams, seed: int) -> RawCorpus:
    path = _require_path(data)
    if path.is_file():
        found = {"pool": _parse_swda(path, data.lowercase)}
    else:
        files = _standard_files(path, {s: [f"{s}.jsonl"] for s in SPLITS})
        if not files:
            raise InputError("no {train,valid,test}.jsonl files", path)
        found = {s: _parse_swda(p, data.lowercase) for s, p in files.items()}
    notes: list[str] = []
    dialogs = _assign_splits(found, data.split, seed, "swda", notes)
    act_names = sorted(
        {a for split in dialogs.values() for d in split for a in d.acts if a is not None}
    )
    act_index = {a: i for i, a in enumerate(act_names)}
    sentences = {
        s: [
            (turn, {"act": act_index[a]} if a is not None else {})
            for d in dialogs[s]
            for turn, a in zip(d.turns, d.acts, strict=True)
            if turn
        ]
        for s in SPLITS
    }
    return RawCorpus(
        name="swda",
        source=str(path),
        sentences=sentences,
        dialogs=dialogs,
        label_names={"act": act_names},
        act_names=act_names,
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
