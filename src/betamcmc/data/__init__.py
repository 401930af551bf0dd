"""Corpora into token ids: :mod:`corpora` (loaders and the split rule), :mod:`synthetic` (the
embedded grammar), :mod:`prepare` (vocabulary, encoding; the ``prepare`` stage's work),
:mod:`prepared` (the on-disk format), :mod:`params` (the ``data`` params section)."""
