"""The bad-input matrix: every bad params file, corpus, model path and command-line argument gives
ONE line on stderr naming what is wrong and where, exit 2, no traceback, and writes nothing.

Each case is a row of ``CASES``: how to make the bad input, the command that reads it, and the
exact message expected (``{d}``: the case's folder, ``{line}``: the line of the key in a params
case, ``…``: any text, for the parts a library words). The cases run in-process (the console
script's ``betamcmc.cli.main``, the ``prepare`` / ``classify`` stages' ``main`` under
``run_stage``); ``test_console_scripts_exit_2_without_traceback`` runs a few as real processes.
``docs/bad-input.md`` is generated from the table (``test_docs_table_is_current``):
``BETAMCMC_WRITE_DOCS=1 pytest tests/test_bad_input.py -k docs`` rewrites it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from betamcmc import cli
from betamcmc.core.runner import run_stage
from betamcmc.data.prepared import Vocab
from betamcmc.finetune.cvae import DialogCVAE, save_cvae
from betamcmc.vae.model import TextVAE, save_vae

from conftest import REPO, cvae_config, tiny_params, vae_config

DOC = REPO / "docs" / "bad-input.md"
TOKENS = ["<pad>", "<unk>", "<bos>", "<eos>", "the", "cat", "sat"]


# --------------------------------------------------------------------------- the runners
def _stage(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_cli(args: list[str]) -> int:
    return cli.main(args)


def run_stage_main(name: str, args: list[str]) -> int:
    module = _stage(name)
    try:
        run_stage(lambda: module.main(args))
    except SystemExit as done:
        return int(done.code or 0)
    return 0


# --------------------------------------------------------------------------- params files
def shipped_text(**changes: Any) -> str:
    """The tiny params as YAML with dotted keys set (``None`` value with ``_drop``: removed)."""
    tree = tiny_params()
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = tree
        for part in parents:
            node = node[part]
        if value is _DROP:
            del node[last]
        else:
            node[last] = value
    return yaml.safe_dump(tree, sort_keys=False)


_DROP = object()


def key_line(text: str, dotted: str) -> int:
    """The line of a dotted key (a list item: ``key.0``) in ``text``."""
    node = yaml.compose(text)
    line = 1
    for part in dotted.split("."):
        if isinstance(node, yaml.SequenceNode):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
            continue
        for key, value in node.value:
            if key.value == part:
                line, node = key.start_mark.line + 1, value
                break
    return line


def _folder(path: Path, files: dict[str, str]) -> Path:
    path.mkdir()
    for name, text in files.items():
        (path / name).write_text(text)
    return path


@dataclass
class Case:
    id: str
    area: str  # params | corpus | model | argument
    what: str  # the bad input, in words (the docs table)
    make: Callable[[Path], list[str]]  # writes the input under the folder; returns the command
    expect: str  # exact message ("error: ..." without the prefix); {d}, {line}, … as above
    key: str | None = None  # params cases: the key whose line {line} is


def params_case(id: str, what: str, expect: str, key: str | None = None, text: str | None = None,
                raw: bytes | None = None, **changes: Any) -> Case:  # fmt: skip
    def make(d: Path) -> list[str]:
        path = d / "params.yaml"
        if raw is not None:
            path.write_bytes(raw)
        else:
            path.write_text(text if text is not None else shipped_text(**changes))
        return ["params", "check", str(path)]

    return Case(id, "params", what, make, expect, key)


def _params_line(case: Case, d: Path) -> int | None:
    if case.key is None:
        return None
    return key_line((d / "params.yaml").read_text(), case.key)


SHIPPED = shipped_text()
CASES: list[Case] = [
    # ----- degenerate files
    params_case(
        "params-empty",
        "empty file",
        "{d}/params.yaml: params file is empty (expected "
        "the sections seed, device, data, tracking, runtime, pretrain, finetune, sgmcmc, rl)",
        text="",
    ),  # fmt: skip
    params_case(
        "params-comments",
        "only comments",
        "{d}/params.yaml: params file is empty "
        "(expected the sections seed, device, data, tracking, runtime, pretrain, finetune, "
        "sgmcmc, rl)",
        text="# nothing here\n# at all\n",
    ),  # fmt: skip
    params_case(
        "params-list",
        "a list at top level",
        "{d}/params.yaml:1: top level must be a mapping of sections (got list)",
        text="- seed\n- device\n",
    ),  # fmt: skip
    params_case(
        "params-scalar",
        "a number at top level",
        "{d}/params.yaml:1: top level must be a mapping of sections (got int)",
        text="3\n",
    ),  # fmt: skip
    params_case(
        "params-binary",
        "binary file",
        "{d}/params.yaml: not UTF-8 text (invalid start byte at byte 1)",
        raw=b"\x00\xff\xfe\x01binary",
    ),  # fmt: skip
    params_case(
        "params-utf16",
        "UTF-16 file",
        "{d}/params.yaml: not UTF-8 text (invalid start byte at byte 0)",
        raw=SHIPPED.encode("utf-16"),
    ),  # fmt: skip
    params_case(
        "params-tab",
        "a tab in the indentation",
        "{d}/params.yaml:2: invalid YAML: found character '\\t' that cannot start any token",
        text="seed: 0\n\tdevice: cpu\n",
    ),  # fmt: skip
    params_case(
        "params-duplicate",
        "a key set twice",
        "{d}/params.yaml:4: data.lowercase: duplicate key (it is already set above)",
        text="seed: 0\ndata:\n  lowercase: true\n  lowercase: false\n",
    ),  # fmt: skip
    params_case(
        "params-null-section",
        "a section left empty (`data:`)",
        "{d}/params.yaml:{line}: data: must be a mapping (got null)",
        key="data",
        data=None,
    ),  # fmt: skip
    params_case(
        "params-unknown-section",
        "a misspelt section",
        "{d}/params.yaml:{line}: pretrian: unknown key; did you mean pretrain?",
        key="pretrian",
        text=SHIPPED.replace("\npretrain:", "\npretrian:"),
    ),  # fmt: skip
    params_case(
        "params-missing-key",
        "a required key left out",
        "{d}/params.yaml:{line}: pretrain.train.lr: missing required key",
        key="pretrain.train",
        pretrain__train__lr=_DROP,
    ),  # fmt: skip
    # ----- seed, device
    params_case(
        "seed-negative",
        "seed: -1",
        "{d}/params.yaml:{line}: seed: must be >= 0 (got -1)",
        key="seed",
        seed=-1,
    ),  # fmt: skip
    params_case(
        "seed-huge",
        "seed: 2**40",
        "{d}/params.yaml:{line}: seed: must be <= 4294967295 (got 1099511627776)",
        key="seed",
        seed=2**40,
    ),  # fmt: skip
    params_case(
        "seed-string",
        "seed: '3'",
        "{d}/params.yaml:{line}: seed: must be an integer (got '3')",
        key="seed",
        seed="3",
    ),  # fmt: skip
    params_case(
        "device-unknown",
        "device: gpu",
        "{d}/params.yaml:{line}: device: must be one of 'auto', 'cpu' or 'cuda' (got 'gpu')",
        key="device",
        device="gpu",
    ),  # fmt: skip
    # ----- data
    params_case(
        "data-corpus",
        "data.corpus: wiki",
        "{d}/params.yaml:{line}: data.corpus: must be "
        "one of 'synthetic', 'ptb', 'yelp', 'swda' or 'text' (got 'wiki')",
        key="data.corpus",
        data__corpus="wiki",
    ),  # fmt: skip
    params_case(
        "data-path-blank",
        "data.path: '  '",
        "{d}/params.yaml:{line}: data.path: must not be empty or only whitespace (got '  ')",
        key="data.path",
        data__corpus="text",
        data__path="  ",
    ),  # fmt: skip
    params_case(
        "data-path-missing",
        "data.corpus: ptb without data.path",
        "{d}/params.yaml:{line}: data: path is required when corpus is 'ptb'",
        key="data",
        data__corpus="ptb",
    ),  # fmt: skip
    params_case(
        "data-max-len",
        "data.max_len: 1",
        "{d}/params.yaml:{line}: data.max_len: must be >= 2 (got 1)",
        key="data.max_len",
        data__max_len=1,
    ),  # fmt: skip
    params_case(
        "data-split",
        "data.split valid 0.6 + test 0.5",
        "{d}/params.yaml:{line}: "
        "data.split: valid + test must be < 1 so that a train split remains (got 1.1)",
        key="data.split",
        data__split={"valid": 0.6, "test": 0.5},
    ),  # fmt: skip
    params_case(
        "data-long",
        "data.long_sentences: cut",
        "{d}/params.yaml:{line}: "
        "data.long_sentences: must be one of 'truncate' or 'filter' (got 'cut')",
        key="data.long_sentences",
        data__long_sentences="cut",
    ),  # fmt: skip
    params_case(
        "data-synthetic",
        "data.synthetic.train: 0",
        "{d}/params.yaml:{line}: data.synthetic.train: must be >= 1 (got 0)",
        key="data.synthetic.train",
        data__synthetic__train=0,
    ),  # fmt: skip
    # ----- tracking
    params_case(
        "tracking-experiment",
        "tracking.experiment: ''",
        "{d}/params.yaml:{line}: tracking.experiment: must not be empty (got '')",
        key="tracking.experiment",
        tracking__experiment="",
    ),  # fmt: skip
    params_case(
        "tracking-uri",
        "tracking.uri: ' '",
        "{d}/params.yaml:{line}: tracking.uri: must not be empty or only whitespace (got ' ')",
        key="tracking.uri",
        tracking__uri=" ",
    ),  # fmt: skip
    # ----- pretrain
    params_case(
        "pretrain-cycles",
        "a cyclical schedule with cycles: 0",
        "{d}/params.yaml:{line}: pretrain.schedules.cyclical.cycles: must be >= 1 (got 0)",
        key="pretrain.schedules.cyclical.cycles",
        pretrain__schedules__cyclical={"kind": "cyclical", "cycles": 0},
    ),  # fmt: skip
    params_case(
        "pretrain-no-schedule",
        "pretrain.schedules: {}",
        "{d}/params.yaml:{line}: pretrain.schedules: must have at least 1 item(s)",
        key="pretrain.schedules",
        pretrain__schedules={},
    ),  # fmt: skip
    params_case(
        "pretrain-schedule-name",
        "a schedule named ../x",
        "{d}/params.yaml:{line}: "
        "pretrain.schedules: schedule names must be letters, digits, '_', '-', '.' (they "
        "name output directories) (got '../x')",
        key="pretrain.schedules",
        pretrain__schedules={"../x": {"kind": "constant", "value": 1.0}},
    ),  # fmt: skip
    params_case(
        "pretrain-kind",
        "a schedule of kind: sine",
        "{d}/params.yaml:{line}: "
        "pretrain.schedules.x: 'kind' must be one of 'constant', 'monotonic', 'cyclical' "
        "(got 'sine')",
        key="pretrain.schedules.x",
        pretrain__schedules={"x": {"kind": "sine"}},
    ),  # fmt: skip
    params_case(
        "pretrain-lr-inf",
        "pretrain.train.lr: .inf",
        "{d}/params.yaml:{line}: pretrain.train.lr: must be a finite number (got inf)",
        key="pretrain.train.lr",
        pretrain__train__lr=float("inf"),
    ),  # fmt: skip
    params_case(
        "pretrain-lr-nan",
        "pretrain.train.lr: .nan",
        "{d}/params.yaml:{line}: pretrain.train.lr: must be a finite number (got nan)",
        key="pretrain.train.lr",
        pretrain__train__lr=float("nan"),
    ),  # fmt: skip
    params_case(
        "pretrain-iterations-float",
        "pretrain.train.iterations: 1.5",
        "{d}/params.yaml:{line}: pretrain.train.iterations: must be an integer (got 1.5)",
        key="pretrain.train.iterations",
        pretrain__train__iterations=1.5,
    ),  # fmt: skip
    params_case(
        "pretrain-latent",
        "pretrain.model.latent_dim: 0",
        "{d}/params.yaml:{line}: pretrain.model.latent_dim: must be >= 1 (got 0)",
        key="pretrain.model.latent_dim",
        pretrain__model__latent_dim=0,
    ),  # fmt: skip
    params_case(
        "pretrain-seeds",
        "pretrain.seeds: [-1]",
        "{d}/params.yaml:{line}: pretrain.seeds.0: must be >= 0 (got -1)",
        key="pretrain.seeds.0",
        pretrain__seeds=[-1],
    ),  # fmt: skip
    # ----- finetune
    params_case(
        "finetune-fraction",
        "finetune.label_fractions: [1.5]",
        "{d}/params.yaml:{line}: finetune.label_fractions.0: must be in (0, 1] (got 1.5)",
        key="finetune.label_fractions.0",
        finetune__label_fractions=[1.5],
    ),  # fmt: skip
    params_case(
        "finetune-seeds",
        "finetune.seeds: [0, 0]",
        "{d}/params.yaml:{line}: finetune.seeds: must be distinct (got [0, 0])",
        key="finetune.seeds",
        finetune__seeds=[0, 0],
    ),  # fmt: skip
    params_case(
        "finetune-label",
        "finetune.label: ' '",
        "{d}/params.yaml:{line}: finetune.label: must not be empty or only whitespace (got ' ')",
        key="finetune.label",
        finetune__label=" ",
    ),  # fmt: skip
    params_case(
        "finetune-dialog",
        "finetune.dialog.epochs: 0",
        "{d}/params.yaml:{line}: finetune.dialog.epochs: must be >= 1 (got 0)",
        key="finetune.dialog.epochs",
        finetune__dialog__epochs=0,
    ),  # fmt: skip
    # ----- sgmcmc
    params_case(
        "sgmcmc-protocol",
        "sgmcmc.items: {bogus-2: {protocol: bogus, workers: 2}}",
        "{d}/params.yaml:{line}: sgmcmc.items.bogus-2.protocol: "
        "must be one of 'single', 'sync', 'downpour' or 'elastic' (got 'bogus')",
        key="sgmcmc.items.bogus-2.protocol",
        sgmcmc__items={"bogus-2": {"protocol": "bogus", "workers": 2}},
    ),  # fmt: skip
    params_case(
        "sgmcmc-workers",
        "sgmcmc.items: {single-0: {protocol: single, workers: 0}}",
        "{d}/params.yaml:{line}: sgmcmc.items.single-0.workers: must be >= 1 (got 0)",
        key="sgmcmc.items.single-0.workers",
        sgmcmc__items={"single-0": {"protocol": "single", "workers": 0}},
    ),  # fmt: skip
    params_case(
        "sgmcmc-sampler",
        "sgmcmc.sampler: a string",
        "{d}/params.yaml:{line}: sgmcmc.sampler: must be a mapping (got 'sgld')",
        key="sgmcmc.sampler",
        sgmcmc__sampler="sgld",
    ),  # fmt: skip
    # ----- rl
    params_case(
        "rl-env",
        "rl.env: ''",
        "{d}/params.yaml:{line}: rl.env: must not be empty (got '')",
        key="rl.env",
        rl__env="",
    ),  # fmt: skip
    params_case(
        "rl-temperature",
        "rl.temperature: -1",
        "{d}/params.yaml:{line}: rl.temperature: …(got -1.0)",
        key="rl.temperature",
        rl__temperature=-1.0,
    ),  # fmt: skip
    params_case(
        "rl-seeds",
        "rl.seeds: [5000000000]",
        "{d}/params.yaml:{line}: rl.seeds.0: must be <= 4294967295 (got 5000000000)",
        key="rl.seeds.0",
        rl__seeds=[5_000_000_000],
    ),  # fmt: skip
]


def _directory_params(d: Path) -> list[str]:
    (d / "params.yaml").mkdir()
    return ["params", "check", str(d / "params.yaml")]


CASES += [
    Case(
        "params-directory",
        "params",
        "a directory given as the params file",
        _directory_params,
        "{d}/params.yaml: expected a params file, found a directory",
    ),  # fmt: skip
    Case(
        "params-missing-file",
        "params",
        "no such params file",
        lambda d: ["params", "check", str(d / "nope.yaml")],
        "{d}/nope.yaml: params file not found",
    ),  # fmt: skip
]


# --------------------------------------------------------------------------- corpora
GOOD = "".join(f"the cat sat on mat number {i}\n" for i in range(30))
UTTS = [["A", "hello there", ["greet", [0, 0, 0, 0]]], ["B", "hi you", ["greet", [0, 0, 0, 0]]],
        ["A", "bye now", ["bye", [0, 0, 0, 0]]]]  # fmt: skip
DIALOG = json.dumps({"utts": UTTS})
SWDA = "".join(DIALOG + "\n" for _ in range(10))


def corpus_case(id: str, corpus: str, what: str, files: dict[str, bytes | str | None],
                expect: str, path: str = "corpus", **data: Any) -> Case:  # fmt: skip
    """``files``: relative path -> content (``None``: a directory)."""

    def make(d: Path) -> list[str]:
        root = d / "corpus"
        root.mkdir()
        for rel, content in files.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if content is None:
                target.mkdir()
            elif isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content, encoding="utf-8")
        tree = tiny_params({"data": {"corpus": corpus, "path": str(d / path), **data}})
        (d / "params.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))
        _project(d)
        return ["prepare", "--params", str(d / "params.yaml")]

    return Case(id, "corpus", f"`{corpus}`: {what}", make, expect)


def swda_line(id: str, what: str, line: str, expect: str) -> Case:
    return corpus_case(id, "swda", what, {"valid.jsonl": SWDA + line + "\n"},
                       "{d}/corpus/valid.jsonl:11: " + expect)  # fmt: skip


CASES += [
    corpus_case(
        "text-utf16",
        "text",
        "UTF-16 file (with byte-order mark)",
        {"a.txt": GOOD.encode("utf-16")},
        "{d}/corpus/a.txt:1: UTF-16 text (byte-order mark ff fe); save the file as UTF-8",
        path="corpus/a.txt",
    ),  # fmt: skip
    corpus_case(
        "text-utf16be",
        "text",
        "UTF-16 file without byte-order mark",
        {"a.txt": GOOD.encode("utf-16-be")},
        "{d}/corpus/a.txt:1: NUL byte: a binary file or UTF-16/32 text; expected UTF-8 text",
        path="corpus/a.txt",
    ),  # fmt: skip
    corpus_case(
        "text-utf32",
        "text",
        "UTF-32 file",
        {"a.txt": GOOD.encode("utf-32")},
        "{d}/corpus/a.txt:1: UTF-32 text (byte-order mark ff fe 00 00); save the file as UTF-8",
        path="corpus/a.txt",
    ),  # fmt: skip
    corpus_case(
        "text-latin1",
        "text",
        "Latin-1 file (é on line 31)",
        {"a.txt": GOOD.encode() + "caf\xe9\n".encode("latin-1")},
        "{d}/corpus/a.txt:31: not valid UTF-8 (invalid continuation byte, byte 0xe9)",
        path="corpus/a.txt",
    ),  # fmt: skip
    corpus_case(
        "text-empty",
        "text",
        "empty file",
        {"a.txt": ""},
        "{d}/corpus/a.txt: corpus is empty (no sentences found)",
        path="corpus/a.txt",
    ),  # fmt: skip
    corpus_case(
        "text-blank",
        "text",
        "whitespace-only file",
        {"a.txt": " \n\t\n  \n"},
        "{d}/corpus/a.txt: corpus is empty (no sentences found)",
        path="corpus/a.txt",
    ),  # fmt: skip
    corpus_case(
        "text-binary",
        "text",
        "binary file",
        {"a.txt": b"\x89PNG\r\n\x1a\n" + bytes(range(256))},
        "{d}/corpus/a.txt:3: NUL byte: a binary file or UTF-16/32 text; expected UTF-8 text",
        path="corpus/a.txt",
    ),  # fmt: skip
    corpus_case(
        "text-nul",
        "text",
        "text with a NUL byte on line 3",
        {"a.txt": "a b\nc d\ne\x00f\n" + GOOD},
        "{d}/corpus/a.txt:3: NUL byte: a binary file or UTF-16/32 text; expected UTF-8 text",
        path="corpus/a.txt",
    ),  # fmt: skip
    corpus_case(
        "text-empty-dir",
        "text",
        "directory holding no files",
        {"d": None},
        "{d}/corpus/d: no text files in directory",
        path="corpus/d",
    ),  # fmt: skip
    corpus_case(
        "text-hidden-only",
        "text",
        "directory holding only hidden files",
        {"d/.keep": "x\n", "d/.git/HEAD": "ref\n"},
        "{d}/corpus/d: no text files in directory",
        path="corpus/d",
    ),  # fmt: skip
    corpus_case(
        "text-images-dir",
        "text",
        "directory of images",
        {"d/a.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"},
        "{d}/corpus/d/a.png:3: NUL byte: a binary file or UTF-16/32 text; expected UTF-8 text",
        path="corpus/d",
    ),  # fmt: skip
    corpus_case(
        "text-one-line",
        "text",
        "a one-sentence file (nothing left for valid/test)",
        {"a.txt": "just one sentence\n"},
        "{d}/corpus/a.txt: the valid split is empty: "
        "the corpus gives it no sentence (an empty split file, or too few sentences to "
        "split); the later stages evaluate on it (give that split non-empty text or a "
        "larger corpus)",
        path="corpus/a.txt",
    ),  # fmt: skip
    corpus_case(
        "text-no-path",
        "text",
        "data.path that does not exist",
        {},
        "{d}/corpus/missing.txt: data.path does not exist (data.corpus=text)",
        path="corpus/missing.txt",
    ),  # fmt: skip
    corpus_case(
        "ptb-layout",
        "ptb",
        "directory without PTB split files",
        {"other.txt": GOOD},
        "{d}/corpus: no PTB split files (ptb.{train,valid,test}.txt or {train,valid,test}.txt)",
    ),  # fmt: skip
    corpus_case(
        "ptb-empty-test",
        "ptb",
        "an empty test.txt",
        {"train.txt": GOOD, "valid.txt": GOOD, "test.txt": ""},
        "{d}/corpus: the test "
        "split is empty: the corpus gives it no sentence (an empty split file, or too few "
        "sentences to split); the later stages evaluate on it (give that split non-empty "
        "text or a larger corpus)",
    ),  # fmt: skip
    corpus_case(
        "ptb-filtered-valid",
        "ptb",
        "long_sentences: filter drops all of valid",
        {"train.txt": GOOD, "valid.txt": "w " * 30 + "\n", "test.txt": GOOD},
        "{d}/corpus: the valid split is empty: all 1 of its sentences are longer than "
        "data.max_len=20 and data.long_sentences=filter drops them; the later stages "
        "evaluate on it (raise data.max_len or use data.long_sentences: truncate)",
        long_sentences="filter",
    ),  # fmt: skip
    corpus_case(
        "ptb-train-filtered",
        "ptb",
        "long_sentences: filter drops all of train",
        {"train.txt": "w " * 30 + "\n"},
        "{d}/corpus: no training sentence is left after "
        "data.max_len=20 with data.long_sentences=filter",
        long_sentences="filter",
    ),  # fmt: skip
    corpus_case(
        "yelp-file",
        "yelp",
        "a file instead of the directory",
        {"a.txt": GOOD},
        "{d}/corpus/a.txt: yelp corpus must be a directory with sentiment.<split>.<0|1> files",
        path="corpus/a.txt",
    ),  # fmt: skip
    corpus_case(
        "yelp-unpaired",
        "yelp",
        "sentiment.dev.0 without sentiment.dev.1",
        {"sentiment.dev.0": GOOD},
        "{d}/corpus: found sentiment.dev.0 but not its pair (need .0 and .1)",
    ),  # fmt: skip
    corpus_case(
        "yelp-layout",
        "yelp",
        "directory without sentiment.* files",
        {"reviews.txt": GOOD},
        "{d}/corpus: no sentiment.{train,dev,test}.{0,1} files",
    ),  # fmt: skip
    corpus_case(
        "yelp-empty-label",
        "yelp",
        "an empty sentiment.dev.1",
        {"sentiment.dev.0": GOOD, "sentiment.dev.1": "\n"},
        "{d}/corpus/sentiment.dev.1: labeled file has no sentences",
    ),  # fmt: skip
    corpus_case(
        "swda-layout",
        "swda",
        "directory without {train,valid,test}.jsonl",
        {"dialogs.json": SWDA},
        "{d}/corpus: no {train,valid,test}.jsonl files",
    ),  # fmt: skip
    corpus_case(
        "swda-bom-utf16",
        "swda",
        "UTF-16 JSONL",
        {"valid.jsonl": SWDA.encode("utf-16")},
        "{d}/corpus/valid.jsonl:1: UTF-16 text (byte-order mark ff fe); save the file as UTF-8",
    ),  # fmt: skip
    swda_line(
        "swda-not-json",
        "a line that is not JSON",
        "{not json",
        "not valid JSON: Expecting property name enclosed in double quotes (column 2)",
    ),  # fmt: skip
    swda_line(
        "swda-truncated",
        "a truncated line",
        DIALOG[:30],
        "not valid JSON: Expecting value (column 31)",
    ),  # fmt: skip
    swda_line(
        "swda-list",
        "a JSON list",
        "[1, 2]",
        "not a Switchboard dialog: expected a JSON object with 'utts' (got a list)",
    ),  # fmt: skip
    swda_line(
        "swda-no-utts",
        "an object without utts",
        '{"topic": "x"}',
        "not a Switchboard dialog: missing key 'utts'",
    ),  # fmt: skip
    swda_line(
        "swda-utts-string",
        "utts is a string",
        '{"utts": "hi"}',
        "not a Switchboard dialog: 'utts' must be a list of utterances (got a string)",
    ),  # fmt: skip
    swda_line(
        "swda-utt-null",
        "an utterance that is null",
        '{"utts": [null]}',
        "not a Switchboard dialog: utts[0] must be [speaker, text, [dialog_act, ...]] (got null)",
    ),  # fmt: skip
    swda_line(
        "swda-utt-short",
        "an utterance without text",
        '{"utts": [["A"]]}',
        "not a Switchboard dialog: utts[0] must be [speaker, text, [dialog_act, ...]] (got a list)",
    ),  # fmt: skip
    swda_line(
        "swda-text-number",
        "utterance text that is a number",
        '{"utts": [["A", 5]]}',
        "not a Switchboard dialog: utts[0][1]: text must be a string (got a number (5))",
    ),  # fmt: skip
    swda_line(
        "swda-speaker-blank",
        "a blank speaker",
        '{"utts": [[" ", "hi"]]}',
        "not a Switchboard dialog: utts[0][0]: speaker must be a non-empty string (got ' ')",
    ),  # fmt: skip
    swda_line(
        "swda-act-number",
        "a dialog act that is a number",
        '{"utts": [["A", "hi", [7]]]}',
        "not a Switchboard dialog: utts[0][2][0]: dialog act must be a string (got a number (7))",
    ),  # fmt: skip
    swda_line(
        "swda-act-shape",
        "act info that is a string",
        '{"utts": [["A", "hi", "greet"]]}',
        "not a Switchboard dialog: utts[0][2] must be [dialog_act, ...] (got a string)",
    ),  # fmt: skip
    swda_line(
        "swda-deep", "JSON nested 100,000 deep", "[" * 100_000, "not valid JSON (nested too deeply)"
    ),  # fmt: skip
]


# --------------------------------------------------------------------------- model files
def _vae_dir(d: Path) -> Path:
    torch.manual_seed(0)
    model = TextVAE(vae_config(len(TOKENS), emb_dim=4, hidden_dim=4, latent_dim=2))
    out = d / "vae"
    out.mkdir()
    save_vae(model, out / "model.pt")
    (out / "vocab.txt").write_text("\n".join(TOKENS) + "\n")
    return out


def _dialog_dir(d: Path) -> Path:
    cfg = cvae_config(len(TOKENS), emb_dim=4, utt_hidden=4, ctx_hidden=4, latent_dim=2,
                      dec_hidden=4, prior_hidden=4, max_context=2)  # fmt: skip
    out = d / "dialog"
    save_cvae(out, DialogCVAE(cfg), Vocab(TOKENS))
    return out


class _Code:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("touch PWNED",))


def _file(name: str, content: Callable[[Path], Any]) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        path = d / name
        value = content(d)
        if isinstance(value, bytes):
            path.write_bytes(value)
        elif isinstance(value, str):
            path.write_text(value)
        else:
            torch.save(value, path)
        return path

    return make


def model_case(id: str, command: str, what: str, make_path: Callable[[Path], Path],
               expect: str) -> Case:  # fmt: skip
    def make(d: Path) -> list[str]:
        path = str(make_path(d))
        if command == "sample":
            return ["sample", "-m", path, "-n", "1"]
        if command == "respond":
            return ["respond", "hello", "-m", path]
        _project(d)  # the stage reads its paths from dvc.yaml: data/prepared is missing here
        return ["classify", "constant", "--params", str(_classify_params(d))]

    return Case(id, "model", f"`{command}`: {what}", make, expect)


def _project(d: Path) -> None:
    """``d`` becomes a project: the stages read their input and output paths from dvc.yaml."""
    (d / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())


def _classify_params(d: Path) -> Path:
    path = d / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    return path


def _resume_state(d: Path) -> dict[str, Any]:
    return {"fingerprint": "x", "iteration": 3, "optimizer": {}, "model": {}}


CASES += [
    model_case(
        "sample-dialog-dir",
        "sample",
        "a dialog model folder",
        _dialog_dir,
        "{d}/dialog/model.pt: not a text VAE checkpoint: it is a dialog CVAE (use "
        "`betamcmc respond -m models/dialog/<item>`)",
    ),  # fmt: skip
    model_case(
        "sample-vocab",
        "sample",
        "the vocabulary file",
        lambda d: _vae_dir(d) / "vocab.txt",
        "{d}/vae/vocab.txt: not a text VAE checkpoint: a text file, not a PyTorch checkpoint",
    ),  # fmt: skip
    model_case(
        "sample-empty-file",
        "sample",
        "an empty file",
        _file("m.pt", lambda d: b""),
        "{d}/m.pt: not a text VAE checkpoint: the file is empty",
    ),  # fmt: skip
    model_case(
        "sample-binary",
        "sample",
        "random bytes",
        _file("m.pt", lambda d: bytes(range(256))),
        "{d}/m.pt: not a text VAE checkpoint: not a PyTorch checkpoint",
    ),  # fmt: skip
    model_case(
        "sample-pickle",
        "sample",
        "a plain pickle that would run code",
        _file("m.pt", lambda d: pickle.dumps(_Code())),
        "{d}/m.pt: not a text VAE "
        "checkpoint: a plain pickle, not a PyTorch checkpoint (betamcmc never unpickles "
        "code)",
    ),  # fmt: skip
    model_case(
        "sample-torch-code",
        "sample",
        "a torch.save file that would run code",
        _file("m.pt", lambda d: {"config": {}, "model": _Code()}),
        "{d}/m.pt: not a text "
        "VAE checkpoint: it holds objects other than tensors and plain values (refused: "
        "weights only)",
    ),  # fmt: skip
    model_case(
        "sample-truncated",
        "sample",
        "a truncated model.pt",
        _file("m.pt", lambda d: (_vae_dir(d) / "model.pt").read_bytes()[:2000]),
        "{d}/m.pt: not a text VAE checkpoint: unreadable or truncated PyTorch file (…)",
    ),  # fmt: skip
    model_case(
        "sample-other-dict",
        "sample",
        "a torch file with other keys",
        _file("m.pt", lambda d: {"weights": torch.zeros(2)}),
        "{d}/m.pt: not a text VAE checkpoint: a PyTorch file with other contents (keys: weights)",
    ),  # fmt: skip
    model_case(
        "sample-tensor",
        "sample",
        "a torch file holding a tensor",
        _file("m.pt", lambda d: torch.zeros(3)),
        "{d}/m.pt: not a text VAE checkpoint: a PyTorch file holding a Tensor, not a checkpoint",
    ),  # fmt: skip
    model_case(
        "sample-resume",
        "sample",
        "pretrain's resumable state",
        _file("resume.pt", _resume_state),
        "{d}/resume.pt: not a text VAE checkpoint: it is "
        "a resumable pretrain state, not a trained model",
    ),  # fmt: skip
    model_case(
        "sample-bad-config",
        "sample",
        "a VAE checkpoint of another version",
        _file("m.pt", lambda d: {"config": {"vocab_size": 7, "layers": 3}, "model": {}}),
        "{d}/m.pt: text VAE checkpoint does not fit this version's model (…)",
    ),  # fmt: skip
    model_case(
        "sample-empty-dir",
        "sample",
        "a folder without model.pt",
        lambda d: (d / "e").mkdir() or d / "e",
        "{d}/e/model.pt: VAE checkpoint not found (run `dvc repro pretrain` first)",
    ),  # fmt: skip
    model_case(
        "sample-bad-meta",
        "sample",
        "a schedule folder whose meta.json is broken",
        lambda d: _folder(d / "s", {"meta.json": "{"}),
        "{d}/s/meta.json: not a pretrain model folder's meta.json (no list of seeds)",
    ),  # fmt: skip
    model_case(
        "sample-bad-vocab",
        "sample",
        "a model folder whose vocab.txt is another file",
        lambda d: _vae_dir(d).joinpath("vocab.txt").write_text("a\nb\n") and d / "vae",
        "{d}/vae/vocab.txt:1: not a vocabulary: it must start with <pad> <unk> <bos> <eos>",
    ),  # fmt: skip
    model_case(
        "respond-vae-dir",
        "respond",
        "a text VAE folder",
        _vae_dir,
        "{d}/vae/model.pt: not a dialog CVAE checkpoint: it is a text VAE (use `betamcmc "
        "sample -m models/pretrain/<schedule>`)",
    ),  # fmt: skip
    model_case(
        "respond-file",
        "respond",
        "the model.pt file itself",
        lambda d: _dialog_dir(d) / "model.pt",
        "{d}/dialog/model.pt: expected a dialog "
        "model directory (models/dialog/<item>), found a file",
    ),  # fmt: skip
    model_case(
        "respond-empty-dir",
        "respond",
        "a folder without model.pt",
        lambda d: (d / "e").mkdir() or d / "e",
        "{d}/e/model.pt: dialog model not found (run `dvc repro dialog` first)",
    ),  # fmt: skip
    model_case(
        "respond-short-vocab",
        "respond",
        "a vocabulary shorter than the model's",
        lambda d: (
            _dialog_dir(d).joinpath("vocab.txt").write_text("\n".join(TOKENS[:5]) + "\n")
            and d / "dialog"
        ),
        "{d}/dialog/vocab.txt: vocabulary has 5 entries but the model expects 7",
    ),  # fmt: skip
    model_case(
        "classify-no-prepared",
        "classify",
        "no prepared corpus (data/prepared)",
        lambda d: _dialog_dir(d).parent,
        "data/prepared: prepared corpus not found (run `dvc repro prepare` first)",
    ),  # fmt: skip
]


# --------------------------------------------------------------------------- arguments
def arg_case(id: str, what: str, args: list[str], expect: str) -> Case:
    return Case(id, "argument", what, lambda d: list(args), expect)


CASES += [
    arg_case(
        "arg-unknown-command",
        "an unknown command",
        ["smaple"],
        "betamcmc: No such command 'smaple'. Did you mean 'sample'? (see --help)",
    ),  # fmt: skip
    arg_case(
        "arg-unknown-option",
        "an unknown option",
        ["sample", "--modle", "x"],
        "betamcmc sample: No such option: --modle (Possible options: --max-len, --model) (see "
        "--help)",
    ),  # fmt: skip
    arg_case(
        "arg-n-negative",
        "sample -n -1",
        ["sample", "-n", "-1"],
        "betamcmc sample: Invalid value for '-n': Input should be greater than or equal to 0 "
        "(see --help)",
    ),  # fmt: skip
    arg_case(
        "arg-n-text",
        "sample -n five",
        ["sample", "-n", "five"],
        "betamcmc sample: Invalid value for '-n': Input should be a valid integer, unable to "
        "parse string as an integer (see --help)",
    ),  # fmt: skip
    arg_case(
        "arg-steps",
        "sample --steps 1",
        ["sample", "--steps", "1"],
        "betamcmc sample: Invalid value for '--steps': Input should be greater than or equal "
        "to 2 (see --help)",
    ),  # fmt: skip
    arg_case(
        "arg-model-empty",
        "sample -m ''",
        ["sample", "-m", ""],
        "argument 3 (the value of -m) is empty or only whitespace",
    ),  # fmt: skip
    arg_case(
        "arg-reconstruct-blank",
        "sample -r '  '",
        ["sample", "-r", "  "],
        "argument 3 (the value of -r) is empty or only whitespace",
    ),  # fmt: skip
    arg_case(
        "arg-interpolate-one",
        "sample -i with one sentence",
        ["sample", "-i", "a"],
        "betamcmc: Option '-i' requires 2 arguments. (see --help)",
    ),  # fmt: skip
    arg_case(
        "arg-respond-missing",
        "respond without a context",
        ["respond"],
        "betamcmc respond: Missing argument 'context'. (see --help)",
    ),  # fmt: skip
    arg_case(
        "arg-respond-blank",
        "respond ' '",
        ["respond", " "],
        "argument 2 is empty or only whitespace",
    ),  # fmt: skip
    arg_case(
        "arg-ui-port-0",
        "ui --port 0",
        ["ui", "--port", "0"],
        "betamcmc ui: Invalid value for '--port': Input should be greater than or equal to 1 "
        "(see --help)",
    ),  # fmt: skip
    arg_case(
        "arg-ui-port-high",
        "ui --port 70000",
        ["ui", "--port", "70000"],
        "betamcmc ui: Invalid value for '--port': Input should be less than or equal to "
        "65535 (see --help)",
    ),  # fmt: skip
    arg_case(
        "arg-rl-episodes",
        "rl play x -n 0",
        ["rl", "play", "x", "-n", "0"],
        "betamcmc rl play: Invalid value for '-n' / '--episodes': Input should be greater "
        "than or equal to 1 (see --help)",
    ),  # fmt: skip
    arg_case(
        "arg-rl-run-missing",
        "rl play of an unknown run",
        ["rl", "play", "nosuchrun"],
        "nosuchrun: no such run (an item directory, an item name under models/rl, or a policy.pt)",
    ),  # fmt: skip
    arg_case(
        "arg-plot-iterations",
        "schedule plot --iterations 0",
        ["schedule", "plot", "--iterations", "0"],
        "betamcmc schedule plot: Invalid value "
        "for '--iterations': Input should be greater than or equal to 1 (see --help)",
    ),  # fmt: skip
    arg_case(
        "arg-params-dir",
        "params show of a directory",
        ["params", "show", "."],
        ".: expected a params file, found a directory",
    ),  # fmt: skip
]


# --------------------------------------------------------------------------- the checks
def _pattern(case: Case, d: Path) -> re.Pattern[str]:
    text = case.expect.replace("{d}", str(d))
    line = _params_line(case, d)
    if line is not None:
        text = text.replace("{line}", str(line))
    return re.compile("error: " + ".*".join(re.escape(p) for p in text.split("…")) + r"\Z")


def _listing(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*")}


def _run(case: Case, d: Path) -> int:
    args = case.make(d)
    if args[0] in ("prepare", "classify"):
        return run_stage_main(args[0], args[1:])
    return run_cli(args)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    d = tmp_path / "case"
    d.mkdir()
    monkeypatch.chdir(d)  # relative defaults (models/, data/, mlflow.db) land here if written
    before: set[str] | None = None

    def snapshot_then_run() -> int:
        nonlocal before
        args = case.make(d)
        before = _listing(d)
        case_run = Case(case.id, case.area, case.what, lambda _d: args, case.expect, case.key)
        return _run(case_run, d)

    code = snapshot_then_run()
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (code, out, err)
    assert len(lines) == 1, err
    assert "Traceback" not in err and "Traceback" not in out
    assert _pattern(case, d).match(lines[0]), f"\n got: {lines[0]}\nwant: {case.expect}"
    assert _listing(d) == before, f"written: {_listing(d) - before}"
    assert not (d / "PWNED").exists()


def test_the_matrix_is_large_and_covers_every_area() -> None:
    areas = {c.area for c in CASES}
    assert len(CASES) >= 60 and areas == {"params", "corpus", "model", "argument"}
    sections = {c.key.split(".")[0] for c in CASES if c.key}
    assert {
        "seed",
        "device",
        "data",
        "tracking",
        "pretrain",
        "finetune",
        "sgmcmc",
        "rl",
    } <= sections
    assert len({c.id for c in CASES}) == len(CASES)


# --------------------------------------------------------------------------- as processes
def test_console_scripts_exit_2_without_traceback(tmp_path: Path) -> None:
    """The real ``betamcmc`` script and a stage under ``python``: exit 2, one line, no traceback."""
    for case_id in ("sample-dialog-dir", "arg-n-negative", "text-utf16"):
        case = next(c for c in CASES if c.id == case_id)
        d = tmp_path / case_id
        d.mkdir()
        args = case.make(d)
        if case.area == "corpus":
            cmd = [sys.executable, str(REPO / "stages" / "prepare.py"), *args[1:]]
        else:
            cmd = [str(Path(sys.executable).parent / "betamcmc"), *args]
        proc = subprocess.run(cmd, cwd=d, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
        assert _pattern(case, d).match(proc.stderr.strip()), proc.stderr


# --------------------------------------------------------------------------- positive twins
def test_utf8_bom_is_stripped_not_part_of_the_first_word(tmp_path: Path) -> None:
    from betamcmc.data.prepare import prepare

    from conftest import shipped_section

    path = tmp_path / "a.txt"
    path.write_bytes(b"\xef\xbb\xbf" + b"the cat sat\n" * 30)
    corpus, _ = prepare(shipped_section("data", corpus="text", path=str(path)), 0)
    assert corpus.vocab.tokens[4:] == ["cat", "sat", "the"]
    swda = tmp_path / "valid.jsonl"
    swda.write_bytes(b"\xef\xbb\xbf" + SWDA.encode())
    corpus, _ = prepare(shipped_section("data", corpus="swda", path=str(swda)), 0)
    assert "\ufeff" not in "".join(corpus.vocab.tokens)


def test_read_lines_breaks_only_at_newlines(tmp_path: Path) -> None:
    """U+2028, U+0085 and form feed are not line breaks: line numbers match an editor's, and a
    JSONL string holding U+2028 / U+0085 is one valid line."""
    from betamcmc.data.files import read_lines

    path = tmp_path / "a.txt"
    path.write_text("a\u2028b\nc\x85d\ne\x0cf\r\ng\rh\n", encoding="utf-8")
    assert read_lines(path) == [(1, "a\u2028b"), (2, "c\x85d"), (3, "e\x0cf"), (4, "g"), (5, "h")]
    from betamcmc.data.swda import parse_swda

    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(SWDA.replace("hello there", "hello\u2028there\x85now"), encoding="utf-8")
    dialogs = parse_swda(jsonl, lowercase=True)
    assert len(dialogs) == 10 and dialogs[0].turns[0] == ["hello", "there", "now"]


def test_valid_params_and_arguments_still_pass(tmp_path: Path, capsys) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(SHIPPED)
    assert cli.main(["params", "check", str(path)]) == 0
    assert ": ok (" in capsys.readouterr().out
    assert cli.main(["--help"]) == 0


# --------------------------------------------------------------------------- the docs table
def docs_table() -> str:
    head = [
        "# Bad input: what each mistake prints",
        "",
        "Generated from `tests/test_bad_input.py` (the suite checks each row: exit code 2, this one",
        "line on stderr, no traceback, nothing written). `<dir>` is the folder of the input,",
        "`<line>` the line of the key named (computed by the test from the file), `…` text worded",
        "by a library (PyTorch). Regenerate: `BETAMCMC_WRITE_DOCS=1 pytest tests/test_bad_input.py "
        "-k docs`.",
        "",
        f"{len(CASES)} cases.",
    ]
    titles = {"params": "Params files (`betamcmc params check`, every stage)",
              "corpus": "Corpora (the `prepare` stage)",
              "model": "Model and checkpoint paths",
              "argument": "Command-line arguments (`betamcmc ...`)"}  # fmt: skip
    out = head
    for area, title in titles.items():
        out += ["", f"## {title}", "", "| case | bad input | message |", "|---|---|---|"]
        for c in CASES:
            if c.area != area:
                continue
            msg = c.expect.replace("{d}", "<dir>").replace("{line}", "<line>")
            msg, what = msg.replace("|", "\\|"), c.what.replace("|", "\\|")
            out.append(f"| `{c.id}` | {what} | `error: {msg}` |")
    return "\n".join(out) + "\n"


def test_docs_table_is_current() -> None:
    table = docs_table()
    if os.environ.get("BETAMCMC_WRITE_DOCS"):
        DOC.write_text(table, encoding="utf-8")
    assert DOC.exists() and DOC.read_text(encoding="utf-8") == table, (
        "docs/bad-input.md is stale: BETAMCMC_WRITE_DOCS=1 pytest tests/test_bad_input.py -k docs"
    )
