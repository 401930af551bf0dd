"""The embedded corpus: sentences and dialogs from a small probabilistic grammar.

Every sentence is generated from known latent factors, kept as its labels, so later stages can
measure how much of that structure a VAE's latent code captures:

* ``topic``     - which of five domains the content words come from (food, movies, sports,
                  travel, tech);
* ``sentiment`` - negative / positive, which picks the evaluative words;
* ``length``    - short / medium / long: the number of clauses (1, 2 or 3), the main source
                  of length variation (optional intensifiers and adverbs add more).

A sentence is ``CLAUSE (CONNECTIVE CLAUSE)* .`` where each clause is drawn from weighted
templates whose slots are filled with topic- and sentiment-specific words. The generator is a
pure function of the seed (NumPy ``Generator``): the same seed gives the same corpus.

Dialogs are two-party conversations (speakers A and B) on one topic. Dialog acts follow a
Markov chain (greeting -> question -> answer/opinion -> ... -> thanks/bye) and each turn is
realized from act- and topic-specific templates, so the act of a response depends on the
context and its words on the topic: what a conditional VAE for responses has to learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOPICS = ("food", "movies", "sports", "travel", "tech")
SENTIMENTS = ("negative", "positive")
LENGTHS = ("short", "medium", "long")
ACTS = ("greeting", "question", "answer", "opinion", "statement", "agreement", "thanks", "bye")

NOUNS = {
    "food": [
        "pizza",
        "soup",
        "pasta",
        "salad",
        "burger",
        "dessert",
        "coffee",
        "bread",
        "menu",
        "chef",
    ],
    "movies": [
        "movie",
        "film",
        "plot",
        "actor",
        "ending",
        "soundtrack",
        "director",
        "script",
        "sequel",
        "scene",
    ],
    "sports": [
        "game",
        "team",
        "match",
        "coach",
        "player",
        "season",
        "stadium",
        "referee",
        "league",
        "goal",
    ],
    "travel": [
        "hotel",
        "flight",
        "beach",
        "room",
        "tour",
        "city",
        "airport",
        "trip",
        "view",
        "guide",
    ],
    "tech": [
        "phone",
        "laptop",
        "battery",
        "screen",
        "app",
        "camera",
        "keyboard",
        "update",
        "charger",
        "software",
    ],
}
TOPIC_ADJ = {
    ("food", "positive"): ["delicious", "fresh", "tasty", "flavorful"],
    ("food", "negative"): ["bland", "stale", "greasy", "cold"],
    ("movies", "positive"): ["gripping", "moving", "clever", "funny"],
    ("movies", "negative"): ["dull", "predictable", "slow", "silly"],
    ("sports", "positive"): ["thrilling", "fast", "skilled", "fierce"],
    ("sports", "negative"): ["sloppy", "lazy", "unfair", "chaotic"],
    ("travel", "positive"): ["clean", "quiet", "cozy", "scenic"],
    ("travel", "negative"): ["dirty", "noisy", "crowded", "cramped"],
    ("tech", "positive"): ["fast", "sleek", "reliable", "smooth"],
    ("tech", "negative"): ["buggy", "laggy", "fragile", "clunky"],
}
ADJ = {
    "positive": ["great", "wonderful", "excellent", "amazing", "lovely", "fantastic"],
    "negative": ["terrible", "awful", "bad", "horrible", "disappointing", "boring"],
}
VERB = {
    "positive": ["loved", "enjoyed", "liked", "recommend", "adored"],
    "negative": ["hated", "regret", "disliked", "avoided", "returned"],
}
FEEL = {
    "positive": ["happy", "impressed", "glad", "delighted"],
    "negative": ["annoyed", "upset", "let down", "frustrated"],
}
CONTEXT = {
    "food": ["at dinner", "for lunch", "at the cafe", "last night"],
    "movies": ["at the cinema", "on friday", "with friends", "last weekend"],
    "sports": ["on sunday", "at the stadium", "this season", "on tv"],
    "travel": ["on our trip", "last summer", "in the city", "by the sea"],
    "tech": ["after the update", "at work", "every day", "out of the box"],
}
INTENSIFIERS = ["really", "very", "so", "quite", "truly"]
CONNECTIVES = ["and", "but also", "because", "and honestly", "so"]


@dataclass(frozen=True)
class LabeledSentence:
    tokens: list[str]
    labels: dict[str, int]


@dataclass(frozen=True)
class Turn:
    speaker: str
    tokens: list[str]
    act: str


class Grammar:
    """Samples words and clauses; all randomness goes through one NumPy Generator."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def pick(self, options: list[str] | tuple[str, ...]) -> str:
        return options[int(self.rng.integers(len(options)))]

    def maybe(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def adjective(self, topic: str, sentiment: str) -> list[str]:
        words = []
        if self.maybe(0.4):
            words.append(self.pick(INTENSIFIERS))
        pool = TOPIC_ADJ[(topic, sentiment)] if self.maybe(0.6) else ADJ[sentiment]
        words.append(self.pick(pool))
        return words

    def clause(self, topic: str, sentiment: str) -> list[str]:
        noun = self.pick(NOUNS[topic])
        template = int(self.rng.choice(5, p=[0.3, 0.25, 0.2, 0.15, 0.1]))
        if template == 0:  # the soup was (very) bland
            words = ["the", noun, self.pick(["was", "is"]), *self.adjective(topic, sentiment)]
        elif template == 1:  # i loved the movie (with friends)
            words = ["i", self.pick(VERB[sentiment]), "the", noun]
            if self.maybe(0.5):
                words += self.pick(CONTEXT[topic]).split()
        elif template == 2:  # a delicious pizza
            words = [self.pick(["a", "one", "such a"]), *self.adjective(topic, sentiment), noun]
        elif template == 3:  # we felt happy about the hotel
            words = [
                self.pick(["we", "i", "they"]),
                "felt",
                *self.pick(FEEL[sentiment]).split(),
                "about",
                "the",
                noun,
            ]
        else:  # the ending of the film was predictable
            other = self.pick(NOUNS[topic])
            words = ["the", noun, "of", "the", other, "was", *self.adjective(topic, sentiment)]
        return words

    def sentence(self, topic: str, sentiment: str, clauses: int) -> list[str]:
        words = self.clause(topic, sentiment)
        for _ in range(clauses - 1):
            words += self.pick(CONNECTIVES).split() + self.clause(topic, sentiment)
        return [*words, self.pick([".", ".", "!"])]


def generate_sentences(n: int, seed: int) -> list[LabeledSentence]:
    """``n`` sentences with independent uniform topic, sentiment and length factors."""
    rng = np.random.default_rng(seed)
    grammar = Grammar(rng)
    out = []
    for _ in range(n):
        topic = int(rng.integers(len(TOPICS)))
        sentiment = int(rng.integers(len(SENTIMENTS)))
        length = int(rng.integers(len(LENGTHS)))
        tokens = grammar.sentence(TOPICS[topic], SENTIMENTS[sentiment], clauses=length + 1)
        out.append(
            LabeledSentence(tokens, {"topic": topic, "sentiment": sentiment, "length": length})
        )
    return out


# --------------------------------------------------------------------------- dialogs
# P(next act | current act); rows sum to 1. "thanks"/"bye" end the conversation.
_NEXT_ACT = {
    "greeting": {"greeting": 0.3, "question": 0.6, "statement": 0.1},
    "question": {"answer": 0.75, "opinion": 0.15, "question": 0.1},
    "answer": {
        "question": 0.35,
        "opinion": 0.25,
        "agreement": 0.2,
        "statement": 0.1,
        "thanks": 0.1,
    },
    "opinion": {"agreement": 0.4, "opinion": 0.2, "question": 0.25, "thanks": 0.15},
    "statement": {"question": 0.4, "opinion": 0.3, "agreement": 0.2, "statement": 0.1},
    "agreement": {"question": 0.3, "statement": 0.25, "opinion": 0.2, "thanks": 0.25},
    "thanks": {"bye": 1.0},
    "bye": {"bye": 1.0},
}


def _realize(grammar: Grammar, act: str, topic: str, sentiment: str) -> list[str]:
    noun = grammar.pick(NOUNS[topic])
    if act == "greeting":
        return grammar.pick(["hi there", "hello", "hey , how are you", "good morning"]).split()
    if act == "question":
        return [
            *grammar.pick(
                ["do you like the", "what do you think of the", "have you tried the", "how was the"]
            ).split(),
            noun,
            "?",
        ]
    if act == "answer":
        yes_no = "yes" if sentiment == "positive" else "no"
        return [yes_no, ",", *grammar.clause(topic, sentiment), "."]
    if act == "opinion":
        return [
            *grammar.pick(["i think", "honestly", "in my opinion"]).split(),
            *grammar.clause(topic, sentiment),
            ".",
        ]
    if act == "statement":
        return [
            *grammar.pick(["i went there", "we saw it", "i got one", "i read about it"]).split(),
            *grammar.pick(CONTEXT[topic]).split(),
            ".",
        ]
    if act == "agreement":
        return grammar.pick(["i agree", "yeah , exactly", "true", "same here"]).split()
    if act == "thanks":
        return grammar.pick(["thanks for the chat", "thank you", "thanks , that helps"]).split()
    return grammar.pick(["bye", "see you", "goodbye , take care"]).split()


def generate_dialogs(n: int, seed: int, max_turns: int = 8) -> list[tuple[list[Turn], int]]:
    """``n`` two-party dialogs, each as (turns, topic id). Speakers alternate A, B, A, ..."""
    rng = np.random.default_rng(seed)
    grammar = Grammar(rng)
    dialogs = []
    for _ in range(n):
        topic = int(rng.integers(len(TOPICS)))
        turns: list[Turn] = []
        act = "greeting"
        for t in range(int(rng.integers(4, max_turns + 1))):
            sentiment = SENTIMENTS[int(rng.integers(2))]
            speaker = "AB"[t % 2]
            turns.append(Turn(speaker, _realize(grammar, act, TOPICS[topic], sentiment), act))
            if act == "bye":
                break
            nxt = _NEXT_ACT[act]
            act = str(rng.choice(list(nxt), p=list(nxt.values())))
        dialogs.append((turns, topic))
    return dialogs
