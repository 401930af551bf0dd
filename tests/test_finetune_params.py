"""The `finetune` params section: defaults load, bad values get one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from betamcmc.core.errors import ParamsError
from betamcmc.params import load_params

from conftest import tiny_params, write_params


def test_shipped_params_have_the_finetune_section(tmp_path: Path) -> None:
    params = load_params(write_params(tmp_path / "p.yaml", tiny_params()))
    assert all(0 < f <= 1 for f in params.finetune.label_fractions)
    assert params.finetune.dialog.bow


@pytest.mark.parametrize("bad", [0.0, 1.5, -0.1])
def test_label_fraction_outside_unit_interval(bad: float, tmp_path: Path) -> None:
    path = write_params(
        tmp_path / "p.yaml", tiny_params({"finetune": {"label_fractions": [0.1, bad]}})
    )
    with pytest.raises(ParamsError) as err:
        load_params(path)
    message = str(err.value)
    assert "finetune.label_fractions.1: must be in (0, 1]" in message
    assert f"(got {bad!r})" in message
    assert "\n" not in message
    assert message.startswith(f"{path}:")


def test_duplicates_and_bad_kinds_rejected(tmp_path: Path) -> None:
    for override, needle in (
        ({"seeds": [1, 1]}, "finetune.seeds: must be distinct"),
        ({"classifier": "svm"}, "finetune.classifier: must be one of"),
        ({"dialog": {"bow": ["bow", "bow"]}}, "bow settings must be distinct"),
        ({"dialog": {"bow": [True]}}, "finetune.dialog.bow.0: must be one of"),
        ({"dialog": {"init_encoder": "bert"}}, "finetune.dialog.init_encoder"),
        ({"dialog": {"samples": 0}}, "finetune.dialog.samples: must be >= 1"),
    ):
        with pytest.raises(ParamsError, match=needle):
            load_params(write_params(tmp_path / "p.yaml", tiny_params({"finetune": override})))
