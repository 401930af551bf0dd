"""Corpus loaders (real samples and crafted bad input), the synthetic grammar, and `prepare`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from betamcmc.core.errors import InputError
from betamcmc.data import synthetic
from betamcmc.data.corpora import load_corpus
from betamcmc.data.params import DataParams
from betamcmc.data.prepare import prepare
from betamcmc.data.prepared import load_prepared
from betamcmc.params import load_params

from conftest import PipelineRun, run_stage, shared_data, shipped_section


def data(**kw) -> DataParams:
    return shipped_section("data", **kw)


# --------------------------------------------------------------------------- synthetic
def test_synthetic_is_deterministic_and_seed_dependent() -> None:
    a = synthetic.generate_sentences(50, seed=1)
    b = synthetic.generate_sentences(50, seed=1)
    c = synthetic.generate_sentences(50, seed=2)
    assert a == b
    assert a != c
    assert synthetic.generate_dialogs(10, seed=3) == synthetic.generate_dialogs(10, seed=3)


def _noun_topics(tokens: list[str]) -> list[int]:
    index = {n: k for k, t in enumerate(synthetic.TOPICS) for n in synthetic.NOUNS[t]}
    return [index[w] for w in tokens if w in index]


def _polarity(tokens: list[str]) -> list[float]:
    score = {w: p for w, p, _ in synthetic.ADJ}
    score |= {w: p for pool in synthetic.TOPIC_ADJ.values() for w, p in pool}
    score |= {w: p for *forms, p in synthetic.VERBS for w in forms}
    score |= dict(synthetic.FEELINGS)
    return [score[w] for w in tokens if w in score]


def test_synthetic_labels_follow_the_meaning_vector() -> None:
    """Nouns come mostly from the labelled topic and evaluative words carry the labelled sign,
    but not always (the topic plane is continuous): a bag-of-words lookup is not the label."""
    rows = synthetic.generate_sentences(1500, seed=0)
    topic_hits, sign_hits, n_sign = 0, 0, 0
    for r in rows:
        topics = _noun_topics(r.tokens)
        assert topics, r.tokens  # every clause has a noun
        topic_hits += max(set(topics), key=topics.count) == r.labels["topic"]
        pol = _polarity(r.tokens)
        if pol and abs(sum(pol)) > 0.5:
            n_sign += 1
            sign_hits += (sum(pol) > 0) == bool(r.labels["sentiment"])
    assert 0.6 < topic_hits / len(rows) < 0.97
    assert 0.75 < sign_hits / n_sign < 0.995


def test_synthetic_sharpness_zero_makes_words_independent_of_the_labels() -> None:
    rows = synthetic.generate_sentences(1500, seed=0, sharpness=0.0)
    hits = sum(
        max(set(t := _noun_topics(r.tokens)), key=t.count) == r.labels["topic"] for r in rows
    )
    assert hits / len(rows) < 0.35  # chance is 0.2 (+ ties broken towards repeated nouns)


def test_synthetic_lengths_grow_with_length_factor() -> None:
    rows = synthetic.generate_sentences(600, seed=0)
    mean = [
        sum(len(r.tokens) for r in rows if r.labels["length"] == k)
        / sum(r.labels["length"] == k for r in rows)
        for k in range(3)
    ]
    assert mean[0] < mean[1] < mean[2]


def test_synthetic_dialog_acts_follow_the_chain() -> None:
    for turns, _topic in synthetic.generate_dialogs(100, seed=0):
        assert turns[0].act == "greeting"
        assert [t.speaker for t in turns] == ["AB"[i % 2] for i in range(len(turns))]
        for prev, nxt in zip(turns, turns[1:]):
            assert nxt.act in synthetic._NEXT_ACT[prev.act]


def test_prepare_synthetic_splits_and_vocab() -> None:
    corpus, stats = prepare(data(synthetic={"train": 100, "valid": 20, "test": 20}), seed=0)
    assert [len(corpus.sentences[s]) for s in ("train", "valid", "test")] == [100, 20, 20]
    assert corpus.vocab.tokens[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    assert list(corpus.label_names) == ["register", "topic", "sentiment", "length"]
    assert corpus.dialogs["train"] and all(d.act is not None for d in corpus.dialogs["train"])
    assert stats["train"]["sentences"] == 100 and stats["vocab_size"] == len(corpus.vocab)


def test_vocab_is_built_on_train_only(tmp_path: Path) -> None:
    d = tmp_path / "c"
    d.mkdir()
    (d / "train.txt").write_text("a b c\na b\n")
    (d / "valid.txt").write_text("a zzz\n")
    (d / "test.txt").write_text("b yyy\n")
    corpus, stats = prepare(data(corpus="text", path=str(d)), seed=0)
    assert "zzz" not in corpus.vocab.index and "yyy" not in corpus.vocab.index
    assert stats["valid"]["oov_rate"] == 0.5 and stats["test"]["oov_rate"] == 0.5


def test_min_count_max_vocab_and_length_limits(tmp_path: Path) -> None:
    f = tmp_path / "one.txt"
    f.write_text("\n".join(["a a a b b c d e f g h"] * 30))
    corpus, _ = prepare(data(corpus="text", path=str(f), min_count=50), seed=0)
    assert corpus.vocab.tokens[4:] == ["a"]  # 24 train lines: 72 a's, 48 b's, 24 of the others
    corpus, _ = prepare(data(corpus="text", path=str(f), max_vocab=6), seed=0)
    assert corpus.vocab.tokens[4:] == ["a", "b"]
    corpus, stats = prepare(data(corpus="text", path=str(f), max_len=4), seed=0)
    assert (
        max(len(s.ids) for s in corpus.sentences["train"]) == 4 and stats["train"]["truncated"] > 0
    )
    with pytest.raises(InputError, match="no training sentence is left"):
        prepare(data(corpus="text", path=str(f), max_len=4, long_sentences="filter"), seed=0)


def test_single_file_split_is_deterministic(tmp_path: Path) -> None:
    f = tmp_path / "one.txt"
    f.write_text("\n".join(f"w{i % 10} w{i * 3 % 7} w{i % 4}" for i in range(100)))
    a, _ = prepare(data(corpus="text", path=str(f)), seed=0)
    b, _ = prepare(data(corpus="text", path=str(f)), seed=0)
    c, _ = prepare(data(corpus="text", path=str(f)), seed=1)
    assert [s.ids for s in a.sentences["test"]] == [s.ids for s in b.sentences["test"]]
    assert [len(a.sentences[s]) for s in ("train", "valid", "test")] == [80, 10, 10]
    assert [s.ids for s in a.sentences["test"]] != [s.ids for s in c.sentences["test"]]


# --------------------------------------------------------------------------- real samples
def test_ptb_sample() -> None:
    path = shared_data("ptb")
    corpus, stats = prepare(data(corpus="ptb", path=str(path)), seed=0)
    total = sum(stats[s]["sentences"] for s in ("train", "valid", "test"))
    assert total == 3370
    assert "<unk>" not in corpus.vocab.tokens[4:]
    assert corpus.label_names == {}


def test_yelp_sample_labels_from_suffix() -> None:
    path = shared_data("yelp")
    corpus, stats = prepare(data(corpus="yelp", path=str(path), max_len=40), seed=0)
    total = sum(stats[s]["sentences"] for s in ("train", "valid", "test"))
    assert total == 25278 + 38205
    assert corpus.label_names == {"sentiment": ["negative", "positive"]}
    labels = {s.labels["sentiment"] for s in corpus.sentences["train"]}
    assert labels == {0, 1}


def test_swda_sample_dialog_examples() -> None:
    path = shared_data("swda")
    corpus, _ = prepare(data(corpus="swda", path=str(path)), seed=0)
    assert corpus.act_names and "statement-non-opinion" in corpus.act_names
    ex = corpus.dialogs["train"][0]
    assert 1 <= len(ex.context) <= 3 and ex.response and ex.act is not None
    n_dialogs = sum(1 for _ in open(path / "valid.jsonl"))
    assert n_dialogs == 60
    assert corpus.label_names["act"] == corpus.act_names


def test_standard_split_files_are_the_splits(tmp_path: Path) -> None:
    for n, split in enumerate(("train", "valid", "test")):
        (tmp_path / f"ptb.{split}.txt").write_text("".join(f"{split} {i}\n" for i in range(3 - n)))
    corpus, _ = prepare(data(corpus="ptb", path=str(tmp_path)), seed=0)
    assert [len(corpus.sentences[s]) for s in ("train", "valid", "test")] == [3, 2, 1]
    assert "train" in corpus.vocab.index and "valid" not in corpus.vocab.index


# --------------------------------------------------------------------------- bad input
def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="data.path does not exist"):
        load_corpus(data(corpus="ptb", path=str(tmp_path / "nope")), seed=0)


def test_empty_corpus(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("\n  \n")
    with pytest.raises(InputError, match="corpus is empty"):
        load_corpus(data(corpus="text", path=str(tmp_path)), seed=0)


def test_non_utf8_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.txt"
    f.write_bytes(b"fine line\nsecond\nbad \xff byte\n")
    with pytest.raises(InputError) as info:
        load_corpus(data(corpus="text", path=str(f)), seed=0)
    assert str(info.value).startswith(f"{f}:3: not valid UTF-8")


def test_malformed_jsonl_names_file_and_line(tmp_path: Path) -> None:
    good = {
        "utts": [
            ["A", "hi", ["greeting", [0, 0, 0, 0]]],
            ["B", "hello", ["greeting", [0, 0, 0, 0]]],
        ]
    }
    f = tmp_path / "valid.jsonl"
    f.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(InputError) as info:
        load_corpus(data(corpus="swda", path=str(tmp_path)), seed=0)
    assert str(info.value).startswith(f"{f}:2: not valid JSON")
    f.write_text(json.dumps(good) + "\n" + json.dumps({"topic": "x"}) + "\n")
    with pytest.raises(InputError, match=r":2: not a Switchboard dialog: missing key 'utts'"):
        load_corpus(data(corpus="swda", path=str(tmp_path)), seed=0)


def test_labeled_file_without_sentences(tmp_path: Path) -> None:
    (tmp_path / "sentiment.dev.0").write_text("bad food .\n")
    (tmp_path / "sentiment.dev.1").write_text("\n\n")
    with pytest.raises(InputError) as info:
        load_corpus(data(corpus="yelp", path=str(tmp_path)), seed=0)
    assert str(info.value) == f"{tmp_path / 'sentiment.dev.1'}: labeled file has no sentences"


def test_yelp_missing_pair(tmp_path: Path) -> None:
    (tmp_path / "sentiment.dev.0").write_text("bad food .\n")
    with pytest.raises(InputError, match="not its pair"):
        load_corpus(data(corpus="yelp", path=str(tmp_path)), seed=0)


# --------------------------------------------------------------------------- the stage
def test_prepare_stage_writes_outputs_and_run(pipeline: PipelineRun) -> None:
    """The shared pipeline's `prepare` (run by `dvc repro`) wrote exactly what the library
    computes for its params, its statistics, and one MLflow run."""
    repo = pipeline.repo
    corpus = load_prepared(repo / "data/prepared")
    params = load_params(repo / "params.yaml")
    expected, expected_stats = prepare(params.data, params.seed)
    assert corpus.vocab.tokens == expected.vocab.tokens
    assert corpus.sentences == expected.sentences and corpus.dialogs == expected.dialogs
    assert [len(corpus.sentences[s]) for s in ("train", "valid", "test")] == [120, 30, 30]
    stats = json.loads((repo / "metrics/prepare.json").read_text())
    assert stats == json.loads(json.dumps(expected_stats))
    assert stats["train"]["sentences"] == 120 and stats["vocab_size"] == len(corpus.vocab)
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("betamcmc")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.stage = 'prepare'")
    assert [r.info.run_name for r in runs] == ["prepare"]
    assert runs[0].data.params["data.synthetic.train"] == "120"
    assert runs[0].data.tags["stage"] == "prepare"
    # the statistics describe the data: params, not metrics
    assert runs[0].data.params["vocab_size"] == str(len(corpus.vocab))
    assert runs[0].data.params["train.sentences"] == "120" and not runs[0].data.metrics
    assert runs[0].data.tags["corpus"] == runs[0].data.params["corpus"] == "synthetic"


def test_prepare_stage_bad_input_writes_nothing(tiny_repo: Path) -> None:
    bad = tiny_repo / "bad.txt"
    bad.write_bytes(b"ok\n\xfe\n")
    params = (tiny_repo / "params.yaml").read_text().replace("corpus: synthetic", "corpus: text")
    params = params.replace("path: null", f"path: {bad}")
    (tiny_repo / "params.yaml").write_text(params)
    proc = run_stage(tiny_repo, "prepare", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {bad}:2: not valid UTF-8 (invalid start byte, byte 0xfe)"
    assert not (tiny_repo / "data").exists()
    assert not (tiny_repo / "metrics" / "prepare.json").exists()


def test_prepare_stage_bad_params_exit_2(tiny_repo: Path) -> None:
    text = (tiny_repo / "params.yaml").read_text().replace("max_len: 20", "max_len: -1")
    (tiny_repo / "params.yaml").write_text(text)
    proc = run_stage(tiny_repo, "prepare", check=False)
    assert proc.returncode == 2
    assert "data.max_len: must be >= 2 (got -1)" in proc.stderr
    assert not (tiny_repo / "data").exists()


def test_relative_data_path_is_relative_to_the_project_root(tmp_path, monkeypatch) -> None:
    """A queued DVC experiment runs in <repo>/.dvc/tmp/exps/<id>/: a relative data.path such as
    ../shared/data/ptb must still mean the folder beside the repository."""
    from betamcmc.data.corpora import load_corpus

    repo = tmp_path / "repo"
    (repo / ".dvc" / "tmp" / "exps" / "abc").mkdir(parents=True)
    (repo / "dvc.yaml").write_text("stages: {}\n")
    corpus = tmp_path / "shared" / "ptb.txt"
    corpus.parent.mkdir()
    corpus.write_text("".join(f"the cat sat {i} times\n" for i in range(50)))
    monkeypatch.chdir(repo / ".dvc" / "tmp" / "exps" / "abc")
    raw = load_corpus(data(corpus="ptb", path="../shared/ptb.txt"), seed=0)
    assert sum(len(v) for v in raw.sentences.values()) == 50
