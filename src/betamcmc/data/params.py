"""The ``data`` params section: which corpus, how it is split, cleaned and encoded.

The ``prepare`` stage reads it (``betamcmc.data.corpora`` with the modules it uses, and
``betamcmc.data.prepare``); ``data.max_len`` and ``data.dialog_context`` also shape the dialog
stage.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from betamcmc.core.schema import Section


class SplitParams(Section):
    """Fractions carved out of a corpus that comes as a single file (or lacks a split)."""

    valid: float = Field(gt=0.0, lt=1.0)
    test: float = Field(gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _leaves_train(self) -> SplitParams:
        if self.valid + self.test >= 1.0:
            raise ValueError(
                f"valid + test must be < 1 so that a train split remains (got {self.valid + self.test:g})"
            )
        return self


class SyntheticDialogParams(Section):
    """Numbers of synthetic dialogs per split (each gives one example per response turn)."""

    train: int = Field(ge=1)
    valid: int = Field(ge=1)
    test: int = Field(ge=1)


class SyntheticParams(Section):
    """Sizes of the embedded grammar corpus (sentences with topic/sentiment/length labels)."""

    train: int = Field(ge=1)
    valid: int = Field(ge=1)
    test: int = Field(ge=1)
    sharpness: float = Field(
        ge=0.0, description="how strongly each sentence's meaning vector shapes its words"
    )
    dialogs: SyntheticDialogParams


class DataParams(Section):
    corpus: Literal["synthetic", "ptb", "yelp", "swda", "text"]
    path: str | None = Field(description="file or directory of a real corpus")
    lowercase: bool
    max_len: int = Field(ge=2, description="max tokens per sentence (excluding <bos>/<eos>)")
    long_sentences: Literal["truncate", "filter"]
    dialog_context: int = Field(ge=1, description="previous turns kept as a dialog context")
    min_count: int = Field(ge=1, description="min train frequency to enter the vocabulary")
    max_vocab: int = Field(ge=5, description="max vocabulary size incl. special tokens")
    split: SplitParams
    synthetic: SyntheticParams

    @model_validator(mode="after")
    def _path_for_real_corpora(self) -> DataParams:
        if self.corpus != "synthetic" and not self.path:
            raise ValueError(f"path is required when corpus is '{self.corpus}'")
        return self
