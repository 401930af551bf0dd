"""The embedded corpus: review-like sentences and dialogs from a log-linear grammar.

Every sentence has a continuous meaning vector ``u ~ N(0, I_6)`` that shapes *every* content word
(a latent-variable model of text, like the VAE that is trained on it):

===========  ========================================================================
``u[0:2]``   topic plane: the angle picks the domain (food, movies, sports, travel, tech), the
             radius how clearly; nouns sit on a circle, so a sentence can drift between domains
``u[2]``     polarity: adjectives, verbs and feelings are drawn by their polarity score
``u[3]``     register: casual vs formal openers, intensifiers, connectives, ``!`` vs ``.``
``u[4]``     time: past vs present tense of every verb, and time phrases
``u[5]``     person: who speaks (``i`` / ``we`` / ``they``)
===========  ========================================================================

A sentence is ``[OPENER] CLAUSE (CONNECTIVE CLAUSE)* END`` with 1-3 clauses from five weighted
templates. Each slot word ``w`` is drawn from ``softmax(sharpness * <u, f_w>)`` over its word
list, where ``f_w`` are the word's scores on the factors above. Because the same ``u`` shapes
every slot, the words of a sentence are dependent through a sentence-level code that no single
word reveals: an autoregressive model can only infer it gradually from the prefix, while a
decoder given ``z ~ u`` can use it from the first word. That is the situation in which a VAE's
latent code pays for its KL cost, and whether it is found is what the beta schedule decides.
``sharpness`` (``data.synthetic.sharpness``) sets how strongly ``u`` shapes the words; at 0 the
words are independent of it and the best VAE ignores its code.

Labels (for the downstream tasks; the first is the default one): ``register`` = sign of the
register (formal / casual), ``topic`` = the domain whose angle is nearest to ``u[0:2]``
(5 classes; sentences near a boundary mix the vocabularies of two domains, so the label is not a
bag-of-words lookup), ``sentiment`` = sign of the polarity (2), ``length`` = number of clauses
(3). Which of them a VAE's code carries is
measured, not assumed: a decoder recovers the topic from the first noun and the polarity from the
first evaluative word, while the register is spread thinly over an optional opener,
intensifiers, connectives and the final ``!`` or ``.``, the factor a code pays for most. The generator is a pure function of the seed (NumPy ``Generator``).

Dialogs are two-party conversations on one topic plane with per-turn polarity. Dialog acts
follow a Markov chain (greeting -> question -> answer/opinion -> ... -> thanks/bye) and each turn
is realized from act-specific templates with clauses of the same grammar, so the act of a
response depends on the context and its words on the topic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TOPICS = ("food", "movies", "sports", "travel", "tech")
SENTIMENTS = ("negative", "positive")
LENGTHS = ("short", "medium", "long")
REGISTERS = ("formal", "casual")
ACTS = ("greeting", "question", "answer", "opinion", "statement", "agreement", "thanks", "bye")
LATENT_DIM = 6
TOPIC_ANGLES = tuple(2 * math.pi * k / len(TOPICS) for k in range(len(TOPICS)))
NOUN_SPREAD = 0.55  # radians: the nouns of a topic spread over +-NOUN_SPREAD around its angle

NOUNS = {
    "food": ["pizza", "soup", "pasta", "salad", "burger", "dessert", "coffee", "bread", "menu", "chef"],
    "movies": ["movie", "film", "plot", "actor", "ending", "soundtrack", "director", "script", "sequel", "scene"],
    "sports": ["game", "team", "match", "coach", "player", "season", "stadium", "referee", "league", "goal"],
    "travel": ["hotel", "flight", "beach", "room", "tour", "city", "airport", "trip", "view", "guide"],
    "tech": ["phone", "laptop", "battery", "screen", "app", "camera", "keyboard", "update", "charger", "software"],
}  # fmt: skip
# (word, polarity)
TOPIC_ADJ = {
    "food": [("delicious", 1), ("fresh", .6), ("tasty", .8), ("flavorful", .7), ("bland", -.6), ("stale", -.8), ("greasy", -.5), ("cold", -.4)],
    "movies": [("gripping", .9), ("moving", .7), ("clever", .6), ("funny", .5), ("dull", -.7), ("predictable", -.5), ("slow", -.4), ("silly", -.6)],
    "sports": [("thrilling", 1), ("fast", .5), ("skilled", .6), ("fierce", .4), ("sloppy", -.6), ("lazy", -.7), ("unfair", -.8), ("chaotic", -.4)],
    "travel": [("clean", .6), ("quiet", .4), ("cozy", .7), ("scenic", .9), ("dirty", -.8), ("noisy", -.5), ("crowded", -.4), ("cramped", -.6)],
    "tech": [("sleek", .6), ("reliable", .8), ("smooth", .5), ("powerful", .7), ("buggy", -.8), ("laggy", -.6), ("fragile", -.5), ("clunky", -.4)],
}  # fmt: skip
# (word, polarity, casualness)
ADJ = [("amazing", 1, 1), ("fantastic", .9, .5), ("excellent", .85, -1), ("wonderful", .8, 0),
       ("great", .7, .5), ("lovely", .6, -.5), ("good", .4, 0), ("decent", .2, -1), ("okay", 0, .5),
       ("mediocre", -.2, -1), ("boring", -.4, .5), ("bad", -.55, .5), ("disappointing", -.7, -1),
       ("awful", -.85, .5), ("terrible", -.9, 0), ("horrible", -1, 1)]  # fmt: skip
# (past, present, polarity)
VERBS = [("loved", "love", 1), ("adored", "adore", .9), ("enjoyed", "enjoy", .7),
         ("recommended", "recommend", .6), ("liked", "like", .4), ("tried", "try", 0),
         ("disliked", "dislike", -.5), ("avoided", "avoid", -.6), ("regretted", "regret", -.8),
         ("returned", "return", -.7), ("hated", "hate", -1)]  # fmt: skip
# (word, polarity)
FEELINGS = [("delighted", 1), ("impressed", .8), ("happy", .7), ("glad", .5), ("surprised", 0),
            ("annoyed", -.6), ("upset", -.7), ("frustrated", -.8), ("disappointed", -.9)]  # fmt: skip
# (phrase, time: -1 past, +1 present)
CONTEXTS = {
    "food": [("at dinner", -1), ("for lunch", 1), ("at the cafe", 1), ("last night", -1)],
    "movies": [("at the cinema", 1), ("on friday", -1), ("with friends", 1), ("last weekend", -1)],
    "sports": [("on sunday", -1), ("at the stadium", 1), ("this season", 1), ("on tv", -1)],
    "travel": [("on our trip", -1), ("last summer", -1), ("in the city", 1), ("by the sea", 1)],
    "tech": [("after the update", -1), ("at work", 1), ("every day", 1), ("out of the box", -1)],
}  # fmt: skip
# (word, strength, casualness)
INTENSIFIERS = [("slightly", -1, -1), ("rather", -.5, -1), ("quite", -.3, -.5), ("very", .5, -.5),
                ("really", .3, .5), ("so", .8, 1), ("truly", 1, -1), ("super", 1, 1)]  # fmt: skip
# (words, casualness)
CONNECTIVES = [("and", 0), ("but also", -.5), ("because", -.5), ("and honestly", 1), ("so", .5),
               ("while", -1), ("although", -1), ("plus", 1)]  # fmt: skip
OPENERS = [
    ("honestly ,", 1),
    ("overall ,", -1),
    ("well ,", 0.5),
    ("to be fair ,", -1),
    ("wow ,", 1.5),
]
PERSONS = [("i", 1), ("we", 0), ("they", -1)]  # (word, person score)
DETERMINERS = [("a", 0), ("one", -1), ("such a", 1)]  # (words, casualness)
TEMPLATE_WEIGHTS = (0.3, 0.25, 0.2, 0.15, 0.1)
P_OPENER = 0.3
_NOUNS = [(n, t) for t in TOPICS for n in NOUNS[t]]  # (noun, topic), topic by topic
_NOUN_OFFSETS = tuple(np.linspace(-NOUN_SPREAD, NOUN_SPREAD, len(NOUNS[TOPICS[0]])))
_TEMPLATE_P = np.asarray(TEMPLATE_WEIGHTS, dtype=float)


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
    """Draws the words of one sentence (or dialog turn) given its meaning vector ``u``.

    Every slot is a softmax over its word list with logits ``sharpness * score(u, word)``; the
    distributions depend only on ``u``, so they are computed once per sentence. All randomness
    goes through one NumPy Generator.
    """

    def __init__(self, rng: np.random.Generator, u: np.ndarray, sharpness: float):
        self.rng, self.u, self.k = rng, u, sharpness
        topic_x, topic_y, self.polarity, self.register, self.time, self.person = u
        self.angle, self.radius = math.atan2(topic_y, topic_x), math.hypot(topic_x, topic_y)
        self.nouns = _NOUNS
        self.noun_p = self._softmax(
            [
                self.radius * math.cos(self.angle - angle - offset)
                for angle in TOPIC_ANGLES
                for offset in _NOUN_OFFSETS
            ]
        )

    # -- sampling helpers
    def _softmax(self, scores: list[float]) -> np.ndarray:
        logits = self.k * np.asarray(scores, dtype=float)
        p = np.exp(logits - logits.max())
        return p / p.sum()

    def _index(self, p: np.ndarray) -> int:
        """``rng.choice(len(p), p=p)``, draw for draw (the same cumulative sum, normalization and
        one uniform): NumPy's argument checks cost more than the draw, 170k times per corpus."""
        cdf = p.cumsum()
        cdf /= cdf[-1]
        return int(cdf.searchsorted(self.rng.random(), side="right"))

    def _draw(self, options: list, scores: list[float]) -> object:
        return options[self._index(self._softmax(scores))]

    def uniform(self, options: list | tuple) -> object:
        return options[int(self.rng.integers(len(options)))]

    def maybe(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    # -- slots
    def noun(self) -> tuple[str, str]:
        return self.nouns[self._index(self.noun_p)]

    def past(self) -> bool:
        return self.maybe(1 / (1 + math.exp(-2.5 * self.time)))

    def pronoun(self) -> str:
        return self._draw([w for w, _ in PERSONS], [self.person * s for _, s in PERSONS])

    def intensifier(self) -> list[str]:
        if not self.maybe(1 / (1 + math.exp(-2 * self.register))):
            return []
        scores = [abs(self.polarity) * s + self.register * c for _, s, c in INTENSIFIERS]
        return [self._draw([w for w, _, _ in INTENSIFIERS], scores)]

    def adjective(self, topic: str) -> list[str]:
        if self.maybe(0.5):
            pool = TOPIC_ADJ[topic]
            word = self._draw([w for w, _ in pool], [self.polarity * p for _, p in pool])
        else:
            scores = [self.polarity * p + 0.5 * self.register * c for _, p, c in ADJ]
            word = self._draw([w for w, _, _ in ADJ], scores)
        return [*self.intensifier(), word]

    def verb(self, past: bool) -> str:
        past_form, present, _ = self._draw(VERBS, [self.polarity * p for *_, p in VERBS])
        return past_form if past else present

    def feeling(self) -> str:
        return self._draw([w for w, _ in FEELINGS], [self.polarity * p for _, p in FEELINGS])

    def context(self, topic: str) -> list[str]:
        pool = CONTEXTS[topic]
        return self._draw([w for w, _ in pool], [-self.time * s for _, s in pool]).split()

    def connective(self) -> list[str]:
        return self._draw(
            [w for w, _ in CONNECTIVES], [self.register * c for _, c in CONNECTIVES]
        ).split()

    def opener(self) -> list[str]:
        return self._draw([w for w, _ in OPENERS], [self.register * c for _, c in OPENERS]).split()

    def end(self) -> str:
        return "!" if self.maybe(1 / (1 + math.exp(-2 * self.register))) else "."

    # -- clauses
    def clause(self) -> list[str]:
        noun, topic = self.noun()
        template = self._index(_TEMPLATE_P)
        past = self.past()
        be = "was" if past else "is"
        if template == 0:  # the soup was really bland
            return ["the", noun, be, *self.adjective(topic)]
        if template == 1:  # i loved the movie with friends
            words = [self.pronoun(), self.verb(past), "the", noun]
            return words + self.context(topic) if self.maybe(0.5) else words
        if template == 2:  # such a delicious pizza
            det = self._draw(
                [w for w, _ in DETERMINERS], [self.register * c for _, c in DETERMINERS]
            )
            return [*det.split(), *self.adjective(topic), noun]
        if template == 3:  # we felt so happy about the hotel
            feel = "felt" if past else "feel"
            return [self.pronoun(), feel, *self.intensifier(), self.feeling(), "about", "the", noun]
        other, _ = self.noun()  # the ending of the film was predictable
        return ["the", noun, "of", "the", other, be, *self.adjective(topic)]

    def sentence(self, clauses: int) -> list[str]:
        words = self.opener() if self.maybe(P_OPENER) else []
        words += self.clause()
        for _ in range(clauses - 1):
            words += self.connective() + self.clause()
        return [*words, self.end()]


def nearest_topic(u: np.ndarray) -> int:
    angle = math.atan2(u[1], u[0])
    return int(np.argmax([math.cos(angle - a) for a in TOPIC_ANGLES]))


def generate_sentences(n: int, seed: int, sharpness: float = 4.0) -> list[LabeledSentence]:
    """``n`` sentences, each from its own meaning vector ``u ~ N(0, I)`` and 1-3 clauses."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        u = rng.standard_normal(LATENT_DIM)
        length = int(rng.integers(len(LENGTHS)))
        tokens = Grammar(rng, u, sharpness).sentence(clauses=length + 1)
        labels = {
            "register": int(u[3] > 0),
            "topic": nearest_topic(u),
            "sentiment": int(u[2] > 0),
            "length": length,
        }
        out.append(LabeledSentence(tokens, labels))
    return out


# --------------------------------------------------------------------------- dialogs
# P(next act | current act); rows sum to 1. "thanks"/"bye" end the conversation.
_NEXT_ACT = {
    "greeting": {"greeting": 0.3, "question": 0.6, "statement": 0.1},
    "question": {"answer": 0.75, "opinion": 0.15, "question": 0.1},
    "answer": {"question": 0.35, "opinion": 0.25, "agreement": 0.2, "statement": 0.1, "thanks": 0.1},
    "opinion": {"agreement": 0.4, "opinion": 0.2, "question": 0.25, "thanks": 0.15},
    "statement": {"question": 0.4, "opinion": 0.3, "agreement": 0.2, "statement": 0.1},
    "agreement": {"question": 0.3, "statement": 0.25, "opinion": 0.2, "thanks": 0.25},
    "thanks": {"bye": 1.0},
    "bye": {"bye": 1.0},
}  # fmt: skip


def _realize(grammar: Grammar, act: str) -> list[str]:
    if act == "greeting":
        return grammar.uniform(["hi there", "hello", "hey , how are you", "good morning"]).split()
    if act == "question":
        noun, _ = grammar.noun()
        asks = ["do you like the", "what do you think of the", "have you tried the", "how was the"]
        return [*grammar.uniform(asks).split(), noun, "?"]
    if act == "answer":
        return ["yes" if grammar.polarity > 0 else "no", ",", *grammar.clause(), "."]
    if act == "opinion":
        lead = grammar.uniform(["i think", "honestly", "in my opinion"]).split()
        return [*lead, *grammar.clause(), "."]
    if act == "statement":
        noun, topic = grammar.noun()
        lead = grammar.uniform(["i went there", "we saw it", "i got one", "i read about it"])
        return [*lead.split(), *grammar.context(topic), "."]
    if act == "agreement":
        return grammar.uniform(["i agree", "yeah , exactly", "true", "same here"]).split()
    if act == "thanks":
        return grammar.uniform(["thanks for the chat", "thank you", "thanks , that helps"]).split()
    return grammar.uniform(["bye", "see you", "goodbye , take care"]).split()


def generate_dialogs(
    n: int, seed: int, max_turns: int = 8, sharpness: float = 4.0
) -> list[tuple[list[Turn], int]]:
    """``n`` two-party dialogs, each as (turns, topic id). Speakers alternate A, B, A, ...

    A dialog keeps its topic plane (``u[0:2]``); every turn draws fresh polarity, register, time
    and person.
    """
    rng = np.random.default_rng(seed)
    dialogs = []
    for _ in range(n):
        topic_plane = rng.standard_normal(2)
        turns: list[Turn] = []
        act = "greeting"
        for t in range(int(rng.integers(4, max_turns + 1))):
            u = np.concatenate([topic_plane, rng.standard_normal(LATENT_DIM - 2)])
            tokens = _realize(Grammar(rng, u, sharpness), act)
            turns.append(Turn("AB"[t % 2], tokens, act))
            if act == "bye":
                break
            nxt = _NEXT_ACT[act]
            act = str(rng.choice(list(nxt), p=list(nxt.values())))
        dialogs.append((turns, nearest_topic(topic_plane)))
    return dialogs
