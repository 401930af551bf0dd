"""Every `betamcmc` command failure is one line on stderr and a non-zero exit, no traceback
(docs/robustness.md): files it cannot write, malformed study files, and errors no check
foresaw (`BETAMCMC_TRACEBACK=1` shows those)."""

from __future__ import annotations

from pathlib import Path

import pytest

from betamcmc.cli import main

from conftest import REPO


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


def test_an_output_that_cannot_be_written(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file where a folder should be")
    code = main(["schedule", "plot", "-p", str(REPO / "params.yaml"), "-o", f"{blocker}/x.png"])
    assert code == 1
    assert str(blocker) in _one_line(capsys)


def test_an_output_that_is_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["schedule", "plot", "-p", str(REPO / "params.yaml"), "-o", str(tmp_path)])
    assert code == 2
    assert "expected a PNG file to write, found a directory" in _one_line(capsys)


@pytest.mark.parametrize(
    ("study", "says"),
    [
        ("name: x\ngrid: 5\n", "'grid' must map params to lists of values"),
        ("name: x\ngrid: {a: 5}\n", "grid.a must be a non-empty list of values"),
        ("name: x\nexperiments: [1, 2]\n", "'experiments' must map names to their settings"),
        ("name: x\nexperiments: {a: 5}\n", "experiments.a must be a mapping of param: value"),
        ("name: x\ngrid: {a: [1]}\nextra: 5\n", "'extra' must be a list of blocks"),
        ("name: x\ngrid: {a: [1]}\ntargets: prepare\n", "'targets' must be a list of stage"),
    ],
)
def test_a_malformed_study_file(
    tmp_path: Path, capsys: pytest.CaptureFixture, study: str, says: str
) -> None:
    spec = tmp_path / "study.yaml"
    spec.write_text(study)
    assert main(["study", "queue", "--dry-run", str(spec)]) == 2
    assert says in _one_line(capsys)


def test_an_unforeseen_error_is_one_line_and_the_traceback_on_request(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("something\nnobody checked")

    monkeypatch.setattr("betamcmc.params.load_params", broken)
    monkeypatch.delenv("BETAMCMC_TRACEBACK", raising=False)
    assert main(["params", "check"]) == 1
    err = _one_line(capsys)
    assert "unexpected RuntimeError: something nobody checked" in err
    assert "BETAMCMC_TRACEBACK=1" in err
    monkeypatch.setenv("BETAMCMC_TRACEBACK", "1")
    with pytest.raises(RuntimeError):
        main(["params", "check"])
