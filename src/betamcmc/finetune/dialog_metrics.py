"""Response-generation metrics of Zhao et al. (2017), Sec. 5: BLEU precision/recall, distinct-n.

For one context with references ``r_1..r_m`` and ``N`` sampled responses ``h_1..h_N``:

    BLEU precision = mean_j max_i BLEU(h_j, r_i)     (are the samples all plausible?)
    BLEU recall    = mean_i max_j BLEU(h_j, r_i)     (is every reference covered by some sample?)

averaged over contexts. BLEU is smoothed sentence BLEU computed by sacrebleu (no home-made
n-gram counting): ``BLEU-n`` uses the uniform geometric mean of the 1..n-gram precisions with the
brevity penalty, exponential smoothing (Chen & Cherry 2014 "exp", NLTK's method3; Zhao et al. used
NLTK's method7, which sacrebleu does not offer), effective order, and no re-tokenization (our text
is already tokenized). Scores are in [0, 1].

distinct-n (Li et al. 2016): distinct n-grams / total n-grams over all generated responses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sacrebleu.metrics import BLEU

from betamcmc.finetune.classify import bag_of_words


def sentence_bleu(hypothesis: str, reference: str, order: int = 4) -> float:
    """Smoothed sentence BLEU-``order`` of one tokenized hypothesis against one reference, in [0, 1]."""
    scorer = _scorer(order)
    return scorer.sentence_score(hypothesis, [reference]).score / 100.0


_SCORERS: dict[int, BLEU] = {}


def _scorer(order: int) -> BLEU:
    if order not in _SCORERS:
        _SCORERS[order] = BLEU(
            tokenize="none",
            smooth_method="exp",
            effective_order=True,
            max_ngram_order=order,
            lowercase=False,
        )
    return _SCORERS[order]


def bleu_precision_recall(
    hypotheses: Sequence[str], references: Sequence[str], order: int = 4
) -> tuple[float, float]:
    """BLEU precision and recall of N samples against the references of ONE context."""
    if not hypotheses or not references:
        raise ValueError("need at least one hypothesis and one reference")
    scores = [[sentence_bleu(h, r, order) for r in references] for h in hypotheses]
    precision = sum(max(row) for row in scores) / len(hypotheses)
    recall = sum(max(scores[j][i] for j in range(len(hypotheses))) for i in range(len(references)))
    return precision, recall / len(references)


def corpus_bleu_precision_recall(
    samples: Sequence[Sequence[str]], references: Sequence[Sequence[str]], order: int = 4
) -> dict[str, float]:
    """Mean BLEU-n precision/recall/F1 over contexts, for n = 1..order.

    ``samples[k]`` are the N sampled responses of context k, ``references[k]`` its references.
    F1 is the harmonic mean of the averaged precision and recall (as in Zhao et al.'s tables).
    """
    if len(samples) != len(references):
        raise ValueError(f"{len(samples)} sample lists for {len(references)} reference lists")
    if not samples:
        raise ValueError("no contexts to score")
    out: dict[str, float] = {}
    for n in range(1, order + 1):
        pairs = [bleu_precision_recall(h, r, n) for h, r in zip(samples, references, strict=True)]
        p = sum(x for x, _ in pairs) / len(pairs)
        r = sum(y for _, y in pairs) / len(pairs)
        out[f"bleu{n}_precision"] = p
        out[f"bleu{n}_recall"] = r
        out[f"bleu{n}_f1"] = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return out


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams / total n-grams over all ``texts`` (tokenized by spaces); 0 if none."""
    total = 0
    seen: set[tuple[str, ...]] = set()
    for text in texts:
        tokens = text.split()
        grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


class ActClassifier:
    """A small dialog-act classifier (bag-of-words logistic regression on the response words),
    trained on the reference responses, used to check whether generated responses carry the
    act of the reference (Zhao et al.'s "dialog act match", with a classifier instead of labels)."""

    def __init__(self, model: Any, vocab_size: int):
        self.model = model
        self.vocab_size = vocab_size

    @classmethod
    def fit(
        cls, responses: Sequence[Sequence[int]], acts: Sequence[int], vocab_size: int
    ) -> ActClassifier:
        from sklearn.linear_model import LogisticRegression  # lazy: ~1.5 s, see classify

        model = LogisticRegression(C=1.0, max_iter=2000)
        model.fit(bag_of_words(responses, vocab_size), list(acts))
        return cls(model, vocab_size)

    def predict(self, responses: Sequence[Sequence[int]]) -> list[int]:
        return [int(a) for a in self.model.predict(bag_of_words(responses, self.vocab_size))]

    def accuracy(self, responses: Sequence[Sequence[int]], acts: Sequence[int]) -> float:
        """Accuracy on real responses: the ceiling for :meth:`agreement`."""
        pred = self.predict(responses)
        return sum(int(p == a) for p, a in zip(pred, acts, strict=True)) / max(len(acts), 1)

    def agreement(self, samples: Sequence[Sequence[Sequence[int]]], acts: Sequence[int]) -> float:
        """Share of sampled responses (all N per context) whose predicted act is the reference act."""
        flat = [s for per in samples for s in per]
        pred = self.predict(flat)
        expected = [a for per, a in zip(samples, acts, strict=True) for _ in per]
        return sum(int(p == a) for p, a in zip(pred, expected, strict=True)) / max(len(flat), 1)
