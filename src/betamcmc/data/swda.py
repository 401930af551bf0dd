"""The ``swda`` corpus: Switchboard dialogs in Zhao et al.'s JSONL (``{train,valid,test}.jsonl`` or
one file), one dialog per line with ``utts``: ``[speaker, text, [dialog_act, [sentiment x4]]]``.

Every utterance is also a sentence labeled with its dialog act (``act``); the dialogs keep their
speakers and acts. A line of the wrong shape is one :class:`InputError` naming the file, the line
and the part of the dialog that is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from betamcmc.core.errors import InputError
from betamcmc.data.files import assign_splits, read_lines, require_path, standard_files, tokenize
from betamcmc.data.params import DataParams
from betamcmc.data.prepared import SPLITS
from betamcmc.data.raw import RawCorpus, RawDialog


def parse_swda(path: Path, lowercase: bool) -> list[RawDialog]:
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
    path = require_path(data)
    if path.is_file():
        found = {"pool": parse_swda(path, data.lowercase)}
    else:
        files = standard_files(path, {s: [f"{s}.jsonl"] for s in SPLITS})
        if not files:
            raise InputError("no {train,valid,test}.jsonl files", path)
        found = {s: parse_swda(p, data.lowercase) for s, p in files.items()}
    notes: list[str] = []
    dialogs = assign_splits(found, data.split, seed, "swda", notes)
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
