"""Corpora into token ids: :mod:`corpora` (the loaders ``data.corpus`` selects), :mod:`raw` (the
raw form they return), :mod:`files` (reading a real corpus's files strictly, the split rule),
:mod:`swda` (the Switchboard dialog format), :mod:`synthetic` (the embedded grammar),
:mod:`prepare` (vocabulary, encoding; the ``prepare`` stage's work), :mod:`prepared` (the on-disk
format), :mod:`params` (the ``data`` params section)."""
