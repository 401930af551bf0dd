"""params.yaml validation: every kind of mistake gives one line with file:line, key and value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from betamcmc.errors import ParamsError
from betamcmc.params import load_params

from conftest import REPO, tiny_params, write_params


def _error_for(tmp_path: Path, text: str) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError) as info:
        load_params(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_shipped_params_validate() -> None:
    params = load_params(REPO / "params.yaml")
    assert params.data.corpus == "synthetic"
    assert params.data.path is None  # the default pipeline never needs ../shared


def test_tiny_params_validate(tmp_path: Path) -> None:
    load_params(write_params(tmp_path / "params.yaml", tiny_params()))


def test_out_of_range_names_key_line_and_value(tmp_path: Path) -> None:
    msg = _error_for(tmp_path, "seed: 0\ndata:\n  corpus: synthetic\n  max_len: 1\n")
    assert msg.endswith("params.yaml:4: data.max_len: must be >= 2 (got 1)")


def test_unknown_key(tmp_path: Path) -> None:
    msg = _error_for(tmp_path, "seed: 0\ndata:\n  max_lenn: 10\n")
    assert msg.endswith("params.yaml:3: data.max_lenn: unknown key (got 10)")


def test_unknown_section(tmp_path: Path) -> None:
    msg = _error_for(tmp_path, "seed: 0\ntraining:\n  lr: 1\n")
    assert msg.endswith("params.yaml:2: training: unknown key")


def test_wrong_type_is_not_coerced(tmp_path: Path) -> None:
    msg = _error_for(tmp_path, "seed: '3'\n")
    assert msg.endswith("params.yaml:1: seed: must be an integer (got '3')")


def test_bad_choice(tmp_path: Path) -> None:
    msg = _error_for(tmp_path, "device: gpu\n")
    assert "params.yaml:1: device: must be one of 'auto', 'cpu' or 'cuda' (got 'gpu')" in msg


def test_cross_field_rule(tmp_path: Path) -> None:
    msg = _error_for(tmp_path, "data:\n  split:\n    valid: 0.6\n    test: 0.5\n")
    assert "params.yaml:2: data.split: valid + test must be < 1" in msg


def test_real_corpus_needs_path(tmp_path: Path) -> None:
    msg = _error_for(tmp_path, "data:\n  corpus: ptb\n")
    assert "data: path is required when corpus is 'ptb'" in msg


def test_invalid_yaml(tmp_path: Path) -> None:
    msg = _error_for(tmp_path, "seed: [1,\n")
    assert "invalid YAML" in msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")


def test_flat_and_digest() -> None:
    params = load_params(REPO / "params.yaml")
    flat = params.flat(["seed", "data"])
    assert flat["data.synthetic.train"] == params.data.synthetic.train
    assert "tracking.experiment" not in flat
    assert params.digest(["seed"]) != params.digest(["data"])


@pytest.mark.parametrize(
    ("content", "code", "needle"),
    [(None, 0, "ok"), ("data:\n  min_count: 0\n", 2, "data.min_count: must be >= 1 (got 0)")],
)
def test_cli_params_check(tmp_path: Path, content: str | None, code: int, needle: str) -> None:
    path = REPO / "params.yaml"
    if content is not None:
        path = tmp_path / "p.yaml"
        path.write_text(content)
    proc = subprocess.run(
        [sys.executable, "-m", "betamcmc.cli", "params", "check", str(path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == code, proc.stderr
    assert needle in proc.stdout + proc.stderr
    if code:
        assert len(proc.stderr.strip().splitlines()) == 1
        assert "Traceback" not in proc.stderr
