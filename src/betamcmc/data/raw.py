"""The raw form every corpus loader returns: tokenized sentences with their labels, and dialogs,
per split, before the vocabulary (:mod:`betamcmc.data.prepare` turns it into token ids)."""

from __future__ import annotations

from dataclasses import dataclass, field

from betamcmc.data.prepared import SPLITS


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
